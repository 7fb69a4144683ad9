#include "engine/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "engine/runtime.h"

namespace kv::engine {

namespace {

using model::GgmlType;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

vk::BufferRange span(const vk::Buffer& b, uint64_t bytes) {
    KV_CHECK(bytes <= b.size());
    return {b.handle(), 0, bytes};
}

enum class LogitsMode { None, Last, All };

// Where a pass is submitted in pieces: after layer 0 (the GPU starts while the host records the
// rest), then every 4 layers. Recording a layer takes the host a fraction of the GPU's time for
// it, so from the second piece on recording hides behind execution.
bool flush_after(uint32_t layer, uint32_t n_layer) {
    return layer + 1 < n_layer && (layer == 0 || (layer + 1) % 4 == 0);
}

// Records and runs the forward pass of tokens [pos0, pos0 + T) (ids already in s.ids), in a few
// submissions (flush_after) waited on together. Writes K/V of those positions into the cache. Afterwards `logits` holds the last
// row (Last) or every row (All); the GPU argmax and the host copy are refreshed as the sampler needs.
void run_chunk(kv_session& s, uint32_t T, uint32_t pos0, LogitsMode mode, bool want_host_logits,
               const std::vector<kvcache::PageCopy>& copies) {
    kv_model& m = *s.model;
    const auto& cfg = m.config();
    const auto& W = m.weights;
    const Kernels& K = *m.kernels;
    const WeightKernels& WK = *m.weight_kernels;
    const AttentionKernels& A = *m.attention;
    vk::CommandStream& cs = *s.cs;
    const uint32_t E = cfg.n_embd, QD = cfg.q_dim(), KVD = cfg.kv_dim(), F = cfg.n_ff, V = cfg.n_vocab;

    auto X = span(s.x, uint64_t(T) * E * 4), H = span(s.h, uint64_t(T) * E * 4);
    auto Q = span(s.q, uint64_t(T) * QD * 4), Kb = span(s.k, uint64_t(T) * KVD * 4);
    auto Vb = span(s.v, uint64_t(T) * KVD * 4), O = span(s.attn, uint64_t(T) * QD * 4);
    auto G = span(s.gate, uint64_t(T) * F * 4), U = span(s.up, uint64_t(T) * F * 4);
    auto ids = span(s.ids, uint64_t(T) * 4);
    vk::BufferRange freqs{};
    if (W.rope_freqs.valid()) freqs = W.rope_freqs.range();

    RopeParams rq;
    rq.n_tokens = T;
    rq.n_heads = cfg.n_head;
    rq.head_dim = cfg.head_dim;
    rq.n_rot = cfg.n_rot;
    rq.pos0 = pos0;
    rq.freq_base = cfg.rope_freq_base;
    rq.freq_scale = cfg.rope_freq_scale;
    rq.neox = cfg.rope_type == model::RopeType::Neox;
    RopeParams rk = rq;
    rk.n_heads = cfg.n_head_kv;
    AttentionParams ap;
    ap.n_tokens = T;
    ap.pos0 = pos0;
    ap.n_head = cfg.n_head;
    ap.n_head_kv = cfg.n_head_kv;
    ap.head_dim = cfg.head_dim;
    ap.page_size = s.page_size;
    ap.kv_type = s.kv_type;
    ap.scale = 1.0f / std::sqrt(float(cfg.head_dim));
    ap.sinks = s.sinks;
    ap.sink_pages = s.sink_pages;
    ap.ring_pages = s.ring_pages;
    auto bt = vk::whole(s.block_table);

    Profile* prof = s.profile.get();
    auto mark = [&](const char* label) {
        if (prof) prof->mark(cs, label);
    };
    auto t_record = Clock::now();
    cs.begin();
    if (prof) prof->begin(cs);
    s.pool->record_copies(cs, copies);  // copy-on-write of a shared page, before any write
    WK.get_rows(cs, W.token_embd.data, W.token_embd.type, W.token_embd.rows, E, ids, T, X);
    cs.barrier();
    // The input of the matmuls after an RMS norm of X: for decode, X itself with the norm fused
    // into the matvecs (no rms_norm pass, no barrier); for prefill, H = rms_norm(X).
    auto normed_x = [&](const DeviceTensor& norm, MatmulFusion* fused) {
        if (T == 1) {
            fused->norm_weight = norm.range();
            fused->norm_eps = cfg.rms_eps;
            return X;
        }
        K.rms_norm(cs, X, norm.range(), H, E, T, cfg.rms_eps);
        cs.barrier();
        mark("rms_norm");
        return H;
    };
    for (uint32_t l = 0; l < cfg.n_layer; ++l) {
        const DeviceLayer& L = W.layers[l];
        // Attention block.
        mark("other");
        MatmulFusion attn_norm;
        const vk::BufferRange attn_in = normed_x(L.attn_norm, &attn_norm);
        WK.matmul(cs, L.wq.data, L.wq.type, QD, E, attn_in, Q, T, attn_norm);
        WK.matmul(cs, L.wk.data, L.wk.type, KVD, E, attn_in, Kb, T, attn_norm);
        WK.matmul(cs, L.wv.data, L.wv.type, KVD, E, attn_in, Vb, T, attn_norm);
        cs.barrier();
        mark("matmul qkv");
        if (L.bq.valid()) K.add(cs, Q, L.bq.range(), Q, T * QD, QD);
        if (L.bk.valid()) K.add(cs, Kb, L.bk.range(), Kb, T * KVD, KVD);
        if (L.bv.valid()) K.add(cs, Vb, L.bv.range(), Vb, T * KVD, KVD);
        if (L.bq.valid() || L.bk.valid() || L.bv.valid()) cs.barrier();
        A.rope(cs, Q, freqs, rq);
        A.rope(cs, Kb, freqs, rk);
        cs.barrier();
        mark("bias+rope");
        uint32_t model_window = cfg.sliding_window.empty() ? 0 : cfg.sliding_window[l];
        ap.window = s.window && model_window ? std::min(s.window, model_window) : std::max(s.window, model_window);
        A.kv_write(cs, Kb, Vb, vk::whole(s.pool->k(l)), vk::whole(s.pool->v(l)), bt, ap);
        cs.barrier();
        mark("kv_write");
        A.attention(cs, Q, vk::whole(s.pool->k(l)), vk::whole(s.pool->v(l)), bt, O, ap, vk::whole(s.attn_scratch));
        cs.barrier();
        mark("attention");
        if (L.bo.valid()) {
            WK.matmul(cs, L.wo.data, L.wo.type, E, QD, O, H, T);
            cs.barrier();
            K.add(cs, H, L.bo.range(), H, T * E, E);
            cs.barrier();
            K.add(cs, X, H, X, T * E);
        } else {
            MatmulFusion residual;  // X += Wo O
            residual.accumulate = true;
            WK.matmul(cs, L.wo.data, L.wo.type, E, QD, O, X, T, residual);
        }
        cs.barrier();
        mark("matmul o");
        // Feed-forward block (SwiGLU).
        MatmulFusion ffn_norm;
        const vk::BufferRange ffn_in = normed_x(L.ffn_norm, &ffn_norm);
        WK.matmul(cs, L.ffn_gate.data, L.ffn_gate.type, F, E, ffn_in, G, T, ffn_norm);
        WK.matmul(cs, L.ffn_up.data, L.ffn_up.type, F, E, ffn_in, U, T, ffn_norm);
        cs.barrier();
        mark("matmul gate+up");
        MatmulFusion ffn;  // X += Wdown (silu(G) * U)
        ffn.accumulate = true;
        ffn.glu_up = U;
        WK.matmul(cs, L.ffn_down.data, L.ffn_down.type, E, F, G, X, T, ffn);
        cs.barrier();
        mark("matmul down");
        // Later layers record while the GPU runs the earlier ones (CommandStream::flush).
        if (flush_after(l, cfg.n_layer)) cs.flush();
    }
    if (mode != LogitsMode::None) {
        uint32_t rows = mode == LogitsMode::All ? T : 1;
        // Last: only the final position's row goes through the output head.
        vk::BufferRange src = X;
        if (mode == LogitsMode::Last && T > 1) {
            cs.copy({s.x.handle(), uint64_t(T - 1) * E * 4, uint64_t(E) * 4}, span(s.h, uint64_t(E) * 4));
            cs.barrier();
            src = span(s.h, uint64_t(E) * 4);
        }
        const DeviceTensor& out = W.logits_matrix();
        auto LG = span(s.logits, uint64_t(rows) * V * 4);
        MatmulFusion out_norm;
        vk::BufferRange head_in = src;
        if (rows == 1) {
            out_norm.norm_weight = W.output_norm.range();
            out_norm.norm_eps = cfg.rms_eps;
        } else {
            head_in = span(s.h, uint64_t(rows) * E * 4);
            K.rms_norm(cs, src, W.output_norm.range(), head_in, E, rows, cfg.rms_eps);
            cs.barrier();
        }
        WK.matmul(cs, out.data, out.type, V, E, head_in, LG, rows, out_norm);
        cs.barrier();
        mark("output head");
        uint64_t last_off = uint64_t(rows - 1) * V * 4;
        bool gpu_argmax = s.sampler->gpu_greedy();
        if (gpu_argmax) {
            vk::BufferRange last{s.logits.handle(), last_off, uint64_t(V) * 4};
            if (last_off % s.model->runtime->device->limits().minStorageBufferOffsetAlignment) {
                // Eval's last row may start at an offset no binding can have (an odd vocabulary):
                // argmax reads a copy instead (h is at least n_vocab floats wide).
                cs.copy(last, span(s.h, uint64_t(V) * 4));
                last = span(s.h, uint64_t(V) * 4);
                cs.barrier();
            }
            A.argmax(cs, last, vk::whole(s.argmax_out), V);
            cs.barrier();
            cs.copy({s.argmax_out.handle(), 0, 4}, {s.readback.handle(), uint64_t(s.max_logit_rows) * V * 4, 4});
        }
        if (want_host_logits) cs.copy(LG, span(s.readback, uint64_t(rows) * V * 4));
        cs.host_barrier();
        mark("sampling");
        if (prof) prof->submitted(ms_since(t_record));
        const uint64_t submitted = cs.submissions();
        try {
            cs.submit_and_wait();
        } catch (...) {
            if (cs.submissions() != submitted) ++s.logits_passes;  // the logits part ran, perhaps
            throw;
        }
        ++s.logits_passes;
        if (prof) prof->collect(cs, T);
        s.has_logits = true;
        s.logits_row = rows - 1;
        s.next_token_valid = gpu_argmax;
        if (gpu_argmax) {
            s.readback.invalidate(0, s.readback.size());
            std::memcpy(&s.next_token, static_cast<const char*>(s.readback.mapped()) + uint64_t(s.max_logit_rows) * V * 4, 4);
        }
        s.host_logits_valid = false;
        if (want_host_logits) {
            s.readback.invalidate(0, uint64_t(rows) * V * 4);
            const float* rb = static_cast<const float*>(s.readback.mapped());
            s.host_logits.assign(rb + uint64_t(rows - 1) * V, rb + uint64_t(rows) * V);
            s.host_logits_valid = true;
        }
    } else {
        mark("other");
        if (prof) prof->submitted(ms_since(t_record));
        cs.submit_and_wait();
        if (prof) prof->collect(cs, T);
    }
}

// Positions a session may reach: n_ctx, or (windowed) as far as 32-bit positions go.
uint32_t max_positions(const kv_session& s) { return s.window ? 0x7FFFFFFFu : s.n_ctx; }

void check_tokens(const kv_session& s, const int32_t* ids, uint32_t n) {
    uint32_t nv = s.model->config().n_vocab;
    for (uint32_t i = 0; i < n; ++i)
        if (ids[i] < 0 || uint32_t(ids[i]) >= nv)
            fail(KV_ERR_BAD_TOKEN, "token %u of %u is %d, outside the vocabulary [0, %u)", i, n, ids[i], nv);
}

// Writes the session's page ids where the shaders look for them: slot = logical page, or its
// ring slot for a windowed session (AttentionParams). Caller holds the pool mutex.
void publish_block_table(kv_session& s) {
    const auto& ids = s.table->page_ids();
    uint32_t* dst = static_cast<uint32_t*>(s.block_table.mapped());
    const uint32_t slots = uint32_t(s.block_table.size() / 4);
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
    s.block_table.flush(0, s.block_table.size());
}

// The copy-on-write copies of one pass, with a reference held on each source page until they
// are known to have run: the table already points at the copies, so a pass that fails before its
// first part reached the GPU redoes them (the sources' other holders may have let go by then).
struct PendingCopies {
    KvPool* pool = nullptr;
    std::vector<kvcache::PageCopy> copies;
    PendingCopies() = default;
    PendingCopies(const PendingCopies&) = delete;
    PendingCopies& operator=(const PendingCopies&) = delete;
    ~PendingCopies() {
        if (copies.empty()) return;
        std::lock_guard<std::mutex> lock(pool->mutex);
        for (const auto& c : copies) pool->pages.unref(c.src);
    }
};

// Makes positions [p, p + T) writable in the session's pages and publishes the block table.
void reserve_pages(kv_session& s, uint32_t T, PendingCopies* pending) {
    std::vector<kvcache::PageCopy>& copies = pending->copies;
    pending->pool = s.pool;
    std::lock_guard<std::mutex> lock(s.pool->mutex);
    if (s.table->reserve(T, &copies) != kvcache::ReserveStatus::kOk) {
        auto st = s.pool->pages.stats();
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
             "the KV page pool is full: %u tokens need pages, %u of %u pages are held by sessions (%u cached pages "
             "were evicted first); destroy or truncate sessions, or load the model with a larger kv_pool_tokens",
             T, st.in_use, st.limit, st.cached);
    }
    for (const auto& c : copies) s.pool->pages.ref(c.src);
    publish_block_table(s);
}

// After a pass failed before its copy-on-write copies reached the GPU: runs them on their own, so
// the pages the session keeps hold what they held. If that fails too, the session drops the
// positions of the copied page (it keeps a consistent, shorter cache; rollback sees n_tokens).
void redo_copies(kv_session& s, const std::vector<kvcache::PageCopy>& copies) {
    try {
        vk::CommandStream& cs = *s.cs;
        cs.begin();
        s.pool->record_copies(cs, copies);
        cs.submit_and_wait();
    } catch (...) {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        uint32_t page_start = s.table->n_tokens() / s.page_size * s.page_size;
        if (page_start == 0) s.table->clear();
        else s.table->truncate(page_start);
    }
}

// Runs tokens [from, tokens.size()) of s.tokens through the model in chunks, starting at
// position `from` (the cache holds [0, from)). The last chunk produces logits; `all_logits`
// (optional) receives every row.
void forward_tokens(kv_session& s, uint32_t from, float* all_logits) {
    uint32_t total = static_cast<uint32_t>(s.tokens.size());
    uint32_t V = s.model->config().n_vocab;
    uint32_t chunk = all_logits ? std::min(s.n_batch, s.max_logit_rows) : s.n_batch;
    bool host = !s.sampler->gpu_greedy();
    for (uint32_t p = from; p < total;) {
        uint32_t T = std::min(chunk, total - p);
        bool last = p + T == total;
        PendingCopies pending;
        reserve_pages(s, T, &pending);
        std::memcpy(s.ids.mapped(), s.tokens.data() + p, size_t(T) * 4);
        s.ids.flush(0, uint64_t(T) * 4);
        LogitsMode mode = all_logits ? LogitsMode::All : (last ? LogitsMode::Last : LogitsMode::None);
        const uint64_t submitted = s.cs->submissions();
        try {
            run_chunk(s, T, p, mode, host || all_logits, pending.copies);
        } catch (...) {
            // The copies are in the pass's first part: redo them if it never reached the GPU.
            if (!pending.copies.empty() && s.cs->submissions() == submitted && !s.model->runtime->device->lost())
                redo_copies(s, pending.copies);
            throw;
        }
        {
            std::lock_guard<std::mutex> lock(s.pool->mutex);
            s.table->commit(s.tokens.data() + p, T);
            // Pages wholly outside the window and the sinks go back to the pool (nothing reads
            // them any more: this pass has completed and later ones only look forward).
            if (s.window) s.table->release_outside_window(s.window, s.sinks);
        }
        if (all_logits) {
            const float* rb = static_cast<const float*>(s.readback.mapped());
            std::memcpy(all_logits + uint64_t(p - from) * V, rb, uint64_t(T) * V * 4);
        }
        p += T;
        s.n_past = p;
    }
}

// Drops cached positions [n, n_past).
void truncate_cache(kv_session& s, uint32_t n) {
    std::lock_guard<std::mutex> lock(s.pool->mutex);
    if (n == 0) s.table->clear();
    else s.table->truncate(n);
    s.n_past = n;
}

}  // namespace

}  // namespace kv::engine

namespace kv::engine {

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
    std::lock_guard<std::mutex> lock(pool->mutex);
    return uint64_t(table->pages_used()) * pool->page_bytes_all_layers();
}

kv_session::~kv_session() {
    if (table) {
        std::lock_guard<std::mutex> lock(pool->mutex);
        table.reset();  // returns the pages
    }
}

namespace kv::engine {

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
    s->sampler = std::make_unique<Sampler>(sampler);

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
    s->table = std::make_unique<kvcache::BlockTable>(s->pool->pages);
    s->block_table = vk::Buffer(al, uint64_t(n_pages) * 4, vk::MemoryUse::Upload);
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
    s->cs = std::make_unique<vk::CommandStream>(dev, s->profile ? Profile::kSlots : 4);
    s->cs->set_descriptor_reuse(true);  // everything it binds outlives the session
    return s;
}

namespace {

// What a call that fails must give back: the logits state from before it.
struct LogitsState {
    bool has_logits, host_logits_valid, next_token_valid;
    uint32_t logits_row;
    int32_t next_token;
    uint64_t logits_passes;
};

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

}  // namespace

void prefill(kv_session& s, const int32_t* ids, uint32_t n, float* all_logits) {
    if (n == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_tokens is 0");
    if (!ids) fail(KV_ERR_INVALID_ARGUMENT, "tokens is NULL");
    // Capacity first: a huge n must fail before any of the n ids is read.
    if (uint64_t(s.n_past) + n > max_positions(s))
        fail(KV_ERR_CONTEXT_FULL, "%u tokens do not fit: %u of %u positions are used", n, s.n_past, max_positions(s));
    check_tokens(s, ids, n);
    auto t0 = Clock::now();
    uint32_t old_past = s.n_past;
    const LogitsState before = logits_state(s);
    try {
        if (s.flags & KV_SESSION_NO_CACHE) {
            // The baseline: recompute the whole sequence from its first token.
            truncate_cache(s, 0);
            if (all_logits && old_past > 0) forward_tokens(s, 0, nullptr);  // earlier positions first
            s.tokens.insert(s.tokens.end(), ids, ids + n);
            forward_tokens(s, all_logits ? old_past : 0, all_logits);
        } else {
            s.tokens.insert(s.tokens.end(), ids, ids + n);
            uint32_t from = old_past;
            if (old_past == 0 && !all_logits) {
                // Prefix sharing: whole pages another session (or an earlier one) computed for the
                // same leading tokens are reused; only the rest is computed.
                std::lock_guard<std::mutex> lock(s.pool->mutex);
                from = s.table->match_prefix(s.tokens.data(), uint32_t(s.tokens.size()));
                s.n_past = from;
                s.prefix_hit_tokens += from;
            }
            forward_tokens(s, from, all_logits);
        }
    } catch (...) {
        rollback(s, old_past, before);
        throw;
    }
    s.last_prefill_ms = ms_since(t0);
    s.total_prefill_ms += s.last_prefill_ms;
    s.last_prefill_tokens = n;
    s.tokens_prefilled += n;
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
        forward_tokens(s, s.n_past, nullptr);
    } catch (...) {
        rollback(s, old_past, before);
        if (rng_before) s.sampler->set_rng(*rng_before);
        throw;
    }
    *out_token = tok;  // out-parameters stay untouched on error
    s.last_decode_ms = ms_since(t0);
    s.total_decode_ms += s.last_decode_ms;
    s.tokens_decoded += 1;
    return KV_OK;
}

void reset(kv_session& s) {
    truncate_cache(s, 0);
    s.tokens.clear();
    s.has_logits = s.host_logits_valid = s.next_token_valid = false;
    s.tokens_prefilled = s.tokens_decoded = s.prefix_hit_tokens = 0;
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

std::unique_ptr<kv_session> fork(kv_session& p) {
    auto c = create_session(*p.model, p.desc, p.sampler->desc());
    c->sampler = std::make_unique<Sampler>(*p.sampler);  // same settings and random state
    {
        std::lock_guard<std::mutex> lock(p.pool->mutex);
        *c->table = p.table->fork();
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
    // Keep [0, n - 1), then run token n - 1 again: its K/V are rewritten (identical) and the
    // logits after it come back, so decoding can continue at once.
    int32_t last = s.tokens[n - 1];
    truncate_cache(s, n - 1);
    s.tokens.resize(n - 1);
    s.has_logits = s.host_logits_valid = s.next_token_valid = false;
    s.tokens.push_back(last);
    const LogitsState none = logits_state(s);
    try {
        forward_tokens(s, n - 1, nullptr);
    } catch (...) {
        rollback(s, n - 1, none);
        throw;
    }
}

}  // namespace kv::engine
