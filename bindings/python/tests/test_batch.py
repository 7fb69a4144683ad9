"""Many sessions in one pass (kv_decode_batch) and speculative decoding (kv_decode_speculative)
through the binding: same tokens as decoding each session alone."""
import pytest

import kvulkan as kv


def _prompts(stories):
    return [stories.tokenize(p, add_special=True) for p in
            ("Once upon a time", "The cat sat", "Lily and Tom went to the park", "One day")]


def test_decode_batch_equals_each_session_alone(stories):
    alone = []
    for p in _prompts(stories):
        with kv.Session(stories, n_ctx=128) as s:
            s.prefill(p)
            alone.append([s.decode_step() for _ in range(10)])
    sessions = [kv.Session(stories, n_ctx=128) for _ in range(4)]
    try:
        for s, p in zip(sessions, _prompts(stories)):
            s.prefill(p)
        got = [[] for _ in sessions]
        for _ in range(10):
            for i, (tok, st) in enumerate(kv.decode_batch(sessions)):
                assert st == kv.Status.OK
                got[i].append(tok)
        assert got == alone
        assert all(s.stats().forward_passes >= 10 for s in sessions)
    finally:
        for s in sessions:
            s.close()


def test_decode_batch_statuses_and_rejections(stories):
    a = kv.Session(stories, n_ctx=64)
    b = kv.Session(stories, n_ctx=64)  # never prefilled: its own status, a goes on
    try:
        a.prefill(_prompts(stories)[0])
        (ta, sa), (tb, sb) = kv.decode_batch([a, b])
        assert sa == kv.Status.OK and isinstance(ta, int)
        assert tb is None and sb == kv.Status.ERR_BAD_STATE
        with pytest.raises(kv.InvalidArgumentError, match="twice"):
            kv.decode_batch([a, a])
        with pytest.raises(kv.InvalidArgumentError):
            kv.decode_batch([])
    finally:
        a.close()
        b.close()


def test_decode_speculative_equals_greedy(stories):
    p = _prompts(stories)[0]
    with kv.Session(stories, n_ctx=256) as s:
        s.prefill(p)
        plain = [s.decode_step() for _ in range(64)]
    with kv.Session(stories, n_ctx=256) as s:
        s.prefill(p)
        got, drafted = [], 0
        while len(got) < 64:
            toks, n = s.decode_speculative(draft_n=4)
            assert 1 <= len(toks) <= 5
            got += toks
            drafted += n
        assert got[:64] == plain
        assert drafted > 0
