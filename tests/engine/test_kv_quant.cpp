// Quantized KV pages (Q8_0, Q4_0) and windowed caches (sliding window + attention sinks over a
// ring-mapped block table) in AttentionKernels (src/engine/attention.h), against a CPU oracle
// on fresh random data with NaN-poisoned outputs and validation on:
//   - kv_write of Q8_0/Q4_0 pages: values and fp16 scales bit-exact against model::quantize_row
//     (decoded from the page layout of kv_page_bytes);
//   - attention (decode kernel, tiled kernel, split-KV or not) over K/V rounded through the page
//     format, against softmax(scale q K^T) V in double: relative L2 < 1e-5 for every type;
//   - window + sinks masks with ring block tables, where every key no query may see holds NaN
//     (F32/F16) or values whose fp16 scale overflows to inf (Q8_0/Q4_0): reading one shows.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention_oracle.h"
#include "common/helpers.h"
#include "common/kv_pages.h"
#include "engine/attention.h"
#include "engine/gpu_fixture.h"
#include "model/ggml_types.h"
#include "reference/reference.h"

using kv::engine::AttentionKernels;
using kv::engine::AttentionOptions;
using kv::engine::AttentionParams;
using kv::engine::kv_page_bytes;
using kv::engine::kv_quant_block;
using kv::model::GgmlType;
using kv::vk::whole;

namespace {

constexpr double kTol = 1e-5;  // fp32 arithmetic against double, on identical stored K/V

std::string type_name(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return "F32";
        case GgmlType::F16: return "F16";
        case GgmlType::Q8_0: return "Q8_0";
        case GgmlType::Q4_0: return "Q4_0";
        default: return "?";
    }
}

bool quantized(GgmlType t) { return t == GgmlType::Q8_0 || t == GgmlType::Q4_0; }

// A row of D values as the page format stores it, back in f32 (the CPU side of the oracle):
// reference::round_kv, in blocks of kv_quant_block(D) (32, or the whole row below 32), which is
// bit-identical to model::quantize_row + dequantize_row for blocks of 32
// (tests/reference/test_kv_rounding.cpp).
std::vector<float> round_trip(GgmlType t, const float* x, uint32_t D) {
    std::vector<float> out(x, x + D);
    if (t != GgmlType::F32) kv::reference::round_kv(t, out.data(), D, kv_quant_block(D));
    return out;
}

// The pools of one layer, a block table of `slots` entries naming scrambled pool pages, and
// the ring parameters (in p).
struct Cache {
    AttentionParams p;
    uint32_t pool_pages = 0;
    std::vector<uint32_t> table;
    kv::vk::Buffer k_pool, v_pool, bt;
    uint64_t page_bytes() const {
        return kv_page_bytes(p.kv_type, p.n_head_kv, p.page_size, p.head_dim);
    }
};

Cache make_pools(kvtest::Gpu& gpu, const AttentionParams& p, uint32_t slots) {
    Cache c;
    c.p = p;
    c.pool_pages = slots + 3;  // pages no slot names stay poisoned
    std::vector<uint32_t> ids(c.pool_pages);
    std::iota(ids.begin(), ids.end(), 0u);
    std::mt19937 rng(kvtest::fresh_seed());
    std::shuffle(ids.begin(), ids.end(), rng);
    ids.resize(slots);
    c.table = ids;
    const uint64_t bytes = c.page_bytes() * c.pool_pages;
    c.k_pool = kv::vk::Buffer(&gpu.allocator(), bytes, kv::vk::MemoryUse::Device);
    c.v_pool = kv::vk::Buffer(&gpu.allocator(), bytes, kv::vk::MemoryUse::Device);
    c.bt = gpu.upload_bytes(c.table.data(), c.table.size() * 4);
    return c;
}

// Element e of row (KV head h, slot) of pool page `page`, decoded from the pool's bytes.
float pool_value(const Cache& c, const std::vector<uint8_t>& pool, uint32_t page, uint32_t h,
                 uint32_t slot, uint32_t e) {
    return kvtest::kv_page_value(c.p.kv_type, c.p.n_head_kv, c.p.page_size, c.p.head_dim,
                                 pool.data() + c.page_bytes() * page, h, slot, e);
}

// Writes k/v ([n_ctx][n_head_kv][D] f32) of positions [0, n_ctx) through kv_write in chunks of
// odd sizes (1, 7, 45, ...), after filling both pools with 0xFF bytes (NaN / garbage).
void write_all(kvtest::Gpu& gpu, const AttentionKernels& ak, const Cache& c,
               const std::vector<float>& k, const std::vector<float>& v, uint32_t n_ctx) {
    const uint32_t row = c.p.n_head_kv * c.p.head_dim;
    auto bk = gpu.upload(k), bv = gpu.upload(v);
    gpu.run({}, [&](kv::vk::CommandStream& cs) {
        cs.fill(whole(c.k_pool), 0xFFFFFFFFu);
        cs.fill(whole(c.v_pool), 0xFFFFFFFFu);
        cs.barrier();
        // Chunks start at 16-byte offsets of k/v (minStorageBufferOffsetAlignment): with rows
        // of 2 or 10 floats, chunks of an even number of tokens.
        const uint32_t m = row % 4 == 0 ? 1 : (row % 2 == 0 ? 2 : 4);
        for (uint32_t p0 = 0, i = 0; p0 < n_ctx; ++i) {
            const uint32_t want = i % 3 == 0 ? 1 : (i % 3 == 1 ? 7 : 45);
            const uint32_t n = std::min((want + m - 1) / m * m, n_ctx - p0);
            AttentionParams wp = c.p;
            wp.pos0 = p0;
            wp.n_tokens = n;
            const uint64_t off = uint64_t(p0) * row * 4, bytes = uint64_t(n) * row * 4;
            ak.kv_write(cs, {bk.handle(), off, bytes}, {bv.handle(), off, bytes}, whole(c.k_pool),
                        whole(c.v_pool), whole(c.bt), wp);
            // A chunk may share a page (and, with a ring, a slot) with the previous one.
            cs.barrier();
            p0 += n;
        }
    });
}

uint32_t slot_of(const AttentionParams& p, uint32_t lp) {
    if (p.ring_pages == 0 || lp < p.sink_pages) return lp;
    return p.sink_pages + (lp - p.sink_pages) % p.ring_pages;
}

using kvtest::cpu_attention;
using kvtest::visible;

// Kernel configurations: default policy, plain (decode kernel, shared-memory reductions,
// 8 rows, no split), forced split on the decode kernel, tiled with and without split (one with
// 16 KiB of shared memory). `few`: plain, forced split and tiled with split only (each
// pipeline compiles in a fraction of a second on lavapipe: fewer keep the suite short).
struct Configs {
    std::vector<std::unique_ptr<AttentionKernels>> owned;
    std::vector<const AttentionKernels*> all;
    explicit Configs(kvtest::Gpu& gpu, bool few = false) {
        auto add = [&](AttentionOptions o) {
            owned.push_back(std::make_unique<AttentionKernels>(gpu.device(), gpu.pipelines(), o));
            all.push_back(owned.back().get());
        };
        AttentionOptions def;
        def.allocator = &gpu.allocator();
        def.scratch_bytes = 4 << 20;
        if (!few) add(def);
        AttentionOptions plain;
        plain.subgroup_ops = false;
        plain.vector_loads = false;
        plain.decode_rows = 8;
        plain.tile_min_rows = 0;
        plain.max_splits = 1;
        add(plain);
        AttentionOptions split = def;
        split.force_splits = 5;
        split.tile_min_rows = 0;
        add(split);
        AttentionOptions tiled = def;
        tiled.tile_min_rows = 1;
        tiled.force_splits = 3;
        add(tiled);
        AttentionOptions tiled1 = tiled;
        tiled1.force_splits = 0;
        tiled1.max_splits = 1;
        tiled1.max_shared_bytes = 16384;
        if (!few) add(tiled1);
    }
};

struct Case {
    GgmlType type;
    uint32_t n_tokens, pos0, n_head, n_head_kv, head_dim, page_size;
    uint32_t window = 0, sinks = 0;
    bool ring = false;
};

std::string describe(const Case& c) {
    char buf[240];
    std::snprintf(buf, sizeof buf,
                  "%s n_tokens %u pos0 %u heads %u/%u head_dim %u page %u window %u sinks %u ring %d",
                  type_name(c.type).c_str(), c.n_tokens, c.pos0, c.n_head, c.n_head_kv, c.head_dim,
                  c.page_size, c.window, c.sinks, int(c.ring));
    return buf;
}

// Runs one case under every configuration; returns the worst relative L2 error.
double check_case(kvtest::Gpu& gpu, const Configs& cf, const Case& ac) {
    INFO(describe(ac));
    AttentionParams p;
    p.n_tokens = ac.n_tokens;
    p.pos0 = ac.pos0;
    p.n_head = ac.n_head;
    p.n_head_kv = ac.n_head_kv;
    p.head_dim = ac.head_dim;
    p.page_size = ac.page_size;
    p.kv_type = ac.type;
    p.scale = 1.0f / std::sqrt(float(ac.head_dim));
    p.window = ac.window;
    p.sinks = ac.sinks;
    const uint32_t ps = ac.page_size, n_ctx = ac.pos0 + ac.n_tokens;
    const uint32_t n_pages = (n_ctx + ps - 1) / ps;
    uint32_t slots = n_pages;
    if (ac.ring) {
        // Sinks keep their pages; the ring holds the window of the first query and this call's
        // tokens, plus one page, so old masked pages are still there.
        p.sink_pages = (ac.sinks + ps - 1) / ps;
        p.ring_pages = (ac.window + ac.n_tokens - 1 + ps - 1) / ps + 2;
        slots = std::min(n_pages, p.sink_pages + p.ring_pages);
    }
    const uint32_t D = ac.head_dim, row = ac.n_head_kv * D;
    auto k = kvtest::random_floats(size_t(n_ctx) * row, kvtest::fresh_seed());
    auto v = kvtest::random_floats(size_t(n_ctx) * row, kvtest::fresh_seed());
    // Keys no query of the call sees: NaN, or (quantized) values whose fp16 scale is inf.
    const float poison = quantized(ac.type) ? 1e30f : std::numeric_limits<float>::quiet_NaN();
    std::vector<float> ks(k.size()), vs(v.size());  // stored values (oracle)
    for (uint32_t j = 0; j < n_ctx; ++j) {
        bool seen = false;
        for (uint32_t t = 0; t < ac.n_tokens && !seen; ++t) seen = visible(p, j, ac.pos0 + t);
        for (uint32_t e = 0; e < row; ++e) {
            if (!seen) k[size_t(j) * row + e] = v[size_t(j) * row + e] = poison;
        }
        for (uint32_t h = 0; h < ac.n_head_kv; ++h) {
            const size_t o = (size_t(j) * ac.n_head_kv + h) * D;
            auto kr = round_trip(ac.type, &k[o], D), vr = round_trip(ac.type, &v[o], D);
            std::copy(kr.begin(), kr.end(), ks.begin() + o);
            std::copy(vr.begin(), vr.end(), vs.begin() + o);
        }
    }
    // The oracle attends over what the pool holds (F16 went through packHalf2x16; quantized
    // rows through the GPU's division, which a driver may round differently from the CPU in a
    // rare tie: kv_write's bit-exactness is tested on its own above, this checks attention).
    Cache c = make_pools(gpu, p, slots);
    write_all(gpu, *cf.all[0], c, k, v, n_ctx);
    if (ac.type != GgmlType::F32) {
        const uint64_t bytes = c.page_bytes() * c.pool_pages;
        std::vector<uint8_t> hk(bytes), hv(bytes);
        gpu.uploader().download(c.k_pool, 0, hk.data(), bytes);
        gpu.uploader().download(c.v_pool, 0, hv.data(), bytes);
        uint64_t differ = 0;
        for (uint32_t j = 0; j < n_ctx; ++j) {
            if (ac.ring && j / ps >= p.sink_pages &&
                j / ps + p.ring_pages <= (n_ctx - 1) / ps)
                continue;  // overwritten in the ring (and never visible)
            const uint32_t page = c.table[slot_of(p, j / ps)];
            for (uint32_t h = 0; h < ac.n_head_kv; ++h) {
                const size_t dst = (size_t(j) * ac.n_head_kv + h) * D;
                for (uint32_t e = 0; e < D; ++e) {
                    const float ke = pool_value(c, hk, page, h, j % ps, e);
                    const float ve = pool_value(c, hv, page, h, j % ps, e);
                    differ += (ke != ks[dst + e]) + (ve != vs[dst + e]);
                    ks[dst + e] = ke;
                    vs[dst + e] = ve;
                }
            }
        }
        if (differ && quantized(ac.type))
            MESSAGE(describe(ac) << ": " << differ << " stored values differ from the CPU rounding");
    }
    auto q = kvtest::random_floats(size_t(ac.n_tokens) * ac.n_head * D, kvtest::fresh_seed(),
                                   -4.f, 4.f);
    auto bq = gpu.upload(q);
    const auto want = cpu_attention(q, ks, vs, p);
    double worst = 0;
    for (const AttentionKernels* ak : cf.all) {
        const auto plan = ak->plan(p, ak->options().allocator ? ak->options().scratch_bytes : 0);
        INFO("plan: tiled " << plan.tiled << " rows " << plan.rows << " tile " << plan.tile_keys
                            << " wg " << plan.workgroup << " splits " << plan.splits);
        auto bo = gpu.output(want.size());
        gpu.run({whole(bo)}, [&](kv::vk::CommandStream& cs) {
            ak->attention(cs, whole(bq), whole(c.k_pool), whole(c.v_pool), whole(c.bt), whole(bo),
                          p);
        });
        const auto got = gpu.download(bo, want.size());
        CHECK(kvtest::count_nan(got) == 0);
        const double err = kvtest::rel_l2(got, want);
        CHECK_MESSAGE(err < kTol, "relative L2 error " << err);
        worst = std::max(worst, err);
    }
    return worst;
}

}  // namespace

TEST_CASE("kv_write Q8_0 and Q4_0 pages hold model::quantize_row's values and scales, bit-exact") {
    kvtest::Gpu gpu;
    AttentionOptions o;
    AttentionKernels ak(gpu.device(), gpu.pipelines(), o);
    struct W {
        GgmlType type;
        uint32_t n_head_kv, head_dim, page_size, n_ctx;
    };
    // head_dim 96: 3 scales per row, so rows share scale words; 3 KV heads x page 16 make the
    // page size no multiple of 16 before padding (Q4_0: 48 * 54 bytes).
    const W cases[] = {{GgmlType::Q8_0, 2, 64, 16, 100}, {GgmlType::Q8_0, 3, 96, 32, 77},
                       {GgmlType::Q4_0, 2, 64, 32, 100}, {GgmlType::Q4_0, 3, 96, 16, 77}};
    for (const W& w : cases) {
        INFO(std::string(type_name(w.type)) << " kv heads " << w.n_head_kv << " head_dim " << w.head_dim
                               << " page " << w.page_size);
        AttentionParams p;
        p.n_head_kv = w.n_head_kv;
        p.n_head = w.n_head_kv;
        p.head_dim = w.head_dim;
        p.page_size = w.page_size;
        p.kv_type = w.type;
        const uint32_t D = w.head_dim, ps = w.page_size, nb = D / 32;
        Cache c = make_pools(gpu, p, (w.n_ctx + ps - 1) / ps);
        const uint64_t vb = w.type == GgmlType::Q8_0 ? D : D / 2;  // value bytes per row
        const uint64_t rp = uint64_t(w.n_head_kv) * ps;
        CHECK(c.page_bytes() == (rp * (vb + 2 * nb) + 15) / 16 * 16);
        const uint32_t row = w.n_head_kv * D;
        // Data with blocks of every magnitude, a zero block and exact ties for rounding.
        auto k = kvtest::random_floats(size_t(w.n_ctx) * row, kvtest::fresh_seed(), -3.f, 3.f);
        auto v = kvtest::random_floats(size_t(w.n_ctx) * row, kvtest::fresh_seed());
        for (size_t i = 0; i < 32; ++i) v[i] = 0.f;
        for (size_t i = 32; i < 64; ++i) v[i] = float(int(i) - 48) * 0.5f;
        for (size_t i = 64; i < k.size(); i += 997) k[i] *= 1000.f;
        write_all(gpu, ak, c, k, v, w.n_ctx);
        const uint64_t bytes = c.page_bytes() * c.pool_pages;
        std::vector<uint8_t> gk(bytes), gv(bytes);
        gpu.uploader().download(c.k_pool, 0, gk.data(), bytes);
        gpu.uploader().download(c.v_pool, 0, gv.data(), bytes);
        const kv::model::TypeTraits* tt = kv::model::type_traits(w.type);
        size_t value_diffs = 0, scale_diffs = 0, compared = 0;
        double worst = 0;
        for (int which = 0; which < 2; ++which) {
            const std::vector<float>& src = which ? v : k;
            const std::vector<uint8_t>& pool = which ? gv : gk;
            std::vector<uint8_t> blk(kv::model::row_bytes(w.type, D));
            std::vector<float> want(D), got(D);
            for (uint32_t j = 0; j < w.n_ctx; ++j)
                for (uint32_t h = 0; h < w.n_head_kv; ++h) {
                    const float* x = &src[(size_t(j) * w.n_head_kv + h) * D];
                    kv::model::quantize_row(w.type, x, blk.data(), D);
                    kv::model::dequantize_row(w.type, blk.data(), want.data(), D);
                    const uint64_t page = c.table[j / ps];
                    const uint64_t r = uint64_t(h) * ps + j % ps;
                    const uint8_t* vals = &pool[page * c.page_bytes() + r * vb];
                    const uint8_t* scales = &pool[page * c.page_bytes() + rp * vb + r * nb * 2];
                    for (uint32_t b = 0; b < nb; ++b) {
                        const uint8_t* gb = &blk[b * tt->type_size];
                        uint16_t want_d, got_d;
                        std::memcpy(&want_d, gb, 2);
                        std::memcpy(&got_d, scales + 2 * b, 2);
                        scale_diffs += want_d != got_d;
                        const float d = kv::model::fp16_to_fp32(got_d);
                        for (uint32_t e = 0; e < 32; ++e) {
                            const uint32_t i = 32 * b + e;
                            int want_q, got_q;
                            if (w.type == GgmlType::Q8_0) {
                                want_q = int8_t(gb[2 + e]);
                                got_q = int8_t(vals[i]);
                            } else {
                                want_q = e < 16 ? gb[2 + e] & 15 : gb[2 + e - 16] >> 4;
                                got_q = (vals[i / 2] >> (4 * (i % 2))) & 15;
                                got_q -= 8;
                                want_q -= 8;
                            }
                            value_diffs += want_q != got_q;
                            got[i] = float(got_q) * d;
                        }
                    }
                    worst = std::max(worst, kvtest::rel_l2(got, want));
                    ++compared;
                }
        }
        MESSAGE(std::string(type_name(w.type)) << " D " << D << ": " << compared << " rows, " << value_diffs
                                  << " value and " << scale_diffs
                                  << " scale differences, dequantized rel L2 " << worst);
        CHECK(value_diffs == 0);
        CHECK(scale_diffs == 0);
        CHECK(worst == 0.0);
    }
}

// Runs `shapes` (their type ignored) with Q8_0 and Q4_0 pages under every configuration and
// reports each type's worst error against float64.
void check_quantized(kvtest::Gpu& gpu, const std::vector<Case>& shapes, const char* what) {
    Configs cf(gpu);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        double worst = 0;
        for (Case c : shapes) {
            c.type = t;
            worst = std::max(worst, check_case(gpu, cf, c));
        }
        MESSAGE(type_name(t) << " " << std::string(what) << ": worst relative L2 error vs float64 " << worst);
    }
}

TEST_CASE("attention over Q8_0 and Q4_0 pages: decode and chunked prefill, GQA, pages 16 and 32") {
    kvtest::Gpu gpu;
    // (F32 and F16 pages: tests/engine/test_attention.cpp, and the window cases below.)
    const GgmlType t = GgmlType::Q8_0;  // check_quantized runs Q8_0 and Q4_0
    check_quantized(gpu,
                    {
                        {t, 1, 0, 8, 2, 64, 16},     // first token
                        {t, 1, 300, 8, 2, 64, 16},   // decode, GQA 4
                        {t, 1, 517, 4, 1, 64, 32},   // decode, MQA
                        {t, 2, 140, 6, 3, 96, 32},   // two tokens, head_dim 96 (3 scales per row), GQA 2
                        {t, 13, 37, 8, 2, 64, 16},   // prefill chunk
                        {t, 40, 250, 8, 2, 64, 32},  // longer chunk
                    },
                    "head_dim 64/96");
}

TEST_CASE("attention with window and sinks over ring block tables, decode and prefill") {
    kvtest::Gpu gpu;
    Configs cf(gpu, true);
    double worst = 0;
    const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16, GgmlType::F32};
    for (GgmlType t : types) {
        const Case cases[] = {
            // type, n_tokens, pos0, heads, kv heads, head_dim, page, window, sinks, ring
            {t, 1, 1500, 8, 2, 64, 16, 40, 4, true},    // sinks far behind the window
            {t, 9, 700, 8, 2, 64, 16, 33, 5, true},     // prefill chunk across the window
            {t, 3, 20, 8, 2, 64, 16, 8, 12, true},      // sinks reach into the window
            {t, 1, 1203, 4, 1, 64, 32, 64, 40, true},   // sinks over a page and a half, MQA
            {t, 1, 900, 8, 2, 64, 16, 50, 0, true},     // window only, ring
            {t, 24, 400, 8, 2, 64, 32, 20, 7, false},   // chunk longer than the window, no ring
            {t, 5, 2, 8, 2, 64, 16, 4, 3, false},       // early positions
        };
        // The masks and the ring are the same code for every page type: F32 and F16 run the
        // first three cases.
        const size_t n = quantized(t) ? std::size(cases) : 3;
        for (size_t i = 0; i < n; ++i) worst = std::max(worst, check_case(gpu, cf, cases[i]));
    }
    MESSAGE("window/sinks worst relative L2 error vs float64 " << worst);
}

TEST_CASE("kv_page_bytes and rejected quantized shapes") {
    CHECK(kv_page_bytes(GgmlType::F32, 2, 16, 64) == 2 * 16 * 64 * 4);
    CHECK(kv_page_bytes(GgmlType::F16, 2, 16, 64) == 2 * 16 * 64 * 2);
    CHECK(kv_page_bytes(GgmlType::Q8_0, 2, 16, 64) == 2 * 16 * (64 + 4));
    CHECK(kv_page_bytes(GgmlType::Q4_0, 1, 1, 32) == 32);  // 18 bytes, padded to 32
    CHECK_THROWS(kv_page_bytes(GgmlType::Q8_0, 2, 16, 48));
    CHECK_THROWS(kv_page_bytes(GgmlType::Q4_K, 2, 16, 64));
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    AttentionParams p;
    p.n_head = p.n_head_kv = 1;
    p.head_dim = 48;
    p.page_size = 16;
    p.kv_type = GgmlType::Q4_0;
    CHECK_THROWS(ak.plan(p, 0));
}

// KV_KVQ_BENCH=1: wall time of attention per page type (decode at 2048 keys, a 64-token chunk
// after 448), Llama-3-8B head shapes (32 heads, 8 KV heads, head_dim 128), pages of 16; for
// comparing kernels on the same device (lavapipe in CI measures the CPU, not a GPU).
TEST_CASE("attention per KV page type, timed (KV_KVQ_BENCH=1)") {
    const char* env = std::getenv("KV_KVQ_BENCH");
    if (!env || std::strcmp(env, "1") != 0) {
        MESSAGE("skipped: set KV_KVQ_BENCH=1 to time attention per KV page type");
        return;
    }
    kvtest::Gpu gpu;
    AttentionOptions opt;
    opt.allocator = &gpu.allocator();
    opt.scratch_bytes = 16 << 20;
    AttentionKernels ak(gpu.device(), gpu.pipelines(), opt);
    const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0};
    struct Shape {
        uint32_t n_tokens, ctx, window, sinks;
    };
    const Shape shapes[] = {{1, 2048, 0, 0}, {64, 512, 0, 0}, {1, 2048, 256, 0}, {1, 2048, 256, 4}};
    for (const Shape& s : shapes)
        for (GgmlType t : types) {
            AttentionParams p;
            p.n_tokens = s.n_tokens;
            p.pos0 = s.ctx - s.n_tokens;
            p.n_head = 32;
            p.n_head_kv = 8;
            p.head_dim = 128;
            p.page_size = 16;
            p.kv_type = t;
            p.scale = 1.0f / std::sqrt(128.f);
            p.window = s.window;
            p.sinks = s.sinks;
            try {
                (void)ak.plan(p, 0);
            } catch (const std::exception& e) {
                MESSAGE(std::string(type_name(t)) << ": " << std::string(e.what()));
                continue;
            }
            Cache c = make_pools(gpu, p, s.ctx / 16);
            const uint32_t row = 8 * 128;
            auto k = kvtest::random_floats(size_t(s.ctx) * row, kvtest::fresh_seed());
            auto v = kvtest::random_floats(size_t(s.ctx) * row, kvtest::fresh_seed());
            write_all(gpu, ak, c, k, v, s.ctx);
            auto q = kvtest::random_floats(size_t(p.n_tokens) * 32 * 128, kvtest::fresh_seed());
            auto bq = gpu.upload(q);
            auto bo = gpu.output(q.size());
            kv::vk::CommandStream cs(gpu.device());
            double best = 1e30;
            for (int rep = 0; rep < 5; ++rep) {
                cs.begin();
                for (int i = 0; i < 4; ++i) {
                    ak.attention(cs, whole(bq), whole(c.k_pool), whole(c.v_pool), whole(c.bt),
                                 whole(bo), p);
                    cs.barrier();
                }
                const auto t0 = std::chrono::steady_clock::now();
                cs.submit_and_wait();
                best = std::min(best, std::chrono::duration<double>(
                                          std::chrono::steady_clock::now() - t0)
                                          .count() /
                                          4);
            }
            char buf[160];
            std::snprintf(buf, sizeof buf, "%-5s n_tokens %2u ctx %4u window %3u sinks %u: %8.3f ms",
                          type_name(t).c_str(), s.n_tokens, s.ctx, s.window, s.sinks, best * 1e3);
            MESSAGE(buf);
        }
}

// ---- Heads below 32 values (2, 4, 8, 16: one quantization block of the whole row;
// stories260K has head_dim 8) ----

TEST_CASE("small heads: kv_page_bytes of Q8_0 and Q4_0 pages for head_dim 2, 4, 8, 16") {
    CHECK(kv_quant_block(8) == 8);
    CHECK(kv_quant_block(16) == 16);
    CHECK(kv_quant_block(64) == 32);
    // Rows: values in whole words, then one fp16 scale each; pages padded to 16 bytes.
    CHECK(kv_page_bytes(GgmlType::Q8_0, 8, 16, 8) == 8 * 16 * (8 + 2));
    CHECK(kv_page_bytes(GgmlType::Q4_0, 8, 16, 8) == 8 * 16 * (4 + 2));
    CHECK(kv_page_bytes(GgmlType::Q8_0, 1, 16, 16) == 16 * (16 + 2));
    CHECK(kv_page_bytes(GgmlType::Q4_0, 1, 16, 16) == 16 * (8 + 2));
    CHECK(kv_page_bytes(GgmlType::Q8_0, 1, 8, 4) == 48);   // 8 * (4 + 2)
    CHECK(kv_page_bytes(GgmlType::Q4_0, 1, 8, 4) == 48);   // 8 * (4 (2 + 2 padding) + 2)
    CHECK(kv_page_bytes(GgmlType::Q8_0, 1, 8, 2) == 48);   // 8 * (4 (2 + 2 padding) + 2)
    CHECK(kv_page_bytes(GgmlType::Q4_0, 1, 1, 2) == 16);   // 6 bytes, padded
    // Unchanged for head_dim >= 32; other sizes stay rejected.
    CHECK(kv_page_bytes(GgmlType::Q8_0, 2, 16, 64) == 2 * 16 * (64 + 4));
    CHECK(kv_page_bytes(GgmlType::Q4_0, 2, 16, 64) == 2 * 16 * (32 + 4));
    for (uint32_t d : {6u, 12u, 24u, 48u, 40u})
        for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0}) {
            INFO(type_name(t) << " head_dim " << d);
            CHECK_THROWS(kv_page_bytes(t, 2, 16, d));
        }
}

TEST_CASE("small heads: kv_write rounds like ggml over the row, bit-exact, head_dim 2 to 16") {
    kvtest::Gpu gpu;
    AttentionKernels ak(gpu.device(), gpu.pipelines());
    struct W {
        GgmlType type;
        uint32_t n_head_kv, head_dim, page_size, n_ctx;
    };
    // Odd KV head counts: rows of one page share scale words across KV heads.
    const W cases[] = {{GgmlType::Q8_0, 8, 8, 16, 70},  {GgmlType::Q4_0, 8, 8, 16, 70},
                       {GgmlType::Q8_0, 3, 16, 32, 77}, {GgmlType::Q4_0, 3, 16, 16, 77},
                       {GgmlType::Q8_0, 3, 4, 16, 41},  {GgmlType::Q4_0, 3, 4, 16, 41},
                       {GgmlType::Q8_0, 5, 2, 8, 33},   {GgmlType::Q4_0, 5, 2, 8, 33}};
    for (const W& w : cases) {
        INFO(type_name(w.type) << " kv heads " << w.n_head_kv << " head_dim " << w.head_dim
                               << " page " << w.page_size);
        AttentionParams p;
        p.n_head_kv = p.n_head = w.n_head_kv;
        p.head_dim = w.head_dim;
        p.page_size = w.page_size;
        p.kv_type = w.type;
        const uint32_t D = w.head_dim, ps = w.page_size;
        REQUIRE(kv_quant_block(D) == D);
        Cache c = make_pools(gpu, p, (w.n_ctx + ps - 1) / ps);
        const uint64_t vb = 4 * (w.type == GgmlType::Q8_0 ? (D + 3) / 4 : (D + 7) / 8);
        const uint64_t rp = uint64_t(w.n_head_kv) * ps;
        CHECK(c.page_bytes() == (rp * (vb + 2) + 15) / 16 * 16);
        const uint32_t row = w.n_head_kv * D;
        auto k = kvtest::random_floats(size_t(w.n_ctx) * row, kvtest::fresh_seed(), -3.f, 3.f);
        auto v = kvtest::random_floats(size_t(w.n_ctx) * row, kvtest::fresh_seed());
        for (size_t i = 0; i < D; ++i) v[i] = 0.f;                                  // zero row
        for (size_t i = D; i < 2 * D; ++i) v[i] = float(int(i - D) - int(D / 2)) * 0.5f;  // ties
        for (size_t i = 2 * D; i < k.size(); i += 97) k[i] *= 1000.f;
        write_all(gpu, ak, c, k, v, w.n_ctx);
        const uint64_t bytes = c.page_bytes() * c.pool_pages;
        std::vector<uint8_t> gk(bytes), gv(bytes);
        gpu.uploader().download(c.k_pool, 0, gk.data(), bytes);
        gpu.uploader().download(c.v_pool, 0, gv.data(), bytes);
        size_t value_diffs = 0, scale_diffs = 0, round_kv_diffs = 0, compared = 0;
        for (int which = 0; which < 2; ++which) {
            const std::vector<float>& src = which ? v : k;
            const std::vector<uint8_t>& pool = which ? gv : gk;
            std::vector<uint8_t> blk(kv::model::row_bytes(w.type, 32));
            std::vector<float> padded(32), ref(D);
            for (uint32_t j = 0; j < w.n_ctx; ++j)
                for (uint32_t h = 0; h < w.n_head_kv; ++h) {
                    const float* x = &src[(size_t(j) * w.n_head_kv + h) * D];
                    std::fill(padded.begin(), padded.end(), 0.f);
                    std::copy(x, x + D, padded.begin());
                    kv::model::quantize_row(w.type, padded.data(), blk.data(), 32);
                    std::copy(x, x + D, ref.begin());
                    kv::reference::round_kv(w.type, ref.data(), D, D);
                    const uint64_t page = c.table[j / ps];
                    const uint64_t r = uint64_t(h) * ps + j % ps;
                    const uint8_t* vals = &pool[page * c.page_bytes() + r * vb];
                    const uint8_t* scale = &pool[page * c.page_bytes() + rp * vb + r * 2];
                    uint16_t want_d, got_d;
                    std::memcpy(&want_d, blk.data(), 2);
                    std::memcpy(&got_d, scale, 2);
                    scale_diffs += want_d != got_d;
                    const float d = kv::model::fp16_to_fp32(got_d);
                    for (uint32_t e = 0; e < D; ++e) {
                        int want_q, got_q;
                        if (w.type == GgmlType::Q8_0) {
                            want_q = int8_t(blk[2 + e]);
                            got_q = int8_t(vals[e]);
                        } else {
                            want_q = (e < 16 ? blk[2 + e] & 15 : blk[2 + e - 16] >> 4) - 8;
                            got_q = ((vals[e / 2] >> (4 * (e % 2))) & 15) - 8;
                        }
                        value_diffs += want_q != got_q;
                        round_kv_diffs += float(got_q) * d != ref[e];
                    }
                    ++compared;
                }
        }
        MESSAGE(type_name(w.type) << " D " << D << ": " << compared << " rows, " << value_diffs
                                  << " value and " << scale_diffs << " scale differences, "
                                  << round_kv_diffs << " values differ from round_kv");
        CHECK(value_diffs == 0);
        CHECK(scale_diffs == 0);
        CHECK(round_kv_diffs == 0);
    }
}

TEST_CASE("small heads: attention over Q8_0 and Q4_0 pages, head_dim 8 and 16, decode and prefill, GQA") {
    kvtest::Gpu gpu;
    const GgmlType t = GgmlType::Q8_0;  // check_quantized runs Q8_0 and Q4_0
    check_quantized(gpu,
                    {
                        {t, 1, 0, 8, 8, 8, 16},      // first token, stories260K's heads
                        {t, 1, 300, 8, 8, 8, 16},    // decode, stories260K's heads
                        {t, 1, 517, 8, 2, 8, 32},    // decode, GQA 4
                        {t, 13, 37, 8, 2, 8, 16},    // prefill chunk, GQA 4
                        {t, 40, 250, 6, 3, 16, 32},  // longer chunk, head_dim 16, GQA 2
                        {t, 2, 140, 4, 1, 16, 16},   // two tokens, MQA
                    },
                    "head_dim 8/16");
}

TEST_CASE("small heads: head_dim 2 and 4, and a window with sinks over a ring block table") {
    kvtest::Gpu gpu;
    Configs cf(gpu);
    double worst = 0;
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        const Case cases[] = {
            {t, 1, 200, 4, 2, 4, 16},               // decode, head_dim 4
            {t, 9, 60, 4, 2, 4, 16},                // prefill chunk, head_dim 4 (tiled: D4 = 1)
            {t, 1, 150, 4, 2, 2, 16},               // decode, head_dim 2 (decode kernel only)
            {t, 5, 33, 2, 1, 2, 8},                 // chunk, head_dim 2
            {t, 1, 700, 8, 8, 8, 16, 40, 4, true},  // window + sinks, ring, stories260K heads
            {t, 9, 300, 8, 2, 16, 16, 33, 5, true},  // prefill chunk across the window
        };
        for (const Case& c : cases) worst = std::max(worst, check_case(gpu, cf, c));
    }
    MESSAGE("head_dim 2/4 and window cases: worst relative L2 error vs float64 " << worst);
}
