// Attention-side kernels: RoPE, KV-cache writes, causal attention over the cache (prefill and
// decode), and greedy argmax. Each method records dispatches into a CommandStream; callers record
// cs.barrier() between a kernel that writes a buffer and one that reads it (as in kernels.h).
//
// KV cache layout (paged from the start; a contiguous cache is the identity block table):
//   per layer, one K pool and one V pool, each [n_pages][n_kv_heads][page_size][head_dim]
//   elements of `kv_type` (F32 or F16; F16 stored as packed pairs, so head_dim is even).
//   A session's block table is a uint32 buffer: logical page i of the sequence lives in pool page
//   block_table[i]; position p is at page block_table[p / page_size], slot p % page_size.
//
// Activations are f32, row-major:
//   q:   [n_tokens][n_head][head_dim]      k, v: [n_tokens][n_head_kv][head_dim]
//   out: [n_tokens][n_head][head_dim]
// Query head h reads KV head h / (n_head / n_head_kv) (GQA/MQA).
#pragma once

#include <cstdint>

#include "model/ggml_types.h"
#include "vk/command.h"
#include "vk/pipeline.h"

namespace kv::engine {

struct RopeParams {
    uint32_t n_tokens = 1;
    uint32_t n_heads = 1;      // heads in x (n_head for q, n_head_kv for k)
    uint32_t head_dim = 0;
    uint32_t n_rot = 0;        // rotated dims (even, <= head_dim); the rest pass through
    uint32_t pos0 = 0;         // position of token 0; token t is at pos0 + t
    float freq_base = 10000.f;
    float freq_scale = 1.f;
    bool neox = false;         // NeoX pairing (x[i], x[i + n_rot/2]) instead of (x[2i], x[2i+1])
};

struct AttentionParams {
    uint32_t n_tokens = 1;     // queries, at positions [pos0, pos0 + n_tokens)
    uint32_t pos0 = 0;         // keys at positions [0, pos0 + n_tokens) are in the cache
    uint32_t n_head = 1;
    uint32_t n_head_kv = 1;
    uint32_t head_dim = 0;
    uint32_t page_size = 0;    // tokens per cache page
    model::GgmlType kv_type = model::GgmlType::F16;
    float scale = 1.f;         // usually 1 / sqrt(head_dim)
    uint32_t window = 0;       // sliding window (0: full causal): query p sees keys (p - window, p]
};

class AttentionKernels {
public:
    AttentionKernels(vk::Device& device, vk::PipelineCache& pipelines);

    // In place on x [n_tokens][n_heads][head_dim]. freq_factors: [n_rot / 2] f32 (angles divided
    // by it, Llama 3) or an empty range (buffer VK_NULL_HANDLE) for none.
    void rope(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& freq_factors,
              const RopeParams& p) const;

    // Stores k and v ([n_tokens][n_head_kv][head_dim] f32) of positions [pos0, pos0 + n_tokens)
    // into the pools at their block-table slots, converting to p.kv_type.
    void kv_write(vk::CommandStream& cs, const vk::BufferRange& k, const vk::BufferRange& v,
                  const vk::BufferRange& k_pool, const vk::BufferRange& v_pool,
                  const vk::BufferRange& block_table, const AttentionParams& p) const;

    // out = softmax(scale * q K^T + causal mask) V over the cached positions, per query head.
    // Works for any n_tokens (decode: 1; prefill: many) and any context length; fp32 math.
    void attention(vk::CommandStream& cs, const vk::BufferRange& q, const vk::BufferRange& k_pool,
                   const vk::BufferRange& v_pool, const vk::BufferRange& block_table,
                   const vk::BufferRange& out, const AttentionParams& p) const;

    // out[0] = index of the largest of x[0..n) (the lowest index among equal maxima), as uint32.
    void argmax(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out,
                uint32_t n) const;

private:
    vk::Device& device_;
    vk::PipelineCache& pipelines_;
};

}  // namespace kv::engine
