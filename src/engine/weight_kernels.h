// Kernels that read model weights in their file format (every supported ggml type), dequantizing
// as they read: embedding row lookup, matrix-vector (decode) and matrix-matrix (prefill) products.
// Weights live in a SplitBuffer whose chunks are whole rows (each <= maxStorageBufferRange):
// one dispatch per chunk, all writing disjoint outputs. The shaders read the packed blocks as 32-
// and 128-bit words; a chunk's binding is rounded up to whole 16-byte words, which vk::Buffer's
// padding keeps inside the VkBuffer. Indices are 32-bit: a chunk < 4 GiB, n_tokens * cols/rows
// must fit (checked). Types and layouts: shaders/include/dequant.glsl, model/ggml_types.h.
// Synchronisation as in kernels.h: methods only record; callers add cs.barrier().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/kernels.h"
#include "model/ggml_types.h"
#include "vk/command.h"
#include "vk/memory.h"

namespace kv::engine {

struct WeightKernelOptions {
    // Decode matvec: invocations per workgroup (a power of two) and rows per workgroup (<= 8);
    // 0 picks per shape (matvec_shape). Subgroup or shared-memory reductions follow
    // basic.subgroup_ops().
    uint32_t matvec_workgroup = 0;
    uint32_t matvec_rows = 0;
    // F32 and (even-length) F16 decode through Kernels::matvec; false uses this class's shader.
    bool float_matvec_via_basic = true;
    // Up to this many tokens (1..8) a matmul runs as the matvec, every weight read once for
    // all the tokens: the tiled prefill kernel runs only rows / 64 workgroups, too few for a
    // GPU to hide memory latency with a handful of tokens (a chat turn, a prefill's last chunk).
    // 0: 8 on GPUs, 1 on CPU devices (lavapipe gains nothing, and compiling the unrolled
    // multi-token pipelines is slow there).
    uint32_t matvec_max_tokens = 0;
    // Prefill tile: 0 picks per device and token count (64 x 64 or 64 x 32 tiles, 128 x 128
    // on GPUs for 96+ tokens); 32, 64 or 128 forces that many tokens per tile (128: for any
    // token count, where the device allows).
    uint32_t matmul_tile_tokens = 0;
};

// Extras matmul can fuse into its one pass (saving a kernel and a barrier each in a layer).
struct MatmulFusion {
    // y += W x instead of y = W x: y holds the residual stream (y must not alias x or glu_up).
    bool accumulate = false;
    // Non-empty: the product reads silu(x) * glu_up instead of x (SwiGLU: x the gate
    // activations, glu_up the up activations, same shape), as Kernels::silu_mul would write it.
    vk::BufferRange glu_up{};
    // Non-empty (decode only: n_tokens == 1): the product reads x RMS-normalized,
    // x * norm_weight / sqrt(mean(x^2) + norm_eps) as Kernels::rms_norm would write it
    // (norm_weight: f32 [cols]). Excludes glu_up.
    vk::BufferRange norm_weight{};
    float norm_eps = 1e-5f;
    bool any() const {
        return accumulate || glu_up.buffer != VK_NULL_HANDLE || norm_weight.buffer != VK_NULL_HANDLE;
    }
};

// Thread safety: immutable after construction, like Kernels.
class WeightKernels {
public:
    WeightKernels(vk::Device& device, vk::PipelineCache& pipelines, const Kernels& basic,
                  const WeightKernelOptions& options = {});

    // True for the types every method accepts: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
    // Q2_K..Q6_K (others throw KV_ERR_UNSUPPORTED). cols must be a multiple of the block size.
    static bool supported(model::GgmlType type);

    // out[i][c] = W[ids[i]][c] for i < n_ids: W is [rows][cols] of `type`, ids a uint32 buffer
    // (values checked by the caller: an id >= rows leaves its output row unwritten), out f32
    // [n_ids][cols]. Bit-exact with model::dequantize_row (up to fused multiply-adds).
    void get_rows(vk::CommandStream& cs, const vk::SplitBuffer& W, model::GgmlType type,
                  uint32_t rows, uint32_t cols, const vk::BufferRange& ids, uint32_t n_ids,
                  const vk::BufferRange& out) const;

    // y[t][r] = sum_c W[r][c] * x[t][c], t < n_tokens: W [rows][cols] of `type`, x f32
    // [n_tokens][cols], y f32 [n_tokens][rows]. Up to matvec_max_tokens tokens: the matvec
    // (bandwidth bound: reads W once for all of them); more: the tiled matrix-matrix path
    // (compute bound).
    // fp32 accumulation. y must not alias x. `fused`: see MatmulFusion (every type and shape).
    void matmul(vk::CommandStream& cs, const vk::SplitBuffer& W, model::GgmlType type,
                uint32_t rows, uint32_t cols, const vk::BufferRange& x, const vk::BufferRange& y,
                uint32_t n_tokens, const MatmulFusion& fused = {}) const;

    // Shader variant that matmul uses for a type and shape (for tests and benchmarks); `fused`:
    // with a MatmulFusion (float decode then runs this class's shader, not Kernels::matvec).
    std::string matmul_variant(model::GgmlType type, uint32_t cols, uint32_t n_tokens,
                               bool fused = false) const;
    // Decode matvec workgroup (invocations, rows per workgroup) for a weight matrix. Fixed by
    // the options where they set it; CPU devices: 16 x 8. GPUs: 128 invocations over 4 rows
    // (the rows share their x loads), but a small matrix then runs too few invocations to keep
    // enough loads in flight, so rows per workgroup drop (4, 2, 1) and then the workgroup widens
    // (up to 256, while every invocation keeps a load unit of the row) until about
    // kMatvecInvocations run. (H100 sweep of the TinyLlama-1.1B matrices, KV_BENCH_SWEEP=1
    // KV_BENCH_SHAPES=tiny: this picks 128 x 4 for 5632 and 32000 rows, 128 x 2 for 2048 rows,
    // 256 x 1 for 256 rows, each within ~7% of the best of 32..256 x 1..4, where 64 x 1 for
    // 2048 x 5632 Q8_0 was 30% slower.)
    // With n_tokens > 1 the rows per workgroup shrink so that rows x tokens <= 16 (registers and
    // the reduction's shared memory).
    struct MatvecShape {
        uint32_t workgroup, rows;
    };
    MatvecShape matvec_shape(model::GgmlType type, uint32_t rows, uint32_t cols,
                             uint32_t n_tokens = 1) const;
    static constexpr uint64_t kMatvecInvocations = 128 * 1024;
    // The options' (or the default) shape: what matvec_shape gives a large matrix.
    uint32_t matvec_workgroup() const { return mv_wg_; }
    uint32_t matvec_rows() const { return mv_rows_; }

private:
    struct Chunk {
        vk::BufferRange range;  // whole rows, padded to whole 16-byte words
        uint32_t row0, rows;
    };
    MatvecShape matvec_shape_one(model::GgmlType type, uint32_t rows, uint32_t cols) const;
    std::vector<Chunk> chunks(const vk::SplitBuffer& W, model::GgmlType type, uint32_t rows,
                              uint32_t cols, const char* kernel) const;
    void grid(uint64_t groups, uint32_t* gx, uint32_t* gy) const;

    vk::Device& device_;
    vk::PipelineCache& pipelines_;
    const Kernels& basic_;
    WeightKernelOptions options_;
    uint32_t mv_wg_ = 64;
    uint32_t mv_rows_ = 2;
    bool mv_fixed_ = false;  // the options or the device type fix the shape
    uint32_t mv_max_wg_ = 256;
    // Most rows x tokens accumulators of a 2..8-token matvec: 16 on GPUs; 8 on CPU devices, whose
    // JIT (llvmpipe) compiles the unrolled accumulators in superlinear time (q5_1 on lavapipe:
    // 8 accumulators 2.0 s, 16 accumulators 9.0 s) and which run the matvec for one token only
    // unless told otherwise (matvec_max_tokens), so this bounds what the tests pay per variant.
    uint32_t mv_max_acc_ = 16;
    uint32_t mv_max_tokens_ = 8;
    uint32_t gr_wg_ = 64;
    uint32_t small_tile_ = 1;  // 1: 64 x 64, 0: 64 x 32
    bool large_tile_ = false;
    uint32_t large_min_tokens_ = 96;
};

}  // namespace kv::engine
