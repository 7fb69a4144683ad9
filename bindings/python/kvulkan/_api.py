"""The Pythonic layer: Runtime, Model, Session and friends over the ctypes prototypes.

Lifetimes (see README.md, "Lifetimes"): every child holds a strong reference to its parent
(Session -> Model -> Runtime), so garbage collection can never destroy a parent's native object
first. ``close()`` is idempotent. Closing a parent that still has open children *defers* the
native destroy: the parent is closed for the caller at once (new children and further calls on it
raise BadStateError) and its native object is destroyed when its last child closes. Children keep
working meanwhile. ``__del__`` simply calls ``close()``.
"""
from __future__ import annotations

import array
import ctypes
import enum
import logging
import os
import threading
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _native as N
from ._generate import GenerateStop, TextStream, _Pump
from ._errors import (
    BadStateError,
    InvalidArgumentError,
    BadTokenError,
    KvError,
    Status,
    check,
    error_for,
    status_string,
)

# ------------------------------------------------------------------------------------------------
# Versions
# ------------------------------------------------------------------------------------------------


def version() -> int:
    """kv_version(): the loaded library's packed version (KV_MAKE_VERSION layout)."""
    return int(N.lib().kv_version())


def version_string() -> str:
    """kv_version_string(), e.g. "0.1.0"."""
    return N.lib().kv_version_string().decode("ascii", "replace")


def version_tuple() -> tuple:
    """(major, minor, patch) of the loaded library."""
    v = version()
    return (v >> 22, (v >> 12) & 0x3FF, v & 0xFFF)


# ------------------------------------------------------------------------------------------------
# Enums and flags
# ------------------------------------------------------------------------------------------------


class LogLevel(enum.IntEnum):
    DEBUG = N.KV_LOG_DEBUG
    INFO = N.KV_LOG_INFO
    WARNING = N.KV_LOG_WARNING
    ERROR = N.KV_LOG_ERROR
    VALIDATION = N.KV_LOG_VALIDATION  # a Vulkan validation-layer message: a bug


class DeviceType(enum.IntEnum):
    OTHER = 0
    INTEGRATED_GPU = 1
    DISCRETE_GPU = 2
    VIRTUAL_GPU = 3
    CPU = 4


class Feature(enum.IntFlag):
    SHADER_FLOAT16 = 1 << 0
    STORAGE_16BIT = 1 << 1
    STORAGE_8BIT = 1 << 2
    SHADER_INT8 = 1 << 3
    INTEGER_DOT_PRODUCT = 1 << 4
    COOPMAT_NV = 1 << 5
    COOPMAT_KHR = 1 << 6
    MEMORY_BUDGET = 1 << 7
    SUBGROUP_SIZE_CONTROL = 1 << 8
    TIMESTAMPS = 1 << 9
    UNIFIED_MEMORY = 1 << 10
    SHADER_INT64 = 1 << 11
    TIMELINE_SEMAPHORE = 1 << 12  # since 0.2.0
    GLOBAL_PRIORITY = 1 << 13  # since 0.2.0


class SubgroupOp(enum.IntFlag):
    BASIC = 1 << 0
    VOTE = 1 << 1
    ARITHMETIC = 1 << 2
    BALLOT = 1 << 3
    SHUFFLE = 1 << 4
    SHUFFLE_RELATIVE = 1 << 5
    CLUSTERED = 1 << 6
    QUAD = 1 << 7


class CacheType(enum.IntEnum):
    F16 = N.KV_CACHE_F16
    F32 = N.KV_CACHE_F32
    Q8_0 = N.KV_CACHE_Q8_0  # 8-bit values + an fp16 scale per 32: about half of F16's memory
    Q4_0 = N.KV_CACHE_Q4_0  # 4-bit values + an fp16 scale per 32: about a quarter


def _enum_or_int(cls, value):
    try:
        return cls(value)
    except ValueError:
        return int(value)


# ------------------------------------------------------------------------------------------------
# Logging
# ------------------------------------------------------------------------------------------------

LogCallback = Callable[[LogLevel, str], None]

_PY_LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.VALIDATION: logging.ERROR,
}


def logging_callback(level: LogLevel, message: str) -> None:
    """A ready-made log callback forwarding to the standard ``logging`` module, logger
    "kvulkan" (validation-layer messages at ERROR)."""
    logging.getLogger("kvulkan").log(_PY_LEVELS.get(level, logging.WARNING), "%s", message)


def _make_log_thunk(fn: Optional[LogCallback]):
    """Wraps a Python callable as a kv_log_fn. The returned object must stay referenced for as
    long as the library may call it (the runtime keeps it until its native destroy returns)."""
    if fn is None:
        return None
    if not callable(fn):
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "log_callback must be callable")

    def thunk(_user_data, level, message):
        # Called from any kvulkan thread; nothing may propagate back into C.
        try:
            text = ctypes.string_at(message).decode("utf-8", "replace") if message else ""
            fn(_enum_or_int(LogLevel, level), text)
        except BaseException:  # noqa: BLE001 - an exception must never unwind into the library
            try:
                traceback.print_exc()
            except BaseException:  # noqa: BLE001 - interpreter shutting down
                pass

    return N.kv_log_fn(thunk)


# ------------------------------------------------------------------------------------------------
# Plain-data results
# ------------------------------------------------------------------------------------------------


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class MemoryHeap:
    size: int
    budget: int
    usage: int
    device_local: bool


@dataclass(frozen=True)
class DeviceInfo:
    """kv_device_info as Python values."""

    index: int
    device_name: str
    driver_name: str
    driver_info: str
    device_type: DeviceType
    vendor_id: int
    device_id: int
    api_version: int
    driver_version: int
    features: Feature
    subgroup_size: int
    subgroup_size_min: int
    subgroup_size_max: int
    subgroup_ops: SubgroupOp
    max_storage_buffer_range: int
    max_allocation_size: int
    max_shared_memory: int
    max_workgroup_invocations: int
    max_workgroup_count_x: int
    memory_heaps: List[MemoryHeap]
    timestamp_period_ns: float
    # Since 0.2.0, the runtime's queue as granted (Runtime.get_info; 0 from enumerate_devices):
    queue_family: int = 0
    queue_flags: int = 0  # KV_QUEUE_* bits
    queue_priority: float = 0.0
    global_priority: int = 0  # KV_GLOBAL_PRIORITY_* value
    gpu_budget_us: int = 0

    @property
    def api_version_tuple(self) -> tuple:
        """(major, minor, patch) of api_version (VK_MAKE_API_VERSION layout)."""
        v = self.api_version
        return ((v >> 22) & 0x7F, (v >> 12) & 0x3FF, v & 0xFFF)

    @classmethod
    def _from_c(cls, c: N.kv_device_info) -> "DeviceInfo":
        n = min(int(c.memory_heap_count), N.KV_MAX_MEMORY_HEAPS)
        heaps = [
            MemoryHeap(int(h.size), int(h.budget), int(h.usage), bool(h.device_local))
            for h in c.memory_heaps[:n]
        ]
        return cls(
            index=int(c.index),
            device_name=_s(c.device_name),
            driver_name=_s(c.driver_name),
            driver_info=_s(c.driver_info),
            device_type=_enum_or_int(DeviceType, c.device_type),
            vendor_id=int(c.vendor_id),
            device_id=int(c.device_id),
            api_version=int(c.api_version),
            driver_version=int(c.driver_version),
            features=Feature(c.features),
            subgroup_size=int(c.subgroup_size),
            subgroup_size_min=int(c.subgroup_size_min),
            subgroup_size_max=int(c.subgroup_size_max),
            subgroup_ops=SubgroupOp(c.subgroup_ops),
            max_storage_buffer_range=int(c.max_storage_buffer_range),
            max_allocation_size=int(c.max_allocation_size),
            max_shared_memory=int(c.max_shared_memory),
            max_workgroup_invocations=int(c.max_workgroup_invocations),
            max_workgroup_count_x=int(c.max_workgroup_count_x),
            memory_heaps=heaps,
            timestamp_period_ns=float(c.timestamp_period_ns),
            queue_family=int(c.queue_family),
            queue_flags=int(c.queue_flags),
            queue_priority=float(c.queue_priority),
            global_priority=int(c.global_priority),
            gpu_budget_us=int(c.gpu_budget_us),
        )


@dataclass(frozen=True)
class BandwidthResult:
    bytes: int
    read_gbps: float
    copy_gbps: float
    write_gbps: float


@dataclass(frozen=True)
class ModelInfo:
    """kv_model_info as Python values."""

    on_device: bool
    architecture: str
    name: str
    weight_types: str
    n_params: int
    weight_bytes: int
    file_size: int
    device_bytes: int
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx_train: int
    rope_neox: bool
    rope_freq_base: float
    tied_output: bool


@dataclass(frozen=True)
class SessionStats:
    """kv_session_stats as Python values."""

    n_tokens: int
    n_ctx: int
    page_size: int
    kv_bytes: int
    kv_bytes_per_token: int
    tokens_prefilled: int
    tokens_decoded: int
    last_prefill_ms: float
    last_prefill_tokens: int
    last_decode_ms: float
    total_prefill_ms: float
    total_decode_ms: float
    scratch_bytes: int
    pages: int  # KV pages this session holds (shared ones included)
    shared_pages: int  # ... of which other sessions hold too (prefix hits, forks)
    prefix_hit_tokens: int  # prompt tokens reused from cached pages instead of computed
    forward_passes: int = 0  # forward passes this session took part in (since 0.2.0)
    submissions: int = 0  # GPU submissions of those passes (since 0.2.0; see gpu_budget_us)
    last_pass_submissions: int = 0  # ... of the last one
    # Layer groups (gemma2, gemma3: windowed layers' pages released as the window moves on).
    window_layer_pages: int = 0  # pages the windowed layers hold now (0: no such group)
    window_layers: int = 0  # layers in that group
    window_layer_pages_released: int = 0  # ... released, since creation or reset
    pages_released: int = 0  # pages released by the session's own window (kv_session_desc.window)


@dataclass(frozen=True)
class CacheStats:
    """kv_cache_stats as Python values: a model's KV page pool of one cache type."""

    cache_type: CacheType
    page_size: int  # tokens per page
    pages_total: int  # pool capacity (0: no session of this type was created yet)
    pages_in_use: int  # held by sessions
    pages_cached: int  # held by nobody, kept for prefix reuse, evicted when needed (LRU)
    pages_free: int
    page_bytes: int  # device bytes of one page across all layers, K and V
    device_bytes: int  # device bytes of the whole pool
    prefix_lookups: int  # pages looked up for prefix reuse
    prefix_hits: int  # ... and found
    evictions: int  # cached pages dropped to make room


@dataclass(frozen=True)
class Sampler:
    """kv_sampler_desc. The defaults are KV_SAMPLER_DESC_INIT: greedy (argmax on the GPU).

    Applied in this order: logit bias and banned tokens, the session's grammar
    (Session.set_grammar), repetition penalty over the last ``repeat_last_n`` tokens, top-k,
    temperature, softmax, min-p, top-p, draw. ``temperature <= 0`` is greedy.

    ``logit_bias``: {token: bias} added to the logits (-inf bans); ``banned_tokens``: tokens never
    sampled. Either makes the session sample on the host (greedy included)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int = 0
    logit_bias: Optional[Dict[int, float]] = None
    banned_tokens: Optional[Tuple[int, ...]] = None

    @classmethod
    def greedy(cls) -> "Sampler":
        return cls()

    def _to_c(self) -> N.kv_sampler_desc:
        d = N.sampler_desc_init()
        d.temperature = float(self.temperature)
        d.top_k = int(self.top_k)
        d.top_p = float(self.top_p)
        d.min_p = float(self.min_p)
        d.repeat_penalty = float(self.repeat_penalty)
        d.repeat_last_n = _unsigned("repeat_last_n", self.repeat_last_n, 32)
        d.seed = int(self.seed) & 0xFFFFFFFFFFFFFFFF  # any int: only its low 64 bits matter
        # Arrays assigned to pointer fields stay alive with the struct (ctypes keeps them in
        # d._objects); the library copies them during the call.
        if self.logit_bias:
            items = list(self.logit_bias.items())
            arr = (N.kv_logit_bias * len(items))()
            for i, (tok, bias) in enumerate(items):
                arr[i].token = int(tok)
                arr[i].bias = float(bias)
            d.logit_bias = arr
            d.n_logit_bias = len(items)
        if self.banned_tokens:
            toks = [int(t) for t in self.banned_tokens]
            d.banned_tokens = (ctypes.c_int32 * len(toks))(*toks)
            d.n_banned_tokens = len(toks)
        return d


def json_schema_to_grammar(schema) -> str:
    """kv_json_schema_to_grammar: GBNF (root rule "root") for the JSON a schema accepts. ``schema``
    is JSON text (str or bytes) or a dict. Unsupported keywords raise UnsupportedError."""
    if isinstance(schema, dict):
        import json  # noqa: PLC0415

        schema = json.dumps(schema)
    data = schema.encode("utf-8") if isinstance(schema, str) else bytes(schema)
    lib = N.lib()
    size = ctypes.c_size_t(0)
    st = check(lib.kv_json_schema_to_grammar(data, len(data), None, ctypes.byref(size)))
    if st != N.KV_INCOMPLETE:  # pragma: no cover - the text always needs its NUL at least
        return ""
    buf = ctypes.create_string_buffer(size.value)
    check(lib.kv_json_schema_to_grammar(data, len(data), buf, ctypes.byref(size)))
    return buf.value.decode("utf-8")


def _sampler(value) -> Optional[Sampler]:
    if value is None or isinstance(value, Sampler):
        return value
    if isinstance(value, dict):
        return Sampler(**value)
    raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "sampler must be a kvulkan.Sampler, a dict or None")


# ------------------------------------------------------------------------------------------------
# Buffers
# ------------------------------------------------------------------------------------------------

assert array.array("i").itemsize == 4 and array.array("f").itemsize == 4


def _numpy():
    try:
        import numpy  # noqa: PLC0415 - optional dependency
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("numpy=True needs numpy, which is not installed") from e
    return numpy


def _token_array(tokens) -> array.array:
    if isinstance(tokens, (str, bytes)):
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "expected token ids, not text (use Model.tokenize)")
    if isinstance(tokens, int):
        tokens = (tokens,)
    try:
        return array.array("i", (int(t) for t in tokens))
    except OverflowError as e:
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, f"a token id is out of the int32 range: {e}") from None


def _first_capacity(estimate: int) -> int:
    """The first capacity of a two-call (KV_INCOMPLETE) output buffer; tests shrink it to 1 to
    exercise the retry."""
    return max(estimate, 1)


def _unsigned(name: str, value, bits: int) -> int:
    """An unsigned C field from a Python int, refusing what ctypes would silently wrap."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value.__index__())
        except AttributeError:
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, f"{name} must be an integer, not {value!r}") from None
    if not 0 <= value < (1 << bits):
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, f"{name} = {value} is outside [0, 2^{bits})")
    return value


def _ptr(arr: array.array, ctype):
    """A ctypes pointer to an array.array's storage (NULL for an empty array)."""
    if len(arr) == 0:
        return None
    addr, _ = arr.buffer_info()
    return ctypes.cast(addr, ctypes.POINTER(ctype))


def _byte_buffer(source, what: str):
    """(keepalive, address, size) of a bytes-like object's bytes, without a copy for bytes and
    writable contiguous buffers. ``keepalive`` must stay referenced while the library reads."""
    try:
        mv = memoryview(source)
    except TypeError:
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, what) from None
    if isinstance(source, bytes):
        return source, ctypes.cast(ctypes.c_char_p(source), ctypes.c_void_p).value, mv.nbytes
    mv = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
    if mv.readonly:
        buf = mv.tobytes()
        return buf, ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value, len(buf)
    buf = (ctypes.c_char * mv.nbytes).from_buffer(mv)
    return buf, ctypes.addressof(buf), mv.nbytes


# ------------------------------------------------------------------------------------------------
# Lifetime bookkeeping
# ------------------------------------------------------------------------------------------------


class _Object:
    """A native handle, its parent, and the deferred-close protocol described in the module doc."""

    _kind = "object"

    def __init__(self):
        # Set first so that __del__ of a half-constructed object is harmless.
        self._handle: Optional[int] = None
        self._destroy_fn = None
        self._parent: Optional[_Object] = None
        self._closed = False
        self._live_children = 0
        self._lock = threading.RLock()

    def _attach(self, handle: int, destroy_fn, parent: Optional["_Object"]) -> None:
        self._handle = handle
        self._destroy_fn = destroy_fn  # kept: module globals may be gone at interpreter exit
        self._parent = parent
        if parent is not None:
            with parent._lock:
                parent._live_children += 1

    @property
    def closed(self) -> bool:
        """True once close() was called (the native object may outlive it: see close())."""
        return self._closed

    def _h(self) -> int:
        """The native handle, or BadStateError when closed."""
        if self._closed or self._handle is None:
            raise BadStateError(N.KV_ERR_BAD_STATE, f"the {self._kind} is closed")
        return self._handle

    def close(self) -> None:
        """Releases the native object. Idempotent. A parent with open children is closed for
        the caller now and destroyed natively when its last child closes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._release_if_unused()

    def _release_if_unused(self) -> None:
        with self._lock:
            if not self._closed or self._live_children > 0 or self._handle is None:
                return
            handle, self._handle = self._handle, None
            self._destroy_fn(handle)
            self._on_destroyed()
            parent = self._parent
        if parent is not None:
            parent._child_released()

    def _on_destroyed(self) -> None:
        pass

    def _child_released(self) -> None:
        with self._lock:
            self._live_children -= 1
        self._release_if_unused()

    def _check_open_for_children(self) -> int:
        return self._h()

    def __enter__(self):
        self._h()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except BaseException:  # noqa: BLE001 - never raise from a finalizer
            pass


# ------------------------------------------------------------------------------------------------
# Devices and runtime
# ------------------------------------------------------------------------------------------------


def _runtime_desc(
    *,
    device=None,
    validation: bool = False,
    ignore_environment: bool = False,
    memory_budget: int = 0,
    log_thunk=None,
    flags: int = 0,
    vk_instance: int = 0,
    vk_physical_device: int = 0,
    vk_device: int = 0,
    vk_queue: int = 0,
    vk_queue_family: int = 0,
    vk_api_version: int = 0,
    pipeline_cache_path=None,
    vk_timeline_semaphore: bool = False,
    gpu_budget_us: int = 0,
    queue_priority: float = 0.0,
    global_priority: int = 0,
):
    d = N.runtime_desc_init()
    d.vk_timeline_semaphore = 1 if vk_timeline_semaphore else 0
    d.gpu_budget_us = _unsigned("gpu_budget_us", gpu_budget_us, 32)
    d.queue_priority = float(queue_priority)
    d.global_priority = _unsigned("global_priority", global_priority, 32)
    f = int(flags)
    if validation:
        f |= N.KV_RUNTIME_VALIDATION
    if ignore_environment:
        f |= N.KV_RUNTIME_IGNORE_ENVIRONMENT
    d.flags = f
    name_bytes = None
    if isinstance(device, DeviceInfo):
        device = device.index
    if device is None:
        pass
    elif isinstance(device, bool):
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "device must be an index, a name substring or None")
    elif isinstance(device, int):
        if device < 0:
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, f"device index {device} is negative")
        d.device_index = device
    elif isinstance(device, str):
        name_bytes = device.encode("utf-8")
        d.device_name = name_bytes
    else:
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "device must be an index, a name substring or None")
    if log_thunk is not None:
        d.log_callback = log_thunk
    d.memory_budget = _unsigned("memory_budget", memory_budget, 64)
    d.vk_instance = vk_instance or None
    d.vk_physical_device = vk_physical_device or None
    d.vk_device = vk_device or None
    d.vk_queue = vk_queue or None
    d.vk_queue_family = _unsigned("vk_queue_family", vk_queue_family, 32)
    d.vk_api_version = _unsigned("vk_api_version", vk_api_version, 32)
    if pipeline_cache_path is not None:
        path_bytes = os.fsencode(pipeline_cache_path)
        if b"\0" in path_bytes:
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "pipeline_cache_path contains a NUL byte")
        d.pipeline_cache_path = path_bytes or None
        name_bytes = (name_bytes, path_bytes)  # both kept alive by the caller until the create call
    return d, name_bytes


def enumerate_devices(
    *, validation: bool = False, ignore_environment: bool = False, log_callback: Optional[LogCallback] = None
) -> List[DeviceInfo]:
    """kv_enumerate_devices: the Vulkan devices kvulkan can use, in index order."""
    lib = N.lib()
    thunk = _make_log_thunk(log_callback)
    desc, _keep = _runtime_desc(validation=validation, ignore_environment=ignore_environment, log_thunk=thunk)
    for _ in range(8):  # devices may appear between the two calls: KV_INCOMPLETE asks again
        count = ctypes.c_uint32(0)
        check(lib.kv_enumerate_devices(ctypes.byref(desc), None, ctypes.byref(count)))
        n = count.value
        if n == 0:
            return []
        infos = (N.kv_device_info * n)()
        for info in infos:
            info.struct_size = ctypes.sizeof(N.kv_device_info)
        count.value = n
        st = check(lib.kv_enumerate_devices(ctypes.byref(desc), infos, ctypes.byref(count)))
        if st != N.KV_INCOMPLETE:
            return [DeviceInfo._from_c(infos[i]) for i in range(count.value)]
    raise KvError(N.KV_ERR_INTERNAL, "the device list kept changing during enumeration")


class Runtime(_Object):
    """A kv_runtime: Vulkan instance, device, compute queue, memory pools, pipeline cache.

    ``device``: an index into enumerate_devices(), a case-insensitive name substring, a
    DeviceInfo, or None (KV_DEVICE, else the best by type). ``validation=True`` forces the
    Khronos validation layer on (KV_VALIDATION=1 also turns it on unless ``ignore_environment``).
    ``memory_budget`` caps the device bytes the runtime may hold (0: no cap).
    ``log_callback(level: LogLevel, message: str)`` may be called from any thread; it is kept
    alive by the Runtime until the native runtime is destroyed (``kvulkan.logging_callback``
    forwards to the ``logging`` module). The vk_* arguments adopt a host application's Vulkan
    objects, as raw handle integers (see kv_runtime_desc in kvulkan.h). ``pipeline_cache_path``:
    a file that keeps compiled pipelines across runs (read here, written back when the runtime is
    closed; a stale or corrupt file is ignored with a log message and replaced).
    Scheduling beside a renderer (see kvulkan.h): ``gpu_budget_us`` (GPU time per submission, 0:
    none), ``queue_priority`` (0..1, 0: 1.0) and ``global_priority`` (KV_GLOBAL_PRIORITY_* value)
    for a device kvulkan creates, ``vk_timeline_semaphore=True`` when an adopted device has
    timeline semaphores enabled. get_info() reports what was granted.
    """

    _kind = "runtime"

    def __init__(
        self,
        device: Union[int, str, DeviceInfo, None] = None,
        *,
        validation: bool = False,
        ignore_environment: bool = False,
        memory_budget: int = 0,
        log_callback: Optional[LogCallback] = None,
        flags: int = 0,
        vk_instance: int = 0,
        vk_physical_device: int = 0,
        vk_device: int = 0,
        vk_queue: int = 0,
        vk_queue_family: int = 0,
        vk_api_version: int = 0,
        pipeline_cache_path: Union[str, bytes, "os.PathLike[str]", None] = None,
        vk_timeline_semaphore: bool = False,
        gpu_budget_us: int = 0,
        queue_priority: float = 0.0,
        global_priority: int = 0,
    ):
        super().__init__()
        lib = N.lib()
        # Referenced by the Runtime for its whole life: the library may call it until
        # kv_runtime_destroy returns (validation messages arrive during teardown too).
        self._log_thunk = _make_log_thunk(log_callback)
        self._log_callback = log_callback
        desc, _name = _runtime_desc(
            device=device,
            validation=validation,
            ignore_environment=ignore_environment,
            memory_budget=memory_budget,
            log_thunk=self._log_thunk,
            flags=flags,
            vk_instance=vk_instance,
            vk_physical_device=vk_physical_device,
            vk_device=vk_device,
            vk_queue=vk_queue,
            vk_queue_family=vk_queue_family,
            vk_api_version=vk_api_version,
            pipeline_cache_path=pipeline_cache_path,
            vk_timeline_semaphore=vk_timeline_semaphore,
            gpu_budget_us=gpu_budget_us,
            queue_priority=queue_priority,
            global_priority=global_priority,
        )
        out = ctypes.c_void_p()
        check(lib.kv_runtime_create(ctypes.byref(desc), ctypes.byref(out)))
        self._attach(out.value, lib.kv_runtime_destroy, None)
        self._info_cache: Optional[DeviceInfo] = None

    def get_info(self) -> DeviceInfo:
        """kv_runtime_get_info: the device, with heap usage and budget read now."""
        info = N.new_struct(N.kv_device_info)
        check(N.lib().kv_runtime_get_info(self._h(), ctypes.byref(info)))
        return DeviceInfo._from_c(info)

    info = get_info

    @property
    def device_name(self) -> str:
        if self._info_cache is None:
            self._info_cache = self.get_info()
        return self._info_cache.device_name

    def validation_message_count(self) -> int:
        """Validation-layer messages received so far (0 when validation is off)."""
        return int(N.lib().kv_runtime_validation_message_count(self._h()))

    def timeline_semaphore(self) -> Tuple[int, int]:
        """kv_runtime_timeline_semaphore: (VkSemaphore handle, value of the last submission so far).
        The host's GPU work waits on it to come after kvulkan's. UnsupportedError without
        timeline semaphores."""
        sem = ctypes.c_uint64(0)
        value = ctypes.c_uint64(0)
        check(N.lib().kv_runtime_timeline_semaphore(self._h(), ctypes.byref(sem), ctypes.byref(value)))
        return int(sem.value), int(value.value)

    def wait_semaphore(self, vk_semaphore: int, value: int) -> None:
        """kv_runtime_wait_semaphore: every later kvulkan submission waits on the GPU for the host's
        timeline semaphore (a raw VkSemaphore handle) to reach ``value`` (0: forget it)."""
        check(
            N.lib().kv_runtime_wait_semaphore(
                self._h(), _unsigned("vk_semaphore", vk_semaphore, 64), _unsigned("value", value, 64)
            )
        )

    def measure_bandwidth(self, bytes: int = 0, iterations: int = 0) -> BandwidthResult:  # noqa: A002
        """kv_runtime_measure_bandwidth: device-memory bandwidth on a ``bytes``-byte buffer
        (0: a size that defeats caches), best of ``iterations`` (0: 10)."""
        r = N.new_struct(N.kv_bandwidth_result)
        check(
            N.lib().kv_runtime_measure_bandwidth(
                self._h(), _unsigned("bytes", bytes, 64), _unsigned("iterations", iterations, 32), ctypes.byref(r)
            )
        )
        return BandwidthResult(int(r.bytes), float(r.read_gbps), float(r.copy_gbps), float(r.write_gbps))

    def load_model(
        self,
        source,
        *,
        copy_data: bool = True,
        kv_page_size: Optional[int] = None,
        kv_pool_tokens: Optional[int] = None,
        vocab_only: bool = False,
    ) -> "Model":
        """Model(source, runtime=self, ...)."""
        return Model(
            source,
            self,
            copy_data=copy_data,
            kv_page_size=kv_page_size,
            kv_pool_tokens=kv_pool_tokens,
            vocab_only=vocab_only,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kvulkan.Runtime {state} handle=0x{self._handle or 0:x}>"


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


class Model(_Object):
    """A kv_model: a GGUF file's architecture, tokenizer and weights.

    ``source`` is a path (str / os.PathLike) or the file's bytes (bytes, bytearray, memoryview or
    any contiguous buffer). With a ``runtime`` the weights are uploaded to its device; without,
    the file is only parsed (info and tokenization work, sessions raise BadStateError).
    ``copy_data=False`` lets the library use an in-memory buffer in place; the Model then keeps
    a reference to the buffer (a bytearray cannot be resized meanwhile).

    The KV cache is paged: fixed-size pages of tokens in device pools shared by all sessions of
    the model (one pool per cache type, created with its first session). ``kv_page_size``:
    tokens per page (None: the library's default, 16; 1..1024). ``kv_pool_tokens``: capacity of
    each pool in tokens (None: max(16384, the first session's n_ctx), within what the device can
    bind). ``cache_stats()`` reports a pool; ``load_session()`` restores a saved session.

    ``vocab_only=True`` (KV_MODEL_VOCAB_ONLY) loads the vocabulary and tokenizer alone: any
    architecture whose tokenizer kvulkan supports loads, vocab-only GGUFs included, no weight is
    read and a ``runtime`` is not used. Tokenizing, detokenizing and the special tokens work;
    ``info()`` fills architecture (as the file writes it), name, n_vocab and file_size and leaves
    the rest 0; sessions raise BadStateError.
    """

    _kind = "model"

    def __init__(
        self,
        source,
        runtime: Optional[Runtime] = None,
        *,
        copy_data: bool = True,
        kv_page_size: Optional[int] = None,
        kv_pool_tokens: Optional[int] = None,
        vocab_only: bool = False,
    ):
        super().__init__()
        lib = N.lib()
        if runtime is not None and not isinstance(runtime, Runtime):
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "runtime must be a kvulkan.Runtime or None")
        self.vocab_only = bool(vocab_only)
        desc = N.model_desc_init()
        desc.flags = N.KV_MODEL_VOCAB_ONLY if self.vocab_only else 0
        desc.kv_page_size = 0 if kv_page_size is None else _unsigned("kv_page_size", kv_page_size, 32)
        desc.kv_pool_tokens = 0 if kv_pool_tokens is None else _unsigned("kv_pool_tokens", kv_pool_tokens, 32)
        self._data_keepalive = None
        self.path: Optional[str] = None
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            desc.path = os.fsencode(self.path)
        else:
            buf, addr, nbytes = _byte_buffer(source, "source must be a path or a bytes-like object")
            desc.data = addr
            desc.size = nbytes
            desc.copy_data = 1 if copy_data else 0
            # `buf` stays referenced across kv_model_load; without copy_data the library reads it
            # for the model's whole life, so the model keeps it.
            self._data_keepalive = None if copy_data else buf
        rt_handle = runtime._check_open_for_children() if runtime is not None else None
        out = ctypes.c_void_p()
        check(lib.kv_model_load(rt_handle, ctypes.byref(desc), ctypes.byref(out)))
        self._attach(out.value, lib.kv_model_destroy, runtime)
        self._info = self._get_info()

    def _on_destroyed(self) -> None:
        self._data_keepalive = None

    @property
    def runtime(self) -> Optional[Runtime]:
        return self._parent  # type: ignore[return-value]

    def _get_info(self) -> ModelInfo:
        c = N.new_struct(N.kv_model_info)
        check(N.lib().kv_model_get_info(self._h(), ctypes.byref(c)))
        return ModelInfo(
            on_device=bool(c.on_device),
            architecture=_s(c.architecture),
            name=_s(c.name),
            weight_types=_s(c.weight_types),
            n_params=int(c.n_params),
            weight_bytes=int(c.weight_bytes),
            file_size=int(c.file_size),
            device_bytes=int(c.device_bytes),
            n_vocab=int(c.n_vocab),
            n_embd=int(c.n_embd),
            n_layer=int(c.n_layer),
            n_head=int(c.n_head),
            n_head_kv=int(c.n_head_kv),
            head_dim=int(c.head_dim),
            n_ff=int(c.n_ff),
            n_ctx_train=int(c.n_ctx_train),
            rope_neox=bool(c.rope_neox),
            rope_freq_base=float(c.rope_freq_base),
            tied_output=bool(c.tied_output),
        )

    def get_info(self) -> ModelInfo:
        """kv_model_get_info."""
        return self._get_info()

    info = get_info

    @property
    def n_vocab(self) -> int:
        return self._info.n_vocab

    @property
    def bos(self) -> Optional[int]:
        """The BOS token id, or None when the model has none."""
        t = int(N.lib().kv_model_token_bos(self._h()))
        return None if t < 0 else t

    @property
    def eos(self) -> Optional[int]:
        """The EOS token id, or None when the model has none."""
        t = int(N.lib().kv_model_token_eos(self._h()))
        return None if t < 0 else t

    def is_eog(self, token: int) -> bool:
        """True when ``token`` ends generation (EOS, EOT, ...); False for invalid ids."""
        token = int(token)
        if not -(2**31) <= token < 2**31:
            return False
        return bool(N.lib().kv_token_is_eog(self._h(), token))

    def tokenize(self, text: Union[str, bytes], *, add_special: bool = True, parse_special: bool = False) -> List[int]:
        """kv_tokenize: UTF-8 text (str or bytes) to token ids. ``add_special`` adds BOS (and
        EOS) as the model's metadata asks; ``parse_special`` maps control-token text (e.g.
        "<|im_start|>") to those tokens."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        flags = (N.KV_TOKENIZE_ADD_SPECIAL if add_special else 0) | (N.KV_TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        h = self._h()
        lib = N.lib()
        cap = _first_capacity(len(data) + 8)  # >= the token count: at most one per byte + specials
        for _ in range(4):
            buf = (ctypes.c_int32 * cap)()
            n = ctypes.c_uint32(cap)
            st = check(lib.kv_tokenize(h, data, len(data), flags, buf, ctypes.byref(n)))
            if st != N.KV_INCOMPLETE:
                return list(buf[: n.value])
            cap = n.value  # the two-call protocol: now we know the count
        raise KvError(N.KV_ERR_INTERNAL, "kv_tokenize kept answering KV_INCOMPLETE")

    def _bytes_call(self, call, guess: int) -> bytes:
        cap = _first_capacity(max(guess, 16))
        for _ in range(4):
            buf = ctypes.create_string_buffer(cap)
            n = ctypes.c_size_t(cap)
            st = check(call(buf, ctypes.byref(n)))
            if st != N.KV_INCOMPLETE:
                return buf.raw[: n.value]
            cap = n.value
        raise KvError(N.KV_ERR_INTERNAL, "the library kept answering KV_INCOMPLETE")

    def detokenize_bytes(self, tokens: Iterable[int]) -> bytes:
        """kv_detokenize: token ids to their bytes (possibly not valid UTF-8)."""
        arr = _token_array(tokens)
        h = self._h()
        lib = N.lib()
        p = _ptr(arr, ctypes.c_int32)
        return self._bytes_call(lambda buf, n: lib.kv_detokenize(h, p, len(arr), buf, n), 8 * len(arr))

    def detokenize(self, tokens: Iterable[int], errors: str = "replace") -> str:
        """kv_detokenize, decoded as UTF-8 (invalid bytes handled per ``errors``)."""
        return self.detokenize_bytes(tokens).decode("utf-8", errors)

    def token_to_piece(self, token: int) -> bytes:
        """kv_token_to_piece: one token's bytes, for streaming (control tokens give b"").
        A piece may be part of a UTF-8 sequence: decode a stream with an incremental decoder
        (Session.generate_text does)."""
        token = int(token)
        if not -(2**31) <= token < 2**31:
            raise BadTokenError(N.KV_ERR_BAD_TOKEN, f"token id {token} is out of the int32 range")
        h = self._h()
        lib = N.lib()
        return self._bytes_call(lambda buf, n: lib.kv_token_to_piece(h, token, buf, n), 32)

    @property
    def chat_template(self) -> Optional[str]:
        """kv_model_get_chat_template: the model's tokenizer.chat_template, or None without one."""
        h = self._h()
        lib = N.lib()
        text = self._bytes_call(lambda buf, n: lib.kv_model_get_chat_template(h, buf, n), 4096)
        return text.decode("utf-8", "replace") if text else None

    def chat_format(
        self,
        messages,
        add_assistant_prompt: bool = True,
        *,
        template: Optional[str] = None,
        thinking: Optional[bool] = None,
    ) -> str:
        """kv_chat_format: a conversation as the prompt text the model was trained on, rendered by
        its own chat template (or ``template``, Jinja source, through kv_chat_format_template).

        ``messages``: dicts with "role" and "content" (or (role, content) pairs).
        ``add_assistant_prompt``: end with the opening of the assistant's turn.
        ``thinking=False``: enable_thinking=false for templates with a reasoning switch (Qwen3);
        None leaves the template's default. Tokenize the result with ``parse_special=True`` and
        ``add_special=False`` (the text holds the template's special tokens, BOS included).
        Raises UnsupportedError when the model has no template or the template uses a Jinja
        construct kvulkan does not implement, InvalidArgumentError when the template rejects
        the messages (its raise_exception text is the message)."""
        if isinstance(messages, dict):
            raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
        keep = []  # the encoded strings, alive for the call
        items = list(messages)
        arr = (N.kv_chat_message * max(1, len(items)))()
        for i, m in enumerate(items):
            role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
            if not isinstance(role, str) or not isinstance(content, str):
                raise TypeError(f"messages[{i}]: role and content must be str")
            r, c = role.encode("utf-8"), content.encode("utf-8")
            if b"\0" in r or b"\0" in c:
                raise ValueError(f"messages[{i}]: role and content must not contain NUL characters")
            keep += [r, c]
            arr[i].struct_size = ctypes.sizeof(N.kv_chat_message)
            arr[i].role = r
            arr[i].content = c
        flags = (N.KV_CHAT_ADD_ASSISTANT_PROMPT if add_assistant_prompt else 0) | (
            N.KV_CHAT_NO_THINKING if thinking is False else 0)
        h = self._h()
        lib = N.lib()
        if template is None:
            call = lambda buf, n: lib.kv_chat_format(h, arr, len(items), flags, buf, n)  # noqa: E731
        else:
            src = template.encode("utf-8")
            call = lambda buf, n: lib.kv_chat_format_template(h, src, arr, len(items), flags, buf, n)  # noqa: E731
        guess = sum(len(x) for x in keep) + 256
        return self._bytes_call(call, guess).decode("utf-8", "replace")

    def session(self, **kwargs) -> "Session":
        """Session(self, **kwargs)."""
        return Session(self, **kwargs)

    def load_session(self, source) -> "Session":
        """kv_session_load / kv_session_load_file: a Session of this model restored from an
        image made by Session.save() (bytes, bytearray, memoryview or any bytes-like object) or
        Session.save_file() (a path: str or os.PathLike). It has the saved tokens, KV pages,
        logits, settings and sampler state: the same logits and next tokens as the original.
        A truncated or corrupted image, or one of another model, raises BadModelError (the
        message names what is wrong); a newer image format raises UnsupportedError; an
        unreadable file KvIOError."""
        lib = N.lib()
        out = ctypes.c_void_p()
        if isinstance(source, (str, os.PathLike)):
            path = os.fsencode(os.fspath(source))
            check(lib.kv_session_load_file(self._check_open_for_children(), path, ctypes.byref(out)))
        else:
            buf, addr, nbytes = _byte_buffer(
                source, "source must be a saved session's bytes or the path of a saved session file"
            )
            check(lib.kv_session_load(self._check_open_for_children(), addr, nbytes, ctypes.byref(out)))
            del buf  # read during the call only
        return Session._adopt(self, out.value, None)

    def cache_stats(self, cache_type: Union[str, int] = "f16") -> CacheStats:
        """kv_model_get_cache_stats: the model's KV page pool of ``cache_type`` ("f16", "f32",
        "q8_0", "q4_0" or a CacheType). ``pages_total`` is 0 until a session of that type was
        created."""
        ct = _cache_type(cache_type)
        c = N.new_struct(N.kv_cache_stats)
        check(N.lib().kv_model_get_cache_stats(self._h(), ct, ctypes.byref(c)))
        return CacheStats(
            cache_type=_enum_or_int(CacheType, ct),
            page_size=int(c.page_size),
            pages_total=int(c.pages_total),
            pages_in_use=int(c.pages_in_use),
            pages_cached=int(c.pages_cached),
            pages_free=int(c.pages_free),
            page_bytes=int(c.page_bytes),
            device_bytes=int(c.device_bytes),
            prefix_lookups=int(c.prefix_lookups),
            prefix_hits=int(c.prefix_hits),
            evictions=int(c.evictions),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        where = "vocab-only" if self.vocab_only else "on device" if self._info.on_device else "parse-only"
        return f"<kvulkan.Model {self._info.architecture} {self._info.name!r} {where} {state}>"


# ------------------------------------------------------------------------------------------------
# Sessions
# ------------------------------------------------------------------------------------------------

_CACHE_TYPES = {"f16": N.KV_CACHE_F16, "f32": N.KV_CACHE_F32, "q8_0": N.KV_CACHE_Q8_0, "q4_0": N.KV_CACHE_Q4_0}


def _cache_type(value) -> int:
    """A kv_cache_type from its name ("f16", "f32", "q8_0", "q4_0"; any case) or a CacheType /
    int (passed on: the library judges values it does not know)."""
    if isinstance(value, str):
        try:
            return _CACHE_TYPES[value.lower()]
        except KeyError:
            names = ", ".join(map(repr, _CACHE_TYPES))
            raise InvalidArgumentError(
                N.KV_ERR_INVALID_ARGUMENT, f"cache_type must be one of {names}, not {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            N.KV_ERR_INVALID_ARGUMENT, f"cache_type must be a name or a CacheType, not {value!r}"
        )
    if not -(2**31) <= value < 2**31:
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, f"cache_type {value} is out of the int32 range")
    return int(value)


class Session(_Object):
    """A kv_session: one sequence with its KV cache, position, sampler and last logits.

    ``n_ctx``: capacity in tokens (0: min(model context, 4096); rounded up to whole KV pages).
    ``cache_type``: "f16" (default), "f32", "q8_0" or "q4_0" (or a CacheType). ``n_batch``: most
    tokens per prefill pass (0: 512). ``no_cache``: recompute the whole sequence every step (a
    baseline for measurement). ``sampler``: a Sampler (or dict of its fields); None is greedy.
    ``window``/``sinks``: sliding-window attention, each token attending to the last ``window``
    tokens plus the first ``sinks`` ("attention sinks"); pages outside both return to the pool,
    so generation runs in bounded memory and never fills the context (0: full attention).

    Other ways to get a Session: ``fork()`` (copy-on-write sharing of the KV pages) and
    ``Model.load_session()`` (from ``save()`` / ``save_file()``).

    Calls on one Session are serialized by a lock (the C API allows one thread at a time per
    session); different sessions may run on different threads concurrently.
    """

    _kind = "session"
    _stream: Optional[_Pump] = None  # the worker of an open generate_text() stream

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 0,
        cache_type: Union[str, int] = "f16",
        n_batch: int = 0,
        no_cache: bool = False,
        sampler: Union[Sampler, dict, None] = None,
        window: int = 0,
        sinks: int = 0,
    ):
        super().__init__()
        lib = N.lib()
        if not isinstance(model, Model):
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "model must be a kvulkan.Model")
        desc = N.session_desc_init()
        desc.flags = N.KV_SESSION_NO_CACHE if no_cache else 0
        desc.n_ctx = _unsigned("n_ctx", n_ctx, 32)
        desc.cache_type = _cache_type(cache_type)
        desc.n_batch = _unsigned("n_batch", n_batch, 32)
        desc.window = _unsigned("window", window, 32)
        desc.sinks = _unsigned("sinks", sinks, 32)
        smp = _sampler(sampler)
        c_smp = smp._to_c() if smp is not None else None
        if c_smp is not None:
            desc.sampler = ctypes.pointer(c_smp)
        self._sampler = smp or Sampler()
        out = ctypes.c_void_p()
        check(lib.kv_session_create(model._check_open_for_children(), ctypes.byref(desc), ctypes.byref(out)))
        self._attach(out.value, lib.kv_session_destroy, model)
        self._n_vocab = model.n_vocab
        #: The end-of-generation token the last decode_step sampled (not appended), else None.
        self.eog_token: Optional[int] = None

    @classmethod
    def _adopt(cls, model: Model, handle: int, sampler: Optional[Sampler]) -> "Session":
        """A Session around a native session the library just created (fork, load)."""
        self = cls.__new__(cls)
        _Object.__init__(self)
        self._sampler = sampler
        self._n_vocab = model.n_vocab
        self.eog_token = None
        # The model was checked open by the caller's library call; the child keeps it alive.
        self._attach(handle, N.lib().kv_session_destroy, model)
        return self

    @property
    def model(self) -> Model:
        return self._parent  # type: ignore[return-value]

    @property
    def sampler(self) -> Optional[Sampler]:
        """The sampler's settings; None for a session restored by Model.load_session() (the
        image holds its sampler, which the library restored, but Python cannot read it back)
        until set_sampler() is called."""
        return self._sampler

    # -- feeding tokens --------------------------------------------------------------------------

    def prefill(self, tokens: Iterable[int]) -> int:
        """kv_prefill: appends tokens (batched) and leaves the logits of the last one. Errors
        (ContextFullError, BadTokenError, ...) leave the session unchanged. Returns Status.OK, or
        Status.CANCELLED when cancel() (from another thread) stopped it at a chunk boundary."""
        arr = _token_array(tokens)
        with self._lock:
            return _status(check(N.lib().kv_prefill(self._h(), _ptr(arr, ctypes.c_int32), len(arr))))

    def eval(self, tokens: Iterable[int], *, logits: bool = True, numpy: bool = False):
        """kv_session_eval: appends tokens like prefill and returns the logits of EVERY one:
        a list of n_tokens array.array('f') rows of n_vocab floats, or with ``numpy=True`` an
        (n_tokens, n_vocab) float32 ndarray; None with ``logits=False``."""
        arr = _token_array(tokens)
        n, v = len(arr), self._n_vocab
        lib = N.lib()
        tp = _ptr(arr, ctypes.c_int32)
        if not logits:
            with self._lock:
                check(lib.kv_session_eval(self._h(), tp, n, None, 0))
            return None
        if numpy:
            np = _numpy()
            out = np.empty((n, v), dtype=np.float32)
            with self._lock:
                check(lib.kv_session_eval(self._h(), tp, n, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n * v))
            return out
        flat = array.array("f", bytes(4 * n * v))
        with self._lock:
            check(lib.kv_session_eval(self._h(), tp, n, _ptr(flat, ctypes.c_float), n * v))
        return [flat[i * v : (i + 1) * v] for i in range(n)]

    # -- generating ------------------------------------------------------------------------------

    def decode_step(self) -> Optional[int]:
        """kv_decode_step: samples the next token, appends it and computes the following logits.

        Returns the token id, or None at end of generation: the sampled token ends generation
        (EOS/EOT), was NOT appended, and is in ``self.eog_token``. Raises BadStateError before
        any prefill and ContextFullError at capacity (both leave the session unchanged)."""
        tok = ctypes.c_int32(-1)
        with self._lock:
            st = check(N.lib().kv_decode_step(self._h(), ctypes.byref(tok)))
        if st == N.KV_END_OF_GENERATION:
            self.eog_token = int(tok.value)
            return None
        self.eog_token = None
        return int(tok.value)

    def decode_speculative(self, draft: Optional["Session"] = None, draft_n: int = 4) -> Tuple[List[int], int]:
        """kv_decode_speculative: one greedy speculative step. A draft (None: prompt lookup over
        the session's own tokens; else a Session of a smaller model with the same vocabulary,
        which this call keeps in step) proposes up to ``draft_n`` tokens, verified in ONE pass.

        Returns (tokens appended, tokens drafted). At end of generation the EOG token is not
        appended: it is in ``eog_token`` and not in the list. The tokens are those
        decode_step() would give."""
        n = _unsigned("draft_n", draft_n, 32)
        out = (ctypes.c_int32 * (n + 1))()
        n_out, n_drafted = ctypes.c_uint32(0), ctypes.c_uint32(0)
        with self._lock:
            dh = draft._h() if draft is not None else None
            st = check(N.lib().kv_decode_speculative(self._h(), dh, n, out, n + 1, ctypes.byref(n_out),
                                                     ctypes.byref(n_drafted)))
        toks = [int(out[i]) for i in range(n_out.value)]
        self.eog_token = None
        if st == N.KV_END_OF_GENERATION:
            self.eog_token = toks.pop()
        return toks, int(n_drafted.value)

    # -- constrained sampling and embeddings ------------------------------------------------------

    def set_grammar(self, gbnf: Optional[str], root: str = "root") -> None:
        """kv_session_set_grammar: from the next sampled token on, only tokens that keep the
        output inside the GBNF grammar (start rule ``root``) are sampled, and end of generation
        only where the grammar may end. None removes it. A syntax error raises
        InvalidArgumentError naming the line and column."""
        g = None if gbnf is None else gbnf.encode("utf-8")
        with self._lock:
            check(N.lib().kv_session_set_grammar(self._h(), g, root.encode("utf-8")))

    def set_json_schema(self, schema) -> str:
        """set_grammar(json_schema_to_grammar(schema)); returns the grammar."""
        g = json_schema_to_grammar(schema)
        self.set_grammar(g)
        return g

    def embeddings(self, tokens: Iterable[int], *, mean: bool = False, normalize: bool = False, numpy: bool = False):
        """kv_session_embeddings: the model's final hidden state (after the output norm) of
        ``tokens`` evaluated after the session's tokens: the last token's, or with ``mean=True``
        the mean over them; ``normalize=True`` scales it to unit length. n_embd floats, as an
        array.array('f') (or a float32 ndarray with ``numpy=True``). The session is unchanged."""
        arr = _token_array(tokens)
        flags = (N.KV_EMBED_MEAN if mean else 0) | (N.KV_EMBED_NORMALIZE if normalize else 0)
        n = self.model.get_info().n_embd
        out = array.array("f", bytes(4 * n))
        with self._lock:
            check(N.lib().kv_session_embeddings(self._h(), _ptr(arr, ctypes.c_int32), len(arr), flags,
                                                _ptr(out, ctypes.c_float), n))
        if numpy:
            return _numpy().frombuffer(out, dtype="float32").copy()
        return out

    def generate(self, max_tokens: Optional[int] = None) -> Iterator[int]:
        """Yields generated token ids until end of generation (the EOG token is not yielded;
        see ``eog_token``) or ``max_tokens`` (None: no limit). Reaching the context's capacity
        first raises ContextFullError (the session keeps every token generated so far)."""
        produced = 0
        while max_tokens is None or produced < max_tokens:
            tok = self.decode_step()
            if tok is None:
                return
            produced += 1
            yield tok

    def generate_text(
        self,
        max_tokens: Optional[int] = None,
        errors: str = "replace",
        *,
        stop: Union[str, bytes, Iterable[Union[str, bytes]], None] = None,
    ) -> TextStream:
        """kv_generate as an iterator of text pieces (str), each ending on a character boundary
        (a character split across tokens comes out whole), until end of generation, ``max_tokens``
        (None: no limit), a full context, or one of the ``stop`` strings: a stop string is found
        across tokens, and neither it nor anything after it is yielded (the tokens that made it
        up stay in the session). Invalid bytes are decoded with ``errors``.

        Returns a TextStream: after the iteration, ``stop_reason`` (GenerateStop),
        ``stop_string``, ``n_tokens``. Generation runs in step with the iteration; while the
        stream is open the session refuses other calls (BadStateError): exhaust it, or close()
        it (``with`` or ``break`` + dropping it), which stops after the current token. Unlike
        generate(), a full context ends the stream (stop_reason CONTEXT_FULL) without raising."""
        return TextStream(self, max_tokens, stop, errors)

    def _begin_stream(self, max_tokens: int, stops) -> _Pump:
        with self._lock:
            handle = self._h()
            pump = _Pump(handle, max_tokens, stops)
            self._stream = pump
            pump.start()
            return pump

    def _end_stream(self, pump: _Pump) -> None:
        with self._lock:
            if self._stream is pump:
                self._stream = None

    def _h(self) -> int:
        if self._stream is not None:
            raise BadStateError(N.KV_ERR_BAD_STATE, "a generate_text() stream is open on this session: "
                                "exhaust or close() it first")
        return super()._h()

    def close(self) -> None:
        pump = self._stream
        if pump is not None:  # stop the worker before the native session goes away
            pump.close()
            self._end_stream(pump)
        super().close()

    # -- state -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """kv_session_reset: back to an empty sequence (allocations and sampler kept; the
        sampler's random state restarts from its seed)."""
        with self._lock:
            check(N.lib().kv_session_reset(self._h()))
        self.eog_token = None

    def logits(self, *, numpy: bool = False):
        """kv_session_logits: the current logits (after the last processed token) as an
        array.array('f') of n_vocab floats, or a float32 ndarray with ``numpy=True``.
        BadStateError before any token."""
        v = self._n_vocab
        lib = N.lib()
        if numpy:
            np = _numpy()
            out = np.empty(v, dtype=np.float32)
            with self._lock:
                check(lib.kv_session_logits(self._h(), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), v))
            return out
        out = array.array("f", bytes(4 * v))
        with self._lock:
            check(lib.kv_session_logits(self._h(), _ptr(out, ctypes.c_float), v))
        return out

    def set_sampler(self, sampler: Union[Sampler, dict, None] = None) -> None:
        """kv_session_set_sampler (None: greedy)."""
        smp = _sampler(sampler) or Sampler()
        c = smp._to_c()
        with self._lock:
            check(N.lib().kv_session_set_sampler(self._h(), ctypes.byref(c)))
        self._sampler = smp

    def get_stats(self) -> SessionStats:
        """kv_session_get_stats."""
        c = N.new_struct(N.kv_session_stats)
        with self._lock:
            check(N.lib().kv_session_get_stats(self._h(), ctypes.byref(c)))
        return SessionStats(
            n_tokens=int(c.n_tokens),
            n_ctx=int(c.n_ctx),
            page_size=int(c.page_size),
            kv_bytes=int(c.kv_bytes),
            kv_bytes_per_token=int(c.kv_bytes_per_token),
            tokens_prefilled=int(c.tokens_prefilled),
            tokens_decoded=int(c.tokens_decoded),
            last_prefill_ms=float(c.last_prefill_ms),
            last_prefill_tokens=int(c.last_prefill_tokens),
            last_decode_ms=float(c.last_decode_ms),
            total_prefill_ms=float(c.total_prefill_ms),
            total_decode_ms=float(c.total_decode_ms),
            scratch_bytes=int(c.scratch_bytes),
            pages=int(c.pages),
            shared_pages=int(c.shared_pages),
            window_layer_pages=int(c.window_layer_pages),
            window_layers=int(c.window_layers),
            window_layer_pages_released=int(c.window_layer_pages_released),
            pages_released=int(c.pages_released),
            prefix_hit_tokens=int(c.prefix_hit_tokens),
            forward_passes=int(c.forward_passes),
            submissions=int(c.submissions),
            last_pass_submissions=int(c.last_pass_submissions),
        )

    stats = get_stats

    # -- paged KV cache: fork, truncate, save --------------------------------------------------

    def fork(self) -> "Session":
        """kv_session_fork: a new Session sharing all of this one's KV pages (copy-on-write:
        the first write into a shared page copies it), with the same tokens, logits, settings
        and sampler state. Both continue independently; the child is a Session of the same
        Model (a context manager, keeping the model alive) and is closed on its own."""
        model = self.model
        out = ctypes.c_void_p()
        with self._lock:
            h = self._h()
            model._check_open_for_children()
            check(N.lib().kv_session_fork(h, ctypes.byref(out)))
        return Session._adopt(model, out.value, self._sampler)

    def truncate(self, n_tokens: int) -> None:
        """kv_session_truncate: keeps the first ``n_tokens`` tokens, returning the later ones'
        pages, and recomputes the logits after token n_tokens - 1, so decoding goes on at once
        (``truncate(0)`` is reset()). InvalidArgumentError when n_tokens exceeds the tokens held."""
        n = _unsigned("n_tokens", n_tokens, 32)
        with self._lock:
            check(N.lib().kv_session_truncate(self._h(), n))
        self.eog_token = None

    def save(self) -> bytes:
        """kv_session_save: the session as an image (tokens, KV pages, logits, settings, sampler
        state; versioned, with a checksum). Model.load_session(image) restores it."""
        lib = N.lib()
        with self._lock:
            h = self._h()
            n = ctypes.c_size_t(0)
            st = check(lib.kv_session_save(h, None, ctypes.byref(n)))  # the size query
            for _ in range(4):
                if st != N.KV_INCOMPLETE and n.value == 0:
                    return b""
                buf = ctypes.create_string_buffer(max(n.value, 1))
                n.value = len(buf)
                st = check(lib.kv_session_save(h, buf, ctypes.byref(n)))
                if st != N.KV_INCOMPLETE:
                    return buf.raw[: n.value]
        raise KvError(N.KV_ERR_INTERNAL, "kv_session_save kept answering KV_INCOMPLETE")

    def save_file(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """kv_session_save_file: save() into a file, replaced atomically (a crash mid-save
        never leaves a half-written file). Model.load_session(path) restores it."""
        p = os.fsencode(os.fspath(path))
        with self._lock:
            check(N.lib().kv_session_save_file(self._h(), p))

    @property
    def n_tokens(self) -> int:
        """Positions in the cache now."""
        return self.get_stats().n_tokens

    @property
    def n_ctx(self) -> int:
        """Capacity in tokens."""
        return self.get_stats().n_ctx

    # -- non-blocking work and cancellation (since 0.2.0) ----------------------------------------

    def submit_prefill(self, tokens: Iterable[int], callback: Optional[TicketCallback] = None) -> "Ticket":
        """kv_submit_prefill: prefill() on kvulkan's worker thread; returns a Ticket at once (the
        tokens are copied). Raises BusyError while the session is in use (a ticket of it still
        runs) and InvalidArgumentError for no tokens; the prefill's own errors are the ticket's.
        ``callback(ticket, status)`` (optional) runs on the worker thread when it is done."""
        arr = _token_array(tokens)
        return Ticket._submit(
            [self], callback, lambda h, cb, user, out: N.lib().kv_submit_prefill(
                h[0], _ptr(arr, ctypes.c_int32), len(arr), cb, user, out))

    def submit_decode(self, callback: Optional[TicketCallback] = None) -> "Ticket":
        """kv_submit_decode: decode_step() on the worker thread; ``ticket.token`` gives its
        token (``eog_token`` of this object is not updated)."""
        return Ticket._submit([self], callback, lambda h, cb, user, out: N.lib().kv_submit_decode(h[0], cb, user, out))

    def cancel(self) -> None:
        """kv_session_cancel: asks the prefill running on this session (submitted, or prefill()
        on another thread) to stop at its next chunk boundary; it then ends with
        Status.CANCELLED and the session keeps the chunks done, usable. No effect when nothing
        runs. Any thread; never blocks (it does not take the session's lock)."""
        if self._closed or self._handle is None:
            raise BadStateError(N.KV_ERR_BAD_STATE, "the session is closed")
        check(N.lib().kv_session_cancel(self._handle))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kvulkan.Session {state} handle=0x{self._handle or 0:x}>"


__all__ = [
    "BandwidthResult",
    "CacheStats",
    "CacheType",
    "DeviceInfo",
    "DeviceType",
    "Feature",
    "LogLevel",
    "MemoryHeap",
    "Model",
    "ModelInfo",
    "Runtime",
    "Sampler",
    "Session",
    "SessionStats",
    "SubgroupOp",
    "enumerate_devices",
    "logging_callback",
    "version",
    "version_string",
    "version_tuple",
]


def decode_batch(sessions: Sequence["Session"]) -> List[Tuple[Optional[int], int]]:
    """kv_decode_batch: one decode step for each session, all in ONE forward pass (sessions of one
    model). Returns one (token, status) per session: (token, Status.OK); (None, END_OF_GENERATION)
    with the EOG token in that session's ``eog_token``; or (None, a negative status) when that
    session could not step (context full, no prefill yet, ...; that session is unchanged). A batch
    that cannot run at all (a session twice, two models, a closed session) raises."""
    sessions = list(sessions)
    if not sessions:
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "decode_batch needs at least one session")
    n = len(sessions)
    handles = (ctypes.c_void_p * n)()
    toks = (ctypes.c_int32 * n)()
    sts = (ctypes.c_int32 * n)()
    locks = []
    try:
        for s in sessions:
            if not isinstance(s, Session):
                raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "decode_batch takes kvulkan.Session objects")
        # Lock in a fixed order (no deadlock with another batch over the same sessions); a session
        # listed twice is the library's error to report, so it is locked once.
        for s in sorted({id(s): s for s in sessions}.values(), key=id):
            s._lock.acquire()
            locks.append(s._lock)
        for i, s in enumerate(sessions):
            handles[i] = s._h()
        check(N.lib().kv_decode_batch(handles, n, toks, sts))
    finally:
        for lk in locks:
            lk.release()
    out: List[Tuple[Optional[int], int]] = []
    for i, s in enumerate(sessions):
        st = int(sts[i])
        if st == N.KV_OK:
            s.eog_token = None
            out.append((int(toks[i]), st))
        elif st == N.KV_END_OF_GENERATION:
            s.eog_token = int(toks[i])
            out.append((None, st))
        else:
            out.append((None, st))
    return out


# ------------------------------------------------------------------------------------------------
# Non-blocking work: tickets (since 0.2.0)
# ------------------------------------------------------------------------------------------------

#: callback(ticket, status): told on kvulkan's worker thread when a ticket's work completes.
TicketCallback = Callable[["Ticket", int], None]


def _status(value: int):
    """A kv_status as a Status member when known, else the int."""
    return _enum_or_int(Status, value)


class _Pending:
    """A submit's callback until the library calls it (exactly once per ticket)."""

    def __init__(self, fn):
        self.fn = fn
        self.lock = threading.Lock()  # held by the submitter until the Ticket exists
        self.ticket: Optional["Ticket"] = None


_pending: dict = {}  # key (the C user pointer) -> _Pending
_pending_lock = threading.Lock()
_pending_next = [1]


def _ticket_thunk(_ticket, status, user):
    # Called on kvulkan's worker thread (ctypes takes the GIL); nothing may propagate into C.
    try:
        with _pending_lock:
            p = _pending.pop(int(user or 0), None)
        if p is None:
            return
        with p.lock:
            t = p.ticket
        if t is not None:
            p.fn(t, _status(status))
    except BaseException:  # noqa: BLE001 - an exception must never unwind into the library
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001 - interpreter shutting down
            pass


# One C function pointer for every ticket, alive for the process: the library may still be
# returning from it after a ticket is freed, so no per-ticket ctypes closure is ever released.
_TICKET_THUNK = N.kv_ticket_callback(_ticket_thunk)
_NO_CALLBACK = N.kv_ticket_callback()


class Ticket(_Object):
    """A kv_ticket: work submitted by Session.submit_prefill, Session.submit_decode or
    submit_decode_batch, running on kvulkan's worker thread with the blocking call's results.

    While it runs its sessions are in use: every other call on them raises BusyError
    (Session.cancel excepted). Poll it from a frame loop (``poll()``, ``done``), ``wait()`` for
    it, or give the submit a callback. ``close()`` (kv_ticket_destroy; also ``with``) waits for
    the work if it still runs. A ticket keeps its sessions (so their model and runtime) alive
    until it is closed. Any thread may poll, wait for and close a ticket.
    """

    _kind = "ticket"

    def __init__(self):  # noqa: D107 - made by the submit functions only
        raise TypeError("tickets come from Session.submit_prefill/submit_decode and submit_decode_batch")

    @classmethod
    def _submit(cls, sessions, callback, submit) -> "Ticket":
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "callback must be callable")
        for s in sessions:
            if not isinstance(s, Session):
                raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "submit takes kvulkan.Session objects")
        self = cls.__new__(cls)
        _Object.__init__(self)
        self._sessions = []
        n = len(sessions)
        handles = (ctypes.c_void_p * n)()
        out = ctypes.c_void_p()
        pending = _Pending(callback) if callback is not None else None
        key = 0
        if pending is not None:
            with _pending_lock:
                key = _pending_next[0]
                _pending_next[0] += 1
                _pending[key] = pending
        locks = []
        try:
            # Session locks in a fixed order (as decode_batch), held for the submit only.
            for s in sorted({id(s): s for s in sessions}.values(), key=id):
                s._lock.acquire()
                locks.append(s._lock)
            for i, s in enumerate(sessions):
                handles[i] = s._h()
            with (pending.lock if pending is not None else threading.Lock()):
                st = submit(handles, _TICKET_THUNK if pending is not None else _NO_CALLBACK,
                            ctypes.c_void_p(key) if key else None, ctypes.byref(out))
                if st < 0:
                    with _pending_lock:
                        _pending.pop(key, None)  # no ticket: the library never calls back
                    check(st)
                self._attach(out.value, N.lib().kv_ticket_destroy, None)
                # Each session counts the ticket as a child: closing it defers its native destroy.
                for s in {id(s): s for s in sessions}.values():
                    with s._lock:
                        s._live_children += 1
                    self._sessions.append(s)
                if pending is not None:
                    pending.ticket = self
        finally:
            for lk in locks:
                lk.release()
        return self

    def _on_destroyed(self) -> None:
        sessions, self._sessions = self._sessions, []
        for s in sessions:
            s._child_released()

    def wait(self, timeout: Optional[float] = None):
        """kv_ticket_wait: waits up to ``timeout`` seconds (None: no limit; 0: just look).
        Returns Status.NOT_READY if the work still runs, else its status (Status.OK,
        Status.CANCELLED for a cancelled prefill, Status.END_OF_GENERATION for a decode that
        sampled an end token); raises the KvError of a failed work. The GIL is released meanwhile."""
        if timeout is None:
            ns = 2**64 - 1
        else:
            if timeout < 0:
                raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "timeout must be >= 0")
            ns = min(int(timeout * 1e9), 2**64 - 2)
        return _status(check(N.lib().kv_ticket_wait(self._h(), ns)))

    def poll(self):
        """kv_ticket_poll: wait(0). Never blocks."""
        return _status(check(N.lib().kv_ticket_poll(self._h())))

    @property
    def done(self) -> bool:
        """True once the work is complete, whatever its status (never raises KvError)."""
        return N.lib().kv_ticket_poll(self._h()) != N.KV_NOT_READY

    @property
    def results(self) -> List[Tuple[int, int]]:
        """kv_ticket_results of the completed work: one (token, status) per session (a decode:
        one; a batch: one per session, token -1 where none was sampled; a prefill: none).
        BadStateError while the work runs."""
        lib = N.lib()
        h = self._h()
        n = ctypes.c_uint32(0)
        st = check(lib.kv_ticket_results(h, None, None, 0, ctypes.byref(n)))
        if st == N.KV_NOT_READY:
            raise BadStateError(N.KV_ERR_BAD_STATE, "the ticket's work is still running")
        if n.value == 0:
            return []
        toks = (ctypes.c_int32 * n.value)()
        sts = (ctypes.c_int32 * n.value)()
        check(lib.kv_ticket_results(h, toks, sts, n.value, ctypes.byref(n)))
        return [(int(toks[i]), _status(sts[i])) for i in range(n.value)]

    @property
    def token(self) -> Optional[int]:
        """A completed submit_decode's token as decode_step() returns it: the token, or None at
        end of generation; raises the step's KvError when it failed."""
        r = self.results
        if not r:
            raise BadStateError(N.KV_ERR_BAD_STATE, "this ticket has no token (a prefill)")
        tok, st = r[0]
        if st < 0:
            raise error_for(st, status_string(st))
        return None if st == N.KV_END_OF_GENERATION else tok

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kvulkan.Ticket {state} handle=0x{self._handle or 0:x}>"


def submit_decode_batch(sessions: Sequence["Session"], callback: Optional[TicketCallback] = None) -> Ticket:
    """kv_submit_decode_batch: decode_batch() on kvulkan's worker thread. The ticket's
    ``results`` hold one (token, status) per session; a session in use gets Status.ERR_BUSY as its
    own status. ``callback(ticket, status)`` (optional) runs on the worker thread when done."""
    sessions = list(sessions)
    if not sessions:
        raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "submit_decode_batch needs at least one session")
    return Ticket._submit(
        sessions, callback, lambda h, cb, user, out: N.lib().kv_submit_decode_batch(h, len(sessions), cb, user, out))
