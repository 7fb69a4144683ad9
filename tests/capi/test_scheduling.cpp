// GPU scheduling beside a renderer: ordering kvulkan's work against the host's on a shared
// VkDevice with timeline semaphores (no CPU wait between), the queue priority request and what
// kv_runtime_get_info reports about the queue, and the per-submission GPU time budget.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>
#include <vulkan/vulkan.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "common/trace.h"

namespace {

using kvtest::Model;
using kvtest::ok;

// The host application's own Vulkan 1.2 instance and device (a game engine's), with validation
// when installed: its messages are counted by the host's own messenger (kvulkan installs none on
// an adopted instance).
struct HostDevice {
    VkInstance instance = VK_NULL_HANDLE;
    VkPhysicalDevice physical = VK_NULL_HANDLE;
    VkDevice device = VK_NULL_HANDLE;
    VkQueue queue = VK_NULL_HANDLE;
    uint32_t family = 0;
    std::atomic<int> validation_messages{0};
    std::vector<std::string> messages;

    static VKAPI_ATTR VkBool32 VKAPI_CALL
    on_message(VkDebugUtilsMessageSeverityFlagBitsEXT, VkDebugUtilsMessageTypeFlagsEXT,
               const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
        auto* self = static_cast<HostDevice*>(user);
        ++self->validation_messages;
        self->messages.push_back(data->pMessage ? data->pMessage : "");
        return VK_FALSE;
    }

    explicit HostDevice(bool timeline) {
        VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
        app.apiVersion = VK_API_VERSION_1_2;
        VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
        ici.pApplicationInfo = &app;
        const char* layer = "VK_LAYER_KHRONOS_validation";
        const char* ext = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
        VkDebugUtilsMessengerCreateInfoEXT mi{
            VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
        mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                             VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
        mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT;
        mi.pfnUserCallback = &HostDevice::on_message;
        mi.pUserData = this;
        if (kvtest::validation_layer_available()) {
            ici.enabledLayerCount = 1;
            ici.ppEnabledLayerNames = &layer;
            ici.enabledExtensionCount = 1;
            ici.ppEnabledExtensionNames = &ext;
            ici.pNext = &mi;  // messages of the instance's whole life go to on_message
        }
        REQUIRE(vkCreateInstance(&ici, nullptr, &instance) == VK_SUCCESS);
        uint32_t n = 0;
        vkEnumeratePhysicalDevices(instance, &n, nullptr);
        REQUIRE(n > 0);
        std::vector<VkPhysicalDevice> pds(n);
        vkEnumeratePhysicalDevices(instance, &n, pds.data());
        physical = pds[0];
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(physical, &props);
        REQUIRE_MESSAGE(props.apiVersion >= VK_API_VERSION_1_2, "the test device needs Vulkan 1.2");
        uint32_t nq = 0;
        vkGetPhysicalDeviceQueueFamilyProperties(physical, &nq, nullptr);
        std::vector<VkQueueFamilyProperties> qf(nq);
        vkGetPhysicalDeviceQueueFamilyProperties(physical, &nq, qf.data());
        while (family < nq && !(qf[family].queueFlags & VK_QUEUE_COMPUTE_BIT)) ++family;
        REQUIRE(family < nq);
        float prio = 1.f;
        VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
        qci.queueFamilyIndex = family;
        qci.queueCount = 1;
        qci.pQueuePriorities = &prio;
        VkPhysicalDeviceTimelineSemaphoreFeatures tsf{
            VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES};
        tsf.timelineSemaphore = VK_TRUE;
        VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
        dci.pNext = timeline ? &tsf : nullptr;
        dci.queueCreateInfoCount = 1;
        dci.pQueueCreateInfos = &qci;
        REQUIRE(vkCreateDevice(physical, &dci, nullptr, &device) == VK_SUCCESS);
        vkGetDeviceQueue(device, family, 0, &queue);
    }
    ~HostDevice() {
        vkDestroyDevice(device, nullptr);
        vkDestroyInstance(instance, nullptr);
        for (auto& m : messages) FAIL_CHECK("validation message on the host's instance: " << m);
    }

    kv_runtime_desc desc(bool timeline) const {
        kv_runtime_desc d = KV_RUNTIME_DESC_INIT;
        d.vk_instance = instance;
        d.vk_physical_device = physical;
        d.vk_device = device;
        d.vk_queue = queue;
        d.vk_queue_family = family;
        d.vk_api_version = VK_API_VERSION_1_2;
        d.vk_timeline_semaphore = timeline ? 1u : 0u;
        return d;
    }

    uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags want) const {
        VkPhysicalDeviceMemoryProperties mp;
        vkGetPhysicalDeviceMemoryProperties(physical, &mp);
        for (uint32_t t = 0; t < mp.memoryTypeCount; ++t)
            if ((bits & (1u << t)) && (mp.memoryTypes[t].propertyFlags & want) == want) return t;
        FAIL("no host-visible coherent memory type");
        return 0;
    }
};

// A host-visible, coherent buffer of the host's (its "render target").
struct HostBuffer {
    const HostDevice& host;
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    uint32_t* data = nullptr;
    HostBuffer(const HostDevice& h, VkDeviceSize bytes) : host(h) {
        VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
        bci.size = bytes;
        bci.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
        REQUIRE(vkCreateBuffer(h.device, &bci, nullptr, &buffer) == VK_SUCCESS);
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(h.device, buffer, &req);
        VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
        ai.allocationSize = req.size;
        ai.memoryTypeIndex =
            h.memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                  VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
        REQUIRE(vkAllocateMemory(h.device, &ai, nullptr, &memory) == VK_SUCCESS);
        REQUIRE(vkBindBufferMemory(h.device, buffer, memory, 0) == VK_SUCCESS);
        void* p = nullptr;
        REQUIRE(vkMapMemory(h.device, memory, 0, VK_WHOLE_SIZE, 0, &p) == VK_SUCCESS);
        data = static_cast<uint32_t*>(p);
    }
    ~HostBuffer() {
        vkDestroyBuffer(host.device, buffer, nullptr);
        vkFreeMemory(host.device, memory, nullptr);
    }
};

VkSemaphore make_timeline(VkDevice dev) {
    VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
    type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    VkSemaphoreCreateInfo ci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    ci.pNext = &type;
    VkSemaphore s = VK_NULL_HANDLE;
    REQUIRE(vkCreateSemaphore(dev, &ci, nullptr, &s) == VK_SUCCESS);
    return s;
}

uint64_t counter(VkDevice dev, VkSemaphore s) {
    uint64_t v = 0;
    REQUIRE(vkGetSemaphoreCounterValue(dev, s, &v) == VK_SUCCESS);
    return v;
}

// One host submission: `cmd` waits for `wait` >= wait_value (unless wait is null) and signals
// `signal` = signal_value. Made inside kv_runtime_use_queue: the queue is shared with kvulkan.
struct HostSubmit {
    VkCommandBuffer cmd;
    VkSemaphore wait;
    uint64_t wait_value;
    VkSemaphore signal;
    uint64_t signal_value;
    VkResult result = VK_ERROR_UNKNOWN;
};

void submit_on_queue(void* queue, void* user) {
    auto* s = static_cast<HostSubmit*>(user);
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
    VkTimelineSemaphoreSubmitInfo ti{VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
    ti.waitSemaphoreValueCount = s->wait ? 1 : 0;
    ti.pWaitSemaphoreValues = &s->wait_value;
    ti.signalSemaphoreValueCount = 1;
    ti.pSignalSemaphoreValues = &s->signal_value;
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.pNext = &ti;
    si.waitSemaphoreCount = s->wait ? 1 : 0;
    si.pWaitSemaphores = &s->wait;
    si.pWaitDstStageMask = &stage;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &s->cmd;
    si.signalSemaphoreCount = 1;
    si.pSignalSemaphores = &s->signal;
    s->result = vkQueueSubmit(static_cast<VkQueue>(queue), 1, &si, VK_NULL_HANDLE);
}

kv_session* make_session(const Model& m) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.n_ctx = 256;
    d.cache_type = KV_CACHE_F32;
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, &d, &s));
    return s;
}

std::vector<kv_token> greedy(kv_session* s, int n) {
    std::vector<kv_token> out;
    for (int i = 0; i < n; ++i) {
        kv_token t = -1;
        kv_status st = kv_decode_step(s, &t);
        REQUIRE_MESSAGE(st == KV_OK, kv_status_string(st) << ": " << kv_last_error_message());
        out.push_back(t);
    }
    return out;
}

std::vector<float> logits(const Model& m, kv_session* s) {
    std::vector<float> l(m.n_vocab);
    ok(kv_session_logits(s, l.data(), m.n_vocab));
    return l;
}

kv_device_info runtime_info(kv_runtime* rt) {
    kv_device_info info{};
    info.struct_size = sizeof info;
    ok(kv_runtime_get_info(rt, &info));
    return info;
}

}  // namespace

TEST_CASE(
    "scheduling: host work, kvulkan's decode and host work on a shared device, ordered by timeline "
    "semaphores") {
    if (!kvtest::require_shared()) return;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    HostDevice host(true);
    kv_runtime_desc desc = host.desc(true);
    kv_runtime* rt = nullptr;
    REQUIRE_MESSAGE(kv_runtime_create(&desc, &rt) == KV_OK, kv_last_error_message());
    kv_device_info info = runtime_info(rt);
    CHECK((info.queue_flags & KV_QUEUE_ADOPTED) != 0);
    CHECK((info.queue_flags & KV_QUEUE_TIMELINE_SEMAPHORE) != 0);
    CHECK(info.queue_family == host.family);
    CHECK((info.features & KV_FEATURE_TIMELINE_SEMAPHORE) != 0);
    uint64_t kv_sem_bits = 0, kv_value0 = 0;
    ok(kv_runtime_timeline_semaphore(rt, &kv_sem_bits, &kv_value0));
    REQUIRE(kv_sem_bits != 0);
    VkSemaphore kv_sem = reinterpret_cast<VkSemaphore>(static_cast<uintptr_t>(kv_sem_bits));
    {
        Model model(rt, t.model_path);
        // The blocking path, before any host semaphore is involved: the tokens to reproduce.
        kv_session* ref = make_session(model);
        ok(kv_prefill(ref, t.prompt.data(), uint32_t(t.prompt.size())));
        const std::vector<kv_token> want = greedy(ref, 12);
        uint64_t after_load = 0;
        ok(kv_runtime_timeline_semaphore(rt, nullptr, &after_load));
        CHECK(after_load >=
              kv_value0 + 13);  // a prefill and 12 steps: each submission signalled it
        CHECK(counter(host.device, kv_sem) == after_load);  // ... and all of them completed

        // The host's resources: a source and a destination buffer, two command buffers, its own
        // timeline semaphore.
        const uint32_t words = 1024;
        HostBuffer src(host, words * 4), dst(host, words * 4);
        std::memset(src.data, 0, words * 4);
        std::memset(dst.data, 0, words * 4);
        VkCommandPool pool = VK_NULL_HANDLE;
        VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
        pci.queueFamilyIndex = host.family;
        REQUIRE(vkCreateCommandPool(host.device, &pci, nullptr, &pool) == VK_SUCCESS);
        VkCommandBuffer cmds[2];
        VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
        cai.commandPool = pool;
        cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        cai.commandBufferCount = 2;
        REQUIRE(vkAllocateCommandBuffers(host.device, &cai, cmds) == VK_SUCCESS);
        VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
        // A: fill the source buffer (the host's "frame" before kvulkan's work).
        REQUIRE(vkBeginCommandBuffer(cmds[0], &bi) == VK_SUCCESS);
        vkCmdFillBuffer(cmds[0], src.buffer, 0, words * 4, 0xC0FFEE11u);
        REQUIRE(vkEndCommandBuffer(cmds[0]) == VK_SUCCESS);
        // C: copy it into the destination (the host's work after kvulkan's).
        REQUIRE(vkBeginCommandBuffer(cmds[1], &bi) == VK_SUCCESS);
        VkBufferCopy region{0, 0, words * 4};
        vkCmdCopyBuffer(cmds[1], src.buffer, dst.buffer, 1, &region);
        VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
        mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
        mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
        vkCmdPipelineBarrier(cmds[1], VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0,
                             1, &mb, 0, nullptr, 0, nullptr);
        REQUIRE(vkEndCommandBuffer(cmds[1]) == VK_SUCCESS);
        VkSemaphore host_sem = make_timeline(host.device);
        const uint64_t host_sem_bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(host_sem));

        // 1. Host work A, held back on the GPU until the CPU signals host_sem = 1 (a stand-in for
        //    a frame still rendering), then signalling host_sem = 2. No CPU wait anywhere.
        HostSubmit a{cmds[0], host_sem, 1, host_sem, 2};
        ok(kv_runtime_use_queue(rt, &submit_on_queue, &a));
        REQUIRE(a.result == VK_SUCCESS);
        // 2. kvulkan's work waits for A on the GPU: it cannot finish before A has run.
        ok(kv_runtime_wait_semaphore(rt, host_sem_bits, 2));
        kv_session* s = make_session(model);
        kv_ticket* tk = nullptr;
        ok(kv_submit_prefill(s, t.prompt.data(), uint32_t(t.prompt.size()), nullptr, nullptr, &tk));
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        CHECK(kv_ticket_poll(tk) == KV_NOT_READY);  // held behind A, which is held behind the CPU
        CHECK(counter(host.device, host_sem) == 0);
        VkSemaphoreSignalInfo sig{VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO};
        sig.semaphore = host_sem;
        sig.value = 1;
        REQUIRE(vkSignalSemaphore(host.device, &sig) == VK_SUCCESS);
        CHECK(kv_ticket_wait(tk, UINT64_MAX) == KV_OK);
        kv_ticket_destroy(tk);
        CHECK(counter(host.device, host_sem) == 2);  // A ran before kvulkan's prefill completed
        const std::vector<kv_token> got = greedy(s, 12);  // these wait for host_sem >= 2 too
        CHECK(got == want);
        CHECK(logits(model, s) == logits(model, ref));  // bit-identical to the blocking path

        // 3. Host work C after kvulkan's: it waits on the GPU for kvulkan's last value.
        uint64_t w = 0;
        ok(kv_runtime_timeline_semaphore(rt, nullptr, &w));
        CHECK(w > after_load);
        HostSubmit c{cmds[1], kv_sem, w, host_sem, 3};
        ok(kv_runtime_use_queue(rt, &submit_on_queue, &c));
        REQUIRE(c.result == VK_SUCCESS);
        VkSemaphoreWaitInfo wi{VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO};
        uint64_t three = 3;
        wi.semaphoreCount = 1;
        wi.pSemaphores = &host_sem;
        wi.pValues = &three;
        REQUIRE(vkWaitSemaphores(host.device, &wi, 10ull * 1000 * 1000 * 1000) == VK_SUCCESS);
        CHECK(counter(host.device, kv_sem) >= w);
        int wrong = 0;
        for (uint32_t i = 0; i < words; ++i) wrong += dst.data[i] != 0xC0FFEE11u;
        CHECK(wrong == 0);

        // A value lower than the one registered changes nothing; 0 forgets the semaphore. Then
        // host_sem may go once kvulkan's submissions so far have completed.
        ok(kv_runtime_wait_semaphore(rt, host_sem_bits, 1));
        ok(kv_runtime_wait_semaphore(rt, host_sem_bits, 0));
        ok(kv_runtime_timeline_semaphore(rt, nullptr, &w));
        kv_token tok;
        ok(kv_decode_step(s, &tok));
        CHECK(counter(host.device, kv_sem) > w);
        vkDestroySemaphore(host.device, host_sem, nullptr);
        vkDestroyCommandPool(host.device, pool, nullptr);
        kv_session_destroy(s);
        kv_session_destroy(ref);
    }
    // Bad arguments.
    CHECK(kv_runtime_wait_semaphore(rt, 0, 1) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_runtime_wait_semaphore(nullptr, 1, 1) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_runtime_timeline_semaphore(nullptr, nullptr, nullptr) == KV_ERR_INVALID_ARGUMENT);
    kv_runtime_destroy(rt);
    CHECK(host.validation_messages.load() == 0);
}

TEST_CASE("scheduling: without timeline semaphores the calls answer KV_ERR_UNSUPPORTED") {
    HostDevice host(false);
    kv_runtime_desc desc = host.desc(false);
    kv_runtime* rt = nullptr;
    REQUIRE_MESSAGE(kv_runtime_create(&desc, &rt) == KV_OK, kv_last_error_message());
    CHECK((runtime_info(rt).queue_flags & KV_QUEUE_TIMELINE_SEMAPHORE) == 0);
    uint64_t sem = 7, value = 7;
    CHECK(kv_runtime_timeline_semaphore(rt, &sem, &value) == KV_ERR_UNSUPPORTED);
    CHECK(std::string(kv_last_error_message()).find("vk_timeline_semaphore") != std::string::npos);
    CHECK(sem == 7);
    CHECK(value == 7);
    CHECK(kv_runtime_wait_semaphore(rt, 1, 1) == KV_ERR_UNSUPPORTED);
    kv_bandwidth_result bw{};
    bw.struct_size = sizeof bw;
    CHECK(kv_runtime_measure_bandwidth(rt, 1 << 20, 1, &bw) ==
          KV_OK);  // submits without a semaphore
    kv_runtime_destroy(rt);

    // kvulkan's own device enables them where the device has them (lavapipe does).
    kvtest::Runtime own;
    kv_device_info info = runtime_info(own);
    if (info.features & KV_FEATURE_TIMELINE_SEMAPHORE) {
        uint64_t before = 0, after = 0;
        ok(kv_runtime_timeline_semaphore(own, &sem, &before));
        CHECK(sem != 0);
        CHECK(kv_runtime_measure_bandwidth(own, 1 << 20, 1, &bw) == KV_OK);
        ok(kv_runtime_timeline_semaphore(own, nullptr, &after));
        CHECK(after > before);
    }
}

TEST_CASE("scheduling: queue priority requests are reported back and never fail creation") {
    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    if (kvtest::validation_layer_available()) desc.flags |= KV_RUNTIME_VALIDATION;
    desc.queue_priority = 0.5f;
    desc.global_priority = KV_GLOBAL_PRIORITY_HIGH;
    std::vector<std::string> logs;  // "V: " marks validation messages
    desc.log_callback = [](void* user, kv_log_level level, const char* msg) {
        static_cast<std::vector<std::string>*>(user)->push_back(
            (level == KV_LOG_VALIDATION ? "V: " : "") + std::string(msg));
    };
    desc.log_user_data = &logs;
    kv_runtime* rt = nullptr;
    REQUIRE_MESSAGE(kv_runtime_create(&desc, &rt) == KV_OK, kv_last_error_message());
    kv_device_info info = runtime_info(rt);
    CHECK(info.queue_priority == 0.5f);
    CHECK((info.queue_flags & KV_QUEUE_ADOPTED) == 0);
    if (info.features & KV_FEATURE_GLOBAL_PRIORITY) {
        CHECK((info.global_priority == KV_GLOBAL_PRIORITY_HIGH || info.global_priority == 0));
    } else {
        CHECK(info.global_priority == 0);  // not offered: dropped, with a log line saying so
        bool said = false;
        for (auto& m : logs) said = said || m.find("global priority") != std::string::npos;
        CHECK(said);
    }
    // The queue family: one with compute and no graphics when the device has one.
    uint32_t nq = 0;
    {
        HostDevice probe(false);
        vkGetPhysicalDeviceQueueFamilyProperties(probe.physical, &nq, nullptr);
        std::vector<VkQueueFamilyProperties> qf(nq);
        vkGetPhysicalDeviceQueueFamilyProperties(probe.physical, &nq, qf.data());
        bool has_dedicated = false;
        for (auto& q : qf)
            has_dedicated = has_dedicated || ((q.queueFlags & VK_QUEUE_COMPUTE_BIT) &&
                                              !(q.queueFlags & VK_QUEUE_GRAPHICS_BIT));
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(probe.physical, &props);
        if (std::string(info.device_name) == props.deviceName) {  // the same device
            CHECK(((info.queue_flags & KV_QUEUE_DEDICATED_COMPUTE) != 0) == has_dedicated);
            REQUIRE(info.queue_family < nq);
            CHECK(((qf[info.queue_family].queueFlags & VK_QUEUE_GRAPHICS_BIT) == 0) ==
                  has_dedicated);
        }
    }
    kv_runtime_destroy(rt);
    for (auto& m : logs) CHECK_MESSAGE(m.rfind("V: ", 0) != 0, m);
    // The defaults: priority 1.0, no global priority.
    kvtest::Runtime plain;
    info = runtime_info(plain);
    CHECK(info.queue_priority == 1.0f);
    CHECK(info.global_priority == 0);
    CHECK(info.gpu_budget_us == 0);
    // Values outside the enum or [0, 1] are refused with a message.
    kv_runtime_desc bad = KV_RUNTIME_DESC_INIT;
    bad.queue_priority = 1.5f;
    CHECK(kv_runtime_create(&bad, &rt) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("queue_priority") != std::string::npos);
    bad.queue_priority = 0.f;
    bad.global_priority = 300;
    CHECK(kv_runtime_create(&bad, &rt) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("global_priority") != std::string::npos);
}

namespace {

struct BudgetRun {
    std::vector<kv_token> tokens;
    std::vector<float> logits;
    std::vector<uint32_t> submissions;  // per decode step
    kv_device_info info{};
    uint32_t n_layer = 0;
};

// A prefill and `steps` greedy decode steps on a runtime with GPU budget `budget_us`.
BudgetRun run_with_budget(const kvtest::Trace& t, uint32_t budget_us, int steps) {
    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    if (kvtest::validation_layer_available()) desc.flags |= KV_RUNTIME_VALIDATION;
    desc.gpu_budget_us = budget_us;
    std::vector<std::string> logs;
    desc.log_callback = [](void* user, kv_log_level level, const char* msg) {
        if (level == KV_LOG_VALIDATION)
            static_cast<std::vector<std::string>*>(user)->push_back(msg);
    };
    desc.log_user_data = &logs;
    kv_runtime* rt = nullptr;
    REQUIRE_MESSAGE(kv_runtime_create(&desc, &rt) == KV_OK, kv_last_error_message());
    BudgetRun r;
    r.info = runtime_info(rt);
    {
        Model model(rt, t.model_path);
        kv_model_info mi{};
        mi.struct_size = sizeof mi;
        ok(kv_model_get_info(model.m, &mi));
        r.n_layer = mi.n_layer;
        kv_session* s = make_session(model);
        ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
        for (int i = 0; i < steps; ++i) {
            kv_token tok = -1;
            ok(kv_decode_step(s, &tok));
            r.tokens.push_back(tok);
            kv_session_stats st{};
            st.struct_size = sizeof st;
            ok(kv_session_get_stats(s, &st));
            r.submissions.push_back(st.last_pass_submissions);
        }
        r.logits = logits(model, s);
        kv_session_destroy(s);
    }
    kv_runtime_destroy(rt);
    for (auto& m : logs) FAIL_CHECK("validation message: " << m);
    return r;
}

}  // namespace

TEST_CASE(
    "scheduling: a GPU budget cuts a decode step into submissions, with bit-identical tokens and "
    "logits") {
    if (!kvtest::require_shared()) return;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    const int steps = 6;
    const BudgetRun plain = run_with_budget(t, 0, steps);
    const BudgetRun tiny = run_with_budget(t, 1, steps);         // 1 us: below any layer's cost
    const BudgetRun roomy = run_with_budget(t, 1000000, steps);  // 1 s: a whole step fits
    CHECK(plain.info.gpu_budget_us == 0);
    if (!(tiny.info.features & KV_FEATURE_TIMESTAMPS)) {
        CHECK(tiny.info.gpu_budget_us == 0);  // ignored, with a log message
        return;
    }
    CHECK(tiny.info.gpu_budget_us == 1);
    REQUIRE(tiny.n_layer > 1);
    // Tiny: every layer and the output head is a submission of its own, from the first step on.
    for (uint32_t n : tiny.submissions) CHECK(n == tiny.n_layer + 1);
    // Roomy: the first pass of a row count has no estimate (one submission per layer); once
    // measured, the whole step is one submission.
    CHECK(roomy.submissions.back() == 1);
    // Without a budget: the default cuts (after layer 0, then every 4 layers).
    uint32_t default_cuts = 0;
    for (uint32_t l = 0; l + 1 < tiny.n_layer; ++l)
        default_cuts += (l == 0 || (l + 1) % 4 == 0) ? 1 : 0;
    CHECK(plain.submissions.back() == default_cuts + 1);
    CHECK(plain.submissions.back() < tiny.submissions.back());
    // The same dispatches whatever the cuts: bit-identical results.
    CHECK(tiny.tokens == plain.tokens);
    CHECK(roomy.tokens == plain.tokens);
    REQUIRE(tiny.logits.size() == plain.logits.size());
    CHECK(std::memcmp(tiny.logits.data(), plain.logits.data(), plain.logits.size() * 4) == 0);
    CHECK(std::memcmp(roomy.logits.data(), plain.logits.data(), plain.logits.size() * 4) == 0);
}
