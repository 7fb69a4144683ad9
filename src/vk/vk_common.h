// Vulkan include and result checking shared by src/vk/.
#pragma once

#include <vulkan/vulkan.h>

#include "common/error.h"

namespace kv::vk {

const char* result_name(VkResult r);

// Maps a failed VkResult to a kv::Error: device loss, memory exhaustion and unsupported features
// keep their own status; anything else is reported as internal with the call's name.
[[noreturn]] void throw_vk(VkResult r, const char* what);

#define KV_VK(call)                                           \
    do {                                                      \
        VkResult kv_vk_r_ = (call);                           \
        if (kv_vk_r_ != VK_SUCCESS) ::kv::vk::throw_vk(kv_vk_r_, #call); \
    } while (0)

}  // namespace kv::vk
