#include "engine/runtime.h"

#include <string>

kv_runtime::~kv_runtime() {
    worker.reset();  // the submitted work first, while everything it uses exists
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
            static_cast<VkDevice>(desc.vk_device), static_cast<VkQueue>(desc.vk_queue), desc.vk_queue_family);
    } else {
        rt->instance = std::make_shared<vk::Instance>(validation_requested(desc), rt->logger);
        auto infos = describe_devices(*rt->instance);
        int chosen = choose_device(desc, infos, use_env);
        auto pds = rt->instance->physical_devices();
        rt->device = std::make_unique<vk::Device>(rt->instance, pds[static_cast<size_t>(chosen)]);
        rt->logger.info(std::string("kvulkan: using device ") + infos[static_cast<size_t>(chosen)].device_name);
    }
    rt->allocator = std::make_unique<vk::Allocator>(*rt->device);
    rt->allocator->set_limit(desc.memory_budget);
    rt->pipelines = std::make_unique<vk::PipelineCache>(*rt->device);
    return rt;
}

}  // namespace kv::engine
