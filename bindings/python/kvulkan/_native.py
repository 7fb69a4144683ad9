"""ctypes mirror of include/kvulkan/kvulkan.h: library lookup, constants, structs, prototypes.

Everything here follows the C header field for field; the public, Pythonic layer lives in
``kvulkan._api``. Struct sizes on LP64 (Linux/macOS x86-64 and arm64) are checked by the tests.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

# --- versioning (the header these bindings mirror) ------------------------------------------
HEADER_VERSION_MAJOR = 0
HEADER_VERSION_MINOR = 2
HEADER_VERSION_PATCH = 0


def make_version(major: int, minor: int, patch: int) -> int:
    return ((major & 0x3FF) << 22) | ((minor & 0x3FF) << 12) | (patch & 0xFFF)


HEADER_VERSION = make_version(HEADER_VERSION_MAJOR, HEADER_VERSION_MINOR, HEADER_VERSION_PATCH)

# --- status codes ------------------------------------------------------------------------------
KV_OK = 0
KV_INCOMPLETE = 1
KV_END_OF_GENERATION = 2
KV_NOT_READY = 3
KV_CANCELLED = 4
KV_ERR_INVALID_ARGUMENT = -1
KV_ERR_IO = -2
KV_ERR_BAD_MODEL = -3
KV_ERR_UNSUPPORTED = -4
KV_ERR_OUT_OF_HOST_MEMORY = -5
KV_ERR_OUT_OF_DEVICE_MEMORY = -6
KV_ERR_CONTEXT_FULL = -7
KV_ERR_DEVICE_LOST = -8
KV_ERR_NO_DEVICE = -9
KV_ERR_INTERNAL = -10
KV_ERR_BAD_STATE = -11
KV_ERR_BAD_TOKEN = -12
KV_ERR_BUSY = -13

# --- enums and flags ---------------------------------------------------------------------------
KV_LOG_DEBUG, KV_LOG_INFO, KV_LOG_WARNING, KV_LOG_ERROR, KV_LOG_VALIDATION = range(5)

KV_RUNTIME_VALIDATION = 1 << 0
KV_RUNTIME_IGNORE_ENVIRONMENT = 1 << 1

KV_MODEL_VOCAB_ONLY = 1 << 0  # kv_model_desc.flags (since 0.2.0)

KV_TOKENIZE_ADD_SPECIAL = 1 << 0
KV_TOKENIZE_PARSE_SPECIAL = 1 << 1

KV_CACHE_F16 = 0
KV_CACHE_F32 = 1
KV_CACHE_Q8_0 = 2
KV_CACHE_Q4_0 = 3

KV_SESSION_NO_CACHE = 1 << 0
KV_EMBED_LAST = 0  # kv_session_embeddings flags (since 0.2.0)
KV_EMBED_MEAN = 1 << 0
KV_EMBED_NORMALIZE = 1 << 1

KV_MAX_NAME = 256
KV_MAX_MEMORY_HEAPS = 16

kv_status = c_int32
kv_token = c_int32

# void (*kv_log_fn)(void* user_data, kv_log_level level, const char* message)
# The message is taken as c_void_p (not c_char_p) so the callback decodes it itself, with
# errors="replace": a log line that is not valid UTF-8 must not raise inside the callback.
kv_log_fn = ctypes.CFUNCTYPE(None, c_void_p, c_int32, c_void_p)


# --- structs (field for field as in the header; only ever grown at the end) --------------------
class kv_memory_heap_info(Structure):
    _fields_ = [
        ("size", c_uint64),
        ("budget", c_uint64),
        ("usage", c_uint64),
        ("device_local", c_uint32),
        ("reserved", c_uint32),
    ]


class kv_device_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("index", c_uint32),
        ("device_name", c_char * KV_MAX_NAME),
        ("driver_name", c_char * KV_MAX_NAME),
        ("driver_info", c_char * KV_MAX_NAME),
        ("device_type", c_int32),
        ("vendor_id", c_uint32),
        ("device_id", c_uint32),
        ("api_version", c_uint32),
        ("driver_version", c_uint32),
        ("features", c_uint32),
        ("subgroup_size", c_uint32),
        ("subgroup_size_min", c_uint32),
        ("subgroup_size_max", c_uint32),
        ("subgroup_ops", c_uint32),
        ("max_storage_buffer_range", c_uint64),
        ("max_allocation_size", c_uint64),
        ("max_shared_memory", c_uint32),
        ("max_workgroup_invocations", c_uint32),
        ("max_workgroup_count_x", c_uint32),
        ("memory_heap_count", c_uint32),
        ("memory_heaps", kv_memory_heap_info * KV_MAX_MEMORY_HEAPS),
        ("timestamp_period_ns", c_float),
        ("reserved0", c_uint32),
        ("queue_family", c_uint32),  # since 0.2.0: the runtime's queue and scheduling
        ("queue_flags", c_uint32),
        ("queue_priority", c_float),
        ("global_priority", c_uint32),
        ("gpu_budget_us", c_uint32),
        ("reserved1", c_uint32),
    ]


class kv_runtime_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("device_index", c_int32),
        ("device_name", c_char_p),
        ("log_callback", kv_log_fn),
        ("log_user_data", c_void_p),
        ("vk_instance", c_void_p),
        ("vk_physical_device", c_void_p),
        ("vk_device", c_void_p),
        ("vk_queue", c_void_p),
        ("vk_queue_family", c_uint32),
        ("vk_api_version", c_uint32),
        ("memory_budget", c_uint64),
        ("pipeline_cache_path", c_char_p),  # since 0.2.0
        ("vk_timeline_semaphore", c_uint32),  # since 0.2.0: GPU scheduling beside a renderer
        ("gpu_budget_us", c_uint32),
        ("queue_priority", c_float),
        ("global_priority", c_uint32),
    ]


class kv_bandwidth_result(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("bytes", c_uint64),
        ("read_gbps", c_double),
        ("copy_gbps", c_double),
        ("write_gbps", c_double),
    ]


class kv_model_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("path", c_char_p),
        ("data", c_void_p),
        ("size", c_uint64),
        ("copy_data", c_uint32),
        ("kv_page_size", c_uint32),
        ("kv_pool_tokens", c_uint32),
        ("reserved", c_uint32),
        ("host_offload_bytes", c_uint64),  # since 0.2.0
    ]


class kv_model_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("on_device", c_uint32),
        ("architecture", c_char * 32),
        ("name", c_char * KV_MAX_NAME),
        ("weight_types", c_char * KV_MAX_NAME),
        ("n_params", c_uint64),
        ("weight_bytes", c_uint64),
        ("file_size", c_uint64),
        ("device_bytes", c_uint64),
        ("n_vocab", c_uint32),
        ("n_embd", c_uint32),
        ("n_layer", c_uint32),
        ("n_head", c_uint32),
        ("n_head_kv", c_uint32),
        ("head_dim", c_uint32),
        ("n_ff", c_uint32),
        ("n_ctx_train", c_uint32),
        ("rope_neox", c_uint32),
        ("rope_freq_base", c_float),
        ("tied_output", c_uint32),
        ("reserved", c_uint32),
    ]


class kv_logit_bias(Structure):
    _fields_ = [("token", c_int32), ("bias", c_float)]


class kv_sampler_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_uint32),
        ("reserved", c_uint32),
        ("seed", c_uint64),
        # Since 0.2.0:
        ("logit_bias", POINTER(kv_logit_bias)),
        ("n_logit_bias", c_uint32),
        ("n_banned_tokens", c_uint32),
        ("banned_tokens", POINTER(c_int32)),
    ]


class kv_session_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("n_ctx", c_uint32),
        ("cache_type", c_int32),
        ("n_batch", c_uint32),
        ("reserved", c_uint32),
        ("sampler", POINTER(kv_sampler_desc)),
        ("window", c_uint32),
        ("sinks", c_uint32),
    ]


class kv_session_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_uint32),
        ("n_ctx", c_uint32),
        ("page_size", c_uint32),
        ("kv_bytes", c_uint64),
        ("kv_bytes_per_token", c_uint64),
        ("tokens_prefilled", c_uint64),
        ("tokens_decoded", c_uint64),
        ("last_prefill_ms", c_double),
        ("last_prefill_tokens", c_uint32),
        ("reserved", c_uint32),
        ("last_decode_ms", c_double),
        ("total_prefill_ms", c_double),
        ("total_decode_ms", c_double),
        ("scratch_bytes", c_uint64),
        ("pages", c_uint32),
        ("shared_pages", c_uint32),
        ("prefix_hit_tokens", c_uint64),
        ("forward_passes", c_uint64),  # since 0.2.0
        ("pages_offloaded", c_uint64),
        ("pages_restored", c_uint64),
        ("offloaded", c_uint32),
        ("reserved1", c_uint32),
        ("submissions", c_uint64),  # since 0.2.0: GPU scheduling beside a renderer
        ("last_pass_submissions", c_uint32),
        ("reserved2", c_uint32),
        ("window_layer_pages", c_uint32),  # layer groups (gemma2, gemma3)
        ("window_layers", c_uint32),
        ("window_layer_pages_released", c_uint64),
        ("pages_released", c_uint64),
    ]


class kv_batch_item(Structure):  # since 0.2.0
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_uint32),
        ("session", c_void_p),
        ("tokens", POINTER(c_int32)),
        ("logits", POINTER(c_float)),
        ("logits_capacity", c_uint64),
        ("token", c_int32),
        ("n_done", c_uint32),
        ("status", c_int32),
        ("reserved", c_uint32),
    ]


class kv_cache_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("page_size", c_uint32),
        ("pages_total", c_uint32),
        ("pages_in_use", c_uint32),
        ("pages_cached", c_uint32),
        ("pages_free", c_uint32),
        ("page_bytes", c_uint64),
        ("device_bytes", c_uint64),
        ("prefix_lookups", c_uint64),
        ("prefix_hits", c_uint64),
        ("evictions", c_uint64),
        ("pages_offloaded", c_uint64),  # since 0.2.0
        ("pages_restored", c_uint64),
        ("offloaded_bytes", c_uint64),
    ]


# --- streaming generation (kv_generate, since 0.2.0) ---------------------------------------------
KV_GENERATE_STOP_MAX_TOKENS = 0
KV_GENERATE_STOP_END_OF_GENERATION = 1
KV_GENERATE_STOP_STRING = 2
KV_GENERATE_STOP_CALLBACK = 3
KV_GENERATE_STOP_CONTEXT_FULL = 4
KV_GENERATE_STOP_ERROR = 5

# int (*kv_piece_fn)(void* user_data, const char* text, size_t len); text as c_void_p (not
# NUL-terminated: read with ctypes.string_at(text, len)).
kv_piece_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


class kv_generate_desc(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_tokens", c_uint32),
        ("stop_strings", POINTER(c_char_p)),
        ("n_stop_strings", c_uint32),
        ("reserved", c_uint32),
        ("on_piece", kv_piece_fn),
        ("user_data", c_void_p),
    ]


class kv_generate_result(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_uint32),
        ("stop_reason", c_int32),
        ("stop_string", c_int32),
        ("last_token", c_int32),
        ("reserved", c_uint32),
        ("n_bytes", c_uint64),
    ]


def new_struct(cls):
    """A zeroed struct with struct_size set: the *_INIT macros, minus their non-zero defaults."""
    s = cls()
    s.struct_size = ctypes.sizeof(cls)
    return s


def runtime_desc_init() -> kv_runtime_desc:  # KV_RUNTIME_DESC_INIT
    d = new_struct(kv_runtime_desc)
    d.device_index = -1
    return d


def generate_desc_init() -> kv_generate_desc:  # KV_GENERATE_DESC_INIT
    return new_struct(kv_generate_desc)


def model_desc_init() -> kv_model_desc:  # KV_MODEL_DESC_INIT
    return new_struct(kv_model_desc)


def sampler_desc_init() -> kv_sampler_desc:  # KV_SAMPLER_DESC_INIT
    d = new_struct(kv_sampler_desc)
    d.temperature = 0.0
    d.top_k = 0
    d.top_p = 1.0
    d.min_p = 0.0
    d.repeat_penalty = 1.0
    d.repeat_last_n = 64
    d.seed = 0
    return d


def session_desc_init() -> kv_session_desc:  # KV_SESSION_DESC_INIT
    d = new_struct(kv_session_desc)
    d.cache_type = KV_CACHE_F16
    return d


# --- prototypes ----------------------------------------------------------------------------------
_P = c_void_p  # opaque handles travel as void*
# void (*)(kv_ticket*, kv_status, void*): called on kvulkan's worker thread (ctypes takes the GIL).
kv_ticket_callback = ctypes.CFUNCTYPE(None, _P, kv_status, _P)

_PROTOTYPES = {
    "kv_version": (c_uint32, []),
    "kv_version_string": (c_char_p, []),
    "kv_status_string": (c_char_p, [kv_status]),
    "kv_last_error_message": (c_char_p, []),
    "kv_enumerate_devices": (kv_status, [POINTER(kv_runtime_desc), POINTER(kv_device_info), POINTER(c_uint32)]),
    "kv_runtime_create": (kv_status, [POINTER(kv_runtime_desc), POINTER(_P)]),
    "kv_runtime_destroy": (None, [_P]),
    "kv_runtime_get_info": (kv_status, [_P, POINTER(kv_device_info)]),
    "kv_runtime_validation_message_count": (c_uint64, [_P]),
    "kv_runtime_measure_bandwidth": (kv_status, [_P, c_uint64, c_uint32, POINTER(kv_bandwidth_result)]),
    "kv_runtime_use_queue": (kv_status, [_P, _P, _P]),
    "kv_runtime_timeline_semaphore": (kv_status, [_P, POINTER(c_uint64), POINTER(c_uint64)]),
    "kv_runtime_wait_semaphore": (kv_status, [_P, c_uint64, c_uint64]),
    "kv_model_load": (kv_status, [_P, POINTER(kv_model_desc), POINTER(_P)]),
    "kv_model_destroy": (None, [_P]),
    "kv_model_get_info": (kv_status, [_P, POINTER(kv_model_info)]),
    "kv_model_token_bos": (kv_token, [_P]),
    "kv_model_token_eos": (kv_token, [_P]),
    "kv_token_is_eog": (c_int, [_P, kv_token]),
    "kv_tokenize": (kv_status, [_P, c_char_p, c_size_t, c_uint32, POINTER(kv_token), POINTER(c_uint32)]),
    "kv_detokenize": (kv_status, [_P, POINTER(kv_token), c_uint32, c_void_p, POINTER(c_size_t)]),
    "kv_token_to_piece": (kv_status, [_P, kv_token, c_void_p, POINTER(c_size_t)]),
    "kv_session_create": (kv_status, [_P, POINTER(kv_session_desc), POINTER(_P)]),
    "kv_session_destroy": (None, [_P]),
    "kv_prefill": (kv_status, [_P, POINTER(kv_token), c_uint32]),
    "kv_decode_step": (kv_status, [_P, POINTER(kv_token)]),
    "kv_session_reset": (kv_status, [_P]),
    "kv_session_logits": (kv_status, [_P, POINTER(c_float), c_uint32]),
    "kv_session_eval": (kv_status, [_P, POINTER(kv_token), c_uint32, POINTER(c_float), c_uint64]),
    "kv_session_set_sampler": (kv_status, [_P, POINTER(kv_sampler_desc)]),
    "kv_session_get_stats": (kv_status, [_P, POINTER(kv_session_stats)]),
    "kv_session_fork": (kv_status, [_P, POINTER(_P)]),
    "kv_session_truncate": (kv_status, [_P, c_uint32]),
    "kv_session_save": (kv_status, [_P, c_void_p, POINTER(c_size_t)]),
    "kv_session_save_file": (kv_status, [_P, c_char_p]),
    "kv_session_load": (kv_status, [_P, c_void_p, c_size_t, POINTER(_P)]),
    "kv_session_load_file": (kv_status, [_P, c_char_p, POINTER(_P)]),
    "kv_model_get_cache_stats": (kv_status, [_P, c_int32, POINTER(kv_cache_stats)]),
    "kv_decode_batch": (kv_status, [POINTER(_P), c_uint32, POINTER(kv_token), POINTER(kv_status)]),
    "kv_batch_eval": (kv_status, [POINTER(kv_batch_item), c_uint32]),
    "kv_decode_speculative": (kv_status, [_P, _P, c_uint32, POINTER(kv_token), c_uint32, POINTER(c_uint32),
                                          POINTER(c_uint32)]),
    "kv_submit_prefill": (kv_status, [_P, POINTER(kv_token), c_uint32, kv_ticket_callback, _P, POINTER(_P)]),
    "kv_submit_decode": (kv_status, [_P, kv_ticket_callback, _P, POINTER(_P)]),
    "kv_submit_decode_batch": (kv_status, [POINTER(_P), c_uint32, kv_ticket_callback, _P, POINTER(_P)]),
    "kv_ticket_wait": (kv_status, [_P, c_uint64]),
    "kv_ticket_poll": (kv_status, [_P]),
    "kv_ticket_results": (kv_status, [_P, POINTER(kv_token), POINTER(kv_status), c_uint32, POINTER(c_uint32)]),
    "kv_ticket_destroy": (None, [_P]),
    "kv_session_cancel": (kv_status, [_P]),
    "kv_session_offload": (kv_status, [_P]),
    "kv_generate": (kv_status, [_P, POINTER(kv_generate_desc), POINTER(kv_generate_result)]),
    # Constrained sampling and embeddings (since 0.2.0).
    "kv_session_set_grammar": (kv_status, [_P, c_char_p, c_char_p]),
    "kv_json_schema_to_grammar": (kv_status, [c_char_p, c_size_t, c_char_p, POINTER(c_size_t)]),
    "kv_session_embeddings": (kv_status, [_P, POINTER(kv_token), c_uint32, c_uint32, POINTER(c_float), c_uint32]),
}


# --- chat templates (since 0.2.0) -----------------------------------------------------------------
KV_CHAT_ADD_ASSISTANT_PROMPT = 1 << 0
KV_CHAT_NO_THINKING = 1 << 1


class kv_chat_message(Structure):  # since 0.2.0
    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("role", c_char_p),
        ("content", c_char_p),
    ]


_PROTOTYPES.update({
    "kv_chat_format": (kv_status, [_P, POINTER(kv_chat_message), c_uint32, c_uint32, c_void_p, POINTER(c_size_t)]),
    "kv_chat_format_template": (kv_status, [_P, c_char_p, POINTER(kv_chat_message), c_uint32, c_uint32, c_void_p,
                                            POINTER(c_size_t)]),
    "kv_model_get_chat_template": (kv_status, [_P, c_void_p, POINTER(c_size_t)]),
})

class LibraryNotFoundError(OSError):
    """libkvulkan.so could not be found or loaded; the message lists every place tried."""


_LIB_NAMES = {
    "linux": ["libkvulkan.so"],
    "darwin": ["libkvulkan.dylib"],
    "win32": ["kvulkan.dll"],
}
# What the system loader knows an installed runtime library by (its soname: only the -dev
# package installs the unversioned link).
_SYSTEM_NAMES = {
    "linux": [f"libkvulkan.so.{HEADER_VERSION_MAJOR}", "libkvulkan.so"],
    "darwin": [f"libkvulkan.{HEADER_VERSION_MAJOR}.dylib", "libkvulkan.dylib"],
    "win32": ["kvulkan.dll"],
}


def _lib_names():
    return _LIB_NAMES.get(sys.platform, ["libkvulkan.so"])


def candidate_paths():
    """Where the library is looked for, in order (the system loader comes after these)."""
    here = os.path.dirname(os.path.abspath(__file__))
    names = _lib_names()
    # Bundled in the package (a platform wheel built with KV_WHEEL_LIBRARY, see setup.py): the
    # library the wheel was built and tested with comes first.
    paths = [os.path.join(here, n) for n in names]
    env = os.environ.get("KV_LIBRARY")
    if env:
        paths.append(env)
    build = os.environ.get("KV_BUILD_DIR")
    if build:
        paths += [os.path.join(build, n) for n in names]
    # A source checkout: bindings/python/kvulkan -> <repo>/build.
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    paths += [os.path.join(repo, "build", n) for n in names]
    return paths


_lib = None
_lib_lock = threading.Lock()


def load_library(path: str | None = None):
    """Loads libkvulkan (once per process) and declares every prototype. Returns the CDLL.

    ``path`` overrides the lookup: the library bundled in this package (a platform wheel),
    KV_LIBRARY, KV_BUILD_DIR, the repository's build/ directory, then the system loader
    (LD_LIBRARY_PATH, ldconfig: the soname libkvulkan.so.0, libkvulkan.so, find_library).
    """
    global _lib
    with _lib_lock:
        if _lib is not None and path is None:
            return _lib
        tried = []
        lib = None
        candidates = [path] if path else candidate_paths()
        for p in candidates:
            if not os.path.exists(p):
                tried.append(f"{p} (absent)")
                continue
            try:
                lib = ctypes.CDLL(p)
                break
            except OSError as e:
                tried.append(f"{p} ({e})")
                if path or p == os.environ.get("KV_LIBRARY"):
                    break
        if lib is None and not path and not os.environ.get("KV_LIBRARY"):
            for name in _SYSTEM_NAMES.get(sys.platform, ["libkvulkan.so"]) + [ctypes.util.find_library("kvulkan")]:
                if not name:
                    continue
                try:
                    lib = ctypes.CDLL(name)
                    break
                except OSError as e:
                    tried.append(f"{name} via the system loader ({e})")
        if lib is None:
            raise LibraryNotFoundError(
                "cannot load the kvulkan shared library; set KV_LIBRARY to its path. Tried: " + "; ".join(tried)
            )
        try:
            for name, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(lib, name)
                fn.restype = restype
                fn.argtypes = argtypes
        except AttributeError as e:
            raise LibraryNotFoundError(f"{lib._name} is not a kvulkan library these bindings know: {e}") from None
        major = lib.kv_version() >> 22
        if major != HEADER_VERSION_MAJOR:
            raise LibraryNotFoundError(
                f"{lib._name} is kvulkan {lib.kv_version_string().decode()}, but these bindings mirror the "
                f"{HEADER_VERSION_MAJOR}.x header: incompatible ABI"
            )
        _lib = lib
        return lib


def lib():
    return _lib if _lib is not None else load_library()
