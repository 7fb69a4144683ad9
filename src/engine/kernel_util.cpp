#include "engine/kernel_util.h"

namespace kv::engine {

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
