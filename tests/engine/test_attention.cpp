// AttentionKernels (src/engine/attention.h) against the CPU oracle (src/reference/ops.h) on fresh
// random data, with validation on: RoPE, KV-cache writes through scrambled block tables,
// causal GQA attention (decode and chunked prefill, F32 and F16 pages, sliding window, every
// kernel path: decode / tiled, split-KV or not, subgroup or shared-memory reductions), argmax.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/helpers.h"
#include "engine/attention.h"
#include "engine/gpu_fixture.h"
#include "model/ggml_types.h"
#include "reference/ops.h"

using kv::engine::AttentionKernels;
using kv::engine::AttentionOptions;
using kv::engine::AttentionParams;
using kv::engine::RopeParams;
using kv::model::GgmlType;
using kv::vk::whole;

namespace {

// Whole-output relative L2 error bounds: fp32 arithmetic against double; the F16 cases compare
// with the f16 values actually stored, so both stay at fp32 rounding level.
constexpr double kAttnTol = 1e-5;
constexpr double kRopeTol = 2e-6;

std::vector<uint32_t> scrambled_table(uint32_t n_pages, uint32_t pool_pages, uint32_t seed) {
    std::vector<uint32_t> ids(pool_pages);
    std::iota(ids.begin(), ids.end(), 0u);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    ids.resize(n_pages);
    return ids;
}

// A paged cache on the device plus what it holds, as f32 (decoded from the pools).
struct Cache {
    AttentionParams p;  // shape fields (n_head_kv, head_dim, page_size, kv_type)
    uint32_t n_ctx = 0;
    uint32_t pool_pages = 0;
    std::vector<uint32_t> table;
    kv::vk::Buffer k_pool, v_pool, bt;

    uint64_t page_elems() const { return uint64_t(p.n_head_kv) * p.page_size * p.head_dim; }
    uint64_t pool_bytes() const {
        return page_elems() * pool_pages * (p.kv_type == GgmlType::F16 ? 2 : 4);
    }
    // Element offset of (pos, kvh, 0) in a pool.
    uint64_t elem(uint32_t pos, uint32_t kvh) const {
        return ((uint64_t(table[pos / p.page_size]) * p.n_head_kv + kvh) * p.page_size +
                pos % p.page_size) *
               p.head_dim;
    }
};

// NaN in every element of both pools (f32 NaN, or two f16 NaNs per word), then a barrier.
void poison_pools(kv::vk::CommandStream& cs, const Cache& c) {
    const uint32_t pattern = c.p.kv_type == GgmlType::F16 ? 0x7E007E00u : kvtest::Gpu::kNaN;
    cs.fill(whole(c.k_pool), pattern);
    cs.fill(whole(c.v_pool), pattern);
    cs.barrier();
}

std::vector<float> decode_pool(kvtest::Gpu& gpu, const Cache& c, const kv::vk::Buffer& pool) {
    const uint64_t n = c.page_elems() * c.pool_pages;
    std::vector<float> f(n);
    if (c.p.kv_type == GgmlType::F16) {
        std::vector<uint16_t> h(n);
        gpu.uploader().download(pool, 0, h.data(), n * 2);
        for (uint64_t i = 0; i < n; ++i) f[i] = kv::model::fp16_to_fp32(h[i]);
    } else {
        gpu.uploader().download(pool, 0, f.data(), n * 4);
    }
    return f;
}

// [pos][kvh][d] view of the cache contents for positions [0, n_ctx).
std::vector<float> gather(const Cache& c, const std::vector<float>& pool) {
    const uint32_t D = c.p.head_dim;
    std::vector<float> out(uint64_t(c.n_ctx) * c.p.n_head_kv * D);
    for (uint32_t pos = 0; pos < c.n_ctx; ++pos)
        for (uint32_t h = 0; h < c.p.n_head_kv; ++h)
            std::memcpy(&out[(uint64_t(pos) * c.p.n_head_kv + h) * D], &pool[c.elem(pos, h)],
                        D * sizeof(float));
    return out;
}

// Fills positions [0, n_ctx) with random K/V through kv_write (one call per chunk of positions,
// so several writes land in one page); the pool pages not in the table stay NaN.
Cache make_cache(kvtest::Gpu& gpu, const AttentionKernels& ak, const AttentionParams& shape,
                 uint32_t n_ctx, std::vector<float>* k_ctx, std::vector<float>* v_ctx) {
    Cache c;
    c.p = shape;
    c.n_ctx = n_ctx;
    const uint32_t n_pages = (n_ctx + shape.page_size - 1) / shape.page_size;
    c.pool_pages = n_pages + 3;
    c.table = scrambled_table(n_pages, c.pool_pages, kvtest::fresh_seed());
    c.k_pool = kv::vk::Buffer(&gpu.allocator(), c.pool_bytes(), kv::vk::MemoryUse::Device);
    c.v_pool = kv::vk::Buffer(&gpu.allocator(), c.pool_bytes(), kv::vk::MemoryUse::Device);
    c.bt = gpu.upload_bytes(c.table.data(), c.table.size() * 4);
    const uint32_t row = shape.n_head_kv * shape.head_dim;
    auto k = kvtest::random_floats(uint64_t(n_ctx) * row, kvtest::fresh_seed());
    auto v = kvtest::random_floats(uint64_t(n_ctx) * row, kvtest::fresh_seed());
    auto bk = gpu.upload(k), bv = gpu.upload(v);
    // Chunks of odd sizes: 1, 7, 300, ... tokens at increasing pos0.
    std::vector<std::pair<uint32_t, uint32_t>> chunks;
    for (uint32_t p0 = 0, i = 0; p0 < n_ctx; ++i) {
        const uint32_t want = i % 3 == 0 ? 1 : (i % 3 == 1 ? 7 : 300);
        const uint32_t n = std::min(want, n_ctx - p0);
        chunks.push_back({p0, n});
        p0 += n;
    }
    gpu.run({}, [&](kv::vk::CommandStream& cs) {
        poison_pools(cs, c);
        for (auto [p0, n] : chunks) {
            AttentionParams wp = shape;
            wp.pos0 = p0;
            wp.n_tokens = n;
            const uint64_t off = uint64_t(p0) * row * 4, bytes = uint64_t(n) * row * 4;
            ak.kv_write(cs, {bk.handle(), off, bytes}, {bv.handle(), off, bytes}, whole(c.k_pool),
                        whole(c.v_pool), whole(c.bt), wp);
        }
    });
    *k_ctx = gather(c, decode_pool(gpu, c, c.k_pool));
    *v_ctx = gather(c, decode_pool(gpu, c, c.v_pool));
    return c;
}

// softmax(scale q K^T) V over the visible keys, in double (reference::attend).
std::vector<float> cpu_attention(const std::vector<float>& q, const std::vector<float>& k,
                                 const std::vector<float>& v, const AttentionParams& p) {
    const uint32_t D = p.head_dim, G = p.n_head / p.n_head_kv;
    const size_t stride = size_t(p.n_head_kv) * D;
    std::vector<float> out(size_t(p.n_tokens) * p.n_head * D);
    for (uint32_t t = 0; t < p.n_tokens; ++t) {
        const uint32_t pos = p.pos0 + t;
        const uint32_t lo = p.window != 0 && pos + 1 > p.window ? pos + 1 - p.window : 0;
        for (uint32_t h = 0; h < p.n_head; ++h) {
            const uint32_t kvh = h / G;
            const size_t base = (size_t(lo) * p.n_head_kv + kvh) * D;
            kv::reference::attend(&q[(size_t(t) * p.n_head + h) * D], &k[base], &v[base], stride,
                                  pos - lo + 1, D, p.scale, &out[(size_t(t) * p.n_head + h) * D],
                                  p.softcap);
        }
    }
    return out;
}

struct AttnCase {
    uint32_t n_tokens, pos0, n_head, n_head_kv, head_dim, page_size;
    GgmlType type;
    uint32_t window;
    float softcap = 0.f;
};

std::string describe(const AttnCase& c) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "n_tokens %u pos0 %u heads %u/%u head_dim %u page %u %s window %u", c.n_tokens,
                  c.pos0, c.n_head, c.n_head_kv, c.head_dim, c.page_size,
                  c.type == GgmlType::F16 ? "F16" : "F32", c.window);
    return buf;
}

AttentionParams params_of(const AttnCase& c) {
    AttentionParams p;
    p.n_tokens = c.n_tokens;
    p.pos0 = c.pos0;
    p.n_head = c.n_head;
    p.n_head_kv = c.n_head_kv;
    p.head_dim = c.head_dim;
    p.page_size = c.page_size;
    p.kv_type = c.type;
    p.scale = 1.0f / std::sqrt(float(c.head_dim));
    p.window = c.window;
    p.softcap = c.softcap;
    return p;
}

// Runs one case with each kernel configuration in `configs`; returns the worst error.
double check_attention(kvtest::Gpu& gpu, const std::vector<const AttentionKernels*>& configs,
                       const AttnCase& ac, bool expect_split = false) {
    INFO(describe(ac));
    const AttentionParams p = params_of(ac);
    std::vector<float> k, v;
    Cache cache = make_cache(gpu, *configs[0], p, ac.pos0 + ac.n_tokens, &k, &v);
    // Queries with a wide range so the softmax is far from uniform.
    auto q = kvtest::random_floats(size_t(p.n_tokens) * p.n_head * p.head_dim, kvtest::fresh_seed(),
                                   -4.f, 4.f);
    auto bq = gpu.upload(q);
    const auto want = cpu_attention(q, k, v, p);
    double worst = 0;
    for (const AttentionKernels* ak : configs) {
        const auto plan = ak->plan(p, ak->options().allocator ? ak->options().scratch_bytes : 0);
        INFO("plan: tiled " << plan.tiled << " rows " << plan.rows << " tile " << plan.tile_keys
                            << " wg " << plan.workgroup << " splits " << plan.splits << " subgroup "
                            << ak->subgroup_ops());
        // Forced splits must split a long key range (a short window may leave too few keys).
        if (expect_split && ak->options().force_splits > 1 && (ac.window == 0 || ac.window >= 256))
            CHECK(plan.splits > 1);
        auto bo = gpu.output(want.size());
        gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
            ak->attention(cs, whole(bq), whole(cache.k_pool), whole(cache.v_pool), whole(cache.bt),
                          whole(bo), p);
        });
        const auto got = gpu.download(bo, want.size());
        CHECK(kvtest::count_nan(got) == 0);
        const double err = kvtest::rel_l2(got, want);
        CHECK_MESSAGE(err < kAttnTol, "relative L2 error " << err);
        worst = std::max(worst, err);
    }
    return worst;
}

// The kernel configurations every attention case runs under.
struct Configs {
    std::vector<std::unique_ptr<AttentionKernels>> owned;
    std::vector<const AttentionKernels*> all;
    std::vector<const AttentionKernels*> no_plain;  // all but the shared-memory/scalar one

    Configs(kvtest::Gpu& gpu) {
        auto add = [&](AttentionOptions o) {
            owned.push_back(std::make_unique<AttentionKernels>(gpu.device(), gpu.pipelines(), o));
            all.push_back(owned.back().get());
        };
        AttentionOptions def;  // default policy, internal scratch
        def.allocator = &gpu.allocator();
        def.scratch_bytes = 4 << 20;
        add(def);
        AttentionOptions plain;  // decode kernel only, no split, shared-memory reductions
        plain.subgroup_ops = false;
        plain.vector_loads = false;
        plain.decode_rows = 8;
        plain.tile_min_rows = 0;
        plain.max_splits = 1;
        add(plain);
        AttentionOptions split = def;  // forced split, decode kernel
        split.force_splits = 5;
        split.tile_min_rows = 0;
        add(split);
        AttentionOptions tiled = def;  // tiled kernel for every shape, forced split
        tiled.tile_min_rows = 1;
        tiled.force_splits = 3;
        add(tiled);
        AttentionOptions tiled1 = tiled;  // tiled, no split
        tiled1.force_splits = 0;
        tiled1.max_splits = 1;
        add(tiled1);
        no_plain = all;
        no_plain.erase(no_plain.begin() + 1);
    }
};

}  // namespace

TEST_CASE("rope matches the reference: normal and NeoX, partial rotation, scaling, factors") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    struct Case {
        uint32_t n_tokens, n_heads, head_dim, n_rot, pos0;
        float base, scale;
        bool neox, factors;
    } cases[] = {
        {1, 1, 2, 2, 0, 10000.f, 1.f, false, false},
        {5, 3, 16, 16, 3, 10000.f, 1.f, false, false},
        {5, 3, 16, 16, 3, 10000.f, 1.f, true, false},
        {7, 2, 32, 16, 100, 1e6f, 1.f, true, false},         // partial, qwen-like base
        {4, 4, 64, 48, 1000, 10000.f, 0.25f, false, false},  // linear scaling
        {3, 8, 128, 128, 4090, 500000.f, 1.f, false, true},  // Llama 3 factors
        {3, 2, 128, 64, 131000, 500000.f, 1.f, true, true},  // long context
        {2, 2, 256, 256, 1000000, 10000.f, 1.f, false, false},
    };
    double worst = 0;
    for (const Case& c : cases) {
        INFO("tokens " << c.n_tokens << " heads " << c.n_heads << " head_dim " << c.head_dim
                       << " n_rot " << c.n_rot << " pos0 " << c.pos0 << " neox " << c.neox
                       << " factors " << c.factors);
        const size_t n = size_t(c.n_tokens) * c.n_heads * c.head_dim;
        auto x = kvtest::random_floats(n, kvtest::fresh_seed(), -2.f, 2.f);
        auto ff = kvtest::random_floats(c.n_rot / 2, kvtest::fresh_seed(), 1.f, 8.f);
        auto bx = gpu.upload(x), bf = gpu.upload(ff);
        RopeParams p;
        p.n_tokens = c.n_tokens;
        p.n_heads = c.n_heads;
        p.head_dim = c.head_dim;
        p.n_rot = c.n_rot;
        p.pos0 = c.pos0;
        p.freq_base = c.base;
        p.freq_scale = c.scale;
        p.neox = c.neox;
        gpu.run({}, [&](kv::vk::CommandStream& cs) {
            ak.rope(cs, whole(bx), c.factors ? whole(bf) : kv::vk::BufferRange{}, p);
        });
        auto want = x;
        for (uint32_t t = 0; t < c.n_tokens; ++t)
            for (uint32_t h = 0; h < c.n_heads; ++h)
                kv::reference::rope(&want[(size_t(t) * c.n_heads + h) * c.head_dim], c.n_rot,
                                    int64_t(c.pos0) + t,
                                    c.neox ? kv::model::RopeType::Neox : kv::model::RopeType::Norm,
                                    c.base, c.scale, c.factors ? ff.data() : nullptr);
        const auto got = gpu.download(bx, n);
        const double err = kvtest::rel_l2(got, want);
        CHECK_MESSAGE(err < kRopeTol, "relative L2 error " << err);
        worst = std::max(worst, err);
        // Unrotated dims pass through bit-exact.
        for (uint32_t r = 0; r < c.n_tokens * c.n_heads; ++r)
            for (uint32_t d = c.n_rot; d < c.head_dim; ++d)
                REQUIRE(got[size_t(r) * c.head_dim + d] == x[size_t(r) * c.head_dim + d]);
    }
    MESSAGE("rope worst relative L2 error " << worst);
}

TEST_CASE("rope rejects bad shapes") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    auto bx = gpu.output(64);
    RopeParams p;
    p.head_dim = 16;
    p.n_rot = 3;
    kv::vk::CommandStream cs(gpu.device());
    cs.begin();
    CHECK_THROWS(ak.rope(cs, whole(bx), {}, p));
    p.n_rot = 18;
    CHECK_THROWS(ak.rope(cs, whole(bx), {}, p));
    p.n_rot = 16;
    p.n_heads = 5;  // 80 floats > 64
    CHECK_THROWS(ak.rope(cs, whole(bx), {}, p));
    cs.submit_and_wait();
}

TEST_CASE("kv_write stores rows at their block-table slots, F32 exactly and F16 rounded") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    for (GgmlType type : {GgmlType::F32, GgmlType::F16}) {
        for (uint32_t page : {16u, 32u}) {
            INFO((type == GgmlType::F16 ? "F16" : "F32") << " page " << page);
            AttentionParams p;
            p.n_head_kv = 3;
            p.head_dim = 10;
            p.page_size = page;
            p.kv_type = type;
            p.pos0 = 21;      // mid-page start
            p.n_tokens = 45;  // crosses pages
            Cache c;
            c.p = p;
            c.n_ctx = p.pos0 + p.n_tokens;
            const uint32_t n_pages = (c.n_ctx + page - 1) / page;
            c.pool_pages = n_pages + 4;
            c.table = scrambled_table(n_pages, c.pool_pages, kvtest::fresh_seed());
            c.k_pool = kv::vk::Buffer(&gpu.allocator(), c.pool_bytes(), kv::vk::MemoryUse::Device);
            c.v_pool = kv::vk::Buffer(&gpu.allocator(), c.pool_bytes(), kv::vk::MemoryUse::Device);
            c.bt = gpu.upload_bytes(c.table.data(), c.table.size() * 4);
            const uint32_t row = p.n_head_kv * p.head_dim;
            auto k =
                kvtest::random_floats(size_t(p.n_tokens) * row, kvtest::fresh_seed(), -3.f, 3.f);
            auto v =
                kvtest::random_floats(size_t(p.n_tokens) * row, kvtest::fresh_seed(), -3.f, 3.f);
            auto bk = gpu.upload(k), bv = gpu.upload(v);
            gpu.run({}, [&](kv::vk::CommandStream& cs) {
                poison_pools(cs, c);
                ak.kv_write(cs, whole(bk), whole(bv), whole(c.k_pool), whole(c.v_pool), whole(c.bt),
                            p);
            });
            for (int which = 0; which < 2; ++which) {
                const auto pool = decode_pool(gpu, c, which ? c.v_pool : c.k_pool);
                const auto& src = which ? v : k;
                std::vector<bool> written(pool.size(), false);
                size_t mismatches = 0, off_by_one_ulp = 0;
                for (uint32_t t = 0; t < p.n_tokens; ++t)
                    for (uint32_t h = 0; h < p.n_head_kv; ++h)
                        for (uint32_t d = 0; d < p.head_dim; ++d) {
                            const uint64_t e = c.elem(p.pos0 + t, h) + d;
                            written[e] = true;
                            const float x = src[(size_t(t) * p.n_head_kv + h) * p.head_dim + d];
                            float want = x;
                            if (type == GgmlType::F16)
                                want = kv::model::fp16_to_fp32(kv::model::fp32_to_fp16(x));
                            if (pool[e] != want) {
                                ++mismatches;
                                // A device may convert to half toward zero instead of to nearest.
                                if (type == GgmlType::F16 &&
                                    std::fabs(pool[e] - want) <= std::fabs(want) * (1.0 / 1024))
                                    ++off_by_one_ulp;
                            }
                        }
                CHECK(mismatches == off_by_one_ulp);
                if (mismatches) MESSAGE(mismatches << " values rounded differently (1 ulp)");
                size_t clobbered = 0;
                for (size_t e = 0; e < pool.size(); ++e)
                    if (!written[e] && !std::isnan(pool[e])) ++clobbered;
                CHECK(clobbered == 0);
            }
        }
    }
}

TEST_CASE("attention: decode over growing contexts, GQA 1/2/4/8 and MQA, F32 and F16") {
    kvtest::Gpu gpu;
    Configs cfg(gpu);
    const auto t0 = std::chrono::steady_clock::now();
    double worst = 0;
    const struct {
        uint32_t n_head, n_head_kv, head_dim;
    } heads[] = {{4, 4, 16}, {8, 4, 32}, {8, 2, 64}, {8, 1, 32}, {16, 2, 128}};
    uint32_t i = 0;
    for (uint32_t pos0 : {0u, 1u, 17u, 300u, 2100u}) {
        // One KV type per head shape (every pipeline is compiled once: lavapipe's compiler
        // dominates this test's time); pages alternate.
        for (size_t hi = 0; hi < std::size(heads); ++hi) {
            const auto h = heads[hi];
            const GgmlType type = hi % 2 || hi == 4 ? GgmlType::F16 : GgmlType::F32;
            const uint32_t page = i % 2 ? 32 : 16;
            ++i;
            worst = std::max(
                worst, check_attention(gpu, cfg.all,
                                       {1, pos0, h.n_head, h.n_head_kv, h.head_dim, page, type, 0},
                                       pos0 >= 4));
        }
    }
    MESSAGE("decode worst relative L2 error "
            << worst << " ("
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s)");
}

TEST_CASE("attention: chunked prefill (1..64 tokens at pos0 > 0), F32 and F16") {
    kvtest::Gpu gpu;
    Configs cfg(gpu);
    double worst = 0;
    const AttnCase cases[] = {
        {1, 5, 4, 2, 32, 16, GgmlType::F32, 0},    {2, 31, 4, 1, 16, 16, GgmlType::F16, 0},
        {7, 40, 8, 2, 64, 32, GgmlType::F16, 0},   {16, 16, 4, 4, 32, 16, GgmlType::F32, 0},
        {33, 3, 8, 1, 16, 32, GgmlType::F32, 0},   {64, 100, 8, 2, 32, 16, GgmlType::F16, 0},
        {64, 0, 2, 2, 128, 32, GgmlType::F32, 0},  {48, 700, 16, 2, 64, 16, GgmlType::F16, 0},
        {64, 30, 16, 2, 32, 16, GgmlType::F32, 0},  // 512 rows per KV head: 64-row tiles
        {3, 250, 8, 2, 80, 16, GgmlType::F16, 0},   // head_dim 80: 10 units of 8 per row
        {9, 140, 4, 4, 40, 32, GgmlType::F32, 0},   // head_dim 40: 10 units of 4 per row
        {2, 77, 4, 2, 6, 16, GgmlType::F16, 0},     // head_dim 6: decode kernel only
    };
    // Every configuration on the first half; the rest skip the scalar shared-memory one (its
    // pipelines cost lavapipe's compiler more than they add).
    for (size_t i = 0; i < std::size(cases); ++i)
        worst =
            std::max(worst, check_attention(gpu, i < 6 ? cfg.all : cfg.no_plain, cases[i], true));
    CHECK(cfg.all[0]->plan(params_of(cases[8]), 4 << 20).rows == 64);
    MESSAGE("prefill worst relative L2 error " << worst);
}

TEST_CASE("attention: sliding window, decode and prefill") {
    kvtest::Gpu gpu;
    Configs cfg(gpu);
    double worst = 0;
    const AttnCase cases[] = {
        {1, 500, 8, 2, 32, 16, GgmlType::F32, 64},   {1, 10, 4, 4, 16, 32, GgmlType::F16, 64},
        {1, 1000, 4, 1, 64, 32, GgmlType::F16, 1},   {20, 90, 8, 2, 32, 16, GgmlType::F32, 33},
        {64, 200, 4, 2, 16, 32, GgmlType::F16, 100},
    };
    for (size_t i = 0; i < std::size(cases); ++i)
        worst =
            std::max(worst, check_attention(gpu, i < 3 ? cfg.all : cfg.no_plain, cases[i], true));
    MESSAGE("window worst relative L2 error " << worst);
}

TEST_CASE("attention: logit soft-capping (gemma2), decode, split and tiled kernels, with a window") {
    kvtest::Gpu gpu;
    Configs cfg(gpu);
    const AttnCase cases[] = {
        {1, 300, 8, 2, 32, 16, GgmlType::F32, 0, 0.3f},
        {20, 90, 8, 2, 32, 16, GgmlType::F16, 33, 0.3f},
        {64, 100, 4, 2, 16, 32, GgmlType::F32, 0, 0.2f},
    };
    double worst = 0;
    for (const AttnCase& c : cases) worst = std::max(worst, check_attention(gpu, cfg.all, c));
    MESSAGE("soft-capping worst relative L2 error " << worst);
}

TEST_CASE("attention: head_dim 256 and 16 KiB of shared memory (phone-sized tiles)") {
    kvtest::Gpu gpu;
    Configs cfg(gpu);
    std::vector<std::unique_ptr<AttentionKernels>> small;
    for (uint32_t tile_min_rows : {0u, 1u}) {
        AttentionOptions o;
        o.allocator = &gpu.allocator();
        o.max_shared_bytes = 16384;
        o.tile_min_rows = tile_min_rows;
        o.force_splits = 2;
        small.push_back(std::make_unique<AttentionKernels>(gpu.device(), gpu.pipelines(), o));
        cfg.all.push_back(small.back().get());
    }
    const AttnCase cases[] = {
        {1, 200, 8, 1, 256, 16, GgmlType::F16, 0},
        {24, 40, 4, 2, 256, 32, GgmlType::F32, 0},
        {40, 9, 8, 8, 128, 16, GgmlType::F16, 0},
    };
    double worst = 0;
    for (const AttnCase& c : cases) {
        for (size_t i = cfg.all.size() - 2; i < cfg.all.size(); ++i) {
            const auto pl = cfg.all[i]->plan(params_of(c), 4 << 20);
            const uint64_t shared =
                pl.tiled
                    ? (uint64_t(pl.rows) * c.head_dim + uint64_t(pl.tile_keys) * (c.head_dim + 4) +
                       uint64_t(pl.rows) * pl.tile_keys + 3ull * pl.rows) *
                          4
                    : (uint64_t(pl.rows) * c.head_dim + 2ull * pl.rows * pl.workgroup +
                       pl.workgroup) *
                          4;  // q rows, scores, reduction, one row base per key
            CHECK(shared <= 16384);
        }
        worst = std::max(worst, check_attention(gpu, cfg.all, c, true));
    }
    MESSAGE("head_dim 256 / small shared memory worst relative L2 error " << worst);
}

TEST_CASE("attention: caller scratch, tiny scratch and plans") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());  // no allocator: no internal scratch
    AttnCase ac{1, 3000, 8, 2, 64, 16, GgmlType::F16, 0};
    const AttentionParams p = params_of(ac);
    const uint64_t want_bytes = ak.scratch_bytes(p);
    CHECK(want_bytes > 0);
    CHECK(ak.plan(p, 0).splits == 1);
    CHECK(ak.plan(p, want_bytes).splits > 1);
    std::vector<float> k, v;
    Cache cache = make_cache(gpu, ak, p, ac.pos0 + 1, &k, &v);
    auto q = kvtest::random_floats(size_t(p.n_head) * p.head_dim, kvtest::fresh_seed(), -4.f, 4.f);
    auto bq = gpu.upload(q);
    const auto want = cpu_attention(q, k, v, p);
    // Enough scratch, scratch for two splits only, and none.
    for (uint64_t bytes :
         {want_bytes, uint64_t(p.n_head) * (p.head_dim + 2) * 4 * 2 + 12, uint64_t(0)}) {
        INFO("scratch bytes " << bytes);
        kv::vk::Buffer scratch;
        kv::vk::BufferRange sr{};
        if (bytes) {
            scratch = gpu.output(bytes / 4);
            sr = whole(scratch);
        }
        auto bo = gpu.output(want.size());
        gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
            ak.attention(cs, whole(bq), whole(cache.k_pool), whole(cache.v_pool), whole(cache.bt),
                         whole(bo), p, sr);
        });
        const auto got = gpu.download(bo, want.size());
        CHECK(kvtest::count_nan(got) == 0);
        CHECK(kvtest::rel_l2(got, want) < kAttnTol);
    }
}

// The split policy as a GPU sees it (cpu_min_keys_per_split = 0 on lavapipe): TinyLlama-1.1B
// decode (32 heads, 4 KV heads, head_dim 64: 8 row blocks of 4) spreads short contexts over
// many workgroups; then many splits (more than attn_reduce's chunk of 256, and blocks of
// its elements) against the oracle.
TEST_CASE("attention: split policy of the defaults, and many splits") {
    kvtest::Gpu gpu;
    AttentionOptions o;
    o.allocator = &gpu.allocator();
    o.cpu_min_keys_per_split = 0;
    AttentionKernels ak(gpu.device(), gpu.pipelines(), o);
    const uint32_t blocks = 8;
    struct Want {
        uint32_t ctx, splits, keys;
    } wants[] = {{512, 8, 64}, {4096, 64, 64}, {16384, 128, 128}, {131072, 128, 1024}};
    for (const Want& w : wants) {
        const auto pl =
            ak.plan(params_of({1, w.ctx - 1, 32, 4, 64, 16, GgmlType::F16, 0}), o.scratch_bytes);
        INFO("ctx " << w.ctx << " splits " << pl.splits << " keys per split " << pl.keys_per_split);
        CHECK(!pl.tiled);
        CHECK(pl.rows * blocks == 32);
        CHECK(pl.splits == w.splits);
        CHECK(pl.keys_per_split == w.keys);
    }
    // With the defaults, a CPU device keeps 256 keys per split (2 splits at 512 keys).
    if (gpu.device().properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
        AttentionOptions oc;
        oc.allocator = &gpu.allocator();
        AttentionKernels akc(gpu.device(), gpu.pipelines(), oc);
        const auto pl =
            akc.plan(params_of({1, 511, 32, 4, 64, 16, GgmlType::F16, 0}), o.scratch_bytes);
        CHECK(pl.splits == 2);
    }

    // 400 forced splits (342 and 376 once keys per split are whole): more than one chunk of
    // attn_reduce, and (head_dim 128) element blocks of 8.
    AttentionOptions o400 = o;
    o400.force_splits = 400;
    AttentionKernels ak400(gpu.device(), gpu.pipelines(), o400);
    const AttnCase wide{2, 1500, 8, 2, 128, 16, GgmlType::F32, 0};
    double worst = 0;
    worst = std::max(worst, check_attention(gpu, {&ak, &ak400},
                                            {1, 2047, 32, 4, 64, 16, GgmlType::F16, 0}, true));
    worst = std::max(worst, check_attention(gpu, {&ak, &ak400}, wide, true));
    CHECK(ak400.plan(params_of(wide), o.scratch_bytes).splits > 256);
    MESSAGE("many splits worst relative L2 error " << worst);
}

TEST_CASE("attention rejects bad shapes") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    auto b = gpu.output(1 << 12);
    AttentionParams p;
    p.n_head = 6;
    p.n_head_kv = 4;  // not a divisor
    p.head_dim = 16;
    p.page_size = 16;
    kv::vk::CommandStream cs(gpu.device());
    cs.begin();
    CHECK_THROWS(ak.attention(cs, whole(b), whole(b), whole(b), whole(b), whole(b), p));
    p.n_head_kv = 2;
    p.head_dim = 15;  // odd
    CHECK_THROWS(ak.attention(cs, whole(b), whole(b), whole(b), whole(b), whole(b), p));
    p.head_dim = 48;  // quantized pages hold head_dim 2, 4, 8, 16 or a multiple of 32
    p.kv_type = GgmlType::Q8_0;
    CHECK_THROWS(ak.kv_write(cs, whole(b), whole(b), whole(b), whole(b), whole(b), p));
    p.head_dim = 16;
    p.kv_type = GgmlType::F16;
    p.n_tokens = 1000;  // q too small
    CHECK_THROWS(ak.attention(cs, whole(b), whole(b), whole(b), whole(b), whole(b), p));
    cs.submit_and_wait();
}

TEST_CASE("argmax: lowest index among ties, NaNs ignored, huge rows") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    auto expect = [](const std::vector<float>& x) {
        uint32_t best = 0;
        bool any = false;
        for (uint32_t i = 0; i < x.size(); ++i) {
            if (std::isnan(x[i])) continue;
            if (!any || x[i] > x[best]) best = i;
            any = true;
        }
        return best;
    };
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<std::vector<float>> rows;
    for (uint32_t n : {1u, 7u, 256u, 1000u, 151936u})
        rows.push_back(kvtest::random_floats(n, kvtest::fresh_seed(), -10.f, 10.f));
    {
        auto r = kvtest::random_floats(5000, kvtest::fresh_seed());
        r[4000] = 7.f;
        r[1234] = 7.f;
        r[4999] = 7.f;
        rows.push_back(r);  // ties -> 1234
    }
    {
        auto r = kvtest::random_floats(3000, kvtest::fresh_seed());
        r[0] = nan;
        r[2999] = nan;
        r[100] = 5.f;
        r[200] = nan;
        rows.push_back(r);  // -> 100
    }
    rows.push_back(std::vector<float>(999, -inf));   // -> 0
    rows.push_back(std::vector<float>(300, nan));    // -> 0
    rows.push_back(std::vector<float>(4096, 2.5f));  // -> 0
    {
        std::vector<float> r(70000, -inf);
        r[69999] = -1e30f;
        rows.push_back(r);  // -> 69999
    }
    for (const auto& r : rows) {
        INFO("n " << r.size());
        const uint32_t want = expect(r);
        if (!std::isnan(r[0])) CHECK(uint32_t(kv::reference::argmax(r.data(), r.size())) == want);
        auto bx = gpu.upload(r);
        auto bo = gpu.output(1);
        gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
            ak.argmax(cs, whole(bx), whole(bo), static_cast<uint32_t>(r.size()));
        });
        uint32_t got = 0;
        gpu.uploader().download(bo, 0, &got, 4);
        CHECK(got == want);
    }
}

// Throughput of attention over the paged cache: decode (bandwidth-bound: figure = K/V bytes
// read per second) and prefill (compute-bound: figure = 4 *
// visible (q, k) pairs * head_dim FLOP/s). On a CPU device one small shape runs (CI); on a GPU,
// Llama-3-8B-like shapes (32 heads, 8 KV heads, head_dim 128) and TinyLlama-1.1B decode (32
// heads, 4 KV heads, head_dim 64), F16 pages of 16. Checks the result against the CPU.
// KV_ATTN_BENCH=decode: single-token shapes, default kernels only. KV_ATTN_BENCH=tiny: the
// TinyLlama shapes under the default kernels and variants of the split policy and decode
// workgroup (on a CPU device: one such shape, default kernels).
TEST_CASE("attention benchmark") {
    kvtest::Gpu gpu;
    const bool cpu_device = gpu.device().properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const char* bench_env = std::getenv("KV_ATTN_BENCH");
    const bool decode_only = bench_env && std::strcmp(bench_env, "decode") == 0;
    const bool tiny = bench_env && std::strcmp(bench_env, "tiny") == 0;
    AttentionOptions opt;
    opt.allocator = &gpu.allocator();
    opt.scratch_bytes = 64ull << 20;
    std::vector<std::pair<std::string, std::unique_ptr<AttentionKernels>>> kernels;
    auto add = [&](const char* name, const AttentionOptions& o) {
        kernels.emplace_back(name,
                             std::make_unique<AttentionKernels>(gpu.device(), gpu.pipelines(), o));
    };
    add("default", opt);
    if (!cpu_device && tiny) {
        AttentionOptions o = opt;  // the policy before: at most 64 splits of >= 256 keys
        o.max_splits = 64;
        o.min_keys_per_split = 256;
        o.target_workgroups = 512;
        add("old splits", o);
        o = opt;
        o.min_keys_per_split = 32;
        add("splits of >= 32 keys", o);
        o = opt;
        o.min_keys_per_split = 128;
        add("splits of >= 128 keys", o);
        o = opt;
        o.target_workgroups = 2048;
        add("2048 workgroups", o);
        o = opt;
        o.decode_workgroup = 64;
        add("workgroup 64", o);
        o.min_keys_per_split = 32;
        add("workgroup 64, splits of >= 32 keys", o);
    } else if (!cpu_device && !decode_only) {
        AttentionOptions o = opt;
        o.tile_min_rows = 0;
        add("decode", o);
        o.decode_rows = 8;
        add("decode 8 rows", o);
        o = opt;
        o.tile_min_rows = 1;
        add("tiled", o);
        o.tile_rows = 64;
        add("tiled 64 rows", o);
        o = opt;  // more splits
        o.target_workgroups = 2048;
        add("wide splits", o);
    }
    struct Shape {
        uint32_t n_tokens, ctx, n_head = 32, n_head_kv = 8, head_dim = 128;
    };
    const std::vector<Shape> cpu_shapes = {{1, 300}, {16, 64}};
    const std::vector<Shape> cpu_tiny = {{1, 512, 32, 4, 64}};
    const std::vector<Shape> tiny_shapes = {
        {1, 512, 32, 4, 64}, {1, 4096, 32, 4, 64}, {1, 16384, 32, 4, 64}};
    // n_head 64: Llama-3-70B's GQA 8.
    std::vector<Shape> gpu_shapes = {{1, 1024},   {1, 8192},      {1, 32768},
                                     {1, 131072}, {1, 32768, 64}, {4, 32768},
                                     {512, 512},  {2048, 2048},   {512, 8192}};
    gpu_shapes.insert(gpu_shapes.end(), tiny_shapes.begin(), tiny_shapes.end());
    const std::vector<Shape>& shapes =
        cpu_device ? (tiny ? cpu_tiny : cpu_shapes) : (tiny ? tiny_shapes : gpu_shapes);
    const int iters = cpu_device ? 2 : 20;
    for (const Shape& s : shapes) {
        if (decode_only && s.n_tokens != 1) continue;
        AttnCase ac{s.n_tokens, s.ctx - s.n_tokens, s.n_head, s.n_head_kv, s.head_dim, 16,
                    GgmlType::F16, 0};
        INFO(describe(ac));
        const AttentionParams p = params_of(ac);
        // The cache: random K/V written straight into identity-table pools as f16.
        Cache c;
        c.p = p;
        c.n_ctx = s.ctx;
        c.pool_pages = (s.ctx + p.page_size - 1) / p.page_size;
        c.table.resize(c.pool_pages);
        std::iota(c.table.begin(), c.table.end(), 0u);
        const uint64_t n_elem = c.page_elems() * c.pool_pages;
        std::vector<uint16_t> kh(n_elem), vh(n_elem);
        std::mt19937 rng(kvtest::fresh_seed());
        std::uniform_real_distribution<float> dist(-1.f, 1.f);
        for (uint64_t i = 0; i < n_elem; ++i) {
            kh[i] = kv::model::fp32_to_fp16(dist(rng));
            vh[i] = kv::model::fp32_to_fp16(dist(rng));
        }
        c.k_pool = gpu.upload_bytes(kh.data(), n_elem * 2);
        c.v_pool = gpu.upload_bytes(vh.data(), n_elem * 2);
        c.bt = gpu.upload_bytes(c.table.data(), c.table.size() * 4);
        auto q = kvtest::random_floats(size_t(p.n_tokens) * p.n_head * p.head_dim,
                                       kvtest::fresh_seed(), -4.f, 4.f);
        auto bq = gpu.upload(q);
        auto bo = gpu.output(q.size());

        for (const auto& [which, akp] : kernels) {
            const AttentionKernels& ak = *akp;
            const bool ts = gpu.device().timestamps();
            kv::vk::CommandStream cs(gpu.device(), ts ? 2 : 0);
            auto record = [&](int n) {
                cs.begin();
                cs.barrier();
                if (ts) cs.timestamp(0);
                for (int i = 0; i < n; ++i) {
                    ak.attention(cs, whole(bq), whole(c.k_pool), whole(c.v_pool), whole(c.bt),
                                 whole(bo), p);
                    cs.barrier();
                }
                if (ts) cs.timestamp(1);
            };
            record(1);
            cs.submit_and_wait();
            record(iters);
            const auto t0 = std::chrono::steady_clock::now();
            cs.submit_and_wait();
            const double wall =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const double sec = (ts ? cs.elapsed_ns(0, 1) * 1e-9 : wall) / iters;

            // Check a sample of heads against the CPU (all of them for small shapes).
            const auto got = gpu.download(bo, q.size());
            std::vector<float> kf(n_elem), vf(n_elem);
            for (uint64_t i = 0; i < n_elem; ++i) {
                kf[i] = kv::model::fp16_to_fp32(kh[i]);
                vf[i] = kv::model::fp16_to_fp32(vh[i]);
            }
            const auto kc = gather(c, kf), vc = gather(c, vf);
            AttentionParams one = p;  // the last token only (the longest row) keeps the CPU quick
            one.n_tokens = 1;
            one.pos0 = p.pos0 + p.n_tokens - 1;
            const size_t last = size_t(p.n_tokens - 1) * p.n_head * p.head_dim;
            std::vector<float> q_last(size_t(p.n_head) * p.head_dim), got_last(q_last.size());
            for (size_t i = 0; i < q_last.size(); ++i) {
                q_last[i] = q[last + i];
                got_last[i] = got[last + i];
            }
            const auto want = cpu_attention(q_last, kc, vc, one);
            const double err = kvtest::rel_l2(got_last, want);
            CHECK(kvtest::count_nan(got) == 0);
            CHECK_MESSAGE(err < kAttnTol, "relative L2 error " << err);

            const auto plan = ak.plan(p, opt.scratch_bytes);
            double pairs = 0;  // visible (query, key) pairs per head
            for (uint32_t t = 0; t < p.n_tokens; ++t) pairs += double(p.pos0) + t + 1;
            const double kv_bytes = double(s.ctx) * p.n_head_kv * p.head_dim * 2 * 2;
            const double flops = 4.0 * pairs * p.n_head * p.head_dim;
            MESSAGE(describe(ac) << " [" << which << "]: " << sec * 1e6 << " us, KV read "
                                 << kv_bytes / sec * 1e-9 << " GB/s, " << flops / sec * 1e-12
                                 << " TFLOP/s (plan: "
                                 << std::string(plan.tiled ? "tiled" : "decode") << " rows "
                                 << plan.rows << " wg " << plan.workgroup << " tile "
                                 << plan.tile_keys << " splits " << plan.splits << " of "
                                 << plan.keys_per_split << " keys), err " << err);
        }
    }
}
