"""Version, status codes, errors, struct layouts and library lookup: no device needed."""
import ctypes
import os

import pytest

import kvulkan as kv
from kvulkan import _native as N


def test_version(lib):
    v = kv.version()
    assert v == N.make_version(*kv.version_tuple())
    assert kv.version_string() == "%d.%d.%d" % kv.version_tuple()
    # Same major as the header these bindings mirror, and not older than it.
    assert kv.version_tuple()[0] == N.HEADER_VERSION_MAJOR
    assert v >= kv.HEADER_VERSION


def test_status_strings(lib):
    for st in kv.Status:
        text = kv.status_string(st)
        assert text.startswith(st.c_name + ": "), (st, text)
    assert kv.status_string(-1000) == "unknown status"
    assert kv.Status.ERR_CONTEXT_FULL == -7 and kv.Status.END_OF_GENERATION == 2


@pytest.mark.parametrize(
    "status,cls",
    [
        (-1, kv.InvalidArgumentError),
        (-2, kv.KvIOError),
        (-3, kv.BadModelError),
        (-4, kv.UnsupportedError),
        (-5, kv.OutOfHostMemoryError),
        (-6, kv.OutOfDeviceMemoryError),
        (-7, kv.ContextFullError),
        (-8, kv.DeviceLostError),
        (-9, kv.NoDeviceError),
        (-10, kv.InternalError),
        (-11, kv.BadStateError),
        (-12, kv.BadTokenError),
    ],
)
def test_error_classes(status, cls):
    from kvulkan._errors import error_for

    e = error_for(status, "boom")
    assert type(e) is cls and isinstance(e, kv.KvError)
    assert e.status == status and e.message == "boom"
    assert str(e) == f"{kv.Status(status).c_name}: boom"


def test_error_unknown_status():
    from kvulkan._errors import check, error_for

    e = error_for(-99, "x")
    assert type(e) is kv.KvError and e.status == -99 and "kv_status(-99)" in str(e)
    assert check(0) == 0 and check(1) == 1 and check(2) == 2


def test_last_error_message_after_failure(lib, tmp_path):
    missing = str(tmp_path / "missing.gguf")
    with pytest.raises(kv.KvIOError) as ei:
        kv.Model(missing)
    assert ei.value.status == kv.Status.ERR_IO
    assert ei.value.message and "missing.gguf" in ei.value.message
    # The C message is still there (no kv_* call failed or succeeded in between on this thread).
    assert kv.last_error_message() == ei.value.message


# Sizes and offsets of the C structs on LP64, computed from the header by hand (and checked once
# against offsetof()): a ctypes layout that drifts from the header fails here.
EXPECTED_SIZES = {
    "kv_memory_heap_info": 32,
    "kv_device_info": 1392,
    "kv_runtime_desc": 112,
    "kv_bandwidth_result": 40,
    "kv_model_desc": 56,
    "kv_model_info": 632,
    "kv_sampler_desc": 64,  # 40 in 0.1.0; logit_bias and banned_tokens appended in 0.2.0
    "kv_logit_bias": 8,
    "kv_session_desc": 40,
    "kv_session_stats": 184,
    "kv_cache_stats": 88,
    "kv_batch_item": 56,
    "kv_generate_desc": 40,
    "kv_generate_result": 32,
}
EXPECTED_OFFSETS = [
    ("kv_device_info", "device_type", 776),
    ("kv_device_info", "max_storage_buffer_range", 816),
    ("kv_device_info", "memory_heaps", 848),
    ("kv_device_info", "timestamp_period_ns", 1360),
    ("kv_device_info", "queue_family", 1368),
    ("kv_device_info", "gpu_budget_us", 1384),
    ("kv_runtime_desc", "device_name", 16),
    ("kv_runtime_desc", "log_callback", 24),
    ("kv_runtime_desc", "vk_queue_family", 72),
    ("kv_runtime_desc", "memory_budget", 80),
    ("kv_runtime_desc", "pipeline_cache_path", 88),
    ("kv_runtime_desc", "vk_timeline_semaphore", 96),
    ("kv_runtime_desc", "global_priority", 108),
    ("kv_generate_desc", "stop_strings", 8),
    ("kv_generate_desc", "on_piece", 24),
    ("kv_generate_result", "n_bytes", 24),
    ("kv_model_desc", "size", 24),
    ("kv_model_desc", "copy_data", 32),
    ("kv_model_info", "n_params", 552),
    ("kv_model_info", "n_vocab", 584),
    ("kv_model_info", "rope_freq_base", 620),
    ("kv_model_info", "tied_output", 624),
    ("kv_sampler_desc", "repeat_last_n", 24),
    ("kv_sampler_desc", "seed", 32),
    ("kv_session_desc", "cache_type", 12),
    ("kv_session_desc", "sampler", 24),
    ("kv_session_desc", "window", 32),
    ("kv_session_desc", "sinks", 36),
    ("kv_model_desc", "kv_page_size", 36),
    ("kv_model_desc", "kv_pool_tokens", 40),
    ("kv_session_stats", "last_prefill_ms", 48),
    ("kv_session_stats", "last_decode_ms", 64),
    ("kv_session_stats", "scratch_bytes", 88),
    ("kv_session_stats", "pages", 96),
    ("kv_session_stats", "shared_pages", 100),
    ("kv_session_stats", "prefix_hit_tokens", 104),
    ("kv_session_stats", "forward_passes", 112),
    ("kv_session_stats", "offloaded", 136),
    ("kv_session_stats", "window_layer_pages", 160),
    ("kv_session_stats", "window_layer_pages_released", 168),
    ("kv_session_stats", "pages_released", 176),
    ("kv_model_desc", "host_offload_bytes", 48),
    ("kv_cache_stats", "offloaded_bytes", 80),
    ("kv_batch_item", "session", 8),
    ("kv_batch_item", "logits_capacity", 32),
    ("kv_batch_item", "status", 48),
    ("kv_cache_stats", "pages_free", 20),
    ("kv_cache_stats", "page_bytes", 24),
    ("kv_cache_stats", "evictions", 56),
    ("kv_sampler_desc", "logit_bias", 40),
    ("kv_sampler_desc", "n_logit_bias", 48),
    ("kv_sampler_desc", "n_banned_tokens", 52),
    ("kv_sampler_desc", "banned_tokens", 56),
]


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="layouts computed for LP64")
def test_struct_layouts():
    for name, size in EXPECTED_SIZES.items():
        assert ctypes.sizeof(getattr(N, name)) == size, name
    for name, field, off in EXPECTED_OFFSETS:
        assert getattr(getattr(N, name), field).offset == off, (name, field)


def test_init_helpers_match_macros():
    d = N.runtime_desc_init()
    assert d.struct_size == 112 and d.device_index == -1 and d.flags == 0 and not d.log_callback
    s = N.sampler_desc_init()
    assert (s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, s.repeat_last_n, s.seed) == (
        0.0, 0, 1.0, 0.0, 1.0, 64, 0)
    sd = N.session_desc_init()
    assert sd.struct_size == 40 and sd.window == 0 and sd.sinks == 0 and sd.cache_type == N.KV_CACHE_F16 and not sd.sampler
    assert N.model_desc_init().struct_size == 56


def test_library_lookup_order(monkeypatch, tmp_path):
    monkeypatch.setenv("KV_LIBRARY", "/x/libkvulkan.so")
    monkeypatch.setenv("KV_BUILD_DIR", str(tmp_path))
    paths = N.candidate_paths()
    name = N._lib_names()[0]
    bundled = os.path.join(os.path.dirname(os.path.abspath(N.__file__)), name)
    # A platform wheel's bundled library first, then KV_LIBRARY, then KV_BUILD_DIR.
    assert paths[:3] == [bundled, "/x/libkvulkan.so", os.path.join(str(tmp_path), name)]


def test_load_library_bad_path(lib, tmp_path):
    with pytest.raises(kv.LibraryNotFoundError) as ei:
        kv.load_library(str(tmp_path / "nope.so"))
    assert "nope.so" in str(ei.value)
    # The loaded library is untouched.
    assert N.lib() is not None


def test_struct_layouts_match_the_c_compiler():
    """Every field of every public struct at the offset and size the C compiler gives it."""
    import os
    import subprocess
    build = os.environ.get("KV_BUILD_DIR", "")
    tool = os.path.join(build, "bin", "kv-abi-layout")
    if not build or not os.path.exists(tool):
        pytest.skip("kv-abi-layout not built (set KV_BUILD_DIR to the build directory)")
    seen = set()
    for line in subprocess.run([tool], capture_output=True, text=True, check=True).stdout.splitlines():
        struct, field, off, size = line.split()
        cls = getattr(N, struct)
        seen.add(struct)
        if field == "-":
            assert ctypes.sizeof(cls) == int(size), struct
        else:
            f = getattr(cls, field)
            assert (f.offset, f.size) == (int(off), int(size)), (struct, field)
    assert "kv_session_stats" in seen and "kv_device_info" in seen and "kv_cache_stats" in seen
