#include "vk/vk_common.h"

namespace kv::vk {

const char* result_name(VkResult r) {
    switch (r) {
#define KV_CASE(x) case x: return #x;
        KV_CASE(VK_SUCCESS)
        KV_CASE(VK_NOT_READY)
        KV_CASE(VK_TIMEOUT)
        KV_CASE(VK_INCOMPLETE)
        KV_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
        KV_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        KV_CASE(VK_ERROR_INITIALIZATION_FAILED)
        KV_CASE(VK_ERROR_DEVICE_LOST)
        KV_CASE(VK_ERROR_MEMORY_MAP_FAILED)
        KV_CASE(VK_ERROR_LAYER_NOT_PRESENT)
        KV_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
        KV_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
        KV_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
        KV_CASE(VK_ERROR_TOO_MANY_OBJECTS)
        KV_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
        KV_CASE(VK_ERROR_FRAGMENTED_POOL)
        KV_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
        KV_CASE(VK_ERROR_UNKNOWN)
#undef KV_CASE
        default: return "VkResult(unknown)";
    }
}

void throw_vk(VkResult r, const char* what) {
    kv_status s = KV_ERR_INTERNAL;
    switch (r) {
        case VK_ERROR_OUT_OF_HOST_MEMORY: s = KV_ERR_OUT_OF_HOST_MEMORY; break;
        case VK_ERROR_OUT_OF_DEVICE_MEMORY:
        case VK_ERROR_TOO_MANY_OBJECTS: s = KV_ERR_OUT_OF_DEVICE_MEMORY; break;
        case VK_ERROR_DEVICE_LOST: s = KV_ERR_DEVICE_LOST; break;
        case VK_ERROR_INCOMPATIBLE_DRIVER:
        case VK_ERROR_LAYER_NOT_PRESENT:
        case VK_ERROR_EXTENSION_NOT_PRESENT:
        case VK_ERROR_FEATURE_NOT_PRESENT: s = KV_ERR_UNSUPPORTED; break;
        default: break;
    }
    fail(s, "%s failed: %s", what, result_name(r));
}

}  // namespace kv::vk
