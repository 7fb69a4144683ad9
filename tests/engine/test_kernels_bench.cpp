// Matvec throughput: prints the achieved weight-read bandwidth of y = W x (the decode-step
// bottleneck) for model-like shapes, and checks a sample of rows of the result against the CPU.
// On a CPU device (lavapipe) it runs one small shape so CI stays fast; on a GPU it runs
// 7B/8B-model shapes. KV_BENCH_SWEEP=1 also sweeps workgroup size x rows per workgroup;
// KV_BENCH_ITERS sets the dispatches timed per figure.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/helpers.h"
#include "engine/gpu_fixture.h"
#include "engine/kernels.h"
#include "model/ggml_types.h"

using kv::engine::KernelOptions;
using kv::engine::Kernels;
using kv::model::GgmlType;
using kv::vk::whole;

namespace {

struct Shape {
    const char* what;
    GgmlType type;
    uint32_t rows, cols;
};

// Seconds per matvec, averaged over `iters` back-to-back dispatches (barrier between them, as
// consecutive layers would have).
double time_matvec(kvtest::Gpu& gpu, const Kernels& k, const kv::vk::SplitBuffer& W, const Shape& s,
                   const kv::vk::Buffer& x, const kv::vk::Buffer& y, int iters) {
    const bool ts = gpu.device().timestamps();
    kv::vk::CommandStream cs(gpu.device(), ts ? 2 : 0);
    auto record = [&](int n) {
        cs.begin();
        cs.barrier();
        if (ts) cs.timestamp(0);
        for (int i = 0; i < n; ++i) {
            k.matvec(cs, W, s.type, s.rows, s.cols, whole(x), whole(y));
            cs.barrier();
        }
        if (ts) cs.timestamp(1);
    };
    record(1);  // warm-up: pipeline creation, first-touch
    cs.submit_and_wait();
    record(iters);
    auto t0 = std::chrono::steady_clock::now();
    cs.submit_and_wait();
    auto t1 = std::chrono::steady_clock::now();
    const double sec =
        ts ? cs.elapsed_ns(0, 1) * 1e-9 : std::chrono::duration<double>(t1 - t0).count();
    return sec / iters;
}

}  // namespace

TEST_CASE("matvec bandwidth (prints GB/s of weight reads)") {
    kvtest::Gpu gpu;
    kv_device_info info{};
    info.struct_size = sizeof(info);
    kv::vk::describe_physical_device(gpu.device().instance().handle(), gpu.device().physical(),
                                     &info);
    const bool cpu = info.device_type == KV_DEVICE_TYPE_CPU;
    const std::vector<Shape> gpu_shapes = {
        {"f16 4096x4096 (attn q/o)", GgmlType::F16, 4096, 4096},
        {"f16 14336x4096 (ffn gate/up)", GgmlType::F16, 14336, 4096},
        {"f16 4096x14336 (ffn down)", GgmlType::F16, 4096, 14336},
        {"f16 1024x4096 (attn k/v, GQA)", GgmlType::F16, 1024, 4096},
        {"f16 128256x4096 (output)", GgmlType::F16, 128256, 4096},
        {"f32 4096x4096", GgmlType::F32, 4096, 4096}};
    const std::vector<Shape> cpu_shapes = {{"f16 1024x1024", GgmlType::F16, 1024, 1024}};
    const std::vector<Shape>& shapes = cpu ? cpu_shapes : gpu_shapes;
    std::vector<KernelOptions> configs(1);
    const char* sweep = std::getenv("KV_BENCH_SWEEP");
    if (sweep && *sweep == '1') {
        configs.clear();
        for (bool sg : {true, false})
            for (uint32_t wg : {8u, 16u, 32u, 64u, 128u, 256u})
                for (uint32_t nr : {1u, 2u, 4u, 8u}) {
                    KernelOptions o;
                    o.subgroup_ops = sg;
                    o.matvec_workgroup = wg;
                    o.matvec_rows = nr;
                    configs.push_back(o);
                }
    }
    const char* it_env = std::getenv("KV_BENCH_ITERS");
    const int iters = it_env && std::atoi(it_env) > 0 ? std::atoi(it_env) : cpu ? 2 : 50;
    for (const Shape& s : shapes) {
        const uint64_t rb = uint64_t(s.cols) * (s.type == GgmlType::F16 ? 2 : 4);
        const uint64_t bytes = rb * s.rows;
        kv::vk::SplitBuffer W(&gpu.allocator(), bytes, rb, kv::vk::MemoryUse::Device);
        // Fresh random weights: generate one row block and upload it repeatedly with a per-row
        // twist, so large matrices stay quick to fill while rows differ.
        std::mt19937 rng(kvtest::fresh_seed());
        std::uniform_real_distribution<float> dist(-1.f, 1.f);
        const uint32_t block_rows = 256;
        std::vector<float> wf(size_t(block_rows) * s.cols);
        for (auto& v : wf) v = dist(rng);
        std::vector<uint8_t> block(rb * block_rows);
        for (size_t i = 0; i < wf.size(); ++i) {
            if (s.type == GgmlType::F16) {
                const uint16_t h = kv::model::fp32_to_fp16(wf[i]);
                std::memcpy(block.data() + 2 * i, &h, 2);
            } else {
                std::memcpy(block.data() + 4 * i, &wf[i], 4);
            }
        }
        for (size_t c = 0; c < W.chunk_count(); ++c) {
            const uint64_t off = W.chunk_offset(c);
            const uint64_t end = std::min<uint64_t>(bytes, off + W.chunk(c).size());
            for (uint64_t o = off; o < end; o += block.size()) {
                const uint64_t n = std::min<uint64_t>(block.size(), end - o);
                gpu.uploader().upload(W.chunk(c), o - off, block.data(), n);
            }
        }
        auto x = kvtest::random_floats(s.cols, kvtest::fresh_seed());
        auto bx = gpu.upload(x);
        auto by = gpu.output(s.rows);
        for (const KernelOptions& opt : configs) {
            Kernels k(gpu.device(), gpu.pipelines(), opt);
            const double sec = time_matvec(gpu, k, W, s, bx, by, iters);
            char line[256];
            std::snprintf(line, sizeof line,
                          "%-30s %s wg %3u rows/wg %u sg %d: %8.2f us  %7.1f GB/s  (%zu chunk%s)",
                          s.what, k.matvec_variant(s.type, s.cols).c_str(), k.matvec_workgroup(),
                          k.matvec_rows(), int(k.subgroup_ops()), sec * 1e6,
                          double(bytes) / sec * 1e-9, W.chunk_count(),
                          W.chunk_count() > 1 ? "s" : "");
            MESSAGE(line);
            std::printf("%s\n", line);
            // The result of the last run: check a sample of rows in double.
            auto y = gpu.download(by, s.rows);
            for (uint32_t r = 0; r < s.rows; r += std::max<uint32_t>(1, s.rows / 61)) {
                const float* wr = wf.data() + size_t(r % block_rows) * s.cols;
                double ref = 0, abs_sum = 0;
                for (uint32_t c = 0; c < s.cols; ++c) {
                    const float w = s.type == GgmlType::F16
                                        ? kv::model::fp16_to_fp32(kv::model::fp32_to_fp16(wr[c]))
                                        : wr[c];
                    ref += double(w) * x[c];
                    abs_sum += std::fabs(double(w) * x[c]);
                }
                INFO(s.what << " row " << r << " got " << y[r] << " want " << ref);
                REQUIRE(std::fabs(y[r] - ref) <= 1e-5 * abs_sum);
            }
        }
    }
}
