"""Constrained sampling (grammars, JSON Schema, logit bias, banned tokens) and embeddings."""
import json
import math

import pytest

import kvulkan as kv

PROMPT_IDS = [1, 403, 407, 261, 378]

OBJECT_GRAMMAR = r'''
root  ::= "{" ws key ws ":" ws value ( ws "," ws key ws ":" ws value ){0,2} ws "}"
key   ::= "\"" [a-z]{1,6} "\""
value ::= "\"" [a-zA-Z ]{0,8} "\"" | "-"? [1-9] [0-9]{0,3} | "true" | "false" | "null"
ws    ::= " "?
'''


def sample_text(session, model, limit=200):
    out = b""
    for tok in session.generate(limit):
        out += model.token_to_piece(tok)
    return out.decode("utf-8")


def test_grammar_samples_parse_as_json(stories):
    for seed in range(8):
        with kv.Session(stories, n_ctx=256, sampler=kv.Sampler(temperature=1.0, seed=seed)) as s:
            s.set_grammar(OBJECT_GRAMMAR)
            s.prefill(PROMPT_IDS)
            text = sample_text(s, stories)
            assert s.eog_token == stories.eos, text
            assert isinstance(json.loads(text), dict), text


def test_grammar_errors_and_removal(stories):
    with kv.Session(stories, n_ctx=64) as s:
        with pytest.raises(kv.InvalidArgumentError, match="line 2, column 1: rule 'root' is defined twice"):
            s.set_grammar('root ::= "a"\nroot ::= "b"')
        with pytest.raises(kv.InvalidArgumentError, match="no rule named 'start'"):
            s.set_grammar('root ::= "a"', root="start")
        s.set_grammar('root ::= [0-9]{2}')
        s.prefill(PROMPT_IDS)
        digits = b"".join(stories.token_to_piece(t) for t in s.generate(10))
        assert len(digits) == 2 and digits.isdigit()
        s.set_grammar(None)
        assert s.decode_step() is not None


def test_json_schema_to_grammar(stories):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 6}, "n": {"type": "integer"},
                       "ok": {"type": "boolean"}},
        "required": ["name", "n"],
    }
    g = kv.json_schema_to_grammar(schema)
    assert "root ::=" in g
    assert kv.json_schema_to_grammar(json.dumps(schema)) == g
    with pytest.raises(kv.UnsupportedError, match="'format' is not supported"):
        kv.json_schema_to_grammar({"type": "string", "format": "date"})
    with pytest.raises(kv.InvalidArgumentError, match="malformed JSON"):
        kv.json_schema_to_grammar("{")
    for seed in range(3):
        with kv.Session(stories, n_ctx=256, sampler=kv.Sampler(temperature=0.9, seed=seed)) as s:
            s.set_json_schema(schema)
            s.prefill(PROMPT_IDS)
            text = sample_text(s, stories, 250)
            if s.eog_token is None:  # a very long string: the limit came first
                continue
            obj = json.loads(text)
            assert list(obj)[:2] == ["name", "n"] and isinstance(obj["n"], int), text
            assert len(obj["name"]) <= 6


def test_logit_bias_and_banned_tokens(stories):
    with kv.Session(stories, n_ctx=64) as s:
        s.prefill(PROMPT_IDS)
        logits = s.logits()
        best = max(range(len(logits)), key=logits.__getitem__)
        second = max((i for i in range(len(logits)) if i != best), key=logits.__getitem__)
    with kv.Session(stories, n_ctx=64, sampler=kv.Sampler(banned_tokens=(best,))) as s:
        s.prefill(PROMPT_IDS)
        assert s.decode_step() == second
        s.set_sampler(kv.Sampler(logit_bias={300: 1000.0}))
        assert s.decode_step() == 300
        with pytest.raises(kv.InvalidArgumentError, match="outside the vocabulary"):
            s.set_sampler(kv.Sampler(banned_tokens=(stories.n_vocab,)))
        with pytest.raises(kv.BadStateError, match="every token is banned"):
            s.set_sampler(kv.Sampler(logit_bias={t: -math.inf for t in range(stories.n_vocab)}))
            s.decode_step()


def test_embeddings(stories):
    n_embd = stories.get_info().n_embd
    toks = [1, 50, 60, 70, 80, 90]
    with kv.Session(stories, n_ctx=64, cache_type="f32") as s:
        last = s.embeddings(toks)
        assert len(last) == n_embd
        mean = s.embeddings(toks, mean=True)
        unit = s.embeddings(toks, mean=True, normalize=True)
        norm = math.sqrt(sum(x * x for x in mean))
        assert all(abs(u - m / norm) < 1e-5 for u, m in zip(unit, mean))
        assert s.n_tokens == 0  # nothing was added
        # One token's mean is its last; the same tokens give the same vector again.
        assert s.embeddings(toks[:1], mean=True) == s.embeddings(toks[:1])
        assert s.embeddings(toks) == last
        # After a context the same token has another state; the session keeps its tokens.
        s.prefill(toks[:-1])
        after = s.embeddings(toks[-1:])  # the same state, computed in another pass shape
        assert max(abs(a - b) for a, b in zip(after, last)) <= 1e-4 * max(abs(x) for x in last)
        assert s.n_tokens == len(toks) - 1
        assert s.embeddings(toks[-1:], numpy=True).shape == (n_embd,) if _has_numpy() else True
        with pytest.raises(kv.InvalidArgumentError):
            s.embeddings([])


def _has_numpy():
    try:
        import numpy  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True
