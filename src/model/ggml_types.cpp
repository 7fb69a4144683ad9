// ggml weight formats: type traits, fp16/bf16 conversion, reference dequantizers and the
// round-to-nearest quantizers for the formats kvulkan writes.
//
// Block layouts (little-endian, packed; QK_K = 256):
//   Q4_0  { f16 d; u8 qs[16]; }                      x = d * (q - 8)
//   Q4_1  { f16 d; f16 m; u8 qs[16]; }               x = d * q + m
//   Q5_0  { f16 d; u8 qh[4]; u8 qs[16]; }            x = d * (q - 16)
//   Q5_1  { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }     x = d * q + m
//   Q8_0  { f16 d; i8 qs[32]; }                      x = d * q
//   Q2_K  { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }
//   Q3_K  { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }
//   Q4_K  { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
//   Q5_K  { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
//   Q6_K  { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }
// The arithmetic below is written operation for operation like ggml's reference code (same
// operand order, float32 throughout, no fused multiply-add) so results are bit-identical.
#include "model/ggml_types.h"

#include <cmath>
#include <cstring>

#include "common/error.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace kv::model {

namespace {

constexpr uint32_t QK_K = 256;

// Indexed by on-disk id; name == nullptr marks an id ggml does not define (or removed).
const TypeTraits kTraits[] = {
    /*  0 */ {"f32", 1, 4, true},
    /*  1 */ {"f16", 1, 2, true},
    /*  2 */ {"q4_0", 32, 18, true},
    /*  3 */ {"q4_1", 32, 20, true},
    /*  4 */ {nullptr, 0, 0, false},  // Q4_2, removed from ggml
    /*  5 */ {nullptr, 0, 0, false},  // Q4_3, removed from ggml
    /*  6 */ {"q5_0", 32, 22, true},
    /*  7 */ {"q5_1", 32, 24, true},
    /*  8 */ {"q8_0", 32, 34, true},
    /*  9 */ {"q8_1", 32, 36, false},
    /* 10 */ {"q2_k", QK_K, 84, true},
    /* 11 */ {"q3_k", QK_K, 110, true},
    /* 12 */ {"q4_k", QK_K, 144, true},
    /* 13 */ {"q5_k", QK_K, 176, true},
    /* 14 */ {"q6_k", QK_K, 210, true},
    /* 15 */ {"q8_k", QK_K, 292, false},
    /* 16 */ {"iq2_xxs", QK_K, 66, false},
    /* 17 */ {"iq2_xs", QK_K, 74, false},
    /* 18 */ {"iq3_xxs", QK_K, 98, false},
    /* 19 */ {"iq1_s", QK_K, 50, false},
    /* 20 */ {"iq4_nl", 32, 18, false},
    /* 21 */ {"iq3_s", QK_K, 110, false},
    /* 22 */ {"iq2_s", QK_K, 82, false},
    /* 23 */ {"iq4_xs", QK_K, 136, false},
    /* 24 */ {"i8", 1, 1, false},
    /* 25 */ {"i16", 1, 2, false},
    /* 26 */ {"i32", 1, 4, false},
    /* 27 */ {"i64", 1, 8, false},
    /* 28 */ {"f64", 1, 8, false},
    /* 29 */ {"iq1_m", QK_K, 56, false},
    /* 30 */ {"bf16", 1, 2, true},
    /* 31 */ {nullptr, 0, 0, false},  // Q4_0_4_4, removed from ggml
    /* 32 */ {nullptr, 0, 0, false},  // Q4_0_4_8, removed
    /* 33 */ {nullptr, 0, 0, false},  // Q4_0_8_8, removed
    /* 34 */ {"tq1_0", QK_K, 54, false},
    /* 35 */ {"tq2_0", QK_K, 66, false},
    /* 36 */ {nullptr, 0, 0, false},  // IQ4_NL_4_4, removed
    /* 37 */ {nullptr, 0, 0, false},  // IQ4_NL_4_8, removed
    /* 38 */ {nullptr, 0, 0, false},  // IQ4_NL_8_8, removed
    /* 39 */ {"mxfp4", 32, 17, false},
};
constexpr uint32_t kNumTraits = sizeof(kTraits) / sizeof(kTraits[0]);

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline float load_f16(const uint8_t* p) { return fp16_to_fp32(load_u16(p)); }
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ---- dequantizers: one block each; `y` receives block_size floats -----------------------------

void deq_q4_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        const int x0 = (qs[j] & 0x0F) - 8;
        const int x1 = (qs[j] >> 4) - 8;
        y[j] = x0 * d;
        y[j + 16] = x1 * d;
    }
}

void deq_q4_1(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float m = load_f16(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        const int x0 = qs[j] & 0x0F;
        const int x1 = qs[j] >> 4;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

void deq_q5_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const uint32_t qh = load_u32(b + 2);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const uint8_t xh0 = static_cast<uint8_t>(((qh >> j) << 4) & 0x10);
        const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
        const int x0 = ((qs[j] & 0x0F) | xh0) - 16;
        const int x1 = ((qs[j] >> 4) | xh1) - 16;
        y[j] = x0 * d;
        y[j + 16] = x1 * d;
    }
}

void deq_q5_1(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float m = load_f16(b + 2);
    const uint32_t qh = load_u32(b + 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const uint8_t xh0 = static_cast<uint8_t>(((qh >> j) << 4) & 0x10);
        const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
        const int x0 = (qs[j] & 0x0F) | xh0;
        const int x1 = (qs[j] >> 4) | xh1;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

void deq_q8_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) y[j] = qs[j] * d;
}

void deq_q2_k(const uint8_t* b, float* y) {
    const uint8_t* scales = b;
    const uint8_t* q = b + 16;
    const float d = load_f16(b + 80);
    const float dmin = load_f16(b + 82);
    int is = 0;
    for (uint32_t n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            for (int half = 0; half < 2; ++half) {
                const uint8_t sc = scales[is++];
                const float dl = d * (sc & 0xF);
                const float ml = dmin * (sc >> 4);
                const uint8_t* qq = q + 16 * half;
                for (int l = 0; l < 16; ++l) *y++ = dl * ((qq[l] >> shift) & 3) - ml;
            }
            shift += 2;
        }
        q += 32;
    }
}

void deq_q3_k(const uint8_t* b, float* y) {
    const uint8_t* hm = b;
    const uint8_t* q = b + 32;
    const uint8_t* sc = b + 96;
    const float d_all = load_f16(b + 108);
    // 16 six-bit scales: low nibbles in sc[0..7] (j and j+8 share a byte), high 2 bits in
    // sc[8..11] (scale j uses bits 2*(j/4) of sc[8 + j%4]).
    int8_t scales[16];
    for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
        const int hi = (sc[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        scales[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
    }
    int is = 0;
    uint8_t m = 1;
    for (uint32_t n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            for (int half = 0; half < 2; ++half) {
                const float dl = d_all * scales[is++];
                const uint8_t* qq = q + 16 * half;
                const uint8_t* hh = hm + 16 * half;
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * (((qq[l] >> shift) & 3) - ((hh[l] & m) ? 0 : 4));
            }
            shift += 2;
            m = static_cast<uint8_t>(m << 1);
        }
        q += 32;
    }
}

// Six-bit scale and min j (0..7) of a Q4_K/Q5_K block's 12 scale bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

void deq_q4_k(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    int is = 0;
    for (uint32_t j = 0; j < QK_K; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc;
        const float m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc;
        const float m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

void deq_q5_k(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (uint32_t j = 0; j < QK_K; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc;
        const float m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc;
        const float m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = static_cast<uint8_t>(u1 << 2);
        u2 = static_cast<uint8_t>(u2 << 2);
    }
}

void deq_q6_k(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = load_f16(b + 208);
    for (uint32_t n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

// ---- quantizers (ggml's *_ref round-to-nearest versions) ---------------------------------------

void q_q8_0(const float* x, uint8_t* b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, fp32_to_fp16(d));
    int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) {
        float v = std::round(x[j] * id);
        // Only non-finite input can leave [-127, 127]; keep the conversion defined.
        if (!(v >= -127.0f)) v = v != v ? 0.0f : -127.0f;
        if (v > 127.0f) v = 127.0f;
        qs[j] = static_cast<int8_t>(v);
    }
}

void q_q4_0(const float* x, uint8_t* b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float v = x[j];
        if (amax < std::fabs(v)) {
            amax = std::fabs(v);
            max = v;
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, fp32_to_fp16(d));
    uint8_t* qs = b + 2;
    auto q = [&](float v) -> uint8_t {
        float t = v * id + 8.5f;     // ggml: MIN(15, (int8_t)(x*id + 8.5f)), truncation toward zero
        if (!(t >= 0.0f)) t = 0.0f;  // non-finite input only
        if (t > 15.0f) t = 15.0f;
        return static_cast<uint8_t>(static_cast<int>(t));
    };
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
}

}  // namespace

const TypeTraits* type_traits(uint32_t type) {
    if (type >= kNumTraits || kTraits[type].name == nullptr) return nullptr;
    return &kTraits[type];
}

uint64_t row_bytes(GgmlType type, uint64_t n) {
    const TypeTraits* t = type_traits(type);
    if (!t) fail(KV_ERR_BAD_MODEL, "unknown ggml type id %u", static_cast<unsigned>(type));
    if (n % t->block_size != 0)
        fail(KV_ERR_BAD_MODEL, "row of %llu elements is not a multiple of %s's block size %u",
             static_cast<unsigned long long>(n), t->name, t->block_size);
    return n / t->block_size * t->type_size;
}

float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;  // +-0
    } else {
        // Subnormal half: normalize. value = mant * 2^-24.
        int e = -1;
        do {
            ++e;
            mant <<= 1;
        } while ((mant & 0x400u) == 0);
        mant &= 0x3FFu;
        bits = sign | (static_cast<uint32_t>(112 - e) << 23) | (mant << 13);
    }
    return bits_f32(bits);
}

uint16_t fp32_to_fp16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t exp = (u >> 23) & 0xFFu;
    const uint32_t mant = u & 0x7FFFFFu;
    if (exp == 0xFF) {
        if (mant == 0) return static_cast<uint16_t>(sign | 0x7C00u);
        // NaN: keep the top payload bits, force quiet so it never becomes inf.
        return static_cast<uint16_t>(sign | 0x7E00u | (mant >> 13));
    }
    const int e = static_cast<int>(exp) - 127 + 15;             // biased half exponent
    if (e >= 31) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow -> inf
    if (e <= 0) {
        // Result is subnormal (or zero): value / 2^-24, rounded to nearest even.
        if (e < -10) return sign;             // below half the smallest subnormal
        const uint32_t m = mant | 0x800000u;  // implicit bit
        const int shift = 14 - e;             // 14..24
        const uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        uint32_t r = q;
        if (rem > halfway || (rem == halfway && (q & 1u))) ++r;
        return static_cast<uint16_t>(sign | r);  // r may carry into the smallest normal: correct
    }
    uint32_t r = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // may carry into exp: correct (inf)
    return static_cast<uint16_t>(sign | r);
}

float bf16_to_fp32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

uint16_t fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
    return static_cast<uint16_t>((u + (0x7FFFu + ((u >> 16) & 1u))) >> 16);
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
    const TypeTraits* t = type_traits(type);
    if (!t)
        fail(KV_ERR_BAD_MODEL, "dequantize: unknown ggml type id %u", static_cast<unsigned>(type));
    if (!t->supported)
        fail(KV_ERR_UNSUPPORTED, "dequantize: weight type %s is not supported", t->name);
    if (n < 0 || n % t->block_size != 0)
        fail(KV_ERR_INVALID_ARGUMENT,
             "dequantize: %lld elements is not a multiple of %s's block size %u",
             static_cast<long long>(n), t->name, t->block_size);
    const uint8_t* s = static_cast<const uint8_t*>(src);
    switch (type) {
        case GgmlType::F32:
            if (n) std::memcpy(dst, s, static_cast<size_t>(n) * 4);
            return;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(load_u16(s + 2 * i));
            return;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(s + 2 * i));
            return;
        default:
            break;
    }
    void (*fn)(const uint8_t*, float*) = nullptr;
    switch (type) {
        case GgmlType::Q4_0:
            fn = deq_q4_0;
            break;
        case GgmlType::Q4_1:
            fn = deq_q4_1;
            break;
        case GgmlType::Q5_0:
            fn = deq_q5_0;
            break;
        case GgmlType::Q5_1:
            fn = deq_q5_1;
            break;
        case GgmlType::Q8_0:
            fn = deq_q8_0;
            break;
        case GgmlType::Q2_K:
            fn = deq_q2_k;
            break;
        case GgmlType::Q3_K:
            fn = deq_q3_k;
            break;
        case GgmlType::Q4_K:
            fn = deq_q4_k;
            break;
        case GgmlType::Q5_K:
            fn = deq_q5_k;
            break;
        case GgmlType::Q6_K:
            fn = deq_q6_k;
            break;
        default:
            fail(KV_ERR_INTERNAL, "dequantize: no dequantizer for supported type %s", t->name);
    }
    const int64_t nb = n / t->block_size;
    for (int64_t i = 0; i < nb; ++i) fn(s + i * t->type_size, dst + i * t->block_size);
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
    const TypeTraits* t = type_traits(type);
    if (!t)
        fail(KV_ERR_INVALID_ARGUMENT, "quantize: unknown ggml type id %u",
             static_cast<unsigned>(type));
    if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16 &&
        type != GgmlType::Q8_0 && type != GgmlType::Q4_0)
        fail(KV_ERR_UNSUPPORTED,
             "quantize: cannot quantize to %s (supported: f32, f16, bf16, q8_0, q4_0)", t->name);
    if (n < 0 || n % t->block_size != 0)
        fail(KV_ERR_INVALID_ARGUMENT,
             "quantize: %lld elements is not a multiple of %s's block size %u",
             static_cast<long long>(n), t->name, t->block_size);
    uint8_t* d = static_cast<uint8_t*>(dst);
    switch (type) {
        case GgmlType::F32:
            if (n) std::memcpy(d, src, static_cast<size_t>(n) * 4);
            return;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) store_u16(d + 2 * i, fp32_to_fp16(src[i]));
            return;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) store_u16(d + 2 * i, fp32_to_bf16(src[i]));
            return;
        case GgmlType::Q8_0:
            for (int64_t i = 0; i < n / 32; ++i) q_q8_0(src + 32 * i, d + 34 * i);
            return;
        case GgmlType::Q4_0:
            for (int64_t i = 0; i < n / 32; ++i) q_q4_0(src + 32 * i, d + 18 * i);
            return;
        default:
            fail(KV_ERR_INTERNAL, "quantize: no quantizer for %s", t->name);
    }
}

}  // namespace kv::model
