// Chat templates through the C API (src/capi/chat_api.cpp): the Phi-3 vocabulary GGUF's own
// tokenizer.chat_template rendered and tokenized into the model's control tokens; a model without
// a template, or with a malformed one; caller templates; the KV_INCOMPLETE size protocol; argument
// checks. No GPU: vocab-only models without a runtime.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "model/gguf.h"

namespace {

std::string vocab_path(const char* name) { return kvtest::shared_dir() + "/models/vocab/" + name; }

kv_model* load_vocab(const std::string& path) {
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.path = path.c_str();
    d.flags = KV_MODEL_VOCAB_ONLY;
    kv_model* m = nullptr;
    kv_status s = kv_model_load(nullptr, &d, &m);
    REQUIRE_MESSAGE(s == KV_OK, kv_last_error_message());
    return m;
}

kv_model* load_bytes(const std::vector<uint8_t>& bytes) {
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.data = bytes.data();
    d.size = bytes.size();
    d.copy_data = 1;
    d.flags = KV_MODEL_VOCAB_ONLY;
    kv_model* m = nullptr;
    kv_status s = kv_model_load(nullptr, &d, &m);
    REQUIRE_MESSAGE(s == KV_OK, kv_last_error_message());
    return m;
}

// A copy of a GGUF's metadata (the vocabulary) with tokenizer.chat_template set to `tmpl`.
std::vector<uint8_t> with_template(const std::string& path, const std::string& tmpl) {
    auto src = kv::model::GgufFile::open(path);
    kv::model::GgufWriter w;
    for (const auto& [k, v] : src->metadata())
        if (k != "tokenizer.chat_template" && k != "general.alignment") w.set_value(k, v);
    w.set_string("tokenizer.chat_template", tmpl);
    return w.to_bytes();
}

std::vector<kv_chat_message> messages(const std::vector<std::pair<const char*, const char*>>& in) {
    std::vector<kv_chat_message> out;
    for (const auto& [role, content] : in) {
        kv_chat_message m = KV_CHAT_MESSAGE_INIT;
        m.role = role;
        m.content = content;
        out.push_back(m);
    }
    return out;
}

struct Result {
    kv_status status;
    std::string text;
    std::string error;
};

Result format(const kv_model* m, const std::vector<kv_chat_message>& msgs, uint32_t flags,
              const char* tmpl = nullptr) {
    auto call = [&](char* buf, size_t* len) {
        return tmpl ? kv_chat_format_template(m, tmpl, msgs.data(), uint32_t(msgs.size()), flags, buf, len)
                    : kv_chat_format(m, msgs.data(), uint32_t(msgs.size()), flags, buf, len);
    };
    size_t len = 0;
    kv_status s = call(nullptr, &len);
    if (s != KV_INCOMPLETE && s != KV_OK) return {s, "", kv_last_error_message()};
    std::string text(len, '\0');
    s = call(text.data(), &len);
    text.resize(len);
    return {s, text, s == KV_OK ? "" : kv_last_error_message()};
}

std::vector<kv_token> tokenize(const kv_model* m, const std::string& text) {
    uint32_t n = 0;
    kv_tokenize(m, text.data(), text.size(), KV_TOKENIZE_PARSE_SPECIAL, nullptr, &n);
    std::vector<kv_token> ids(n);
    kv_status s = kv_tokenize(m, text.data(), text.size(), KV_TOKENIZE_PARSE_SPECIAL, ids.data(), &n);
    REQUIRE(s == KV_OK);
    return ids;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* const kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

}  // namespace

TEST_CASE("chat C API: the Phi-3 GGUF's own template renders its prompt format and tokenizes to its control tokens") {
    if (!kvtest::require_shared()) return;
    kv_model* m = load_vocab(vocab_path("ggml-vocab-phi-3.gguf"));
    // kv_model_get_chat_template gives the file's text byte for byte.
    auto file = kv::model::GgufFile::open(vocab_path("ggml-vocab-phi-3.gguf"));
    std::string want_template(*file->get_string("tokenizer.chat_template"));
    size_t len = 0;
    REQUIRE(kv_model_get_chat_template(m, nullptr, &len) == KV_INCOMPLETE);
    std::string tmpl(len, '\0');
    REQUIRE(kv_model_get_chat_template(m, tmpl.data(), &len) == KV_OK);
    CHECK(tmpl == want_template);
    CHECK(contains(tmpl, "<|user|>"));

    auto msgs = messages({{"user", "Hello"}, {"assistant", "Hi there!"}, {"user", "How are you?"}});
    Result r = format(m, msgs, KV_CHAT_ADD_ASSISTANT_PROMPT);
    REQUIRE_MESSAGE(r.status == KV_OK, r.error);
    // Phi-3's format: <s><|user|>\nQ<|end|>\n<|assistant|>\nA<|end|>\n... (this template opens the
    // assistant turn after every user turn, with or without add_generation_prompt).
    const std::string want =
        "<s><|user|>\nHello<|end|>\n<|assistant|>\nHi there!<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n";
    CHECK(r.text == want);
    CHECK(format(m, msgs, 0).text == want);

    // Tokenized with PARSE_SPECIAL (and no ADD_SPECIAL): BOS once, each marker one control token.
    std::vector<kv_token> ids = tokenize(m, r.text);
    REQUIRE(!ids.empty());
    CHECK(ids[0] == kv_model_token_bos(m));
    CHECK(std::count(ids.begin(), ids.end(), kv_model_token_bos(m)) == 1);
    auto single = [&](const char* text) {
        std::vector<kv_token> t = tokenize(m, text);
        REQUIRE(t.size() == 1);
        return t[0];
    };
    const kv_token user = single("<|user|>"), end = single("<|end|>"), assistant = single("<|assistant|>");
    CHECK(std::count(ids.begin(), ids.end(), user) == 2);
    CHECK(std::count(ids.begin(), ids.end(), end) == 3);
    CHECK(std::count(ids.begin(), ids.end(), assistant) == 2);
    CHECK(kv_token_is_eog(m, end) == 1);  // the model stops at the end of its turn
    kv_model_destroy(m);
}

TEST_CASE("chat C API: the text comes back through the KV_INCOMPLETE size protocol") {
    if (!kvtest::require_shared()) return;
    kv_model* m = load_vocab(vocab_path("ggml-vocab-phi-3.gguf"));
    auto msgs = messages({{"user", "Hello"}});
    size_t len = 0;
    REQUIRE(kv_chat_format(m, msgs.data(), 1, 0, nullptr, &len) == KV_INCOMPLETE);
    const std::string want = "<s><|user|>\nHello<|end|>\n<|assistant|>\n";
    CHECK(len == want.size());
    std::vector<char> buf(len + 8, '#');
    size_t small = len - 1;
    CHECK(kv_chat_format(m, msgs.data(), 1, 0, buf.data(), &small) == KV_INCOMPLETE);
    CHECK(small == want.size());
    CHECK(buf[0] == '#');  // nothing written
    size_t big = buf.size();
    REQUIRE(kv_chat_format(m, msgs.data(), 1, 0, buf.data(), &big) == KV_OK);
    CHECK(std::string(buf.data(), big) == want);
    CHECK(buf[big] == '#');  // not NUL-terminated, nothing past the text
    kv_model_destroy(m);
}

TEST_CASE("chat C API: a model without a template, or with a malformed one, says so") {
    if (!kvtest::require_shared()) return;
    const std::string spm = vocab_path("ggml-vocab-llama-spm.gguf");
    kv_model* m = load_vocab(spm);
    auto msgs = messages({{"user", "Hello"}});
    size_t len = 0;
    CHECK(kv_model_get_chat_template(m, nullptr, &len) == KV_OK);
    CHECK(len == 0);
    Result r = format(m, msgs, 0);
    CHECK(r.status == KV_ERR_UNSUPPORTED);
    CHECK(contains(r.error, "no chat template"));
    // A template of the caller's works on the same model, with its BOS and EOS texts.
    r = format(m, msgs, KV_CHAT_ADD_ASSISTANT_PROMPT, "{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}");
    CHECK(r.status == KV_OK);
    CHECK(r.text == "<s>[Hello]</s>");
    kv_model_destroy(m);

    // The model's own template, broken: KV_ERR_BAD_MODEL naming the construct and place.
    kv_model* broken = load_bytes(with_template(spm, "{% for m in messages %}\n{{ m.content }\n{% endfor %}"));
    r = format(broken, msgs, 0);
    CHECK(r.status == KV_ERR_BAD_MODEL);
    CHECK_MESSAGE(contains(r.error, "the model's tokenizer.chat_template: chat template syntax error at line 2, column 14: "
                                    "unexpected '}'"),
                  r.error);
    kv_model_destroy(broken);

    // A Llama 2 style template in the model's metadata, rendered with the model's own <s> and </s>.
    kv_model* llama2 = load_bytes(with_template(
        spm, "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
             "message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
             "message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}"));
    r = format(llama2, messages({{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}}), 0);
    CHECK(r.status == KV_OK);
    CHECK(r.text == "<s>[INST] Hi [/INST] Hello! </s><s>[INST] Bye [/INST]");
    std::vector<kv_token> ids = tokenize(llama2, r.text);
    CHECK(std::count(ids.begin(), ids.end(), kv_model_token_bos(llama2)) == 2);
    CHECK(std::count(ids.begin(), ids.end(), kv_model_token_eos(llama2)) == 1);
    kv_model_destroy(llama2);
}

TEST_CASE("chat C API: caller templates, flags and errors") {
    auto msgs = messages({{"system", "Be brief."}, {"user", "Hi"}});
    Result r = format(nullptr, msgs, KV_CHAT_ADD_ASSISTANT_PROMPT, kChatML);
    REQUIRE_MESSAGE(r.status == KV_OK, r.error);
    CHECK(r.text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    CHECK(format(nullptr, msgs, 0, kChatML).text ==
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    // No messages is a valid (empty) conversation.
    CHECK(format(nullptr, {}, KV_CHAT_ADD_ASSISTANT_PROMPT, kChatML).text == "<|im_start|>assistant\n");
    // Without a model, bos_token is undefined: it prints as "".
    CHECK(format(nullptr, msgs, 0, "[{{ bos_token }}]{{ bos_token is defined }}").text == "[]False");

    const char* thinking = "{{ enable_thinking is defined }}:{{ enable_thinking }}";
    CHECK(format(nullptr, msgs, 0, thinking).text == "False:");
    CHECK(format(nullptr, msgs, KV_CHAT_NO_THINKING, thinking).text == "True:False");

    r = format(nullptr, msgs, 0, "{% for m in messages %}{{ m.role | frobnicate }}{% endfor %}");
    CHECK(r.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(r.error, "chat template syntax error at line 1, column 36: unknown filter 'frobnicate'"));
    r = format(nullptr, msgs, 0, "{% include 'turns.jinja' %}");
    CHECK(r.status == KV_ERR_UNSUPPORTED);
    CHECK(contains(r.error, "{% include %} at line 1, column 4"));
    r = format(nullptr, msgs, 0, "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}");
    CHECK(r.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(r.error == "the chat template rejected the messages: System role not supported");

    size_t len = 16;
    char buf[16];
    CHECK(kv_chat_format(nullptr, msgs.data(), 2, 0, buf, &len) == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(kv_last_error_message(), "model is NULL"));
    CHECK(kv_chat_format_template(nullptr, nullptr, msgs.data(), 2, 0, buf, &len) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_chat_format_template(nullptr, kChatML, msgs.data(), 2, 0, buf, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_chat_format_template(nullptr, kChatML, nullptr, 2, 0, buf, &len) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_chat_format_template(nullptr, kChatML, msgs.data(), 2, 0x80, buf, &len) == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(kv_last_error_message(), "flags 0x80"));
    auto bad = msgs;
    bad[1].struct_size = 8;
    CHECK(kv_chat_format_template(nullptr, kChatML, bad.data(), 2, 0, buf, &len) == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(kv_last_error_message(), "messages[1].struct_size is 8"));
    bad = msgs;
    bad[1].content = nullptr;
    CHECK(kv_chat_format_template(nullptr, kChatML, bad.data(), 2, 0, buf, &len) == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(kv_last_error_message(), "messages[1].content is NULL"));
    CHECK(kv_model_get_chat_template(nullptr, buf, &len) == KV_ERR_INVALID_ARGUMENT);
}
