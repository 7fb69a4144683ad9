"""kvulkan: Python bindings (ctypes, no compiled extension) for the kvulkan C ABI.

    import kvulkan
    with kvulkan.Runtime() as rt, rt.load_model("stories260K.gguf") as model:
        with model.session(n_ctx=256) as s:
            s.prefill(model.tokenize("Once upon a time"))
            print("".join(s.generate_text(64)))

The shared library is found through KV_LIBRARY (a path), next to this package, KV_BUILD_DIR,
the source checkout's build/ directory, then the system loader. It is loaded on first use;
``kvulkan.load_library(path)`` loads a specific one.
"""
from ._api import (
    BandwidthResult,
    CacheStats,
    CacheType,
    DeviceInfo,
    DeviceType,
    Feature,
    LogLevel,
    MemoryHeap,
    Model,
    ModelInfo,
    Runtime,
    Sampler,
    Session,
    SessionStats,
    SubgroupOp,
    enumerate_devices,
    logging_callback,
    version,
    version_string,
    version_tuple,
    decode_batch,
    json_schema_to_grammar,
)
from ._errors import (
    BadModelError,
    BadStateError,
    BadTokenError,
    ContextFullError,
    DeviceLostError,
    InternalError,
    InvalidArgumentError,
    KvError,
    KvIOError,
    NoDeviceError,
    OutOfDeviceMemoryError,
    OutOfHostMemoryError,
    Status,
    UnsupportedError,
    last_error_message,
    status_string,
)
from ._native import HEADER_VERSION, LibraryNotFoundError, load_library

__version__ = "0.2.0"

__all__ = [
    "decode_batch",
    "BadModelError",
    "BadStateError",
    "BadTokenError",
    "BandwidthResult",
    "CacheStats",
    "CacheType",
    "ContextFullError",
    "DeviceInfo",
    "DeviceLostError",
    "DeviceType",
    "Feature",
    "HEADER_VERSION",
    "InternalError",
    "InvalidArgumentError",
    "KvError",
    "KvIOError",
    "LibraryNotFoundError",
    "LogLevel",
    "MemoryHeap",
    "Model",
    "ModelInfo",
    "NoDeviceError",
    "OutOfDeviceMemoryError",
    "OutOfHostMemoryError",
    "Runtime",
    "Sampler",
    "Session",
    "SessionStats",
    "Status",
    "SubgroupOp",
    "UnsupportedError",
    "enumerate_devices",
    "last_error_message",
    "load_library",
    "logging_callback",
    "status_string",
    "version",
    "version_string",
    "version_tuple",
]
