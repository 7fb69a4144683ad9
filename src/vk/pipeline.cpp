#include "vk/pipeline.h"

#include <chrono>
#include <tuple>

#include "vk/shader_registry.h"

namespace kv::vk {

bool PipelineDesc::operator<(const PipelineDesc& o) const {
    return std::tie(shader, bindings, push_constant_bytes, spec, required_subgroup_size) <
           std::tie(o.shader, o.bindings, o.push_constant_bytes, o.spec, o.required_subgroup_size);
}

Pipeline::Pipeline(Device& device, const PipelineDesc& desc) : device_(device), desc_(desc) {
    const SpirvBlob* blob = find_spirv(desc.shader.c_str());
    if (!blob) fail(KV_ERR_INTERNAL, "no embedded shader named '%s'", desc.shader.c_str());
    if (desc.push_constant_bytes > device.limits().maxPushConstantsSize)
        fail(KV_ERR_INTERNAL, "shader %s needs %u push-constant bytes; the device allows %u",
             desc.shader.c_str(), desc.push_constant_bytes, device.limits().maxPushConstantsSize);
    VkDevice dev = device.handle();
    try {
        VkShaderModuleCreateInfo mci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
        mci.codeSize = blob->size;
        mci.pCode = reinterpret_cast<const uint32_t*>(blob->data);
        KV_VK(vkCreateShaderModule(dev, &mci, nullptr, &module_));

        std::vector<VkDescriptorSetLayoutBinding> b(desc.bindings);
        for (uint32_t i = 0; i < desc.bindings; ++i) {
            b[i] = {};
            b[i].binding = i;
            b[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            b[i].descriptorCount = 1;
            b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
        }
        VkDescriptorSetLayoutCreateInfo sci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
        sci.bindingCount = desc.bindings;
        sci.pBindings = b.data();
        KV_VK(vkCreateDescriptorSetLayout(dev, &sci, nullptr, &set_layout_));

        VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, desc.push_constant_bytes};
        VkPipelineLayoutCreateInfo lci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
        lci.setLayoutCount = 1;
        lci.pSetLayouts = &set_layout_;
        lci.pushConstantRangeCount = desc.push_constant_bytes ? 1 : 0;
        lci.pPushConstantRanges = &pcr;
        KV_VK(vkCreatePipelineLayout(dev, &lci, nullptr, &layout_));

        std::vector<VkSpecializationMapEntry> entries(desc.spec.size());
        for (uint32_t i = 0; i < desc.spec.size(); ++i)
            entries[i] = {i, static_cast<uint32_t>(i * sizeof(uint32_t)), sizeof(uint32_t)};
        VkSpecializationInfo si{};
        si.mapEntryCount = static_cast<uint32_t>(entries.size());
        si.pMapEntries = entries.data();
        si.dataSize = desc.spec.size() * sizeof(uint32_t);
        si.pData = desc.spec.data();

        VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rss{
            VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
        VkComputePipelineCreateInfo pci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
        pci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
        pci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
        pci.stage.module = module_;
        pci.stage.pName = "main";
        pci.stage.pSpecializationInfo = desc.spec.empty() ? nullptr : &si;
        if (desc.required_subgroup_size) {
            if (!device.enabled().subgroup_size_control)
                fail(KV_ERR_INTERNAL, "shader %s requires a subgroup size but subgroup size control is off",
                     desc.shader.c_str());
            rss.requiredSubgroupSize = desc.required_subgroup_size;
            pci.stage.pNext = &rss;
        }
        pci.layout = layout_;
        VkPipelineCreationFeedback feedback{};
        VkPipelineCreationFeedbackCreateInfo fci{VK_STRUCTURE_TYPE_PIPELINE_CREATION_FEEDBACK_CREATE_INFO};
        fci.pPipelineCreationFeedback = &feedback;
        if (device.enabled().creation_feedback) pci.pNext = &fci;
        const auto t0 = std::chrono::steady_clock::now();
        KV_VK(vkCreateComputePipelines(dev, device.pipeline_cache(), 1, &pci, nullptr, &pipeline_));
        create_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        feedback_valid_ = (feedback.flags & VK_PIPELINE_CREATION_FEEDBACK_VALID_BIT) != 0;
        from_cache_ = feedback_valid_ && (feedback.flags & VK_PIPELINE_CREATION_FEEDBACK_APPLICATION_PIPELINE_CACHE_HIT_BIT);
    } catch (...) {
        release();
        throw;
    }
}

Pipeline::~Pipeline() { release(); }

void Pipeline::release() {
    VkDevice dev = device_.handle();
    if (pipeline_) vkDestroyPipeline(dev, pipeline_, nullptr);
    if (layout_) vkDestroyPipelineLayout(dev, layout_, nullptr);
    if (set_layout_) vkDestroyDescriptorSetLayout(dev, set_layout_, nullptr);
    if (module_) vkDestroyShaderModule(dev, module_, nullptr);
    pipeline_ = VK_NULL_HANDLE;
    layout_ = VK_NULL_HANDLE;
    set_layout_ = VK_NULL_HANDLE;
    module_ = VK_NULL_HANDLE;
}

Pipeline& PipelineCache::get(const PipelineDesc& desc) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pipelines_.find(desc);
    if (it != pipelines_.end()) return *it->second;
    auto p = std::make_unique<Pipeline>(device_, desc);
    Pipeline& ref = *p;
    pipelines_.emplace(desc, std::move(p));
    ++stats_.created;
    stats_.create_ms += ref.create_ms();
    if (!ref.feedback_valid()) ++stats_.no_feedback;
    else if (ref.from_cache()) ++stats_.from_cache;
    else ++stats_.compiled;
    return ref;
}

size_t PipelineCache::size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return pipelines_.size();
}

PipelineCache::Stats PipelineCache::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

}  // namespace kv::vk
