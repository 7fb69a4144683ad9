#include "model/arch.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "common/error.h"

namespace kv::model {

const char* arch_name(Arch a) {
    switch (a) {
        case Arch::Llama:
            return "llama";
        case Arch::Qwen2:
            return "qwen2";
        case Arch::Qwen3:
            return "qwen3";
        case Arch::Gemma2:
            return "gemma2";
        case Arch::Gemma3:
            return "gemma3";
        case Arch::Phi3:
            return "phi3";
    }
    return "?";
}

const char* rope_type_name(RopeType r) { return r == RopeType::Norm ? "norm" : "neox"; }

std::string shape_string(const GgufTensorInfo& t) {
    std::string s = "[";
    for (uint32_t d = 0; d < std::max<uint32_t>(t.n_dims, 1); ++d) {
        if (d) s += ", ";
        s += std::to_string(t.ne[d]);
    }
    return s + "]";
}

namespace {

std::string shape_string(const std::vector<uint64_t>& ne) {
    std::string s = "[";
    for (size_t d = 0; d < ne.size(); ++d) {
        if (d) s += ", ";
        s += std::to_string(ne[d]);
    }
    return s + "]";
}

const char* type_name(GgmlType t) {
    const TypeTraits* tr = type_traits(t);
    return tr ? tr->name : "unknown";
}

// Reads metadata of one architecture ("<arch>.<key>") with precise errors.
class Keys {
public:
    Keys(const GgufFile& f, std::string prefix) : f_(f), prefix_(std::move(prefix)) {}

    std::string key(const char* k) const { return prefix_ + "." + k; }

    // A required positive 32-bit count.
    uint32_t count(const char* k) const {
        std::string name = key(k);
        std::optional<uint64_t> v = f_.get_uint(name);
        if (!v) fail(KV_ERR_BAD_MODEL, "missing metadata key %s", name.c_str());
        return check_count(name, *v);
    }
    // An optional positive 32-bit count.
    std::optional<uint32_t> opt_count(const char* k) const {
        std::string name = key(k);
        std::optional<uint64_t> v = f_.get_uint(name);
        if (!v) return std::nullopt;
        return check_count(name, *v);
    }
    // An optional float hyper-parameter: finite, and within float range (kernels take f32).
    std::optional<double> opt_float(const char* k) const {
        std::string name = key(k);
        std::optional<double> v = f_.get_float(name);
        if (v && !(std::fabs(*v) <= double(std::numeric_limits<float>::max())))
            fail(KV_ERR_BAD_MODEL, "metadata %s = %g is not a finite 32-bit float", name.c_str(), *v);
        return v;
    }
    // A required positive float hyper-parameter (key named when missing, not finite or <= 0).
    float positive_float(const char* k) const {
        std::optional<double> v = opt_float(k);
        if (!v) fail(KV_ERR_BAD_MODEL, "missing metadata key %s", key(k).c_str());
        if (!(*v > 0)) fail(KV_ERR_BAD_MODEL, "metadata %s = %g must be positive", key(k).c_str(), *v);
        return static_cast<float>(*v);
    }

private:
    static uint32_t check_count(const std::string& name, uint64_t v) {
        if (v == 0 || v > std::numeric_limits<int32_t>::max())
            fail(KV_ERR_BAD_MODEL, "metadata %s = %" PRIu64 " is out of range", name.c_str(), v);
        return static_cast<uint32_t>(v);
    }
    const GgufFile& f_;
    std::string prefix_;
};

// Finds tensors, checking shape and type, and tallies what the model uses.
class TensorChecker {
public:
    explicit TensorChecker(const GgufFile& f) : f_(f) {}

    const GgufTensorInfo* require(const std::string& name, std::vector<uint64_t> shape,
                                  const char* what) {
        const GgufTensorInfo* t = f_.find_tensor(name);
        if (!t)
            fail(KV_ERR_BAD_MODEL, "missing tensor '%s' (%s, expected shape %s)", name.c_str(),
                 what, shape_string(shape).c_str());
        check(*t, shape, what);
        return t;
    }
    const GgufTensorInfo* optional(const std::string& name, std::vector<uint64_t> shape,
                                   const char* what) {
        const GgufTensorInfo* t = f_.find_tensor(name);
        if (t) check(*t, shape, what);
        return t;
    }
    void tally(const GgufTensorInfo* t, ModelConfig& c) {
        if (!t) return;
        c.n_params += t->elements();
        c.weight_bytes += t->bytes;
        WeightTypeUsage& u = usage_[static_cast<uint32_t>(t->type)];
        u.type = t->type;
        u.tensors += 1;
        u.elements += t->elements();
        u.bytes += t->bytes;
    }
    std::vector<WeightTypeUsage> usage() const {
        std::vector<WeightTypeUsage> v;
        for (const auto& kv : usage_) v.push_back(kv.second);
        std::stable_sort(v.begin(), v.end(),
                         [](const WeightTypeUsage& a, const WeightTypeUsage& b) {
                             return a.elements > b.elements;
                         });
        return v;
    }

private:
    static void check(const GgufTensorInfo& t, const std::vector<uint64_t>& shape,
                      const char* what) {
        bool ok = t.n_dims <= 4;
        for (size_t d = 0; d < 4 && ok; ++d) ok = t.ne[d] == (d < shape.size() ? shape[d] : 1);
        if (!ok)
            fail(KV_ERR_BAD_MODEL, "tensor '%s' (%s) has shape %s, expected %s", t.name.c_str(),
                 what, kv::model::shape_string(t).c_str(), shape_string(shape).c_str());
        const TypeTraits* tr = type_traits(t.type);
        if (!tr || !tr->supported)
            fail(KV_ERR_UNSUPPORTED,
                 "tensor '%s' has weight type %s (ggml type %u), which kvulkan cannot dequantize",
                 t.name.c_str(), type_name(t.type), static_cast<unsigned>(t.type));
    }
    const GgufFile& f_;
    std::map<uint32_t, WeightTypeUsage> usage_;
};

std::string human_count(uint64_t n) {
    char buf[32];
    if (n >= 1000000000ull)
        std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
    else if (n >= 1000000ull)
        std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
    else if (n >= 1000ull)
        std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
    else
        std::snprintf(buf, sizeof buf, "%" PRIu64, n);
    return buf;
}

// YaRN (Peng et al. 2023, as Hugging Face's _compute_yarn_parameters and ggml's rope_yarn): pair
// i of n_rot/2 keeps its frequency where its wavelength is short (i below the correction range),
// is interpolated by the factor where it is long (above it), and ramps linearly in between; the
// per-pair factor divides the angle. The range is [floor(d(beta_fast)), ceil(d(beta_slow))] with
// d(r) = n_rot ln(n_ctx_orig / (2 pi r)) / (2 ln base), clamped to [0, n_rot - 1].
void yarn(ModelConfig& c, const Keys& k, double factor) {
    c.rope_yarn = true;
    c.rope_freq_scale = 1.f;
    c.n_ctx_orig = k.count("rope.scaling.original_context_length");
    const double beta_fast = k.opt_float("rope.scaling.yarn_beta_fast").value_or(32.0);
    const double beta_slow = k.opt_float("rope.scaling.yarn_beta_slow").value_or(1.0);
    if (!(beta_fast > 0) || !(beta_slow > 0))
        fail(KV_ERR_BAD_MODEL, "%s and %s must be positive", k.key("rope.scaling.yarn_beta_fast").c_str(),
             k.key("rope.scaling.yarn_beta_slow").c_str());
    if (std::optional<double> af = k.opt_float("rope.scaling.attn_factor")) {
        if (!(*af > 0)) fail(KV_ERR_BAD_MODEL, "%s = %g must be positive", k.key("rope.scaling.attn_factor").c_str(), *af);
        c.rope_mscale = static_cast<float>(*af);
    } else {
        c.rope_mscale = static_cast<float>(factor > 1 ? 0.1 * std::log(factor) + 1.0 : 1.0);
    }
    const double n = c.n_rot, base = c.rope_freq_base;
    auto corr = [&](double rot) { return n * std::log(double(c.n_ctx_orig) / (rot * 2 * 3.14159265358979323846)) / (2 * std::log(base)); };
    const double d_fast = corr(beta_fast), d_slow = corr(beta_slow);
    if (!std::isfinite(d_fast) || !std::isfinite(d_slow))  // e.g. a rope base of 1
        fail(KV_ERR_BAD_MODEL, "YaRN: %s = %g and %s = %u give no correction range",
             k.key("rope.freq_base").c_str(), base, k.key("rope.scaling.original_context_length").c_str(),
             c.n_ctx_orig);
    const double low = std::max(0.0, std::floor(d_fast));
    const double high = std::min(n - 1, std::ceil(d_slow));
    c.yarn_factors.resize(c.n_rot / 2);
    for (uint32_t i = 0; i < c.n_rot / 2; ++i) {
        const double ramp = std::clamp((double(i) - low) / std::max(0.001, high - low), 0.0, 1.0);
        const double extrapolate = 1.0 - ramp;  // 1: the original frequency; 0: divided by factor
        c.yarn_factors[i] = static_cast<float>(1.0 / ((1.0 - extrapolate) / factor + extrapolate));
    }
}

// The features that set architectures apart (ModelConfig's "Architecture features"), after the
// common hyper-parameters are read.
void arch_features(ModelConfig& c, const Keys& k, const GgufFile& file) {
    if (c.arch == Arch::Qwen3 || c.arch == Arch::Gemma3) c.has_qk_norm = true;
    if (c.arch != Arch::Gemma2 && c.arch != Arch::Gemma3) return;
    c.has_post_norms = true;
    c.ffn_act = FfnAct::GeluTanh;
    c.embd_scale = static_cast<float>(std::sqrt(double(c.n_embd)));
    // Queries are scaled by 1 / sqrt(query_pre_attn_scalar), which GGUF files do not carry: it
    // is head_dim in every published Gemma 2/3 config except the 27B ones, where it is
    // n_embd / n_head (gemma-2-27b: 4608 / 32 = 144; gemma-3-27b: 5376 / 32 = 168).
    const bool is_27b = (c.arch == Arch::Gemma2 && c.n_layer == 46 && c.n_embd == 4608 && c.n_head == 32) ||
                        (c.arch == Arch::Gemma3 && c.n_layer == 62 && c.n_embd == 5376 && c.n_head == 32);
    if (is_27b) c.attn_scale = static_cast<float>(1.0 / std::sqrt(double(c.n_embd / c.n_head)));
    if (c.arch == Arch::Gemma2) {
        c.attn_softcap = k.positive_float("attn_logit_softcapping");
        c.final_softcap = k.positive_float("final_logit_softcapping");
    } else {
        if (file.find(k.key("final_logit_softcapping")))
            c.final_softcap = k.positive_float("final_logit_softcapping");
        // Windowed layers rotate with base 10000 and no scaling (the model's rope_local_base_freq);
        // global ones with <arch>.rope.freq_base and the file's scaling.
        c.rope_freq_base_swa = 10000.f;
        c.rope_freq_scale_swa = 1.f;
    }
}

}  // namespace

std::string ModelConfig::weight_types_summary() const {
    std::string s;
    for (const WeightTypeUsage& u : weight_types) {
        if (!s.empty()) s += "; ";
        s += format("%s: %u tensor%s, %s params, %s bytes", type_name(u.type), u.tensors,
                    u.tensors == 1 ? "" : "s", human_count(u.elements).c_str(),
                    human_count(u.bytes).c_str());
    }
    return s;
}

std::string ModelConfig::summary() const {
    std::string s = format(
        "%s, %u layers, n_embd %u, %u heads (%u KV, head_dim %u), ffn %u, vocab %u, ctx %u, "
        "rope %s n_rot %u base %g scale %g%s, rms_eps %g, %s output%s, %s params",
        arch_name(arch), n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train,
        rope_type_name(rope_type), n_rot, double(rope_freq_base), double(rope_freq_scale),
        has_rope_freqs ? " +freq factors" : "", double(rms_eps), tied_output ? "tied" : "untied",
        has_qkv_bias ? ", QKV bias" : "", human_count(n_params).c_str());
    uint32_t w = sliding_window.empty()
                     ? 0
                     : *std::max_element(sliding_window.begin(), sliding_window.end());
    if (w) s += format(", sliding window %u", w);
    if (has_qk_norm) s += ", Q/K norm";
    if (has_post_norms) s += ", post-norms";
    if (ffn_act == FfnAct::GeluTanh) s += ", GeGLU";
    if (attn_softcap > 0) s += format(", attention soft-cap %g", double(attn_softcap));
    if (final_softcap > 0) s += format(", final soft-cap %g", double(final_softcap));
    if (rope_yarn) s += format(", YaRN (original context %u, attention factor %g)", n_ctx_orig, double(rope_mscale));
    if (rope_longrope) s += format(", LongRoPE (original context %u, attention factor %g)", n_ctx_orig, double(rope_mscale));
    if (fused_gate_up) s += ", fused gate/up";
    return s;
}

ModelDesc describe_model(const GgufFile& file) {
    std::optional<std::string_view> arch_sv = file.get_string("general.architecture");
    if (!arch_sv) fail(KV_ERR_BAD_MODEL, "missing metadata key general.architecture");
    std::string arch_str(*arch_sv);

    ModelDesc desc;
    ModelConfig& c = desc.config;
    if (arch_str == "llama") {
        c.arch = Arch::Llama;
        c.rope_type = RopeType::Norm;
    } else if (arch_str == "qwen2") {
        c.arch = Arch::Qwen2;
        c.rope_type = RopeType::Neox;
    } else if (arch_str == "qwen3") {
        c.arch = Arch::Qwen3;
        c.rope_type = RopeType::Neox;
    } else if (arch_str == "gemma2") {
        c.arch = Arch::Gemma2;
        c.rope_type = RopeType::Neox;
    } else if (arch_str == "gemma3") {
        c.arch = Arch::Gemma3;
        c.rope_type = RopeType::Neox;
    } else if (arch_str == "phi3") {
        c.arch = Arch::Phi3;
        c.rope_type = RopeType::Neox;
    } else {
        fail(KV_ERR_UNSUPPORTED,
             "unsupported model architecture '%s' (supported: llama, qwen2, qwen3, gemma2, gemma3, phi3)",
             arch_str.c_str());
    }
    const bool gemma = c.arch == Arch::Gemma2 || c.arch == Arch::Gemma3;
    if (std::optional<std::string_view> n = file.get_string("general.name"))
        c.name = std::string(*n);

    const Keys k(file, arch_str);
    c.n_embd = k.count("embedding_length");
    c.n_layer = k.count("block_count");
    c.n_ff = k.count("feed_forward_length");
    c.n_ctx_train = k.count("context_length");
    c.n_head = k.count("attention.head_count");
    c.n_head_kv = k.opt_count("attention.head_count_kv").value_or(c.n_head);

    if (std::optional<uint64_t> experts = file.get_uint(k.key("expert_count"));
        experts && *experts > 0)
        fail(KV_ERR_UNSUPPORTED, "mixture-of-experts models are not supported (%s = %" PRIu64 ")",
             k.key("expert_count").c_str(), *experts);

    if (c.n_head % c.n_head_kv != 0)
        fail(KV_ERR_BAD_MODEL, "%s = %u is not a multiple of %s = %u",
             k.key("attention.head_count").c_str(), c.n_head,
             k.key("attention.head_count_kv").c_str(), c.n_head_kv);
    if (std::optional<uint32_t> kl = k.opt_count("attention.key_length")) {
        c.head_dim = *kl;
    } else {
        if (c.n_embd % c.n_head != 0)
            fail(KV_ERR_BAD_MODEL, "%s = %u is not divisible by %s = %u",
                 k.key("embedding_length").c_str(), c.n_embd, k.key("attention.head_count").c_str(),
                 c.n_head);
        c.head_dim = c.n_embd / c.n_head;
    }
    if (std::optional<uint32_t> vl = k.opt_count("attention.value_length"); vl && *vl != c.head_dim)
        fail(KV_ERR_UNSUPPORTED, "%s = %u differs from the key length %u: not supported",
             k.key("attention.value_length").c_str(), *vl, c.head_dim);
    if (uint64_t(c.n_head) * c.head_dim > std::numeric_limits<int32_t>::max())
        fail(KV_ERR_BAD_MODEL, "head_count x head_dim (%u x %u) is out of range", c.n_head,
             c.head_dim);

    c.n_rot = k.opt_count("rope.dimension_count").value_or(c.head_dim);
    if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
        fail(KV_ERR_BAD_MODEL, "%s = %u must be even and at most the head dimension %u",
             k.key("rope.dimension_count").c_str(), c.n_rot, c.head_dim);

    if (std::optional<double> base = k.opt_float("rope.freq_base")) {
        if (!(*base > 0))
            fail(KV_ERR_BAD_MODEL, "%s = %g must be positive", k.key("rope.freq_base").c_str(),
                 *base);
        c.rope_freq_base = static_cast<float>(*base);
    }

    // Rope scaling, as llama.cpp reads it: the type defaults to linear; a factor of 0 means none.
    std::string scaling = "linear";
    if (std::optional<std::string_view> st = file.get_string(k.key("rope.scaling.type")))
        scaling = std::string(*st);
    std::optional<double> factor = k.opt_float("rope.scaling.factor");
    if (!factor) factor = k.opt_float("rope.scale_linear");
    const std::string factor_key =
        k.key(file.find(k.key("rope.scaling.factor")) ? "rope.scaling.factor" : "rope.scale_linear");
    double f = factor.value_or(0.0);
    if (f < 0) fail(KV_ERR_BAD_MODEL, "%s = %g must not be negative", factor_key.c_str(), f);
    if (scaling == "yarn") {
        if (f == 0.0) fail(KV_ERR_BAD_MODEL, "missing metadata key %s (YaRN)", k.key("rope.scaling.factor").c_str());
        yarn(c, k, f);
    } else if (scaling == "none" || f == 0.0 || f == 1.0 || scaling == "longrope" || scaling == "su") {
        c.rope_freq_scale = 1.f;  // LongRoPE: the factor tables (below)
    } else if (scaling == "linear") {
        if (!(1.0 / f <= double(std::numeric_limits<float>::max())))
            fail(KV_ERR_BAD_MODEL, "%s = %g is too small: its inverse is not a finite 32-bit float",
                 factor_key.c_str(), f);
        c.rope_freq_scale = static_cast<float>(1.0 / f);
    } else {
        fail(KV_ERR_UNSUPPORTED,
             "rope scaling type '%s' (%s) is not supported (supported: none, linear, yarn, longrope)",
             scaling.c_str(), k.key("rope.scaling.type").c_str());
    }

    std::optional<double> eps = k.opt_float("attention.layer_norm_rms_epsilon");
    if (!eps)
        fail(KV_ERR_BAD_MODEL, "missing metadata key %s",
             k.key("attention.layer_norm_rms_epsilon").c_str());
    if (!(*eps > 0) || *eps > 1)
        fail(KV_ERR_BAD_MODEL, "%s = %g is out of range",
             k.key("attention.layer_norm_rms_epsilon").c_str(), *eps);
    c.rms_eps = static_cast<float>(*eps);

    // Per-layer state is sized by block_count: the file must hold the last block before any of it
    // is allocated (a bogus count of 2^31 would otherwise take gigabytes).
    if (!file.find_tensor(format("blk.%u.attn_norm.weight", c.n_layer - 1)))
        fail(KV_ERR_BAD_MODEL, "missing tensor 'blk.%u.attn_norm.weight' (%s = %u)", c.n_layer - 1,
             k.key("block_count").c_str(), c.n_layer);

    // Sliding window: a scalar for every layer or one entry per layer.
    c.sliding_window.assign(c.n_layer, 0);
    if (const GgufValue* sw = file.find(k.key("attention.sliding_window"))) {
        const std::string key = k.key("attention.sliding_window");
        if (sw->type == GgufType::ARRAY) {
            std::optional<std::vector<int64_t>> v = file.get_int_array(key);
            if (!v || v->size() != c.n_layer)
                fail(KV_ERR_BAD_MODEL, "%s has %zu entries, expected one per layer (%u)",
                     key.c_str(), v ? v->size() : size_t(0), c.n_layer);
            for (uint32_t l = 0; l < c.n_layer; ++l) {
                if ((*v)[l] < 0 || (*v)[l] > std::numeric_limits<int32_t>::max())
                    fail(KV_ERR_BAD_MODEL, "%s[%u] = %" PRId64 " is out of range", key.c_str(), l,
                         (*v)[l]);
                c.sliding_window[l] = static_cast<uint32_t>((*v)[l]);
            }
        } else {
            std::optional<uint64_t> v = file.get_uint(key);
            if (!v || *v > std::numeric_limits<int32_t>::max())
                fail(KV_ERR_BAD_MODEL, "%s is out of range", key.c_str());
            c.sliding_window.assign(c.n_layer, static_cast<uint32_t>(*v));
            // Gemma alternates windowed and global layers; the file gives the window only.
            // gemma2: even layers are windowed; gemma3: five windowed layers, then a global one.
            if (c.arch == Arch::Gemma2)
                for (uint32_t l = 1; l < c.n_layer; l += 2) c.sliding_window[l] = 0;
            if (c.arch == Arch::Gemma3)
                for (uint32_t l = 5; l < c.n_layer; l += 6) c.sliding_window[l] = 0;
        }
    } else if (gemma) {
        fail(KV_ERR_BAD_MODEL, "missing metadata key %s", k.key("attention.sliding_window").c_str());
    }

    arch_features(c, k, file);

    // ---- tensors ----
    TensorChecker tc(file);
    ModelTensors& t = desc.tensors;
    const uint64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;

    const GgufTensorInfo* embd = file.find_tensor("token_embd.weight");
    if (!embd) fail(KV_ERR_BAD_MODEL, "missing tensor 'token_embd.weight' (token embeddings)");
    if (embd->n_dims != 2 || embd->ne[1] == 0 ||
        embd->ne[1] > uint64_t(std::numeric_limits<int32_t>::max()))
        fail(KV_ERR_BAD_MODEL, "tensor 'token_embd.weight' has shape %s, expected [%u, n_vocab]",
             kv::model::shape_string(*embd).c_str(), c.n_embd);
    c.n_vocab = static_cast<uint32_t>(embd->ne[1]);
    if (std::optional<uint64_t> vs = file.get_uint(k.key("vocab_size")); vs && *vs != c.n_vocab)
        fail(KV_ERR_BAD_MODEL, "%s = %" PRIu64 " but token_embd.weight has %u rows",
             k.key("vocab_size").c_str(), *vs, c.n_vocab);
    if (const GgufValue* toks = file.find("tokenizer.ggml.tokens");
        toks && toks->type == GgufType::ARRAY && toks->array.size() != c.n_vocab)
        fail(KV_ERR_BAD_MODEL,
             "tokenizer.ggml.tokens has %zu entries but token_embd.weight has %u rows",
             toks->array.size(), c.n_vocab);
    const uint64_t V = c.n_vocab;

    t.token_embd = tc.require("token_embd.weight", {E, V}, "token embeddings");
    t.output_norm = tc.require("output_norm.weight", {E}, "final norm");
    t.output = tc.optional("output.weight", {E, V}, "output projection");
    c.tied_output = t.output == nullptr;
    if (c.tied_output) t.output = t.token_embd;
    t.rope_freqs = tc.optional("rope_freqs.weight", {c.n_rot / 2}, "rope frequency factors");
    c.has_rope_freqs = t.rope_freqs != nullptr;
    t.rope_factors_short = tc.optional("rope_factors_short.weight", {c.n_rot / 2}, "LongRoPE short factors");
    t.rope_factors_long = tc.optional("rope_factors_long.weight", {c.n_rot / 2}, "LongRoPE long factors");
    if ((t.rope_factors_short != nullptr) != (t.rope_factors_long != nullptr))
        fail(KV_ERR_BAD_MODEL, "missing tensor '%s' (LongRoPE needs both factor tables)",
             t.rope_factors_short ? "rope_factors_long.weight" : "rope_factors_short.weight");
    if (t.rope_factors_short) {
        if (c.rope_yarn || c.has_rope_freqs || c.rope_freq_scale != 1.f)
            fail(KV_ERR_UNSUPPORTED, "LongRoPE factor tables together with another rope scaling are not supported");
        c.rope_longrope = true;
        c.n_ctx_orig = k.count("rope.scaling.original_context_length");
        if (std::optional<double> af = k.opt_float("rope.scaling.attn_factor")) {
            if (!(*af > 0))
                fail(KV_ERR_BAD_MODEL, "%s = %g must be positive", k.key("rope.scaling.attn_factor").c_str(), *af);
            c.rope_mscale = static_cast<float>(*af);
        }
    }
    if (c.rope_yarn && c.has_rope_freqs)
        fail(KV_ERR_UNSUPPORTED, "YaRN together with rope_freqs.weight factors is not supported");

    const bool bias_required = c.arch == Arch::Qwen2;
    t.layers.resize(c.n_layer);
    for (uint32_t l = 0; l < c.n_layer; ++l) {
        LayerTensors& L = t.layers[l];
        auto n = [l](const char* suffix) { return format("blk.%u.%s", l, suffix); };
        L.attn_norm = tc.require(n("attn_norm.weight"), {E}, "attention norm");
        if (c.arch == Arch::Phi3) L.wqkv = tc.optional(n("attn_qkv.weight"), {E, Q + 2 * KV}, "fused QKV projection");
        if (!L.wqkv) {
            L.wq = tc.require(n("attn_q.weight"), {E, Q}, "query projection");
            L.wk = tc.require(n("attn_k.weight"), {E, KV}, "key projection");
            L.wv = tc.require(n("attn_v.weight"), {E, KV}, "value projection");
        }
        L.wo = tc.require(n("attn_output.weight"), {Q, E}, "attention output projection");
        if (bias_required) {
            L.bq = tc.require(n("attn_q.bias"), {Q}, "query bias");
            L.bk = tc.require(n("attn_k.bias"), {KV}, "key bias");
            L.bv = tc.require(n("attn_v.bias"), {KV}, "value bias");
        } else {
            L.bq = tc.optional(n("attn_q.bias"), {Q}, "query bias");
            L.bk = tc.optional(n("attn_k.bias"), {KV}, "key bias");
            L.bv = tc.optional(n("attn_v.bias"), {KV}, "value bias");
        }
        L.bo = tc.optional(n("attn_output.bias"), {E}, "attention output bias");
        L.ffn_norm = tc.require(n("ffn_norm.weight"), {E}, "feed-forward norm");
        if (c.arch == Arch::Phi3 && (l == 0 ? !file.find_tensor(n("ffn_gate.weight")) : c.fused_gate_up)) {
            c.fused_gate_up = true;
            L.ffn_up = tc.require(n("ffn_up.weight"), {E, 2 * F}, "fused feed-forward gate and up projection");
        } else {
            L.ffn_gate = tc.require(n("ffn_gate.weight"), {E, F}, "feed-forward gate");
            L.ffn_up = tc.require(n("ffn_up.weight"), {E, F}, "feed-forward up projection");
        }
        L.ffn_down = tc.require(n("ffn_down.weight"), {F, E}, "feed-forward down projection");
        if (c.has_qk_norm) {
            L.attn_q_norm = tc.require(n("attn_q_norm.weight"), {c.head_dim}, "per-head query norm");
            L.attn_k_norm = tc.require(n("attn_k_norm.weight"), {c.head_dim}, "per-head key norm");
        }
        if (c.has_post_norms) {
            L.post_attn_norm = tc.require(n("post_attention_norm.weight"), {E}, "attention output norm");
            L.post_ffn_norm = tc.require(n("post_ffw_norm.weight"), {E}, "feed-forward output norm");
        }

        // Biases: Q, K and V together, and the same in every layer (one code path per model).
        const bool qkv = L.bq != nullptr;
        if ((L.bk != nullptr) != qkv || (L.bv != nullptr) != qkv)
            fail(KV_ERR_BAD_MODEL,
                 "block %u has only some of attn_q.bias, attn_k.bias, attn_v.bias", l);
        if (l == 0) {
            c.has_qkv_bias = qkv;
            c.has_o_bias = L.bo != nullptr;
        } else if (qkv != c.has_qkv_bias || (L.bo != nullptr) != c.has_o_bias) {
            fail(KV_ERR_BAD_MODEL, "block %u has attention biases that differ from block 0's", l);
        }
    }

    // Tally what the model uses (a tied output counts once).
    tc.tally(t.token_embd, c);
    tc.tally(t.output_norm, c);
    if (!c.tied_output) tc.tally(t.output, c);
    tc.tally(t.rope_freqs, c);
    tc.tally(t.rope_factors_short, c);
    tc.tally(t.rope_factors_long, c);
    for (const LayerTensors& L : t.layers)
        for (const GgufTensorInfo* p : {L.attn_norm, L.wqkv, L.wq, L.wk, L.wv, L.wo, L.bq, L.bk, L.bv, L.bo,
                                        L.ffn_norm, L.ffn_gate, L.ffn_up, L.ffn_down, L.attn_q_norm,
                                        L.attn_k_norm, L.post_attn_norm, L.post_ffn_norm})
            tc.tally(p, c);
    c.weight_types = tc.usage();
    return desc;
}

}  // namespace kv::model
