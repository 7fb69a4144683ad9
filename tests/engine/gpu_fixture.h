// A device for tests of the internal GPU API (src/vk, src/engine/kernels): instance with the
// validation layer when installed, default device (KV_DEVICE = index or name substring
// overrides), allocator, pipeline cache, uploader and one command stream. Every validation
// message is collected and fails the test when the fixture is destroyed.
#pragma once

#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "vk/command.h"
#include "vk/device.h"
#include "vk/memory.h"
#include "vk/pipeline.h"

namespace kvtest {

class Gpu {
public:
    Gpu() {
        validation_ = validation_layer_available();
        if (!validation_) MESSAGE("validation layer not installed: running without it");
        logger_.callback = &Gpu::on_log;
        logger_.user_data = this;
        instance_ = std::make_shared<kv::vk::Instance>(validation_, logger_);
        if (validation_) REQUIRE_MESSAGE(instance_->validation(), "validation layer not active");
        std::vector<VkPhysicalDevice> pds = instance_->physical_devices();
        REQUIRE_MESSAGE(!pds.empty(), "no Vulkan device");
        std::vector<kv_device_info> infos(pds.size());
        for (size_t i = 0; i < pds.size(); ++i) {
            infos[i] = kv_device_info{};
            infos[i].struct_size = sizeof(kv_device_info);
            infos[i].index = static_cast<uint32_t>(i);
            kv::vk::describe_physical_device(instance_->handle(), pds[i], &infos[i]);
        }
        int pick = kv::vk::pick_default_device(infos);
        if (const char* env = std::getenv("KV_DEVICE"); env && *env) {
            char* end = nullptr;
            long idx = std::strtol(env, &end, 10);
            if (end && *end == 0) {
                REQUIRE_MESSAGE((idx >= 0 && size_t(idx) < pds.size()), "KV_DEVICE out of range");
                pick = static_cast<int>(idx);
            } else {
                pick = -1;
                for (size_t i = 0; i < infos.size() && pick < 0; ++i)
                    if (std::strstr(infos[i].device_name, env)) pick = static_cast<int>(i);
                REQUIRE_MESSAGE(pick >= 0, "no device matches KV_DEVICE=" << env);
            }
        }
        REQUIRE(pick >= 0);
        MESSAGE("device: " << infos[pick].device_name);
        device_ = std::make_unique<kv::vk::Device>(instance_, pds[pick]);
        allocator_ = std::make_unique<kv::vk::Allocator>(*device_);
        pipelines_ = std::make_unique<kv::vk::PipelineCache>(*device_);
        uploader_ = std::make_unique<kv::vk::Uploader>(*allocator_);
        stream_ = std::make_unique<kv::vk::CommandStream>(*device_);
    }

    ~Gpu() {
        stream_.reset();
        uploader_.reset();
        pipelines_.reset();
        allocator_.reset();
        device_.reset();
        instance_.reset();
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& m : messages_) FAIL_CHECK("validation: " << m);
    }
    Gpu(const Gpu&) = delete;
    Gpu& operator=(const Gpu&) = delete;

    kv::vk::Device& device() { return *device_; }
    kv::vk::Allocator& allocator() { return *allocator_; }
    kv::vk::PipelineCache& pipelines() { return *pipelines_; }
    kv::vk::Uploader& uploader() { return *uploader_; }
    bool validation() const { return validation_; }

    // A device buffer holding `v`.
    kv::vk::Buffer upload(const std::vector<float>& v) {
        return upload_bytes(v.data(), v.size() * sizeof(float));
    }
    kv::vk::Buffer upload_bytes(const void* data, size_t bytes) {
        kv::vk::Buffer b(allocator_.get(), bytes, kv::vk::MemoryUse::Device);
        uploader_->upload(b, 0, data, bytes);
        return b;
    }
    // An uninitialised device buffer of `n` floats.
    kv::vk::Buffer output(size_t n) {
        return kv::vk::Buffer(allocator_.get(), n * sizeof(float), kv::vk::MemoryUse::Device);
    }
    std::vector<float> download(const kv::vk::Buffer& b, size_t n) {
        std::vector<float> v(n);
        uploader_->download(b, 0, v.data(), n * sizeof(float));
        return v;
    }

    // Records: barrier (uploads -> kernels), NaN fill of every `poison` range, barrier, the
    // kernels `record` writes, barrier (kernels -> downloads); submits and waits.
    void run(std::initializer_list<kv::vk::BufferRange> poison,
             const std::function<void(kv::vk::CommandStream&)>& record) {
        kv::vk::CommandStream& cs = *stream_;
        cs.begin();
        cs.barrier();
        for (const kv::vk::BufferRange& r : poison) cs.fill(r, kNaN);
        cs.barrier();
        record(cs);
        cs.barrier();
        cs.submit_and_wait();
    }

    static constexpr uint32_t kNaN = 0x7FC00000u;  // quiet NaN bit pattern

private:
    static void on_log(void* user, kv_log_level level, const char* msg) {
        if (level != KV_LOG_VALIDATION) return;
        auto* self = static_cast<Gpu*>(user);
        std::lock_guard<std::mutex> lock(self->mutex_);
        self->messages_.push_back(msg);
    }

    bool validation_ = false;
    kv::Logger logger_;
    std::mutex mutex_;
    std::vector<std::string> messages_;
    std::shared_ptr<kv::vk::Instance> instance_;
    std::unique_ptr<kv::vk::Device> device_;
    std::unique_ptr<kv::vk::Allocator> allocator_;
    std::unique_ptr<kv::vk::PipelineCache> pipelines_;
    std::unique_ptr<kv::vk::Uploader> uploader_;
    std::unique_ptr<kv::vk::CommandStream> stream_;
};

inline size_t count_nan(const std::vector<float>& v) {
    size_t n = 0;
    for (float x : v) n += std::isnan(x) ? 1 : 0;
    return n;
}

}  // namespace kvtest
