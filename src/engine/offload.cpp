#include "engine/offload.h"

#include <algorithm>

#include "common/error.h"
#include "engine/kv_pool.h"
#include "engine/runtime.h"
#include "engine/session_ops.h"

namespace kv::engine {

using namespace detail;

namespace {

uint32_t logical_pages(const kv_session& s) { return (s.n_past + s.page_size - 1) / s.page_size; }

bool offloadable(const kv_session& s) {
    return !s.window && !s.window_table && !(s.flags & KV_SESSION_NO_CACHE);
}

// The least recently used session of the pool that could give pages back now (caller holds the
// pool mutex), skipping those in `tried`.
kv_session* lru_victim(KvPool& pool, const std::vector<kv_session*>& tried) {
    kv_session* best = nullptr;
    for (kv_session* v : pool.sessions) {
        // Only what the pool mutex guards (a busy session's other fields are its call's).
        if (v->busy.load(std::memory_order_relaxed) || v->offloaded || !offloadable(*v) || v->table->n_tokens() == 0)
            continue;
        if (std::find(tried.begin(), tried.end(), v) != tried.end()) continue;
        if (!best || v->last_use < best->last_use) best = v;
    }
    return best;
}

}  // namespace

void register_session(kv_session& s) {
    std::lock_guard<std::mutex> lock(s.pool->mutex);
    s.pool->sessions.push_back(&s);
}

void unregister_session(kv_session& s) {
    std::lock_guard<std::mutex> lock(s.pool->mutex);
    auto& v = s.pool->sessions;
    v.erase(std::remove(v.begin(), v.end(), &s), v.end());
    if (s.offloaded) s.pool->offloaded_bytes -= s.host_pages.size();
}

void offload(kv_session& s) {
    if (!offloadable(s))
        fail(KV_ERR_UNSUPPORTED, "a %s session cannot be offloaded",
             s.window                 ? "sliding-window"
             : s.window_table != nullptr ? "sliding-window-layer model's (two page groups)"
                                      : "no-cache");
    if (s.offloaded || s.n_past == 0) return;
    KvPool& pool = *s.pool;
    const uint32_t n = logical_pages(s);
    const uint64_t bytes = uint64_t(n) * pool.page_bytes_all_layers();
    const uint64_t budget = s.model->host_offload_bytes;
    std::vector<kvcache::PageId> ids;
    {
        std::lock_guard<std::mutex> lock(pool.mutex);
        if (budget && pool.offloaded_bytes + bytes > budget)
            fail(KV_ERR_OUT_OF_HOST_MEMORY,
                 "offloading %u pages (%llu bytes) would exceed kv_model_desc.host_offload_bytes (%llu; %llu in use)", n,
                 (unsigned long long)bytes, (unsigned long long)budget, (unsigned long long)pool.offloaded_bytes);
        pool.offloaded_bytes += bytes;  // claimed now: concurrent offloads see it
        const auto& all = s.table->page_ids();
        ids.assign(all.begin(), all.begin() + n);
    }
    try {
        std::vector<uint8_t> host(bytes);
        transfer_pages(s, ids, host.data(), false);
        s.host_pages = std::move(host);
    } catch (...) {
        std::lock_guard<std::mutex> lock(pool.mutex);
        pool.offloaded_bytes -= bytes;
        throw;
    }
    std::lock_guard<std::mutex> lock(pool.mutex);
    s.table->clear();  // its pages go back (full ones stay findable for prefix reuse until evicted)
    s.offloaded = true;
    s.pages_offloaded += n;
    pool.pages_offloaded += n;
}

bool reserve_with_offload(kv_session& s, uint32_t T, std::vector<kvcache::PageCopy>* copies) {
    KvPool& pool = *s.pool;
    std::vector<kv_session*> tried;
    for (;;) {
        kv_session* victim;
        {
            std::lock_guard<std::mutex> lock(pool.mutex);
            s.last_use = ++pool.clock;
            copies->clear();
            if (s.table->reserve(T, copies) == kvcache::ReserveStatus::kOk) {
                // Under the same lock: a copy's source must not be freed before the copy runs.
                for (const auto& c : *copies) pool.pages.ref(c.src);
                publish_block_table(s);
                return true;
            }
            if (!s.model->host_offload_bytes) return false;
            victim = lru_victim(pool, tried);
            if (!victim) return false;
            tried.push_back(victim);
        }
        // Take the victim as a call would: it may have become busy since.
        bool expected = false;
        if (!victim->busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) continue;
        try {
            offload(*victim);
        } catch (const Error& e) {
            victim->busy.store(false, std::memory_order_release);
            if (e.status() == KV_ERR_OUT_OF_HOST_MEMORY) return false;  // the budget is spent
            throw;
        }
        victim->busy.store(false, std::memory_order_release);
    }
}

void restore(kv_session& s) {
    if (!s.offloaded) return;
    KvPool& pool = *s.pool;
    const uint32_t n = logical_pages(s);
    std::vector<kvcache::PageCopy> copies;
    if (!reserve_with_offload(s, s.n_past, &copies)) {
        auto st = pool.pages.stats();
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
             "the session is offloaded and the KV page pool has no room to bring back its %u pages (%u of %u held by "
             "sessions in use or not offloadable); it stays offloaded", n, st.in_use, st.limit);
    }
    std::vector<kvcache::PageId> ids;
    {
        std::lock_guard<std::mutex> lock(pool.mutex);
        KV_CHECK(copies.empty());
        const auto& all = s.table->page_ids();
        ids.assign(all.begin(), all.begin() + n);
    }
    try {
        transfer_pages(s, ids, s.host_pages.data(), true);
    } catch (...) {
        std::lock_guard<std::mutex> lock(pool.mutex);
        s.table->clear();  // still offloaded: the host copy is intact
        throw;
    }
    std::lock_guard<std::mutex> lock(pool.mutex);
    s.table->commit(s.tokens.data(), s.n_past);
    publish_block_table(s);
    pool.offloaded_bytes -= s.host_pages.size();
    pool.pages_restored += n;
    s.pages_restored += n;
    s.offloaded = false;
    std::vector<uint8_t>().swap(s.host_pages);
}

}  // namespace kv::engine
