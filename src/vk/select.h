// Device choice: which Vulkan device a runtime uses, following kv_runtime_desc's rules.
#pragma once

#include <kvulkan/kvulkan.h>

#include <vector>

#include "vk/device.h"

namespace kv::vk {

// Describes every physical device of `instance`, in enumeration order.
std::vector<kv_device_info> describe_devices(const Instance& instance);

// Applies the device-choice rules of kv_runtime_desc (index, name, KV_DEVICE, type ranking).
int choose_device(const kv_runtime_desc& desc, const std::vector<kv_device_info>& infos, bool use_env);

// Whether validation is requested (flag, or KV_VALIDATION=1 unless environment is ignored).
bool validation_requested(const kv_runtime_desc& desc);

}  // namespace kv::vk
