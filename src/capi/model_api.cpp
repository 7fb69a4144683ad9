// C API: models and tokenization.
#include <algorithm>
#include <cstring>

#include "capi/abi_v1.h"
#include "capi/api.h"
#include "engine/model.h"

using namespace kv;

namespace {

void copy_str(char* dst, size_t cap, const std::string& s) {
    size_t n = std::min(s.size(), cap - 1);
    std::memcpy(dst, s.data(), n);
    dst[n] = 0;
}

kv_status write_bytes(const std::string& s, char* out, size_t* len) {
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

const kv_model& need(const kv_model* m) {
    if (!m) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
    return *m;
}
}  // namespace

extern "C" {

KV_API kv_status kv_model_load(kv_runtime* runtime, const kv_model_desc* desc, kv_model** out_model) {
    return api::guard([&] {
        if (!out_model) fail(KV_ERR_INVALID_ARGUMENT, "out_model is NULL");
        kv_model_desc d = KV_MODEL_DESC_INIT;  // NULL: the defaults, which name no file (load_model says so)
        if (desc) d = api::read_desc(desc, api::kModelDescV1, "desc");
        const uint32_t known = KV_MODEL_VOCAB_ONLY;
        if (d.flags & ~known)
            fail(KV_ERR_INVALID_ARGUMENT,
                 "desc->flags 0x%x has bits this library does not know (0x%x); known: KV_MODEL_VOCAB_ONLY (0x%x)",
                 d.flags, d.flags & ~known, known);
        *out_model = engine::load_model(runtime, d).release();
        return KV_OK;
    });
}

KV_API void kv_model_destroy(kv_model* model) {
    if (!model) return;
    api::guard([&] {
        delete model;
        return KV_OK;
    });
}

KV_API kv_status kv_model_get_info(const kv_model* model, kv_model_info* info) {
    return api::guard([&] {
        const kv_model& m = need(model);
        size_t n = api::out_size(info, api::kModelInfoV1, "info");
        const auto& c = m.config();
        kv_model_info r{};
        r.struct_size = sizeof r;
        // Vocab-only: these four, the architecture as the file writes it (any, supported or not).
        copy_str(r.architecture, sizeof r.architecture,
                 m.vocab_only ? m.architecture : std::string(model::arch_name(c.arch)));
        copy_str(r.name, sizeof r.name, c.name);
        r.file_size = m.file->file_size();
        r.n_vocab = c.n_vocab;
        if (!m.vocab_only) {
            r.on_device = m.runtime ? 1 : 0;
            copy_str(r.weight_types, sizeof r.weight_types, c.weight_types_summary());
            r.n_params = c.n_params;
            r.weight_bytes = c.weight_bytes;
            r.device_bytes = m.weights.bytes;
            r.n_embd = c.n_embd;
            r.n_layer = c.n_layer;
            r.n_head = c.n_head;
            r.n_head_kv = c.n_head_kv;
            r.head_dim = c.head_dim;
            r.n_ff = c.n_ff;
            r.n_ctx_train = c.n_ctx_train;
            r.rope_neox = c.rope_type == model::RopeType::Neox;
            r.rope_freq_base = c.rope_freq_base;
            r.tied_output = c.tied_output;
        }
        uint32_t size = info->struct_size;
        std::memcpy(info, &r, n);
        info->struct_size = size;
        return KV_OK;
    });
}

KV_API kv_token kv_model_token_bos(const kv_model* model) { return model ? model->tokenizer->bos() : -1; }
KV_API kv_token kv_model_token_eos(const kv_model* model) { return model ? model->tokenizer->eos() : -1; }

KV_API int kv_token_is_eog(const kv_model* model, kv_token token) {
    if (!model || token < 0 || size_t(token) >= model->tokenizer->vocab_size()) return 0;
    return model->tokenizer->is_eog(token) ? 1 : 0;
}

KV_API kv_status kv_tokenize(const kv_model* model, const char* text, size_t len, uint32_t flags, kv_token* tokens,
                             uint32_t* n_tokens) {
    return api::guard([&] {
        const kv_model& m = need(model);
        if (!n_tokens) fail(KV_ERR_INVALID_ARGUMENT, "n_tokens is NULL");
        if (!text && len) fail(KV_ERR_INVALID_ARGUMENT, "text is NULL");
        if (flags & ~uint32_t(KV_TOKENIZE_ADD_SPECIAL | KV_TOKENIZE_PARSE_SPECIAL))
            fail(KV_ERR_INVALID_ARGUMENT, "unknown tokenize flags 0x%x", flags);
        if (len == size_t(-1)) len = text ? std::strlen(text) : 0;
        auto ids = m.tokenizer->encode(std::string_view(text ? text : "", len), flags & KV_TOKENIZE_ADD_SPECIAL,
                                       flags & KV_TOKENIZE_PARSE_SPECIAL);
        uint32_t cap = *n_tokens;
        *n_tokens = static_cast<uint32_t>(ids.size());
        if (cap < ids.size()) return KV_INCOMPLETE;
        if (!ids.empty()) {
            if (!tokens) fail(KV_ERR_INVALID_ARGUMENT, "tokens is NULL with a capacity of %u", cap);
            std::copy(ids.begin(), ids.end(), tokens);
        }
        return KV_OK;
    });
}

KV_API kv_status kv_detokenize(const kv_model* model, const kv_token* tokens, uint32_t n_tokens, char* text,
                               size_t* len) {
    return api::guard([&] {
        const kv_model& m = need(model);
        if (!tokens && n_tokens) fail(KV_ERR_INVALID_ARGUMENT, "tokens is NULL");
        return write_bytes(m.tokenizer->decode(tokens, n_tokens), text, len);
    });
}

KV_API kv_status kv_token_to_piece(const kv_model* model, kv_token token, char* text, size_t* len) {
    return api::guard([&] {
        const kv_model& m = need(model);
        return write_bytes(m.tokenizer->piece(token), text, len);
    });
}

}  // extern "C"
