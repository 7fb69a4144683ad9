// kv-game-loop: kvulkan inside a game's frame loop, headless.
//
//   kv-game-loop [-m model.gguf] [--npcs N] [--frames F] [--kernel-ms X] [--device INDEX|NAME]
//                [--gpu-budget-us B] [--validation]
//
// The program owns the Vulkan instance and device (Vulkan 1.1, one compute queue family) and
// hands them to kvulkan (kv_runtime_desc's adopted-device fields). Each frame of a fixed 60 Hz
// loop it submits its own compute work - a kernel calibrated at start-up to take --kernel-ms
// (default 3) on this device, the stand-in for rendering - and waits for that work's fence only.
// Meanwhile N NPC sessions generate through the non-blocking API: one kv_submit_decode_batch
// for all of them whenever the previous ticket is done, which the frame loop learns by polling
// (kv_ticket_poll; it never calls kv_ticket_wait). F frames run without generation, then F with
// it; it prints the frame-time p50/p99/max of both phases, the NPCs' tokens/s, the longest
// kvulkan call made on the frame thread, and each NPC's text. --gpu-budget-us B sets
// kv_runtime_desc.gpu_budget_us: kvulkan cuts each pass into submissions of about B us of GPU
// time, so a frame's submission waits behind at most one of them (0, the default: no budget).
//
// Queue sharing: if the compute family has two queues, kvulkan gets its own; otherwise (lavapipe,
// many integrated GPUs) both use one VkQueue and the frame's submission goes through
// kv_runtime_use_queue, which serializes it with kvulkan's own submissions.
#include <kvulkan/kvulkan.h>
#include <vulkan/vulkan.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include "frame_work.spv.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

[[noreturn]] void die(const char* what, kv_status s) {
    std::fprintf(stderr, "kv-game-loop: %s: %s: %s\n", what, kv_status_string(s), kv_last_error_message());
    std::exit(1);
}

void vk_check(VkResult r, const char* what) {
    if (r != VK_SUCCESS) {
        std::fprintf(stderr, "kv-game-loop: %s failed: VkResult %d\n", what, static_cast<int>(r));
        std::exit(1);
    }
}

int usage(int rc) {
    std::fprintf(rc ? stderr : stdout,
                 "usage: kv-game-loop [-m model.gguf] [--npcs N] [--frames F] [--kernel-ms X]\n"
                 "         [--device INDEX|NAME] [--gpu-budget-us B] [--validation]\n");
    return rc;
}

std::atomic<uint32_t> g_validation_messages{0};

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug(VkDebugUtilsMessageSeverityFlagBitsEXT, VkDebugUtilsMessageTypeFlagsEXT,
                                        const VkDebugUtilsMessengerCallbackDataEXT* data, void*) {
    ++g_validation_messages;
    std::fprintf(stderr, "kv-game-loop: validation: %s\n", data->pMessage);
    return VK_FALSE;
}

bool layer_available(const char* name) {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> layers(n);
    vkEnumerateInstanceLayerProperties(&n, layers.data());
    for (auto& l : layers)
        if (std::strcmp(l.layerName, name) == 0) return true;
    return false;
}

bool contains_nocase(const char* hay, const std::string& needle) {
    std::string h(hay), n(needle);
    for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return h.find(n) != std::string::npos;
}

// The host's own Vulkan: instance, device, its queue and kvulkan's, and the frame's compute work.
struct Host {
    VkInstance instance = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
    VkPhysicalDevice pd = VK_NULL_HANDLE;
    VkDevice dev = VK_NULL_HANDLE;
    uint32_t family = 0;
    VkQueue queue = VK_NULL_HANDLE;     // the frame's
    VkQueue kv_queue = VK_NULL_HANDLE;  // kvulkan's: the same one when the family has one queue
    std::string device_name;

    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    VkDescriptorSetLayout dsl = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkShaderModule module = VK_NULL_HANDLE;
    VkPipeline pipeline = VK_NULL_HANDLE;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    VkDescriptorSet set = VK_NULL_HANDLE;
    VkCommandPool cmd_pool = VK_NULL_HANDLE;
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    static constexpr uint32_t kMaxElements = 256 * 1024;
    uint32_t elements = kMaxElements;  // calibrated: fewer on a slow device

    void create(const std::string& device_choice, bool validation) {
        VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
        app.pApplicationName = "kv-game-loop";
        app.apiVersion = VK_API_VERSION_1_1;
        VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
        ici.pApplicationInfo = &app;
        const char* layer = "VK_LAYER_KHRONOS_validation";
        const char* ext = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
        if (validation) {
            if (!layer_available(layer)) {
                std::fprintf(stderr, "kv-game-loop: validation requested but %s is not installed\n", layer);
                std::exit(1);
            }
            ici.enabledLayerCount = 1;
            ici.ppEnabledLayerNames = &layer;
            ici.enabledExtensionCount = 1;
            ici.ppEnabledExtensionNames = &ext;
        }
        vk_check(vkCreateInstance(&ici, nullptr, &instance), "vkCreateInstance");
        if (validation) {
            auto create_messenger = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
                vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
            VkDebugUtilsMessengerCreateInfoEXT mci{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
            mci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                                  VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
            mci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
            mci.pfnUserCallback = on_debug;
            vk_check(create_messenger(instance, &mci, nullptr, &messenger), "vkCreateDebugUtilsMessengerEXT");
        }

        uint32_t n = 0;
        vkEnumeratePhysicalDevices(instance, &n, nullptr);
        std::vector<VkPhysicalDevice> pds(n);
        vkEnumeratePhysicalDevices(instance, &n, pds.data());
        if (pds.empty()) {
            std::fprintf(stderr, "kv-game-loop: no Vulkan device\n");
            std::exit(1);
        }
        // --device: an index or a name substring; else the first discrete GPU, else the first.
        for (uint32_t i = 0; i < n && !pd; ++i) {
            VkPhysicalDeviceProperties p;
            vkGetPhysicalDeviceProperties(pds[i], &p);
            if (device_choice.empty() ? p.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
                                      : (device_choice == std::to_string(i) ||
                                         contains_nocase(p.deviceName, device_choice)))
                pd = pds[i];
        }
        if (!pd && device_choice.empty()) pd = pds[0];
        if (!pd) {
            std::fprintf(stderr, "kv-game-loop: no Vulkan device matches --device %s\n", device_choice.c_str());
            std::exit(1);
        }
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(pd, &props);
        device_name = props.deviceName;
        if (props.apiVersion < VK_API_VERSION_1_1) {
            std::fprintf(stderr, "kv-game-loop: %s has Vulkan < 1.1\n", props.deviceName);
            std::exit(1);
        }

        vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
        std::vector<VkQueueFamilyProperties> qf(n);
        vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, qf.data());
        family = 0;
        while (family < n && !(qf[family].queueFlags & VK_QUEUE_COMPUTE_BIT)) ++family;
        if (family == n) {
            std::fprintf(stderr, "kv-game-loop: %s has no compute queue\n", props.deviceName);
            std::exit(1);
        }
        uint32_t queues = std::min<uint32_t>(qf[family].queueCount, 2);
        float prio[2] = {1.f, 1.f};
        VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
        qci.queueFamilyIndex = family;
        qci.queueCount = queues;
        qci.pQueuePriorities = prio;
        VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
        dci.queueCreateInfoCount = 1;
        dci.pQueueCreateInfos = &qci;
        vk_check(vkCreateDevice(pd, &dci, nullptr, &dev), "vkCreateDevice");
        vkGetDeviceQueue(dev, family, 0, &queue);
        vkGetDeviceQueue(dev, family, queues - 1, &kv_queue);
    }

    uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags want) const {
        VkPhysicalDeviceMemoryProperties mp;
        vkGetPhysicalDeviceMemoryProperties(pd, &mp);
        for (uint32_t i = 0; i < mp.memoryTypeCount; ++i)
            if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
        std::fprintf(stderr, "kv-game-loop: no suitable memory type\n");
        std::exit(1);
    }

    void create_frame_work() {
        VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
        bci.size = kMaxElements * sizeof(float);
        bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
        vk_check(vkCreateBuffer(dev, &bci, nullptr, &buffer), "vkCreateBuffer");
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(dev, buffer, &req);
        VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
        mai.allocationSize = req.size;
        mai.memoryTypeIndex = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                                  VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
        vk_check(vkAllocateMemory(dev, &mai, nullptr, &memory), "vkAllocateMemory");
        vk_check(vkBindBufferMemory(dev, buffer, memory, 0), "vkBindBufferMemory");
        void* p = nullptr;
        vk_check(vkMapMemory(dev, memory, 0, VK_WHOLE_SIZE, 0, &p), "vkMapMemory");
        auto* f = static_cast<float*>(p);
        for (uint32_t i = 0; i < kMaxElements; ++i) f[i] = float(i % 97) / 97.f;
        vkUnmapMemory(dev, memory);

        VkDescriptorSetLayoutBinding b{0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
        VkDescriptorSetLayoutCreateInfo dlci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
        dlci.bindingCount = 1;
        dlci.pBindings = &b;
        vk_check(vkCreateDescriptorSetLayout(dev, &dlci, nullptr, &dsl), "vkCreateDescriptorSetLayout");
        VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, 2 * sizeof(uint32_t)};
        VkPipelineLayoutCreateInfo plci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
        plci.setLayoutCount = 1;
        plci.pSetLayouts = &dsl;
        plci.pushConstantRangeCount = 1;
        plci.pPushConstantRanges = &pcr;
        vk_check(vkCreatePipelineLayout(dev, &plci, nullptr, &layout), "vkCreatePipelineLayout");
        VkShaderModuleCreateInfo smci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
        smci.codeSize = sizeof frame_work_spv;
        smci.pCode = frame_work_spv;
        vk_check(vkCreateShaderModule(dev, &smci, nullptr, &module), "vkCreateShaderModule");
        VkComputePipelineCreateInfo cpci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
        cpci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
        cpci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
        cpci.stage.module = module;
        cpci.stage.pName = "main";
        cpci.layout = layout;
        vk_check(vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpci, nullptr, &pipeline),
                 "vkCreateComputePipelines");

        VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1};
        VkDescriptorPoolCreateInfo dpci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
        dpci.maxSets = 1;
        dpci.poolSizeCount = 1;
        dpci.pPoolSizes = &ps;
        vk_check(vkCreateDescriptorPool(dev, &dpci, nullptr, &pool), "vkCreateDescriptorPool");
        VkDescriptorSetAllocateInfo dsai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
        dsai.descriptorPool = pool;
        dsai.descriptorSetCount = 1;
        dsai.pSetLayouts = &dsl;
        vk_check(vkAllocateDescriptorSets(dev, &dsai, &set), "vkAllocateDescriptorSets");
        VkDescriptorBufferInfo dbi{buffer, 0, VK_WHOLE_SIZE};
        VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
        w.dstSet = set;
        w.descriptorCount = 1;
        w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        w.pBufferInfo = &dbi;
        vkUpdateDescriptorSets(dev, 1, &w, 0, nullptr);

        VkCommandPoolCreateInfo cpi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
        cpi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
        cpi.queueFamilyIndex = family;
        vk_check(vkCreateCommandPool(dev, &cpi, nullptr, &cmd_pool), "vkCreateCommandPool");
        VkCommandBufferAllocateInfo cbai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
        cbai.commandPool = cmd_pool;
        cbai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        cbai.commandBufferCount = 1;
        vk_check(vkAllocateCommandBuffers(dev, &cbai, &cmd), "vkAllocateCommandBuffers");
        VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        vk_check(vkCreateFence(dev, &fci, nullptr, &fence), "vkCreateFence");
    }

    // (Re)records the frame's command buffer: one dispatch of `iterations` per element.
    void record(uint32_t iterations) {
        vk_check(vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer");
        VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
        vk_check(vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
        vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, nullptr);
        uint32_t push[2] = {iterations, elements};
        vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof push, push);
        vkCmdDispatch(cmd, (elements + 63) / 64, 1, 1);
        vk_check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
    }

    // The submission itself: called directly, or inside kv_runtime_use_queue on a shared queue.
    static void submit_on(void* queue, void* self) {
        auto* h = static_cast<Host*>(self);
        VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
        si.commandBufferCount = 1;
        si.pCommandBuffers = &h->cmd;
        vk_check(vkQueueSubmit(static_cast<VkQueue>(queue), 1, &si, h->fence), "vkQueueSubmit");
    }

    void wait_fence() {
        vk_check(vkWaitForFences(dev, 1, &fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
        vk_check(vkResetFences(dev, 1, &fence), "vkResetFences");
    }

    void destroy() {
        if (!dev) return;
        vkDeviceWaitIdle(dev);
        vkDestroyFence(dev, fence, nullptr);
        vkDestroyCommandPool(dev, cmd_pool, nullptr);
        vkDestroyDescriptorPool(dev, pool, nullptr);
        vkDestroyPipeline(dev, pipeline, nullptr);
        vkDestroyShaderModule(dev, module, nullptr);
        vkDestroyPipelineLayout(dev, layout, nullptr);
        vkDestroyDescriptorSetLayout(dev, dsl, nullptr);
        vkDestroyBuffer(dev, buffer, nullptr);
        vkFreeMemory(dev, memory, nullptr);
        vkDestroyDevice(dev, nullptr);
        if (messenger) {
            auto destroy_messenger = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
                vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
            destroy_messenger(instance, messenger, nullptr);
        }
        vkDestroyInstance(instance, nullptr);
    }
};

// Every kvulkan call the frame thread makes goes through here: its longest duration is the most
// the frame loop ever spent inside kvulkan.
struct CallTimer {
    double longest_ms = 0;
    const char* longest_what = "none";
    uint64_t calls = 0;
    uint64_t ticket_waits = 0;  // kv_ticket_wait calls: the loop below makes none
    template <class F>
    auto operator()(const char* what, F&& f) {
        if (std::strcmp(what, "kv_ticket_wait") == 0) ++ticket_waits;
        auto t0 = Clock::now();
        auto r = f();
        double ms = ms_since(t0);
        ++calls;
        if (ms > longest_ms) {
            longest_ms = ms;
            longest_what = what;
        }
        return r;
    }
};

struct Npc {
    kv_session* session = nullptr;
    std::string prompt;
    std::string text;
    uint32_t tokens = 0;
    bool done = false;
    const char* end = "frames ran out";
};

struct Phase {
    std::vector<double> frame_ms;
    uint32_t missed = 0;  // frames that ended after the next frame's deadline
};

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p / 100.0 * double(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

void print_phase(const char* name, const Phase& ph) {
    std::printf("%s: %zu frames, frame time p50 %.2f ms  p99 %.2f ms  max %.2f ms, %u over the 16.67 ms budget\n",
                name, ph.frame_ms.size(), percentile(ph.frame_ms, 50), percentile(ph.frame_ms, 99),
                percentile(ph.frame_ms, 100), ph.missed);
}

// Worker-thread completion time of the current ticket (for the decode latency figure only).
std::atomic<int64_t> g_ticket_done_ns{0};
void on_ticket_done(kv_ticket*, kv_status, void*) {
    g_ticket_done_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_path = "../shared/models/stories260K/stories260K.gguf", device_choice;
    bool model_given = false, validation = false;
    uint32_t n_npcs = 4, n_frames = 120, gpu_budget_us = 0;
    double kernel_ms = 3.0;
    if (const char* e = std::getenv("KV_VALIDATION")) validation = std::strcmp(e, "1") == 0;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "kv-game-loop: %s needs a value\n", a.c_str());
                std::exit(usage(2));
            }
            return argv[++i];
        };
        auto number = [&](double lo, double hi) {
            const char* v = next();
            char* end = nullptr;
            double x = std::strtod(v, &end);
            if (end == v || *end || !(x >= lo && x <= hi)) {
                std::fprintf(stderr, "kv-game-loop: bad value for %s: %s (%g to %g)\n", a.c_str(), v, lo, hi);
                std::exit(usage(2));
            }
            return x;
        };
        if (a == "-m" || a == "--model") {
            model_path = next();
            model_given = true;
        } else if (a == "--npcs") {
            n_npcs = static_cast<uint32_t>(number(1, 64));
        } else if (a == "--frames") {
            n_frames = static_cast<uint32_t>(number(1, 1000000));
        } else if (a == "--kernel-ms") {
            kernel_ms = number(0.1, 15);
        } else if (a == "--device") {
            device_choice = next();
        } else if (a == "--gpu-budget-us") {
            gpu_budget_us = static_cast<uint32_t>(number(0, 1000000));
        } else if (a == "--validation") {
            validation = true;
        } else if (a == "-h" || a == "--help") {
            return usage(0);
        } else {
            std::fprintf(stderr, "kv-game-loop: unknown argument %s\n", a.c_str());
            return usage(2);
        }
    }
    struct stat st_model;
    if (stat(model_path.c_str(), &st_model) != 0) {
        std::fprintf(stderr, "kv-game-loop: %s not found%s\n", model_path.c_str(),
                     model_given ? "" : " (the default; give a model with -m model.gguf)");
        return 1;
    }

    // ---- the host's Vulkan, then kvulkan on the same device ------------------------------------
    Host host;
    host.create(device_choice, validation);
    host.create_frame_work();
    const bool shared_queue = host.queue == host.kv_queue;
    kv_runtime_desc rd = KV_RUNTIME_DESC_INIT;
    rd.vk_instance = host.instance;
    rd.vk_physical_device = host.pd;
    rd.vk_device = host.dev;
    rd.vk_queue = host.kv_queue;
    rd.vk_queue_family = host.family;
    rd.vk_api_version = VK_API_VERSION_1_1;
    rd.gpu_budget_us = gpu_budget_us;
    kv_runtime* rt = nullptr;
    if (kv_status s = kv_runtime_create(&rd, &rt)) die("kv_runtime_create", s);
    kv_model_desc md = KV_MODEL_DESC_INIT;
    md.path = model_path.c_str();
    kv_model* model = nullptr;
    if (kv_status s = kv_model_load(rt, &md, &model)) die(model_path.c_str(), s);

    static const char* const kPrompts[] = {"Once upon a time", "One day, a little dog", "Tom and Lily went",
                                           "The big red ball", "Sue had a cat", "In the park"};
    std::vector<Npc> npcs(n_npcs);
    for (uint32_t i = 0; i < n_npcs; ++i) {
        kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
        sd.temperature = 0.8f;
        sd.seed = 1234 + i;
        kv_session_desc sdesc = KV_SESSION_DESC_INIT;
        sdesc.sampler = &sd;
        sdesc.n_ctx = 512;
        if (kv_status s = kv_session_create(model, &sdesc, &npcs[i].session)) die("kv_session_create", s);
        npcs[i].prompt = kPrompts[i % (sizeof kPrompts / sizeof *kPrompts)];
    }

    auto submit_frame = [&](CallTimer* timer) {
        if (!shared_queue) {
            Host::submit_on(host.queue, &host);
            return;
        }
        kv_status s = timer ? (*timer)("kv_runtime_use_queue",
                                       [&] { return kv_runtime_use_queue(rt, Host::submit_on, &host); })
                            : kv_runtime_use_queue(rt, Host::submit_on, &host);
        if (s) die("kv_runtime_use_queue", s);
    };

    // ---- calibration (the only place the GPU time of the frame's work is waited for on purpose) --
    auto time_kernel = [&](uint32_t iterations) {
        host.record(iterations);
        double best = 1e9;
        for (int r = 0; r < 3; ++r) {
            auto t0 = Clock::now();
            submit_frame(nullptr);
            host.wait_fence();
            best = std::min(best, ms_since(t0));
        }
        return best;
    };
    // Fewer elements until a few iterations fit well within the target (lavapipe), then more
    // iterations until a quarter of it, then the count scaled to it.
    uint32_t iterations = 4;
    double t = time_kernel(iterations);
    while (t > kernel_ms / 2 && host.elements > 64) {
        host.elements /= 2;
        t = time_kernel(iterations);
    }
    while (t < kernel_ms / 4 && iterations < (1u << 24)) t = time_kernel(iterations *= 2);
    for (int round = 0; round < 3; ++round) {  // fixed costs make the first scaling short
        iterations = std::max<uint32_t>(1, static_cast<uint32_t>(double(iterations) * kernel_ms / std::max(t, 1e-3)));
        t = time_kernel(iterations);
        if (t > kernel_ms * 0.8 && t < kernel_ms * 1.25) break;
    }
    std::printf("device: %s (%s)\n", host.device_name.c_str(),
                shared_queue ? "one queue, shared with kvulkan through kv_runtime_use_queue"
                             : "kvulkan on its own queue of the same family");
    std::printf("frame work: %u iterations x %u elements = %.2f ms (calibrated for %.2f ms)\n", iterations,
                host.elements, t, kernel_ms);
    {
        kv_device_info info{};
        info.struct_size = sizeof info;
        kv_runtime_get_info(rt, &info);
        if (gpu_budget_us && info.gpu_budget_us)
            std::printf("GPU budget: on, kvulkan's submissions cut to about %u us each\n", info.gpu_budget_us);
        else if (gpu_budget_us)
            std::printf("GPU budget: requested %u us, off (the queue has no timestamps)\n", gpu_budget_us);
        else
            std::printf("GPU budget: off (--gpu-budget-us B turns it on)\n");
    }

    // ---- loading screen: one blocking prefill and step creates kvulkan's pipelines (on lavapipe
    // that compiles shaders for seconds), as a game loads its own before the first frame ----------
    {
        kv_token toks[8];
        uint32_t n = 8;
        kv_token tok;
        if (kv_status s = kv_tokenize(model, "Once", size_t(-1), KV_TOKENIZE_ADD_SPECIAL, toks, &n)) die("kv_tokenize", s);
        if (kv_status s = kv_prefill(npcs[0].session, toks, n)) die("kv_prefill", s);
        if (kv_status s = kv_decode_step(npcs[0].session, &tok)) die("kv_decode_step", s);
        if (n_npcs > 1) {
            kv_session* two[2] = {npcs[0].session, npcs[1].session};
            kv_token out[2];
            kv_status st[2];
            if (kv_status s = kv_prefill(npcs[1].session, toks, n)) die("kv_prefill", s);
            if (kv_status s = kv_decode_batch(two, 2, out, st)) die("kv_decode_batch", s);
        }
        for (auto& npc : npcs)
            if (kv_status s = kv_session_reset(npc.session)) die("kv_session_reset", s);
    }

    // ---- the frame loop ----------------------------------------------------------------------
    const auto frame_period = std::chrono::nanoseconds(16'666'667);
    CallTimer kv_calls;
    std::vector<kv_ticket*> prefills(n_npcs, nullptr);
    kv_ticket* batch = nullptr;
    std::vector<kv_session*> batch_sessions;
    std::vector<uint32_t> batch_npcs;
    Clock::time_point batch_submitted{};
    double batch_latency_ms = 0;
    uint32_t batches = 0;
    uint64_t npc_tokens = 0;
    Clock::time_point gen_start{}, gen_end{};  // the generating phase
    bool generating_done = false;
    char piece[256];

    // One frame's kvulkan bookkeeping: poll, collect, resubmit. Never waits.
    auto tick_npcs = [&](bool first) {
        if (first) {
            for (uint32_t i = 0; i < n_npcs; ++i) {
                kv_token toks[64];
                uint32_t n = 64;
                kv_status s = kv_calls("kv_tokenize", [&] {
                    return kv_tokenize(model, npcs[i].prompt.c_str(), npcs[i].prompt.size(), KV_TOKENIZE_ADD_SPECIAL,
                                       toks, &n);
                });
                if (s) die("kv_tokenize", s);
                s = kv_calls("kv_submit_prefill",
                             [&] { return kv_submit_prefill(npcs[i].session, toks, n, nullptr, nullptr, &prefills[i]); });
                if (s) die("kv_submit_prefill", s);
                npcs[i].text = npcs[i].prompt;
            }
            return;
        }
        for (auto& p : prefills) {
            if (!p) continue;
            kv_status s = kv_calls("kv_ticket_poll", [&] { return kv_ticket_poll(p); });
            if (s == KV_NOT_READY) return;  // NPCs start talking once every prompt is in
            if (s) die("prefill", s);
            kv_calls("kv_ticket_destroy", [&] { kv_ticket_destroy(p); return 0; });
            p = nullptr;
        }
        if (batch) {
            kv_status s = kv_calls("kv_ticket_poll", [&] { return kv_ticket_poll(batch); });
            if (s == KV_NOT_READY) return;
            if (s) die("decode batch", s);
            // (The callback runs just after the ticket turns complete: if it has not yet, now.)
            int64_t done_ns = g_ticket_done_ns.load();
            auto done = done_ns ? Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(done_ns))) : Clock::now();
            batch_latency_ms += std::chrono::duration<double, std::milli>(done - batch_submitted).count();
            ++batches;
            std::vector<kv_token> toks(batch_sessions.size());
            std::vector<kv_status> sts(batch_sessions.size());
            uint32_t n = 0;
            s = kv_calls("kv_ticket_results", [&] {
                return kv_ticket_results(batch, toks.data(), sts.data(), uint32_t(toks.size()), &n);
            });
            if (s) die("kv_ticket_results", s);
            kv_calls("kv_ticket_destroy", [&] { kv_ticket_destroy(batch); return 0; });
            batch = nullptr;
            for (uint32_t k = 0; k < n; ++k) {
                Npc& npc = npcs[batch_npcs[k]];
                if (sts[k] == KV_ERR_CONTEXT_FULL) {
                    npc.done = true;
                    npc.end = "context full";
                    continue;
                }
                if (sts[k] == KV_END_OF_GENERATION) {  // sampled, not appended: the NPC is done
                    npc.done = true;
                    npc.end = "end of text";
                    continue;
                }
                if (sts[k]) die("decode", sts[k]);
                ++npc.tokens;
                ++npc_tokens;
                if (kv_calls("kv_token_is_eog", [&] { return kv_token_is_eog(model, toks[k]); })) {
                    npc.done = true;
                    npc.end = "end of text";
                    continue;
                }
                size_t len = sizeof piece;
                s = kv_calls("kv_token_to_piece", [&] { return kv_token_to_piece(model, toks[k], piece, &len); });
                if (s) die("kv_token_to_piece", s);
                npc.text.append(piece, len);
            }
        }
        batch_sessions.clear();
        batch_npcs.clear();
        for (uint32_t i = 0; i < n_npcs; ++i)
            if (!npcs[i].done) {
                batch_sessions.push_back(npcs[i].session);
                batch_npcs.push_back(i);
            }
        if (batch_sessions.empty()) {
            generating_done = true;
            return;
        }
        g_ticket_done_ns = 0;
        batch_submitted = Clock::now();
        kv_status s = kv_calls("kv_submit_decode_batch", [&] {
            return kv_submit_decode_batch(batch_sessions.data(), uint32_t(batch_sessions.size()), on_ticket_done,
                                          nullptr, &batch);
        });
        if (s) die("kv_submit_decode_batch", s);
    };

    host.record(iterations);
    Phase phases[2];
    for (int phase = 0; phase < 2; ++phase) {
        auto deadline = Clock::now();
        if (phase) gen_start = deadline;
        for (uint32_t f = 0; f < n_frames; ++f) {
            std::this_thread::sleep_until(deadline);
            auto t0 = Clock::now();
            submit_frame(phase ? &kv_calls : nullptr);
            if (phase && !generating_done) tick_npcs(f == 0);
            host.wait_fence();  // the frame's own work: its only wait
            phases[phase].frame_ms.push_back(ms_since(t0));
            deadline += frame_period;
            if (Clock::now() > deadline) {
                ++phases[phase].missed;
                while (deadline < Clock::now()) deadline += frame_period;  // skip, never catch up
            }
        }
    }
    gen_end = Clock::now();

    // ---- report (the loop is over: waiting is allowed again) ---------------------------------
    print_phase("without generation", phases[0]);
    char name[64];
    std::snprintf(name, sizeof name, "with %u NPCs generating", n_npcs);
    print_phase(name, phases[1]);
    double gen_s = std::chrono::duration<double>(gen_end - gen_start).count();
    std::printf("NPC tokens: %llu in %.2f s of frames = %.1f tok/s (%u batched decode tickets, mean %.2f ms from submit to done)\n",
                static_cast<unsigned long long>(npc_tokens), gen_s, gen_s > 0 ? double(npc_tokens) / gen_s : 0.0,
                batches, batches ? batch_latency_ms / batches : 0.0);
    std::printf("frame thread: %llu kv_ticket_wait calls; %llu kvulkan calls, the longest %.3f ms (%s)\n",
                static_cast<unsigned long long>(kv_calls.ticket_waits), static_cast<unsigned long long>(kv_calls.calls),
                kv_calls.longest_ms, kv_calls.longest_what);
    for (uint32_t i = 0; i < n_npcs; ++i)
        std::printf("NPC %u (%u tokens, %s): %s\n", i, npcs[i].tokens, npcs[i].end, npcs[i].text.c_str());

    for (auto* p : prefills) kv_ticket_destroy(p);
    kv_ticket_destroy(batch);
    for (auto& npc : npcs) kv_session_destroy(npc.session);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    host.destroy();
    if (g_validation_messages) {
        std::fprintf(stderr, "kv-game-loop: %u validation messages\n", g_validation_messages.load());
        return 1;
    }
    return 0;
}
