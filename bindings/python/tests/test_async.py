"""Non-blocking work through the Python binding: tickets give the blocking calls' tokens, a
session with work in flight raises BusyError (deterministic: a callback holds kvulkan's worker),
and a cancelled prefill ends Status.CANCELLED with a session that continues exactly like an
uncancelled one."""
import threading
import time

import pytest

import kvulkan as kv


def _poll_until_done(t):
    while True:
        st = t.poll()
        if st != kv.Status.NOT_READY:
            return st
        time.sleep(0.0002)


def test_submitted_prefill_and_decode_give_the_blocking_tokens(stories, stories_ref):
    n = 16
    prompt = stories_ref["prompt_ids"]
    with kv.Session(stories, n_ctx=128) as a, kv.Session(stories, n_ctx=128) as b:
        a.prefill(prompt)
        want = [a.decode_step() for _ in range(n)]
        assert want == stories_ref["generated_ids"][:n]

        with b.submit_prefill(prompt) as t:
            assert t.wait() == kv.Status.OK
            assert t.poll() == kv.Status.OK
            assert t.done
            assert t.results == []
            with pytest.raises(kv.BadStateError):
                t.token
        got = []
        for _ in range(n):
            with b.submit_decode() as t:
                assert _poll_until_done(t) == kv.Status.OK
                assert t.results == [(t.token, kv.Status.OK)]
                got.append(t.token)
        assert got == want
        assert a.n_tokens == b.n_tokens

        # A batch ticket equals decode_batch on forks of the same sessions.
        with a.fork() as c, b.fork() as d:
            want_batch = kv.decode_batch([a, b])
            with kv.submit_decode_batch([c, d]) as t:
                assert t.wait(60) == kv.Status.OK
                assert t.results == want_batch


def test_busy_session_raises_and_callbacks_run_on_the_worker(stories, stories_ref):
    prompt = stories_ref["prompt_ids"]
    with kv.Session(stories, n_ctx=128) as x, kv.Session(stories, n_ctx=128) as y, \
            kv.Session(stories, n_ctx=128) as want:
        for s in (x, y, want):
            s.prefill(prompt)
        want_token = want.decode_step()

        # Ticket a's callback holds the worker, so ticket b (queued behind it) keeps y in use.
        entered = threading.Event()
        release = threading.Event()
        seen = {}

        def hold(ticket, status):
            seen.update(thread=threading.get_ident(), ticket=ticket, status=status, token=ticket.token)
            entered.set()
            release.wait()

        a = x.submit_decode(hold)
        b = y.submit_decode()
        try:
            assert entered.wait(60)
            assert seen["thread"] != threading.get_ident()
            assert seen["ticket"] is a
            assert seen["status"] == kv.Status.OK
            assert seen["token"] == want_token
            assert a.poll() == kv.Status.OK
            x.get_stats()  # x is free again while its callback runs

            assert b.poll() == kv.Status.NOT_READY
            assert not b.done
            with pytest.raises(kv.BusyError) as e:
                y.decode_step()
            assert e.value.status == kv.Status.ERR_BUSY
            with pytest.raises(kv.BusyError):
                y.submit_decode()
            with pytest.raises(kv.BusyError):
                y.submit_prefill([1])
            with pytest.raises(kv.BusyError):
                y.get_stats()
            # A batch gives the busy session its own status and runs the free one.
            assert [st for _, st in kv.decode_batch([x, y])] == [kv.Status.OK, kv.Status.ERR_BUSY]
            assert b.wait(0.005) == kv.Status.NOT_READY
        finally:
            release.set()
        assert b.wait() == kv.Status.OK
        assert b.token == want_token
        a.close()
        b.close()
        a.close()  # idempotent
        with pytest.raises(kv.BadStateError):
            a.poll()
        # y took exactly one step (the refused calls changed nothing).
        assert y.n_tokens == len(prompt) + 1
        assert y.decode_step() == want.decode_step()

        # The work's own error is the ticket's status; a submit's error raises and gives no ticket.
        with kv.Session(stories, n_ctx=64) as fresh:
            with fresh.submit_decode() as t:
                with pytest.raises(kv.BadStateError):
                    t.wait()
            with pytest.raises(kv.InvalidArgumentError):
                fresh.submit_prefill([])
        with pytest.raises(kv.InvalidArgumentError):
            kv.submit_decode_batch([])

        # A callback may close its own ticket; a closed session's native object waits for its tickets.
        closed = threading.Event()
        x.submit_decode(lambda t, st: (t.close(), closed.set()))
        assert closed.wait(60)
        s = kv.Session(stories, n_ctx=64)
        p = s.submit_prefill(prompt)
        s.close()
        assert p.wait() == kv.Status.OK
        p.close()
        assert s._handle is None  # destroyed with its last ticket


def test_cancelled_prefill_stops_at_a_chunk_and_the_session_continues(runtime, stories, stories_path, stories_ref):
    ids = stories_ref["prompt_ids"]
    n, n_batch = 64, 16  # 4 chunks: the reference prompt's tokens, repeated
    prompt = [ids[0]] + [ids[1 + (i - 1) % (len(ids) - 1)] for i in range(1, n)]
    # The uncancelled run on a model of its own: no page of it is shared with the runs below.
    with kv.Model(stories_path, runtime) as other, \
            kv.Session(other, n_ctx=128, n_batch=n_batch) as whole, \
            kv.Session(stories, n_ctx=128, n_batch=n_batch) as s, \
            kv.Session(stories, n_ctx=128, n_batch=n_batch) as holder:
        assert whole.prefill(prompt) == kv.Status.OK
        want_logits = whole.logits()
        want = [whole.decode_step() for _ in range(4)]

        # A callback holds the worker, so the prefill queued behind it starts with the cancel
        # request already made: it stops after its first chunk, deterministically.
        holder.prefill(ids[:1])
        release = threading.Event()
        with holder.submit_decode(lambda t, st: release.wait()) as hold, s.submit_prefill(prompt) as t:
            s.cancel()
            release.set()
            st = t.wait()
            assert hold.wait() == kv.Status.OK
        assert st == kv.Status.CANCELLED
        stats = s.get_stats()
        assert stats.n_tokens == n_batch
        assert stats.last_prefill_tokens == n_batch
        assert s.prefill(prompt[n_batch:]) == kv.Status.OK
        assert s.logits() == want_logits
        assert [s.decode_step() for _ in range(4)] == want
        # A cancel with nothing running is a no-op: the next call is not affected.
        s.reset()
        s.cancel()
        assert s.prefill(prompt) == kv.Status.OK
        assert s.n_tokens == n
