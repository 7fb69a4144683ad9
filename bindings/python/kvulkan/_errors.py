"""Status codes and the exception hierarchy: every negative kv_status becomes a KvError."""
from __future__ import annotations

import enum

from . import _native as N


class Status(enum.IntEnum):
    """kv_status values (fixed forever in the C ABI)."""

    OK = N.KV_OK
    INCOMPLETE = N.KV_INCOMPLETE
    END_OF_GENERATION = N.KV_END_OF_GENERATION
    NOT_READY = N.KV_NOT_READY
    CANCELLED = N.KV_CANCELLED
    ERR_INVALID_ARGUMENT = N.KV_ERR_INVALID_ARGUMENT
    ERR_IO = N.KV_ERR_IO
    ERR_BAD_MODEL = N.KV_ERR_BAD_MODEL
    ERR_UNSUPPORTED = N.KV_ERR_UNSUPPORTED
    ERR_OUT_OF_HOST_MEMORY = N.KV_ERR_OUT_OF_HOST_MEMORY
    ERR_OUT_OF_DEVICE_MEMORY = N.KV_ERR_OUT_OF_DEVICE_MEMORY
    ERR_CONTEXT_FULL = N.KV_ERR_CONTEXT_FULL
    ERR_DEVICE_LOST = N.KV_ERR_DEVICE_LOST
    ERR_NO_DEVICE = N.KV_ERR_NO_DEVICE
    ERR_INTERNAL = N.KV_ERR_INTERNAL
    ERR_BAD_STATE = N.KV_ERR_BAD_STATE
    ERR_BAD_TOKEN = N.KV_ERR_BAD_TOKEN
    ERR_BUSY = N.KV_ERR_BUSY

    @property
    def c_name(self) -> str:
        """The C enumerator's name, e.g. "KV_ERR_IO"."""
        return "KV_" + self.name


def status_string(status: int) -> str:
    """kv_status_string: e.g. "KV_ERR_IO: I/O error" ("unknown status" for unknown codes)."""
    return N.lib().kv_status_string(int(status)).decode("utf-8", "replace")


def last_error_message() -> str:
    """kv_last_error_message: the calling thread's last failure message ("" if none).

    Mostly useful for diagnostics: every failing call made through these bindings already puts
    the message into the KvError it raises.
    """
    return N.lib().kv_last_error_message().decode("utf-8", "replace")


class KvError(Exception):
    """A kvulkan call failed. ``status`` is the kv_status (negative), ``message`` the library's
    kv_last_error_message() at the time of the failure (or the bindings' own explanation)."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(status, message)
        try:
            self.status = Status(status)
        except ValueError:  # a code newer than these bindings
            self.status = int(status)
        self.message = message

    @property
    def status_name(self) -> str:
        s = self.status
        return s.c_name if isinstance(s, Status) else f"kv_status({s})"

    def __str__(self) -> str:
        return f"{self.status_name}: {self.message}" if self.message else self.status_name


class InvalidArgumentError(KvError, ValueError):
    """KV_ERR_INVALID_ARGUMENT (also a ValueError)."""


class KvIOError(KvError):
    """KV_ERR_IO: a file could not be opened, read or written."""


class BadModelError(KvError):
    """KV_ERR_BAD_MODEL: a malformed or inconsistent model file."""


class UnsupportedError(KvError):
    """KV_ERR_UNSUPPORTED: valid, but not supported by this build or device."""


class OutOfHostMemoryError(KvError, MemoryError):
    """KV_ERR_OUT_OF_HOST_MEMORY (also a MemoryError)."""


class OutOfDeviceMemoryError(KvError):
    """KV_ERR_OUT_OF_DEVICE_MEMORY: a device allocation failed or the runtime's budget was hit."""


class ContextFullError(KvError):
    """KV_ERR_CONTEXT_FULL: the session has no room for more tokens (it is left unchanged)."""


class DeviceLostError(KvError):
    """KV_ERR_DEVICE_LOST: the runtime is unusable; close everything and recreate it."""


class NoDeviceError(KvError):
    """KV_ERR_NO_DEVICE: no usable Vulkan device, or none matched the choice."""


class InternalError(KvError):
    """KV_ERR_INTERNAL: a broken invariant inside kvulkan; please report it."""


class BadStateError(KvError):
    """KV_ERR_BAD_STATE: the call is not valid in the object's state (also: a closed object)."""


class BadTokenError(KvError, ValueError):
    """KV_ERR_BAD_TOKEN: a token id outside the model's vocabulary (also a ValueError)."""


class BusyError(KvError):
    """KV_ERR_BUSY: the session is in use by another call (another thread, or a ticket in flight)."""


_BY_STATUS = {
    N.KV_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    N.KV_ERR_IO: KvIOError,
    N.KV_ERR_BAD_MODEL: BadModelError,
    N.KV_ERR_UNSUPPORTED: UnsupportedError,
    N.KV_ERR_OUT_OF_HOST_MEMORY: OutOfHostMemoryError,
    N.KV_ERR_OUT_OF_DEVICE_MEMORY: OutOfDeviceMemoryError,
    N.KV_ERR_CONTEXT_FULL: ContextFullError,
    N.KV_ERR_DEVICE_LOST: DeviceLostError,
    N.KV_ERR_NO_DEVICE: NoDeviceError,
    N.KV_ERR_INTERNAL: InternalError,
    N.KV_ERR_BAD_STATE: BadStateError,
    N.KV_ERR_BAD_TOKEN: BadTokenError,
    N.KV_ERR_BUSY: BusyError,
}


def error_for(status: int, message: str) -> KvError:
    """The KvError subclass instance for a negative status."""
    return _BY_STATUS.get(int(status), KvError)(status, message)


def check(status: int) -> int:
    """Raises the matching KvError for a negative status (with kv_last_error_message(), read
    right away on this thread); returns non-negative statuses (KV_OK, KV_INCOMPLETE, ...)."""
    if status < 0:
        raise error_for(status, last_error_message())
    return status
