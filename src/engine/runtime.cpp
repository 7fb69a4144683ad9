#include "engine/runtime.h"

#include <string>

#include "vk/pipeline_cache_file.h"

kv_runtime::~kv_runtime() {
    worker.reset();  // the submitted work first, while everything it uses exists
    kv::engine::save_pipeline_cache(*this);
    pipelines.reset();
    allocator.reset();
    device.reset();
    instance.reset();
}

namespace kv::engine {

std::unique_ptr<kv_runtime> create_runtime(const kv_runtime_desc& desc) {
    auto rt = std::make_unique<kv_runtime>();
    rt->logger.callback = desc.log_callback;
    rt->logger.user_data = desc.log_user_data;
    bool use_env = !(desc.flags & KV_RUNTIME_IGNORE_ENVIRONMENT);

    if (desc.vk_device || desc.vk_instance || desc.vk_physical_device || desc.vk_queue) {
        if (!desc.vk_instance || !desc.vk_physical_device || !desc.vk_device || !desc.vk_queue)
            fail(KV_ERR_INVALID_ARGUMENT,
                 "adopting a Vulkan device needs vk_instance, vk_physical_device, vk_device and vk_queue all set");
        rt->instance = std::make_shared<vk::Instance>(static_cast<VkInstance>(desc.vk_instance),
                                                      desc.vk_api_version, rt->logger);
        rt->device = std::make_unique<vk::Device>(
            rt->instance, static_cast<VkPhysicalDevice>(desc.vk_physical_device),
            static_cast<VkDevice>(desc.vk_device), static_cast<VkQueue>(desc.vk_queue), desc.vk_queue_family,
            desc.vk_timeline_semaphore != 0);
        if (desc.queue_priority != 0.f || desc.global_priority != 0)
            rt->logger.info("queue_priority / global_priority ignored: the host's queue keeps its own priority");
    } else {
        rt->instance = std::make_shared<vk::Instance>(validation_requested(desc), rt->logger);
        auto infos = describe_devices(*rt->instance);
        int chosen = choose_device(desc, infos, use_env);
        auto pds = rt->instance->physical_devices();
        vk::QueueRequest request;
        if (!(desc.queue_priority >= 0.f && desc.queue_priority <= 1.f))  // NaN too
            fail(KV_ERR_INVALID_ARGUMENT, "queue_priority %g is outside [0, 1] (0: the default, 1.0)",
                 double(desc.queue_priority));
        if (desc.queue_priority > 0.f) request.priority = desc.queue_priority;
        switch (desc.global_priority) {
            case KV_GLOBAL_PRIORITY_NONE: case KV_GLOBAL_PRIORITY_LOW: case KV_GLOBAL_PRIORITY_MEDIUM:
            case KV_GLOBAL_PRIORITY_HIGH: case KV_GLOBAL_PRIORITY_REALTIME: break;
            default:
                fail(KV_ERR_INVALID_ARGUMENT, "global_priority %u is not a KV_GLOBAL_PRIORITY_* value",
                     desc.global_priority);
        }
        request.global_priority = desc.global_priority;
        rt->device = std::make_unique<vk::Device>(rt->instance, pds[static_cast<size_t>(chosen)], request);
        rt->logger.info(std::string("kvulkan: using device ") + infos[static_cast<size_t>(chosen)].device_name);
    }
    if (desc.gpu_budget_us) {
        if (rt->device->timestamps()) {
            rt->gpu_budget_us = desc.gpu_budget_us;
            rt->logger.info(format("GPU budget: submissions of at most about %u us", desc.gpu_budget_us));
        } else {
            rt->logger.warn(format("gpu_budget_us %u ignored: the device's queue has no timestamps to measure "
                                   "the cost of a layer with", desc.gpu_budget_us));
        }
    }
    rt->allocator = std::make_unique<vk::Allocator>(*rt->device);
    rt->allocator->set_limit(desc.memory_budget);
    if (desc.pipeline_cache_path && *desc.pipeline_cache_path) {
        rt->pipeline_cache_path = desc.pipeline_cache_path;
        std::vector<uint8_t> seed =
            vk::read_pipeline_cache_file(rt->pipeline_cache_path, rt->device->properties(), rt->logger);
        if (!seed.empty()) {
            if (rt->device->seed_pipeline_cache(seed)) {
                rt->logger.info(format("pipeline cache %s: %zu bytes of pipeline data loaded",
                                       rt->pipeline_cache_path.c_str(), seed.size()));
                rt->pipeline_cache_seed = std::move(seed);
            } else {
                rt->logger.warn("pipeline cache " + rt->pipeline_cache_path +
                                ": the driver rejected its data; starting with an empty cache, replaced at destroy");
            }
        }
    }
    rt->pipelines = std::make_unique<vk::PipelineCache>(*rt->device);
    return rt;
}

void save_pipeline_cache(kv_runtime& rt) noexcept {
    if (rt.pipeline_cache_path.empty() || !rt.device) return;
    try {
        if (rt.device->lost()) {
            rt.logger.warn("pipeline cache " + rt.pipeline_cache_path + ": not saved (the device was lost)");
            return;
        }
        const std::vector<uint8_t> data = rt.device->pipeline_cache_data();
        vk::PipelineCache::Stats st = rt.pipelines ? rt.pipelines->stats() : vk::PipelineCache::Stats{};
        std::string counts = format("%llu pipelines created in %.1f ms (%llu from the cache, %llu compiled, %llu "
                                    "without driver feedback)",
                                    (unsigned long long)st.created, st.create_ms, (unsigned long long)st.from_cache,
                                    (unsigned long long)st.compiled, (unsigned long long)st.no_feedback);
        if (data == rt.pipeline_cache_seed) {
            rt.logger.info("pipeline cache " + rt.pipeline_cache_path + ": unchanged, not rewritten; " + counts);
            return;
        }
        if (vk::write_pipeline_cache_file(rt.pipeline_cache_path, data, rt.logger))
            rt.logger.info(format("pipeline cache %s: %zu bytes saved; ", rt.pipeline_cache_path.c_str(), data.size()) +
                           counts);
    } catch (const std::exception& e) {
        rt.logger.warn("pipeline cache " + rt.pipeline_cache_path + ": not saved (" + e.what() + ")");
    } catch (...) {
        rt.logger.warn("pipeline cache " + rt.pipeline_cache_path + ": not saved");
    }
}

}  // namespace kv::engine
