// kv_runtime_desc.pipeline_cache_path: the device's VkPipelineCache is saved at destroy and seeds
// the next runtime; a corrupt, truncated, stale (another device, driver or kvulkan version) or
// foreign file is ignored with a log message, the runtime works, and the file is replaced.
//
// What "compiled nothing" can be checked against: VkPipelineCreationFeedback (core in Vulkan 1.3)
// tells, per pipeline, whether the driver took it from the application's pipeline cache. lavapipe
// (Mesa 22.3) reports valid feedback but keeps nothing in VkPipelineCache (its data is the 32-byte
// header alone; Mesa's own shader disk cache plays that role), so there the hit count is 0 and
// the data cannot change; on a driver whose cache data holds pipelines, every pipeline of the
// second runtime must be a hit and the cache data must come back unchanged (any compile would add
// to it), which the test then asserts.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/helpers.h"
#include "engine/runtime.h"
#include "vk/pipeline_cache_file.h"

namespace {

using kvtest::ok;

const std::vector<kv_token> kPrompt = {1, 403, 407, 261, 378};

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kv-pipeline-cache-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    REQUIRE(f.good());
}

// A runtime on `cache_path` that keeps its log; validation messages fail the test.
class CachedRuntime {
public:
    explicit CachedRuntime(const std::string& cache_path) {
        kv_runtime_desc d = KV_RUNTIME_DESC_INIT;
        if (kvtest::validation_layer_available()) d.flags |= KV_RUNTIME_VALIDATION;
        d.log_callback = &CachedRuntime::on_log;
        d.log_user_data = this;
        d.pipeline_cache_path = cache_path.c_str();
        ok(kv_runtime_create(&d, &rt_));
    }
    ~CachedRuntime() { destroy(); }
    void destroy() {
        kv_runtime_destroy(rt_);
        rt_ = nullptr;
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& m : validation_) FAIL_CHECK("validation message: " << m);
        validation_.clear();
    }
    kv_runtime* get() const { return rt_; }
    bool logged(const std::string& needle) const {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& m : log_)
            if (m.find(needle) != std::string::npos) return true;
        return false;
    }
    std::string log() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string all;
        for (const auto& m : log_) all += m + "\n";
        return all;
    }

private:
    static void on_log(void* user, kv_log_level level, const char* msg) {
        auto* self = static_cast<CachedRuntime*>(user);
        std::lock_guard<std::mutex> lock(self->mutex_);
        (level == KV_LOG_VALIDATION ? self->validation_ : self->log_).push_back(msg);
    }
    kv_runtime* rt_ = nullptr;
    mutable std::mutex mutex_;
    std::vector<std::string> log_, validation_;
};

// Greedy tokens of stories260K after the prompt, on `rt`.
std::vector<kv_token> run_model(kv_runtime* rt, uint32_t n) {
    kvtest::Model m(rt, kvtest::shared_dir() + "/models/stories260K/stories260K.gguf");
    kvtest::Session s(m);
    s.prefill(kPrompt);
    return s.greedy(int(n));
}

// Runs the bandwidth probe (a few pipelines) as a quick check that the runtime works.
void probe(kv_runtime* rt) {
    kv_bandwidth_result r{};
    r.struct_size = sizeof r;
    ok(kv_runtime_measure_bandwidth(rt, 4096, 1, &r));
    CHECK(r.read_gbps > 0);
}

// The file at `path` is a valid cache for the device of `props`.
void check_valid_file(const std::string& path, const VkPhysicalDeviceProperties& props) {
    std::vector<uint8_t> f = read_bytes(path);
    REQUIRE(f.size() >= kv::vk::kPipelineCacheFileHeader);
    CHECK(std::memcmp(f.data(), "KVPCACHE", 8) == 0);
    uint32_t fmt = 0, version = 0;
    uint64_t size = 0;
    std::memcpy(&fmt, &f[8], 4);
    std::memcpy(&version, &f[12], 4);
    std::memcpy(&size, &f[16], 8);
    CHECK(fmt == kv::vk::kPipelineCacheFormat);
    CHECK(version == KV_VERSION);
    CHECK(size == f.size() - kv::vk::kPipelineCacheFileHeader);
    const uint8_t* payload = f.data() + kv::vk::kPipelineCacheFileHeader;
    CHECK(kv::vk::pipeline_cache_payload_mismatch(payload, size_t(size), props) == "");
    uint32_t vendor = 0, device = 0;
    std::memcpy(&vendor, payload + 8, 4);
    std::memcpy(&device, payload + 12, 4);
    CHECK(vendor == props.vendorID);
    CHECK(device == props.deviceID);
    CHECK(std::memcmp(payload + 16, props.pipelineCacheUUID, VK_UUID_SIZE) == 0);
}

}  // namespace

TEST_CASE("pipeline cache: saved at destroy, loaded by the next runtime, which compiles nothing new") {
    if (!kvtest::require_shared()) return;
    TempDir dir;
    const std::string path = dir.path + "/pipelines.kvpc";
    VkPhysicalDeviceProperties props{};
    std::vector<kv_token> first;
    kv::vk::PipelineCache::Stats cold;
    {
        CachedRuntime rt(path);
        CHECK(rt.logged("no file yet"));
        first = run_model(rt.get(), 8);
        props = rt.get()->device->properties();
        cold = rt.get()->pipelines->stats();
        rt.destroy();
        CHECK_MESSAGE(rt.logged("bytes saved"), rt.log());
    }
    REQUIRE(cold.created > 0);
    CHECK(cold.from_cache + cold.compiled + cold.no_feedback == cold.created);
    check_valid_file(path, props);
    const std::vector<uint8_t> saved = read_bytes(path);
    const size_t payload = saved.size() - kv::vk::kPipelineCacheFileHeader;

    CachedRuntime rt(path);
    CHECK_MESSAGE(rt.logged(std::to_string(payload) + " bytes of pipeline data loaded"), rt.log());
    CHECK(rt.get()->pipeline_cache_seed.size() == payload);
    CHECK(run_model(rt.get(), 8) == first);
    const kv::vk::PipelineCache::Stats warm = rt.get()->pipelines->stats();
    CHECK(warm.created == cold.created);  // the same pipelines were needed
    const bool feedback = rt.get()->device->enabled().creation_feedback;
    if (feedback) {
        CHECK(cold.no_feedback == 0);
        CHECK(warm.no_feedback == 0);
    }
    // A driver whose cache data holds pipelines (more than its 32-byte header): every pipeline
    // of the second runtime came from it, nothing was compiled.
    const bool driver_caches = payload > 32;
    if (driver_caches && feedback) {
        CHECK(warm.from_cache == warm.created);
        CHECK(warm.compiled == 0);
    }
    if (!driver_caches)
        MESSAGE("this driver (" << props.deviceName << ") keeps no pipelines in VkPipelineCache (" << payload
                                << " bytes): the hit count cannot be checked here (" << warm.from_cache << " of "
                                << warm.created << " from the cache)");
    // Nothing new entered the cache, so the file is not rewritten.
    rt.destroy();
    CHECK_MESSAGE(rt.logged("unchanged, not rewritten"), rt.log());
    CHECK(read_bytes(path) == saved);
}

TEST_CASE("pipeline cache: a corrupt, stale or foreign file is ignored with a message and replaced") {
    TempDir dir;
    const std::string path = dir.path + "/pipelines.kvpc";
    VkPhysicalDeviceProperties props{};
    {
        CachedRuntime rt(path);
        probe(rt.get());
        props = rt.get()->device->properties();
    }
    const std::vector<uint8_t> good = read_bytes(path);
    REQUIRE(good.size() > kv::vk::kPipelineCacheFileHeader + 16);
    const std::vector<uint8_t> payload(good.begin() + kv::vk::kPipelineCacheFileHeader, good.end());

    struct Case {
        const char* name;
        std::vector<uint8_t> file;
        const char* message;
    };
    std::vector<Case> cases;
    cases.push_back({"empty file", {}, "shorter than its header"});
    cases.push_back({"not a cache", std::vector<uint8_t>(100, 'x'), "bad magic"});
    cases.push_back({"truncated", std::vector<uint8_t>(good.begin(), good.end() - 7), "the file holds"});
    {
        std::vector<uint8_t> f = good;
        f.back() ^= 0x5A;
        cases.push_back({"a flipped byte", f, "checksum mismatch"});
    }
    {
        std::vector<uint8_t> f = good;
        uint32_t other = KV_MAKE_VERSION(0, 1, 0);
        std::memcpy(&f[12], &other, 4);
        cases.push_back({"another kvulkan version", f, "written by kvulkan 0.1.0"});
    }
    {
        std::vector<uint8_t> p = payload;
        p[16] ^= 0xFF;  // pipelineCacheUUID: a driver update
        cases.push_back({"another driver build", kv::vk::pipeline_cache_file_image(p), "pipelineCacheUUID"});
    }
    {
        std::vector<uint8_t> p = payload;
        uint32_t vendor = props.vendorID + 1;
        std::memcpy(&p[8], &vendor, 4);
        cases.push_back({"another device", kv::vk::pipeline_cache_file_image(p), "it was written for vendor"});
    }
    {
        std::vector<uint8_t> p = payload;
        uint32_t header_size = uint32_t(p.size()) + 1;
        std::memcpy(&p[0], &header_size, 4);
        cases.push_back({"a bad Vulkan header", kv::vk::pipeline_cache_file_image(p), "header size"});
    }
    cases.push_back({"no Vulkan header", kv::vk::pipeline_cache_file_image({1, 2, 3}), "shorter than a Vulkan"});

    for (const Case& c : cases) {
        CAPTURE(c.name);
        write_bytes(path, c.file);
        CachedRuntime rt(path);
        CHECK_MESSAGE(rt.logged(c.message), rt.log());
        CHECK(rt.logged("ignored"));
        CHECK(rt.get()->pipeline_cache_seed.empty());  // nothing reached the driver
        probe(rt.get());
        rt.destroy();
        CHECK(rt.logged("bytes saved"));
        check_valid_file(path, props);  // replaced by a good one
    }

    // A path that cannot be written: the runtime works, destroy says why nothing was saved.
    {
        const std::string nowhere = dir.path + "/no/such/dir/pipelines.kvpc";
        CachedRuntime rt(nowhere);
        probe(rt.get());
        rt.destroy();
        CHECK_MESSAGE(rt.logged("not saved"), rt.log());
        CHECK_FALSE(kvtest::file_exists(nowhere));
    }
    // No temporary file is left behind.
    std::string listing;
    {
        FILE* p = popen(("ls -A '" + dir.path + "'").c_str(), "r");
        REQUIRE(p);
        char buf[256];
        while (fgets(buf, sizeof buf, p)) listing += buf;
        pclose(p);
    }
    CHECK(listing == "pipelines.kvpc\n");
}
