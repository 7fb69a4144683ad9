"""Models: loading (path, bytes, parse-only, vocab-only), info, tokenizer."""
import ctypes
import os

import pytest

import kvulkan as kv
from kvulkan import _native as N

PROMPT = "Once upon a time"
PROMPT_IDS = [1, 403, 407, 261, 378]


def test_load_bad_path(lib, tmp_path):
    with pytest.raises(kv.KvIOError) as ei:
        kv.Model(str(tmp_path / "nope.gguf"))
    assert ei.value.status == kv.Status.ERR_IO and "nope.gguf" in ei.value.message


def test_load_bad_bytes(lib):
    with pytest.raises(kv.BadModelError) as ei:
        kv.Model(b"GGUF" + b"\x00" * 60)
    assert ei.value.status == kv.Status.ERR_BAD_MODEL and ei.value.message
    with pytest.raises(kv.KvError) as ei:
        kv.Model(b"not a model at all")
    assert ei.value.status in (kv.Status.ERR_BAD_MODEL, kv.Status.ERR_INVALID_ARGUMENT)


def test_load_bad_arguments(lib, stories_path):
    with pytest.raises(kv.InvalidArgumentError):
        kv.Model(12345)
    with pytest.raises(kv.InvalidArgumentError):
        kv.Model(stories_path, runtime="not a runtime")


def test_parse_only_model(stories_path):
    with kv.Model(stories_path) as m:
        info = m.info()
        assert not info.on_device and info.device_bytes == 0
        assert m.runtime is None
        assert m.tokenize(PROMPT) == PROMPT_IDS
        with pytest.raises(kv.BadStateError) as ei:
            kv.Session(m)
        assert "runtime" in ei.value.message


def test_model_info(stories):
    info = stories.info()
    assert info.architecture == "llama"
    assert info.on_device and info.device_bytes > 0
    assert (info.n_vocab, info.n_embd, info.n_layer, info.n_head, info.n_head_kv) == (512, 64, 5, 8, 4)
    assert info.head_dim == 8 and info.n_ff == 172
    assert info.rope_freq_base == 10000.0 and not info.rope_neox
    assert info.file_size > info.weight_bytes > 0 and info.n_params > 250_000
    assert "f32" in info.weight_types
    assert stories.n_vocab == 512
    assert "llama" in repr(stories)


def test_load_from_bytes(stories_path, runtime):
    with open(stories_path, "rb") as f:
        data = f.read()
    for source, copy in [(data, True), (data, False), (bytearray(data), False), (memoryview(data), True)]:
        with kv.Model(source, runtime, copy_data=copy) as m:
            assert m.path is None
            assert m.info().file_size == len(data)
            assert m.tokenize(PROMPT) == PROMPT_IDS
            with m.session(n_ctx=16) as s:
                s.prefill(PROMPT_IDS)
                assert s.decode_step() == 432  # the reference's first greedy token


def test_bytearray_pinned_while_model_lives(stories_path):
    with open(stories_path, "rb") as f:
        buf = bytearray(f.read())
    m = kv.Model(buf, copy_data=False)
    with pytest.raises(BufferError):
        buf.extend(b"x")  # the library reads it in place: resizing is refused
    m.close()
    buf.extend(b"x")  # released with the model


def test_special_tokens(stories):
    assert stories.bos == 1 and stories.eos == 2
    assert stories.is_eog(2) and not stories.is_eog(1) and not stories.is_eog(403)
    assert not stories.is_eog(-1) and not stories.is_eog(10**6) and not stories.is_eog(2**40)


def test_tokenize(stories):
    assert stories.tokenize(PROMPT) == PROMPT_IDS
    assert stories.tokenize(PROMPT, add_special=False) == PROMPT_IDS[1:]
    assert stories.tokenize(PROMPT.encode()) == PROMPT_IDS
    assert stories.tokenize("", add_special=False) == []
    long = " ".join([PROMPT] * 200)
    ids = stories.tokenize(long)
    assert len(ids) == 1 + 4 * 200 and ids[:5] == PROMPT_IDS


def test_two_call_retry(stories, monkeypatch):
    """With a first capacity of 1 every call goes through the KV_INCOMPLETE retry."""
    from kvulkan import _api

    monkeypatch.setattr(_api, "_first_capacity", lambda estimate: 1)
    assert stories.tokenize(PROMPT) == PROMPT_IDS
    assert stories.detokenize(PROMPT_IDS) == PROMPT
    assert stories.token_to_piece(403) == b" Once"
    assert stories.tokenize("", add_special=False) == []
    assert stories.detokenize([]) == ""


def test_tokenize_incomplete_protocol(lib, stories):
    text = PROMPT.encode()
    n = ctypes.c_uint32(0)
    st = lib.kv_tokenize(stories._h(), text, len(text), N.KV_TOKENIZE_ADD_SPECIAL, None, ctypes.byref(n))
    assert st == N.KV_INCOMPLETE and n.value == 5
    buf = (ctypes.c_int32 * 2)()
    n.value = 2
    assert lib.kv_tokenize(stories._h(), text, len(text), 1, buf, ctypes.byref(n)) == N.KV_INCOMPLETE
    assert n.value == 5 and list(buf) == [0, 0]  # nothing written


def test_detokenize_round_trip(stories):
    assert stories.detokenize(PROMPT_IDS) == PROMPT
    assert stories.detokenize(PROMPT_IDS[1:]) == PROMPT
    assert stories.detokenize([]) == ""
    text = "Lily and Ben went to the park. They saw a big, red ball!"
    assert stories.detokenize(stories.tokenize(text)) == text
    assert stories.detokenize_bytes(stories.tokenize(text)) == text.encode()


def test_token_to_piece(stories):
    pieces = [stories.token_to_piece(t) for t in PROMPT_IDS]
    assert pieces[0] == b""  # BOS is a control token
    assert b"".join(pieces).decode().strip() == PROMPT
    assert all(isinstance(p, bytes) for p in pieces)


def test_bad_tokens(stories):
    with pytest.raises(kv.BadTokenError) as ei:
        stories.detokenize([1, 99999])
    assert ei.value.status == kv.Status.ERR_BAD_TOKEN and ei.value.message
    with pytest.raises(kv.BadTokenError):
        stories.token_to_piece(512)
    with pytest.raises(ValueError):  # BadTokenError is a ValueError too
        stories.token_to_piece(-5)
    with pytest.raises(kv.InvalidArgumentError):
        stories.detokenize([2**40])
    with pytest.raises(kv.InvalidArgumentError):
        stories.detokenize("text")


# --- vocab-only (KV_MODEL_VOCAB_ONLY) ------------------------------------------------------------


def _vocab_cases(gguf):
    """llama.cpp's cases beside a vocab GGUF: (text, ids) without BOS, special tokens not parsed."""
    texts = open(gguf + ".inp", "rb").read().decode("utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    lines = open(gguf + ".out", encoding="utf-8").read().split("\n")[: len(texts)]
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


def _vocab_files():
    from conftest import SHARED

    d = os.path.join(SHARED, "models", "vocab")
    if not os.path.isdir(d):
        pytest.skip(f"test data not found: {d} (set KV_SHARED_DIR to the shared/ directory)")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".gguf"))


@pytest.mark.parametrize("with_runtime", [False, True])
def test_vocab_only_models(lib, request, with_runtime):
    files = _vocab_files()
    assert len(files) >= 5
    rt = request.getfixturevalue("runtime") if with_runtime else None
    archs = {}
    for path in files:
        with pytest.raises(kv.BadModelError) as ei:  # without the flag: weights are required
            kv.Model(path)
        assert "KV_MODEL_VOCAB_ONLY" in ei.value.message
        m = rt.load_model(path, vocab_only=True) if rt else kv.Model(path, vocab_only=True)
        with m:
            info = m.info()
            archs[os.path.basename(path)] = info.architecture
            assert info.n_vocab > 0 and m.n_vocab == info.n_vocab
            assert info.file_size == os.path.getsize(path)
            assert not info.on_device and info.device_bytes == 0
            assert (info.n_params, info.n_layer, info.n_embd, info.weight_types) == (0, 0, 0, "")
            assert "vocab-only" in repr(m)
            cases = _vocab_cases(path)
            assert len(cases) == 46
            for text, want in cases:
                got = m.tokenize(text, add_special=False)
                assert got == want, f"{os.path.basename(path)}: {text!r}"
                assert m.detokenize(got) == text
            with pytest.raises(kv.BadStateError):
                kv.Session(m)
    assert archs.get("ggml-vocab-phi-3.gguf") == "phi3"
    assert archs.get("ggml-vocab-refact.gguf") == "refact"
    assert archs.get("ggml-vocab-gpt-2.gguf") == "gpt2"


def test_vocab_only_model_with_weights(stories_path):
    with kv.Model(stories_path, vocab_only=True) as m, kv.Model(stories_path) as full:
        assert m.tokenize(PROMPT) == PROMPT_IDS == full.tokenize(PROMPT)
        assert (m.bos, m.eos) == (full.bos, full.eos)
        info = m.info()
        assert info.architecture == "llama" and info.n_vocab == 512 and info.n_layer == 0
        with pytest.raises(kv.BadStateError):
            kv.Session(m)


def test_unknown_model_flags_rejected(lib, stories_path):
    desc = N.model_desc_init()
    desc.path = stories_path.encode()
    desc.flags = 1 << 9
    out = ctypes.c_void_p()
    assert N.lib().kv_model_load(None, ctypes.byref(desc), ctypes.byref(out)) == N.KV_ERR_INVALID_ARGUMENT
    assert "desc->flags" in kv.last_error_message() and not out.value
