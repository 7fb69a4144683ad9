#include "engine/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kv_pool.h"
#include "engine/runtime.h"
#include "engine/session.h"
#include "engine/session_ops.h"

namespace kv::engine {

namespace {

using detail::Clock;
using detail::ms_since;

vk::BufferRange rows_of(const vk::Buffer* b, uint32_t row0, uint32_t n_rows, uint64_t row_floats) {
    uint64_t off = uint64_t(row0) * row_floats * 4, bytes = uint64_t(n_rows) * row_floats * 4;
    KV_CHECK(off + bytes <= b->size());
    return {b->handle(), off, bytes};
}

// Where a pass is submitted in pieces without a GPU budget: after layer 0 (the GPU starts while
// the host records the rest), then every 4 layers. Recording a layer takes the host a fraction of
// the GPU's time for it, so from the second piece on recording hides behind execution.
bool flush_after(uint32_t layer, uint32_t n_layer) {
    return layer + 1 < n_layer && (layer == 0 || (layer + 1) % 4 == 0);
}

// The GPU budget's side of a pass (engine/gpu_budget.h): where to cut it, and its timestamps.
struct BudgetPass {
    GpuBudget* budget = nullptr;  // null: budget off (flush_after decides)
    std::vector<bool> cut;
    bool measure = false;         // the stream has the slots (not taken by a profile)
    uint32_t n_layer = 0, rows = 0;

    BudgetPass(kv_model& m, vk::CommandStream& cs, bool profiling, uint32_t T, bool has_head)
        : budget(m.gpu_budget.get()), n_layer(m.config().n_layer), rows(T) {
        if (!budget) return;
        cut = budget->plan(T, has_head);
        measure = !profiling && cs.timestamp_slots() >= GpuBudget::slots(n_layer);
    }
    void layer_start(vk::CommandStream& cs, uint32_t l) const {
        if (measure) cs.timestamp(2 * l);
    }
    // After layer l: its end timestamp, then a submission where the plan cuts.
    void layer_end(vk::CommandStream& cs, uint32_t l) const {
        if (measure) cs.timestamp(2 * l + 1);
        if (budget ? cut[l] : flush_after(l, n_layer)) cs.flush();
    }
    void head(vk::CommandStream& cs, bool end) const {
        if (measure) cs.timestamp(budget->head_slot() + (end ? 1 : 0));
    }
    // After the submission completed: the measured costs into the estimates.
    void collect(const vk::CommandStream& cs, bool has_head) const {
        if (!measure) return;
        std::vector<double> ns(n_layer);
        for (uint32_t l = 0; l < n_layer; ++l) ns[l] = cs.elapsed_ns(2 * l, 2 * l + 1);
        budget->record(rows, ns, has_head ? cs.elapsed_ns(budget->head_slot(), budget->head_slot() + 1) : 0);
    }
};

// The submissions a pass made, on each of its sessions.
void count_submissions(std::vector<Segment>& segs, uint64_t n) {
    for (const Segment& g : segs) {
        g.session->submissions += n;
        g.session->last_pass_submissions = static_cast<uint32_t>(n);
    }
}

uint32_t logit_rows_of(const Segment& g) {
    return g.mode == LogitsMode::All ? g.n_tokens : g.mode == LogitsMode::Last ? 1 : 0;
}

// Per-architecture steps of a layer (model::ModelConfig's architecture features). Each records
// its kernels and the barrier after them.

// qwen3, gemma3: Q and K RMS-normalized per head ([T][heads][head_dim] rows of head_dim), in place.
void qk_norm(const Kernels& K, vk::CommandStream& cs, const model::ModelConfig& cfg, const DeviceLayer& L,
             const vk::BufferRange& q, const vk::BufferRange& k, uint32_t T) {
    K.rms_norm(cs, q, L.attn_q_norm.range(), q, cfg.head_dim, T * cfg.n_head, cfg.rms_eps);
    K.rms_norm(cs, k, L.attn_k_norm.range(), k, cfg.head_dim, T * cfg.n_head_kv, cfg.rms_eps);
    cs.barrier();
}

// The rope factor table of a session's rows (empty: none): Llama 3.1's rope_freqs, YaRN's, or
// LongRoPE's long table when the session's context exceeds the original one, else its short one
// (llama.cpp's rule: one table per session, so cached keys never change their rotation).
vk::BufferRange rope_factors(const model::ModelConfig& cfg, const DeviceWeights& W, const kv_session& s) {
    if (W.rope_freqs.valid()) return W.rope_freqs.range();
    if (W.rope_yarn.valid()) return W.rope_yarn.range();
    if (W.rope_factors_long.valid())
        return s.n_ctx > cfg.n_ctx_orig ? W.rope_factors_long.range() : W.rope_factors_short.range();
    return {};
}

// X += post_norm(Y) (gemma's norms after attention and feed-forward), or X += Y without one.
// Y: [T][n_embd], normalized in place.
void add_residual(const Kernels& K, vk::CommandStream& cs, const model::ModelConfig& cfg,
                  const DeviceTensor& post_norm, const vk::BufferRange& x, const vk::BufferRange& y, uint32_t T) {
    if (post_norm.valid()) {
        K.rms_norm(cs, y, post_norm.range(), y, cfg.n_embd, T, cfg.rms_eps);
        cs.barrier();
    }
    K.add(cs, x, y, x, T * cfg.n_embd);
    cs.barrier();
}

}  // namespace

bool rows_bindable(const kv_model& m) {
    uint64_t align = m.runtime->device->limits().minStorageBufferOffsetAlignment;
    const auto& c = m.config();
    return align == 0 || ((uint64_t(c.q_dim()) * 4) % align == 0 && (uint64_t(c.kv_dim()) * 4) % align == 0);
}

void run_pass(kv_model& m, PassScratch& sc, std::vector<Segment>& segs) {
    const auto& cfg = m.config();
    const auto& W = m.weights;
    const Kernels& K = *m.kernels;
    const WeightKernels& WK = *m.weight_kernels;
    const AttentionKernels& A = *m.attention;
    vk::CommandStream& cs = *sc.cs;
    const uint32_t E = cfg.n_embd, QD = cfg.q_dim(), KVD = cfg.kv_dim(), F = cfg.n_ff, V = cfg.n_vocab;
    KV_CHECK(!segs.empty());
    const bool single = segs.size() == 1;
    if (!single) KV_CHECK(rows_bindable(m));

    // Rows: segment i occupies [row0[i], row0[i] + n_tokens); its logits rows start at head0[i].
    std::vector<uint32_t> row0(segs.size()), head0(segs.size());
    uint32_t T = 0, head_rows = 0;
    bool head_is_x = true;  // the head's input rows are exactly X's rows, in order
    for (size_t i = 0; i < segs.size(); ++i) {
        const Segment& g = segs[i];
        KV_CHECK(g.n_tokens > 0 && g.session->model == &m);
        row0[i] = T;
        head0[i] = head_rows;
        T += g.n_tokens;
        head_rows += logit_rows_of(g);
        if (g.mode != LogitsMode::All && !(g.mode == LogitsMode::Last && g.n_tokens == 1)) head_is_x = false;
    }
    KV_CHECK(T <= sc.rows && head_rows <= sc.logit_rows);
    {
        uint32_t* ids = static_cast<uint32_t*>(sc.ids->mapped());
        for (size_t i = 0; i < segs.size(); ++i)
            std::memcpy(ids + row0[i], segs[i].session->tokens.data() + segs[i].pos0, size_t(segs[i].n_tokens) * 4);
        sc.ids->flush(0, uint64_t(T) * 4);
    }

    auto X = rows_of(sc.x, 0, T, E), H = rows_of(sc.h, 0, T, E);
    auto Q = rows_of(sc.q, 0, T, QD), Kb = rows_of(sc.k, 0, T, KVD);
    auto Vb = rows_of(sc.v, 0, T, KVD), O = rows_of(sc.attn, 0, T, QD);
    auto G = rows_of(sc.gate, 0, T, F), U = rows_of(sc.up, 0, T, F);
    auto ids = rows_of(sc.ids, 0, T, 1);
    std::vector<vk::BufferRange> freqs(segs.size());
    for (size_t i = 0; i < segs.size(); ++i) freqs[i] = rope_factors(cfg, W, *segs[i].session);

    // Per-segment parameters of RoPE and attention.
    std::vector<RopeParams> rq(segs.size()), rk(segs.size());
    std::vector<AttentionParams> ap(segs.size());
    for (size_t i = 0; i < segs.size(); ++i) {
        const kv_session& s = *segs[i].session;
        RopeParams& r = rq[i];
        r.n_tokens = segs[i].n_tokens;
        r.n_heads = cfg.n_head;
        r.head_dim = cfg.head_dim;
        r.n_rot = cfg.n_rot;
        r.pos0 = segs[i].pos0;
        r.freq_base = cfg.rope_freq_base;  // per layer below
        r.freq_scale = cfg.rope_freq_scale;
        r.neox = cfg.rope_type == model::RopeType::Neox;
        rk[i] = r;
        rk[i].n_heads = cfg.n_head_kv;
        AttentionParams& a = ap[i];
        a.n_tokens = segs[i].n_tokens;
        a.pos0 = segs[i].pos0;
        a.n_head = cfg.n_head;
        a.n_head_kv = cfg.n_head_kv;
        a.head_dim = cfg.head_dim;
        a.page_size = s.page_size;
        a.kv_type = s.kv_type;
        a.scale = cfg.attention_scale();
        a.softcap = cfg.attn_softcap;
        a.sinks = s.sinks;
        a.sink_pages = s.sink_pages;
        a.ring_pages = s.ring_pages;
    }

    Profile* prof = single ? segs[0].session->profile.get() : nullptr;
    auto mark = [&](const char* label) {
        if (prof) prof->mark(cs, label);
    };
    auto t_record = Clock::now();
    const BudgetPass bp(m, cs, prof != nullptr, T, head_rows > 0);
    const uint64_t submissions0 = cs.submissions();
    cs.begin();
    if (prof) prof->begin(cs);
    for (const Segment& g : segs) {  // copy-on-write, before any write
        if (g.copies) g.session->pool->record_copies(cs, *g.copies);
        if (g.window_copies && g.session->window_pool) g.session->window_pool->record_copies(cs, *g.window_copies);
    }
    WK.get_rows(cs, W.token_embd.data, W.token_embd.type, W.token_embd.rows, E, ids, T, X);
    cs.barrier();
    if (cfg.embd_scale != 1.f) {  // gemma: embeddings times sqrt(n_embd)
        K.scale(cs, X, X, T * E, cfg.embd_scale);
        cs.barrier();
    }
    // The input of the matmuls after an RMS norm of X: for one row, X itself with the norm fused
    // into the matvecs (no rms_norm pass, no barrier); for more, H = rms_norm(X).
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
        bp.layer_start(cs, l);
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
        if (cfg.has_qk_norm) qk_norm(K, cs, cfg, L, Q, Kb, T);
        const uint32_t model_window = cfg.sliding_window.empty() ? 0 : cfg.sliding_window[l];
        for (size_t i = 0; i < segs.size(); ++i) {
            rq[i].freq_base = rk[i].freq_base = cfg.rope_base(l);
            rq[i].freq_scale = rk[i].freq_scale = cfg.rope_scale(l);
            rq[i].mscale = rk[i].mscale = cfg.rope_scaled(l) ? cfg.rope_mscale : 1.f;
            const vk::BufferRange f = cfg.rope_scaled(l) ? freqs[i] : vk::BufferRange{};
            const uint32_t n = segs[i].n_tokens;
            A.rope(cs, rows_of(sc.q, row0[i], n, QD), f, rq[i]);
            A.rope(cs, rows_of(sc.k, row0[i], n, KVD), f, rk[i]);
            const uint32_t w = segs[i].session->window;
            ap[i].window = w && model_window ? std::min(w, model_window) : std::max(w, model_window);
        }
        cs.barrier();
        mark("bias+rope");
        // A session's K/V of this layer: in its windowed layer group's pages if the layer is one
        // of them, else in its (global) pages.
        auto pool_of = [l](const kv_session& s) -> const KvPool& {
            return s.window_pool && s.window_pool->holds(l) ? *s.window_pool : *s.pool;
        };
        auto table_of = [l](const kv_session& s) -> const vk::Buffer& {
            return s.window_pool && s.window_pool->holds(l) ? s.window_block_table : s.block_table;
        };
        for (size_t i = 0; i < segs.size(); ++i) {
            const kv_session& s = *segs[i].session;
            const uint32_t n = segs[i].n_tokens;
            A.kv_write(cs, rows_of(sc.k, row0[i], n, KVD), rows_of(sc.v, row0[i], n, KVD), vk::whole(pool_of(s).k(l)),
                       vk::whole(pool_of(s).v(l)), vk::whole(table_of(s)), ap[i]);
        }
        cs.barrier();
        mark("kv_write");
        for (size_t i = 0; i < segs.size(); ++i) {
            const kv_session& s = *segs[i].session;
            const uint32_t n = segs[i].n_tokens;
            A.attention(cs, rows_of(sc.q, row0[i], n, QD), vk::whole(pool_of(s).k(l)), vk::whole(pool_of(s).v(l)),
                        vk::whole(table_of(s)), rows_of(sc.attn, row0[i], n, QD), ap[i], vk::whole(s.attn_scratch));
        }
        cs.barrier();
        mark("attention");
        if (L.bo.valid() || L.post_attn_norm.valid()) {
            WK.matmul(cs, L.wo.data, L.wo.type, E, QD, O, H, T);
            cs.barrier();
            if (L.bo.valid()) {
                K.add(cs, H, L.bo.range(), H, T * E, E);
                cs.barrier();
            }
            add_residual(K, cs, cfg, L.post_attn_norm, X, H, T);
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
        if (cfg.ffn_act == model::FfnAct::Silu && !L.post_ffn_norm.valid()) {
            MatmulFusion ffn;  // X += Wdown (silu(G) * U)
            ffn.accumulate = true;
            ffn.glu_up = U;
            WK.matmul(cs, L.ffn_down.data, L.ffn_down.type, E, F, G, X, T, ffn);
            cs.barrier();
        } else {  // X += post_norm(Wdown (act(G) * U))
            if (cfg.ffn_act == model::FfnAct::GeluTanh)
                K.gelu_mul(cs, G, U, G, T * F);
            else
                K.silu_mul(cs, G, U, G, T * F);
            cs.barrier();
            WK.matmul(cs, L.ffn_down.data, L.ffn_down.type, E, F, G, H, T);
            cs.barrier();
            add_residual(K, cs, cfg, L.post_ffn_norm, X, H, T);
        }
        mark("matmul down");
        // Later layers record while the GPU runs the earlier ones (CommandStream::flush); with
        // a GPU budget, the cuts keep each submission within it.
        bp.layer_end(cs, l);
    }

    if (head_rows == 0) {
        if (segs[0].hidden) {
            KV_CHECK(single);
            K.rms_norm(cs, X, W.output_norm.range(), H, E, T, cfg.rms_eps);
            cs.barrier();  // also orders the h rows before a later transfer reads them
        }
        mark("other");
        if (prof) prof->submitted(ms_since(t_record));
        cs.submit_and_wait();
        if (prof) prof->collect(cs, T);
        bp.collect(cs, false);
        count_submissions(segs, cs.submissions() - submissions0);
        for (const Segment& g : segs) ++g.session->forward_passes;
        return;
    }
    bp.head(cs, false);

    // Output head over the wanted rows: X itself, or those rows gathered into H.
    vk::BufferRange src = rows_of(sc.x, 0, head_rows, E);
    if (!head_is_x) {
        for (size_t i = 0; i < segs.size(); ++i) {
            const uint32_t n = logit_rows_of(segs[i]);
            if (n) cs.copy(rows_of(sc.x, row0[i] + segs[i].n_tokens - n, n, E), rows_of(sc.h, head0[i], n, E));
        }
        cs.barrier();
        src = rows_of(sc.h, 0, head_rows, E);
    }
    const DeviceTensor& out = W.logits_matrix();
    auto LG = rows_of(sc.logits, 0, head_rows, V);
    MatmulFusion out_norm;
    vk::BufferRange head_in = src;
    if (head_rows == 1) {
        out_norm.norm_weight = W.output_norm.range();
        out_norm.norm_eps = cfg.rms_eps;
    } else {
        // X is free now (the head is its last reader); the gathered rows may be in H.
        head_in = head_is_x ? rows_of(sc.h, 0, head_rows, E) : rows_of(sc.x, 0, head_rows, E);
        K.rms_norm(cs, src, W.output_norm.range(), head_in, E, head_rows, cfg.rms_eps);
        cs.barrier();
    }
    WK.matmul(cs, out.data, out.type, V, E, head_in, LG, head_rows, out_norm);
    cs.barrier();
    if (cfg.final_softcap > 0) {  // gemma: logits -> cap * tanh(logits / cap)
        K.softcap(cs, LG, LG, head_rows * V, cfg.final_softcap);
        cs.barrier();
    }
    mark("output head");
    // Each segment's logits rows into its session's logits buffer (already there for a pass on
    // the session's own scratch), then its argmax and host copy.
    for (size_t i = 0; i < segs.size(); ++i) {
        const kv_session& s = *segs[i].session;
        const uint32_t n = logit_rows_of(segs[i]);
        if (n && sc.logits != &s.logits) cs.copy(rows_of(sc.logits, head0[i], n, V), rows_of(&s.logits, 0, n, V));
    }
    if (!single) cs.barrier();
    const uint64_t align = m.runtime->device->limits().minStorageBufferOffsetAlignment;
    bool unaligned_copy = false;
    for (size_t i = 0; i < segs.size(); ++i) {
        const kv_session& s = *segs[i].session;
        const uint32_t n = logit_rows_of(segs[i]);
        if (!n || !s.sampler->gpu_greedy()) continue;
        const uint32_t first = sc.logits == &s.logits ? head0[i] : 0;
        vk::BufferRange last = rows_of(&s.logits, first + n - 1, 1, V);
        if (align && last.offset % align) {
            // Eval's last row may start at an offset no binding can have (an odd vocabulary):
            // argmax reads a copy in the session's h instead (at least n_vocab floats wide).
            cs.copy(last, rows_of(&s.h, 0, 1, V));
            unaligned_copy = true;
        }
    }
    if (unaligned_copy) cs.barrier();
    for (size_t i = 0; i < segs.size(); ++i) {
        const kv_session& s = *segs[i].session;
        const uint32_t n = logit_rows_of(segs[i]);
        if (!n || !s.sampler->gpu_greedy()) continue;
        const uint32_t first = sc.logits == &s.logits ? head0[i] : 0;
        vk::BufferRange last = rows_of(&s.logits, first + n - 1, 1, V);
        if (align && last.offset % align) last = rows_of(&s.h, 0, 1, V);
        A.argmax(cs, last, vk::whole(s.argmax_out), V);
    }
    cs.barrier();
    for (size_t i = 0; i < segs.size(); ++i) {
        const kv_session& s = *segs[i].session;
        const uint32_t n = logit_rows_of(segs[i]);
        if (!n) continue;
        const uint64_t argmax_at = uint64_t(s.max_logit_rows) * V * 4;
        if (s.sampler->gpu_greedy()) cs.copy({s.argmax_out.handle(), 0, 4}, {s.readback.handle(), argmax_at, 4});
        const uint32_t first = sc.logits == &s.logits ? head0[i] : 0;
        if (segs[i].host_logits) cs.copy(rows_of(&s.logits, first, n, V), rows_of(&s.readback, 0, n, V));
    }
    cs.host_barrier();
    mark("sampling");
    bp.head(cs, true);
    if (prof) prof->submitted(ms_since(t_record));
    const uint64_t submitted = cs.submissions();
    try {
        cs.submit_and_wait();
    } catch (...) {
        if (cs.submissions() != submitted)  // the logits part ran, perhaps
            for (const Segment& g : segs)
                if (logit_rows_of(g)) ++g.session->logits_passes;
        throw;
    }
    if (prof) prof->collect(cs, T);
    bp.collect(cs, true);
    count_submissions(segs, cs.submissions() - submissions0);
    for (size_t i = 0; i < segs.size(); ++i) {
        kv_session& s = *segs[i].session;
        ++s.forward_passes;
        const uint32_t n = logit_rows_of(segs[i]);
        if (!n) continue;
        ++s.logits_passes;
        s.has_logits = true;
        s.logits_row = (sc.logits == &s.logits ? head0[i] : 0) + n - 1;
        const bool gpu_argmax = s.sampler->gpu_greedy();
        s.next_token_valid = gpu_argmax;
        if (gpu_argmax) {
            const uint64_t argmax_at = uint64_t(s.max_logit_rows) * V * 4;
            s.readback.invalidate(argmax_at, 4);
            std::memcpy(&s.next_token, static_cast<const char*>(s.readback.mapped()) + argmax_at, 4);
        }
        s.host_logits_valid = false;
        if (segs[i].host_logits) {
            s.readback.invalidate(0, uint64_t(n) * V * 4);
            const float* rb = static_cast<const float*>(s.readback.mapped());
            s.host_logits.assign(rb + uint64_t(n - 1) * V, rb + uint64_t(n) * V);
            s.host_logits_valid = true;
        }
    }
}

}  // namespace kv::engine
