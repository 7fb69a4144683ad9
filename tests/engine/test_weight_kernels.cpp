// WeightKernels (src/engine/weight_kernels.h) against the CPU: kv::model::dequantize_row (bit-exact
// with ggml) followed by double-precision dot products, on fresh random weights of every supported
// type, for get_rows, the decode matvec (n_tokens 1, both reduction paths) and the tiled prefill
// matmul, on odd shapes and on weights split into several chunks. Validation is on.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "engine/gpu_fixture.h"
#include "engine/kernels.h"
#include "engine/weight_kernels.h"
#include "model/ggml_types.h"
#include "model/gguf.h"
#include "reference/ops.h"

using kv::engine::KernelOptions;
using kv::engine::Kernels;
using kv::engine::WeightKernelOptions;
using kv::engine::WeightKernels;
using kv::model::GgmlType;
using kv::vk::whole;

namespace {

// fp32 accumulation against double: far below this for the sizes used here.
constexpr double kTol = 2e-6;

const GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                              GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                              GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                              GgmlType::Q6_K};

std::string name(GgmlType t) { return kv::model::type_traits(t)->name; }
uint32_t block(GgmlType t) { return kv::model::type_traits(t)->block_size; }

// Byte offsets of a block's fp16 scale fields (d, dmin, m) for the types filled with random
// bytes: random bytes are valid quants and scale indices, but a random half may be inf/NaN or
// huge, so these get sane values.
std::vector<uint32_t> scale_fields(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_1:
            return {0, 2};
        case GgmlType::Q5_0:
            return {0};
        case GgmlType::Q5_1:
            return {0, 2};
        case GgmlType::Q2_K:
            return {80, 82};
        case GgmlType::Q3_K:
            return {108};
        case GgmlType::Q4_K:
            return {0, 2};
        case GgmlType::Q5_K:
            return {0, 2};
        case GgmlType::Q6_K:
            return {208};
        default:
            return {};
    }
}

// Fresh random weights [rows][cols] of `type` in file format.
std::vector<uint8_t> random_weights(GgmlType type, uint32_t rows, uint32_t cols, uint32_t seed) {
    const uint64_t rb = kv::model::row_bytes(type, cols);
    std::vector<uint8_t> w(rb * rows);
    std::mt19937 rng(seed);
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q8_0:
        case GgmlType::Q4_0: {
            auto f = kvtest::random_floats(size_t(rows) * cols, seed, -1.f, 1.f);
            for (uint32_t r = 0; r < rows; ++r)
                kv::model::quantize_row(type, f.data() + size_t(r) * cols, w.data() + r * rb, cols);
            return w;
        }
        default:
            break;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> mag(0.01f, 0.1f);
    const uint32_t bb = kv::model::type_traits(type)->type_size;
    const std::vector<uint32_t> fields = scale_fields(type);
    REQUIRE(!fields.empty());
    for (uint64_t b = 0; b < w.size(); b += bb) {
        for (uint32_t f : fields) {
            const float v = (byte(rng) & 1 ? 1.f : -1.f) * mag(rng);
            const uint16_t h = kv::model::fp32_to_fp16(v);
            std::memcpy(&w[b + f], &h, 2);
        }
    }
    return w;
}

std::vector<float> dequantize(GgmlType type, const std::vector<uint8_t>& w, uint32_t rows,
                              uint32_t cols) {
    const uint64_t rb = kv::model::row_bytes(type, cols);
    std::vector<float> f(size_t(rows) * cols);
    for (uint32_t r = 0; r < rows; ++r)
        kv::model::dequantize_row(type, w.data() + r * rb, f.data() + size_t(r) * cols, cols);
    return f;
}

// y[t][r] = sum_c W[r][c] x[t][c] in double; `mag` (if given) gets sum_c |W[r][c] x[t][c]|, the
// scale of the rounding error of an fp32 sum (a single output may cancel to near zero).
std::vector<float> cpu_matmul(const std::vector<float>& W, uint32_t rows, uint32_t cols,
                              const std::vector<float>& x, uint32_t n_tokens,
                              std::vector<float>* mag = nullptr) {
    std::vector<float> y(size_t(rows) * n_tokens);
    if (mag) mag->assign(y.size(), 0.f);
    for (uint32_t t = 0; t < n_tokens; ++t)
        for (uint32_t r = 0; r < rows; ++r) {
            double s = 0, a = 0;
            const float* wr = W.data() + size_t(r) * cols;
            const float* xt = x.data() + size_t(t) * cols;
            for (uint32_t c = 0; c < cols; ++c) {
                s += double(wr[c]) * double(xt[c]);
                a += std::fabs(double(wr[c]) * double(xt[c]));
            }
            y[size_t(t) * rows + r] = float(s);
            if (mag) (*mag)[size_t(t) * rows + r] = float(a);
        }
    return y;
}

// The weights on the device, split into chunks of at most `max_chunk_bytes` (0: device limits).
kv::vk::SplitBuffer upload_weights(kvtest::Gpu& gpu, GgmlType type, const std::vector<uint8_t>& w,
                                   uint32_t cols, uint64_t max_chunk_bytes = 0) {
    const uint64_t rb = kv::model::row_bytes(type, cols);
    kv::vk::SplitBuffer W(&gpu.allocator(), w.size(), rb, kv::vk::MemoryUse::Device,
                          max_chunk_bytes);
    for (size_t i = 0; i < W.chunk_count(); ++i) {
        const uint64_t off = W.chunk_offset(i);
        const uint64_t n = std::min<uint64_t>(W.chunk(i).size(), w.size() - off);
        gpu.uploader().upload(W.chunk(i), 0, w.data() + off, n);
    }
    return W;
}

double check_close(const std::vector<float>& got, const std::vector<float>& want, double tol) {
    REQUIRE(got.size() == want.size());
    CHECK(kvtest::count_nan(got) == 0);
    const double err = kvtest::rel_l2(got, want);
    CHECK_MESSAGE(err < tol, "relative L2 error " << err << " (tolerance " << tol << ")");
    return err;
}

// Products: the error relative to sum |w x| (meaningful for any output count) is held to `tol`;
// the plain relative L2 error (returned) is also held to `tol` where there are enough outputs
// that none dominates by cancelling to near zero.
double check_product(const std::vector<float>& got, const std::vector<float>& want,
                     const std::vector<float>& mag, double tol) {
    REQUIRE(got.size() == want.size());
    CHECK(kvtest::count_nan(got) == 0);
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double d = double(got[i]) - double(want[i]);
        num += d * d;
        den += double(mag[i]) * double(mag[i]);
    }
    const double err_mag = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    CHECK_MESSAGE(err_mag < tol, "L2 error relative to sum |w x|: " << err_mag);
    const double err = kvtest::rel_l2(got, want);
    if (got.size() >= 64)
        CHECK_MESSAGE(err < tol, "relative L2 error " << err << " (tolerance " << tol << ")");
    return err;
}

struct Worst {
    double err = 0;
    void add(double e) { err = std::max(err, e); }
};

// One matmul (n_tokens 1: the decode matvec) on fresh data, W split by max_chunk_bytes.
double check_matmul(kvtest::Gpu& gpu, const WeightKernels& wk, GgmlType type, uint32_t rows,
                    uint32_t cols, uint32_t n_tokens, uint64_t max_chunk_bytes = 0) {
    const uint32_t seed = kvtest::fresh_seed();
    auto w = random_weights(type, rows, cols, seed);
    auto W = upload_weights(gpu, type, w, cols, max_chunk_bytes);
    if (max_chunk_bytes != 0) CHECK(W.chunk_count() >= 2);
    INFO(name(type) << " rows " << rows << " cols " << cols << " tokens " << n_tokens << " chunks "
                    << W.chunk_count() << " variant " << wk.matmul_variant(type, cols, n_tokens)
                    << " seed " << seed);
    auto x = kvtest::random_floats(size_t(cols) * n_tokens, seed + 1);
    auto bx = gpu.upload(x);
    auto by = gpu.output(size_t(rows) * n_tokens);
    gpu.run({whole(by)}, [&](kv::vk::CommandStream& cs) {
        wk.matmul(cs, W, type, rows, cols, whole(bx), whole(by), n_tokens);
    });
    std::vector<float> mag;
    const auto want = cpu_matmul(dequantize(type, w, rows, cols), rows, cols, x, n_tokens, &mag);
    return check_product(gpu.download(by, size_t(rows) * n_tokens), want, mag, kTol);
}

double check_get_rows(kvtest::Gpu& gpu, const WeightKernels& wk, GgmlType type, uint32_t rows,
                      uint32_t cols, uint32_t n_ids, uint64_t max_chunk_bytes = 0) {
    const uint32_t seed = kvtest::fresh_seed();
    auto w = random_weights(type, rows, cols, seed);
    auto W = upload_weights(gpu, type, w, cols, max_chunk_bytes);
    if (max_chunk_bytes != 0) CHECK(W.chunk_count() >= 2);
    INFO(name(type) << " rows " << rows << " cols " << cols << " ids " << n_ids << " chunks "
                    << W.chunk_count() << " seed " << seed);
    std::mt19937 rng(seed);
    std::vector<uint32_t> ids(n_ids);
    for (auto& id : ids) id = rng() % rows;
    ids[0] = rows - 1;               // the last row (its last word may be partial)
    if (n_ids > 1) ids[1] = ids[0];  // repeats
    auto bi = gpu.upload_bytes(ids.data(), ids.size() * 4);
    auto bo = gpu.output(size_t(n_ids) * cols);
    gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
        wk.get_rows(cs, W, type, rows, cols, whole(bi), n_ids, whole(bo));
    });
    const auto all = dequantize(type, w, rows, cols);
    std::vector<float> want(size_t(n_ids) * cols);
    for (uint32_t i = 0; i < n_ids; ++i)
        std::copy_n(all.begin() + size_t(ids[i]) * cols, cols, want.begin() + size_t(i) * cols);
    const auto got = gpu.download(bo, want.size());
    CHECK(kvtest::max_abs_diff(got, want) <= 1e-6);
    return check_close(got, want, 1e-6);
}

// Column counts to test for a type: odd ones for the float types.
std::vector<uint32_t> test_cols(GgmlType t) {
    if (block(t) == 1) return {33, 96, 512};
    if (block(t) == 32) return {32, 96, 512};
    return {256, 768};
}

}  // namespace

TEST_CASE("get_rows dequantizes rows of every weight type") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernels wk(gpu.device(), gpu.pipelines(), k);
    for (GgmlType t : kAllTypes) {
        Worst worst;
        for (uint32_t cols : test_cols(t)) worst.add(check_get_rows(gpu, wk, t, 37, cols, 13));
        MESSAGE(name(t) << ": get_rows worst rel L2 " << worst.err);
    }
}

TEST_CASE("matvec (n_tokens 1) matches the CPU for every weight type, both reductions") {
    kvtest::Gpu gpu;
    for (bool sg : {false, true}) {
        KernelOptions ko;
        ko.subgroup_ops = sg;
        Kernels k(gpu.device(), gpu.pipelines(), ko);
        for (bool via_basic : {true, false}) {
            WeightKernelOptions wo;
            wo.float_matvec_via_basic = via_basic;
            WeightKernels wk(gpu.device(), gpu.pipelines(), k, wo);
            for (GgmlType t : kAllTypes) {
                const bool is_float = block(t) == 1;
                if (!via_basic && !is_float) continue;  // only the float types differ
                Worst worst;
                for (uint32_t cols : test_cols(t))
                    for (uint32_t rows : {1u, 67u})
                        worst.add(check_matmul(gpu, wk, t, rows, cols, 1));
                MESSAGE(name(t) << " subgroup " << k.subgroup_ops() << " via basic " << via_basic
                                << ": matvec worst rel L2 " << worst.err);
            }
        }
    }
}

// The status a call throws (KV_OK when it returns).
template <typename F>
kv_status status(F&& fn) {
    try {
        fn();
    } catch (const kv::Error& e) {
        return e.status();
    }
    return KV_OK;
}

// matmul with a MatmulFusion: y = (accumulate ? y0 : 0) + W x' with x' = silu(g) * u (glu),
// rms_norm(g) * nw (norm) or g, on fresh data, against the CPU (in double).
double check_fused(kvtest::Gpu& gpu, const WeightKernels& wk, GgmlType type, uint32_t rows,
                   uint32_t cols, uint32_t n_tokens, bool accumulate, bool glu,
                   uint64_t max_chunk_bytes = 0, bool norm = false) {
    const uint32_t seed = kvtest::fresh_seed();
    auto w = random_weights(type, rows, cols, seed);
    auto W = upload_weights(gpu, type, w, cols, max_chunk_bytes);
    INFO(name(type) << " rows " << rows << " cols " << cols << " tokens " << n_tokens
                    << " accumulate " << accumulate << " glu " << glu << " norm " << norm << " chunks "
                    << W.chunk_count() << " variant "
                    << wk.matmul_variant(type, cols, n_tokens, true) << " seed " << seed);
    auto g = kvtest::random_floats(size_t(cols) * n_tokens, seed + 1, -4.f, 4.f);
    auto u = kvtest::random_floats(size_t(cols) * n_tokens, seed + 2);
    auto y0 = kvtest::random_floats(size_t(rows) * n_tokens, seed + 3);
    auto nw = kvtest::random_floats(cols, seed + 4, 0.5f, 1.5f);
    auto bg = gpu.upload(g), bu = gpu.upload(u), by = gpu.upload(y0), bn = gpu.upload(nw);
    kv::engine::MatmulFusion f;
    f.accumulate = accumulate;
    if (glu) f.glu_up = whole(bu);
    if (norm) {
        f.norm_weight = whole(bn);
        f.norm_eps = 1e-5f;
    }
    // y is poisoned only when it is not accumulated into.
    const std::initializer_list<kv::vk::BufferRange> poison_y{whole(by)}, none{};
    gpu.run(accumulate ? none : poison_y, [&](kv::vk::CommandStream& cs) {
        wk.matmul(cs, W, type, rows, cols, whole(bg), whole(by), n_tokens, f);
    });
    std::vector<float> x = g;
    if (glu)
        for (size_t i = 0; i < x.size(); ++i)
            x[i] = float(double(g[i]) / (1.0 + std::exp(-double(g[i]))) * double(u[i]));
    if (norm)
        for (uint32_t t = 0; t < n_tokens; ++t)
            kv::reference::rms_norm(g.data() + size_t(t) * cols, nw.data(), x.data() + size_t(t) * cols,
                                    cols, 1e-5f);
    std::vector<float> mag;
    auto want = cpu_matmul(dequantize(type, w, rows, cols), rows, cols, x, n_tokens, &mag);
    if (accumulate)
        for (size_t i = 0; i < want.size(); ++i) {
            want[i] += y0[i];
            mag[i] += std::fabs(y0[i]);
        }
    return check_product(gpu.download(by, want.size()), want, mag, kTol);
}

TEST_CASE("matmul fuses a residual add and a SwiGLU input (decode and prefill)") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernels wk(gpu.device(), gpu.pipelines(), k);
    WeightKernelOptions up_to_8;  // 3 and 7 tokens through the matvec as well as the tiled kernel
    up_to_8.matvec_max_tokens = 8;
    WeightKernels wk8(gpu.device(), gpu.pipelines(), k, up_to_8);
    // Full: every type x {1, 3, 100} tokens x the three fusions. Subset: each (type, fusion) at
    // one token count, rotating, so every count meets every type and every fusion.
    const bool full = kvtest::full_sweep();
    const GgmlType kFusedTypes[] = {GgmlType::F16, GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K};
    const uint32_t kCounts[] = {1u, 3u, 100u};
    for (size_t ti = 0; ti < std::size(kFusedTypes); ++ti)
        for (size_t ni = 0; ni < 3; ++ni)
            for (int mode = 1; mode < 4; ++mode) {
                if (!full && ni != (ti + size_t(mode)) % 3) continue;
                const GgmlType t = kFusedTypes[ti];
                const uint32_t n_tokens = kCounts[ni];
                const uint32_t cols = block(t) == 1 ? 98 : block(t) == 32 ? 160 : 512;
                check_fused(gpu, wk, t, 67, cols, n_tokens, mode & 1, mode & 2);
                if (n_tokens == 3) check_fused(gpu, wk8, t, 67, cols, n_tokens, mode & 1, mode & 2);
            }
    // Weights in several chunks: every chunk accumulates into its own rows.
    const uint64_t rb = kv::model::row_bytes(GgmlType::Q8_0, 256);
    check_fused(gpu, wk, GgmlType::Q8_0, 40, 256, 1, true, true, rb * 16);
    check_fused(gpu, wk, GgmlType::Q8_0, 40, 256, 7, true, true, rb * 16);
    check_fused(gpu, wk8, GgmlType::Q8_0, 40, 256, 7, true, true, rb * 16);
    // The decode matvec's fused RMS norm, alone and with the residual add, chunked too.
    for (GgmlType t : {GgmlType::F16, GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K}) {
        const uint32_t cols = block(t) == 1 ? 98 : block(t) == 32 ? 160 : 512;
        check_fused(gpu, wk, t, 67, cols, 1, false, false, 0, true);
        check_fused(gpu, wk, t, 67, cols, 1, true, false, 0, true);
    }
    check_fused(gpu, wk, GgmlType::Q8_0, 40, 256, 1, false, false, rb * 16, true);
    // Not for prefill, and not with a GLU.
    kv::engine::MatmulFusion both;
    auto any = gpu.upload(kvtest::random_floats(4096, kvtest::fresh_seed()));
    both.norm_weight = whole(any);
    auto W = upload_weights(gpu, GgmlType::Q8_0, random_weights(GgmlType::Q8_0, 4, 64, 1), 64);
    kv::vk::CommandStream cs(gpu.device());
    cs.begin();
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q8_0, 4, 64, whole(any), whole(any), 2, both); }) ==
          KV_ERR_INVALID_ARGUMENT);
    both.glu_up = whole(any);
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q8_0, 4, 64, whole(any), whole(any), 1, both); }) ==
          KV_ERR_INVALID_ARGUMENT);
    cs.submit_and_wait();
}

TEST_CASE("matvec with other workgroup sizes and rows per workgroup") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    for (uint32_t wg : {16u, 128u, 256u})
        for (uint32_t nr : {1u, 3u}) {
            WeightKernelOptions wo;
            wo.matvec_workgroup = wg;
            wo.matvec_rows = nr;
            WeightKernels wk(gpu.device(), gpu.pipelines(), k, wo);
            INFO("workgroup " << wk.matvec_workgroup() << " rows " << wk.matvec_rows());
            check_matmul(gpu, wk, GgmlType::Q4_K, 67, 1024, 1);
            check_matmul(gpu, wk, GgmlType::Q5_0, 67, 96, 1);
            check_matmul(gpu, wk, GgmlType::Q6_K, 5, 256, 1);
        }
}

TEST_CASE("matmul (n_tokens > 1) matches the CPU for every weight type") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernelOptions tiled_only;  // few tokens through the tiled kernel too
    tiled_only.matvec_max_tokens = 1;
    WeightKernels wk(gpu.device(), gpu.pipelines(), k), wk_tiled(gpu.device(), gpu.pipelines(), k, tiled_only);
    for (GgmlType t : kAllTypes) {
        Worst worst;
        const uint32_t cols = block(t) == 1 ? 97 : block(t) == 32 ? 160 : 512;
        worst.add(check_matmul(gpu, wk_tiled, t, 67, cols, 2));
        worst.add(check_matmul(gpu, wk_tiled, t, 33, cols, 7));
        worst.add(check_matmul(gpu, wk, t, 130, cols, 33));
        worst.add(check_matmul(gpu, wk, t, 64, block(t) == 1 ? 64 : cols, 64));
        worst.add(check_matmul(gpu, wk, t, 5, cols, 100));
        MESSAGE(name(t) << ": matmul worst rel L2 " << worst.err);
    }
}

TEST_CASE("matmul of 2 to 8 tokens runs as the matvec: every weight type, both reductions, chunks") {
    kvtest::Gpu gpu;
    WeightKernelOptions up_to_8;  // the GPU default (CPU devices keep the tiled kernel)
    up_to_8.matvec_max_tokens = 8;
    // Full: every type x {2, 5, 8} tokens x both reductions (78 kernel variants). Subset: every
    // type once, the token counts and reductions rotating over the types so that each count
    // meets each reduction (13 variants).
    const bool full = kvtest::full_sweep();
    const uint32_t kCounts[] = {2u, 5u, 8u};
    for (bool sg : {false, true}) {
        KernelOptions ko;
        ko.subgroup_ops = sg;
        Kernels k(gpu.device(), gpu.pipelines(), ko);
        WeightKernels wk(gpu.device(), gpu.pipelines(), k, up_to_8);
        for (size_t ti = 0; ti < std::size(kAllTypes); ++ti) {
            const GgmlType t = kAllTypes[ti];
            if (!full && (ti % 2 == 1) != sg) continue;
            Worst worst;
            const uint32_t cols = block(t) == 1 ? (sg ? 64 : 97) : block(t) == 32 ? 96 : 256;
            for (size_t ni = 0; ni < 3; ++ni) {
                if (!full && ni != ti % 3) continue;
                const uint32_t n = kCounts[ni];
                CHECK(wk.matmul_variant(t, cols, n).rfind("mul_mat_vec_", 0) == 0);
                worst.add(check_matmul(gpu, wk, t, 37, cols, n));
            }
            MESSAGE(name(t) << " subgroup " << sg << ": 2..8-token matvec worst rel L2 " << worst.err);
        }
    }
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernels wk(gpu.device(), gpu.pipelines(), k, up_to_8);
    CHECK(wk.matmul_variant(GgmlType::Q8_0, 256, 9).rfind("mul_mat_", 0) == 0);
    CHECK(wk.matmul_variant(GgmlType::Q8_0, 256, 9).rfind("mul_mat_vec_", 0) != 0);
    const uint64_t rb = kv::model::row_bytes(GgmlType::Q4_K, 512);
    check_matmul(gpu, wk, GgmlType::Q4_K, 45, 512, 6, rb * 16);  // 3 chunks of rows
    WeightKernelOptions bad;
    bad.matvec_max_tokens = 9;
    CHECK_THROWS_AS(WeightKernels(gpu.device(), gpu.pipelines(), k, bad), kv::Error);
}

TEST_CASE("matmul with every tile shape") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    for (uint32_t tile : {32u, 64u, 128u}) {
        WeightKernelOptions wo;
        wo.matmul_tile_tokens = tile;
        WeightKernels wk(gpu.device(), gpu.pipelines(), k, wo);
        INFO("tile tokens " << tile);
        check_matmul(gpu, wk, GgmlType::Q8_0, 70, 128, 33);
        check_matmul(gpu, wk, GgmlType::Q3_K, 130, 256, 65);
        check_matmul(gpu, wk, GgmlType::Q4_K, 129, 512, 130);
        check_matmul(gpu, wk, GgmlType::F16, 65, 45, 31);
        check_matmul(gpu, wk, GgmlType::BF16, 200, 40, 129);
    }
}

TEST_CASE("weights split into several chunks: one dispatch per chunk") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    for (bool via_basic : {true, false}) {
        WeightKernelOptions wo;
        wo.float_matvec_via_basic = via_basic;
        WeightKernels wk(gpu.device(), gpu.pipelines(), k, wo);
        for (GgmlType t :
             {GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::Q3_K, GgmlType::F16, GgmlType::F32}) {
            const uint32_t cols = block(t) == 1 ? 35 : 256;
            const uint32_t rows = 203;
            // About 7 rows per chunk, and a chunk size that is no multiple of 4 bytes for the
            // 2-byte-aligned block sizes (18, 210, 110 bytes; odd-length f16 rows).
            const uint64_t chunk = kv::model::row_bytes(t, cols) * 7;
            check_matmul(gpu, wk, t, rows, cols, 1, chunk);
            check_matmul(gpu, wk, t, rows, cols, 9, chunk);
            check_matmul(gpu, wk, t, rows, cols, 70, chunk);
            if (via_basic) check_get_rows(gpu, wk, t, rows, cols, 40, chunk);
        }
    }
}

TEST_CASE("matvec reads x at an offset that is not 16-byte aligned") {
    kvtest::Gpu gpu;
    const uint64_t align = gpu.device().limits().minStorageBufferOffsetAlignment;
    if (align % 16 == 0) {
        MESSAGE("minStorageBufferOffsetAlignment " << align
                                                   << ": every x binding is 16-byte aligned");
        return;
    }
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernelOptions up_to_8;
    up_to_8.matvec_max_tokens = 8;
    WeightKernels wk(gpu.device(), gpu.pipelines(), k, up_to_8);
    const GgmlType t = GgmlType::Q4_1;
    const uint32_t rows = 19, cols = 128;
    auto w = random_weights(t, rows, cols, kvtest::fresh_seed());
    auto W = upload_weights(gpu, t, w, cols);
    for (uint32_t n : {1u, 3u}) {  // decode, and a few tokens through the matvec
        auto x = kvtest::random_floats(size_t(cols) * n + 16, kvtest::fresh_seed());
        auto bx = gpu.upload(x);
        const uint64_t off = align;  // 4 or 8 bytes
        const kv::vk::BufferRange xr{bx.handle(), off, uint64_t(cols) * n * 4};
        auto by = gpu.output(size_t(rows) * n);
        gpu.run({whole(by)},
                [&](kv::vk::CommandStream& cs) { wk.matmul(cs, W, t, rows, cols, xr, whole(by), n); });
        std::vector<float> xs(x.begin() + off / 4, x.begin() + off / 4 + size_t(cols) * n);
        check_close(gpu.download(by, size_t(rows) * n),
                    cpu_matmul(dequantize(t, w, rows, cols), rows, cols, xs, n), kTol);
    }
}

TEST_CASE("weight kernels reject bad shapes and unsupported types") {
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernels wk(gpu.device(), gpu.pipelines(), k);
    auto w = random_weights(GgmlType::Q4_0, 4, 64, 1);
    auto W = upload_weights(gpu, GgmlType::Q4_0, w, 64);
    auto big = gpu.output(1024);
    auto small = gpu.output(4);
    kv::vk::CommandStream cs(gpu.device());
    cs.begin();
    CHECK(!WeightKernels::supported(GgmlType::Q8_K));
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q8_K, 4, 256, whole(big), whole(big), 1); }) ==
          KV_ERR_UNSUPPORTED);
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q4_0, 4, 48, whole(big), whole(big), 1); }) ==
          KV_ERR_INVALID_ARGUMENT);  // not a multiple of 32
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q4_0, 8, 64, whole(big), whole(big), 1); }) ==
          KV_ERR_INVALID_ARGUMENT);  // W too small
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q4_0, 4, 64, whole(small), whole(big), 2); }) ==
          KV_ERR_INVALID_ARGUMENT);  // x too small
    CHECK(status([&] { wk.matmul(cs, W, GgmlType::Q4_0, 4, 64, whole(big), whole(big), 0); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { wk.get_rows(cs, W, GgmlType::Q4_0, 4, 64, whole(small), 5, whole(big)); }) ==
          KV_ERR_INVALID_ARGUMENT);  // ids too small
    CHECK(status([&] { wk.get_rows(cs, W, GgmlType::Q4_0, 4, 64, whole(big), 3, whole(small)); }) ==
          KV_ERR_INVALID_ARGUMENT);  // out too small
    cs.submit_and_wait();
}

namespace {

// Seconds per call of `record`, averaged over `iters` back-to-back calls with a barrier between
// them (as consecutive layers would have); GPU timestamps where available.
double time_gpu(kvtest::Gpu& gpu, const std::function<void(kv::vk::CommandStream&)>& record,
                int iters) {
    const bool ts = gpu.device().timestamps();
    kv::vk::CommandStream cs(gpu.device(), ts ? 2 : 0);
    auto run = [&](int n) {
        cs.begin();
        cs.barrier();
        if (ts) cs.timestamp(0);
        for (int i = 0; i < n; ++i) {
            record(cs);
            cs.barrier();
        }
        if (ts) cs.timestamp(1);
        auto t0 = std::chrono::steady_clock::now();
        cs.submit_and_wait();
        auto t1 = std::chrono::steady_clock::now();
        return ts ? cs.elapsed_ns(0, 1) * 1e-9 : std::chrono::duration<double>(t1 - t0).count();
    };
    run(1);  // warm-up: pipeline creation, first touch
    return run(iters) / iters;
}

}  // namespace

TEST_CASE("weight kernels throughput (prints GB/s of weight reads and GFLOP/s)") {
    kvtest::Gpu gpu;
    const bool cpu = gpu.device().properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    Kernels k(gpu.device(), gpu.pipelines());
    std::vector<WeightKernelOptions> configs(1);
    const char* sweep = std::getenv("KV_BENCH_SWEEP");
    if (sweep && *sweep == '1' && !cpu) {
        configs.clear();
        for (uint32_t wg : {32u, 64u, 128u, 256u})
            for (uint32_t nr : {1u, 2u, 4u}) {
                WeightKernelOptions o;
                o.matvec_workgroup = wg;
                o.matvec_rows = nr;
                o.float_matvec_via_basic = false;
                configs.push_back(o);
            }
    }
    struct Shape {
        GgmlType type;
        uint32_t rows, cols, tokens;
    };
    std::vector<Shape> shapes;
    const char* which = std::getenv("KV_BENCH_SHAPES");
    if (cpu) {
        shapes = {{GgmlType::Q4_K, 256, 1024, 1}, {GgmlType::Q4_K, 64, 256, 16}};
    } else if (which && std::strcmp(which, "tiny") == 0) {
        // KV_BENCH_SHAPES=tiny: the decode matvecs of a 1.1B TinyLlama-shaped model (q, k/v, o,
        // gate/up, down, output head).
        for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16})
            for (auto rc : {std::pair<uint32_t, uint32_t>{2048, 2048}, {256, 2048}, {5632, 2048},
                            {2048, 5632}, {32000, 2048}})
                shapes.push_back({t, rc.first, rc.second, 1});
    } else {
        for (GgmlType t : kAllTypes) shapes.push_back({t, 4096, 4096, 1});
        shapes.push_back({GgmlType::F16, 14336, 4096, 1});
        shapes.push_back({GgmlType::BF16, 14336, 4096, 1});
        shapes.push_back({GgmlType::Q4_0, 4096, 14336, 1});
        shapes.push_back({GgmlType::Q4_K, 14336, 4096, 1});
        shapes.push_back({GgmlType::Q4_0, 14336, 4096, 1});
        shapes.push_back({GgmlType::Q8_0, 14336, 4096, 1});
        shapes.push_back({GgmlType::Q6_K, 14336, 4096, 1});
        for (GgmlType t :
             {GgmlType::F16, GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K})
            shapes.push_back({t, 4096, 4096, 512});
    }
    for (const WeightKernelOptions& o : configs) {
        WeightKernels wk(gpu.device(), gpu.pipelines(), k, o);
        for (const Shape& s : shapes) {
            if (configs.size() > 1 && s.tokens > 1) continue;
            auto w = random_weights(s.type, s.rows, s.cols, kvtest::fresh_seed());
            auto W = upload_weights(gpu, s.type, w, s.cols);
            auto x = kvtest::random_floats(size_t(s.cols) * s.tokens, kvtest::fresh_seed());
            auto bx = gpu.upload(x);
            auto by = gpu.output(size_t(s.rows) * s.tokens);
            const int iters = cpu ? 2 : s.tokens > 1 ? 10 : 50;
            const double sec = time_gpu(
                gpu,
                [&](kv::vk::CommandStream& cs) {
                    wk.matmul(cs, W, s.type, s.rows, s.cols, whole(bx), whole(by), s.tokens);
                },
                iters);
            const double gbs = double(w.size()) / sec * 1e-9;
            const double gflops = 2.0 * s.rows * s.cols * s.tokens / sec * 1e-9;
            char line[256];
            std::snprintf(
                line, sizeof(line),
                "%-5s %6ux%-6u x%-4u %-22s wg %3u rows %u: %9.1f us %8.1f GB/s %9.1f GFLOP/s",
                name(s.type).c_str(), s.rows, s.cols, s.tokens,
                wk.matmul_variant(s.type, s.cols, s.tokens).c_str(),
                wk.matvec_shape(s.type, s.rows, s.cols).workgroup,
                wk.matvec_shape(s.type, s.rows, s.cols).rows, sec * 1e6, gbs, gflops);
            MESSAGE(line);
            CHECK(kvtest::count_nan(gpu.download(by, size_t(s.rows) * s.tokens)) == 0);
        }
    }
}

TEST_CASE("weight kernels on real quantized tensors (llama-gqa fixtures of every type)") {
    if (!kvtest::require_shared()) return;
    kvtest::Gpu gpu;
    Kernels k(gpu.device(), gpu.pipelines());
    WeightKernels wk(gpu.device(), gpu.pipelines(), k);
    const char* variants[] = {"f32",  "f16",  "bf16",   "q8_0",   "q4_0",   "q4_1",   "q5_0",
                              "q5_1", "q2_k", "q3_k_s", "q4_k_s", "q4_k_m", "q5_k_s", "q6_k"};
    std::vector<bool> seen(64, false);
    for (const char* v : variants) {
        const std::string path =
            kvtest::shared_dir() + "/models/fixtures/llama-gqa." + std::string(v) + ".gguf";
        if (!kvtest::file_exists(path)) {
            MESSAGE("skipping missing fixture " << path);
            continue;
        }
        auto file = kv::model::GgufFile::open(path);
        // Up to 4 two-dimensional tensors per file, preferring types not yet covered.
        int done = 0;
        for (const auto& t : file->tensors()) {
            if (t.n_dims != 2 || !WeightKernels::supported(t.type) || done >= 4) continue;
            const uint32_t cols = static_cast<uint32_t>(t.ne[0]);
            const uint32_t rows = std::min<uint32_t>(static_cast<uint32_t>(t.ne[1]), 300);
            const uint64_t rb = kv::model::row_bytes(t.type, cols);
            std::vector<uint8_t> w(file->tensor_data(t), file->tensor_data(t) + rb * rows);
            seen[size_t(t.type) % seen.size()] = true;
            ++done;
            const uint32_t seed = kvtest::fresh_seed();
            INFO(v << " tensor " << t.name << " " << name(t.type) << " [" << rows << "][" << cols
                   << "] seed " << seed);
            auto W = upload_weights(gpu, t.type, w, cols);
            const auto deq = dequantize(t.type, w, rows, cols);
            for (uint32_t n_tokens : {1u, 5u}) {
                auto x = kvtest::random_floats(size_t(cols) * n_tokens, seed + n_tokens);
                auto bx = gpu.upload(x);
                auto by = gpu.output(size_t(rows) * n_tokens);
                gpu.run({whole(by)}, [&](kv::vk::CommandStream& cs) {
                    wk.matmul(cs, W, t.type, rows, cols, whole(bx), whole(by), n_tokens);
                });
                std::vector<float> mag;
                const auto want = cpu_matmul(deq, rows, cols, x, n_tokens, &mag);
                check_product(gpu.download(by, want.size()), want, mag, kTol);
            }
            std::vector<uint32_t> ids = {0, rows - 1, rows / 2, 1 % rows};
            auto bi = gpu.upload_bytes(ids.data(), ids.size() * 4);
            auto bo = gpu.output(ids.size() * cols);
            gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
                wk.get_rows(cs, W, t.type, rows, cols, whole(bi), static_cast<uint32_t>(ids.size()),
                            whole(bo));
            });
            const auto got = gpu.download(bo, ids.size() * cols);
            std::vector<float> want(ids.size() * cols);
            for (size_t i = 0; i < ids.size(); ++i)
                std::copy_n(deq.begin() + size_t(ids[i]) * cols, cols, want.begin() + i * cols);
            CHECK(kvtest::max_abs_diff(got, want) <=
                  1e-6 * (1 + kvtest::max_abs_diff(want, std::vector<float>(want.size(), 0.f))));
        }
    }
    for (GgmlType t : kAllTypes)
        if (!seen[size_t(t) % seen.size()]) MESSAGE("no fixture tensor of type " << name(t));
}
