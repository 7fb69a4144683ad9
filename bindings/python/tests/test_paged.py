"""The paged KV cache: page-pool options, prefix sharing, fork, truncate, saved sessions, pool
statistics, sliding windows and quantized pages.

Every test that needs pools in a known state loads its own Model (pools belong to the model);
llama-gqa.f32 (2 layers, 2 KV heads, head_dim 32) with its 100-token reference prompt gives
7 pages of 16 tokens. Features the engine may not have yet (window/sinks, q8_0/q4_0 pages) are
run, and skipped with the library's message when it answers KV_ERR_UNSUPPORTED."""
import contextlib
import os
import pathlib

import pytest

import kvulkan as kv

PAGE = 16
POOL_TOKENS = 1024
STORIES_PROMPT = [1, 403, 407, 261, 378]


def rel_diff(a, b):
    """max |a - b| relative to max |b|."""
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


@contextlib.contextmanager
def skip_if_unsupported():
    """Runs the block; KV_ERR_UNSUPPORTED from the library skips the test with its message."""
    try:
        yield
    except kv.KvError as e:
        if e.status == kv.Status.ERR_UNSUPPORTED:
            pytest.skip(f"not supported by this library yet: {e}")
        raise


@pytest.fixture
def gqa(runtime, llama_gqa_path):
    """A fresh llama-gqa.f32 model: its page pools hold nothing from other tests."""
    with runtime.load_model(llama_gqa_path, kv_page_size=PAGE, kv_pool_tokens=POOL_TOKENS) as m:
        yield m


@pytest.fixture
def gqa_other(runtime, llama_gqa_path):
    """A second instance of the same file, with pools of its own: runs on it share nothing
    with runs on ``gqa`` (no prefix hits), so they are independent references."""
    with kv.Model(llama_gqa_path, runtime, kv_page_size=PAGE, kv_pool_tokens=POOL_TOKENS) as m:
        yield m


def test_model_page_options(runtime, llama_gqa_path, gqa, gqa_long_prompt):
    assert gqa.cache_stats().page_size == PAGE
    with gqa.session(n_ctx=40) as s:
        st = s.stats()
        assert st.page_size == PAGE and st.n_ctx == 48  # rounded up to whole pages
    with runtime.load_model(llama_gqa_path, kv_page_size=32, kv_pool_tokens=256) as m, m.session(n_ctx=64) as s:
        s.prefill(gqa_long_prompt[:40])
        st = s.stats()
        assert (st.page_size, st.pages) == (32, 2)
        cs = m.cache_stats("f16")
        assert (cs.page_size, cs.pages_total, cs.pages_in_use) == (32, 256 // 32, 2)
    for bad in [dict(kv_page_size=-1), dict(kv_pool_tokens=2**32), dict(kv_page_size="16")]:
        with pytest.raises(kv.InvalidArgumentError):  # refused by the bindings
            kv.Model(llama_gqa_path, runtime, **bad)
    with pytest.raises(kv.InvalidArgumentError):  # refused by the library: 1..1024
        kv.Model(llama_gqa_path, runtime, kv_page_size=4096)


def test_cache_stats_count_pages(gqa, gqa_long_prompt):
    cs = gqa.cache_stats()
    assert isinstance(cs, kv.CacheStats) and cs.cache_type == kv.CacheType.F16
    assert cs.pages_total == 0 and cs.pages_in_use == 0  # no f16 session yet
    with gqa.session(n_ctx=256) as s:
        s.prefill(gqa_long_prompt)
        st = s.stats()
        n_pages = -(-len(gqa_long_prompt) // PAGE)  # 7
        assert st.pages == n_pages and st.shared_pages == 0 and st.prefix_hit_tokens == 0
        assert st.kv_bytes == n_pages * PAGE * st.kv_bytes_per_token
        cs = gqa.cache_stats("f16")
        assert cs.pages_total == POOL_TOKENS // PAGE
        assert cs.pages_in_use == n_pages
        assert cs.pages_in_use + cs.pages_cached + cs.pages_free == cs.pages_total
        assert cs.page_bytes == PAGE * st.kv_bytes_per_token
        assert cs.device_bytes == cs.pages_total * cs.page_bytes
        assert gqa.cache_stats(kv.CacheType.F32).pages_total == 0  # pools are per cache type
    # Closed: the pages are no longer in use; full ones stay cached for prefix reuse.
    cs = gqa.cache_stats()
    assert cs.pages_in_use == 0 and cs.pages_cached == len(gqa_long_prompt) // PAGE
    assert cs.pages_cached + cs.pages_free == cs.pages_total
    with pytest.raises(kv.InvalidArgumentError):
        gqa.cache_stats("bf16")


def test_prefix_sharing(gqa, gqa_long_prompt):
    with gqa.session(n_ctx=256) as a, gqa.session(n_ctx=256) as b:
        a.prefill(gqa_long_prompt)
        first = a.logits()
        b.prefill(gqa_long_prompt)
        st = b.stats()
        assert 0 < st.prefix_hit_tokens < len(gqa_long_prompt)  # whole pages; the last is computed
        assert st.prefix_hit_tokens % PAGE == 0
        assert st.shared_pages == st.prefix_hit_tokens // PAGE and a.stats().shared_pages == st.shared_pages
        assert st.n_tokens == len(gqa_long_prompt) and st.tokens_prefilled == len(gqa_long_prompt)
        second = b.logits()
        assert rel_diff(second, first) <= 1e-5
        assert argmax(second) == argmax(first)
        assert list(b.generate(6)) == list(a.generate(6))
        cs = gqa.cache_stats()
        assert cs.prefix_hits >= st.prefix_hit_tokens // PAGE and cs.prefix_lookups >= cs.prefix_hits


def test_fork_then_diverge(gqa, gqa_other, gqa_long_prompt):
    p = gqa_long_prompt
    with gqa.session(n_ctx=128) as parent:
        parent.prefill(p[:60])
        child = parent.fork()
        with child:
            assert isinstance(child, kv.Session) and child is not parent
            assert child.model is gqa and child.n_tokens == 60
            assert list(child.logits()) == list(parent.logits())
            st = child.stats()
            assert st.pages == 4 and st.shared_pages == 4  # every page shared, copy-on-write
            # Diverge: each appends other tokens (the child's first write copies the shared,
            # partly filled last page).
            got_parent = parent.eval(p[60:80])
            got_child = child.eval(p[80:100])
            assert child.stats().shared_pages == 3  # full pages stay shared
            for cont, got in ((p[60:80], got_parent), (p[80:100], got_child)):
                with gqa_other.session(n_ctx=128) as ind:
                    ind.prefill(p[:60])
                    want = ind.eval(cont)
                for g, w in zip(got, want):
                    assert rel_diff(g, w) <= 1e-5
            assert list(child.generate(4)) != [] and parent.n_tokens == 80
        assert child.closed and not parent.closed
        parent.decode_step()  # unaffected by the child's close


def test_fork_keeps_sampler_state_and_model_alive(runtime, stories_path):
    smp = kv.Sampler(temperature=0.9, top_k=40, seed=42)
    m = runtime.load_model(stories_path)
    with m.session(n_ctx=64, sampler=smp) as s:
        s.prefill(STORIES_PROMPT)
        list(s.generate(4))
        child = s.fork()
    assert child.sampler == smp
    m.close()  # deferred: the child keeps the model
    assert m._handle is not None
    with pytest.raises(kv.BadStateError):
        m.session()
    with child:
        a = list(child.generate(8))
        with pytest.raises(kv.BadStateError):
            child.fork()  # a fork is a new session of the model, which the caller closed
    assert m._handle is None  # the last child closed: the model is destroyed now
    # Same seed and random state: a fork continues exactly like the original would have.
    with runtime.load_model(stories_path) as m2, m2.session(n_ctx=64, sampler=smp) as s2:
        s2.prefill(STORIES_PROMPT)
        list(s2.generate(4))
        assert list(s2.generate(8)) == a


def test_truncate(gqa, gqa_other, gqa_long_prompt):
    p = gqa_long_prompt
    with gqa.session(n_ctx=128) as s:
        s.prefill(p)
        s.truncate(50)
        st = s.stats()
        assert st.n_tokens == 50 and st.pages == -(-50 // PAGE)
        got = s.logits()
        with gqa_other.session(n_ctx=128) as fresh:
            fresh.prefill(p[:50])
            assert rel_diff(got, fresh.logits()) <= 1e-5
            assert list(s.generate(8)) == list(fresh.generate(8))
        assert s.n_tokens == 58
        with pytest.raises(kv.InvalidArgumentError):
            s.truncate(59)  # more than held: unchanged
        with pytest.raises(kv.InvalidArgumentError):
            s.truncate(-1)  # refused by the bindings
        assert s.n_tokens == 58
        s.truncate(58)  # a no-op
        assert s.n_tokens == 58
        s.truncate(0)  # == reset()
        assert s.n_tokens == 0 and s.stats().pages == 0
        with pytest.raises(kv.BadStateError):
            s.logits()


def test_save_load_round_trip(gqa, gqa_long_prompt, tmp_path):
    smp = kv.Sampler(temperature=0.8, top_k=50, seed=7)  # the sampler's random state is saved too
    with gqa.session(n_ctx=128, sampler=smp) as s:
        s.prefill(gqa_long_prompt[:40])
        list(s.generate(3))
        image = s.save()
        assert isinstance(image, bytes) and len(image) > 0
        path = tmp_path / "session.kvs"
        s.save_file(path)
        assert path.read_bytes() == image and not os.path.exists(str(path) + ".tmp")
        restored = [gqa.load_session(image), gqa.load_session(str(path)), gqa.load_session(bytearray(image))]
        try:
            want_logits = list(s.logits())
            for r in restored:
                assert isinstance(r, kv.Session) and r.model is gqa
                assert r.n_tokens == 43 and r.n_ctx == s.n_ctx
                assert r.sampler is None  # restored by the library, not readable from Python
                assert list(r.logits()) == want_logits  # identical, bit for bit
            want = list(s.generate(8))
            for r in restored:
                assert list(r.generate(8)) == want
        finally:
            for r in restored:
                r.close()
    # A greedy session saved and reloaded through a pathlib path.
    with gqa.session(n_ctx=64) as s:
        s.prefill(gqa_long_prompt[:20])
        s.save_file(pathlib.Path(tmp_path / "greedy.kvs"))
        with gqa.load_session(pathlib.Path(tmp_path / "greedy.kvs")) as r:
            assert list(r.logits()) == list(s.logits())
            assert list(r.generate(5)) == list(s.generate(5))


def test_bad_images(runtime, gqa, gqa_long_prompt, stories, tmp_path, llama_gqa_path):
    with gqa.session(n_ctx=64) as s:
        s.prefill(gqa_long_prompt[:20])
        image = s.save()
    corrupted = bytearray(image)
    corrupted[len(image) // 2] ^= 0x5A
    for bad in (bytes(corrupted), image[: len(image) // 2], image[:-1], b"not a saved session" * 4):
        with pytest.raises(kv.BadModelError) as ei:
            gqa.load_session(bad)
        assert ei.value.message
    with pytest.raises(kv.BadModelError):
        stories.load_session(image)  # another model
    with kv.Model(llama_gqa_path, runtime, kv_page_size=2 * PAGE) as other_pages:
        with pytest.raises(kv.BadModelError) as ei:
            other_pages.load_session(image)
        assert "page" in ei.value.message
    (tmp_path / "corrupt.kvs").write_bytes(bytes(corrupted))
    with pytest.raises(kv.BadModelError):
        gqa.load_session(tmp_path / "corrupt.kvs")
    with pytest.raises(kv.KvIOError):
        gqa.load_session(tmp_path / "missing.kvs")
    with pytest.raises(kv.InvalidArgumentError):
        gqa.load_session(b"")
    with pytest.raises(kv.InvalidArgumentError):
        gqa.load_session(12345)
    assert gqa.cache_stats().pages_in_use == 0  # nothing leaked by the failures


def test_window_and_sinks(gqa, gqa_other, gqa_long_prompt):
    p = gqa_long_prompt
    window, sinks, chunk = 16, 4, 8
    for bad in (dict(window=-1), dict(sinks=2**32)):
        with pytest.raises(kv.InvalidArgumentError):  # refused by the bindings
            gqa.session(**bad)
    with skip_if_unsupported():
        # A window covering the whole sequence is full attention.
        with gqa.session(n_ctx=128, window=128, sinks=sinks) as s, gqa_other.session(n_ctx=128) as full:
            s.prefill(p)
            full.prefill(p)
            assert rel_diff(s.logits(), full.logits()) <= 1e-5
        # Endless generation in bounded memory: far past n_ctx, pages outside the window and the
        # sinks go back to the pool.
        bound = -(-sinks // PAGE) + -(-(window + chunk) // PAGE) + 1
        with gqa.session(n_ctx=32, window=window, sinks=sinks) as s:
            for i in range(0, len(p), chunk):
                s.prefill(p[i : i + chunk])
                assert s.stats().pages <= bound, (i, s.stats())
            for _ in range(20):
                if s.decode_step() is None:
                    s.prefill([p[0]])
            st = s.stats()
            assert st.tokens_prefilled >= len(p) and st.pages <= bound
            assert gqa.cache_stats().pages_in_use <= bound


@pytest.mark.parametrize("name,bytes_per_32", [("q8_0", 34), ("q4_0", 18)])
def test_quantized_cache(gqa, gqa_other, gqa_long_prompt, name, bytes_per_32):
    p = gqa_long_prompt
    info = gqa.info()
    with skip_if_unsupported():
        with gqa.session(n_ctx=128, cache_type=name.upper()) as s, gqa_other.session(
            n_ctx=128, cache_type="f32"
        ) as ref:
            s.prefill(p)
            ref.prefill(p)
            st = s.stats()
            elems = 2 * info.n_layer * info.n_head_kv * info.head_dim
            assert st.kv_bytes_per_token == elems // 32 * bytes_per_32
            assert st.pages == -(-len(p) // PAGE)
            err = rel_diff(s.logits(), ref.logits())
            assert err <= (0.05 if name == "q8_0" else 0.25), err
            assert s.decode_step() is not None or s.eog_token is not None
            cs = gqa.cache_stats(name)
            assert cs.cache_type == kv.CacheType[name.upper()]
            assert cs.pages_in_use == st.pages and cs.page_bytes >= PAGE * st.kv_bytes_per_token
        # Prefix sharing and fork work on quantized pages too.
        with gqa.session(n_ctx=128, cache_type=kv.CacheType[name.upper()]) as a:
            a.prefill(p)
            assert a.stats().prefix_hit_tokens > 0
            with a.fork() as b:
                assert list(b.generate(4)) == list(a.generate(4))


def test_cache_type_names(gqa):
    assert kv.CacheType.Q8_0 == 2 and kv.CacheType.Q4_0 == 3
    with pytest.raises(kv.InvalidArgumentError) as ei:
        gqa.session(cache_type="q5_0")
    assert "'q8_0'" in str(ei.value) and "'q4_0'" in str(ei.value)
