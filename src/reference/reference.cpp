#include "reference/reference.h"

#include <cmath>

#include "common/error.h"
#include "model/ggml_types.h"

namespace kv::reference {

namespace {

// Every element of `t` as float32 (empty for an absent optional tensor).
std::vector<float> dequantize(const model::GgufFile& file, const model::GgufTensorInfo* t) {
    if (!t) return {};
    const uint64_t row = t->ne[0];
    const uint64_t rows = t->elements() / row;
    const uint64_t rb = model::row_bytes(t->type, row);
    std::vector<float> out(t->elements());
    const uint8_t* src = file.tensor_data(*t);
    for (uint64_t r = 0; r < rows; ++r)
        model::dequantize_row(t->type, src + r * rb, out.data() + r * row,
                              static_cast<int64_t>(row));
    return out;
}

const float* opt(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

}  // namespace

std::unique_ptr<ReferenceModel> ReferenceModel::load(const model::GgufFile& file) {
    model::ModelDesc desc = model::describe_model(file);
    std::unique_ptr<ReferenceModel> m(new ReferenceModel());
    m->config_ = desc.config;
    const model::ModelTensors& t = desc.tensors;
    m->token_embd_ = dequantize(file, t.token_embd);
    m->output_norm_ = dequantize(file, t.output_norm);
    if (!desc.config.tied_output) m->output_ = dequantize(file, t.output);
    m->rope_freqs_ = dequantize(file, t.rope_freqs);
    m->rope_short_ = dequantize(file, t.rope_factors_short);
    m->rope_long_ = dequantize(file, t.rope_factors_long);
    m->layers_.resize(desc.config.n_layer);
    for (uint32_t l = 0; l < desc.config.n_layer; ++l) {
        const model::LayerTensors& s = t.layers[l];
        LayerWeights& d = m->layers_[l];
        d.attn_norm = dequantize(file, s.attn_norm);
        if (s.wqkv) {  // fused (phi3): rows of Q, then K, then V
            const std::vector<float> qkv = dequantize(file, s.wqkv);
            const size_t q = size_t(desc.config.q_dim()) * desc.config.n_embd;
            const size_t kv = size_t(desc.config.kv_dim()) * desc.config.n_embd;
            d.wq.assign(qkv.begin(), qkv.begin() + q);
            d.wk.assign(qkv.begin() + q, qkv.begin() + q + kv);
            d.wv.assign(qkv.begin() + q + kv, qkv.end());
        } else {
            d.wq = dequantize(file, s.wq);
            d.wk = dequantize(file, s.wk);
            d.wv = dequantize(file, s.wv);
        }
        d.wo = dequantize(file, s.wo);
        d.bq = dequantize(file, s.bq);
        d.bk = dequantize(file, s.bk);
        d.bv = dequantize(file, s.bv);
        d.bo = dequantize(file, s.bo);
        d.ffn_norm = dequantize(file, s.ffn_norm);
        if (desc.config.fused_gate_up) {  // fused (phi3): rows of the gate, then of up
            const std::vector<float> gu = dequantize(file, s.ffn_up);
            const size_t half = gu.size() / 2;
            d.ffn_gate.assign(gu.begin(), gu.begin() + half);
            d.ffn_up.assign(gu.begin() + half, gu.end());
        } else {
            d.ffn_gate = dequantize(file, s.ffn_gate);
            d.ffn_up = dequantize(file, s.ffn_up);
        }
        d.ffn_down = dequantize(file, s.ffn_down);
        d.attn_q_norm = dequantize(file, s.attn_q_norm);
        d.attn_k_norm = dequantize(file, s.attn_k_norm);
        d.post_attn_norm = dequantize(file, s.post_attn_norm);
        d.post_ffn_norm = dequantize(file, s.post_ffn_norm);
    }
    return m;
}

const float* ReferenceModel::rope_factors(uint32_t n_ctx) const {
    if (!rope_freqs_.empty()) return rope_freqs_.data();
    if (config_.rope_yarn) return config_.yarn_factors.data();
    if (!rope_long_.empty()) return n_ctx > config_.n_ctx_orig ? rope_long_.data() : rope_short_.data();
    return nullptr;
}

uint32_t kv_quant_block(uint32_t head_dim) { return head_dim < 32 ? head_dim : 32; }

void round_kv(model::GgmlType type, float* x, size_t n, uint32_t block) {
    using model::GgmlType;
    switch (type) {
        case GgmlType::F32: return;
        case GgmlType::F16:
        case GgmlType::BF16: {
            std::vector<uint8_t> buf(model::row_bytes(type, static_cast<int64_t>(n)));
            model::quantize_row(type, x, buf.data(), static_cast<int64_t>(n));
            model::dequantize_row(type, buf.data(), x, static_cast<int64_t>(n));
            return;
        }
        case GgmlType::Q8_0:
        case GgmlType::Q4_0: break;
        default: {
            const model::TypeTraits* t = model::type_traits(type);
            fail(KV_ERR_UNSUPPORTED, "round_kv: KV cache type %s is not supported",
                 t ? t->name : "unknown");
        }
    }
    if (block == 0 || n % block != 0 || (type == GgmlType::Q4_0 && block % 2 != 0))
        fail(KV_ERR_INVALID_ARGUMENT, "round_kv: %zu values do not split into blocks of %u", n,
             block);
    // The operations of model::quantize_row's q_q8_0 / q_q4_0 and of deq_q8_0 / deq_q4_0, in
    // the same order, over `block` values instead of 32.
    for (float* b = x; b < x + n; b += block) {
        if (type == GgmlType::Q8_0) {
            float amax = 0.0f;
            for (uint32_t j = 0; j < block; ++j) amax = std::fmax(amax, std::fabs(b[j]));
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const float dh = model::fp16_to_fp32(model::fp32_to_fp16(d));
            for (uint32_t j = 0; j < block; ++j) {
                float v = std::round(b[j] * id);
                if (!(v >= -127.0f)) v = v != v ? 0.0f : -127.0f;  // non-finite input only
                if (v > 127.0f) v = 127.0f;
                b[j] = static_cast<int8_t>(v) * dh;
            }
        } else {
            float amax = 0.0f, max = 0.0f;
            for (uint32_t j = 0; j < block; ++j) {
                if (amax < std::fabs(b[j])) {
                    amax = std::fabs(b[j]);
                    max = b[j];
                }
            }
            const float d = max / -8.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const float dh = model::fp16_to_fp32(model::fp32_to_fp16(d));
            for (uint32_t j = 0; j < block; ++j) {
                float t = b[j] * id + 8.5f;  // ggml: MIN(15, (int8_t)(x*id + 8.5f))
                if (!(t >= 0.0f)) t = 0.0f;  // non-finite input only
                if (t > 15.0f) t = 15.0f;
                b[j] = (static_cast<int>(t) - 8) * dh;
            }
        }
    }
}

ReferenceSession::ReferenceSession(const ReferenceModel& model, model::GgmlType kv_type, uint32_t n_ctx)
    : model_(model),
      kv_type_(kv_type),
      n_ctx_(n_ctx ? n_ctx : model.config().n_ctx_train),
      k_(model.config().n_layer),
      v_(model.config().n_layer) {
    using model::GgmlType;
    const model::TypeTraits* t = model::type_traits(kv_type);
    if (kv_type != GgmlType::F32 && kv_type != GgmlType::F16 && kv_type != GgmlType::BF16 &&
        kv_type != GgmlType::Q8_0 && kv_type != GgmlType::Q4_0)
        fail(KV_ERR_UNSUPPORTED,
             "reference KV cache type %s is not supported (f32, f16, bf16, q8_0, q4_0)",
             t ? t->name : "unknown");
    const uint32_t hd = model.config().head_dim;
    if ((kv_type == GgmlType::Q8_0 || kv_type == GgmlType::Q4_0) && hd % 32 != 0 && hd != 2 &&
        hd != 4 && hd != 8 && hd != 16)
        fail(KV_ERR_UNSUPPORTED,
             "KV cache type %s needs head_dim (%u) to be a multiple of 32 or 2, 4, 8 or 16",
             t->name, hd);
}

void ReferenceSession::store_kv(float* x) const {
    if (kv_type_ == model::GgmlType::F32) return;
    const model::ModelConfig& c = model_.config();
    const uint32_t block = kv_quant_block(c.head_dim);
    for (uint32_t h = 0; h < c.n_head_kv; ++h)
        round_kv(kv_type_, x + size_t(h) * c.head_dim, c.head_dim, block);
}

void ReferenceSession::truncate(uint32_t n) {
    if (n > n_past_)
        fail(KV_ERR_INVALID_ARGUMENT, "truncate to %u positions, but the session holds %u", n,
             n_past_);
    const size_t kv_dim = model_.config().kv_dim();
    for (auto& k : k_) k.resize(size_t(n) * kv_dim);
    for (auto& v : v_) v.resize(size_t(n) * kv_dim);
    n_past_ = n;
}

const float* ReferenceSession::key(uint32_t layer, uint32_t pos) const {
    KV_CHECK(layer < k_.size() && pos < n_past_);
    return k_[layer].data() + size_t(pos) * model_.config().kv_dim();
}

const float* ReferenceSession::value(uint32_t layer, uint32_t pos) const {
    KV_CHECK(layer < v_.size() && pos < n_past_);
    return v_[layer].data() + size_t(pos) * model_.config().kv_dim();
}

std::vector<float> ReferenceSession::prefill(const int32_t* ids, size_t n, bool all_logits) {
    const model::ModelConfig& c = model_.config();
    if (n == 0 || !ids) fail(KV_ERR_INVALID_ARGUMENT, "prefill needs at least one token");
    for (size_t t = 0; t < n; ++t)
        if (ids[t] < 0 || uint32_t(ids[t]) >= c.n_vocab)
            fail(KV_ERR_BAD_TOKEN, "token id %d at index %zu is outside the vocabulary [0, %u)",
                 ids[t], t, c.n_vocab);

    const size_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, HD = c.head_dim;
    const uint32_t pos0 = n_past_;
    const float scale = c.attention_scale();
    const float* freq_factors = model_.rope_factors(n_ctx_);

    // Residual stream of every new token: [n][E].
    std::vector<float> x(n * E);
    for (size_t t = 0; t < n; ++t) {
        const float* row = model_.token_embd().data() + size_t(ids[t]) * E;
        for (size_t i = 0; i < E; ++i) x[t * E + i] = row[i] * c.embd_scale;  // gemma: sqrt(n_embd)
    }

    std::vector<float> h(E), q(Q), attn(Q), o(E), g(F), u(F), down(E);
    for (uint32_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& w = model_.layer(l);
        std::vector<float>& kc = k_[l];
        std::vector<float>& vc = v_[l];
        kc.resize(size_t(pos0 + n) * KV);
        vc.resize(size_t(pos0 + n) * KV);
        const uint32_t window = c.sliding_window[l];
        // Token by token: position p attends to cached positions [lo, p], all already written.
        for (size_t t = 0; t < n; ++t) {
            const uint32_t p = pos0 + static_cast<uint32_t>(t);
            float* xt = x.data() + t * E;
            float* kp = kc.data() + size_t(p) * KV;
            float* vp = vc.data() + size_t(p) * KV;

            // Attention block.
            rms_norm(xt, w.attn_norm.data(), h.data(), E, c.rms_eps);
            matvec(w.wq.data(), opt(w.bq), h.data(), q.data(), E, Q);
            matvec(w.wk.data(), opt(w.bk), h.data(), kp, E, KV);
            matvec(w.wv.data(), opt(w.bv), h.data(), vp, E, KV);
            if (c.has_qk_norm) {  // qwen3, gemma3: per-head RMS norm before rope
                for (uint32_t hh = 0; hh < c.n_head; ++hh)
                    rms_norm(q.data() + hh * HD, w.attn_q_norm.data(), q.data() + hh * HD, HD, c.rms_eps);
                for (uint32_t hh = 0; hh < c.n_head_kv; ++hh)
                    rms_norm(kp + hh * HD, w.attn_k_norm.data(), kp + hh * HD, HD, c.rms_eps);
            }
            const bool scaled = c.rope_scaled(l);  // gemma3's windowed layers: plain rope
            const float* ff = scaled ? freq_factors : nullptr;
            const float ms = scaled ? c.rope_mscale : 1.f;
            for (uint32_t hh = 0; hh < c.n_head; ++hh)
                rope(q.data() + hh * HD, c.n_rot, p, c.rope_type, c.rope_base(l), c.rope_scale(l), ff, ms);
            for (uint32_t hh = 0; hh < c.n_head_kv; ++hh)
                rope(kp + hh * HD, c.n_rot, p, c.rope_type, c.rope_base(l), c.rope_scale(l), ff, ms);
            store_kv(kp);
            store_kv(vp);
            if (kv_hook_) kv_hook_(l, p, kp, vp);
            const uint32_t lo = (window != 0 && p + 1 > window) ? p + 1 - window : 0;
            for (uint32_t hh = 0; hh < c.n_head; ++hh) {
                const size_t kvh = hh / c.n_gqa();  // GQA: query head hh reads KV head kvh
                attend(q.data() + hh * HD, kc.data() + size_t(lo) * KV + kvh * HD,
                       vc.data() + size_t(lo) * KV + kvh * HD, KV, p + 1 - lo, HD, scale,
                       attn.data() + hh * HD, c.attn_softcap);
            }
            matvec(w.wo.data(), opt(w.bo), attn.data(), o.data(), Q, E);
            if (!w.post_attn_norm.empty()) rms_norm(o.data(), w.post_attn_norm.data(), o.data(), E, c.rms_eps);
            for (size_t i = 0; i < E; ++i) xt[i] += o[i];

            // Feed-forward block (SwiGLU or GeGLU).
            rms_norm(xt, w.ffn_norm.data(), h.data(), E, c.rms_eps);
            matvec(w.ffn_gate.data(), nullptr, h.data(), g.data(), E, F);
            matvec(w.ffn_up.data(), nullptr, h.data(), u.data(), E, F);
            if (c.ffn_act == model::FfnAct::GeluTanh)
                geglu(g.data(), u.data(), g.data(), F);
            else
                swiglu(g.data(), u.data(), g.data(), F);
            matvec(w.ffn_down.data(), nullptr, g.data(), down.data(), F, E);
            if (!w.post_ffn_norm.empty()) rms_norm(down.data(), w.post_ffn_norm.data(), down.data(), E, c.rms_eps);
            for (size_t i = 0; i < E; ++i) xt[i] += down[i];
        }
    }
    n_past_ = pos0 + static_cast<uint32_t>(n);

    const size_t V = c.n_vocab;
    if (keep_hidden_) {
        hidden_.assign(n * E, 0.f);
        for (size_t t = 0; t < n; ++t)
            rms_norm(x.data() + t * E, model_.output_norm().data(), hidden_.data() + t * E, E, c.rms_eps);
    }
    const size_t first = all_logits ? 0 : n - 1;
    std::vector<float> logits((n - first) * V);
    for (size_t t = first; t < n; ++t) {
        rms_norm(x.data() + t * E, model_.output_norm().data(), h.data(), E, c.rms_eps);
        float* row = logits.data() + (t - first) * V;
        matvec(model_.output().data(), nullptr, h.data(), row, E, V);
        if (c.final_softcap > 0)  // gemma: logits -> cap * tanh(logits / cap)
            for (size_t i = 0; i < V; ++i)
                row[i] = static_cast<float>(double(c.final_softcap) * std::tanh(double(row[i]) / c.final_softcap));
    }
    return logits;
}

std::vector<float> forward_full(const ReferenceModel& model, const int32_t* ids, size_t n,
                                bool all_logits) {
    ReferenceSession fresh(model);
    return fresh.prefill(ids, n, all_logits);
}

std::vector<int32_t> generate_greedy(const ReferenceModel& model,
                                     const std::vector<int32_t>& prompt, size_t n_gen,
                                     std::vector<std::vector<float>>* step_logits) {
    ReferenceSession s(model);
    std::vector<int32_t> out;
    if (step_logits) step_logits->clear();
    std::vector<float> logits = s.prefill(prompt);
    for (size_t i = 0; i < n_gen; ++i) {
        if (step_logits) step_logits->push_back(logits);
        const int32_t next = argmax(logits.data(), logits.size());
        out.push_back(next);
        if (i + 1 < n_gen) logits = s.decode(next);
    }
    return out;
}

}  // namespace kv::reference
