// C API: constrained sampling (grammars, JSON Schema) and embeddings.
#include <cstring>
#include <string>

#include "capi/api.h"
#include "engine/json_schema.h"
#include "engine/runtime.h"
#include "engine/session.h"

using namespace kv;

namespace {
kv_session& need(kv_session* s) {
    if (!s) fail(KV_ERR_INVALID_ARGUMENT, "session is NULL");
    if (s->model->runtime->device->lost())
        fail(KV_ERR_DEVICE_LOST, "the device was lost; destroy the sessions, model and runtime and recreate them");
    return *s;
}
}  // namespace

extern "C" {

KV_API kv_status kv_session_set_grammar(kv_session* session, const char* gbnf, const char* root_rule) {
    return api::guard([&] {
        engine::set_grammar(need(session), gbnf, root_rule);
        return KV_OK;
    });
}

KV_API kv_status kv_json_schema_to_grammar(const char* schema_json, size_t len, char* gbnf, size_t* size) {
    return api::guard([&] {
        if (!schema_json) fail(KV_ERR_INVALID_ARGUMENT, "schema_json is NULL");
        if (!size) fail(KV_ERR_INVALID_ARGUMENT, "size is NULL");
        if (len == size_t(-1)) len = std::strlen(schema_json);
        std::string text = engine::json_schema_to_gbnf(std::string_view(schema_json, len));
        const size_t cap = *size, need_bytes = text.size() + 1;
        *size = need_bytes;
        if (cap < need_bytes) return KV_INCOMPLETE;
        if (!gbnf) fail(KV_ERR_INVALID_ARGUMENT, "gbnf is NULL with a capacity of %zu", cap);
        std::memcpy(gbnf, text.c_str(), need_bytes);
        return KV_OK;
    });
}

KV_API kv_status kv_session_embeddings(kv_session* session, const kv_token* tokens, uint32_t n_tokens, uint32_t flags,
                                       float* out, uint32_t capacity) {
    return api::guard([&] {
        kv_session& s = need(session);
        if (!out) fail(KV_ERR_INVALID_ARGUMENT, "out is NULL");
        if (capacity < s.model->config().n_embd)
            fail(KV_ERR_INVALID_ARGUMENT, "capacity %u is below n_embd %u", capacity, s.model->config().n_embd);
        engine::embeddings(s, tokens, n_tokens, flags, out);
        return KV_OK;
    });
}

}  // extern "C"
