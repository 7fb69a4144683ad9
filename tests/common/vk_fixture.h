// Header-only fixture for tests of the internal Vulkan layer: an instance with validation (when
// installed) whose messages fail the test, the default device (KV_DEVICE may override), an
// allocator, a pipeline cache and an uploader.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "vk/select.h"
#include "vk/command.h"

namespace kvtest {

struct VkFixture {
    std::mutex mutex;
    std::vector<std::string> validation;
    kv::Logger logger;
    std::shared_ptr<kv::vk::Instance> instance;
    std::unique_ptr<kv::vk::Device> device;
    std::unique_ptr<kv::vk::Allocator> allocator;
    std::unique_ptr<kv::vk::PipelineCache> pipelines;
    std::unique_ptr<kv::vk::Uploader> uploader;

    static void on_log(void* user, kv_log_level level, const char* msg) {
        auto* self = static_cast<VkFixture*>(user);
        if (level == KV_LOG_VALIDATION) {
            std::lock_guard<std::mutex> lock(self->mutex);
            self->validation.push_back(msg);
        }
    }

    VkFixture() {
        logger.callback = &VkFixture::on_log;
        logger.user_data = this;
        instance = std::make_shared<kv::vk::Instance>(validation_layer_available(), logger);
        kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
        auto infos = kv::vk::describe_devices(*instance);
        int chosen = kv::vk::choose_device(desc, infos, true);
        device = std::make_unique<kv::vk::Device>(instance, instance->physical_devices()[size_t(chosen)]);
        allocator = std::make_unique<kv::vk::Allocator>(*device);
        pipelines = std::make_unique<kv::vk::PipelineCache>(*device);
        uploader = std::make_unique<kv::vk::Uploader>(*allocator);
    }

    ~VkFixture() {
        uploader.reset();
        pipelines.reset();
        allocator.reset();
        device.reset();
        instance.reset();
        for (auto& m : validation) FAIL_CHECK("validation message: " << m);
    }

    kv::vk::Buffer buffer(uint64_t bytes) { return kv::vk::Buffer(allocator.get(), bytes, kv::vk::MemoryUse::Device); }

    template <typename T>
    kv::vk::Buffer upload(const std::vector<T>& v) {
        kv::vk::Buffer b = buffer(v.size() * sizeof(T));
        uploader->upload(b, 0, v.data(), v.size() * sizeof(T));
        return b;
    }

    template <typename T>
    std::vector<T> download(const kv::vk::Buffer& b, size_t count) {
        std::vector<T> v(count);
        uploader->download(b, 0, v.data(), count * sizeof(T));
        return v;
    }
};

}  // namespace kvtest
