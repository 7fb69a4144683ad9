#include "vk/device.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace kv::vk {

namespace {

const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

bool has_layer(const char* name) {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> layers(n);
    vkEnumerateInstanceLayerProperties(&n, layers.data());
    for (auto& l : layers)
        if (std::strcmp(l.layerName, name) == 0) return true;
    return false;
}

bool has_instance_extension(const char* name) {
    uint32_t n = 0;
    vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr);
    std::vector<VkExtensionProperties> exts(n);
    vkEnumerateInstanceExtensionProperties(nullptr, &n, exts.data());
    for (auto& e : exts)
        if (std::strcmp(e.extensionName, name) == 0) return true;
    return false;
}

std::vector<std::string> device_extensions(VkPhysicalDevice pd) {
    uint32_t n = 0;
    vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
    std::vector<VkExtensionProperties> exts(n);
    vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data());
    std::vector<std::string> out;
    for (auto& e : exts) out.emplace_back(e.extensionName);
    return out;
}

bool contains(const std::vector<std::string>& v, const char* s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

void copy_name(char* dst, const char* src) {
    size_t n = strnlen(src, KV_MAX_NAME - 1);
    std::memcpy(dst, src, n);
    dst[n] = 0;
}

// Everything a physical device supports that kvulkan may use.
struct Support {
    uint32_t api_version = 0;
    std::vector<std::string> extensions;
    VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    VkPhysicalDevice16BitStorageFeatures storage16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderFloat16Int8Features f16i8{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDevice8BitStorageFeatures storage8{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderIntegerDotProductFeatures intdot{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
    VkPhysicalDeviceSubgroupSizeControlFeatures sgctl{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES};
    VkPhysicalDeviceCooperativeMatrixFeaturesNV coopnv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceTimelineSemaphoreFeatures timeline{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES};
    bool has_timeline = false, global_priority_khr = false, global_priority_ext = false;
    bool has_f16i8 = false, has_storage8 = false, has_intdot = false, has_sgctl = false, has_coopnv = false;
    bool coopmat_khr = false, memory_budget = false;

    void query(VkPhysicalDevice pd) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pd, &p);
        api_version = p.apiVersion;
        extensions = device_extensions(pd);
        bool v12 = api_version >= VK_API_VERSION_1_2, v13 = api_version >= VK_API_VERSION_1_3;
        has_f16i8 = v12 || contains(extensions, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
        has_storage8 = v12 || contains(extensions, VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
        has_intdot = v13 || contains(extensions, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
        has_sgctl = v13 || contains(extensions, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
        has_coopnv = contains(extensions, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
        coopmat_khr = contains(extensions, "VK_KHR_cooperative_matrix");
        memory_budget = contains(extensions, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
        has_timeline = api_version >= VK_API_VERSION_1_2 || contains(extensions, VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME);
        global_priority_khr = contains(extensions, VK_KHR_GLOBAL_PRIORITY_EXTENSION_NAME);
        global_priority_ext = contains(extensions, VK_EXT_GLOBAL_PRIORITY_EXTENSION_NAME);
        void** next = &features.pNext;
        auto chain = [&](auto& s) {
            *next = &s;
            next = &s.pNext;
        };
        chain(storage16);
        if (has_f16i8) chain(f16i8);
        if (has_storage8) chain(storage8);
        if (has_intdot) chain(intdot);
        if (has_sgctl) chain(sgctl);
        if (has_coopnv) chain(coopnv);
        if (has_timeline) chain(timeline);
        vkGetPhysicalDeviceFeatures2(pd, &features);
    }
    bool timeline_semaphore() const { return has_timeline && timeline.timelineSemaphore; }
    bool global_priority() const { return global_priority_khr || global_priority_ext;
    }
};

}  // namespace

// ---- Instance ---------------------------------------------------------------------------------

Instance::Instance(bool validation, const Logger& logger) : logger_(logger) {
    uint32_t loader_version = VK_API_VERSION_1_0;
    auto enum_version = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(
        vkGetInstanceProcAddr(nullptr, "vkEnumerateInstanceVersion"));
    if (enum_version) enum_version(&loader_version);
    if (loader_version < VK_API_VERSION_1_1)
        fail(KV_ERR_UNSUPPORTED, "the Vulkan loader supports only Vulkan %u.%u; kvulkan needs 1.1",
             VK_API_VERSION_MAJOR(loader_version), VK_API_VERSION_MINOR(loader_version));
    api_version_ = std::min<uint32_t>(loader_version, VK_API_VERSION_1_3);

    std::vector<const char*> layers, exts;
    if (validation) {
        if (!has_layer(kValidationLayer))
            fail(KV_ERR_UNSUPPORTED,
                 "validation was requested but %s is not installed (Debian: vulkan-validationlayers)",
                 kValidationLayer);
        layers.push_back(kValidationLayer);
        exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    }
    VkInstanceCreateFlags flags = 0;
    // MoltenVK and other non-conformant implementations are only listed with portability enumeration.
    if (has_instance_extension(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
        exts.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
        flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "kvulkan";
    app.pEngineName = "kvulkan";
    app.engineVersion = KV_VERSION;
    app.apiVersion = api_version_;
    VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ci.flags = flags;
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
    ci.ppEnabledLayerNames = layers.data();
    ci.enabledExtensionCount = static_cast<uint32_t>(exts.size());
    ci.ppEnabledExtensionNames = exts.data();
    VkResult r = vkCreateInstance(&ci, nullptr, &instance_);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        fail(KV_ERR_NO_DEVICE, "no Vulkan driver is installed (vkCreateInstance: %s)", result_name(r));
    if (r != VK_SUCCESS) throw_vk(r, "vkCreateInstance");

    if (validation) {
        auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
        VkDebugUtilsMessengerCreateInfoEXT mi{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
        mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                             VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
        mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
        mi.pfnUserCallback = &Instance::debug_callback;
        mi.pUserData = this;
        if (!create || create(instance_, &mi, nullptr, &messenger_) != VK_SUCCESS) {
            vkDestroyInstance(instance_, nullptr);
            fail(KV_ERR_UNSUPPORTED, "could not create the validation debug messenger");
        }
    }
}

Instance::Instance(VkInstance adopted, uint32_t api_version, const Logger& logger)
    : instance_(adopted), api_version_(api_version ? api_version : VK_API_VERSION_1_1), owned_(false),
      logger_(logger) {}

Instance::~Instance() {
    if (messenger_) {
        auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
        if (destroy) destroy(instance_, messenger_, nullptr);
    }
    if (owned_ && instance_) vkDestroyInstance(instance_, nullptr);
}

VkBool32 Instance::debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                  VkDebugUtilsMessageTypeFlagsEXT types,
                                  const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
    auto* self = static_cast<Instance*>(user);
    const char* msg = data && data->pMessage ? data->pMessage : "(no message)";
    if (types & (VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT)) {
        self->validation_messages_.fetch_add(1);
        self->logger_.log(KV_LOG_VALIDATION, msg);
    } else {
        self->logger_.log(severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? KV_LOG_ERROR : KV_LOG_WARNING,
                          msg);
    }
    return VK_FALSE;
}

std::vector<VkPhysicalDevice> Instance::physical_devices() const {
    uint32_t n = 0;
    KV_VK(vkEnumeratePhysicalDevices(instance_, &n, nullptr));
    std::vector<VkPhysicalDevice> pds(n);
    if (n) {
        VkResult r = vkEnumeratePhysicalDevices(instance_, &n, pds.data());
        if (r != VK_SUCCESS && r != VK_INCOMPLETE) throw_vk(r, "vkEnumeratePhysicalDevices");
        pds.resize(n);
    }
    return pds;
}

// ---- device description -------------------------------------------------------------------

void describe_physical_device(VkInstance instance, VkPhysicalDevice pd, kv_device_info* info) {
    (void)instance;
    Support sup;
    sup.query(pd);

    VkPhysicalDeviceProperties2 props{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    VkPhysicalDeviceSubgroupProperties sg{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceDriverProperties drv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceSubgroupSizeControlProperties sgc{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
    props.pNext = &sg;
    sg.pNext = &m3;
    void** next = &m3.pNext;
    bool has_drv = sup.api_version >= VK_API_VERSION_1_2 || contains(sup.extensions, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
    if (has_drv) {
        *next = &drv;
        next = &drv.pNext;
    }
    if (sup.has_sgctl) {
        *next = &sgc;
        next = &sgc.pNext;
    }
    vkGetPhysicalDeviceProperties2(pd, &props);
    const VkPhysicalDeviceProperties& p = props.properties;

    copy_name(info->device_name, p.deviceName);
    copy_name(info->driver_name, has_drv ? drv.driverName : "");
    copy_name(info->driver_info, has_drv ? drv.driverInfo : "");
    info->device_type = static_cast<kv_device_type>(p.deviceType);
    info->vendor_id = p.vendorID;
    info->device_id = p.deviceID;
    info->api_version = p.apiVersion;
    info->driver_version = p.driverVersion;
    info->subgroup_size = sg.subgroupSize;
    info->subgroup_size_min = sup.has_sgctl ? sgc.minSubgroupSize : sg.subgroupSize;
    info->subgroup_size_max = sup.has_sgctl ? sgc.maxSubgroupSize : sg.subgroupSize;
    info->subgroup_ops = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ? sg.supportedOperations : 0;
    info->max_storage_buffer_range = p.limits.maxStorageBufferRange;
    info->max_allocation_size = m3.maxMemoryAllocationSize;
    info->max_shared_memory = p.limits.maxComputeSharedMemorySize;
    info->max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
    info->max_workgroup_count_x = p.limits.maxComputeWorkGroupCount[0];

    uint32_t f = 0;
    if (sup.has_f16i8 && sup.f16i8.shaderFloat16) f |= KV_FEATURE_SHADER_FLOAT16;
    if (sup.has_f16i8 && sup.f16i8.shaderInt8) f |= KV_FEATURE_SHADER_INT8;
    if (sup.storage16.storageBuffer16BitAccess) f |= KV_FEATURE_STORAGE_16BIT;
    if (sup.has_storage8 && sup.storage8.storageBuffer8BitAccess) f |= KV_FEATURE_STORAGE_8BIT;
    if (sup.has_intdot && sup.intdot.shaderIntegerDotProduct) f |= KV_FEATURE_INTEGER_DOT_PRODUCT;
    if (sup.has_coopnv && sup.coopnv.cooperativeMatrix) f |= KV_FEATURE_COOPMAT_NV;
    if (sup.coopmat_khr) f |= KV_FEATURE_COOPMAT_KHR;
    if (sup.memory_budget) f |= KV_FEATURE_MEMORY_BUDGET;
    if (sup.has_sgctl && sup.sgctl.subgroupSizeControl) f |= KV_FEATURE_SUBGROUP_SIZE_CONTROL;
    if (sup.features.features.shaderInt64) f |= KV_FEATURE_SHADER_INT64;
    if (sup.timeline_semaphore()) f |= KV_FEATURE_TIMELINE_SEMAPHORE;
    if (sup.global_priority()) f |= KV_FEATURE_GLOBAL_PRIORITY;

    // Timestamps: the first compute queue family's valid bits.
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
    for (auto& q : qf)
        if (q.queueFlags & VK_QUEUE_COMPUTE_BIT) {
            if (q.timestampValidBits && p.limits.timestampPeriod > 0) f |= KV_FEATURE_TIMESTAMPS;
            break;
        }
    info->timestamp_period_ns = (f & KV_FEATURE_TIMESTAMPS) ? p.limits.timestampPeriod : 0.f;

    VkPhysicalDeviceMemoryProperties2 mp{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2};
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    if (sup.memory_budget) mp.pNext = &budget;
    vkGetPhysicalDeviceMemoryProperties2(pd, &mp);
    const auto& m = mp.memoryProperties;
    info->memory_heap_count = std::min<uint32_t>(m.memoryHeapCount, KV_MAX_MEMORY_HEAPS);
    for (uint32_t h = 0; h < info->memory_heap_count; ++h) {
        auto& out = info->memory_heaps[h];
        out.size = m.memoryHeaps[h].size;
        out.budget = sup.memory_budget ? budget.heapBudget[h] : m.memoryHeaps[h].size;
        out.usage = sup.memory_budget ? budget.heapUsage[h] : 0;
        out.device_local = (m.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) ? 1 : 0;
        out.reserved = 0;
    }
    // Unified memory: some memory type is both device-local and host-visible on the main heap.
    for (uint32_t t = 0; t < m.memoryTypeCount; ++t) {
        auto fl = m.memoryTypes[t].propertyFlags;
        if ((fl & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && (fl & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) &&
            m.memoryHeaps[m.memoryTypes[t].heapIndex].size >= (256ull << 20)) {
            f |= KV_FEATURE_UNIFIED_MEMORY;
            break;
        }
    }
    info->features = f;
}

int pick_default_device(const std::vector<kv_device_info>& devices) {
    auto rank = [](kv_device_type t) {
        switch (t) {
            case KV_DEVICE_TYPE_DISCRETE_GPU: return 0;
            case KV_DEVICE_TYPE_INTEGRATED_GPU: return 1;
            case KV_DEVICE_TYPE_VIRTUAL_GPU: return 2;
            case KV_DEVICE_TYPE_CPU: return 3;
            default: return 4;
        }
    };
    int best = -1;
    for (size_t i = 0; i < devices.size(); ++i)
        if (best < 0 || rank(devices[i].device_type) < rank(devices[best].device_type)) best = static_cast<int>(i);
    return best;
}

// ---- Device -----------------------------------------------------------------------------------

Device::Device(std::shared_ptr<Instance> instance, VkPhysicalDevice pd, const QueueRequest& request)
    : instance_(std::move(instance)), physical_(pd) {
    Support sup;
    sup.query(pd);
    if (sup.api_version < VK_API_VERSION_1_1)
        fail(KV_ERR_UNSUPPORTED, "the device supports only Vulkan %u.%u; kvulkan needs 1.1",
             VK_API_VERSION_MAJOR(sup.api_version), VK_API_VERSION_MINOR(sup.api_version));

    // Queue: prefer a compute queue without graphics (async compute), else any compute queue.
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
    int family = -1;
    for (uint32_t i = 0; i < nq; ++i)
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) {
            family = static_cast<int>(i);
            break;
        }
    if (family < 0)
        for (uint32_t i = 0; i < nq; ++i)
            if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
                family = static_cast<int>(i);
                break;
            }
    if (family < 0) fail(KV_ERR_UNSUPPORTED, "the device has no compute queue");
    queue_family_ = static_cast<uint32_t>(family);
    timestamp_valid_bits_ = qf[queue_family_].timestampValidBits;
    grant_.dedicated_compute = !(qf[queue_family_].queueFlags & VK_QUEUE_GRAPHICS_BIT);

    // Enable what kvulkan can use, and only what the device supports.
    VkPhysicalDeviceFeatures2 feats{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderFloat16Int8Features f16i8{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDevice8BitStorageFeatures s8{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderIntegerDotProductFeatures idot{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
    VkPhysicalDeviceSubgroupSizeControlFeatures sgc{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES};
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cnv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceTimelineSemaphoreFeatures tsf{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES};
    std::vector<const char*> exts;
    void** next = &feats.pNext;
    auto chain = [&](auto& s) {
        *next = &s;
        next = &s.pNext;
    };
    bool v12 = sup.api_version >= VK_API_VERSION_1_2, v13 = sup.api_version >= VK_API_VERSION_1_3;
    feats.features.shaderInt64 = sup.features.features.shaderInt64;
    enabled_.int64 = sup.features.features.shaderInt64;
    if (sup.storage16.storageBuffer16BitAccess) {
        s16.storageBuffer16BitAccess = VK_TRUE;
        enabled_.storage16 = true;
        chain(s16);
    }
    if (sup.has_f16i8 && (sup.f16i8.shaderFloat16 || sup.f16i8.shaderInt8)) {
        f16i8.shaderFloat16 = sup.f16i8.shaderFloat16;
        f16i8.shaderInt8 = sup.f16i8.shaderInt8;
        enabled_.float16 = sup.f16i8.shaderFloat16;
        enabled_.int8 = sup.f16i8.shaderInt8;
        if (!v12) exts.push_back(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
        chain(f16i8);
    }
    if (sup.has_storage8 && sup.storage8.storageBuffer8BitAccess) {
        s8.storageBuffer8BitAccess = VK_TRUE;
        enabled_.storage8 = true;
        if (!v12) exts.push_back(VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
        chain(s8);
    }
    if (sup.has_intdot && sup.intdot.shaderIntegerDotProduct) {
        idot.shaderIntegerDotProduct = VK_TRUE;
        enabled_.integer_dot = true;
        if (!v13) exts.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
        chain(idot);
    }
    if (sup.has_sgctl && sup.sgctl.subgroupSizeControl) {
        sgc.subgroupSizeControl = VK_TRUE;
        sgc.computeFullSubgroups = sup.sgctl.computeFullSubgroups;
        enabled_.subgroup_size_control = true;
        if (!v13) exts.push_back(VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
        chain(sgc);
    }
    if (sup.has_coopnv && sup.coopnv.cooperativeMatrix) {
        cnv.cooperativeMatrix = VK_TRUE;
        enabled_.coopmat_nv = true;
        exts.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
        chain(cnv);
    }
    if (sup.timeline_semaphore()) {
        tsf.timelineSemaphore = VK_TRUE;
        enabled_.timeline_semaphore = true;
        if (!v12) exts.push_back(VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME);
        chain(tsf);
    }
    if (sup.memory_budget) {
        enabled_.memory_budget = true;
        exts.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    }
    if (v13 && instance_->api_version() >= VK_API_VERSION_1_3) {
        enabled_.creation_feedback = true;
    } else if (contains(sup.extensions, VK_EXT_PIPELINE_CREATION_FEEDBACK_EXTENSION_NAME)) {
        enabled_.creation_feedback = true;
        exts.push_back(VK_EXT_PIPELINE_CREATION_FEEDBACK_EXTENSION_NAME);
    }
    if (contains(sup.extensions, "VK_KHR_portability_subset")) exts.push_back("VK_KHR_portability_subset");

    float priority = std::clamp(request.priority, 0.f, 1.f);
    VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = queue_family_;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.pNext = &feats;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    // A global priority (system-wide, across processes) where the driver offers one: the KHR and
    // EXT extensions share the struct and values. Above MEDIUM it may need privileges the process
    // lacks (VK_ERROR_NOT_PERMITTED_KHR): then the device is created without it.
    VkDeviceQueueGlobalPriorityCreateInfoKHR gp{VK_STRUCTURE_TYPE_DEVICE_QUEUE_GLOBAL_PRIORITY_CREATE_INFO_KHR};
    bool want_global = request.global_priority != 0;
    if (want_global && !sup.global_priority()) {
        logger().info("queue global priority: the driver offers neither VK_KHR_global_priority nor "
                      "VK_EXT_global_priority; using the queue priority only");
        want_global = false;
    }
    if (want_global) {
        gp.globalPriority = static_cast<VkQueueGlobalPriorityKHR>(request.global_priority);
        qci.pNext = &gp;
        exts.push_back(sup.global_priority_khr ? VK_KHR_GLOBAL_PRIORITY_EXTENSION_NAME
                                               : VK_EXT_GLOBAL_PRIORITY_EXTENSION_NAME);
    }
    dci.enabledExtensionCount = static_cast<uint32_t>(exts.size());
    dci.ppEnabledExtensionNames = exts.data();
    VkResult r = vkCreateDevice(pd, &dci, nullptr, &device_);
    if (want_global && (r == VK_ERROR_NOT_PERMITTED_KHR || r == VK_ERROR_INITIALIZATION_FAILED)) {
        logger().warn(format("queue global priority %u refused (%s); creating the device without it",
                             request.global_priority, result_name(r)));
        want_global = false;
        qci.pNext = nullptr;
        exts.pop_back();
        dci.enabledExtensionCount = static_cast<uint32_t>(exts.size());
        r = vkCreateDevice(pd, &dci, nullptr, &device_);
    }
    if (r != VK_SUCCESS) throw_vk(r, "vkCreateDevice");
    grant_.priority = priority;
    grant_.global_priority = want_global ? request.global_priority : 0;
    vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
    query_properties();
    try {
        create_pipeline_cache();
        create_timeline();
    } catch (...) {
        if (pipeline_cache_) vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
        vkDestroyDevice(device_, nullptr);
        throw;
    }
}

Device::Device(std::shared_ptr<Instance> instance, VkPhysicalDevice pd, VkDevice device, VkQueue queue,
               uint32_t queue_family, bool host_timeline)
    : instance_(std::move(instance)), physical_(pd), device_(device), queue_(queue),
      queue_family_(queue_family), owns_device_(false) {
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
    if (queue_family >= nq)
        fail(KV_ERR_INVALID_ARGUMENT, "vk_queue_family %u is out of range (the device has %u families)",
             queue_family, nq);
    if (!(qf[queue_family].queueFlags & VK_QUEUE_COMPUTE_BIT))
        fail(KV_ERR_INVALID_ARGUMENT, "queue family %u of the adopted device does not support compute",
             queue_family);
    timestamp_valid_bits_ = qf[queue_family].timestampValidBits;
    grant_.dedicated_compute = !(qf[queue_family].queueFlags & VK_QUEUE_GRAPHICS_BIT);
    if (host_timeline) {
        Support sup;
        sup.query(pd);
        if (!sup.timeline_semaphore())
            fail(KV_ERR_INVALID_ARGUMENT, "vk_timeline_semaphore is set but the device does not support timeline "
                 "semaphores (Vulkan 1.2 timelineSemaphore or VK_KHR_timeline_semaphore)");
        enabled_.timeline_semaphore = true;
    }
    // Nothing optional is assumed enabled on a device kvulkan did not create: the Vulkan 1.1 core
    // fallback paths are used. (Memory budget is a read-only query and needs the extension enabled.)
    query_properties();
    // Creation feedback needs no feature bit: core wherever the host's instance and device are 1.3.
    enabled_.creation_feedback = instance_->api_version() >= VK_API_VERSION_1_3 && props_.apiVersion >= VK_API_VERSION_1_3;
    create_pipeline_cache();
    try {
        create_timeline();
    } catch (...) {
        vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
        throw;
    }
}

Device::~Device() {
    if (device_) {
        vkDeviceWaitIdle(device_);
        if (pipeline_cache_) vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
        if (timeline_) vkDestroySemaphore(device_, timeline_, nullptr);
        if (owns_device_) vkDestroyDevice(device_, nullptr);
    }
}

void Device::query_properties() {
    VkPhysicalDeviceProperties2 props{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    VkPhysicalDeviceSubgroupProperties sg{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    props.pNext = &sg;
    sg.pNext = &m3;
    vkGetPhysicalDeviceProperties2(physical_, &props);
    props_ = props.properties;
    subgroup_size_ = sg.subgroupSize;
    max_allocation_size_ = m3.maxMemoryAllocationSize;
    vkGetPhysicalDeviceMemoryProperties(physical_, &mem_props_);
    static_info_.struct_size = sizeof(kv_device_info);
    describe_physical_device(instance_->handle(), physical_, &static_info_);
}

void Device::create_pipeline_cache() {
    VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    KV_VK(vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_));
}

void Device::create_timeline() {
    if (!enabled_.timeline_semaphore) return;
    VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
    type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    type.initialValue = 0;
    VkSemaphoreCreateInfo ci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    ci.pNext = &type;
    KV_VK(vkCreateSemaphore(device_, &ci, nullptr, &timeline_));
}

VkResult Device::submit(VkCommandBuffer cmd, VkFence fence) {
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd;
    std::lock_guard<std::mutex> lock(queue_mutex_);
    VkResult r = faults_.check(FaultPoint::Submit);
    if (r != VK_SUCCESS) return r;
    if (!timeline_) return vkQueueSubmit(queue_, 1, &si, fence);
    // Waits: the host's semaphores (before anything of this batch runs); signal: the next value.
    VkSemaphore waits[kMaxHostWaits];
    uint64_t wait_values[kMaxHostWaits];
    VkPipelineStageFlags stages[kMaxHostWaits];
    const uint32_t n_waits = static_cast<uint32_t>(host_waits_.size());
    for (uint32_t i = 0; i < n_waits; ++i) {
        waits[i] = host_waits_[i].semaphore;
        wait_values[i] = host_waits_[i].value;
        stages[i] = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    }
    const uint64_t signal_value = timeline_value_ + 1;
    VkTimelineSemaphoreSubmitInfo ti{VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
    ti.waitSemaphoreValueCount = n_waits;
    ti.pWaitSemaphoreValues = wait_values;
    ti.signalSemaphoreValueCount = 1;
    ti.pSignalSemaphoreValues = &signal_value;
    si.pNext = &ti;
    si.waitSemaphoreCount = n_waits;
    si.pWaitSemaphores = waits;
    si.pWaitDstStageMask = stages;
    si.signalSemaphoreCount = 1;
    si.pSignalSemaphores = &timeline_;
    r = vkQueueSubmit(queue_, 1, &si, fence);
    if (r == VK_SUCCESS) timeline_value_ = signal_value;
    return r;
}

uint64_t Device::timeline_value() {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    return timeline_value_;
}

void Device::wait_host_semaphore(VkSemaphore sem, uint64_t value) {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    auto it = std::find_if(host_waits_.begin(), host_waits_.end(),
                           [&](const HostWait& w) { return w.semaphore == sem; });
    if (value == 0) {
        if (it != host_waits_.end()) host_waits_.erase(it);
        return;
    }
    if (it != host_waits_.end()) {
        it->value = std::max(it->value, value);
        return;
    }
    if (host_waits_.size() == kMaxHostWaits)
        fail(KV_ERR_INVALID_ARGUMENT, "already %zu host semaphores are waited for (the most); forget one first "
             "(value 0)", kMaxHostWaits);
    host_waits_.push_back({sem, value});
}

bool Device::seed_pipeline_cache(const std::vector<uint8_t>& data) {
    VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    ci.initialDataSize = data.size();
    ci.pInitialData = data.data();
    VkPipelineCache seeded = VK_NULL_HANDLE;
    if (vkCreatePipelineCache(device_, &ci, nullptr, &seeded) != VK_SUCCESS) return false;
    vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
    pipeline_cache_ = seeded;
    return true;
}

std::vector<uint8_t> Device::pipeline_cache_data() const {
    std::vector<uint8_t> data;
    for (int attempt = 0; attempt < 4; ++attempt) {  // the size may grow between the two calls
        size_t size = 0;
        KV_VK(vkGetPipelineCacheData(device_, pipeline_cache_, &size, nullptr));
        data.resize(size);
        VkResult r = vkGetPipelineCacheData(device_, pipeline_cache_, &size, data.data());
        if (r == VK_SUCCESS) {
            data.resize(size);
            return data;
        }
        if (r != VK_INCOMPLETE) throw_vk(r, "vkGetPipelineCacheData");
    }
    fail(KV_ERR_INTERNAL, "vkGetPipelineCacheData kept growing");
}

void Device::describe(kv_device_info* info) const {
    uint32_t index = info->index;
    kv_device_info live = static_info_;
    // Refresh heap budget/usage now (describe_physical_device reads them live).
    describe_physical_device(instance_->handle(), physical_, &live);
    live.struct_size = info->struct_size;
    live.index = index;
    *info = live;
}

}  // namespace kv::vk
