"""Session.generate_text(): kv_generate (C) as a Python iterator of text pieces.

kv_generate streams through a callback; an iterator pulls. The call runs on a worker thread whose
callback hands each piece over and then waits until the consumer asks for the next one, so the
session generates in lockstep with the iteration: nothing is generated ahead of what was asked
for, and closing the iterator (or dropping it: CPython then closes it at once) makes the waiting
callback return non-zero, which ends kv_generate after the current step. While a stream is open
its session refuses other calls (BadStateError), as the C API allows one thread per session.

No engine logic lives here: UTF-8 completion and stop strings are kv_generate's.
"""
from __future__ import annotations

import codecs
import ctypes
import enum
import queue
import threading
from typing import Iterator, List, Optional, Sequence, Union

from . import _native as N
from ._errors import InvalidArgumentError, error_for


class GenerateStop(enum.IntEnum):
    """Why generation ended (kv_generate_stop)."""

    MAX_TOKENS = N.KV_GENERATE_STOP_MAX_TOKENS
    END_OF_GENERATION = N.KV_GENERATE_STOP_END_OF_GENERATION
    STOP_STRING = N.KV_GENERATE_STOP_STRING
    CALLBACK = N.KV_GENERATE_STOP_CALLBACK  # the iterator was closed early
    CONTEXT_FULL = N.KV_GENERATE_STOP_CONTEXT_FULL
    ERROR = N.KV_GENERATE_STOP_ERROR


def _stop_bytes(stop) -> List[bytes]:
    if stop is None:
        return []
    if isinstance(stop, (str, bytes)):
        stop = [stop]
    out = []
    for s in stop:
        if isinstance(s, str):
            s = s.encode("utf-8")
        elif not isinstance(s, (bytes, bytearray)):
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "stop strings must be str or bytes")
        if not s:
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "a stop string is empty")
        if b"\0" in s:
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "a stop string contains a NUL byte")
        out.append(bytes(s))
    return out


class _Pump:
    """The worker side: owns the thread, the hand-over queue and the go-ahead semaphore. It never
    references the TextStream, so dropping the stream (the consumer's only reference) finalizes it."""

    def __init__(self, handle: int, max_tokens: int, stops: List[bytes]):
        self.items: "queue.Queue[tuple]" = queue.Queue()
        self.go = threading.Semaphore(0)
        self.stop_requested = False
        self._handle = handle
        self._max_tokens = max_tokens
        self._stops = stops
        self._thunk = N.kv_piece_fn(self._on_piece)  # kept alive for the whole call
        self.thread = threading.Thread(target=self._run, name="kvulkan-generate", daemon=True)

    def _on_piece(self, _user, text, length):
        try:
            if self.stop_requested:
                return 1
            self.items.put(("piece", ctypes.string_at(text, length)))
            self.go.acquire()  # until the consumer asks for more, or closes
            return 1 if self.stop_requested else 0
        except BaseException:  # noqa: BLE001 - nothing may escape into C
            return 1

    def _run(self) -> None:
        try:
            desc = N.generate_desc_init()
            desc.max_tokens = self._max_tokens
            arr = (ctypes.c_char_p * max(1, len(self._stops)))(*self._stops)
            if self._stops:
                desc.stop_strings = arr
                desc.n_stop_strings = len(self._stops)
            desc.on_piece = self._thunk
            res = N.new_struct(N.kv_generate_result)
            lib = N.lib()
            st = lib.kv_generate(self._handle, ctypes.byref(desc), ctypes.byref(res))
            # The message is thread-local: read it here, on the thread that made the call.
            msg = (lib.kv_last_error_message() or b"").decode("utf-8", "replace") if st < 0 else ""
            self.items.put(("end", st, msg, res))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self.items.put(("exc", e))

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        """Stops generation after the current step and waits for the worker."""
        self.stop_requested = True
        self.go.release()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join()


class TextStream:
    """An iterator of text pieces (str) from Session.generate_text(), backed by kv_generate.

    Each piece ends on a character boundary; stop strings are found across tokens and never
    yielded. After the iteration ends: ``stop_reason`` (GenerateStop), ``stop_string`` (the stop
    string found, as given, else None), ``n_tokens`` (tokens appended to the session) and
    ``last_token``. Usable as a context manager; ``close()`` stops early (the tokens generated so
    far stay in the session). Errors of a failing step (DeviceLostError, ...) are raised by the
    iteration, after the text that came before them.
    """

    def __init__(self, session, max_tokens: Optional[int], stop, errors: str):
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, "max_tokens must be an int or None")
        if max_tokens is not None and not 0 <= max_tokens < 2**32:
            raise InvalidArgumentError(N.KV_ERR_INVALID_ARGUMENT, f"max_tokens {max_tokens} is out of range")
        self._stops_given: Sequence[Union[str, bytes]] = (
            [] if stop is None else [stop] if isinstance(stop, (str, bytes)) else list(stop)
        )
        self._stops = _stop_bytes(self._stops_given)
        self._session = session
        self._max_tokens = 0 if max_tokens is None else max_tokens
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors)
        self._pump: Optional[_Pump] = None
        self._finished = max_tokens == 0
        self._asked = False  # a piece was handed out and the worker waits for the go-ahead
        self.stop_reason: Optional[GenerateStop] = GenerateStop.MAX_TOKENS if self._finished else None
        self.stop_string: Optional[Union[str, bytes]] = None
        self.n_tokens = 0
        self.last_token: Optional[int] = None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            if self._finished:
                raise StopIteration
            if self._pump is None:
                self._pump = self._session._begin_stream(self._max_tokens, self._stops)
            elif self._asked:
                self._asked = False
                self._pump.go.release()
            item = self._pump.items.get()
            if item[0] == "piece":
                text = self._decoder.decode(item[1])
                self._asked = True
                if text:
                    return text
                continue
            self._finish(item)
            tail = self._decoder.decode(b"", final=True)
            if tail:
                return tail

    def _finish(self, item) -> None:
        self._finished = True
        self._end_session_stream()
        if item[0] == "exc":
            raise item[1]
        _, st, msg, res = item
        self.n_tokens = int(res.n_tokens)
        self.last_token = int(res.last_token) if res.last_token >= 0 else None
        self.stop_reason = GenerateStop(res.stop_reason)
        if 0 <= res.stop_string < len(self._stops_given):
            self.stop_string = self._stops_given[res.stop_string]
        self._session.eog_token = self.last_token if self.stop_reason == GenerateStop.END_OF_GENERATION else None
        if st < 0:
            raise error_for(st, msg)

    def _end_session_stream(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.close()
            self._session._end_stream(pump)

    def close(self) -> None:
        """Stops generating (after the current step) and frees the session. Idempotent."""
        if self._finished:
            return
        self._finished = True
        pump = self._pump
        self._end_session_stream()
        if pump is not None:
            # The worker has ended: collect its outcome (the tokens it appended).
            while True:
                try:
                    item = pump.items.get_nowait()
                except queue.Empty:
                    break
                if item[0] == "end":
                    _, _st, _msg, res = item
                    self.n_tokens = int(res.n_tokens)
                    self.last_token = int(res.last_token) if res.last_token >= 0 else None
                    self.stop_reason = GenerateStop(res.stop_reason)

    def text(self) -> str:
        """The rest of the stream, joined."""
        return "".join(self)

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except BaseException:  # noqa: BLE001 - never raise from a finalizer
            pass
