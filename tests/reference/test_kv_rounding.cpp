// reference::round_kv, the rounding of K/V rows that a quantized KV cache applies
// (ReferenceSession::store_kv): for blocks of 32 it is bit-identical to model::quantize_row +
// dequantize_row (ggml's reference quantizers); for the small blocks of head_dim < 32
// (kv_quant_block: the whole row of 2, 4, 8 or 16 values) the same formulas over fewer values,
// checked against quantize_row of the block padded with zeros to 32 (zeros change neither the
// maximum nor the scale of a block) and against hand-computed values.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "model/ggml_types.h"
#include "reference/reference.h"

using kv::model::GgmlType;
using kv::reference::kv_quant_block;
using kv::reference::round_kv;

namespace {

// quantize_row + dequantize_row of n values (n % 32 == 0).
std::vector<float> ggml_round(GgmlType t, const std::vector<float>& x) {
    std::vector<uint8_t> buf(kv::model::row_bytes(t, int64_t(x.size())));
    std::vector<float> out(x.size());
    kv::model::quantize_row(t, x.data(), buf.data(), int64_t(x.size()));
    kv::model::dequantize_row(t, buf.data(), out.data(), int64_t(x.size()));
    return out;
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// Bit-identical, or both NaN (a block whose fp16 scale overflows dequantizes 0 * inf).
bool same(float a, float b) { return bits(a) == bits(b) || (std::isnan(a) && std::isnan(b)); }

// Rows exercising the corner cases: random values of several magnitudes, an all-zero block,
// exact rounding ties (k + 0.5 steps of the scale), a negative largest magnitude, +-equal
// largest magnitudes (Q4_0 takes the first), tiny values (fp16 subnormal scales), a block
// whose scale overflows fp16.
std::vector<std::vector<float>> test_rows(size_t n, uint32_t seed) {
    std::vector<std::vector<float>> rows;
    for (float scale : {1.f, 1e-3f, 100.f, 1e-6f})
        for (int r = 0; r < 40; ++r) {
            auto v = kvtest::random_floats(n, seed + uint32_t(r) * 7919u + uint32_t(scale * 1e6f),
                                           -scale, scale);
            rows.push_back(v);
        }
    rows.emplace_back(n, 0.f);
    std::vector<float> ties(n), neg(n), pm(n), tiny(n), huge(n);
    for (size_t i = 0; i < n; ++i) {
        ties[i] = (float(int(i % 32) - 16) + 0.5f) * (127.f / 16.f) / 8.f;  // many .5 cases
        neg[i] = float(int(i % 7) - 3) * 0.25f;
        pm[i] = i % 2 ? 2.f : -2.f;
        tiny[i] = float(int(i % 5) - 2) * 1e-7f;
        huge[i] = float(int(i % 3) - 1) * 1e38f;
    }
    neg[n / 2] = -9.f;
    rows.push_back(ties);
    rows.push_back(neg);
    rows.push_back(pm);
    rows.push_back(tiny);
    rows.push_back(huge);
    // Exact ties for Q8_0: values q + 0.5 times d where d = amax / 127 is exact.
    std::vector<float> t8(n);
    for (size_t i = 0; i < n; ++i) t8[i] = (i % 32 == 0) ? 127.f : float(int(i % 64) - 32) + 0.5f;
    rows.push_back(t8);
    return rows;
}

}  // namespace

TEST_CASE("round_kv with blocks of 32 equals quantize_row + dequantize_row bit for bit") {
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16, GgmlType::BF16}) {
        INFO(std::string(kv::model::type_traits(t)->name));
        size_t compared = 0, diffs = 0;
        for (size_t n : {32u, 64u, 128u, 96u})
            for (const auto& row : test_rows(n, kvtest::fresh_seed())) {
                std::vector<float> got = row;
                round_kv(t, got.data(), got.size(), 32);
                const std::vector<float> want = ggml_round(t, row);
                for (size_t i = 0; i < n; ++i) diffs += !same(got[i], want[i]);
                compared += n;
            }
        MESSAGE(std::string(kv::model::type_traits(t)->name) << ": " << compared << " values, " << diffs
                                                << " bit differences");
        CHECK(diffs == 0);
    }
    std::vector<float> x = {1.f, 2.f};
    const std::vector<float> before = x;
    round_kv(GgmlType::F32, x.data(), x.size(), 32);  // F32: unchanged, any block
    CHECK(x == before);
}

TEST_CASE("round_kv with small blocks: ggml's formulas over 2, 4, 8 and 16 values") {
    CHECK(kv_quant_block(8) == 8);
    CHECK(kv_quant_block(16) == 16);
    CHECK(kv_quant_block(32) == 32);
    CHECK(kv_quant_block(128) == 32);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        for (uint32_t qb : {2u, 4u, 8u, 16u}) {
            INFO(std::string(kv::model::type_traits(t)->name) << " block " << qb);
            size_t diffs = 0, compared = 0;
            // n = 3 blocks per row: each block is rounded on its own.
            for (const auto& row : test_rows(3 * qb, kvtest::fresh_seed())) {
                std::vector<float> got = row;
                round_kv(t, got.data(), got.size(), qb);
                for (uint32_t b = 0; b < 3; ++b) {
                    std::vector<float> padded(32, 0.f);
                    std::copy(row.begin() + b * qb, row.begin() + (b + 1) * qb, padded.begin());
                    const std::vector<float> want = ggml_round(t, padded);
                    for (uint32_t i = 0; i < qb; ++i)
                        diffs += !same(got[b * qb + i], want[i]);
                    compared += qb;
                }
            }
            CHECK(diffs == 0);
            CHECK(compared > 0);
        }
    }
    // By hand, blocks of 8. Q8_0: amax 2 -> d = 2/127 (stored as fp16), 1/d = 63.5:
    // 0.5 -> round(31.75) = 32; -2 -> -127.
    std::vector<float> x = {0.5f, -2.f, 0.f, 1.f, 0.25f, -0.75f, 2.f, 0.125f};
    round_kv(GgmlType::Q8_0, x.data(), x.size(), 8);
    const float d8 = kv::model::fp16_to_fp32(kv::model::fp32_to_fp16(2.f / 127.f));
    CHECK(x[0] == 32 * d8);
    CHECK(x[1] == -127 * d8);
    CHECK(x[2] == 0.f);
    CHECK(x[6] == 127 * d8);
    // Q4_0: max -2 (the first of largest magnitude) -> d = 0.25, 1/d = 4; x * 4 + 8.5 truncated:
    // 0.5 -> 10 (x' = 0.5), -2 -> 0 (x' = -2), 0 -> 8 (x' = 0), 2 -> min(15, 16) = 15 (x' = 1.75).
    std::vector<float> y = {0.5f, -2.f, 0.f, 1.f, 0.25f, -0.75f, 2.f, 0.125f};
    round_kv(GgmlType::Q4_0, y.data(), y.size(), 8);
    CHECK(y[0] == 0.5f);
    CHECK(y[1] == -2.f);
    CHECK(y[2] == 0.f);
    CHECK(y[6] == 1.75f);
    CHECK(y[7] == 0.25f);  // 0.125 * 4 + 8.5 = 9 -> (9 - 8) * 0.25
    // Bad blocks.
    std::vector<float> z(12, 1.f);
    CHECK_THROWS_AS(round_kv(GgmlType::Q8_0, z.data(), z.size(), 8), kv::Error);
    CHECK_THROWS_AS(round_kv(GgmlType::Q4_0, z.data(), 3, 3), kv::Error);
    CHECK_THROWS_AS(round_kv(GgmlType::Q8_0, z.data(), z.size(), 0), kv::Error);
    CHECK_THROWS_AS(round_kv(GgmlType::Q4_K, z.data(), z.size(), 4), kv::Error);
}
