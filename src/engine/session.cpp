#include "engine/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "engine/forward.h"
#include "engine/runtime.h"
#include "engine/offload.h"
#include "engine/session_ops.h"

namespace kv::engine {

using model::GgmlType;

namespace detail {

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The session's own scratch as a pass's activations (its single-session passes).
PassScratch own_scratch(kv_session& s) {
    PassScratch sc;
    sc.ids = &s.ids;
    sc.x = &s.x;
    sc.h = &s.h;
    sc.q = &s.q;
    sc.attn = &s.attn;
    sc.k = &s.k;
    sc.v = &s.v;
    sc.gate = &s.gate;
    sc.up = &s.up;
    sc.logits = &s.logits;
    sc.cs = s.cs.get();
    sc.rows = s.n_batch;
    sc.logit_rows = s.max_logit_rows;
    return sc;
}

uint32_t max_positions(const kv_session& s) { return s.window ? 0x7FFFFFFFu : s.n_ctx; }

void check_tokens(const kv_session& s, const int32_t* ids, uint32_t n) {
    uint32_t nv = s.model->config().n_vocab;
    for (uint32_t i = 0; i < n; ++i)
        if (ids[i] < 0 || uint32_t(ids[i]) >= nv)
            fail(KV_ERR_BAD_TOKEN, "token %u of %u is %d, outside the vocabulary [0, %u)", i, n, ids[i], nv);
}

namespace {

// Writes a table's page ids where the shaders look for them: slot = logical page, or its ring
// slot for a windowed session (AttentionParams). Caller holds the table's pool mutex.
void publish(const kv_session& s, const kvcache::BlockTable& table, vk::Buffer& buffer) {
    const auto& ids = table.page_ids();
    uint32_t* dst = static_cast<uint32_t*>(buffer.mapped());
    const uint32_t slots = uint32_t(buffer.size() / 4);
    if (!s.ring_pages) {
        KV_CHECK(ids.size() <= slots);
        std::memcpy(dst, ids.data(), ids.size() * 4);
    } else {
        // Only the sink pages and the last ring_pages logical pages can be resident (everything
        // between is a hole), so the work per step stays bounded however long the sequence grows.
        const uint32_t n = uint32_t(ids.size());
        auto put = [&](uint32_t lp) {
            if (ids[lp] == kvcache::kNoPage) return;
            uint32_t slot = lp < s.sink_pages ? lp : s.sink_pages + (lp - s.sink_pages) % s.ring_pages;
            KV_CHECK(slot < slots);
            dst[slot] = ids[lp];
        };
        for (uint32_t lp = 0; lp < std::min(n, s.sink_pages); ++lp) put(lp);
        for (uint32_t lp = std::max(s.sink_pages, n > s.ring_pages ? n - s.ring_pages : 0); lp < n; ++lp) put(lp);
    }
    buffer.flush(0, buffer.size());
}

}  // namespace

void publish_block_table(kv_session& s) { publish(s, *s.table, s.block_table); }

void publish_window_block_table(kv_session& s) { publish(s, *s.window_table, s.window_block_table); }


// Makes positions [p, p + T) writable in the session's pages and publishes the block table.
void reserve_pages(kv_session& s, uint32_t T, PendingCopies* pending) {
    std::vector<kvcache::PageCopy>& copies = pending->copies;
    pending->pool = s.pool;
    if (!reserve_with_offload(s, T, &copies)) {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        auto st = s.pool->pages.stats();
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
             "the KV page pool is full: %u tokens need pages, %u of %u pages are held by sessions (%u cached pages "
             "were evicted first); destroy or truncate sessions, or load the model with a larger kv_pool_tokens",
             T, st.in_use, st.limit, st.cached);
    }
    if (!s.window_table) return;
    pending->window_pool = s.window_pool;
    {
        std::lock_guard<std::mutex> lock(s.window_pool->mutex);
        std::vector<kvcache::PageCopy>& wc = pending->window_copies;
        if (s.window_table->reserve(T, &wc) == kvcache::ReserveStatus::kOk) {
            for (const auto& c : wc) s.window_pool->pages.ref(c.src);  // as reserve_with_offload
            publish_window_block_table(s);
            return;
        }
    }
    // The global layers' copies already point the table at pages nothing wrote yet: run them.
    if (!copies.empty()) redo_copies(s, *pending);
    std::lock_guard<std::mutex> lock(s.window_pool->mutex);
    auto st = s.window_pool->pages.stats();
    fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
         "the KV page pool of the sliding-window layers is full: %u tokens need pages, %u of %u pages are held by "
         "sessions (%u cached pages were evicted first); destroy or truncate sessions, or load the model with a "
         "larger kv_pool_tokens",
         T, st.in_use, st.limit, st.cached);
}

// After a pass failed before its copy-on-write copies reached the GPU: runs them on their own, so
// the pages the session keeps hold what they held. If that fails too, the session drops the
// positions of the copied page (it keeps a consistent, shorter cache; rollback sees n_tokens).
void redo_copies(kv_session& s, const PendingCopies& pending) {
    try {
        vk::CommandStream& cs = *s.cs;
        cs.begin();
        s.pool->record_copies(cs, pending.copies);
        if (pending.window_pool) pending.window_pool->record_copies(cs, pending.window_copies);
        cs.submit_and_wait();
    } catch (...) {
        uint32_t page_start;
        {
            std::lock_guard<std::mutex> lock(s.pool->mutex);
            page_start = s.table->n_tokens() / s.page_size * s.page_size;
        }
        if (s.window_table) {
            // Both groups keep the same positions; if the windowed one no longer holds the page
            // before, it cannot be cut there: both drop everything.
            std::lock_guard<std::mutex> lock(s.window_pool->mutex);
            if (page_start > s.window_table->n_tokens() ||
                (page_start && !s.window_table->resident(page_start - 1)))
                page_start = 0;
        }
        truncate_tables(s, page_start);
    }
}

// Runs tokens [from, tokens.size()) of s.tokens through the model in chunks, starting at
// position `from` (the cache holds [0, from)). The last chunk produces logits; `all_logits`
// (optional) receives every row. `cancellable`: a kv_session_cancel request seen before a chunk
// starts makes that chunk the last (it produces the logits, so the session has those of where it
// stopped; the chunks are those of an uncancelled run); s.tokens is then cut to the positions
// done and it returns true.
bool forward_tokens(kv_session& s, uint32_t from, float* all_logits, bool cancellable) {
    uint32_t total = static_cast<uint32_t>(s.tokens.size());
    uint32_t V = s.model->config().n_vocab;
    uint32_t chunk = all_logits ? std::min(s.n_batch, s.max_logit_rows) : s.n_batch;
    bool host = !s.sampler->gpu_greedy();
    for (uint32_t p = from; p < total;) {
        uint32_t T = std::min(chunk, total - p);
        const bool stop = cancellable && !all_logits && p + T < total && s.cancel.load(std::memory_order_relaxed);
        bool last = p + T == total || stop;
        Segment seg;
        seg.pos0 = p;
        seg.n_tokens = T;
        seg.mode = all_logits ? LogitsMode::All : (last ? LogitsMode::Last : LogitsMode::None);
        seg.host_logits = host || all_logits;
        run_own_pass(s, seg);
        if (all_logits) {
            const float* rb = static_cast<const float*>(s.readback.mapped());
            std::memcpy(all_logits + uint64_t(p - from) * V, rb, uint64_t(T) * V * 4);
        }
        p += T;
        if (stop) {
            s.tokens.resize(p);
            return true;
        }
    }
    return false;
}

void run_own_pass(kv_session& s, Segment seg) {
    PendingCopies pending;
    reserve_pages(s, seg.n_tokens, &pending);
    seg.session = &s;
    seg.copies = &pending.copies;
    seg.window_copies = &pending.window_copies;
    std::vector<Segment> segs{seg};
    PassScratch sc = own_scratch(s);
    const uint64_t submitted = s.cs->submissions();
    try {
        run_pass(*s.model, sc, segs);
    } catch (...) {
        // The copies are in the pass's first part: redo them if it never reached the GPU.
        if (!pending.empty() && s.cs->submissions() == submitted && !s.model->runtime->device->lost())
            redo_copies(s, pending);
        throw;
    }
    commit_tokens(s, seg.pos0, seg.n_tokens);
}

void commit_tokens(kv_session& s, uint32_t p, uint32_t T) {
    {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        s.table->commit(s.tokens.data() + p, T);
        // Pages wholly outside the window and the sinks go back to the pool (nothing reads
        // them any more: this pass has completed and later ones only look forward).
        if (s.window) s.pages_released += s.table->release_outside_window(s.window, s.sinks);
    }
    if (s.window_table) {
        std::lock_guard<std::mutex> lock(s.window_pool->mutex);
        s.window_table->commit(s.tokens.data() + p, T);
        if (s.window) s.window_pages_released += s.window_table->release_outside_window(s.window, s.sinks);
    }
    s.n_past = p + T;
}

void release_window_pages(kv_session& s) {
    if (!s.window_table || s.hold_window_pages) return;
    // Keys a later query can see in these layers: the last min(session, layer) window positions
    // and the session's sinks (forward.cpp); kWindowSlack more, so that a truncate of that many
    // tokens still finds its window. (A session window's own release in commit_tokens came first
    // and went further: then this does nothing.)
    const uint32_t w = (s.window ? std::min(s.window, s.group_window) : s.group_window) + kWindowSlack;
    std::lock_guard<std::mutex> lock(s.window_pool->mutex);
    s.window_pages_released += s.window_table->release_outside_window(w, s.sinks);
}

uint32_t match_prefix(kv_session& s) {
    uint32_t from;
    {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        from = s.table->match_prefix(s.tokens.data(), uint32_t(s.tokens.size()));
    }
    if (s.window_table) {
        // Both groups must hold the same positions: the shorter match wins (the windowed
        // group's cached pages may have been evicted sooner).
        {
            std::lock_guard<std::mutex> lock(s.window_pool->mutex);
            from = std::min(from, s.window_table->match_prefix(s.tokens.data(), uint32_t(s.tokens.size())));
        }
        truncate_tables(s, from);
    }
    s.n_past = from;
    s.prefix_hit_tokens += from;
    return from;
}

void truncate_tables(kv_session& s, uint32_t n) {
    {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        if (n == 0) s.table->clear();
        else s.table->truncate(n);
    }
    if (s.window_table) {
        std::lock_guard<std::mutex> lock(s.window_pool->mutex);
        if (n == 0) s.window_table->clear();
        else s.window_table->truncate(n);
    }
}

// Drops cached positions [n, n_past).
void truncate_cache(kv_session& s, uint32_t n) {
    truncate_tables(s, n);
    s.n_past = n;
}

}  // namespace detail

}  // namespace kv::engine

namespace kv::engine {
using namespace detail;

void Profile::begin(vk::CommandStream& cs) {
    labels_.clear();
    cs.timestamp(0);
    labels_.push_back("start");
}

void Profile::mark(vk::CommandStream& cs, const char* label) {
    if (labels_.size() >= kSlots) return;
    cs.timestamp(static_cast<uint32_t>(labels_.size()));
    labels_.push_back(label);
}

void Profile::add(Totals& t, const char* label, double ns) {
    auto it = std::find_if(t.begin(), t.end(), [&](const auto& p) { return p.first == label; });
    if (it == t.end()) t.emplace_back(label, ns);
    else it->second += ns;
}

void Profile::collect(const vk::CommandStream& cs, uint32_t n_tokens) {
    double total = 0;
    for (uint32_t i = 1; i < labels_.size(); ++i) {
        double ns = cs.elapsed_ns(i - 1, i);
        total += ns;
        add(totals_, labels_[i], ns);
        if (n_tokens == 1) add(decode_totals_, labels_[i], ns);
    }
    gpu_ms_ += total / 1e6;
    ++passes_;
    tokens_ += n_tokens;
    if (n_tokens == 1) {
        ++single_token_passes_;
        single_token_gpu_ms_ += total / 1e6;
    }
}

void Profile::print(const Totals& t, double total_ms, const char* title) {
    std::fprintf(stderr, "[kv-profile] %s\n", title);
    for (auto& [label, ns] : t)
        std::fprintf(stderr, "[kv-profile]   %-16s %9.3f ms  %5.1f%%\n", label.c_str(), ns / 1e6,
                     total_ms > 0 ? 100.0 * ns / 1e6 / total_ms : 0.0);
}

Profile::~Profile() {
    if (!passes_) return;
    std::fprintf(stderr, "[kv-profile] %llu passes, %llu tokens: GPU %.3f ms, host recording %.3f ms\n",
                 (unsigned long long)passes_, (unsigned long long)tokens_, gpu_ms_, record_ms_);
    print(totals_, gpu_ms_, "all passes:");
    if (single_token_passes_) {
        char title[128];
        std::snprintf(title, sizeof title, "single-token (decode) passes: %llu, %.3f ms GPU each:",
                      (unsigned long long)single_token_passes_, single_token_gpu_ms_ / double(single_token_passes_));
        print(decode_totals_, single_token_gpu_ms_, title);
    }
}

}  // namespace kv::engine

uint64_t kv_session::kv_bytes_per_token() const {
    const auto& c = model->config();
    return 2ull * c.n_layer * c.n_head_kv * kv::engine::kv_row_bytes(kv_type, c.head_dim);
}

uint64_t kv_session::kv_bytes() const {
    uint64_t bytes;
    {
        std::lock_guard<std::mutex> lock(pool->mutex);
        bytes = uint64_t(table->pages_used()) * pool->page_bytes_all_layers();
    }
    if (window_table) {
        std::lock_guard<std::mutex> lock(window_pool->mutex);
        bytes += uint64_t(window_table->pages_used()) * window_pool->page_bytes_all_layers();
    }
    return bytes;
}

kv_session::~kv_session() {
    if (pool) kv::engine::unregister_session(*this);
    if (table) {
        std::lock_guard<std::mutex> lock(pool->mutex);
        table.reset();  // returns the pages
    }
    if (window_table) {
        std::lock_guard<std::mutex> lock(window_pool->mutex);
        window_table.reset();
    }
}

namespace kv::engine {
using namespace detail;

model::GgmlType cache_type(int32_t t) {
    static_assert(sizeof(kv_cache_type) == sizeof(int32_t), "kv_cache_type is pinned to 32 bits");
    switch (t) {
        case KV_CACHE_F16: return GgmlType::F16;
        case KV_CACHE_F32: return GgmlType::F32;
        case KV_CACHE_Q8_0: return GgmlType::Q8_0;
        case KV_CACHE_Q4_0: return GgmlType::Q4_0;
        default: fail(KV_ERR_INVALID_ARGUMENT, "cache_type %d is not a kv_cache_type", t);
    }
}

std::unique_ptr<kv_session> create_session(kv_model& m, const kv_session_desc& d, const kv_sampler_desc& sampler) {
    require_weights_on_device(m);
    if (m.runtime->device->lost())
        fail(KV_ERR_DEVICE_LOST, "the device was lost; destroy the sessions, model and runtime and recreate them");
    const auto& cfg = m.config();
    kv_runtime& rt = *m.runtime;
    auto s = std::make_unique<kv_session>();
    s->model = &m;
    s->desc = d;
    s->desc.sampler = nullptr;  // the caller's pointer is not kept
    s->flags = d.flags;
    int32_t type_bits;  // never loaded as a kv_cache_type: the caller's value may be any int32
    std::memcpy(&type_bits, &d.cache_type, sizeof type_bits);
    s->kv_type = cache_type(type_bits);
    if (d.flags & ~uint32_t(KV_SESSION_NO_CACHE)) fail(KV_ERR_INVALID_ARGUMENT, "unknown session flags 0x%x", d.flags);
    if (d.sinks && !d.window) fail(KV_ERR_INVALID_ARGUMENT, "sinks (%u) need a window", d.sinks);
    // Which head sizes a page type can hold is kv_page_bytes()'s to say (KV_ERR_UNSUPPORTED).
    kv_page_bytes(s->kv_type, cfg.n_head_kv, 1, cfg.head_dim);
    check_sampler(sampler);
    s->sampler = std::make_unique<Sampler>(sampler, cfg.n_vocab);

    uint32_t n_ctx = d.n_ctx ? d.n_ctx : std::min<uint32_t>(cfg.n_ctx_train ? cfg.n_ctx_train : 4096, 4096);
    if (n_ctx > (1u << 24)) fail(KV_ERR_INVALID_ARGUMENT, "n_ctx %u is too large", n_ctx);
    s->page_size = m.kv_page_size;
    uint32_t n_pages = (n_ctx + s->page_size - 1) / s->page_size;
    s->n_ctx = n_pages * s->page_size;
    uint32_t pool_tokens = s->n_ctx;  // the least the model's pool must hold for this session
    s->n_batch = d.n_batch ? std::min<uint32_t>(d.n_batch, 4096) : 512;

    vk::Device& dev = *rt.device;
    uint64_t range = dev.max_storage_buffer_range();
    // The largest scratch row set must fit one binding too.
    uint64_t widest = std::max<uint64_t>({cfg.n_embd, cfg.q_dim(), cfg.n_ff}) * 4;
    s->n_batch = static_cast<uint32_t>(std::min<uint64_t>(s->n_batch, std::max<uint64_t>(1, range / widest)));
    s->max_logit_rows = static_cast<uint32_t>(std::min<uint64_t>(s->n_batch, std::max<uint64_t>(1, range / (uint64_t(cfg.n_vocab) * 4))));

    if (d.window) {
        // Resident at once: the sink pages, plus the pages of the window and of one pass's tokens.
        s->window = d.window;
        s->sinks = d.sinks;
        s->sink_pages = (d.sinks + s->page_size - 1) / s->page_size;
        s->ring_pages = (d.window + s->n_batch + s->page_size - 1) / s->page_size + 2;
        n_pages = s->sink_pages + s->ring_pages;
        pool_tokens = n_pages * s->page_size;
    }

    vk::Allocator* al = rt.allocator.get();
    s->pool = &kv_pool(m, s->kv_type, pool_tokens);
    // A LongRoPE model's sessions rotate keys with the long or the short factor table by their
    // context size (engine/forward.cpp): each table's pages are a prefix namespace of their own.
    const bool long_rope = cfg.rope_longrope && s->n_ctx > cfg.n_ctx_orig;
    s->table = std::make_unique<kvcache::BlockTable>(
        s->pool->pages, long_rope ? kvcache::mix64(kvcache::kRootHash) : kvcache::kRootHash);
    register_session(*s);
    s->block_table = vk::Buffer(al, uint64_t(n_pages) * 4, vk::MemoryUse::Upload);
    // The windowed layers' group, on its own pool (same positions, same ring when windowed).
    if ((s->window_pool = kv_window_pool(m, s->kv_type, pool_tokens))) {
        s->window_table = std::make_unique<kvcache::BlockTable>(
            s->window_pool->pages, long_rope ? kvcache::mix64(kvcache::kRootHash) : kvcache::kRootHash);
        s->window_block_table = vk::Buffer(al, uint64_t(n_pages) * 4, vk::MemoryUse::Upload);
        for (uint32_t l : s->window_pool->layers()) s->group_window = std::max(s->group_window, cfg.sliding_window[l]);
    }
    s->transfer = std::make_unique<vk::Uploader>(*al, 1ull << 20);

    uint64_t B = s->n_batch;
    auto scratch = [&](uint64_t bytes, vk::MemoryUse use = vk::MemoryUse::Device) {
        s->scratch_bytes += bytes;
        return vk::Buffer(al, bytes, use);
    };
    s->ids = scratch(B * 4, vk::MemoryUse::Upload);
    s->x = scratch(B * cfg.n_embd * 4);
    // h also holds the last logits row for an unaligned argmax, so it is at least n_vocab wide.
    s->h = scratch(std::max<uint64_t>(B * cfg.n_embd, cfg.n_vocab) * 4);
    s->q = scratch(B * cfg.q_dim() * 4);
    s->k = scratch(B * cfg.kv_dim() * 4);
    s->v = scratch(B * cfg.kv_dim() * 4);
    s->attn = scratch(B * cfg.q_dim() * 4);
    s->gate = scratch(B * cfg.n_ff * 4);
    s->up = scratch(B * cfg.n_ff * 4);
    s->logits = scratch(uint64_t(s->max_logit_rows) * cfg.n_vocab * 4);
    s->argmax_out = scratch(16);
    // Per session (sessions may run on several threads): the split-KV decode partials. Bounded;
    // the kernels split a long context only as far as it holds.
    s->attn_scratch = scratch(std::min<uint64_t>(8ull << 20, range));
    s->readback = scratch(uint64_t(s->max_logit_rows) * cfg.n_vocab * 4 + 16, vk::MemoryUse::Readback);
    const char* prof = std::getenv("KV_PROFILE");
    if (prof && *prof && std::string(prof) != "0" && dev.timestamps()) s->profile = std::make_unique<Profile>();
    // A GPU budget measures each layer (GpuBudget::slots); a profile's marks measure more.
    const uint32_t slots = m.gpu_budget ? std::max(4u, GpuBudget::slots(cfg.n_layer)) : 4u;
    s->cs = std::make_unique<vk::CommandStream>(dev, s->profile ? Profile::kSlots : slots);
    s->cs->set_descriptor_reuse(true);  // everything it binds outlives the session
    return s;
}

namespace detail {


LogitsState logits_state(const kv_session& s) {
    return {s.has_logits, s.host_logits_valid, s.next_token_valid, s.logits_row, s.next_token, s.logits_passes};
}

// After a failed call: back to the first `n_past` positions (the cache never lost them: this only
// drops what the failed call added). The logits from before come back when no pass of the call
// wrote the logits buffer and every position was kept (the session is then as it was); otherwise
// there are none until the next successful pass.
void rollback(kv_session& s, uint32_t n_past, const LogitsState& before) {
    uint32_t keep = n_past;
    {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        // No-cache mode may have cleared the table; a failed copy-on-write shortened it.
        keep = std::min(keep, s.table->n_tokens());
    }
    truncate_cache(s, keep);
    s.tokens.resize(keep);  // s.tokens always holds exactly the cached positions' tokens
    if (keep == n_past && s.logits_passes == before.logits_passes) {
        s.has_logits = before.has_logits;
        s.host_logits_valid = before.host_logits_valid;
        s.next_token_valid = before.next_token_valid;
        s.logits_row = before.logits_row;
        s.next_token = before.next_token;
    } else {
        s.has_logits = s.host_logits_valid = s.next_token_valid = false;
    }
}

}  // namespace detail

kv_status prefill(kv_session& s, const int32_t* ids, uint32_t n, float* all_logits) {
    if (n == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_tokens is 0");
    if (!ids) fail(KV_ERR_INVALID_ARGUMENT, "tokens is NULL");
    // Capacity first: a huge n must fail before any of the n ids is read.
    if (uint64_t(s.n_past) + n > max_positions(s))
        fail(KV_ERR_CONTEXT_FULL, "%u tokens do not fit: %u of %u positions are used", n, s.n_past, max_positions(s));
    check_tokens(s, ids, n);
    auto t0 = Clock::now();
    uint32_t old_past = s.n_past;
    const LogitsState before = logits_state(s);
    bool cancelled = false;
    try {
        if (s.flags & KV_SESSION_NO_CACHE) {
            // The baseline: recompute the whole sequence from its first token.
            truncate_cache(s, 0);
            if (all_logits && old_past > 0) forward_tokens(s, 0, nullptr, false);  // earlier positions first
            s.tokens.insert(s.tokens.end(), ids, ids + n);
            forward_tokens(s, all_logits ? old_past : 0, all_logits, false);
        } else {
            s.tokens.insert(s.tokens.end(), ids, ids + n);
            uint32_t from = old_past;
            if (old_past == 0 && !all_logits) {
                // Prefix sharing: whole pages another session (or an earlier one) computed for the
                // same leading tokens are reused; only the rest is computed.
                from = match_prefix(s);
            }
            cancelled = forward_tokens(s, from, all_logits, !all_logits);
        }
    } catch (...) {
        rollback(s, old_past, before);
        throw;
    }
    release_window_pages(s);
    const uint32_t done = s.n_past - old_past;  // n, or fewer when cancelled
    s.last_prefill_ms = ms_since(t0);
    s.total_prefill_ms += s.last_prefill_ms;
    s.last_prefill_tokens = done;
    s.tokens_prefilled += done;
    return cancelled ? KV_CANCELLED : KV_OK;
}

kv_status decode_step(kv_session& s, int32_t* out_token) {
    if (!out_token) fail(KV_ERR_INVALID_ARGUMENT, "out_token is NULL");
    if (!s.has_logits) fail(KV_ERR_BAD_STATE, "no logits yet: call kv_prefill first");
    if (s.n_past >= max_positions(s))
        fail(KV_ERR_CONTEXT_FULL, "the context is full (%u of %u positions)", s.n_past, max_positions(s));
    auto t0 = Clock::now();
    int32_t tok;
    std::optional<std::mt19937_64> rng_before;  // a failed step leaves the random state as it was
    if (s.sampler->gpu_greedy() && s.next_token_valid) {
        tok = s.next_token;
    } else {
        std::vector<float> l(s.model->config().n_vocab);
        copy_logits(s, l.data());
        rng_before = s.sampler->rng();
        tok = s.sampler->sample(l.data(), static_cast<uint32_t>(l.size()), s.tokens);
    }
    if (s.model->tokenizer->is_eog(tok)) {
        *out_token = tok;
        return KV_END_OF_GENERATION;
    }
    uint32_t old_past = s.n_past;
    const LogitsState before = logits_state(s);
    s.tokens.push_back(tok);
    try {
        if (s.flags & KV_SESSION_NO_CACHE) truncate_cache(s, 0);
        forward_tokens(s, s.n_past, nullptr, false);
    } catch (...) {
        rollback(s, old_past, before);
        if (rng_before) s.sampler->set_rng(*rng_before);
        throw;
    }
    release_window_pages(s);
    s.sampler->accept(tok, old_past);  // the grammar, if any, moves past it
    *out_token = tok;  // out-parameters stay untouched on error
    s.last_decode_ms = ms_since(t0);
    s.total_decode_ms += s.last_decode_ms;
    s.tokens_decoded += 1;
    return KV_OK;
}

void reset(kv_session& s) {
    if (s.offloaded) {  // nothing to bring back: the host copy goes
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        s.pool->offloaded_bytes -= s.host_pages.size();
        s.offloaded = false;
        std::vector<uint8_t>().swap(s.host_pages);
    }
    truncate_cache(s, 0);
    s.tokens.clear();
    s.has_logits = s.host_logits_valid = s.next_token_valid = false;
    s.tokens_prefilled = s.tokens_decoded = s.prefix_hit_tokens = s.forward_passes = s.submissions = 0;
    s.last_pass_submissions = 0;
    s.pages_released = s.window_pages_released = 0;
    s.last_prefill_ms = s.last_decode_ms = s.total_prefill_ms = s.total_decode_ms = 0;
    s.last_prefill_tokens = 0;
    s.sampler->reset();
}

void copy_logits(kv_session& s, float* out) {
    if (!s.has_logits) fail(KV_ERR_BAD_STATE, "no logits yet: no token has been processed");
    uint32_t V = s.model->config().n_vocab;
    if (!s.host_logits_valid) {
        s.host_logits.resize(V);
        s.transfer->download(s.logits, uint64_t(s.logits_row) * V * 4, s.host_logits.data(), uint64_t(V) * 4);
        s.host_logits_valid = true;
    }
    std::memcpy(out, s.host_logits.data(), size_t(V) * 4);
}

}  // namespace kv::engine

namespace kv::engine {
using namespace detail;

std::unique_ptr<kv_session> fork(kv_session& p) {
    kv_sampler_desc sd = p.sampler->desc();
    sd.n_logit_bias = sd.n_banned_tokens = 0;  // the copy below brings them (desc() holds no arrays)
    auto c = create_session(*p.model, p.desc, sd);
    c->sampler = std::make_unique<Sampler>(*p.sampler);  // same settings and random state
    {
        std::lock_guard<std::mutex> lock(p.pool->mutex);
        *c->table = p.table->fork();
    }
    if (p.window_table) {
        std::lock_guard<std::mutex> lock(p.window_pool->mutex);
        *c->window_table = p.window_table->fork();
    }
    c->tokens = p.tokens;
    c->n_past = p.n_past;
    if (p.has_logits) {
        uint64_t row = uint64_t(p.model->config().n_vocab) * 4;
        vk::CommandStream& cs = *c->cs;
        cs.begin();
        cs.copy({p.logits.handle(), p.logits_row * row, row}, {c->logits.handle(), 0, row});
        cs.barrier();
        cs.submit_and_wait();
        c->has_logits = true;
        c->logits_row = 0;
        c->host_logits_valid = p.host_logits_valid;
        c->host_logits = p.host_logits;
        c->next_token_valid = p.next_token_valid;
        c->next_token = p.next_token;
    }
    return c;
}

void truncate(kv_session& s, uint32_t n) {
    if (n > s.n_past)
        fail(KV_ERR_INVALID_ARGUMENT, "cannot truncate to %u tokens: the session holds %u", n, s.n_past);
    if (n == s.n_past) return;
    if (n == 0) {
        s.sampler->truncate(0);
        truncate_cache(s, 0);
        s.tokens.clear();
        s.has_logits = s.host_logits_valid = s.next_token_valid = false;
        return;
    }
    {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        // Token n - 1 is run again: every key its window sees must still be resident.
        uint32_t first = s.window && n > s.window ? n - s.window : 0;
        if (first < s.sinks) first = std::min(s.sinks, n - 1);
        if (!s.table->resident(n - 1) || !s.table->resident(first))
            fail(KV_ERR_INVALID_ARGUMENT, "cannot truncate to %u tokens: positions it needs left the sliding window", n);
    }
    if (s.window_table) {
        // The same for the windowed layers, whose group keeps only their window.
        const uint32_t w = s.window ? std::min(s.window, s.group_window) : s.group_window;
        uint32_t first = n > w ? n - w : 0;
        if (first < s.sinks) first = std::min(s.sinks, n - 1);
        std::lock_guard<std::mutex> lock(s.window_pool->mutex);
        if (!s.window_table->resident(n - 1) || !s.window_table->resident(first))
            fail(KV_ERR_INVALID_ARGUMENT,
                 "cannot truncate to %u tokens: positions its sliding-window layers need (their window is %u) "
                 "were released",
                 n, w);
    }
    s.sampler->truncate(n);  // the grammar forgets the tokens it matched from position n on
    // Keep [0, n - 1), then run token n - 1 again: its K/V are rewritten (identical) and the
    // logits after it come back, so decoding can continue at once.
    int32_t last = s.tokens[n - 1];
    truncate_cache(s, n - 1);
    s.tokens.resize(n - 1);
    s.has_logits = s.host_logits_valid = s.next_token_valid = false;
    s.tokens.push_back(last);
    const LogitsState none = logits_state(s);
    try {
        forward_tokens(s, n - 1, nullptr, false);
    } catch (...) {
        rollback(s, n - 1, none);
        throw;
    }
    release_window_pages(s);
}

}  // namespace kv::engine
