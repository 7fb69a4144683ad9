// Helpers shared by the kernel families (kernels.cpp, weight_kernels.cpp, attention.cpp): grid
// splitting for large dispatches, range checks, workgroup sizing, device capability queries.
#pragma once

#include <cstdint>
#include <vector>

#include "vk/device.h"
#include "vk/memory.h"

namespace kv::engine {

inline uint32_t floor_pow2(uint32_t v) {
    uint32_t p = 1;
    while (p * 2 <= v) p *= 2;
    return p;
}
inline bool is_pow2(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Splits `groups` workgroups into an x * y grid within maxComputeWorkGroupCount (shaders recover
// the linear index with grid.glsl's kv_group_index). KV_ERR_UNSUPPORTED beyond x * y.
void dispatch_grid(const vk::Device& device, uint64_t groups, uint32_t* gx, uint32_t* gy);

// Checks that `r` is a buffer holding at least `bytes` (KV_ERR_INVALID_ARGUMENT naming the kernel
// and operand otherwise) and returns it trimmed to them: only what a kernel touches is bound.
vk::BufferRange fit_range(const vk::BufferRange& r, uint64_t bytes, const char* kernel, const char* what);

// The chunks of a weight matrix W of `rows` rows of `row_bytes` each, split into chunks of whole
// rows (SplitBuffer): chunk i binds rows [row0, row0 + rows) from byte 0 of its buffer. Checks
// that W holds the matrix, every chunk starts on the next row and no chunk splits a row
// (KV_ERR_INVALID_ARGUMENT naming the kernel otherwise).
struct RowChunk {
    VkBuffer buffer;
    uint32_t row0, rows;
};
std::vector<RowChunk> row_chunks(const vk::SplitBuffer& W, uint64_t row_bytes, uint32_t rows,
                                 uint32_t cols, const char* kernel);

// Subgroup arithmetic (basic + arithmetic operations) in compute shaders.
bool has_subgroup_arithmetic(const vk::Device& device);

}  // namespace kv::engine
