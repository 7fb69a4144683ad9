// Model architectures: the hyper-parameters of a transformer read from GGUF metadata, checked
// against the shapes and types of its tensors, and the per-layer tensor lookup that both the CPU
// reference (src/reference/) and the GPU engine use, so they find weights the same way.
//
// Supported: `llama` (Llama 2/3/3.x, TinyLlama, Mistral, SmolLM, llama2.c models: GQA/MQA,
// partial rope, linear rope scaling, Llama 3 frequency factors, tied or untied output, optional
// biases), `qwen2` (Q/K/V biases, NeoX rope), `qwen3` (per-head RMS norm of Q and K before rope),
// `gemma2` and `gemma3` (embeddings scaled by sqrt(n_embd), GeGLU, norms before and after
// attention and feed-forward, attention (gemma2) and final logit soft-capping, query scaling,
// alternating sliding-window and global layers; gemma3: per-head Q/K norms and a local rope base)
// and `phi3` (fused QKV and gate/up tensors, LongRoPE factor tables, sliding window if declared).
// Rope scaling: linear, YaRN (rope.scaling.type = yarn) for every architecture, LongRoPE (phi3's
// rope_factors_short/long tables), Llama 3.1+ frequency factors (rope_freqs.weight).
// Gemma's RMS norm is x * (1 + w) in its model definition; GGUF files (llama.cpp's converter)
// store 1 + w, so every norm here is x * stored_weight for every architecture.
//
// Shapes follow ggml: ne[0] is the contiguous (input) dimension, so a matrix mapping `in` to
// `out` features has ne = {in, out} and is stored as `out` rows of `in` elements.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace kv::model {

enum class Arch : uint32_t { Llama, Qwen2, Qwen3, Gemma2, Gemma3, Phi3 };

// The feed-forward activation: down(act(gate) * up).
enum class FfnAct : uint32_t {
    Silu,      // SwiGLU: silu(g) = g / (1 + exp(-g))
    GeluTanh,  // GeGLU:  gelu(g) = 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3)))
};

// How rotary embeddings pair the dimensions of a head (only the first n_rot dims rotate):
//   Norm: adjacent pairs (x[2i], x[2i+1])            (llama; the GGUF converter permutes Q/K)
//   Neox: split halves  (x[i], x[i + n_rot/2])       (qwen2, GPT-NeoX)
// Both rotate pair i by angle pos * freq_scale * base^(-2i/n_rot) / freq_factor[i].
enum class RopeType : uint32_t { Norm, Neox };

const char* arch_name(Arch a);
const char* rope_type_name(RopeType r);

// Tensors of one block. Pointers are borrowed from the GgufFile (valid while it lives).
// Optional tensors are nullptr when absent.
// Fused tensors (phi3) are split by rows when loaded: wqkv's rows are Q's, then K's, then V's
// (wq, wk, wv stay null); a fused ffn_up [n_embd, 2 n_ff] holds the gate's rows, then up's
// (ffn_gate stays null; ModelConfig::fused_gate_up).
struct LayerTensors {
    const GgufTensorInfo* attn_norm = nullptr;  // [n_embd]
    const GgufTensorInfo* wqkv = nullptr;       // [n_embd, q_dim + 2 kv_dim]  fused (phi3)
    const GgufTensorInfo* wq = nullptr;         // [n_embd, q_dim]
    const GgufTensorInfo* wk = nullptr;         // [n_embd, kv_dim]
    const GgufTensorInfo* wv = nullptr;         // [n_embd, kv_dim]
    const GgufTensorInfo* wo = nullptr;         // [q_dim, n_embd]
    const GgufTensorInfo* bq = nullptr;         // [q_dim]   optional (required for qwen2)
    const GgufTensorInfo* bk = nullptr;         // [kv_dim]  optional (required for qwen2)
    const GgufTensorInfo* bv = nullptr;         // [kv_dim]  optional (required for qwen2)
    const GgufTensorInfo* bo = nullptr;         // [n_embd]  optional
    const GgufTensorInfo* ffn_norm = nullptr;   // [n_embd]
    const GgufTensorInfo* ffn_gate = nullptr;   // [n_embd, n_ff]
    const GgufTensorInfo* ffn_up = nullptr;     // [n_embd, n_ff]
    const GgufTensorInfo* ffn_down = nullptr;   // [n_ff, n_embd]
    // qwen3, gemma3: per-head RMS norms of Q and K (after the projection, before rope).
    const GgufTensorInfo* attn_q_norm = nullptr;  // [head_dim]
    const GgufTensorInfo* attn_k_norm = nullptr;  // [head_dim]
    // gemma2, gemma3: RMS norms of the attention and feed-forward outputs (before the residual).
    const GgufTensorInfo* post_attn_norm = nullptr;  // [n_embd] (post_attention_norm.weight)
    const GgufTensorInfo* post_ffn_norm = nullptr;   // [n_embd] (post_ffw_norm.weight)
};

struct ModelTensors {
    const GgufTensorInfo* token_embd = nullptr;   // [n_embd, n_vocab]
    const GgufTensorInfo* output_norm = nullptr;  // [n_embd]
    const GgufTensorInfo* output = nullptr;       // [n_embd, n_vocab]; == token_embd when tied
    const GgufTensorInfo* rope_freqs = nullptr;   // [n_rot/2] optional (Llama 3.1+ factors)
    // LongRoPE (phi3): angles divided by the long factors when a session's context exceeds
    // n_ctx_orig, else by the short ones. Both or neither.
    const GgufTensorInfo* rope_factors_short = nullptr;  // [n_rot/2]
    const GgufTensorInfo* rope_factors_long = nullptr;   // [n_rot/2]
    std::vector<LayerTensors> layers;             // n_layer entries
};

// Per weight type: how much of the model is stored in it.
struct WeightTypeUsage {
    GgmlType type = GgmlType::F32;
    uint32_t tensors = 0;
    uint64_t elements = 0;
    uint64_t bytes = 0;
};

struct ModelConfig {
    Arch arch = Arch::Llama;
    std::string name;  // general.name, or "" when absent

    uint32_t n_vocab = 0;      // rows of token_embd
    uint32_t n_embd = 0;       // <arch>.embedding_length
    uint32_t n_layer = 0;      // <arch>.block_count
    uint32_t n_head = 0;       // <arch>.attention.head_count
    uint32_t n_head_kv = 0;    // <arch>.attention.head_count_kv (default n_head)
    uint32_t head_dim = 0;     // <arch>.attention.key_length (default n_embd / n_head)
    uint32_t n_ff = 0;         // <arch>.feed_forward_length
    uint32_t n_ctx_train = 0;  // <arch>.context_length

    RopeType rope_type = RopeType::Norm;
    uint32_t n_rot = 0;  // <arch>.rope.dimension_count (default head_dim), even, <= head_dim
    float rope_freq_base = 10000.f;  // <arch>.rope.freq_base
    float rope_freq_scale = 1.f;     // 1 / <arch>.rope.scaling.factor for linear scaling
    bool has_rope_freqs = false;     // rope_freqs.weight present: angles are divided by it
    // YaRN (<arch>.rope.scaling.type = yarn) and LongRoPE (rope_factors_* tensors): the angle of
    // pair i is divided by a per-pair factor (YaRN: yarn_factors, computed here from
    // rope.scaling.factor, original_context_length and the beta_fast/beta_slow corrections; then
    // rope_freq_scale is 1), and cos and sin are multiplied by rope_mscale (YaRN:
    // <arch>.rope.scaling.attn_factor, else 0.1 ln(factor) + 1; LongRoPE: attn_factor, else 1).
    bool rope_yarn = false;
    bool rope_longrope = false;
    uint32_t n_ctx_orig = 0;        // <arch>.rope.scaling.original_context_length (YaRN, LongRoPE)
    float rope_mscale = 1.f;
    std::vector<float> yarn_factors;  // [n_rot / 2] with rope_yarn
    bool fused_gate_up = false;       // phi3's ffn_up holds gate and up (see LayerTensors)

    float rms_eps = 1e-5f;      // <arch>.attention.layer_norm_rms_epsilon
    bool tied_output = false;   // no output.weight: logits use token_embd
    bool has_qkv_bias = false;  // Q/K/V biases present (all layers alike)
    bool has_o_bias = false;    // attention output bias present

    // Architecture features (defaults: llama's).
    bool has_qk_norm = false;     // per-head RMS norm of Q and K (attn_q_norm / attn_k_norm)
    bool has_post_norms = false;  // post_attention_norm and post_ffw_norm
    FfnAct ffn_act = FfnAct::Silu;
    float embd_scale = 1.f;       // token embeddings are multiplied by it (gemma: sqrt(n_embd))
    // Attention scores are (q . k) * attention_scale(), then soft-capped: s -> cap * tanh(s / cap)
    // when attn_softcap > 0. attn_scale 0 means 1 / sqrt(head_dim) (gemma: see describe_model).
    float attn_scale = 0.f;
    float attn_softcap = 0.f;     // gemma2: <arch>.attn_logit_softcapping
    float final_softcap = 0.f;    // logits -> cap * tanh(logits / cap); gemma2/3: <arch>.final_logit_softcapping
    // Rope of sliding-window layers (sliding_window[l] != 0) where it differs from the global one
    // (gemma3: base 10000, no scaling); 0 = the same as the other layers.
    float rope_freq_base_swa = 0.f;
    float rope_freq_scale_swa = 0.f;

    // Per layer: attention window in tokens (0 = full causal attention). A query at position p
    // sees keys at positions j with p - window < j <= p. From <arch>.attention.sliding_window
    // (a scalar for every layer, or an array with one entry per layer).
    std::vector<uint32_t> sliding_window;

    uint64_t n_params = 0;      // elements of every tensor the model uses (tied once)
    uint64_t weight_bytes = 0;  // bytes of those tensors as stored
    std::vector<WeightTypeUsage> weight_types;  // types present, most elements first

    uint32_t q_dim() const { return n_head * head_dim; }
    uint32_t kv_dim() const { return n_head_kv * head_dim; }
    uint32_t n_gqa() const { return n_head / n_head_kv; }  // query heads per KV head
    float attention_scale() const {
        return attn_scale > 0 ? attn_scale : static_cast<float>(1.0 / std::sqrt(double(head_dim)));
    }
    // Whether layer l rotates with the model's rope scaling (factors, YaRN, LongRoPE): all layers
    // but gemma3's windowed ones (plain rope with their own base).
    bool rope_scaled(uint32_t l) const {
        return !(rope_freq_base_swa > 0 && l < sliding_window.size() && sliding_window[l]);
    }
    // Rope base and scale of layer l (the sliding-window ones where they differ).
    float rope_base(uint32_t l) const {
        return rope_freq_base_swa > 0 && l < sliding_window.size() && sliding_window[l] ? rope_freq_base_swa
                                                                                        : rope_freq_base;
    }
    float rope_scale(uint32_t l) const {
        return rope_freq_scale_swa > 0 && l < sliding_window.size() && sliding_window[l] ? rope_freq_scale_swa
                                                                                         : rope_freq_scale;
    }

    // e.g. "q4_k: 14 tensors, 1.57M params; q6_k: 3 tensors, ...; f32: 5 tensors, ..."
    std::string weight_types_summary() const;
    // One line: "llama, 2 layers, n_embd 256, 8 heads (2 KV, head_dim 32), ffn 512, vocab 1024,
    // ..."
    std::string summary() const;
};

// A model's configuration and its tensors, checked against each other.
struct ModelDesc {
    ModelConfig config;
    ModelTensors tensors;  // borrowed from the GgufFile passed to describe_model
};

// Reads and validates the architecture of `file`. Required keys: general.architecture and
// <arch>.{context_length, embedding_length, block_count, feed_forward_length,
// attention.head_count, attention.layer_norm_rms_epsilon}, and per architecture: gemma2
// attention.sliding_window, attn_logit_softcapping, final_logit_softcapping; gemma3
// attention.sliding_window; YaRN and LongRoPE rope.scaling.original_context_length (YaRN also
// rope.scaling.factor); the rest have defaults (see above). Tensors other than those in
// ModelTensors are ignored. Throws kv::Error:
//   KV_ERR_UNSUPPORTED  unknown general.architecture (named), a tensor whose type kvulkan cannot
//                       dequantize (tensor and type named), features not implemented (MoE, other
//                       rope scalings, YaRN or LongRoPE combined with other factors)
//   KV_ERR_BAD_MODEL    a missing or ill-typed key, a float hyper-parameter that is not a finite
//                       32-bit float (key named), dimensions that do not divide, a missing
//                       tensor, a tensor of the wrong shape (expected and actual shapes named)
ModelDesc describe_model(const GgufFile& file);

// Formats a tensor shape as "[256, 1024]".
std::string shape_string(const GgufTensorInfo& t);

}  // namespace kv::model
