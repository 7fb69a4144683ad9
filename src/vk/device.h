// Vulkan instance + physical device + logical device + compute queue, owned or adopted.
//
// Ownership: a Device created from scratch owns (and destroys) its VkInstance and VkDevice. An
// adopted device borrows the host's handles (owns_instance_/owns_device_ false) and never destroys
// them — Kompute's mFreeDevice pattern.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "vk/fault_injection.h"
#include "vk/vk_common.h"

namespace kv::vk {

// Optional capabilities actually enabled on the logical device (what shaders may use). On an
// adopted device nothing optional is assumed enabled: kvulkan falls back to Vulkan 1.1 core.
struct Enabled {
    bool float16 = false;        // shaderFloat16
    bool storage16 = false;      // storageBuffer16BitAccess
    bool storage8 = false;       // storageBuffer8BitAccess
    bool int8 = false;           // shaderInt8
    bool int64 = false;          // shaderInt64
    bool integer_dot = false;    // VK_KHR_shader_integer_dot_product
    bool coopmat_nv = false;     // VK_NV_cooperative_matrix
    bool subgroup_size_control = false;
    bool memory_budget = false;  // VK_EXT_memory_budget
    // VkPipelineCreationFeedback (core in 1.3, else VK_EXT_pipeline_creation_feedback): whether a
    // pipeline came from the VkPipelineCache; counted by vk::PipelineCache.
    bool creation_feedback = false;
    // Timeline semaphores (core in 1.2, else VK_KHR_timeline_semaphore): the device's
    // timeline_semaphore() exists and every submission signals it. On an adopted device only when
    // the host says it enabled the feature (kv_runtime_desc.vk_timeline_semaphore).
    bool timeline_semaphore = false;
};

// What the runtime asks of the queue it creates (ignored on an adopted device).
struct QueueRequest {
    float priority = 1.0f;         // VkDeviceQueueCreateInfo::pQueuePriorities[0], in [0, 1]
    uint32_t global_priority = 0;  // VkQueueGlobalPriorityKHR (128 low .. 1024 realtime); 0: none
};

// What the queue got: kv_device_info's queue fields.
struct QueueGrant {
    float priority = 0.f;          // 0 on an adopted queue (not known)
    uint32_t global_priority = 0;  // 0: none requested, or the driver offers none / refused it
    bool dedicated_compute = false;  // its family has compute and no graphics
};

class Instance {
public:
    // Creates an instance (validation layer + debug messenger when `validation`).
    Instance(bool validation, const Logger& logger);
    // Adopts a host instance (borrowed).
    Instance(VkInstance adopted, uint32_t api_version, const Logger& logger);
    ~Instance();
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;

    VkInstance handle() const { return instance_; }
    uint32_t api_version() const { return api_version_; }
    bool validation() const { return messenger_ != VK_NULL_HANDLE; }
    uint64_t validation_messages() const { return validation_messages_.load(); }
    const Logger& logger() const { return logger_; }

    std::vector<VkPhysicalDevice> physical_devices() const;

private:
    static VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(
        VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
        const VkDebugUtilsMessengerCallbackDataEXT* data, void* user);

    VkInstance instance_ = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
    uint32_t api_version_ = VK_API_VERSION_1_1;
    bool owned_ = true;
    Logger logger_;
    std::atomic<uint64_t> validation_messages_{0};
};

// Fills everything in `info` that describes `pd` (struct_size and index are left to the caller).
void describe_physical_device(VkInstance instance, VkPhysicalDevice pd, kv_device_info* info);

// Index into `devices` of the default choice: discrete > integrated > virtual > CPU > other.
int pick_default_device(const std::vector<kv_device_info>& devices);

class Device {
public:
    // Creates a logical device with one compute queue on `pd` (of a compute family without
    // graphics when there is one), enabling the optional features the device supports. A global
    // priority the driver does not offer or refuses is dropped with a log line, never an error.
    Device(std::shared_ptr<Instance> instance, VkPhysicalDevice pd, const QueueRequest& request = {});
    // Adopts the host's device and queue (borrowed). `host_timeline`: the host created the device
    // with the timelineSemaphore feature enabled.
    Device(std::shared_ptr<Instance> instance, VkPhysicalDevice pd, VkDevice device, VkQueue queue,
           uint32_t queue_family, bool host_timeline = false);
    ~Device();
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    VkDevice handle() const { return device_; }
    VkPhysicalDevice physical() const { return physical_; }
    VkQueue queue() const { return queue_; }
    uint32_t queue_family() const { return queue_family_; }
    Instance& instance() const { return *instance_; }
    const Logger& logger() const { return instance_->logger(); }
    bool adopted() const { return !owns_device_; }

    const Enabled& enabled() const { return enabled_; }
    const VkPhysicalDeviceProperties& properties() const { return props_; }
    const VkPhysicalDeviceLimits& limits() const { return props_.limits; }
    const VkPhysicalDeviceMemoryProperties& memory_properties() const { return mem_props_; }
    uint64_t max_storage_buffer_range() const { return props_.limits.maxStorageBufferRange; }
    uint64_t max_allocation_size() const { return max_allocation_size_; }
    // Bytes of the largest device-local memory heap (0 if the device reports none).
    uint64_t largest_device_local_heap() const {
        uint64_t heap = 0;
        for (uint32_t h = 0; h < mem_props_.memoryHeapCount; ++h)
            if ((mem_props_.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && mem_props_.memoryHeaps[h].size > heap)
                heap = mem_props_.memoryHeaps[h].size;
        return heap;
    }
    uint32_t subgroup_size() const { return subgroup_size_; }
    // VkSubgroupFeatureFlags supported in compute shaders (0 if subgroups are not usable there).
    uint32_t subgroup_ops() const { return static_info_.subgroup_ops; }
    bool timestamps() const { return timestamp_valid_bits_ != 0 && props_.limits.timestampPeriod > 0; }
    float timestamp_period_ns() const { return props_.limits.timestampPeriod; }

    // Static description plus live heap budget/usage.
    void describe(kv_device_info* info) const;

    // Queue submission is serialized here (VkQueue is externally synchronized).
    std::mutex& queue_mutex() { return queue_mutex_; }
    const QueueGrant& queue_grant() const { return grant_; }

    // One vkQueueSubmit of `cmd` signalling `fence`, under queue_mutex(), with the test faults
    // (FaultPoint::Submit) checked first. With timeline semaphores the batch also signals
    // timeline_semaphore() with the next value and waits for every host semaphore registered by
    // wait_host_semaphore(). Returns the VkResult (VK_SUCCESS: submitted).
    VkResult submit(VkCommandBuffer cmd, VkFence fence);
    // The semaphore every submission signals (VK_NULL_HANDLE without timeline semaphores) and
    // the value of the last submission made so far (0: none yet). Values increase by one per
    // submission, in queue order.
    VkSemaphore timeline_semaphore() const { return timeline_; }
    uint64_t timeline_value();
    // Every submission made after this call waits (on the GPU, before any of its commands) for
    // the host's timeline semaphore `sem` to reach `value`; a lower value than one already
    // registered for `sem` changes nothing; value 0 forgets `sem`. At most kMaxHostWaits
    // semaphores (KV_ERR_INVALID_ARGUMENT past that).
    static constexpr size_t kMaxHostWaits = 16;
    void wait_host_semaphore(VkSemaphore sem, uint64_t value);

    // Set once a submission or wait reports VK_ERROR_DEVICE_LOST; every later use fails fast.
    bool lost() const { return lost_.load(); }
    void mark_lost() { lost_.store(true); }

    // Test-only fault injection at this device's allocations, submits and waits (see
    // vk/fault_injection.h). Off unless a test arms it.
    FaultInjector& faults() { return faults_; }

    VkPipelineCache pipeline_cache() const { return pipeline_cache_; }
    // Replaces the (still unused) pipeline cache by one created from `data` (vkGetPipelineCacheData
    // of an earlier run, already checked against this device). Call before any pipeline exists.
    // False, with the empty cache kept, when the driver rejects the data.
    bool seed_pipeline_cache(const std::vector<uint8_t>& data);
    // vkGetPipelineCacheData: what a later run may seed its cache with.
    std::vector<uint8_t> pipeline_cache_data() const;

private:
    void query_properties();
    void create_pipeline_cache();
    void create_timeline();

    std::shared_ptr<Instance> instance_;
    VkPhysicalDevice physical_ = VK_NULL_HANDLE;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    uint32_t queue_family_ = 0;
    bool owns_device_ = true;
    Enabled enabled_;
    VkPhysicalDeviceProperties props_{};
    VkPhysicalDeviceMemoryProperties mem_props_{};
    uint64_t max_allocation_size_ = 0;
    uint32_t subgroup_size_ = 0;
    uint32_t timestamp_valid_bits_ = 0;
    kv_device_info static_info_{};
    VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
    std::mutex queue_mutex_;
    QueueGrant grant_;
    // Guarded by queue_mutex_: the timeline's last signalled value and the host waits.
    VkSemaphore timeline_ = VK_NULL_HANDLE;
    uint64_t timeline_value_ = 0;
    struct HostWait {
        VkSemaphore semaphore;
        uint64_t value;
    };
    std::vector<HostWait> host_waits_;
    std::atomic<bool> lost_{false};
    FaultInjector faults_;
};

}  // namespace kv::vk
