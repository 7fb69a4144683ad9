// C API: devices and runtime.
#include <cstring>
#include <mutex>

#include "capi/abi_v1.h"
#include "capi/api.h"
#include "engine/runtime.h"

using namespace kv;

namespace {
kv_runtime_desc read_runtime_desc(const kv_runtime_desc* desc) {
    kv_runtime_desc d = KV_RUNTIME_DESC_INIT;
    if (desc) d = api::read_desc(desc, api::kRuntimeDescV1, "desc");
    return d;
}

void write_info(kv_device_info* out, const kv_device_info& in) {
    size_t n = api::out_size(out, api::kDeviceInfoV1, "info");
    uint32_t size = out->struct_size;
    std::memcpy(out, &in, n);
    out->struct_size = size;
}

vk::Device& timeline_device(kv_runtime* runtime) {
    if (!runtime) fail(KV_ERR_INVALID_ARGUMENT, "runtime is NULL");
    vk::Device& dev = *runtime->device;
    if (!dev.timeline_semaphore())
        fail(KV_ERR_UNSUPPORTED, dev.adopted()
                 ? "no timeline semaphore: create the adopted device with the timelineSemaphore feature "
                   "(Vulkan 1.2, or VK_KHR_timeline_semaphore) and set kv_runtime_desc.vk_timeline_semaphore"
                 : "the device has no timeline semaphores (Vulkan 1.2 timelineSemaphore or VK_KHR_timeline_semaphore)");
    return dev;
}

// A non-dispatchable handle is 64 bits on every platform: a pointer on 64-bit ones, a uint64_t
// on 32-bit ones. The ABI carries it as uint64_t.
uint64_t handle_bits(VkSemaphore s) {
#if VK_USE_64_BIT_PTR_DEFINES == 1
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(s));
#else
    return s;
#endif
}
VkSemaphore semaphore_of(uint64_t bits) {
#if VK_USE_64_BIT_PTR_DEFINES == 1
    return reinterpret_cast<VkSemaphore>(static_cast<uintptr_t>(bits));
#else
    return bits;
#endif
}
}  // namespace

extern "C" {

KV_API kv_status kv_enumerate_devices(const kv_runtime_desc* desc, kv_device_info* infos, uint32_t* count) {
    return api::guard([&] {
        if (!count) fail(KV_ERR_INVALID_ARGUMENT, "count is NULL");
        kv_runtime_desc d = read_runtime_desc(desc);
        // The caller's array: elements of the caller's sizeof(kv_device_info), which may be that
        // of an older or newer header than the library's, so it is stepped by struct_size.
        uint32_t stride = 0;
        if (infos && *count) {
            stride = infos[0].struct_size;
            api::out_size(&infos[0], api::kDeviceInfoV1, "infos[0]");
            for (uint32_t i = 1; i < *count; ++i) {
                auto* e = reinterpret_cast<kv_device_info*>(reinterpret_cast<char*>(infos) + size_t(i) * stride);
                if (e->struct_size != stride)
                    fail(KV_ERR_INVALID_ARGUMENT, "infos[%u].struct_size is %u, infos[0].struct_size is %u: set every "
                         "element's struct_size to sizeof(kv_device_info)", i, e->struct_size, stride);
            }
        }
        Logger logger{d.log_callback, d.log_user_data};
        vk::Instance instance(engine::validation_requested(d), logger);
        auto all = engine::describe_devices(instance);
        if (!infos) {
            *count = static_cast<uint32_t>(all.size());
            return KV_OK;
        }
        uint32_t n = std::min<uint32_t>(*count, static_cast<uint32_t>(all.size()));
        for (uint32_t i = 0; i < n; ++i)
            write_info(reinterpret_cast<kv_device_info*>(reinterpret_cast<char*>(infos) + size_t(i) * stride), all[i]);
        *count = n;
        return n < all.size() ? KV_INCOMPLETE : KV_OK;
    });
}

KV_API kv_status kv_runtime_create(const kv_runtime_desc* desc, kv_runtime** out_runtime) {
    return api::guard([&] {
        if (!out_runtime) fail(KV_ERR_INVALID_ARGUMENT, "out_runtime is NULL");
        kv_runtime_desc d = read_runtime_desc(desc);
        auto rt = engine::create_runtime(d);
        *out_runtime = rt.release();
        return KV_OK;
    });
}

KV_API void kv_runtime_destroy(kv_runtime* runtime) {
    if (!runtime) return;
    api::guard([&] {
        delete runtime;
        return KV_OK;
    });
}

KV_API kv_status kv_runtime_get_info(const kv_runtime* runtime, kv_device_info* info) {
    return api::guard([&] {
        if (!runtime) fail(KV_ERR_INVALID_ARGUMENT, "runtime is NULL");
        api::out_size(info, api::kDeviceInfoV1, "info");
        kv_device_info full{};
        full.struct_size = sizeof full;
        vk::Device& dev = *runtime->device;
        dev.describe(&full);
        const vk::QueueGrant& q = dev.queue_grant();
        full.queue_family = dev.queue_family();
        full.queue_flags = (q.dedicated_compute ? uint32_t(KV_QUEUE_DEDICATED_COMPUTE) : 0u) |
                           (dev.adopted() ? uint32_t(KV_QUEUE_ADOPTED) : 0u) |
                           (dev.timeline_semaphore() ? uint32_t(KV_QUEUE_TIMELINE_SEMAPHORE) : 0u);
        full.queue_priority = q.priority;
        full.global_priority = q.global_priority;
        full.gpu_budget_us = runtime->gpu_budget_us;
        write_info(info, full);
        return KV_OK;
    });
}

KV_API uint64_t kv_runtime_validation_message_count(const kv_runtime* runtime) {
    return runtime ? runtime->instance->validation_messages() : 0;
}

KV_API kv_status kv_runtime_measure_bandwidth(kv_runtime* runtime, uint64_t bytes, uint32_t iterations,
                                              kv_bandwidth_result* result) {
    return api::guard([&] {
        if (!runtime) fail(KV_ERR_INVALID_ARGUMENT, "runtime is NULL");
        size_t n = api::out_size(result, api::kBandwidthResultV1, "result");
        kv_bandwidth_result r = engine::measure_bandwidth(*runtime, bytes, iterations);
        uint32_t size = result->struct_size;
        std::memcpy(result, &r, n);
        result->struct_size = size;
        return KV_OK;
    });
}

KV_API kv_status kv_runtime_use_queue(kv_runtime* runtime, kv_queue_fn fn, void* user) {
    return api::guard([&] {
        if (!runtime) fail(KV_ERR_INVALID_ARGUMENT, "runtime is NULL");
        if (!fn) fail(KV_ERR_INVALID_ARGUMENT, "fn is NULL");
        // The lock CommandStream takes around each vkQueueSubmit: the host's queue calls inside fn
        // never overlap kvulkan's.
        std::lock_guard<std::mutex> lock(runtime->device->queue_mutex());
        fn(reinterpret_cast<void*>(runtime->device->queue()), user);
        return KV_OK;
    });
}

KV_API kv_status kv_runtime_timeline_semaphore(kv_runtime* runtime, uint64_t* vk_semaphore, uint64_t* last_value) {
    return api::guard([&] {
        vk::Device& dev = timeline_device(runtime);
        if (vk_semaphore) *vk_semaphore = handle_bits(dev.timeline_semaphore());
        if (last_value) *last_value = dev.timeline_value();
        return KV_OK;
    });
}

KV_API kv_status kv_runtime_wait_semaphore(kv_runtime* runtime, uint64_t vk_semaphore, uint64_t value) {
    return api::guard([&] {
        vk::Device& dev = timeline_device(runtime);
        if (!vk_semaphore) fail(KV_ERR_INVALID_ARGUMENT, "vk_semaphore is VK_NULL_HANDLE");
        dev.wait_host_semaphore(semaphore_of(vk_semaphore), value);
        return KV_OK;
    });
}

}  // extern "C"
