#include "vk/pipeline_cache_file.h"

#include <kvulkan/kvulkan.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <system_error>

#include "common/error.h"

namespace kv::vk {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'P', 'C', 'A', 'C', 'H', 'E'};
// Far beyond any real cache (drivers keep a few MiB for hundreds of pipelines): a larger file is
// not read into memory.
constexpr uint64_t kMaxPayload = uint64_t(1) << 30;

uint64_t fnv1a64(const uint8_t* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

std::string version_string(uint32_t v) {
    return format("%u.%u.%u", KV_VERSION_GET_MAJOR(v), KV_VERSION_GET_MINOR(v), KV_VERSION_GET_PATCH(v));
}

}  // namespace

std::string pipeline_cache_payload_mismatch(const uint8_t* payload, size_t size, const VkPhysicalDeviceProperties& props) {
    // VkPipelineCacheHeaderVersionOne: uint32 headerSize, uint32 headerVersion, uint32 vendorID,
    // uint32 deviceID, uint8 pipelineCacheUUID[VK_UUID_SIZE].
    constexpr size_t kVkHeader = 16 + VK_UUID_SIZE;
    if (size < kVkHeader) return format("its Vulkan data (%zu bytes) is shorter than a Vulkan pipeline cache header", size);
    const uint32_t header_size = load<uint32_t>(payload), header_version = load<uint32_t>(payload + 4);
    const uint32_t vendor = load<uint32_t>(payload + 8), device = load<uint32_t>(payload + 12);
    if (header_size < kVkHeader || header_size > size)
        return format("its Vulkan header gives a header size of %u bytes (of %zu)", header_size, size);
    if (header_version != VK_PIPELINE_CACHE_HEADER_VERSION_ONE)
        return format("its Vulkan header has version %u, not %u", header_version, unsigned(VK_PIPELINE_CACHE_HEADER_VERSION_ONE));
    if (vendor != props.vendorID || device != props.deviceID)
        return format("it was written for vendor 0x%x device 0x%x, this is vendor 0x%x device 0x%x", vendor, device,
                      props.vendorID, props.deviceID);
    if (std::memcmp(payload + 16, props.pipelineCacheUUID, VK_UUID_SIZE) != 0)
        return "it was written by another driver build (its pipelineCacheUUID differs from the device's)";
    return "";
}

std::vector<uint8_t> read_pipeline_cache_file(const std::string& path, const VkPhysicalDeviceProperties& props,
                                              const Logger& log) {
    const std::string what = "pipeline cache " + path + ": ";
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
        if (ec) log.warn(what + "cannot be checked (" + ec.message() + "); starting with an empty cache");
        else log.info(what + "no file yet; it is written when the runtime is destroyed");
        return {};
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        log.warn(what + "cannot be opened (" + std::strerror(errno) + "); starting with an empty cache");
        return {};
    }
    in.seekg(0, std::ios::end);
    const std::streamoff file_size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (file_size < 0 || uint64_t(file_size) > kMaxPayload + kPipelineCacheFileHeader) {
        log.warn(what + "ignored: its size is not that of a pipeline cache; it will be replaced");
        return {};
    }
    std::vector<uint8_t> file(static_cast<size_t>(file_size));
    if (!file.empty() && !in.read(reinterpret_cast<char*>(file.data()), file_size)) {
        log.warn(what + "cannot be read; starting with an empty cache");
        return {};
    }
    auto reject = [&](const std::string& why, bool corrupt) {
        std::string m = what + "ignored: " + why + "; it will be replaced when the runtime is destroyed";
        if (corrupt) log.warn(m);
        else log.info(m);
        return std::vector<uint8_t>{};
    };
    if (file.size() < kPipelineCacheFileHeader)
        return reject(format("corrupt (%zu bytes, shorter than its header)", file.size()), true);
    if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) return reject("not a kvulkan pipeline cache (bad magic)", true);
    const uint32_t fmt = load<uint32_t>(&file[8]), writer = load<uint32_t>(&file[12]);
    const uint64_t payload_size = load<uint64_t>(&file[16]), hash = load<uint64_t>(&file[24]);
    if (fmt != kPipelineCacheFormat)
        return reject(format("file format %u, this library reads format %u", fmt, kPipelineCacheFormat), false);
    if (writer != KV_VERSION)
        return reject("stale: written by kvulkan " + version_string(writer) + ", this is " + version_string(KV_VERSION),
                      false);
    if (payload_size != file.size() - kPipelineCacheFileHeader)
        return reject(format("corrupt (its header announces %llu bytes of data, the file holds %zu)",
                             static_cast<unsigned long long>(payload_size), file.size() - kPipelineCacheFileHeader),
                      true);
    const uint8_t* payload = file.data() + kPipelineCacheFileHeader;
    if (fnv1a64(payload, size_t(payload_size)) != hash) return reject("corrupt (checksum mismatch)", true);
    const std::string mismatch = pipeline_cache_payload_mismatch(payload, size_t(payload_size), props);
    if (!mismatch.empty()) return reject("stale: " + mismatch, false);
    return std::vector<uint8_t>(payload, payload + payload_size);
}

std::vector<uint8_t> pipeline_cache_file_image(const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> file(kPipelineCacheFileHeader + payload.size());
    const uint32_t fmt = kPipelineCacheFormat, version = KV_VERSION;
    const uint64_t size = payload.size(), hash = fnv1a64(payload.data(), payload.size());
    std::memcpy(&file[0], kMagic, sizeof kMagic);
    std::memcpy(&file[8], &fmt, 4);
    std::memcpy(&file[12], &version, 4);
    std::memcpy(&file[16], &size, 8);
    std::memcpy(&file[24], &hash, 8);
    if (!payload.empty()) std::memcpy(&file[kPipelineCacheFileHeader], payload.data(), payload.size());
    return file;
}

bool write_pipeline_cache_file(const std::string& path, const std::vector<uint8_t>& payload, const Logger& log) {
    const std::vector<uint8_t> file = pipeline_cache_file_image(payload);
    // Beside the target (a rename within one file system is atomic), with a name no other writer
    // (another runtime or process on the same path) picks at the same time.
    std::random_device rd;
    const std::string tmp = format("%s.tmp-%08x%08x", path.c_str(), unsigned(rd()),
                                   unsigned(std::chrono::steady_clock::now().time_since_epoch().count()));
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (out) out.write(reinterpret_cast<const char*>(file.data()), std::streamsize(file.size()));
        if (out) out.flush();
        if (!out) {
            log.warn("pipeline cache " + path + ": cannot write " + tmp + " (" + std::strerror(errno) + "); not saved");
            out.close();
            std::error_code ignored;
            std::filesystem::remove(tmp, ignored);
            return false;
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        log.warn("pipeline cache " + path + ": cannot replace it (" + ec.message() + "); not saved");
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        return false;
    }
    return true;
}

}  // namespace kv::vk
