// Memory-bandwidth probe (kv_runtime_measure_bandwidth).
#include <algorithm>
#include <chrono>

#include "engine/runtime.h"

namespace kv::engine {

kv_bandwidth_result measure_bandwidth(kv_runtime& rt, uint64_t bytes, uint32_t iterations) {
    std::lock_guard<std::mutex> lock(rt.mutex);
    vk::Device& dev = *rt.device;
    if (iterations == 0) iterations = 10;
    uint64_t cap = std::min<uint64_t>(dev.max_storage_buffer_range(), dev.max_allocation_size());
    cap = std::min<uint64_t>(cap, 0xFFFFFFFFull * 16);  // n is a 32-bit vec4 count
    if (bytes == 0) {
        bytes = 1ull << 30;
        const uint64_t heap = dev.largest_device_local_heap();
        if (heap) bytes = std::min<uint64_t>(bytes, heap / 8);
    }
    // A small request is rounded up to the probe's least buffer, a large one down to the device's
    // limit; both to whole vec4s. kv_bandwidth_result.bytes reports the size used.
    constexpr uint64_t kMinBytes = 4096;
    cap = cap / 16 * 16;
    if (cap < kMinBytes)
        fail(KV_ERR_UNSUPPORTED, "the device cannot bind a %llu-byte bandwidth probe buffer (limit %llu bytes)",
             (unsigned long long)kMinBytes, (unsigned long long)cap);
    bytes = std::clamp<uint64_t>(bytes, kMinBytes, cap);
    bytes = std::min<uint64_t>((bytes + 15) / 16 * 16, cap);

    vk::Buffer a(rt.allocator.get(), bytes, vk::MemoryUse::Device);
    vk::Buffer b(rt.allocator.get(), bytes, vk::MemoryUse::Device);
    vk::Buffer sink(rt.allocator.get(), 256, vk::MemoryUse::Device);
    const uint32_t wg = 256;
    uint32_t n = static_cast<uint32_t>(bytes / 16);
    uint32_t groups = std::min<uint32_t>(65535, std::max<uint32_t>(1, (n + wg * 8 - 1) / (wg * 8)));
    groups = std::min<uint32_t>(groups, dev.limits().maxComputeWorkGroupCount[0]);

    vk::CommandStream cs(dev, 2);
    cs.begin();
    cs.fill(vk::whole(a), 0x3f800000u);
    cs.fill(vk::whole(b), 0x40000000u);
    cs.fill(vk::whole(sink), 0);
    cs.barrier();
    cs.submit_and_wait();

    struct Push {
        uint32_t n, flag;
    } push{n, 0};
    auto run = [&](const char* shader, vk::BufferRange src, vk::BufferRange dst) {
        vk::Pipeline& p = rt.pipelines->get({shader, 2, sizeof(Push), {wg}, 0});
        double best = 0;
        for (uint32_t it = 0; it < iterations + 1; ++it) {  // first run warms up
            auto t0 = std::chrono::steady_clock::now();
            cs.begin();
            cs.timestamp(0);
            cs.dispatch(p, {src, dst}, &push, sizeof push, groups);
            cs.timestamp(1);
            cs.submit_and_wait();
            double ns = cs.elapsed_ns(0, 1);
            if (ns <= 0) ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
            if (it > 0 && (best == 0 || ns < best)) best = ns;
        }
        return best;
    };
    kv_bandwidth_result r{};
    r.struct_size = sizeof r;
    r.bytes = bytes;
    r.read_gbps = double(bytes) / run("bw_read", vk::whole(a), vk::whole(sink));
    r.write_gbps = double(bytes) / run("bw_write", vk::whole(a), vk::whole(b));
    r.copy_gbps = 2.0 * double(bytes) / run("bw_copy", vk::whole(a), vk::whole(b));
    return r;
}

}  // namespace kv::engine
