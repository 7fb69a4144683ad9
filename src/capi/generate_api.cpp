// C API: kv_generate — kv_decode_step in a loop, each token's piece through a model::TextStream
// (UTF-8 completion, stop strings across tokens) to the caller's callback. It runs on top of the
// public step function, so whatever kv_decode_step checks (arguments, device loss, a busy
// session) applies to every step here too.
#include <cstring>
#include <string>
#include <vector>

#include "capi/abi_v1.h"
#include "capi/api.h"
#include "engine/model.h"
#include "engine/session.h"
#include "model/text_stream.h"
#include "model/tokenizer.h"

using namespace kv;

namespace {

kv_generate_desc read_generate_desc(const kv_generate_desc* desc) {
    kv_generate_desc d = KV_GENERATE_DESC_INIT;
    if (desc) d = api::read_desc(desc, api::kGenerateDescV2, "desc");
    if (d.reserved) fail(KV_ERR_INVALID_ARGUMENT, "desc->reserved is %u; it must be 0", d.reserved);
    if (d.n_stop_strings && !d.stop_strings)
        fail(KV_ERR_INVALID_ARGUMENT, "desc->stop_strings is NULL with n_stop_strings %u", d.n_stop_strings);
    for (uint32_t i = 0; i < d.n_stop_strings; ++i) {
        if (!d.stop_strings[i]) fail(KV_ERR_INVALID_ARGUMENT, "desc->stop_strings[%u] is NULL", i);
        if (!*d.stop_strings[i])
            fail(KV_ERR_INVALID_ARGUMENT, "desc->stop_strings[%u] is empty (it would match before any text)", i);
    }
    return d;
}

}  // namespace

extern "C" {

KV_API kv_status kv_generate(kv_session* session, const kv_generate_desc* desc, kv_generate_result* result) {
    return api::guard([&] {
        if (!session) fail(KV_ERR_INVALID_ARGUMENT, "session is NULL");
        const kv_generate_desc d = read_generate_desc(desc);
        const size_t result_bytes = result ? api::out_size(result, api::kGenerateResultV2, "result") : 0;
        std::vector<std::string> stops(d.stop_strings, d.stop_strings + d.n_stop_strings);
        model::TextStream text(std::move(stops));
        const model::Tokenizer& tokenizer = *session->model->tokenizer;

        kv_generate_result r;
        std::memset(&r, 0, sizeof r);
        r.struct_size = sizeof r;
        r.stop_string = -1;
        r.last_token = -1;
        // Passes bytes to the callback; false when it asks to stop.
        auto deliver = [&](const std::string& bytes) {
            if (bytes.empty() || !d.on_piece) return true;
            r.n_bytes += bytes.size();
            return d.on_piece(d.user_data, bytes.data(), bytes.size()) == 0;
        };

        kv_status status = KV_OK;
        std::string ready;
        for (;;) {
            if (d.max_tokens && r.n_tokens >= d.max_tokens) {
                r.stop_reason = KV_GENERATE_STOP_MAX_TOKENS;
                break;
            }
            kv_token token = -1;
            const kv_status st = kv_decode_step(session, &token);
            if (st == KV_END_OF_GENERATION) {
                r.last_token = token;
                r.stop_reason = KV_GENERATE_STOP_END_OF_GENERATION;
                break;
            }
            if (st == KV_ERR_CONTEXT_FULL) {  // an outcome here, not an error: the session is intact
                api::clear_error();
                r.stop_reason = KV_GENERATE_STOP_CONTEXT_FULL;
                break;
            }
            if (st != KV_OK) {
                status = st;
                r.stop_reason = KV_GENERATE_STOP_ERROR;
                break;
            }
            r.last_token = token;
            ++r.n_tokens;
            const int hit = text.push(tokenizer.piece(token), ready);
            if (hit >= 0) {
                r.stop_string = hit;
                r.stop_reason = KV_GENERATE_STOP_STRING;
                deliver(ready);  // the text before the stop string; a request to stop changes nothing
                break;
            }
            if (!deliver(ready)) {
                r.stop_reason = KV_GENERATE_STOP_CALLBACK;
                break;
            }
        }
        if (r.stop_reason != KV_GENERATE_STOP_STRING && r.stop_reason != KV_GENERATE_STOP_CALLBACK) {
            // Generation ended otherwise: what was held back (the start of a stop string that never
            // completed, an unfinished character) is final. The callback may make kv_* calls that
            // reset the thread's error text, so a failed step's message is put back afterwards.
            const std::string message = status != KV_OK ? api::last_error() : "";
            deliver(text.flush());
            if (status != KV_OK) api::set_error(status, message);
        }
        if (result) {
            const uint32_t size = result->struct_size;
            std::memcpy(result, &r, result_bytes);
            result->struct_size = size;
        }
        return status;
    });
}

}  // extern "C"
