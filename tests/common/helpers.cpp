#include "common/helpers.h"

#include <vulkan/vulkan.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sys/stat.h>

namespace kvtest {

std::string shared_dir() {
    const char* env = std::getenv("KV_SHARED_DIR");
    std::string d = env && *env ? env : KV_SHARED_DIR_DEFAULT;
    struct stat st;
    if (stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return d;
    return "";
}

bool require_shared() {
    if (shared_dir().empty()) {
        MESSAGE("SKIPPED: ../shared (test models and reference outputs) is absent");
        return false;
    }
    return true;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

uint32_t fresh_seed() {
    static std::atomic<uint32_t> counter{0};
    uint32_t s = static_cast<uint32_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count()) ^
                 (counter.fetch_add(1) * 0x9E3779B9u);
    const char* fixed = std::getenv("KV_TEST_SEED");
    if (fixed && *fixed) s = static_cast<uint32_t>(std::strtoul(fixed, nullptr, 10)) + counter.load();
    INFO("random seed " << s << " (set KV_TEST_SEED to reproduce)");
    return s;
}

bool validation_layer_available() {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> layers(n);
    vkEnumerateInstanceLayerProperties(&n, layers.data());
    for (auto& l : layers)
        if (std::string(l.layerName) == "VK_LAYER_KHRONOS_validation") return true;
    return false;
}

void Runtime::on_log(void* user, kv_log_level level, const char* msg) {
    auto* self = static_cast<Runtime*>(user);
    if (level == KV_LOG_VALIDATION) {
        std::lock_guard<std::mutex> lock(self->mutex_);
        self->validation_messages_.push_back(msg);
    }
}

Runtime::Runtime() {
    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    validation_ = validation_layer_available();
    if (validation_) desc.flags |= KV_RUNTIME_VALIDATION;
    else MESSAGE("validation layer not installed: running without it");
    desc.log_callback = &Runtime::on_log;
    desc.log_user_data = this;
    kv_status s = kv_runtime_create(&desc, &rt_);
    REQUIRE_MESSAGE(s == KV_OK, "kv_runtime_create: " << kv_status_string(s) << ": " << kv_last_error_message());
}

Runtime::~Runtime() {
    kv_runtime_destroy(rt_);
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& m : validation_messages_) FAIL_CHECK("validation message: " << m);
}

std::vector<std::string> Runtime::messages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return validation_messages_;
}

}  // namespace kvtest
