"""Sessions: greedy generation against llama.cpp's reference, EOG, context full, eval, logits,
samplers, stats."""
import array

import pytest

import kvulkan as kv

PROMPT_IDS = [1, 403, 407, 261, 378]

# 49 token ids (random, seed 0) after which llama-gqa.f32's greedy choice is EOS (id 2), by a
# logit margin of ~1.9 over the runner-up: a deterministic end-of-generation.
GQA_EOG_PREFIX = [
    867, 397, 779, 914, 433, 44, 268, 991, 526, 500, 417, 943, 805, 852, 313, 994, 491, 369, 600,
    916, 932, 226, 519, 145, 291, 146, 776, 100, 636, 821, 259, 1013, 934, 548, 1009, 725, 832,
    619, 926, 153, 320, 104, 750, 78, 923, 873, 703, 341, 486,
]


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


def test_greedy_matches_reference(stories, stories_ref):
    assert stories_ref["prompt_ids"] == PROMPT_IDS
    assert stories.tokenize(stories_ref["prompt"]) == PROMPT_IDS
    ref = stories_ref["generated_ids"][:32]
    with kv.Session(stories, n_ctx=64) as s:
        s.prefill(PROMPT_IDS)
        assert s.n_tokens == 5
        got = list(s.generate(32))
        assert got == ref
        st = s.stats()
        assert st.n_tokens == 5 + 32 and st.tokens_prefilled == 5 and st.tokens_decoded == 32


def test_generate_text_matches_reference(stories, stories_ref):
    n = 32
    ref_ids = stories_ref["generated_ids"][:n]
    with stories.session(n_ctx=64) as s:
        s.prefill(PROMPT_IDS)
        text = "".join(s.generate_text(n))
    assert text == b"".join(stories.token_to_piece(t) for t in ref_ids).decode()
    assert text.startswith(", there was a little girl named Lily.")
    assert bytes.fromhex(stories_ref["generated_text_hex"]).decode().startswith(text)


def test_decode_step_and_logits(stories, stories_ref):
    with stories.session(n_ctx=32, cache_type="f32") as s:
        with pytest.raises(kv.BadStateError):
            s.decode_step()  # before any prefill
        with pytest.raises(kv.BadStateError):
            s.logits()
        s.prefill(PROMPT_IDS)
        logits = s.logits()
        assert isinstance(logits, array.array) and logits.typecode == "f" and len(logits) == 512
        top = stories_ref["steps"][0]["top5"]
        assert argmax(logits) == top[0][0]
        assert abs(logits[top[0][0]] - top[0][1]) < 1e-2
        tok = s.decode_step()
        assert tok == top[0][0] and s.eog_token is None


def test_eval_returns_all_logits(stories, stories_ref):
    with stories.session(n_ctx=32) as s:
        rows = s.eval(PROMPT_IDS)
        assert len(rows) == 5 and all(len(r) == 512 for r in rows)
        assert list(rows[-1]) == list(s.logits())  # the last row is the current logits
        assert argmax(rows[-1]) == stories_ref["steps"][0]["top5"][0][0]
        assert s.n_tokens == 5
        # Each row is the prediction after its prefix: row 0 differs from row 4.
        assert list(rows[0]) != list(rows[4])
        assert s.eval([432], logits=False) is None and s.n_tokens == 6
        assert argmax(s.logits()) == stories_ref["steps"][1]["top5"][0][0]


def test_numpy_optional(stories):
    try:
        import numpy as np
    except ImportError:
        with stories.session(n_ctx=16) as s:
            s.prefill(PROMPT_IDS)
            with pytest.raises(ImportError):
                s.logits(numpy=True)
        pytest.skip("numpy is not installed: checked that numpy=True raises ImportError")
    with stories.session(n_ctx=16) as s:
        out = s.eval(PROMPT_IDS, numpy=True)
        assert out.shape == (5, 512) and out.dtype == np.float32
        assert (s.logits(numpy=True) == out[-1]).all()


def test_context_full(stories):
    with stories.session(n_ctx=16) as s:
        n_ctx = s.n_ctx
        assert n_ctx >= 16
        st = s.stats()
        assert n_ctx % st.page_size == 0
        with pytest.raises(kv.ContextFullError) as ei:
            s.prefill([1] + [403] * n_ctx)
        assert ei.value.status == kv.Status.ERR_CONTEXT_FULL and ei.value.message
        assert s.n_tokens == 0  # unchanged
        s.prefill(PROMPT_IDS)
        with pytest.raises(kv.ContextFullError):
            list(s.generate())  # no EOS from this model before the context fills
        assert s.n_tokens == n_ctx
        with pytest.raises(kv.ContextFullError):
            s.decode_step()
        with pytest.raises(kv.ContextFullError):
            s.prefill([403])
        assert s.n_tokens == n_ctx  # still intact and readable
        assert len(s.logits()) == 512
        s.reset()
        assert s.n_tokens == 0
        s.prefill(PROMPT_IDS)
        assert s.decode_step() == 432


def test_end_of_generation(runtime, llama_gqa_path):
    with kv.Model(llama_gqa_path, runtime) as m, m.session(n_ctx=64) as s:
        assert m.eos == 2 and m.is_eog(2)
        s.prefill(GQA_EOG_PREFIX)
        assert s.decode_step() is None  # EOS sampled: reported, not appended
        assert s.eog_token == 2 and s.n_tokens == len(GQA_EOG_PREFIX)
        assert list(s.generate(10)) == []  # generate() stops at EOG without yielding it
        assert s.n_tokens == len(GQA_EOG_PREFIX)
        # One token earlier the model does not want to stop: generate() yields until it does.
        s.reset()
        s.prefill(GQA_EOG_PREFIX[:-1])
        s.prefill(GQA_EOG_PREFIX[-1:])
        assert list(s.generate()) == [] and s.eog_token == 2


def test_bad_inputs_leave_session_unchanged(stories):
    with stories.session(n_ctx=32) as s:
        s.prefill(PROMPT_IDS)
        with pytest.raises(kv.BadTokenError):
            s.prefill([403, 512])
        with pytest.raises(kv.BadTokenError):
            s.eval([-1])
        with pytest.raises(kv.InvalidArgumentError):
            s.prefill([2**33])
        with pytest.raises(kv.InvalidArgumentError):
            s.prefill("Once upon a time")  # text, not ids
        assert s.n_tokens == 5
        assert s.decode_step() == 432


def test_sampler(stories):
    smp = kv.Sampler(temperature=0.9, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=1234)
    runs = []
    for _ in range(2):
        with stories.session(n_ctx=64, sampler=smp) as s:
            assert s.sampler == smp
            s.prefill(PROMPT_IDS)
            runs.append(list(s.generate(16)))
    assert runs[0] == runs[1]  # same seed, same inputs: same tokens
    with stories.session(n_ctx=64, sampler={"temperature": 0.9, "seed": 1234, "top_k": 40, "top_p": 0.95,
                                             "min_p": 0.05, "repeat_penalty": 1.1}) as s:
        s.prefill(PROMPT_IDS)
        assert list(s.generate(16)) == runs[0]
        # reset restarts the random state from the seed
        s.reset()
        s.prefill(PROMPT_IDS)
        assert list(s.generate(16)) == runs[0]
        # back to greedy mid-sequence
        s.reset()
        s.prefill(PROMPT_IDS)
        s.set_sampler(None)
        assert s.sampler == kv.Sampler.greedy()
        assert s.decode_step() == 432
        with pytest.raises(kv.InvalidArgumentError):
            s.set_sampler(kv.Sampler(top_p=-3.0, temperature=1.0))
        with pytest.raises(kv.InvalidArgumentError):
            s.set_sampler("greedy")


def test_session_options(stories, stories_ref):
    ref = stories_ref["generated_ids"][:8]
    for kwargs in [dict(cache_type="f32"), dict(cache_type=kv.CacheType.F16, n_batch=2), dict(no_cache=True)]:
        with stories.session(n_ctx=32, **kwargs) as s:
            s.prefill(PROMPT_IDS)
            assert list(s.generate(8)) == ref, kwargs
    with pytest.raises(kv.InvalidArgumentError):
        stories.session(cache_type="bf16")
    for bad in [dict(n_ctx=-1), dict(n_batch=2**32), dict(n_ctx="16"), dict(cache_type=7)]:
        with pytest.raises(kv.InvalidArgumentError):  # from the bindings, or from the library
            stories.session(**bad)


def test_stats(stories):
    with stories.session(n_ctx=32, cache_type="f32") as s:
        st = s.stats()
        assert isinstance(st, kv.SessionStats)
        assert st.n_tokens == 0 and st.n_ctx >= 32 and st.page_size > 0
        info = stories.info()
        assert st.kv_bytes_per_token == 2 * info.n_layer * info.n_head_kv * info.head_dim * 4
        assert st.kv_bytes == 0  # paged: pages are taken as tokens arrive
        s.prefill(PROMPT_IDS)
        paged = s.stats()
        pages = -(-len(PROMPT_IDS) // paged.page_size)
        assert paged.kv_bytes == st.kv_bytes_per_token * pages * paged.page_size
        list(s.generate(3))
        st = s.stats()
        assert (st.n_tokens, st.tokens_prefilled, st.tokens_decoded, st.last_prefill_tokens) == (8, 5, 3, 5)
        assert st.last_prefill_ms > 0 and st.total_decode_ms >= st.last_decode_ms > 0
        assert st.scratch_bytes > 0
    with stories.session(n_ctx=32) as s:  # f16: half the bytes
        assert s.stats().kv_bytes_per_token == st.kv_bytes_per_token // 2
