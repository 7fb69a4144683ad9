// The engine's elementary compute kernels: each method records one kernel (one dispatch, or one
// per weight chunk for matvec) into a CommandStream. Shapes and formats are checked; the data is
// not touched on the host.
//
// Synchronisation: a method only records dispatches. It reads its inputs and writes its outputs
// within the recorded work, so a caller records cs.barrier() between the kernel that writes a
// buffer and the one that reads it (and before downloading a result), and after the last
// upload/fill of an input.
//
// Buffers: every tensor is f32 and contiguous unless said otherwise, passed as a BufferRange
// whose size must cover the shape (checked) and be <= maxStorageBufferRange (checked by
// CommandStream). Outputs may alias inputs only where a method says so.
//
// Thread safety: a Kernels object is immutable after construction; methods may be called from
// several threads, each recording into its own CommandStream.
#pragma once

#include <cstdint>
#include <string>

#include "model/ggml_types.h"
#include "vk/command.h"
#include "vk/memory.h"
#include "vk/pipeline.h"

namespace kv::engine {

struct KernelOptions {
    // Use the subgroup-arithmetic shader variants where the device supports subgroup arithmetic
    // in compute shaders; false forces the shared-memory reductions (tests run both).
    bool subgroup_ops = true;
    // Invocations per workgroup of the one-row-per-workgroup kernels (rms_norm, softmax_rows; a
    // power of two); 0 picks the default (GPU 256, CPU device 8).
    uint32_t row_workgroup = 0;
    // Matvec tuning: invocations per workgroup (a power of two) and rows per workgroup (1..8);
    // 0 picks the default for the device type (GPU: 128 x 2 rows, CPU device: 16 x 8 rows).
    uint32_t matvec_workgroup = 0;
    uint32_t matvec_rows = 0;
};

class Kernels {
public:
    Kernels(vk::Device& device, vk::PipelineCache& pipelines, const KernelOptions& options = {});

    // out[r][i] = x[r][i] / sqrt(mean_i(x[r][i]^2) + eps) * weight[i]
    // x, out: [n_rows][n_cols]; weight: [n_cols]. out may be x (in place).
    void rms_norm(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& weight,
                  const vk::BufferRange& out, uint32_t n_cols, uint32_t n_rows, float eps) const;

    // out[i] = a[i] + b[i % nb], i in [0, n); nb = 0 means nb = n (plain elementwise); otherwise
    // nb must divide n (b broadcast over rows of nb). out may be a or b.
    void add(vk::CommandStream& cs, const vk::BufferRange& a, const vk::BufferRange& b,
             const vk::BufferRange& out, uint32_t n, uint32_t nb = 0) const;
    // out[i] = a[i] * b[i % nb], as add.
    void mul(vk::CommandStream& cs, const vk::BufferRange& a, const vk::BufferRange& b,
             const vk::BufferRange& out, uint32_t n, uint32_t nb = 0) const;
    // out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]. out may be gate or
    // up.
    void silu_mul(vk::CommandStream& cs, const vk::BufferRange& gate, const vk::BufferRange& up,
                  const vk::BufferRange& out, uint32_t n) const;

    // out[i] = gelu(gate[i]) * up[i] with the tanh approximation of GELU:
    // gelu(g) = 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3))). out may be gate or up.
    void gelu_mul(vk::CommandStream& cs, const vk::BufferRange& gate, const vk::BufferRange& up,
                  const vk::BufferRange& out, uint32_t n) const;
    // out[i] = x[i] * f, i in [0, n). out may be x.
    void scale(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out, uint32_t n,
               float f) const;
    // out[i] = cap * tanh(x[i] / cap), i in [0, n) (soft-capping; cap > 0). out may be x.
    void softcap(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out, uint32_t n,
                 float cap) const;

    // out[r] = softmax(scale * x[r]) over each row of n_cols; -inf entries get probability 0 and
    // an all -inf row gives zeros. x, out: [n_rows][n_cols]; out may be x.
    void softmax_rows(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out,
                      uint32_t n_cols, uint32_t n_rows, float scale = 1.0f) const;

    // y[b][r] = sum_c W[r][c] * x[b][c] for b in [0, n_vecs): W is [rows][cols] row-major (ggml
    // ne[0] = cols contiguous) of `type` F32 or F16 (F16 needs even cols); x: [n_vecs][cols],
    // y: [n_vecs][rows]. W may be split into chunks of whole rows (a chunk boundary inside a row
    // is an error): one dispatch per chunk, all writing disjoint rows of y (no barrier between
    // them). Other types throw KV_ERR_UNSUPPORTED. y must not alias x.
    void matvec(vk::CommandStream& cs, const vk::SplitBuffer& W, model::GgmlType type,
                uint32_t rows, uint32_t cols, const vk::BufferRange& x, const vk::BufferRange& y,
                uint32_t n_vecs = 1) const;
    // The same with W in one binding (<= maxStorageBufferRange).
    void matvec(vk::CommandStream& cs, const vk::BufferRange& W, model::GgmlType type,
                uint32_t rows, uint32_t cols, const vk::BufferRange& x, const vk::BufferRange& y,
                uint32_t n_vecs = 1) const;

    // True when the subgroup-arithmetic variants are in use.
    bool subgroup_ops() const { return subgroup_ops_; }
    // Workgroup size of rms_norm / softmax_rows in use.
    uint32_t row_workgroup() const { return row_wg_; }
    // Matvec workgroup size and rows per workgroup in use (after clamping to the device).
    uint32_t matvec_workgroup() const { return matvec_wg_; }
    uint32_t matvec_rows() const { return matvec_rows_; }
    // Name of the matvec shader variant chosen for a type and column count (for tests/benchmarks).
    std::string matvec_variant(model::GgmlType type, uint32_t cols) const;

private:
    // `reduces`: the shader has a subgroup-arithmetic twin named <name>_sg.
    vk::Pipeline& pipeline(const std::string& name, bool reduces, uint32_t bindings,
                           uint32_t push_bytes, std::vector<uint32_t> spec) const;
    void unary(vk::CommandStream& cs, const char* shader, const vk::BufferRange& x,
               const vk::BufferRange& out, uint32_t n, float f) const;
    void binary(vk::CommandStream& cs, const char* shader, const vk::BufferRange& a,
                const vk::BufferRange& b, const vk::BufferRange& out, uint32_t n,
                uint32_t nb) const;
    // Splits `groups` workgroups into an x * y grid within maxComputeWorkGroupCount.
    void grid(uint64_t groups, uint32_t* gx, uint32_t* gy) const;
    void matvec_chunk(vk::CommandStream& cs, const vk::BufferRange& W, model::GgmlType type,
                      uint32_t row0, uint32_t chunk_rows, uint32_t rows, uint32_t cols,
                      const vk::BufferRange& x, const vk::BufferRange& y, uint32_t n_vecs) const;

    vk::Device& device_;
    vk::PipelineCache& pipelines_;
    bool subgroup_ops_ = false;
    uint32_t eltwise_wg_ = 256;
    uint32_t row_wg_ = 256;  // rms_norm, softmax: one workgroup per row
    uint32_t matvec_wg_ = 128;
    uint32_t matvec_rows_ = 2;
};

}  // namespace kv::engine
