// Compute pipelines from embedded SPIR-V. Every kvulkan shader uses one descriptor set whose
// bindings 0..N-1 are storage buffers, push constants for per-dispatch scalars, and
// specialization constants (constant_id 0, 1, ...) for sizes fixed at pipeline creation.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vk/device.h"

namespace kv::vk {

struct PipelineDesc {
    std::string shader;                // embedded variant name
    uint32_t bindings = 0;             // storage-buffer count
    uint32_t push_constant_bytes = 0;  // <= 128 (the guaranteed minimum)
    std::vector<uint32_t> spec;        // specialization constants 0..n-1 (32-bit each)
    uint32_t required_subgroup_size = 0;  // 0: driver's choice

    bool operator<(const PipelineDesc& o) const;
};

class Pipeline {
public:
    Pipeline(Device& device, const PipelineDesc& desc);
    ~Pipeline();
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;

    VkPipeline handle() const { return pipeline_; }
    VkPipelineLayout layout() const { return layout_; }
    VkDescriptorSetLayout set_layout() const { return set_layout_; }
    const PipelineDesc& desc() const { return desc_; }
    // Creation feedback (Enabled::creation_feedback): the driver reported on this pipeline's
    // creation, and whether it came from the device's VkPipelineCache without compiling.
    bool feedback_valid() const { return feedback_valid_; }
    bool from_cache() const { return from_cache_; }
    double create_ms() const { return create_ms_; }  // wall time of vkCreateComputePipelines

private:
    void release();

    Device& device_;
    PipelineDesc desc_;
    VkShaderModule module_ = VK_NULL_HANDLE;
    VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
    VkPipelineLayout layout_ = VK_NULL_HANDLE;
    VkPipeline pipeline_ = VK_NULL_HANDLE;
    bool feedback_valid_ = false, from_cache_ = false;
    double create_ms_ = 0;
};

// All pipelines of a device, created on first use and kept for the device's life, through the
// device's VkPipelineCache (seeded from kv_runtime_desc.pipeline_cache_path). Thread-safe.
class PipelineCache {
public:
    explicit PipelineCache(Device& device) : device_(device) {}
    Pipeline& get(const PipelineDesc& desc);
    size_t size() const;

    // Pipelines created so far and what the driver said about them (creation feedback):
    // from_cache + compiled + no_feedback == created.
    struct Stats {
        uint64_t created = 0;
        uint64_t from_cache = 0;   // taken from the VkPipelineCache, nothing compiled
        uint64_t compiled = 0;     // the driver reported no cache hit
        uint64_t no_feedback = 0;  // the driver gave no valid feedback (or it is not enabled)
        double create_ms = 0;      // total wall time of their creation
    };
    Stats stats() const;

private:
    Device& device_;
    mutable std::mutex mutex_;
    std::map<PipelineDesc, std::unique_ptr<Pipeline>> pipelines_;
    Stats stats_;
};

}  // namespace kv::vk
