"""Devices and the runtime: enumeration, creation options, info, logging, bandwidth."""
import ctypes
import gc

import pytest

import kvulkan as kv
from kvulkan import _native as N


def test_enumerate_devices(lib):
    devs = kv.enumerate_devices()
    assert devs, "no Vulkan device (lavapipe should always be there)"
    for i, d in enumerate(devs):
        assert d.index == i
        assert d.device_name and d.driver_name
        assert isinstance(d.device_type, kv.DeviceType)
        assert d.api_version_tuple >= (1, 1, 0)
        assert 0 < len(d.memory_heaps) <= N.KV_MAX_MEMORY_HEAPS
        assert d.subgroup_size_min <= d.subgroup_size <= d.subgroup_size_max
        assert d.max_workgroup_invocations >= 128  # Vulkan's guaranteed minimum


def test_enumerate_devices_incomplete_protocol(lib):
    """The raw two-call protocol the wrapper relies on: a too-small array gives KV_INCOMPLETE
    with the first entries written, NULL gives the count."""
    count = ctypes.c_uint32(0)
    assert lib.kv_enumerate_devices(None, None, ctypes.byref(count)) == N.KV_OK
    total = count.value
    assert total >= 1
    infos = (N.kv_device_info * 1)()
    infos[0].struct_size = ctypes.sizeof(N.kv_device_info)
    count.value = 0
    assert lib.kv_enumerate_devices(None, infos, ctypes.byref(count)) == (N.KV_INCOMPLETE if total > 0 else N.KV_OK)
    assert count.value == 0
    count.value = 1
    st = lib.kv_enumerate_devices(None, infos, ctypes.byref(count))
    assert st == (N.KV_INCOMPLETE if total > 1 else N.KV_OK) and count.value == 1
    assert infos[0].device_name.decode() == kv.enumerate_devices()[0].device_name


def test_struct_size_is_checked(lib):
    """struct_size from ctypes.sizeof is accepted; a smaller one is rejected by the library, so
    the size we send really is the header's."""
    infos = (N.kv_device_info * 1)()
    infos[0].struct_size = N.kv_device_info.queue_family.offset - 8  # below the 0.1.0 size
    count = ctypes.c_uint32(1)
    assert lib.kv_enumerate_devices(None, infos, ctypes.byref(count)) == N.KV_ERR_INVALID_ARGUMENT
    assert "struct_size" in kv.last_error_message()
    d = N.runtime_desc_init()
    d.struct_size = N.kv_runtime_desc.pipeline_cache_path.offset - 8  # (the offset itself is the 0.1.0 size)
    out = ctypes.c_void_p()
    assert lib.kv_runtime_create(ctypes.byref(d), ctypes.byref(out)) == N.KV_ERR_INVALID_ARGUMENT
    assert not out.value


def test_runtime_info(runtime, runtime_logs):
    info = runtime.get_info()
    devs = kv.enumerate_devices()
    assert info.device_name == devs[info.index].device_name
    assert info.vendor_id == devs[info.index].vendor_id
    assert runtime.device_name == info.device_name
    assert any(info.device_name in m for m in runtime_logs.of_level(kv.LogLevel.INFO)), runtime_logs.messages


def test_runtime_device_choice(lib):
    devs = kv.enumerate_devices()
    with kv.Runtime(device=0, ignore_environment=True) as rt:
        assert rt.get_info().index == 0
    name = devs[-1].device_name
    with kv.Runtime(device=name[: max(3, len(name) // 2)].upper(), ignore_environment=True) as rt:
        assert rt.get_info().device_name.lower().startswith(name[: max(3, len(name) // 2)].lower())
    with kv.Runtime(device=devs[0]) as rt:
        assert rt.get_info().index == 0


def test_runtime_bad_device(lib):
    with pytest.raises(kv.NoDeviceError) as ei:
        kv.Runtime(device="no-such-device-anywhere")
    assert ei.value.message
    # The header leaves it open whether an out-of-range index is a bad argument or "no device
    # matched the choice"; the library answers KV_ERR_INVALID_ARGUMENT today.
    with pytest.raises((kv.InvalidArgumentError, kv.NoDeviceError)) as ei:
        kv.Runtime(device=999)
    assert "999" in ei.value.message
    with pytest.raises(kv.InvalidArgumentError):
        kv.Runtime(device=-2)
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        kv.Runtime(device=1.5)
    with pytest.raises(kv.InvalidArgumentError):
        kv.Runtime(memory_budget=-1)


def test_log_callback_kept_alive(lib, stories_path):
    """The CFUNCTYPE thunk lives as long as the runtime, not as long as the caller's lambda."""
    seen = []
    rt = kv.Runtime(log_callback=lambda level, msg: seen.append((level, msg)))
    gc.collect()
    assert seen and seen[0][0] == kv.LogLevel.INFO and "using device" in seen[0][1]
    # Work that may log, after the caller's references to the callable are gone.
    with kv.Model(stories_path, rt) as m, m.session(n_ctx=32) as s:
        s.prefill([1, 403])
        assert s.decode_step() is not None
    rt.close()


def test_log_callback_exception_does_not_propagate(lib, capsys):
    def bad(level, msg):
        raise RuntimeError("callback failure")

    with kv.Runtime(log_callback=bad) as rt:  # the INFO "using device" line calls it
        assert rt.get_info().device_name
    assert "callback failure" in capsys.readouterr().err


def test_logging_callback_forwards(lib, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="kvulkan"):
        with kv.Runtime(log_callback=kv.logging_callback):
            pass
    assert any("using device" in r.getMessage() for r in caplog.records)


def test_measure_bandwidth(runtime):
    r = runtime.measure_bandwidth(bytes=1 << 20, iterations=2)
    assert r.bytes >= 1 << 20 or r.bytes > 0
    assert r.read_gbps > 0 and r.copy_gbps > 0 and r.write_gbps > 0


def test_memory_budget(lib, stories_path):
    # A budget below the model's weights: loading fails cleanly, nothing leaks.
    with kv.Runtime(memory_budget=4096) as rt:
        with pytest.raises(kv.OutOfDeviceMemoryError) as ei:
            kv.Model(stories_path, rt)
        assert ei.value.message


def test_validation_clean_so_far(runtime):
    assert runtime.validation_message_count() == 0


def test_queue_priority_and_timeline_semaphore(lib):
    """GPU scheduling beside a renderer: the priority request is reported back (a global priority
    the driver lacks is dropped, never an error), the runtime's timeline semaphore advances with
    its submissions, and bad values are refused."""
    with kv.Runtime(queue_priority=0.5, global_priority=512) as rt:
        info = rt.get_info()
        assert info.queue_priority == 0.5
        assert info.global_priority in (0, 512)
        if not info.features & kv.Feature.GLOBAL_PRIORITY:
            assert info.global_priority == 0
        assert not info.queue_flags & 2  # KV_QUEUE_ADOPTED
        if info.features & kv.Feature.TIMELINE_SEMAPHORE:
            sem, before = rt.timeline_semaphore()
            assert sem != 0
            rt.measure_bandwidth(1 << 20, 1)
            sem_after, after = rt.timeline_semaphore()
            assert sem_after == sem and after > before  # the probe's submissions signalled it
            with pytest.raises(kv.InvalidArgumentError):
                rt.wait_semaphore(0, 1)
    with pytest.raises(kv.InvalidArgumentError):
        kv.Runtime(queue_priority=2.0)
    with pytest.raises(kv.InvalidArgumentError):
        kv.Runtime(global_priority=3)


def test_gpu_budget_cuts_passes(lib, stories_path):
    """gpu_budget_us: a tiny budget puts every layer (and the head) in a submission of its own;
    the tokens are those of a runtime without a budget."""
    tokens = {}
    for budget in (0, 1):
        with kv.Runtime(gpu_budget_us=budget) as rt:
            info = rt.get_info()
            if budget and not info.features & kv.Feature.TIMESTAMPS:
                assert info.gpu_budget_us == 0  # ignored without timestamps
                return
            assert info.gpu_budget_us == budget
            with kv.Model(stories_path, rt) as m, m.session() as s:
                s.prefill(m.tokenize("Once upon a time"))
                tokens[budget] = [s.decode_step() for _ in range(4)]
                st = s.get_stats()
                assert st.submissions >= st.forward_passes >= 5
                if budget:
                    assert st.last_pass_submissions == m.get_info().n_layer + 1
    assert tokens[1] == tokens[0]
