// Attention-side kernels: RoPE, KV-cache writes, causal attention over the cache (prefill and
// decode), and greedy argmax. Each method records dispatches into a CommandStream; callers record
// cs.barrier() between a kernel that writes a buffer and one that reads it (as in kernels.h).
//
// KV cache layout (paged from the start; a contiguous cache is the identity block table):
//   per layer, one K pool and one V pool, each n_pages pages of kv_page_bytes() bytes holding
//   [n_kv_heads][page_size] rows of head_dim values of `kv_type`: F32, F16 (packed pairs, so
//   head_dim is even), or Q8_0/Q4_0 (head_dim % 32 == 0, or 2, 4, 8, 16: values, then fp16
//   scales per kv_quant_block(head_dim) values; see kv_page_bytes). A session's block table is
//   a uint32 buffer: position p is in logical page lp = p / page_size, slot p % page_size, and
//   lp lives in pool page block_table[lp], or, with a ring (AttentionParams::ring_pages), in
//   block_table[ring slot of lp].
//
// Activations are f32, row-major:
//   q:   [n_tokens][n_head][head_dim]      k, v: [n_tokens][n_head_kv][head_dim]
//   out: [n_tokens][n_head][head_dim]
// Query head h reads KV head h / (n_head / n_head_kv) (GQA/MQA).
//
// Attention kernels (shaders/attn_*.comp; plan() says which a call uses): fp32 math, online
// softmax (running max and sum), no fp16 arithmetic or 8/16-bit storage (F16 and quantized
// pages are read as uint words and dequantized on the fly), keys outside the window and sinks
// never read, reductions through shared memory or subgroup arithmetic of any subgroup size,
// shared memory fitted to the device (16 KiB works), head_dim any even value (the tiled kernel
// needs a multiple of 4).
//   decode: up to 4 query rows of one KV group per workgroup, one key per invocation per tile
//     (its K row's loads issued together), then P V with the V loads of 4 keys per invocation
//     in flight at once.
//   tiled:  up to 64 query rows per workgroup, K/V tiles staged in shared memory (prefill).
//   split-KV: when few workgroups would run (decode), each (rows, KV head) pair is split over
//     up to max_splits key ranges (AttentionOptions); partials go to scratch as
//     [splits][n_tokens * n_head][head_dim] then [splits][n_tokens * n_head][2] (max, sum), and
//     attn_reduce combines them (second dispatch, after a barrier recorded by attention(); one
//     workgroup per output row and block of its elements, its invocations spread over the
//     splits).
// Measured before the split policy of AttentionOptions and the batched V loads (H200,
// Llama-3-8B shapes, F16 pages of 16, then at most 64 splits of at least 256 keys): decode
// 35 us at 8k context, 0.44 ms at 32k, 1.45 ms at 128k (370 GB/s of K/V: latency-bound, well
// under the memory's bandwidth); prefill 512 tokens after 7680 cached: 13.7 TFLOP/s fp32. Not
// yet re-measured since (the "attention benchmark" test prints the figures; KV_ATTN_BENCH=tiny
// runs TinyLlama-1.1B decode shapes under several split policies). Errors against float64:
// ~1e-6 relative L2 (tests/engine/test_attention.cpp); Q8_0/Q4_0 pages: the same against
// float64 over the same quantized K/V (tests/engine/test_kv_quant.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/ggml_types.h"
#include "vk/command.h"
#include "vk/memory.h"
#include "vk/pipeline.h"

namespace kv::engine {

struct RopeParams {
    uint32_t n_tokens = 1;
    uint32_t n_heads = 1;  // heads in x (n_head for q, n_head_kv for k)
    uint32_t head_dim = 0;
    uint32_t n_rot = 0;  // rotated dims (even, <= head_dim); the rest pass through
    uint32_t pos0 = 0;   // position of token 0; token t is at pos0 + t
    float freq_base = 10000.f;
    float freq_scale = 1.f;
    bool neox = false;  // NeoX pairing (x[i], x[i + n_rot/2]) instead of (x[2i], x[2i+1])
    float mscale = 1.f;  // cos and sin are multiplied by it (YaRN, LongRoPE attention factor)
};

struct AttentionParams {
    uint32_t n_tokens = 1;  // queries, at positions [pos0, pos0 + n_tokens)
    uint32_t pos0 = 0;      // keys at positions [0, pos0 + n_tokens) are in the cache
    uint32_t n_head = 1;
    uint32_t n_head_kv = 1;
    uint32_t head_dim = 0;
    uint32_t page_size = 0;  // tokens per cache page
    model::GgmlType kv_type = model::GgmlType::F16;
    float scale = 1.f;    // usually 1 / sqrt(head_dim)
    // > 0: every score (after the scale) is soft-capped, s -> softcap * tanh(s / softcap) (gemma2).
    float softcap = 0.f;
    // Sliding window with attention sinks: key j is visible to query p iff j <= p and
    // (window == 0 or j + window > p or j < sinks). sinks only matters when window > 0.
    uint32_t window = 0;
    uint32_t sinks = 0;
    // Ring-mapped block table (bounded memory for endless generation): logical page lp (of
    // position lp * page_size) uses block-table slot
    //   lp < sink_pages ? lp : sink_pages + (lp - sink_pages) % ring_pages.
    // ring_pages == 0: no ring (slot = lp; sink_pages is ignored). The caller guarantees that
    // pages resident at once never share a slot and that every key visible to a query of the
    // call is resident; the kernels never read a masked key's page.
    uint32_t sink_pages = 0;
    uint32_t ring_pages = 0;
};

// Bytes of one page of one layer's K (or V) pool: n_head_kv x page_size rows of head_dim values.
//   F32, F16: [n_head_kv][page_size][head_dim] elements (F16: packed pairs; head_dim even),
//             exactly rows x head_dim x 4 (or 2) bytes, no padding.
//   Q8_0, Q4_0 (head_dim % 32 == 0, or head_dim 2, 4, 8 or 16): blocks of
//   QB = kv_quant_block(head_dim) values (32; the whole row when head_dim < 32) share an fp16
//   scale. First all rows' values, then all rows' scales:
//     values: Q8_0: int8[head_dim] per row; Q4_0: element i of a row in nibble i (low nibble
//             first in a byte, bytes little-endian in a 32-bit word): head_dim / 2 bytes per row;
//             a row is padded to whole 32-bit words (only head_dim 2 (Q8_0), 2 and 4 (Q4_0));
//     scales: fp16[head_dim / QB] per row, packed halves (row r's block b is half
//             r * head_dim / QB + b of the scale area, low half first in a word);
//     rounded up to a multiple of 16 bytes.
//   Rows are ordered [n_head_kv][page_size] in both areas. Quantization is ggml's reference
//   quantizers' over each block of QB values (for QB == 32 exactly model::quantize_row; any QB:
//   reference::round_kv): Q8_0 d = amax / 127, q = round(x / d); Q4_0 d = max / -8 (max: the
//   value of largest magnitude), q = min(15, int(x / d + 8.5)); values dequantize as q * d (Q8_0)
//   and (q - 8) * d (Q4_0) with d rounded to fp16. Throws KV_ERR_UNSUPPORTED for other types or
//   a head_dim they cannot hold. For head_dim >= 32 the layout is the same as for 32-blocks.
uint64_t kv_page_bytes(model::GgmlType type, uint32_t n_head_kv, uint32_t page_size,
                       uint32_t head_dim);
// Values per fp16 scale of a Q8_0/Q4_0 KV row of head_dim values: min(32, head_dim).
uint32_t kv_quant_block(uint32_t head_dim);

// Tuning and scratch. Defaults suit any device; tests use the knobs to force each path.
struct AttentionOptions {
    // Subgroup-arithmetic reductions where the device supports them (false: shared memory only).
    bool subgroup_ops = true;
    // Split-KV ("flash-decoding") scratch owned by the kernels object, used by the attention()
    // overload without a scratch argument. Null allocator: that overload never splits (still
    // correct for any context length, just one workgroup per query block and KV head).
    vk::Allocator* allocator = nullptr;
    uint64_t scratch_bytes = 8ull << 20;
    // Split-KV policy: split the keys of each (query block, KV head) into up to max_splits
    // ranges of at least min_keys_per_split keys until about target_workgroups workgroups run
    // (as far as the scratch holds). max_splits = 1 disables splitting; force_splits > 0 uses
    // exactly that many (as far as the scratch holds) regardless of the policy (tests).
    // The decode kernel is latency-bound (a workgroup's time is mostly a few dependent memory
    // round trips, which change little with the number of keys in its tile), so a short
    // context is spread over many workgroups: e.g. TinyLlama-1.1B decode (4 KV heads, GQA 8: 8 row blocks) at 512 keys runs
    // 8 splits of 64 keys, at 16384 keys 128 splits of 128 (the 1024-workgroup target); the
    // reduce pass reads splits x n_head x (head_dim + 2) floats of scratch per token.
    // (Before: at most 64 splits of at least 256 keys towards 512 workgroups: 2 splits at 512
    // keys.) The defaults are reasoned from that model, not tuned by measurement yet.
    uint32_t max_splits = 256;
    uint32_t min_keys_per_split = 64;
    uint32_t target_workgroups = 1024;
    uint32_t force_splits = 0;
    // CPU devices (VK_PHYSICAL_DEVICE_TYPE_CPU, e.g. lavapipe) keep at least this many keys per
    // split under the policy: their workgroups run on a few threads with no memory latency to
    // hide, so a split mostly adds overhead and the reduce pass. force_splits still applies.
    uint32_t cpu_min_keys_per_split = 256;
    // Query rows per KV head (n_tokens x n_head / n_head_kv) from which the shared-memory tiled
    // kernel is used instead of the decode kernel; 0 never tiles. (H200, head_dim 128, GQA 4:
    // the decode kernel wins up to a few hundred rows, the tiled one on long prompts over long
    // contexts: 512 tokens after 7680 cached, 13.7 vs 11.7 TFLOP/s.)
    uint32_t tile_min_rows = 512;
    // Decode kernel: most query rows per workgroup (1..8; 0: automatic = 4: 8 rows keep too
    // many accumulators live; on an H200, GQA 8 decode at 32k took 1304 us with 8, 748 with 4,
    // measured before the batched V loads).
    uint32_t decode_rows = 0;
    // Decode kernel: invocations per workgroup (rounded down to a power of two the device
    // accepts, and shrunk to the shared memory; 0: automatic = 64). One tile is this many keys.
    // (H100, TinyLlama-1.1B decode shapes, KV_ATTN_BENCH=tiny: 64 took 13.9 / 16.3 us at 512 /
    // 4096 cached tokens, 128 took 14.0 / 24.1 us: fewer invocations combine their partial
    // P V sums after the key loop.)
    uint32_t decode_workgroup = 0;
    // Tiled kernel: query rows per workgroup and keys per tile (powers of two; 0: automatic).
    uint32_t tile_rows = 0;
    uint32_t tile_keys = 0;
    // Shared memory the kernels may use, bytes (0: the device limit). Tests set 16384 to run
    // the configurations of phones with 16 KiB.
    uint32_t max_shared_bytes = 0;
    // 16-byte K/V loads in the decode kernel where head_dim and the pool offsets allow
    // (false: 4-byte loads; tests run both).
    bool vector_loads = true;
};

class AttentionKernels {
public:
    AttentionKernels(vk::Device& device, vk::PipelineCache& pipelines,
                     const AttentionOptions& options = {});

    // In place on x [n_tokens][n_heads][head_dim]. freq_factors: [n_rot / 2] f32 (angles divided
    // by it, Llama 3) or an empty range (buffer VK_NULL_HANDLE) for none. Semantics of
    // reference::rope; angles are carried in double-float precision, so the error stays ~1e-7
    // at any position (< 2^24).
    void rope(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& freq_factors,
              const RopeParams& p) const;

    // Stores k and v ([n_tokens][n_head_kv][head_dim] f32) of positions [pos0, pos0 + n_tokens)
    // into the pools at their block-table slots (ring mapping included), converting to
    // p.kv_type: F16 by packHalf2x16, Q8_0/Q4_0 bit-exactly as model::quantize_row (blocks of
    // 32) or reference::round_kv (blocks of kv_quant_block(head_dim)) (on devices with
    // correctly rounded fp32 division; tested on lavapipe). Quantized pages are updated
    // with 32-bit atomics on scale words, so writes of one call never race.
    void kv_write(vk::CommandStream& cs, const vk::BufferRange& k, const vk::BufferRange& v,
                  const vk::BufferRange& k_pool, const vk::BufferRange& v_pool,
                  const vk::BufferRange& block_table, const AttentionParams& p) const;

    // out = softmax(scale * q K^T + mask) V over the cached positions, per query head; the mask
    // is causal with p.window / p.sinks (AttentionParams).
    // Works for any n_tokens (decode: 1; prefill: many) and any context length; fp32 math.
    // Records one dispatch, or two with a barrier between them when the keys are split across
    // workgroups (then it uses the internal scratch: see AttentionOptions::allocator; calls that
    // share it must be separated by a barrier, as consecutive layers always are, and must not
    // run concurrently on the GPU from different streams; use the overload below for that).
    // out must not alias q.
    void attention(vk::CommandStream& cs, const vk::BufferRange& q, const vk::BufferRange& k_pool,
                   const vk::BufferRange& v_pool, const vk::BufferRange& block_table,
                   const vk::BufferRange& out, const AttentionParams& p) const;
    // The same with caller-owned split-KV scratch (f32 partials; any size: the split count is
    // limited to what fits, and an empty range disables splitting). scratch_bytes(p) is what the
    // split policy would like for p.
    void attention(vk::CommandStream& cs, const vk::BufferRange& q, const vk::BufferRange& k_pool,
                   const vk::BufferRange& v_pool, const vk::BufferRange& block_table,
                   const vk::BufferRange& out, const AttentionParams& p,
                   const vk::BufferRange& scratch) const;
    uint64_t scratch_bytes(const AttentionParams& p) const;

    // How a call with these parameters and `scratch_bytes` of scratch would run (tests, logs).
    struct Plan {
        bool tiled = false;      // shared-memory tiled kernel (else the decode kernel)
        uint32_t rows = 0;       // query rows per workgroup
        uint32_t tile_keys = 0;  // keys per tile
        uint32_t workgroup = 0;  // invocations per workgroup
        uint32_t splits = 1;     // KV splits (1: no scratch, no reduce pass)
        uint32_t keys_per_split = 0;
    };
    Plan plan(const AttentionParams& p, uint64_t scratch_bytes) const;

    // out[0] = index of the largest of x[0..n) (the lowest index among equal maxima), as uint32.
    // NaNs are never chosen (a row of NaNs only gives 0). One workgroup; 4 bytes come back.
    void argmax(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out,
                uint32_t n) const;

    const AttentionOptions& options() const { return options_; }
    bool subgroup_ops() const { return subgroup_ops_; }

private:
    vk::Pipeline& pipeline(const std::string& name, uint32_t bindings, uint32_t push_bytes,
                           std::vector<uint32_t> spec) const;
    void check(const AttentionParams& p, const char* what) const;

    vk::Device& device_;
    vk::PipelineCache& pipelines_;
    AttentionOptions options_;
    bool subgroup_ops_ = false;
    vk::Buffer scratch_;  // split-KV partials (options_.allocator), or empty
};

}  // namespace kv::engine
