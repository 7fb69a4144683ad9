#include "vk/select.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

namespace kv::vk {

namespace {

bool icontains(const std::string& hay, const std::string& needle) {
    auto lower = [](std::string s) {
        for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    };
    return lower(hay).find(lower(needle)) != std::string::npos;
}

int by_name(const std::vector<kv_device_info>& infos, const std::string& name) {
    for (size_t i = 0; i < infos.size(); ++i)
        if (icontains(infos[i].device_name, name)) return static_cast<int>(i);
    std::string names;
    for (auto& d : infos) names += std::string(names.empty() ? "" : ", ") + "'" + d.device_name + "'";
    fail(KV_ERR_NO_DEVICE, "no Vulkan device name contains '%s' (devices: %s)", name.c_str(), names.c_str());
}

}  // namespace

bool validation_requested(const kv_runtime_desc& desc) {
    if (desc.flags & KV_RUNTIME_VALIDATION) return true;
    if (desc.flags & KV_RUNTIME_IGNORE_ENVIRONMENT) return false;
    const char* v = std::getenv("KV_VALIDATION");
    return v && *v && std::string(v) != "0";
}

int choose_device(const kv_runtime_desc& desc, const std::vector<kv_device_info>& infos, bool use_env) {
    if (infos.empty()) fail(KV_ERR_NO_DEVICE, "no Vulkan device is available");
    if (desc.device_index >= 0) {
        if (static_cast<size_t>(desc.device_index) >= infos.size())
            fail(KV_ERR_INVALID_ARGUMENT, "device_index %d is out of range: %zu Vulkan device(s) available",
                 desc.device_index, infos.size());
        return desc.device_index;
    }
    if (desc.device_name && *desc.device_name) return by_name(infos, desc.device_name);
    const char* env = use_env ? std::getenv("KV_DEVICE") : nullptr;
    if (env && *env) {
        std::string s = env;
        bool numeric = std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
        if (numeric) {
            unsigned long i = std::strtoul(s.c_str(), nullptr, 10);
            if (i >= infos.size())
                fail(KV_ERR_NO_DEVICE, "KV_DEVICE=%s is out of range: %zu Vulkan device(s) available", env,
                     infos.size());
            return static_cast<int>(i);
        }
        return by_name(infos, s);
    }
    return pick_default_device(infos);
}

std::vector<kv_device_info> describe_devices(const Instance& instance) {
    std::vector<kv_device_info> infos;
    auto pds = instance.physical_devices();
    for (size_t i = 0; i < pds.size(); ++i) {
        kv_device_info info{};
        info.struct_size = sizeof info;
        info.index = static_cast<uint32_t>(i);
        describe_physical_device(instance.handle(), pds[i], &info);
        infos.push_back(info);
    }
    return infos;
}

}  // namespace kv::vk
