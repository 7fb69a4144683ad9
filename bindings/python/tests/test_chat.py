"""Model.chat_format / Model.chat_template (kv_chat_format, kv_chat_format_template,
kv_model_get_chat_template): the Phi-3 vocabulary GGUF's own template, a caller's template, the
errors, the two-call protocol. Vocab-only models: no GPU needed."""
import os

import pytest

import kvulkan as kv

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("KV_SHARED_DIR") or os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared"))
PHI3 = os.path.join(SHARED, "models", "vocab", "ggml-vocab-phi-3.gguf")
SPM = os.path.join(SHARED, "models", "vocab", "ggml-vocab-llama-spm.gguf")
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there!"},
    {"role": "user", "content": "How are you?"},
]


def _need(path):
    if not os.path.exists(path):
        pytest.skip(f"test data not found: {path} (set KV_SHARED_DIR to the shared/ directory)")
    return path


@pytest.fixture(scope="module")
def phi3(lib):
    with kv.Model(_need(PHI3), vocab_only=True) as m:
        yield m


def test_model_template_renders_phi3_format(phi3):
    assert phi3.chat_template.startswith("{{ bos_token }}{% for message in messages %}")
    text = phi3.chat_format(CHAT)
    assert text == (
        "<s><|user|>\nHello<|end|>\n<|assistant|>\nHi there!<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n"
    )
    ids = phi3.tokenize(text, add_special=False, parse_special=True)
    assert ids[0] == phi3.bos and ids.count(phi3.bos) == 1
    end = phi3.tokenize("<|end|>", add_special=False, parse_special=True)
    assert len(end) == 1 and ids.count(end[0]) == 3


def test_pairs_and_unicode(phi3):
    assert phi3.chat_format([("user", "héllo ✓")]) == "<s><|user|>\nhéllo ✓<|end|>\n<|assistant|>\n"


def test_caller_template_and_flags(phi3):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert phi3.chat_format(msgs, template=CHATML) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert phi3.chat_format(msgs, add_assistant_prompt=False, template=CHATML).endswith("Hi<|im_end|>\n")
    probe = "{{ bos_token }}|{{ enable_thinking is defined }}|{{ enable_thinking }}"
    assert phi3.chat_format([], template=probe) == "<s>|False|"
    assert phi3.chat_format([], template=probe, thinking=False) == "<s>|True|False"


def test_two_call_retry(phi3, monkeypatch):
    from kvulkan import _api

    monkeypatch.setattr(_api, "_first_capacity", lambda estimate: 1)
    assert phi3.chat_format(CHAT).startswith("<s><|user|>\nHello")
    assert len(phi3.chat_template) > 100


def test_errors(lib, phi3):
    with kv.Model(_need(SPM), vocab_only=True) as spm:
        assert spm.chat_template is None
        with pytest.raises(kv.UnsupportedError, match="no chat template"):
            spm.chat_format(CHAT)
        assert spm.chat_format(CHAT[:1], template="{{ bos_token }}{{ messages[0].content }}") == "<s>Hello"
    with pytest.raises(kv.InvalidArgumentError, match=r"line 1, column 4: unknown tag \{% frob %\}"):
        phi3.chat_format(CHAT, template="{% frob %}")
    with pytest.raises(kv.UnsupportedError, match=r"\{% include %\}"):
        phi3.chat_format(CHAT, template="{% include 'x.jinja' %}")
    with pytest.raises(kv.InvalidArgumentError, match="rejected the messages: roles must alternate"):
        phi3.chat_format(CHAT, template="{{ raise_exception('roles must alternate') }}")
    with pytest.raises(TypeError):
        phi3.chat_format([{"role": "user", "content": 5}])
    with pytest.raises(ValueError):
        phi3.chat_format([{"role": "user", "content": "a\0b"}])
