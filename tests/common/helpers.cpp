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

bool full_sweep() {
    const char* e = std::getenv("KV_TEST_FULL");
    const bool full = e && *e && std::string(e) != "0";
    MESSAGE((full ? "KV_TEST_FULL: the full sweep" : "the covering subset (KV_TEST_FULL=1 runs the full sweep)"));
    return full;
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

}  // namespace kvtest
