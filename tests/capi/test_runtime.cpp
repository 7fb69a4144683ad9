// The public C API of the runtime: versions, statuses, errors, device choice, adoption.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>
#include <vulkan/vulkan.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "capi/abi_v1.h"
#include "common/runtime_fixture.h"

extern "C" int kv_c99_header_check(void);

TEST_CASE("abi: the header compiles and works as C99") { CHECK(kv_c99_header_check() == 0); }

TEST_CASE("abi: version macros agree with the library") {
    CHECK(kv_version() == KV_VERSION);
    CHECK(std::string(kv_version_string()) ==
          std::to_string(KV_VERSION_MAJOR) + "." + std::to_string(KV_VERSION_MINOR) + "." + std::to_string(KV_VERSION_PATCH));
    CHECK(KV_VERSION_GET_MINOR(KV_MAKE_VERSION(1, 2, 3)) == 2);
    CHECK(KV_VERSION_GET_PATCH(KV_MAKE_VERSION(1, 2, 3)) == 3);
}

TEST_CASE("abi: every status has a name and errors are negative") {
    for (kv_status s = KV_ERR_BAD_TOKEN; s <= KV_END_OF_GENERATION; ++s)
        CHECK(std::string(kv_status_string(s)) != "unknown status");
    CHECK(std::string(kv_status_string(12345)) == "unknown status");
    CHECK(KV_ERR_INVALID_ARGUMENT < 0);
    CHECK(KV_INCOMPLETE > 0);
    CHECK(sizeof(kv_log_level) == 4);
    CHECK(sizeof(kv_device_type) == 4);
}

TEST_CASE("abi: the last error is thread-local and cleared by a successful call") {
    CHECK(kv_runtime_create(nullptr, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("out_runtime") != std::string::npos);
    std::string other;
    std::thread t([&] { other = kv_last_error_message(); });
    t.join();
    CHECK(other.empty());
    uint32_t n = 0;
    CHECK(kv_enumerate_devices(nullptr, nullptr, &n) == KV_OK);
    CHECK(std::string(kv_last_error_message()).empty());
}

TEST_CASE("runtime: bad arguments give the right status and a message") {
    kv_runtime* rt = nullptr;
    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    CHECK(kv_runtime_create(&desc, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("out_runtime") != std::string::npos);

    desc.struct_size = 4;  // wrong struct size
    CHECK(kv_runtime_create(&desc, &rt) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("struct_size") != std::string::npos);
    CHECK(rt == nullptr);

    desc = KV_RUNTIME_DESC_INIT;
    desc.device_index = 9999;  // out of range
    desc.flags = KV_RUNTIME_IGNORE_ENVIRONMENT;
    CHECK(kv_runtime_create(&desc, &rt) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("device_index 9999") != std::string::npos);
    CHECK(rt == nullptr);

    desc = KV_RUNTIME_DESC_INIT;
    desc.device_name = "no such gpu anywhere";
    CHECK(kv_runtime_create(&desc, &rt) == KV_ERR_NO_DEVICE);
    CHECK(std::string(kv_last_error_message()).find("no such gpu anywhere") != std::string::npos);

    desc = KV_RUNTIME_DESC_INIT;
    desc.vk_device = reinterpret_cast<void*>(0x1);  // adoption with missing handles
    CHECK(kv_runtime_create(&desc, &rt) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("vk_instance") != std::string::npos);

    CHECK(kv_runtime_get_info(nullptr, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_runtime_measure_bandwidth(nullptr, 0, 0, nullptr) == KV_ERR_INVALID_ARGUMENT);
    kv_runtime_destroy(nullptr);  // no-op
}

TEST_CASE("runtime: a newer, larger desc is accepted only if its unknown tail is zero") {
    struct Bigger {
        kv_runtime_desc d;
        uint64_t future_field;
    } big;
    std::memset(&big, 0, sizeof big);
    big.d = KV_RUNTIME_DESC_INIT;
    big.d.struct_size = sizeof big;
    big.d.flags = KV_RUNTIME_IGNORE_ENVIRONMENT;
    big.future_field = 7;
    kv_runtime* rt = nullptr;
    CHECK(kv_runtime_create(&big.d, &rt) == KV_ERR_UNSUPPORTED);
    big.future_field = 0;
    REQUIRE(kv_runtime_create(&big.d, &rt) == KV_OK);
    kv_runtime_destroy(rt);
}

TEST_CASE("runtime: enumerate devices, with KV_INCOMPLETE for a short array") {
    uint32_t n = 0;
    REQUIRE(kv_enumerate_devices(nullptr, nullptr, &n) == KV_OK);
    REQUIRE(n >= 1);
    std::vector<kv_device_info> infos(n);
    for (auto& i : infos) i.struct_size = sizeof i;
    uint32_t got = n;
    REQUIRE(kv_enumerate_devices(nullptr, infos.data(), &got) == KV_OK);
    CHECK(got == n);
    for (uint32_t i = 0; i < n; ++i) {
        CHECK(infos[i].index == i);
        CHECK(std::strlen(infos[i].device_name) > 0);
        CHECK(infos[i].max_storage_buffer_range > 0);
        CHECK(infos[i].subgroup_size > 0);
    }
    if (n >= 2) {
        uint32_t one = 1;
        CHECK(kv_enumerate_devices(nullptr, infos.data(), &one) == KV_INCOMPLETE);
        CHECK(one == 1);
    }
    kv_device_info bad{};
    bad.struct_size = 8;
    uint32_t c = 1;
    CHECK(kv_enumerate_devices(nullptr, &bad, &c) == KV_ERR_INVALID_ARGUMENT);
}

TEST_CASE("runtime: create with validation, report the device, pick by index and by name") {
    kvtest::Runtime rt;
    kv_device_info info{};
    info.struct_size = sizeof info;
    REQUIRE(kv_runtime_get_info(rt, &info) == KV_OK);
    CHECK(info.struct_size == sizeof info);
    CHECK(std::strlen(info.device_name) > 0);
    CHECK(info.api_version >= VK_API_VERSION_1_1);
    CHECK(info.memory_heap_count >= 1);
    CHECK(kv_runtime_validation_message_count(rt) == 0);

    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    desc.flags = KV_RUNTIME_IGNORE_ENVIRONMENT;
    desc.device_index = static_cast<int32_t>(info.index);
    kv_runtime* r2 = nullptr;
    REQUIRE(kv_runtime_create(&desc, &r2) == KV_OK);
    kv_device_info i2{};
    i2.struct_size = sizeof i2;
    REQUIRE(kv_runtime_get_info(r2, &i2) == KV_OK);
    CHECK(std::string(i2.device_name) == info.device_name);
    kv_runtime_destroy(r2);

    // Name substring, case-insensitive.
    std::string name = info.device_name;
    std::string sub = name.substr(0, std::min<size_t>(4, name.size()));
    for (auto& ch : sub) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    desc.device_index = -1;
    desc.device_name = sub.c_str();
    REQUIRE(kv_runtime_create(&desc, &r2) == KV_OK);
    kv_runtime_destroy(r2);
}

TEST_CASE("runtime: out-structs are size-checked and a newer, larger one is filled up to what the library knows") {
    kvtest::Runtime rt;
    struct {
        kv_device_info info;
        unsigned char future[64];
    } s;
    std::memset(&s, 0xAB, sizeof s);
    s.info.struct_size = sizeof s;
    REQUIRE(kv_runtime_get_info(rt, &s.info) == KV_OK);
    CHECK(s.info.struct_size == sizeof s);  // the caller's size is kept
    CHECK(std::strlen(s.info.device_name) > 0);
    CHECK(s.future[0] == 0xAB);  // nothing written past the library's struct
    s.info.struct_size = uint32_t(kv::api::kDeviceInfoV1 - 4);  // smaller than the first published layout
    CHECK(kv_runtime_get_info(rt, &s.info) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("struct_size") != std::string::npos);
}

TEST_CASE("runtime: adopts the host's VkInstance/VkDevice and leaves them alive") {
    // The host application (a game engine) creates its own instance and device.
    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.apiVersion = VK_API_VERSION_1_1;
    VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ici.pApplicationInfo = &app;
    const char* layer = "VK_LAYER_KHRONOS_validation";
    if (kvtest::validation_layer_available()) {
        ici.enabledLayerCount = 1;
        ici.ppEnabledLayerNames = &layer;
    }
    VkInstance inst = VK_NULL_HANDLE;
    REQUIRE(vkCreateInstance(&ici, nullptr, &inst) == VK_SUCCESS);
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(inst, &n, nullptr);
    REQUIRE(n > 0);
    std::vector<VkPhysicalDevice> pds(n);
    vkEnumeratePhysicalDevices(inst, &n, pds.data());
    VkPhysicalDevice pd = pds[0];
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
    uint32_t family = 0;
    while (family < nq && !(qf[family].queueFlags & VK_QUEUE_COMPUTE_BIT)) ++family;
    REQUIRE(family < nq);
    float prio = 1.f;
    VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = family;
    qci.queueCount = 1;
    qci.pQueuePriorities = &prio;
    VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    VkDevice dev = VK_NULL_HANDLE;
    REQUIRE(vkCreateDevice(pd, &dci, nullptr, &dev) == VK_SUCCESS);
    VkQueue queue = VK_NULL_HANDLE;
    vkGetDeviceQueue(dev, family, 0, &queue);

    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    desc.vk_instance = inst;
    desc.vk_physical_device = pd;
    desc.vk_device = dev;
    desc.vk_queue = queue;
    desc.vk_queue_family = family;
    desc.vk_api_version = VK_API_VERSION_1_1;
    kv_runtime* rt = nullptr;
    REQUIRE_MESSAGE(kv_runtime_create(&desc, &rt) == KV_OK, kv_last_error_message());
    kv_bandwidth_result bw{};
    bw.struct_size = sizeof bw;
    CHECK(kv_runtime_measure_bandwidth(rt, 1 << 20, 1, &bw) == KV_OK);  // kvulkan works on it
    CHECK(bw.read_gbps > 0);
    kv_runtime_destroy(rt);

    // A queue family the device does not have is refused with a message.
    desc.vk_queue_family = 999;
    kv_runtime* bad = nullptr;
    CHECK(kv_runtime_create(&desc, &bad) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("999") != std::string::npos);
    CHECK(bad == nullptr);

    // Still ours, still alive: use the device, then destroy it ourselves.
    CHECK(vkDeviceWaitIdle(dev) == VK_SUCCESS);
    CHECK(vkQueueWaitIdle(queue) == VK_SUCCESS);
    vkDestroyDevice(dev, nullptr);
    vkDestroyInstance(inst, nullptr);
}

TEST_CASE("runtime: bandwidth probe reports positive figures") {
    kvtest::Runtime rt;
    kv_bandwidth_result bw{};
    bw.struct_size = sizeof bw;
    REQUIRE(kv_runtime_measure_bandwidth(rt, 8 << 20, 2, &bw) == KV_OK);
    CHECK(bw.bytes == (8u << 20));
    CHECK(bw.read_gbps > 0);
    CHECK(bw.write_gbps > 0);
    CHECK(bw.copy_gbps > 0);
    bw.struct_size = 0;
    CHECK(kv_runtime_measure_bandwidth(rt, 8 << 20, 2, &bw) == KV_ERR_INVALID_ARGUMENT);
}

TEST_CASE("runtime: a small bandwidth request is rounded up to the probe's least buffer, never down to 0") {
    kvtest::Runtime rt;
    // (1 byte used to round down to a 0-byte buffer and fail.)
    for (const std::pair<uint64_t, uint64_t>& c : {std::pair<uint64_t, uint64_t>{1, 4096}, {4095, 4096}, {4097, 4112}}) {
        INFO("asked " << c.first);
        kv_bandwidth_result bw{};
        bw.struct_size = sizeof bw;
        REQUIRE(kv_runtime_measure_bandwidth(rt, c.first, 1, &bw) == KV_OK);
        CHECK(bw.bytes == c.second);
        CHECK(bw.read_gbps > 0);
    }
}
