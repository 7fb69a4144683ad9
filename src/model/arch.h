// Model architectures: the hyper-parameters of a transformer read from GGUF metadata, checked
// against the shapes and types of its tensors, and the per-layer tensor lookup that both the CPU
// reference (src/reference/) and the GPU engine use, so they find weights the same way.
//
// Supported: `llama` (Llama 2/3/3.x, TinyLlama, Mistral, SmolLM, llama2.c models: GQA/MQA,
// partial rope, linear rope scaling, Llama 3 frequency factors, tied or untied output, optional
// biases) and `qwen2` (Q/K/V biases, NeoX rope).
//
// Shapes follow ggml: ne[0] is the contiguous (input) dimension, so a matrix mapping `in` to
// `out` features has ne = {in, out} and is stored as `out` rows of `in` elements.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace kv::model {

enum class Arch : uint32_t { Llama, Qwen2 };

// How rotary embeddings pair the dimensions of a head (only the first n_rot dims rotate):
//   Norm: adjacent pairs (x[2i], x[2i+1])            (llama; the GGUF converter permutes Q/K)
//   Neox: split halves  (x[i], x[i + n_rot/2])       (qwen2, GPT-NeoX)
// Both rotate pair i by angle pos * freq_scale * base^(-2i/n_rot) / freq_factor[i].
enum class RopeType : uint32_t { Norm, Neox };

const char* arch_name(Arch a);
const char* rope_type_name(RopeType r);

// Tensors of one block. Pointers are borrowed from the GgufFile (valid while it lives).
// Optional tensors are nullptr when absent.
struct LayerTensors {
    const GgufTensorInfo* attn_norm = nullptr;  // [n_embd]
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
};

struct ModelTensors {
    const GgufTensorInfo* token_embd = nullptr;   // [n_embd, n_vocab]
    const GgufTensorInfo* output_norm = nullptr;  // [n_embd]
    const GgufTensorInfo* output = nullptr;       // [n_embd, n_vocab]; == token_embd when tied
    const GgufTensorInfo* rope_freqs = nullptr;   // [n_rot/2] optional (Llama 3.1+ factors)
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

    float rms_eps = 1e-5f;      // <arch>.attention.layer_norm_rms_epsilon
    bool tied_output = false;   // no output.weight: logits use token_embd
    bool has_qkv_bias = false;  // Q/K/V biases present (all layers alike)
    bool has_o_bias = false;    // attention output bias present

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
// attention.head_count, attention.layer_norm_rms_epsilon}; the rest have defaults (see above).
// Tensors other than those in ModelTensors are ignored. Throws kv::Error:
//   KV_ERR_UNSUPPORTED  unknown general.architecture (named), a tensor whose type kvulkan cannot
//                       dequantize (tensor and type named), features not implemented (MoE, YaRN)
//   KV_ERR_BAD_MODEL    a missing or ill-typed key, a float hyper-parameter that is not a finite
//                       32-bit float (key named), dimensions that do not divide, a missing
//                       tensor, a tensor of the wrong shape (expected and actual shapes named)
ModelDesc describe_model(const GgufFile& file);

// Formats a tensor shape as "[256, 1024]".
std::string shape_string(const GgufTensorInfo& t);

}  // namespace kv::model
