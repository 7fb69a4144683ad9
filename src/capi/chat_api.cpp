// C API: chat templates (src/chat/). The model's template is its GGUF tokenizer.chat_template;
// bos_token/eos_token are the vocabulary texts of its BOS and EOS tokens.
#include <cstring>
#include <string>
#include <vector>

#include "capi/abi_v1.h"
#include "capi/api.h"
#include "chat/template.h"
#include "engine/model.h"

using namespace kv;

namespace {

// First published (0.2.0) size of kv_chat_message, frozen like those in abi_v1.h.
constexpr size_t kChatMessageV2 = KV_V1_END(kv_chat_message, content);
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
static_assert(kChatMessageV2 == 24, "a field of a 0.2.0 struct moved: the ABI is append-only");
#endif

constexpr uint32_t kKnownFlags = KV_CHAT_ADD_ASSISTANT_PROMPT | KV_CHAT_NO_THINKING;

std::vector<chat::ChatMessage> read_messages(const kv_chat_message* messages, uint32_t n) {
    std::vector<chat::ChatMessage> out;
    if (n == 0) return out;
    if (!messages) fail(KV_ERR_INVALID_ARGUMENT, "messages is NULL with n_messages %u", n);
    const uint32_t stride = messages[0].struct_size;
    for (uint32_t i = 0; i < n; ++i) {
        auto* e = reinterpret_cast<const kv_chat_message*>(reinterpret_cast<const char*>(messages) + size_t(i) * stride);
        if (e->struct_size != stride)
            fail(KV_ERR_INVALID_ARGUMENT, "messages[%u].struct_size is %u, messages[0].struct_size is %u: set every "
                 "element's struct_size to sizeof(kv_chat_message)", i, e->struct_size, stride);
        kv_chat_message m = api::read_desc(e, kChatMessageV2, "messages[i]");
        if (!m.role) fail(KV_ERR_INVALID_ARGUMENT, "messages[%u].role is NULL", i);
        if (!m.content) fail(KV_ERR_INVALID_ARGUMENT, "messages[%u].content is NULL", i);
        out.push_back({m.role, m.content});
    }
    return out;
}

std::string model_template(const kv_model& m) {
    auto t = m.file->get_string("tokenizer.chat_template");
    return t ? std::string(*t) : std::string();
}

kv_status write_text(const std::string& s, char* out, size_t* len) {
    if (!len) fail(KV_ERR_INVALID_ARGUMENT, "len is NULL");
    size_t cap = *len;
    *len = s.size();
    if (cap < s.size()) return KV_INCOMPLETE;
    if (!s.empty()) {
        if (!out) fail(KV_ERR_INVALID_ARGUMENT, "text is NULL with a capacity of %zu", cap);
        std::memcpy(out, s.data(), s.size());
    }
    return KV_OK;
}

kv_status format(const kv_model* model, const std::string& source, kv_status syntax_status,
                 const kv_chat_message* messages, uint32_t n_messages, uint32_t flags, char* text, size_t* len) {
    if (!len) fail(KV_ERR_INVALID_ARGUMENT, "len is NULL");
    if (flags & ~kKnownFlags)
        fail(KV_ERR_INVALID_ARGUMENT, "flags 0x%x has bits this library does not know (0x%x)", flags, flags & ~kKnownFlags);
    std::vector<chat::ChatMessage> msgs = read_messages(messages, n_messages);
    chat::ChatOptions o;
    o.add_generation_prompt = flags & KV_CHAT_ADD_ASSISTANT_PROMPT;
    if (flags & KV_CHAT_NO_THINKING) o.enable_thinking = chat::Value(false);
    if (model) {
        const auto& tok = *model->tokenizer;
        if (tok.bos() >= 0) o.bos_token = chat::Value(std::string(tok.token_text(tok.bos())));
        if (tok.eos() >= 0) o.eos_token = chat::Value(std::string(tok.token_text(tok.eos())));
    }
    std::string out = chat::format_chat(chat::Template::parse(source, syntax_status), msgs, o);
    return write_text(out, text, len);
}

}  // namespace

extern "C" {

KV_API kv_status kv_chat_format(const kv_model* model, const kv_chat_message* messages, uint32_t n_messages,
                                uint32_t flags, char* text, size_t* len) {
    return api::guard([&] {
        if (!model) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
        std::string source = model_template(*model);
        if (source.empty())
            fail(KV_ERR_UNSUPPORTED, "the model has no chat template (no tokenizer.chat_template in its GGUF "
                 "metadata): render the conversation with a template of your own (kv_chat_format_template)");
        try {
            return format(model, source, KV_ERR_BAD_MODEL, messages, n_messages, flags, text, len);
        } catch (const Error& e) {
            if (e.status() == KV_ERR_BAD_MODEL) fail(KV_ERR_BAD_MODEL, "the model's tokenizer.chat_template: %s", e.what());
            throw;
        }
    });
}

KV_API kv_status kv_chat_format_template(const kv_model* model, const char* chat_template,
                                         const kv_chat_message* messages, uint32_t n_messages, uint32_t flags,
                                         char* text, size_t* len) {
    return api::guard([&] {
        if (!chat_template) fail(KV_ERR_INVALID_ARGUMENT, "chat_template is NULL");
        return format(model, chat_template, KV_ERR_INVALID_ARGUMENT, messages, n_messages, flags, text, len);
    });
}

KV_API kv_status kv_model_get_chat_template(const kv_model* model, char* text, size_t* len) {
    return api::guard([&] {
        if (!model) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
        return write_text(model_template(*model), text, len);
    });
}

}  // extern "C"
