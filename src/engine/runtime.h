// kv_runtime: the Vulkan instance, device, memory allocator and pipeline cache of one GPU.
// Destruction order is the reverse of the members' order below.
#pragma once

#include <kvulkan/kvulkan.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "engine/worker.h"
#include "vk/command.h"
#include "vk/device.h"
#include "vk/memory.h"
#include "vk/pipeline.h"
#include "vk/select.h"

struct kv_runtime {
    kv::Logger logger;
    std::shared_ptr<kv::vk::Instance> instance;
    std::unique_ptr<kv::vk::Device> device;
    std::unique_ptr<kv::vk::Allocator> allocator;
    std::unique_ptr<kv::vk::PipelineCache> pipelines;
    std::mutex mutex;  // serializes runtime-level work (bandwidth probe, uploads)
    // The thread of the kv_submit_* calls, started by the first (guarded by worker_mutex); the
    // destructor ends it first, finishing the queued work while the device still exists.
    std::mutex worker_mutex;
    std::unique_ptr<kv::engine::Worker> worker;
    // kv_runtime_desc.pipeline_cache_path ("" : none) and the data the device's VkPipelineCache
    // was seeded with from it (empty when the file was absent or unusable): the destructor writes
    // the cache back when its data differs.
    std::string pipeline_cache_path;
    std::vector<uint8_t> pipeline_cache_seed;
    // kv_runtime_desc.gpu_budget_us in effect (0: off, or the device has no timestamps).
    uint32_t gpu_budget_us = 0;

    ~kv_runtime();
};

namespace kv::engine {

using vk::choose_device;
using vk::describe_devices;
using vk::validation_requested;

std::unique_ptr<kv_runtime> create_runtime(const kv_runtime_desc& desc);

// Writes the device's VkPipelineCache to rt.pipeline_cache_path when it has one and the data
// changed since it was seeded (see kv_runtime_desc.pipeline_cache_path). Never throws: failures are
// logged. Called by ~kv_runtime.
void save_pipeline_cache(kv_runtime& rt) noexcept;

// Bandwidth probe (compute-shader read, write and copy), see kv_runtime_measure_bandwidth.
kv_bandwidth_result measure_bandwidth(kv_runtime& rt, uint64_t bytes, uint32_t iterations);

}  // namespace kv::engine
