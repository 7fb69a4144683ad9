"""Lifetimes: context managers, idempotent close, parents kept alive by children, deferred
close of a parent with open children, garbage-collection order, use after close."""
import gc
import threading
import weakref

import pytest

import kvulkan as kv

PROMPT_IDS = [1, 403, 407, 261, 378]


def test_context_managers(lib, stories_path):
    with kv.Runtime() as rt:
        with kv.Model(stories_path, rt) as m:
            with kv.Session(m, n_ctx=16) as s:
                s.prefill(PROMPT_IDS)
                assert s.decode_step() == 432
            assert s.closed and s._handle is None
        assert m.closed and m._handle is None
    assert rt.closed and rt._handle is None


def test_close_is_idempotent(lib, stories_path):
    rt = kv.Runtime()
    m = rt.load_model(stories_path)
    s = m.session(n_ctx=16)
    for obj in (s, m, rt):
        obj.close()
        obj.close()
        assert obj.closed and obj._handle is None
    rt.close()


def test_use_after_close_raises(lib, stories_path):
    rt = kv.Runtime()
    m = rt.load_model(stories_path)
    s = m.session(n_ctx=16)
    s.close()
    for call in (lambda: s.prefill([1]), s.decode_step, s.logits, s.stats, s.reset, lambda: s.eval([1])):
        with pytest.raises(kv.BadStateError) as ei:
            call()
        assert "session is closed" in ei.value.message
    m.close()
    with pytest.raises(kv.BadStateError):
        m.tokenize("x")
    with pytest.raises(kv.BadStateError):
        kv.Session(m)
    rt.close()
    with pytest.raises(kv.BadStateError):
        rt.get_info()
    with pytest.raises(kv.BadStateError):
        rt.load_model(stories_path)
    with pytest.raises(kv.BadStateError):
        with rt:
            pass


def test_closing_parent_first_defers(lib, stories_path):
    """Closing the runtime (and model) while a session is open: the parents are closed for the
    caller at once, their native objects live on until the session closes, the session keeps
    working, and closing it releases the whole chain."""
    rt = kv.Runtime()
    m = rt.load_model(stories_path)
    s = m.session(n_ctx=32)
    s.prefill(PROMPT_IDS)
    rt.close()
    m.close()
    assert rt.closed and m.closed
    assert rt._handle is not None and m._handle is not None  # deferred: still referenced natively
    with pytest.raises(kv.BadStateError):
        rt.get_info()
    with pytest.raises(kv.BadStateError):
        m.session()
    assert s.decode_step() == 432  # the session is unaffected
    assert s.model is m and m.runtime is rt
    s.close()
    assert s._handle is None and m._handle is None and rt._handle is None


def test_runtime_exit_with_open_model(lib, stories_path):
    with kv.Runtime() as rt:
        m = kv.Model(stories_path, rt)
    assert rt.closed and rt._handle is not None
    assert m.tokenize("Once upon a time") == PROMPT_IDS
    with m.session(n_ctx=16) as s:
        s.prefill(PROMPT_IDS)
    m.close()
    assert rt._handle is None


def test_children_keep_parents_alive(lib, stories_path):
    """Only the session is referenced: the model and runtime must stay alive for it, whatever
    order the references are dropped in."""

    def make():
        rt = kv.Runtime()
        m = kv.Model(stories_path, rt)
        return kv.Session(m, n_ctx=32), weakref.ref(m), weakref.ref(rt)

    s, m_ref, rt_ref = make()
    gc.collect()
    assert m_ref() is not None and rt_ref() is not None
    s.prefill(PROMPT_IDS)
    assert s.decode_step() == 432
    del s
    gc.collect()
    assert m_ref() is None and rt_ref() is None  # all released with the last reference


def test_reference_cycle_collected_in_any_order(lib, stories_path):
    """Objects in a reference cycle are finalized in an arbitrary order by the cyclic GC; the
    deferred close makes every order safe."""
    for _ in range(3):
        rt = kv.Runtime()
        m = kv.Model(stories_path, rt)
        s = kv.Session(m, n_ctx=16)
        s.prefill(PROMPT_IDS)
        holder = {"rt": rt, "m": m, "s": s}
        rt.cycle = holder
        m.cycle = holder
        s.cycle = holder
        rt_ref = weakref.ref(rt)
        del rt, m, s, holder
        gc.collect()
        assert rt_ref() is None


def test_parse_only_model_outlives_nothing(lib, stories_path):
    m = kv.Model(stories_path)
    assert m.runtime is None
    del m
    gc.collect()


def test_sessions_on_threads(runtime, stories):
    """Different sessions of one model on different threads at once (the GIL is released
    during calls into the library)."""
    results = {}

    def work(i):
        with stories.session(n_ctx=32) as s:
            s.prefill(PROMPT_IDS)
            results[i] = list(s.generate(8))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r == results[0] for r in results.values())
    assert results[0][:2] == [432, 383]


EXIT_SCRIPT = r"""
import sys
import kvulkan as kv
msgs = []
rt = kv.Runtime(log_callback=lambda level, m: msgs.append(m))
m = rt.load_model(sys.argv[1])
s = m.session(n_ctx=16)
s.prefill([1, 403])
s.decode_step()
cycle = {"s": s, "m": m}
s.cycle = cycle
s2 = m.session(n_ctx=16)
s2.prefill([1])
rt.close()                      # deferred: children are open
gen = s2.generate(100)
next(gen)                       # a suspended generator holding the session
parse_only = kv.Model(sys.argv[1])
print("reached the end")
"""


def test_interpreter_exit_with_open_objects(lib, stories_path, tmp_path):
    """Exiting with open runtimes, models, sessions, reference cycles, a suspended generator
    and a log callback: finalizers run in interpreter-shutdown order and must not crash."""
    import os
    import subprocess
    import sys

    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(kv.__file__)))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    env["KV_LIBRARY"] = lib._name
    r = subprocess.run([sys.executable, str(script), stories_path], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "reached the end" in r.stdout
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr, r.stderr
