// Kernels that read model weights in their file format (every supported ggml type), dequantizing
// as they read: embedding row lookup, matrix-vector (decode) and matrix-matrix (prefill) products.
// Weights live in a SplitBuffer whose chunks are whole rows (each <= maxStorageBufferRange).
// Synchronisation as in kernels.h: methods only record; callers add cs.barrier().
#pragma once

#include <cstdint>

#include "engine/kernels.h"
#include "model/ggml_types.h"
#include "vk/command.h"
#include "vk/memory.h"

namespace kv::engine {

class WeightKernels {
public:
    WeightKernels(vk::Device& device, vk::PipelineCache& pipelines, const Kernels& basic);

    // out[i][c] = W[ids[i]][c] for i < n_ids: W is [rows][cols] of `type`, ids a uint32 buffer
    // (values checked by the caller), out f32 [n_ids][cols].
    void get_rows(vk::CommandStream& cs, const vk::SplitBuffer& W, model::GgmlType type, uint32_t rows,
                  uint32_t cols, const vk::BufferRange& ids, uint32_t n_ids, const vk::BufferRange& out) const;

    // y[t][r] = sum_c W[r][c] * x[t][c], t < n_tokens: W [rows][cols] of `type`, x f32
    // [n_tokens][cols], y f32 [n_tokens][rows]. n_tokens == 1 is the decode matvec (bandwidth
    // bound: reads W once); larger n_tokens use the tiled matrix-matrix path (compute bound).
    // fp32 accumulation. y must not alias x.
    void matmul(vk::CommandStream& cs, const vk::SplitBuffer& W, model::GgmlType type, uint32_t rows,
                uint32_t cols, const vk::BufferRange& x, const vk::BufferRange& y, uint32_t n_tokens) const;

private:
    vk::Device& device_;
    vk::PipelineCache& pipelines_;
    const Kernels& basic_;
};

}  // namespace kv::engine
