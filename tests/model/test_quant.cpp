// Weight formats: type traits, fp16/bf16 conversion, dequantization (bit-exact against the
// reference dequantizer's output in ../shared/models/fixtures/*.dequant.gguf) and the Q8_0/Q4_0
// quantizers on fresh random data.
#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <ios>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "model/ggml_types.h"
#include "model/gguf.h"

using namespace kv::model;

namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

kv_status status_of(void (*fn)()) {
    try {
        fn();
    } catch (const kv::Error& e) {
        CHECK(std::string(e.what()).size() > 0);
        return e.status();
    }
    return KV_OK;
}

std::vector<std::string> dequant_fixtures(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            const std::string suf = ".dequant.gguf";
            if (n.size() > suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0)
                out.push_back(dir + "/" + n);
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string upper(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace

TEST_CASE("type traits of every ggml type id") {
    struct Expect {
        GgmlType t;
        const char* name;
        uint32_t bs, ts;
        bool supported;
    };
    const Expect ex[] = {
        {GgmlType::F32, "f32", 1, 4, true},        {GgmlType::F16, "f16", 1, 2, true},
        {GgmlType::BF16, "bf16", 1, 2, true},      {GgmlType::Q4_0, "q4_0", 32, 18, true},
        {GgmlType::Q4_1, "q4_1", 32, 20, true},    {GgmlType::Q5_0, "q5_0", 32, 22, true},
        {GgmlType::Q5_1, "q5_1", 32, 24, true},    {GgmlType::Q8_0, "q8_0", 32, 34, true},
        {GgmlType::Q8_1, "q8_1", 32, 36, false},   {GgmlType::Q2_K, "q2_k", 256, 84, true},
        {GgmlType::Q3_K, "q3_k", 256, 110, true},  {GgmlType::Q4_K, "q4_k", 256, 144, true},
        {GgmlType::Q5_K, "q5_k", 256, 176, true},  {GgmlType::Q6_K, "q6_k", 256, 210, true},
        {GgmlType::Q8_K, "q8_k", 256, 292, false},
    };
    for (const auto& e : ex) {
        const TypeTraits* t = type_traits(e.t);
        REQUIRE_MESSAGE(t != nullptr, e.name);
        CHECK(std::string(t->name) == e.name);
        CHECK(t->block_size == e.bs);
        CHECK(t->type_size == e.ts);
        CHECK(t->supported == e.supported);
    }
    // Defined by ggml but not supported here: named, so the loader can say which.
    for (uint32_t id :
         {16u, 17u, 18u, 19u, 20u, 21u, 22u, 23u, 24u, 25u, 26u, 27u, 28u, 29u, 34u, 35u}) {
        const TypeTraits* t = type_traits(id);
        REQUIRE_MESSAGE(t != nullptr, id);
        CHECK_FALSE(t->supported);
        CHECK(std::strlen(t->name) > 0);
        CHECK(t->block_size > 0);
        CHECK(t->type_size > 0);
    }
    CHECK(std::string(type_traits(20u)->name) == "iq4_nl");
    CHECK(type_traits(23u)->type_size == 136u);  // iq4_xs
    // Removed or never defined.
    for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 255u, 1000u, 0xFFFFFFFFu})
        CHECK_MESSAGE(type_traits(id) == nullptr, id);

    CHECK(row_bytes(GgmlType::Q4_K, 512) == 288);
    CHECK(row_bytes(GgmlType::F16, 7) == 14);
    CHECK(row_bytes(GgmlType::Q8_0, 0) == 0);
    CHECK(status_of([] { row_bytes(GgmlType::Q4_0, 33); }) == KV_ERR_BAD_MODEL);
}

TEST_CASE("fp16: every half value round-trips through float") {
    int nans = 0;
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_fp32(static_cast<uint16_t>(h));
        const bool is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
        if (is_nan) {
            ++nans;
            CHECK(std::isnan(f));
            const uint16_t back = fp32_to_fp16(f);
            CHECK(((back & 0x7C00) == 0x7C00 && (back & 0x3FF) != 0));  // still NaN, never inf
            CHECK((back & 0x8000) == (h & 0x8000));
        } else {
            // exact value check against the definition
            const int e = (h >> 10) & 0x1F;
            const int m = h & 0x3FF;
            double v = e == 0    ? std::ldexp(m, -24)
                       : e == 31 ? INFINITY
                                 : std::ldexp(1024 + m, e - 25);
            if (h & 0x8000) v = -v;
            REQUIRE_MESSAGE(f == static_cast<float>(v), "half 0x" << std::hex << h);
            REQUIRE(std::signbit(f) == bool(h & 0x8000));
            REQUIRE_MESSAGE(fp32_to_fp16(f) == h, "half 0x" << std::hex << h);
        }
    }
    CHECK(nans == 2 * 1023);
}

TEST_CASE("fp16: float to half rounds to nearest even, with inf, denormals and NaN") {
    CHECK(fp32_to_fp16(1.0f) == 0x3C00);
    CHECK(fp32_to_fp16(-2.0f) == 0xC000);
    CHECK(fp32_to_fp16(65504.0f) == 0x7BFF);
    CHECK(fp32_to_fp16(65519.99f) == 0x7BFF);  // below the rounding boundary to inf
    CHECK(fp32_to_fp16(65520.0f) == 0x7C00);   // tie at max: rounds to even = inf
    CHECK(fp32_to_fp16(1e10f) == 0x7C00);
    CHECK(fp32_to_fp16(-INFINITY) == 0xFC00);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);         // smallest denormal
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);         // tie -> even (0)
    CHECK(fp32_to_fp16(std::ldexp(3.0f, -26)) == 0x0001);         // 0.75 ulp -> 1
    CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);         // 1.5 ulp tie -> even 2
    CHECK(fp32_to_fp16(-std::ldexp(1.0f, -26)) == 0x8000);        // -0
    CHECK(fp32_to_fp16(std::ldexp(1023.5f, -24)) == 0x0400);      // rounds up into the normals
    CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);  // tie -> even
    CHECK(fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);  // tie -> even (up)
    CHECK(fp32_to_fp16(std::numeric_limits<float>::denorm_min()) == 0);
    CHECK(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
    CHECK(std::isnan(
        fp16_to_fp32(fp32_to_fp16(from_bits(0x7F800001u)))));  // payload only in low bits

    // Random floats over the whole half range: the result is a nearest half, ties to even.
    const uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> ex(-30, 16);
    std::uniform_real_distribution<float> mant(1.0f, 2.0f);
    for (int i = 0; i < 200000; ++i) {
        float x = std::ldexp(mant(rng), ex(rng));
        if (rng() & 1) x = -x;
        const uint16_t h = fp32_to_fp16(x);
        const double xv = x;
        const double hv = fp16_to_fp32(h);
        if (std::isinf(hv)) {
            REQUIRE(std::fabs(xv) >= 65520.0);
            continue;
        }
        const double err = std::fabs(xv - hv);
        for (int dlt : {-1, 1}) {
            const uint16_t n = static_cast<uint16_t>((h & 0x7FFF) + dlt) | (h & 0x8000);
            if ((h & 0x7FFF) == 0 && dlt < 0) continue;
            const double nv = fp16_to_fp32(n);
            if (std::isinf(nv)) continue;
            const double nerr = std::fabs(xv - nv);
            REQUIRE_MESSAGE(err <= nerr, "x=" << x << " h=" << h);
            if (err == nerr) REQUIRE_MESSAGE((h & 1) == 0, "tie not to even: x=" << x);
        }
    }
}

TEST_CASE("bf16: round trips, rounding, NaN and denormals") {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = bf16_to_fp32(static_cast<uint16_t>(h));
        REQUIRE(bits(f) == h << 16);
        if (std::isnan(f)) {
            const uint16_t back = fp32_to_bf16(f);
            CHECK(std::isnan(bf16_to_fp32(back)));
        } else {
            REQUIRE(fp32_to_bf16(f) == h);  // denormals and infinities included
        }
    }
    CHECK(fp32_to_bf16(1.0f) == 0x3F80);
    CHECK(fp32_to_bf16(from_bits(0x3F808000u)) == 0x3F80);  // tie -> even (down)
    CHECK(fp32_to_bf16(from_bits(0x3F818000u)) == 0x3F82);  // tie -> even (up)
    CHECK(fp32_to_bf16(from_bits(0x3F808001u)) == 0x3F81);
    CHECK(fp32_to_bf16(from_bits(0x7F7FFFFFu)) == 0x7F80);                  // FLT_MAX rounds to inf
    CHECK(fp32_to_bf16(from_bits(0x00000001u)) == 0x0000);                  // tiny denormal -> 0
    CHECK(fp32_to_bf16(from_bits(0x00018000u)) == 0x0002);                  // denormal tie -> even
    CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(from_bits(0x7F800001u)))));  // NaN stays NaN
    CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(from_bits(0xFFFFFFFFu)))));
}

TEST_CASE("dequantize: hand-built blocks") {
    // Q4_0: d = 0.5, nibbles j and j+16 in byte j.
    uint8_t q4[18] = {};
    const uint16_t half = fp32_to_fp16(0.5f);
    std::memcpy(q4, &half, 2);
    for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    float y[32];
    dequantize_row(GgmlType::Q4_0, q4, y, 32);
    for (int j = 0; j < 16; ++j) {
        CHECK(y[j] == 0.5f * (j - 8));
        CHECK(y[j + 16] == 0.5f * (15 - j - 8));
    }
    // Q8_0: d = -2, q = -128..
    uint8_t q8[34];
    const uint16_t m2 = fp32_to_fp16(-2.0f);
    std::memcpy(q8, &m2, 2);
    for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j * 8 - 128));
    dequantize_row(GgmlType::Q8_0, q8, y, 32);
    for (int j = 0; j < 32; ++j) CHECK(y[j] == -2.0f * (j * 8 - 128));
    // Q5_0: the 5th bit of element j is bit j of qh.
    uint8_t q5[22] = {};
    const uint16_t one = fp32_to_fp16(1.0f);
    std::memcpy(q5, &one, 2);
    const uint32_t qh = 0x80000001u;  // element 0 and 31 get the high bit
    std::memcpy(q5 + 2, &qh, 4);
    dequantize_row(GgmlType::Q5_0, q5, y, 32);
    CHECK(y[0] == 0.0f);    // 16 - 16
    CHECK(y[1] == -16.0f);  // 0 - 16
    CHECK(y[31] == 0.0f);
    CHECK(y[16] == -16.0f);

    // Errors: unsupported type and a partial block.
    CHECK(status_of([] {
              uint8_t b[36] = {};
              float o[32];
              dequantize_row(GgmlType::Q8_1, b, o, 32);
          }) == KV_ERR_UNSUPPORTED);
    CHECK(status_of([] {
              uint8_t b[36] = {};
              float o[32];
              dequantize_row(GgmlType::Q4_0, b, o, 31);
          }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status_of([] {
              uint8_t b[4] = {};
              float o[1];
              dequantize_row(static_cast<GgmlType>(4), b, o, 1);
          }) == KV_ERR_BAD_MODEL);
}

TEST_CASE("dequantize: bit-exact against the reference dequantizer on every fixture") {
    if (!kvtest::require_shared()) return;
    const std::string dir = kvtest::shared_dir() + "/models/fixtures";
    const auto files = dequant_fixtures(dir);
    REQUIRE_MESSAGE(files.size() >= 15, "expected the *.dequant.gguf fixtures in " << dir);
    std::set<std::string> types_seen;
    for (const auto& dq_path : files) {
        CAPTURE(dq_path);
        const std::string src_path =
            dq_path.substr(0, dq_path.size() - std::strlen(".dequant.gguf")) + ".gguf";
        auto dq = GgufFile::open(dq_path);
        auto src = GgufFile::open(src_path);
        REQUIRE(dq->tensors().size() >= 1);
        for (const auto& ref : dq->tensors()) {
            CAPTURE(ref.name);
            REQUIRE(ref.type == GgmlType::F32);
            const GgufTensorInfo* t = src->find_tensor(ref.name);
            REQUIRE(t != nullptr);
            const auto ref_type = dq->get_string("reference.type." + ref.name);
            REQUIRE(ref_type.has_value());
            CHECK(upper(type_traits(t->type)->name) == std::string(*ref_type));
            REQUIRE(t->ne[0] == ref.ne[0]);
            REQUIRE(ref.ne[1] <= t->ne[1]);
            const uint64_t n = ref.elements();
            std::vector<float> out(n, NAN);
            dequantize_row(t->type, src->tensor_data(*t), out.data(), static_cast<int64_t>(n));
            const float* want = reinterpret_cast<const float*>(dq->tensor_data(ref));
            size_t mismatches = 0, first = n;
            for (size_t i = 0; i < n; ++i) {
                float w;
                std::memcpy(&w, want + i, 4);
                if (bits(w) != bits(out[i])) {
                    if (!mismatches) first = i;
                    ++mismatches;
                }
            }
            CHECK_MESSAGE(mismatches == 0,
                          mismatches << " of " << n << " values differ, first at " << first);
            // Row by row gives the same as the whole tensor at once.
            std::vector<float> row(ref.ne[0]);
            const uint64_t rb = row_bytes(t->type, ref.ne[0]);
            const uint64_t last = ref.ne[1] - 1;
            dequantize_row(t->type, src->tensor_data(*t) + last * rb, row.data(),
                           static_cast<int64_t>(ref.ne[0]));
            CHECK(std::memcmp(row.data(), out.data() + last * ref.ne[0], row.size() * 4) == 0);
            types_seen.insert(type_traits(t->type)->name);
        }
    }
    // Every supported non-F32 format is covered by some fixture.
    for (const char* name : {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                             "q4_k", "q5_k", "q6_k"})
        CHECK_MESSAGE(types_seen.count(name) == 1, "no fixture covers " << name);
}

TEST_CASE("quantize: F32/F16/BF16 are exact conversions") {
    const uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    auto x = kvtest::random_floats(1024, seed, -100.f, 100.f);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = INFINITY;
    x[3] = 1e-7f;  // fp16 denormal
    std::vector<uint8_t> buf(4096);
    std::vector<float> y(1024);
    quantize_row(GgmlType::F32, x.data(), buf.data(), 1024);
    dequantize_row(GgmlType::F32, buf.data(), y.data(), 1024);
    CHECK(std::memcmp(x.data(), y.data(), 4096) == 0);
    quantize_row(GgmlType::F16, x.data(), buf.data(), 1024);
    dequantize_row(GgmlType::F16, buf.data(), y.data(), 1024);
    for (size_t i = 0; i < 1024; ++i) REQUIRE(bits(y[i]) == bits(fp16_to_fp32(fp32_to_fp16(x[i]))));
    CHECK(kvtest::rel_l2(y.data() + 4, x.data() + 4, 1020) < 5e-4);  // specials excluded
    quantize_row(GgmlType::BF16, x.data(), buf.data(), 1024);
    dequantize_row(GgmlType::BF16, buf.data(), y.data(), 1024);
    for (size_t i = 0; i < 1024; ++i) REQUIRE(bits(y[i]) == bits(bf16_to_fp32(fp32_to_bf16(x[i]))));
}

TEST_CASE("quantize: Q8_0 and Q4_0 error bounds on fresh random data") {
    const uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    const int64_t n = 32 * 512;
    // Blocks with very different magnitudes, so each block's scale matters.
    auto x = kvtest::random_floats(static_cast<size_t>(n), seed);
    std::mt19937 rng(seed ^ 0x5bd1e995u);
    std::uniform_real_distribution<float> mag(-4.f, 3.f);  // small blocks get fp16-denormal scales
    for (int64_t b = 0; b < n / 32; ++b) {
        const float s = std::pow(10.0f, mag(rng));
        for (int j = 0; j < 32; ++j) x[static_cast<size_t>(b * 32 + j)] *= s;
    }
    for (int j = 0; j < 32; ++j) x[static_cast<size_t>(5 * 32 + j)] = 0.0f;  // an all-zero block

    for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        const std::string name = type_traits(type)->name;
        CAPTURE(name);
        std::vector<uint8_t> q(row_bytes(type, n));
        std::vector<float> y(static_cast<size_t>(n));
        quantize_row(type, x.data(), q.data(), n);
        dequantize_row(type, q.data(), y.data(), n);
        const bool is8 = type == GgmlType::Q8_0;
        double worst = 0;
        for (int64_t b = 0; b < n / 32; ++b) {
            const float* xb = x.data() + b * 32;
            const float* yb = y.data() + b * 32;
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
            // Step of the quantization grid, plus slack for the fp16 rounding of the scale.
            const double step = is8 ? amax / 127.0 : amax / 8.0;
            // Absolute slack: a scale below 2^-14 is an fp16 denormal, rounded to 2^-24 steps.
            const double denorm = (is8 ? 127.0 : 8.0) * std::ldexp(1.0, -25);
            const double bound = (is8 ? 0.5 : 1.0) * step + amax * 2e-3 + denorm;
            for (int j = 0; j < 32; ++j) {
                const double err = std::fabs(double(xb[j]) - double(yb[j]));
                if (step >= std::ldexp(1.0, -14))
                    worst = std::max(worst, err / step);  // normal scales
                REQUIRE_MESSAGE(err <= bound,
                                "block " << b << " elem " << j << ": " << xb[j] << " -> " << yb[j]);
            }
            if (!is8) {
                // The element of largest magnitude is reproduced up to the fp16 rounding of d.
                int jm = 0;
                for (int j = 1; j < 32; ++j)
                    if (std::fabs(xb[j]) > std::fabs(xb[jm])) jm = j;
                CHECK(std::fabs(double(xb[jm]) - double(yb[jm])) <= amax * 1e-3 + denorm);
            }
        }
        for (int j = 0; j < 32; ++j) CHECK(y[static_cast<size_t>(5 * 32 + j)] == 0.0f);
        const double rel = kvtest::rel_l2(y, x);
        MESSAGE(name << ": rel L2 " << rel << ", worst error " << worst
                     << " grid steps (blocks with a normal fp16 scale)");
        CHECK(rel < (is8 ? 0.01 : 0.12));
        CHECK(rel > 0);  // lossy, so the test could fail
    }
}

TEST_CASE("quantize: Q4_0 matches ggml's reference rounding on a known block") {
    // max = -4 at element 0 -> d = 0.5, id = 2; q = trunc(x * 2 + 8.5) clamped to 15.
    float x[32];
    for (int j = 0; j < 32; ++j) x[j] = -4.0f + 0.25f * j;  // -4 .. 3.75
    uint8_t q[18];
    quantize_row(GgmlType::Q4_0, x, q, 32);
    uint16_t d;
    std::memcpy(&d, q, 2);
    CHECK(fp16_to_fp32(d) == 0.5f);
    for (int j = 0; j < 32; ++j) {
        const int want = std::min(15, static_cast<int>(x[j] * 2.0f + 8.5f));
        const int got = j < 16 ? (q[2 + j] & 0xF) : (q[2 + j - 16] >> 4);
        CHECK_MESSAGE(got == want, j);
    }
    // Q8_0: d = amax/127, round half away from zero.
    float z[32] = {};
    z[0] = 127.0f;
    z[1] = 2.5f;
    z[2] = -2.5f;
    z[3] = 0.49f;
    uint8_t q8[34];
    quantize_row(GgmlType::Q8_0, z, q8, 32);
    std::memcpy(&d, q8, 2);
    CHECK(fp16_to_fp32(d) == 1.0f);
    CHECK(static_cast<int8_t>(q8[2]) == 127);
    CHECK(static_cast<int8_t>(q8[3]) == 3);
    CHECK(static_cast<int8_t>(q8[4]) == -3);
    CHECK(static_cast<int8_t>(q8[5]) == 0);
}

TEST_CASE("quantize: non-finite input stays defined and bad arguments throw") {
    float x[32];
    for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j);
    x[7] = NAN;
    x[9] = INFINITY;
    uint8_t q[34];
    quantize_row(GgmlType::Q8_0, x, q, 32);  // no UB (run under UBSan by the fuzz build)
    quantize_row(GgmlType::Q4_0, x, q, 32);
    CHECK(status_of([] {
              float a[32] = {};
              uint8_t b[64];
              quantize_row(GgmlType::Q4_K, a, b, 32);
          }) == KV_ERR_UNSUPPORTED);
    CHECK(status_of([] {
              float a[32] = {};
              uint8_t b[64];
              quantize_row(GgmlType::Q8_0, a, b, 16);
          }) == KV_ERR_INVALID_ARGUMENT);
}
