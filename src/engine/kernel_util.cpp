#include "engine/kernel_util.h"

#include <algorithm>

namespace kv::engine {

std::vector<RowChunk> row_chunks(const vk::SplitBuffer& W, uint64_t rb, uint32_t rows, uint32_t cols,
                                 const char* kernel) {
    if (W.size() < rb * rows)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: W holds %llu bytes, [%u][%u] needs %llu", kernel,
             static_cast<unsigned long long>(W.size()), rows, cols,
             static_cast<unsigned long long>(rb * rows));
    std::vector<RowChunk> out;
    uint64_t next_row = 0;
    for (size_t i = 0; i < W.chunk_count() && next_row < rows; ++i) {
        const uint64_t off = W.chunk_offset(i);
        const uint64_t size = W.chunk(i).size();
        if (off % rb != 0 || off / rb != next_row)
            fail(KV_ERR_INVALID_ARGUMENT,
                 "%s: chunk %zu of W starts at byte %llu, not at row %llu (row = %llu bytes)",
                 kernel, i, static_cast<unsigned long long>(off),
                 static_cast<unsigned long long>(next_row), static_cast<unsigned long long>(rb));
        const uint64_t chunk_rows = std::min<uint64_t>(size / rb, rows - next_row);
        if (chunk_rows == 0 || (chunk_rows < rows - next_row && size % rb != 0))
            fail(KV_ERR_INVALID_ARGUMENT, "%s: chunk %zu of W (%llu bytes) splits a row", kernel, i,
                 static_cast<unsigned long long>(size));
        out.push_back({W.chunk(i).handle(), static_cast<uint32_t>(next_row),
                       static_cast<uint32_t>(chunk_rows)});
        next_row += chunk_rows;
    }
    if (next_row != rows) fail(KV_ERR_INVALID_ARGUMENT, "%s: W's chunks cover too few rows", kernel);
    return out;
}

void dispatch_grid(const vk::Device& device, uint64_t groups, uint32_t* gx, uint32_t* gy) {
    const uint64_t max_x = device.limits().maxComputeWorkGroupCount[0];
    const uint64_t max_y = device.limits().maxComputeWorkGroupCount[1];
    if (groups == 0) fail(KV_ERR_INVALID_ARGUMENT, "empty dispatch");
    if (groups <= max_x) {
        *gx = static_cast<uint32_t>(groups);
        *gy = 1;
        return;
    }
    const uint64_t y = (groups + max_x - 1) / max_x;
    if (y > max_y)
        fail(KV_ERR_UNSUPPORTED, "dispatch of %llu workgroups exceeds the device's grid",
             static_cast<unsigned long long>(groups));
    *gy = static_cast<uint32_t>(y);
    *gx = static_cast<uint32_t>((groups + y - 1) / y);
}

vk::BufferRange fit_range(const vk::BufferRange& r, uint64_t bytes, const char* kernel, const char* what) {
    if (r.buffer == VK_NULL_HANDLE) fail(KV_ERR_INVALID_ARGUMENT, "%s: %s is not a buffer", kernel, what);
    if (r.size < bytes)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: %s holds %llu bytes, the shape needs %llu", kernel, what,
             static_cast<unsigned long long>(r.size), static_cast<unsigned long long>(bytes));
    return {r.buffer, r.offset, bytes};
}

bool has_subgroup_arithmetic(const vk::Device& device) {
    const uint32_t need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    return (device.subgroup_ops() & need) == need;
}

}  // namespace kv::engine
