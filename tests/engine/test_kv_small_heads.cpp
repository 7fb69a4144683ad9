// Q8_0/Q4_0 KV pages for head_dim < 32 (2, 4, 8, 16: one quantization block of the whole row,
// kv_quant_block(head_dim) = head_dim; stories260K has head_dim 8), in AttentionKernels
// (src/engine/attention.h), on fresh random data with validation on:
//   - kv_write: values and fp16 scales bit-exact against ggml's quantizers over the row (the
//     block padded with zeros to 32 for model::quantize_row: zeros change neither its maximum
//     nor its scale), and the dequantized rows equal to reference::round_kv (what
//     ReferenceSession rounds K/V with), page sizes as kv_page_bytes documents;
//   - attention (decode kernel, units of 2 below head_dim 8; tiled kernel from head_dim 4;
//     split-KV or not; GQA/MQA; a window with sinks over a ring block table) over K/V rounded
//     by reference::round_kv, against softmax(scale q K^T) V in double: relative L2 < 1e-5, as
//     for head_dim >= 32 (tests/engine/test_kv_quant.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention_oracle.h"
#include "common/helpers.h"
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

std::string type_name(GgmlType t) { return t == GgmlType::Q8_0 ? "Q8_0" : "Q4_0"; }

struct Cache {
    AttentionParams p;
    uint32_t pool_pages = 0;
    std::vector<uint32_t> table;
    kv::vk::Buffer k_pool, v_pool, bt;
    uint64_t page_bytes() const {
        return kv_page_bytes(p.kv_type, p.n_head_kv, p.page_size, p.head_dim);
    }
};

// Pools of slots + 3 pages (the extra ones stay poisoned) and a block table naming scrambled
// pool pages.
Cache make_pools(kvtest::Gpu& gpu, const AttentionParams& p, uint32_t slots) {
    Cache c;
    c.p = p;
    c.pool_pages = slots + 3;
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

// kv_write of positions [0, n_ctx) in chunks of 1, 7, 45, ... tokens over pools of 0xFF bytes.
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
            cs.barrier();
            p0 += n;
        }
    });
}

using kvtest::cpu_attention;
using kvtest::visible;

// Kernel configurations: decode kernel with shared-memory reductions and no split; decode
// kernel with a forced split (subgroup reductions where available); tiled kernel with a forced
// split; tiled with 16 KiB of shared memory and no split.
struct Configs {
    std::vector<std::unique_ptr<AttentionKernels>> owned;
    std::vector<const AttentionKernels*> all;
    explicit Configs(kvtest::Gpu& gpu) {
        auto add = [&](AttentionOptions o) {
            owned.push_back(std::make_unique<AttentionKernels>(gpu.device(), gpu.pipelines(), o));
            all.push_back(owned.back().get());
        };
        AttentionOptions def;
        def.allocator = &gpu.allocator();
        def.scratch_bytes = 4 << 20;
        AttentionOptions plain;
        plain.subgroup_ops = false;
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
        add(tiled1);
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
        p.sink_pages = (ac.sinks + ps - 1) / ps;
        p.ring_pages = (ac.window + ac.n_tokens - 1 + ps - 1) / ps + 2;
        slots = std::min(n_pages, p.sink_pages + p.ring_pages);
    }
    const uint32_t D = ac.head_dim, row = ac.n_head_kv * D;
    auto k = kvtest::random_floats(size_t(n_ctx) * row, kvtest::fresh_seed());
    auto v = kvtest::random_floats(size_t(n_ctx) * row, kvtest::fresh_seed());
    // Keys no query sees: values whose fp16 scale overflows to inf (reading one shows).
    std::vector<float> ks(k.size()), vs(v.size());  // stored values (oracle)
    for (uint32_t j = 0; j < n_ctx; ++j) {
        bool seen = false;
        for (uint32_t t = 0; t < ac.n_tokens && !seen; ++t) seen = visible(p, j, ac.pos0 + t);
        if (!seen)
            for (uint32_t e = 0; e < row; ++e) k[size_t(j) * row + e] = v[size_t(j) * row + e] = 1e30f;
    }
    ks = k;
    vs = v;
    const uint32_t qb = kv_quant_block(D);
    kv::reference::round_kv(ac.type, ks.data(), ks.size(), qb);
    kv::reference::round_kv(ac.type, vs.data(), vs.size(), qb);
    Cache c = make_pools(gpu, p, slots);
    write_all(gpu, *cf.all[0], c, k, v, n_ctx);
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
    Configs cf(gpu);
    double worst[2] = {0, 0};
    const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_0};
    for (int ti = 0; ti < 2; ++ti) {
        const GgmlType t = types[ti];
        const Case cases[] = {
            {t, 1, 0, 8, 8, 8, 16},      // first token, stories260K's heads
            {t, 1, 300, 8, 8, 8, 16},    // decode, stories260K's heads
            {t, 1, 517, 8, 2, 8, 32},    // decode, GQA 4
            {t, 13, 37, 8, 2, 8, 16},    // prefill chunk, GQA 4
            {t, 40, 250, 6, 3, 16, 32},  // longer chunk, head_dim 16, GQA 2
            {t, 2, 140, 4, 1, 16, 16},   // two tokens, MQA
        };
        for (const Case& c : cases) worst[ti] = std::max(worst[ti], check_case(gpu, cf, c));
    }
    for (int ti = 0; ti < 2; ++ti)
        MESSAGE(type_name(types[ti]) << " head_dim 8/16: worst relative L2 error vs float64 "
                                     << worst[ti]);
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
