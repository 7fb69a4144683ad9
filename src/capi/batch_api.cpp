// C API: many sessions in one forward pass (engine/batch.h).
#include <vector>

#include "capi/abi_v1.h"
#include "capi/api.h"
#include "capi/session_use.h"
#include "engine/batch.h"
#include "engine/session.h"

using namespace kv;

namespace {
// Runs checked items whose sessions are free (the others get KV_ERR_BUSY); a pass's error
// propagates (the items carry it as their status too). `items` gets the results either way, and
// the first failing item's message becomes the thread's last error.
kv_status run(std::vector<engine::BatchItem>& items) {
    api::BatchUse use(std::move(items));
    try {
        use.run();
    } catch (...) {
        items = use.items();
        throw;
    }
    items = use.items();
    for (const auto& it : items)
        if (it.status < 0) {
            api::set_error(it.status, it.message);
            break;
        }
    return KV_OK;
}
}  // namespace

extern "C" {

KV_API kv_status kv_decode_batch(kv_session* const* sessions, uint32_t n_sessions, kv_token* out_tokens,
                                 kv_status* out_status) {
    std::vector<engine::BatchItem> items;
    bool ran = false;
    kv_status rc = api::guard([&] {
        if (!sessions) fail(KV_ERR_INVALID_ARGUMENT, "sessions is NULL");
        if (!out_tokens) fail(KV_ERR_INVALID_ARGUMENT, "out_tokens is NULL");
        if (!out_status) fail(KV_ERR_INVALID_ARGUMENT, "out_status is NULL");
        if (n_sessions == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_sessions is 0");
        items.resize(n_sessions);
        for (uint32_t i = 0; i < n_sessions; ++i) items[i].session = sessions[i];
        engine::check_batch(items);
        ran = true;
        return run(items);
    });
    // Written whenever the batch ran, also when a pass failed (rc is then its error).
    if (ran)
        for (uint32_t i = 0; i < n_sessions; ++i) {
            out_status[i] = items[i].status;
            if (items[i].status == KV_OK || items[i].status == KV_END_OF_GENERATION) out_tokens[i] = items[i].token;
        }
    return rc;
}

KV_API kv_status kv_batch_eval(kv_batch_item* items, uint32_t n_items) {
    std::vector<engine::BatchItem> work;
    uint32_t stride = 0;
    auto at = [&](uint32_t i) {
        return reinterpret_cast<kv_batch_item*>(reinterpret_cast<char*>(items) + size_t(i) * stride);
    };
    bool ran = false;
    kv_status rc = api::guard([&] {
        if (!items) fail(KV_ERR_INVALID_ARGUMENT, "items is NULL");
        if (n_items == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_items is 0");
        // The caller's array: elements of the caller's sizeof(kv_batch_item), stepped by it.
        stride = items[0].struct_size;
        work.resize(n_items);
        for (uint32_t i = 0; i < n_items; ++i) {
            kv_batch_item* e = at(i);
            if (e->struct_size != stride)
                fail(KV_ERR_INVALID_ARGUMENT, "items[%u].struct_size is %u, items[0].struct_size is %u: set every "
                     "element's struct_size to sizeof(kv_batch_item)", i, e->struct_size, stride);
            kv_batch_item d = api::read_desc(e, api::kBatchItemV2, "items[i]");
            if (!d.tokens && d.n_tokens)
                fail(KV_ERR_INVALID_ARGUMENT, "items[%u].tokens is NULL but n_tokens is %u", i, d.n_tokens);
            if (d.tokens && !d.n_tokens) fail(KV_ERR_INVALID_ARGUMENT, "items[%u].n_tokens is 0", i);
            if (!d.tokens && d.logits)
                fail(KV_ERR_INVALID_ARGUMENT, "items[%u] is a decode item (tokens NULL) but asks for logits", i);
            engine::BatchItem& w = work[i];
            w.session = d.session;
            w.tokens = d.tokens;
            w.n_tokens = d.n_tokens;
            w.logits = d.logits;
            w.logits_capacity = d.logits_capacity;
        }
        engine::check_batch(work);
        ran = true;
        return run(work);
    });
    if (ran)
        for (uint32_t i = 0; i < n_items; ++i) {
            kv_batch_item* e = at(i);
            e->token = work[i].token;
            e->n_done = work[i].n_done;
            e->status = work[i].status;
        }
    return rc;
}

}  // extern "C"
