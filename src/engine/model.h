// kv_model: a GGUF file's architecture, tokenizer and (with a runtime) its weights on the device.
#pragma once

#include <kvulkan/kvulkan.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/attention.h"
#include "engine/gpu_budget.h"
#include "engine/kernels.h"
#include "engine/kv_pool.h"
#include "engine/weight_kernels.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "vk/memory.h"

namespace kv::engine {

// One weight tensor on the device, in its file format, split into chunks of whole rows.
struct DeviceTensor {
    model::GgmlType type = model::GgmlType::F32;
    uint32_t cols = 0;  // ne[0]
    uint32_t rows = 0;  // ne[1] * ne[2] * ne[3]
    vk::SplitBuffer data;
    bool valid() const { return data.chunk_count() > 0; }
    // The whole tensor as one binding (1-D tensors: norms, biases).
    vk::BufferRange range() const { return vk::whole(data.chunk(0)); }
};

struct DeviceLayer {
    DeviceTensor attn_norm, wq, wk, wv, wo, bq, bk, bv, bo, ffn_norm, ffn_gate, ffn_up, ffn_down;
    DeviceTensor attn_q_norm, attn_k_norm, post_attn_norm, post_ffn_norm;  // f32, or invalid when absent
};

struct DeviceWeights {
    DeviceTensor token_embd, output_norm, output, rope_freqs;  // output invalid when tied
    // Rope factor tables (f32 [n_rot/2]), valid when the model has them: LongRoPE's two, YaRN's
    // (computed from the metadata: ModelConfig::yarn_factors).
    DeviceTensor rope_factors_short, rope_factors_long, rope_yarn;
    std::vector<DeviceLayer> layers;
    uint64_t bytes = 0;
    const DeviceTensor& logits_matrix() const { return output.valid() ? output : token_embd; }
};

}  // namespace kv::engine

namespace kv::engine {
struct BatchScratch;
class TokenTrie;
}

struct kv_model {
    kv_runtime* runtime = nullptr;  // null: parsed and validated only, or vocab-only
    // KV_MODEL_VOCAB_ONLY: the tokenizer alone. `desc` then holds only config.name and
    // config.n_vocab (the tokenizer's size); no tensor, hyper-parameter or architecture was read.
    bool vocab_only = false;
    std::string architecture;       // general.architecture as written ("" when absent)
    std::unique_ptr<kv::model::GgufFile> file;
    kv::model::ModelDesc desc;      // tensors borrowed from `file`
    std::unique_ptr<kv::model::Tokenizer> tokenizer;
    // Device side (runtime only).
    kv::engine::DeviceWeights weights;
    std::unique_ptr<kv::engine::Kernels> kernels;
    std::unique_ptr<kv::engine::WeightKernels> weight_kernels;
    std::unique_ptr<kv::engine::AttentionKernels> attention;
    // kv_runtime_desc.gpu_budget_us: where passes are cut into submissions (null: budget off).
    std::unique_ptr<kv::engine::GpuBudget> gpu_budget;
    // Paged KV cache: one pool per cache type, created by the first session of that type.
    uint32_t kv_page_size = 16;
    uint32_t kv_pool_tokens = 0;  // 0: max(16384, first session's n_ctx)
    uint64_t host_offload_bytes = 0;  // kv_model_desc.host_offload_bytes (engine/offload.h)
    std::mutex pools_mutex;
    std::map<kv::model::GgmlType, std::unique_ptr<kv::engine::KvPool>> kv_pools;
    // The windowed layers' pools of a model with two layer groups (engine/kv_pool.h).
    std::map<kv::model::GgmlType, std::unique_ptr<kv::engine::KvPool>> kv_window_pools;

    // Passes of several sessions (engine/batch.h): their activations, one batch at a time.
    std::mutex batch_mutex;
    std::unique_ptr<kv::engine::BatchScratch> batch_scratch;

    // Constrained sampling (engine/grammar.h): every token's text as a trie, built on first use.
    std::mutex grammar_mutex;
    std::shared_ptr<const kv::engine::TokenTrie> token_trie;

    const kv::model::ModelConfig& config() const { return desc.config; }
    kv_model();
    ~kv_model();
};

namespace kv::engine {

// Parses, validates and, with a runtime, uploads. Throws kv::Error. With KV_MODEL_VOCAB_ONLY in
// desc.flags, reads the tokenizer alone (any general.architecture, no tensors needed) and keeps no
// runtime, whatever `runtime` is. Other flag bits are the caller's to reject.
std::unique_ptr<kv_model> load_model(kv_runtime* runtime, const kv_model_desc& desc);

// Throws KV_ERR_BAD_STATE, saying why, unless the model can run sessions (it has its weights on a
// runtime's device: loaded with a runtime and not vocab-only).
void require_weights_on_device(const kv_model& model);

// The model's KV pool of `type` (its global layers: every layer unless the model has two layer
// groups), created on first use with room for at least `min_tokens`.
KvPool& kv_pool(kv_model& model, model::GgmlType type, uint32_t min_tokens);
// The pool of its sliding-window layers (as many pages as kv_pool's), or null for a model with
// one layer group (engine/kv_pool.h).
KvPool* kv_window_pool(kv_model& model, model::GgmlType type, uint32_t min_tokens);

}  // namespace kv::engine
