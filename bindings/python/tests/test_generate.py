"""Session.generate_text() over kv_generate (text pieces, stop strings, early close) and
Runtime(pipeline_cache_path=...)."""
import gc
import os

import pytest

import kvulkan as kv

PROMPT_IDS = [1, 403, 407, 261, 378]  # "Once upon a time"


def plain_text(stories, n):
    """The pieces of a plain decode_step loop, joined."""
    with stories.session(n_ctx=128) as s:
        s.prefill(PROMPT_IDS)
        return b"".join(stories.token_to_piece(t) for t in s.generate(n)).decode()


def test_generate_text_equals_plain_decoding(stories):
    want = plain_text(stories, 16)
    with stories.session(n_ctx=128) as s:
        s.prefill(PROMPT_IDS)
        stream = s.generate_text(16)
        assert isinstance(stream, kv.TextStream)
        pieces = list(stream)
        assert all(isinstance(p, str) and p for p in pieces)
        assert "".join(pieces) == want
        assert stream.stop_reason == kv.GenerateStop.MAX_TOKENS and stream.n_tokens == 16
        assert s.n_tokens == len(PROMPT_IDS) + 16


def test_stop_string_spanning_tokens(stories):
    with stories.session(n_ctx=128) as s:
        s.prefill(PROMPT_IDS)
        toks = list(s.generate(20))
    pieces = [stories.token_to_piece(t).decode() for t in toks]
    text = "".join(pieces)
    # A stop string made of the end of one token and the start of the next, first seen there.
    at = 0
    for i in range(len(pieces) - 1):
        at += len(pieces[i])
        if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2:
            stop = pieces[i][-2:] + pieces[i + 1][:2]
            if text.find(stop) == at - 2:
                break
    else:
        pytest.fail("no usable token boundary in " + repr(text))
    with stories.session(n_ctx=128) as s:
        s.prefill(PROMPT_IDS)
        stream = s.generate_text(20, stop=["\x01 not there", stop])
        got = stream.text()
        assert got == text[: at - 2]
        assert stream.stop_reason == kv.GenerateStop.STOP_STRING and stream.stop_string == stop
        assert stream.n_tokens == i + 2 and s.n_tokens == len(PROMPT_IDS) + i + 2  # its tokens stay
    # bytes are accepted too, and a single string.
    with stories.session(n_ctx=128) as s:
        s.prefill(PROMPT_IDS)
        assert "".join(s.generate_text(20, stop=stop.encode())) == text[: at - 2]


def test_early_close_stops_generation_and_frees_the_session(stories):
    want = plain_text(stories, 12)
    with stories.session(n_ctx=128) as s:
        s.prefill(PROMPT_IDS)
        stream = s.generate_text(12)
        first = next(stream)
        with pytest.raises(kv.BadStateError):
            s.decode_step()  # the stream owns the session meanwhile
        stream.close()
        assert stream.stop_reason == kv.GenerateStop.CALLBACK
        # In step with the iteration: one piece asked for, one token generated.
        assert stream.n_tokens == 1 and s.n_tokens == len(PROMPT_IDS) + 1
        # Breaking out of a for loop and dropping the stream closes it too.
        for second in s.generate_text(12):
            break
        gc.collect()  # (CPython has already finalized the dropped stream)
        assert s.n_tokens == len(PROMPT_IDS) + 2
        rest = "".join(s.generate_text(10))
        assert s.n_tokens == len(PROMPT_IDS) + 12
        assert first + second + rest == want


def test_full_context_and_bad_arguments(stories):
    with stories.session(n_ctx=16) as s:
        with pytest.raises(kv.BadStateError):
            list(s.generate_text(4))  # before any prefill: kv_decode_step's error
        s.prefill(PROMPT_IDS)
        stream = s.generate_text()  # no limit: runs to the end of the context
        text = stream.text()
        assert stream.stop_reason == kv.GenerateStop.CONTEXT_FULL and stream.n_tokens == 16 - 5
        assert text and s.n_tokens == 16
        for bad in ([""], ["a\0b"], [3]):
            with pytest.raises(kv.InvalidArgumentError):
                s.generate_text(4, stop=bad)
        with pytest.raises(kv.InvalidArgumentError):
            s.generate_text(-1)
        assert list(s.generate_text(0)) == []


def test_closing_the_session_ends_an_open_stream(stories):
    s = stories.session(n_ctx=64)
    s.prefill(PROMPT_IDS)
    stream = s.generate_text(20)
    next(stream)
    s.close()  # stops the worker first, then destroys the native session
    assert list(stream) == []
    assert stream.stop_reason == kv.GenerateStop.CALLBACK


def test_pipeline_cache_path(lib, stories_path, tmp_path):
    path = tmp_path / "pipelines.bin"
    logs = []

    def run():
        with kv.Runtime(pipeline_cache_path=path, log_callback=lambda lv, m: logs.append(m)) as rt:
            with rt.load_model(stories_path) as m, m.session(n_ctx=32) as s:
                s.prefill(PROMPT_IDS)
                return list(s.generate(4))

    first = run()
    assert path.exists() and path.read_bytes()[:8] == b"KVPCACHE"
    assert any("no file yet" in m for m in logs)
    logs.clear()
    assert run() == first
    assert any("bytes of pipeline data loaded" in m for m in logs)
    # A corrupt file is ignored with a message and replaced when the runtime closes.
    good = path.read_bytes()
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    path.write_bytes(bad)
    logs.clear()
    kv.Runtime(pipeline_cache_path=str(path), log_callback=lambda lv, m: logs.append(m)).close()
    assert any("corrupt (checksum mismatch)" in m for m in logs)
    assert path.read_bytes()[:8] == b"KVPCACHE" and path.read_bytes() != bad
    with pytest.raises(kv.InvalidArgumentError):
        kv.Runtime(pipeline_cache_path="a\0b")
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
