// C API: sessions — prefill, decode, logits, statistics.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "capi/abi_v1.h"
#include "capi/api.h"
#include "capi/session_use.h"
#include "engine/offload.h"
#include "engine/runtime.h"
#include "engine/session.h"
#include "engine/speculative.h"

using namespace kv;

namespace {
// The caller's sampler, or greedy for NULL, read through its struct_size.
kv_sampler_desc read_sampler(const kv_sampler_desc* sampler) {
    kv_sampler_desc d = KV_SAMPLER_DESC_INIT;
    if (sampler) d = api::read_desc(sampler, api::kSamplerDescV1, "sampler");
    return d;
}

}  // namespace

extern "C" {

KV_API kv_status kv_session_create(kv_model* model, const kv_session_desc* desc, kv_session** out_session) {
    return api::guard([&] {
        if (!model) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
        if (!out_session) fail(KV_ERR_INVALID_ARGUMENT, "out_session is NULL");
        kv_session_desc d = KV_SESSION_DESC_INIT;
        if (desc) d = api::read_desc(desc, api::kSessionDescV1, "desc");
        *out_session = engine::create_session(*model, d, read_sampler(d.sampler)).release();
        return KV_OK;
    });
}

KV_API void kv_session_destroy(kv_session* session) {
    if (!session) return;
    api::guard([&] {
        // A ticket in flight (or, by mistake, another thread's call) still uses it: let it finish.
        while (session->busy.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(200));
        delete session;
        return KV_OK;
    });
}

KV_API kv_status kv_prefill(kv_session* session, const kv_token* tokens, uint32_t n_tokens) {
    return api::guard([&] {
        api::SessionUse use(session);
        return engine::prefill(*use, tokens, n_tokens, nullptr);
    });
}

KV_API kv_status kv_session_eval(kv_session* session, const kv_token* tokens, uint32_t n_tokens, float* logits,
                                 uint64_t capacity) {
    return api::guard([&] {
        api::SessionUse use(session);
        kv_session& s = *use;
        uint64_t need_floats = uint64_t(n_tokens) * s.model->config().n_vocab;
        if (logits && capacity < need_floats)
            fail(KV_ERR_INVALID_ARGUMENT, "logits capacity %llu floats is below %u tokens x %u vocab",
                 (unsigned long long)capacity, n_tokens, s.model->config().n_vocab);
        engine::prefill(s, tokens, n_tokens, logits);
        return KV_OK;
    });
}

KV_API kv_status kv_decode_step(kv_session* session, kv_token* out_token) {
    return api::guard([&] {
        api::SessionUse use(session);
        return engine::decode_step(*use, out_token);
    });
}

KV_API kv_status kv_decode_speculative(kv_session* session, kv_session* draft, uint32_t draft_n, kv_token* out_tokens,
                                       uint32_t capacity, uint32_t* n_out, uint32_t* n_drafted) {
    return api::guard([&] {
        api::SessionUse use(session);
        kv_session& s = *use;
        if (!out_tokens) fail(KV_ERR_INVALID_ARGUMENT, "out_tokens is NULL");
        if (!n_out) fail(KV_ERR_INVALID_ARGUMENT, "n_out is NULL");
        if (capacity < uint64_t(draft_n) + 1)
            fail(KV_ERR_INVALID_ARGUMENT, "capacity %u is below draft_n + 1 (%u)", capacity, draft_n + 1);
        if (draft == session) fail(KV_ERR_INVALID_ARGUMENT, "the draft is the session itself");
        std::unique_ptr<api::SessionUse> draft_use;
        if (draft) draft_use = std::make_unique<api::SessionUse>(draft, "draft session");
        std::vector<int32_t> out;
        uint32_t drafted = 0;
        kv_status st = engine::decode_speculative(s, draft, draft_n, out, &drafted);
        std::memcpy(out_tokens, out.data(), out.size() * sizeof(kv_token));
        *n_out = uint32_t(out.size());
        if (n_drafted) *n_drafted = drafted;
        return st;
    });
}

KV_API kv_status kv_session_reset(kv_session* session) {
    return api::guard([&] {
        api::SessionUse use(session, "session", api::Need::State);
        engine::reset(*use);
        return KV_OK;
    });
}

KV_API kv_status kv_session_logits(kv_session* session, float* logits, uint32_t capacity) {
    return api::guard([&] {
        api::SessionUse use(session, "session", api::Need::State);
        kv_session& s = *use;
        if (!logits) fail(KV_ERR_INVALID_ARGUMENT, "logits is NULL");
        if (capacity < s.model->config().n_vocab)
            fail(KV_ERR_INVALID_ARGUMENT, "capacity %u is below n_vocab %u", capacity, s.model->config().n_vocab);
        engine::copy_logits(s, logits);
        return KV_OK;
    });
}

KV_API kv_status kv_session_set_sampler(kv_session* session, const kv_sampler_desc* sampler) {
    return api::guard([&] {
        api::SessionUse use(session);
        kv_session& s = *use;
        kv_sampler_desc d = read_sampler(sampler);
        engine::check_sampler(d);
        bool was_gpu = s.sampler->gpu_greedy();
        auto fresh = std::make_unique<engine::Sampler>(d, s.model->config().n_vocab);
        fresh->set_grammar(std::move(s.sampler->grammar()));  // the grammar stays, in its state
        s.sampler = std::move(fresh);
        // The GPU argmax (or the host logits copy) of the current logits may be missing now.
        if (was_gpu != s.sampler->gpu_greedy()) s.next_token_valid = false;
        return KV_OK;
    });
}

KV_API kv_status kv_session_get_stats(const kv_session* session, kv_session_stats* stats) {
    return api::guard([&] {
        size_t n = api::out_size(stats, api::kSessionStatsV1, "stats");
        // Its busy and cancel flags are all this writes.
        api::SessionUse use(const_cast<kv_session*>(session), "session", api::Need::State);
        const kv_session& s = *use;
        kv_session_stats r{};
        r.struct_size = sizeof r;
        r.n_tokens = s.n_past;
        r.n_ctx = s.n_ctx;
        r.page_size = s.page_size;
        r.kv_bytes = s.kv_bytes();
        r.kv_bytes_per_token = s.kv_bytes_per_token();
        r.tokens_prefilled = s.tokens_prefilled;
        r.tokens_decoded = s.tokens_decoded;
        r.last_prefill_ms = s.last_prefill_ms;
        r.last_prefill_tokens = s.last_prefill_tokens;
        r.last_decode_ms = s.last_decode_ms;
        r.total_prefill_ms = s.total_prefill_ms;
        r.total_decode_ms = s.total_decode_ms;
        r.scratch_bytes = s.scratch_bytes;
        {
            std::lock_guard<std::mutex> lock(s.pool->mutex);
            r.pages = s.table->pages_used();
            for (kvcache::PageId id : s.table->page_ids())
                if (id != kvcache::kNoPage && s.pool->pages.ref_count(id) > 1) ++r.shared_pages;
        }
        r.prefix_hit_tokens = s.prefix_hit_tokens;
        r.forward_passes = s.forward_passes;
        r.submissions = s.submissions;
        r.last_pass_submissions = s.last_pass_submissions;
        r.pages_offloaded = s.pages_offloaded;
        r.pages_restored = s.pages_restored;
        r.offloaded = s.offloaded ? 1 : 0;
        if (s.window_table) {
            std::lock_guard<std::mutex> lock(s.window_pool->mutex);
            r.window_layer_pages = s.window_table->pages_used();
            r.window_layers = uint32_t(s.window_pool->layers().size());
        }
        r.window_layer_pages_released = s.window_pages_released;
        r.pages_released = s.pages_released;
        uint32_t size = stats->struct_size;
        std::memcpy(stats, &r, n);
        stats->struct_size = size;
        return KV_OK;
    });
}

KV_API kv_status kv_session_fork(kv_session* session, kv_session** out_child) {
    return api::guard([&] {
        api::SessionUse use(session);
        kv_session& s = *use;
        if (!out_child) fail(KV_ERR_INVALID_ARGUMENT, "out_child is NULL");
        *out_child = engine::fork(s).release();
        return KV_OK;
    });
}

KV_API kv_status kv_session_truncate(kv_session* session, uint32_t n_tokens) {
    return api::guard([&] {
        api::SessionUse use(session);
        engine::truncate(*use, n_tokens);
        return KV_OK;
    });
}

KV_API kv_status kv_session_save(kv_session* session, void* buffer, size_t* size) {
    return api::guard([&] {
        api::SessionUse use(session);
        kv_session& s = *use;
        if (!size) fail(KV_ERR_INVALID_ARGUMENT, "size is NULL");
        size_t cap = *size, need_bytes = engine::saved_size(s);
        *size = need_bytes;
        if (cap < need_bytes) return KV_INCOMPLETE;
        if (!buffer) fail(KV_ERR_INVALID_ARGUMENT, "buffer is NULL with a capacity of %zu", cap);
        std::vector<uint8_t> img = engine::save(s);
        std::memcpy(buffer, img.data(), img.size());
        *size = img.size();
        return KV_OK;
    });
}

KV_API kv_status kv_session_save_file(kv_session* session, const char* path) {
    return api::guard([&] {
        api::SessionUse use(session);
        kv_session& s = *use;
        if (!path) fail(KV_ERR_INVALID_ARGUMENT, "path is NULL");
        std::vector<uint8_t> img = engine::save(s);
        std::string tmp = std::string(path) + ".tmp";
        {
            std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
            if (!f) fail(KV_ERR_IO, "cannot write %s", tmp.c_str());
            f.write(reinterpret_cast<const char*>(img.data()), std::streamsize(img.size()));
            if (!f) fail(KV_ERR_IO, "writing %s failed", tmp.c_str());
        }
        // Replace atomically: a crash mid-save never leaves a half-written session behind.
        if (std::rename(tmp.c_str(), path) != 0) {
            std::remove(tmp.c_str());
            fail(KV_ERR_IO, "cannot rename %s to %s", tmp.c_str(), path);
        }
        return KV_OK;
    });
}

KV_API kv_status kv_session_load(kv_model* model, const void* data, size_t size, kv_session** out_session) {
    return api::guard([&] {
        if (!model) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
        if (!out_session) fail(KV_ERR_INVALID_ARGUMENT, "out_session is NULL");
        *out_session = engine::load(*model, static_cast<const uint8_t*>(data), size).release();
        return KV_OK;
    });
}

KV_API kv_status kv_session_load_file(kv_model* model, const char* path, kv_session** out_session) {
    return api::guard([&] {
        if (!model) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
        if (!out_session) fail(KV_ERR_INVALID_ARGUMENT, "out_session is NULL");
        if (!path) fail(KV_ERR_INVALID_ARGUMENT, "path is NULL");
        std::ifstream f(path, std::ios::binary);
        if (!f) fail(KV_ERR_IO, "cannot open %s", path);
        std::vector<uint8_t> img((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        *out_session = engine::load(*model, img.data(), img.size()).release();
        return KV_OK;
    });
}

KV_API kv_status kv_session_offload(kv_session* session) {
    return api::guard([&] {
        api::SessionUse use(session, "session", api::Need::State);
        engine::offload(*use);
        return KV_OK;
    });
}

KV_API kv_status kv_model_get_cache_stats(kv_model* model, kv_cache_type type, kv_cache_stats* stats) {
    return api::guard([&] {
        if (!model) fail(KV_ERR_INVALID_ARGUMENT, "model is NULL");
        size_t n = api::out_size(stats, api::kCacheStatsV1, "stats");
        int32_t type_bits;  // never loaded as a kv_cache_type: the caller's value may be any int32
        std::memcpy(&type_bits, &type, sizeof type_bits);
        model::GgmlType t = engine::cache_type(type_bits);
        kv_cache_stats r{};
        r.struct_size = sizeof r;
        r.page_size = model->kv_page_size;
        {
            std::lock_guard<std::mutex> lock(model->pools_mutex);
            auto it = model->kv_pools.find(t);
            if (it != model->kv_pools.end()) {
                engine::KvPool& p = *it->second;
                std::lock_guard<std::mutex> plock(p.mutex);
                auto st = p.pages.stats();
                r.pages_total = st.limit;
                r.pages_in_use = st.in_use;
                r.pages_cached = st.cached;
                r.pages_free = st.free;
                r.page_bytes = p.page_bytes_all_layers();
                r.device_bytes = p.device_bytes();
                r.prefix_lookups = st.lookups;
                r.prefix_hits = st.hits;
                r.evictions = st.evictions;
                r.pages_offloaded = p.pages_offloaded;
                r.pages_restored = p.pages_restored;
                r.offloaded_bytes = p.offloaded_bytes;
            }
        }
        uint32_t size = stats->struct_size;
        std::memcpy(stats, &r, n);
        stats->struct_size = size;
        return KV_OK;
    });
}

}  // extern "C"
