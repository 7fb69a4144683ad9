// Kernels (src/engine/kernels.h) against the CPU versions in cpu_kernels.h, on fresh random data,
// with validation on, for both reduction paths (subgroup arithmetic and shared memory).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/helpers.h"
#include "engine/cpu_kernels.h"
#include "engine/gpu_fixture.h"
#include "engine/kernels.h"
#include "model/ggml_types.h"

using kv::engine::KernelOptions;
using kv::engine::Kernels;
using kv::model::GgmlType;
using kv::vk::whole;

namespace {

// fp32 accumulation against double: far below this for the sizes used here.
constexpr double kTol = 2e-6;

// Row reductions (rms_norm, softmax): each invocation sums cols / wg terms in sequence, whose
// rounding error grows like eps * sqrt(terms); a missing or doubled term would err by ~1/cols.
double row_tol(uint32_t cols, uint32_t wg) {
    return kTol + 4 * 5.96e-8 * std::sqrt(double(cols) / wg);
}

// Both reduction paths (subgroup arithmetic where the device has it, shared memory), each at the
// device's default row workgroup and at wider ones (several subgroups to combine).
std::vector<KernelOptions> reduction_paths() {
    std::vector<KernelOptions> v;
    for (bool sg : {false, true})
        for (uint32_t wg : {0u, 64u, 256u}) {
            KernelOptions o;
            o.subgroup_ops = sg;
            o.row_workgroup = wg;
            v.push_back(o);
        }
    return v;
}

std::vector<KernelOptions> subgroup_paths() {
    KernelOptions sg, shared;
    sg.subgroup_ops = true;
    shared.subgroup_ops = false;
    return {shared, sg};
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol) {
    REQUIRE(got.size() == want.size());
    CHECK(kvtest::count_nan(got) == 0);
    const double err = kvtest::rel_l2(got, want);
    CHECK_MESSAGE(err < tol, "relative L2 error " << err << " (tolerance " << tol << ")");
}

// Dot products: |got - want| <= tol * sum|w x| per element. fp32 accumulation of n terms errs by
// about eps * sqrt(n) of that sum; a missing or wrong term errs by about sum / n.
void check_dots(const std::vector<float>& got, const std::vector<float>& want,
                const std::vector<float>& abs_sum, double tol = 1e-5) {
    REQUIRE(got.size() == want.size());
    CHECK(kvtest::count_nan(got) == 0);
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double e = std::fabs(double(got[i]) - want[i]) / std::max(double(abs_sum[i]), 1e-30);
        if (!(e <= worst)) {  // NaN counts as worst
            worst = e;
            at = i;
        }
    }
    CHECK_MESSAGE(worst <= tol, "worst error " << worst << " x sum|w x| at output " << at
                                               << ": got " << got[at] << " want " << want[at]);
}

std::vector<uint16_t> to_f16(const std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = kv::model::fp32_to_fp16(v[i]);
    return h;
}

std::vector<float> from_f16(const std::vector<uint16_t>& h) {
    std::vector<float> v(h.size());
    for (size_t i = 0; i < h.size(); ++i) v[i] = kv::model::fp16_to_fp32(h[i]);
    return v;
}

}  // namespace

TEST_CASE("rms_norm matches the CPU on odd and large shapes") {
    kvtest::Gpu gpu;
    const struct {
        uint32_t cols, rows;
    } shapes[] = {{1, 1}, {7, 3}, {255, 2}, {256, 4}, {257, 5}, {4096, 3}, {5001, 2}};
    for (const KernelOptions& opt : reduction_paths()) {
        Kernels k(gpu.device(), gpu.pipelines(), opt);
        for (auto s : shapes) {
            INFO("cols " << s.cols << " rows " << s.rows << " subgroup " << k.subgroup_ops()
                         << " workgroup " << k.row_workgroup());
            const float eps = 1e-5f;
            auto x =
                kvtest::random_floats(size_t(s.cols) * s.rows, kvtest::fresh_seed(), -3.f, 3.f);
            auto w = kvtest::random_floats(s.cols, kvtest::fresh_seed(), -2.f, 2.f);
            auto bx = gpu.upload(x), bw = gpu.upload(w);
            auto bo = gpu.output(x.size());
            gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
                k.rms_norm(cs, whole(bx), whole(bw), whole(bo), s.cols, s.rows, eps);
            });
            check_close(gpu.download(bo, x.size()),
                        kvtest::cpu::rms_norm(x, w, s.cols, s.rows, eps),
                        row_tol(s.cols, k.row_workgroup()));
        }
    }
}

TEST_CASE("rms_norm in place, and more rows than one grid dimension holds") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    // More rows than maxComputeWorkGroupCount[0] (65535 on lavapipe) forces a 2D grid.
    const uint32_t cols = 5;
    // Devices with 2^31 groups per dimension (NVIDIA) cannot be pushed past it affordably: there
    // the 1D path is tested at 70000 rows and the 2D split only where the limit is small.
    const uint32_t max_x = gpu.device().limits().maxComputeWorkGroupCount[0];
    const uint32_t rows = max_x < (1u << 20) ? std::max<uint32_t>(70000, max_x + 3) : 70000;
    if (max_x >= (1u << 20)) MESSAGE("maxComputeWorkGroupCount[0] = " << max_x << ": the 2D grid split is not forced here");
    auto x = kvtest::random_floats(size_t(cols) * rows, kvtest::fresh_seed());
    auto w = kvtest::random_floats(cols, kvtest::fresh_seed());
    auto bx = gpu.upload(x), bw = gpu.upload(w);
    gpu.run({}, [&](kv::vk::CommandStream& cs) {
        k.rms_norm(cs, whole(bx), whole(bw), whole(bx), cols, rows, 1e-6f);
    });
    check_close(gpu.download(bx, x.size()), kvtest::cpu::rms_norm(x, w, cols, rows, 1e-6f), kTol);
}

TEST_CASE("gelu_mul, scale and softcap match float64, large arguments included, in place") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    const uint32_t n = 4099;
    auto a = kvtest::random_floats(n, kvtest::fresh_seed(), -6.f, 6.f);
    auto b = kvtest::random_floats(n, kvtest::fresh_seed(), -2.f, 2.f);
    a[0] = 200.f, a[1] = -200.f, a[2] = 0.f, a[3] = 1e-4f;  // tanh saturated both ways, and ~0
    std::vector<float> gelu(n), scaled(n), capped(n);
    for (uint32_t i = 0; i < n; ++i) {
        const double x = a[i];
        gelu[i] = float(0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * b[i]);
        scaled[i] = float(x * 8.0);
        capped[i] = float(2.5 * std::tanh(x / 2.5));
    }
    auto ba = gpu.upload(a), bb = gpu.upload(b);
    auto o1 = gpu.output(n), o2 = gpu.output(n);
    gpu.run({whole(o1), whole(o2)}, [&](kv::vk::CommandStream& cs) {  // (listed: poisoned first)
        k.gelu_mul(cs, whole(ba), whole(bb), whole(o1), n);
        k.scale(cs, whole(ba), whole(o2), n, 8.f);
        cs.barrier();
        k.softcap(cs, whole(ba), whole(ba), n, 2.5f);  // in place
    });
    check_close(gpu.download(o1, n), gelu, 1e-6);
    check_close(gpu.download(o2, n), scaled, 1e-7);
    check_close(gpu.download(ba, n), capped, 1e-6);
}

TEST_CASE("add, mul and silu_mul match the CPU, plain, broadcast and in place") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    for (uint32_t n : {1u, 3u, 255u, 256u, 257u, 100003u}) {
        INFO("n " << n);
        auto a = kvtest::random_floats(n, kvtest::fresh_seed(), -4.f, 4.f);
        auto b = kvtest::random_floats(n, kvtest::fresh_seed(), -4.f, 4.f);
        auto ba = gpu.upload(a), bb = gpu.upload(b);
        auto o1 = gpu.output(n), o2 = gpu.output(n), o3 = gpu.output(n);
        gpu.run({whole(o1), whole(o2), whole(o3)}, [&](kv::vk::CommandStream& cs) {
            k.add(cs, whole(ba), whole(bb), whole(o1), n);
            k.mul(cs, whole(ba), whole(bb), whole(o2), n);
            k.silu_mul(cs, whole(ba), whole(bb), whole(o3), n);
        });
        check_close(gpu.download(o1, n), kvtest::cpu::add(a, b), 1e-7);
        check_close(gpu.download(o2, n), kvtest::cpu::mul(a, b), 1e-7);
        check_close(gpu.download(o3, n), kvtest::cpu::silu_mul(a, b), 1e-6);
    }
    SUBCASE("broadcast b over rows") {
        const uint32_t nb = 37, rows = 29, n = nb * rows;
        auto a = kvtest::random_floats(n, kvtest::fresh_seed());
        auto b = kvtest::random_floats(nb, kvtest::fresh_seed());
        auto ba = gpu.upload(a), bb = gpu.upload(b);
        auto o1 = gpu.output(n), o2 = gpu.output(n);
        gpu.run({whole(o1), whole(o2)}, [&](kv::vk::CommandStream& cs) {
            k.add(cs, whole(ba), whole(bb), whole(o1), n, nb);
            k.mul(cs, whole(ba), whole(bb), whole(o2), n, nb);
        });
        check_close(gpu.download(o1, n), kvtest::cpu::add(a, b), 1e-7);
        check_close(gpu.download(o2, n), kvtest::cpu::mul(a, b), 1e-7);
    }
    SUBCASE("in place") {
        const uint32_t n = 1000;
        auto a = kvtest::random_floats(n, kvtest::fresh_seed());
        auto b = kvtest::random_floats(n, kvtest::fresh_seed());
        auto g = kvtest::random_floats(n, kvtest::fresh_seed());
        auto ba = gpu.upload(a), bb = gpu.upload(b), bg = gpu.upload(g);
        gpu.run({}, [&](kv::vk::CommandStream& cs) {
            k.add(cs, whole(ba), whole(bb), whole(ba), n);       // a += b
            k.silu_mul(cs, whole(bg), whole(bb), whole(bb), n);  // b = silu(g) * b
        });
        check_close(gpu.download(ba, n), kvtest::cpu::add(a, b), 1e-7);
        check_close(gpu.download(bb, n), kvtest::cpu::silu_mul(g, b), 1e-6);
    }
}

TEST_CASE("silu_mul saturates without NaN for large gates") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    std::vector<float> g = {-1000.f, -100.f, -88.f, -20.f, 0.f, 20.f, 88.f, 100.f, 1000.f};
    std::vector<float> u(g.size(), 1.5f);
    const uint32_t n = static_cast<uint32_t>(g.size());
    auto bg = gpu.upload(g), bu = gpu.upload(u);
    auto bo = gpu.output(n);
    gpu.run({whole(bo)},
            [&](kv::vk::CommandStream& cs) { k.silu_mul(cs, whole(bg), whole(bu), whole(bo), n); });
    auto got = gpu.download(bo, n);
    auto want = kvtest::cpu::silu_mul(g, u);
    for (size_t i = 0; i < g.size(); ++i) {
        INFO("gate " << g[i]);
        CHECK(std::isfinite(got[i]));
        CHECK(std::fabs(got[i] - want[i]) <= 1e-5 * std::max(1.f, std::fabs(want[i])));
    }
}

TEST_CASE("softmax_rows matches the CPU, with scale and -inf masks") {
    kvtest::Gpu gpu;
    const struct {
        uint32_t cols, rows;
        float scale;
    } shapes[] = {{1, 1, 1.f},   {5, 3, 1.f},       {255, 2, 0.125f}, {256, 4, 1.f},
                  {257, 3, 2.f}, {4099, 2, 0.088f}, {32000, 1, 1.f}};
    for (const KernelOptions& opt : reduction_paths()) {
        Kernels k(gpu.device(), gpu.pipelines(), opt);
        for (auto s : shapes) {
            INFO("cols " << s.cols << " rows " << s.rows << " subgroup " << k.subgroup_ops()
                         << " workgroup " << k.row_workgroup());
            auto x =
                kvtest::random_floats(size_t(s.cols) * s.rows, kvtest::fresh_seed(), -8.f, 8.f);
            auto bx = gpu.upload(x);
            auto bo = gpu.output(x.size());
            gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
                k.softmax_rows(cs, whole(bx), whole(bo), s.cols, s.rows, s.scale);
            });
            check_close(gpu.download(bo, x.size()),
                        kvtest::cpu::softmax_rows(x, s.cols, s.rows, s.scale),
                        row_tol(s.cols, k.row_workgroup()));
        }
    }
    SUBCASE("masked entries and a fully masked row, in place") {
        Kernels k(gpu.device(), gpu.pipelines());
        const uint32_t cols = 67, rows = 3;
        const float inf = std::numeric_limits<float>::infinity();
        auto x = kvtest::random_floats(size_t(cols) * rows, kvtest::fresh_seed(), -5.f, 5.f);
        for (uint32_t i = 0; i < cols; ++i) {
            if (i % 3 == 0) x[i] = -inf;     // row 0: every third masked
            if (i > 40) x[cols + i] = -inf;  // row 1: causal-style tail
            x[2 * cols + i] = -inf;          // row 2: all masked -> zeros
        }
        auto bx = gpu.upload(x);
        gpu.run({}, [&](kv::vk::CommandStream& cs) {
            k.softmax_rows(cs, whole(bx), whole(bx), cols, rows, 1.f);
        });
        auto got = gpu.download(bx, x.size());
        auto want = kvtest::cpu::softmax_rows(x, cols, rows, 1.f);
        check_close(got, want, kTol);
        for (uint32_t i = 0; i < cols; ++i) {
            if (i % 3 == 0) CHECK(got[i] == 0.f);
            if (i > 40) CHECK(got[cols + i] == 0.f);
            CHECK(got[2 * cols + i] == 0.f);
        }
    }
}

namespace {

// One matvec on fresh data: W [rows][cols] of `type` in one buffer, n_vecs vectors.
void check_matvec(kvtest::Gpu& gpu, const Kernels& k, GgmlType type, uint32_t rows, uint32_t cols,
                  uint32_t n_vecs) {
    INFO((type == GgmlType::F16 ? "f16" : "f32")
         << " rows " << rows << " cols " << cols << " vecs " << n_vecs << " variant "
         << k.matvec_variant(type, cols) << " subgroup " << k.subgroup_ops());
    auto w = kvtest::random_floats(size_t(rows) * cols, kvtest::fresh_seed());
    auto x = kvtest::random_floats(size_t(cols) * n_vecs, kvtest::fresh_seed());
    kv::vk::Buffer bw;
    if (type == GgmlType::F16) {
        auto h = to_f16(w);
        w = from_f16(h);  // the oracle multiplies the values the GPU sees
        bw = gpu.upload_bytes(h.data(), h.size() * 2);
    } else {
        bw = gpu.upload(w);
    }
    auto bx = gpu.upload(x);
    auto by = gpu.output(size_t(rows) * n_vecs);
    gpu.run({whole(by)}, [&](kv::vk::CommandStream& cs) {
        k.matvec(cs, whole(bw), type, rows, cols, whole(bx), whole(by), n_vecs);
    });
    check_dots(gpu.download(by, size_t(rows) * n_vecs),
               kvtest::cpu::matvec(w, rows, cols, x, n_vecs),
               kvtest::cpu::matvec_abs(w, rows, cols, x, n_vecs));
}

}  // namespace

TEST_CASE("matvec F32 and F16 match the CPU on every variant") {
    kvtest::Gpu gpu;
    const struct {
        uint32_t rows, cols, vecs;
    } shapes[] = {{1, 8, 1},      {7, 3, 1},      {3, 1002, 1},  {257, 1000, 1},
                  {129, 4096, 1}, {1023, 130, 1}, {64, 2048, 3}, {5, 5000, 2}};
    for (const KernelOptions& opt : subgroup_paths()) {
        Kernels k(gpu.device(), gpu.pipelines(), opt);
        for (auto s : shapes) {
            check_matvec(gpu, k, GgmlType::F32, s.rows, s.cols, s.vecs);
            if (s.cols % 2 == 0) check_matvec(gpu, k, GgmlType::F16, s.rows, s.cols, s.vecs);
        }
    }
}

TEST_CASE("matvec with several rows per workgroup and other workgroup sizes") {
    kvtest::Gpu gpu;
    for (uint32_t nr : {1u, 2u, 3u, 8u}) {
        for (uint32_t wg : {32u, 64u, 256u}) {
            for (bool sg : {false, true}) {
                KernelOptions opt;
                opt.matvec_rows = nr;
                opt.matvec_workgroup = wg;
                opt.subgroup_ops = sg;
                Kernels k(gpu.device(), gpu.pipelines(), opt);
                INFO("rows/wg " << nr << " wg " << wg);
                check_matvec(gpu, k, GgmlType::F16, 131, 1024, 1);  // 131 % nr != 0
                check_matvec(gpu, k, GgmlType::F32, 67, 515, 2);
                check_matvec(gpu, k, GgmlType::F16, 33, 66, 1);
            }
        }
    }
}

TEST_CASE("matvec over more rows than one grid dimension holds") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    const uint32_t max_x = gpu.device().limits().maxComputeWorkGroupCount[0];  // see rms_norm above
    const uint32_t rows = max_x < (1u << 20) ? std::max<uint32_t>(70001, max_x + 5) : 70001;
    if (max_x >= (1u << 20)) MESSAGE("maxComputeWorkGroupCount[0] = " << max_x << ": the 2D grid split is not forced here");
    check_matvec(gpu, k, GgmlType::F16, rows, 16, 1);
    check_matvec(gpu, k, GgmlType::F32, rows, 7, 1);
}

TEST_CASE("matvec on an F16 matrix larger than maxStorageBufferRange, split by rows") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    // 8192 x 8200 fp16 = 134,348,800 bytes > 128 MiB (lavapipe's maxStorageBufferRange).
    const uint32_t rows = 8200, cols = 8192;
    const uint64_t row_bytes = uint64_t(cols) * 2;
    const uint64_t bytes = row_bytes * rows;
    const uint64_t max_range = gpu.device().max_storage_buffer_range();
    kv::vk::SplitBuffer W(&gpu.allocator(), bytes, row_bytes, kv::vk::MemoryUse::Device);
    if (bytes > max_range)
        CHECK(W.chunk_count() >= 2);
    else
        MESSAGE("maxStorageBufferRange " << max_range << " holds the whole matrix: one chunk");
    MESSAGE(W.chunk_count() << " chunk(s)");

    // Fresh random fp16 weights, uploaded chunk by chunk; the oracle decodes the same halves.
    std::vector<float> table(65536);
    for (uint32_t h = 0; h < 65536; ++h)
        table[h] = kv::model::fp16_to_fp32(static_cast<uint16_t>(h));
    std::mt19937 rng(kvtest::fresh_seed());
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    std::vector<uint16_t> h(size_t(rows) * cols);
    for (auto& v : h) v = kv::model::fp32_to_fp16(dist(rng));
    for (size_t i = 0; i < W.chunk_count(); ++i) {
        const uint64_t off = W.chunk_offset(i);
        const uint64_t n = std::min<uint64_t>(W.chunk(i).size(), bytes - off);
        gpu.uploader().upload(W.chunk(i), 0, reinterpret_cast<const uint8_t*>(h.data()) + off, n);
    }
    auto x = kvtest::random_floats(cols, kvtest::fresh_seed());
    auto bx = gpu.upload(x);
    auto by = gpu.output(rows);
    gpu.run({whole(by)}, [&](kv::vk::CommandStream& cs) {
        k.matvec(cs, W, GgmlType::F16, rows, cols, whole(bx), whole(by));
    });
    auto got = gpu.download(by, rows);

    std::vector<float> want(rows), abs_sum(rows);
    for (uint32_t r = 0; r < rows; ++r) {
        double s = 0, a = 0;
        const uint16_t* wr = h.data() + size_t(r) * cols;
        for (uint32_t c = 0; c < cols; ++c) {
            const double p = double(table[wr[c]]) * x[c];
            s += p;
            a += std::fabs(p);
        }
        want[r] = float(s);
        abs_sum[r] = float(a);
    }
    check_dots(got, want, abs_sum);
    check_close(got, want, 1e-5);  // over 8200 outputs the relative L2 error is stable
}

TEST_CASE("kernels reject bad shapes and unsupported weight types") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    auto small = gpu.output(16);
    auto big = gpu.output(1024);
    kv::vk::CommandStream cs(gpu.device());
    cs.begin();
    auto status = [](auto&& f) -> kv_status {
        try {
            f();
        } catch (const kv::Error& e) {
            return e.status();
        }
        return static_cast<kv_status>(KV_OK);
    };
    CHECK(status([&] {
              k.matvec(cs, whole(big), GgmlType::Q4_0, 4, 32, whole(big), whole(big));
          }) == KV_ERR_UNSUPPORTED);
    CHECK(status([&] { k.matvec(cs, whole(big), GgmlType::F16, 4, 33, whole(big), whole(big)); }) ==
          KV_ERR_UNSUPPORTED);
    CHECK(status([&] {
              k.matvec(cs, whole(small), GgmlType::F32, 4, 8, whole(big), whole(big));
          }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] {
              k.matvec(cs, whole(big), GgmlType::F32, 4, 8, whole(small), whole(big), 3);
          }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { k.rms_norm(cs, whole(big), whole(small), whole(big), 32, 4, 1e-5f); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { k.add(cs, whole(big), whole(big), whole(small), 32); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { k.add(cs, whole(big), whole(big), whole(big), 30, 7); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { k.softmax_rows(cs, whole(big), whole(big), 0, 4); }) ==
          KV_ERR_INVALID_ARGUMENT);
    cs.submit_and_wait();  // nothing was recorded
}

TEST_CASE("kernels on sub-ranges of shared buffers touch only their ranges") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    const uint64_t al =
        std::max<uint64_t>(16, gpu.device().limits().minStorageBufferOffsetAlignment);
    auto align_up = [&](uint64_t v) { return (v + al - 1) / al * al; };

    // Inputs packed into one buffer at aligned offsets, each followed by a gap.
    const uint32_t rows = 37, cols = 520, ncols = 129, nrows = 3;
    auto w = kvtest::random_floats(size_t(rows) * cols, kvtest::fresh_seed());
    auto h = to_f16(w);
    w = from_f16(h);
    auto x = kvtest::random_floats(cols, kvtest::fresh_seed());
    auto nx = kvtest::random_floats(size_t(ncols) * nrows, kvtest::fresh_seed(), -3.f, 3.f);
    auto nw = kvtest::random_floats(ncols, kvtest::fresh_seed());
    std::vector<uint8_t> in;
    auto place = [&](const void* data, uint64_t bytes) {
        const uint64_t off = align_up(in.size() + al);  // at least one gap before
        in.resize(off + bytes);
        std::memcpy(in.data() + off, data, bytes);
        return off;
    };
    const uint64_t o_w = place(h.data(), h.size() * 2);
    const uint64_t o_x = place(x.data(), x.size() * 4);
    const uint64_t o_nx = place(nx.data(), nx.size() * 4);
    const uint64_t o_nw = place(nw.data(), nw.size() * 4);
    in.resize(align_up(in.size() + al));
    auto bin = gpu.upload_bytes(in.data(), in.size());

    // Outputs at aligned offsets of one poisoned buffer.
    const uint64_t o_y = al, o_norm = align_up(o_y + rows * 4 + al),
                   o_soft = align_up(o_norm + uint64_t(ncols) * nrows * 4 + al),
                   out_bytes = align_up(o_soft + uint64_t(ncols) * nrows * 4 + al);
    auto bout = gpu.output(out_bytes / 4);
    const VkBuffer I = bin.handle(), O = bout.handle();
    gpu.run({whole(bout)}, [&](kv::vk::CommandStream& cs) {
        // Input ranges run to the end of the buffer: the kernels bind only what they read.
        k.matvec(cs, {I, o_w, in.size() - o_w}, GgmlType::F16, rows, cols,
                 {I, o_x, in.size() - o_x}, {O, o_y, uint64_t(rows) * 4});
        k.rms_norm(cs, {I, o_nx, in.size() - o_nx}, {I, o_nw, uint64_t(ncols) * 4},
                   {O, o_norm, uint64_t(ncols) * nrows * 4}, ncols, nrows, 1e-5f);
        k.softmax_rows(cs, {I, o_nx, uint64_t(ncols) * nrows * 4},
                       {O, o_soft, uint64_t(ncols) * nrows * 4}, ncols, nrows, 0.5f);
    });
    auto out = gpu.download(bout, out_bytes / 4);
    auto slice = [&](uint64_t off, size_t n) {
        return std::vector<float>(out.begin() + off / 4, out.begin() + off / 4 + n);
    };
    check_dots(slice(o_y, rows), kvtest::cpu::matvec(w, rows, cols, x, 1),
               kvtest::cpu::matvec_abs(w, rows, cols, x, 1));
    check_close(slice(o_norm, size_t(ncols) * nrows),
                kvtest::cpu::rms_norm(nx, nw, ncols, nrows, 1e-5f), kTol);
    check_close(slice(o_soft, size_t(ncols) * nrows),
                kvtest::cpu::softmax_rows(nx, ncols, nrows, 0.5f), kTol);
    // Everything outside the three output ranges still holds the poison.
    size_t written_outside = 0;
    for (uint64_t i = 0; i < out.size(); ++i) {
        const uint64_t b = i * 4;
        const bool inside = (b >= o_y && b < o_y + rows * 4) ||
                            (b >= o_norm && b < o_norm + uint64_t(ncols) * nrows * 4) ||
                            (b >= o_soft && b < o_soft + uint64_t(ncols) * nrows * 4);
        if (!inside && !std::isnan(out[i])) ++written_outside;
    }
    CHECK(written_outside == 0);
}
