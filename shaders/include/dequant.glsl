// Dequantization of ggml weight blocks read as 32-bit words, mirroring kv::model::dequantize_row
// (src/model/ggml_types.cpp, bit-exact with ggml) operation for operation. No 8/16-bit storage or
// fp16 arithmetic: bytes are extracted with shifts and halves converted with unpackHalf2x16.
//
// Before including, declare the weight binding as a uint array and name it:
//   layout(std430, binding = N) readonly buffer Wb { uint w_words[]; };
//   #define DQ_W w_words
// and define exactly one type:  W_F32 W_F16 W_BF16 W_Q4_0 W_Q4_1 W_Q5_0 W_Q5_1 W_Q8_0 W_Q2_K
// W_Q3_K W_Q4_K W_Q5_K W_Q6_K (= 1). The float types are read element by element (deq1); the
// quantized ones in 16-element sub-blocks (deq16).
//
// Provides:
//   DQ_BS, DQ_BB                 elements and bytes per block
//   DQ_ELEM                      1 for the float types (deq1), 0 for the quantized ones (deq16)
//   float deq1(uint row_byte, uint i)                element i of the row starting at row_byte
//   void deq16(uint blk, uint sub, out float v[16])  the 16 consecutive elements [16 sub, 16 sub
//                                                    + 16) of the block starting at byte blk
//   DQ_UPB, DQ_SPU, uint dq_unit_sub(uint u, uint i)
//       matvec "units": the block's DQ_BS / 16 sub-blocks grouped DQ_SPU at a time (DQ_UPB units)
//       so that the sub-blocks of one unit read the same bytes (one thread reads them once).
//
// The including shader enables GL_EXT_control_flow_attributes ([[unroll]]).
//
// Byte offsets are within the binding; the binding covers whole 16-byte words (vk::Buffer pads
// its VkBuffer), so a word that holds a block's last bytes may be read whole.
#ifndef KV_DEQUANT_GLSL
#define KV_DEQUANT_GLSL

// ---- byte access -----------------------------------------------------------------------------

uint dq_u8(uint b) { return (DQ_W[b >> 2] >> ((b & 3u) * 8u)) & 0xFFu; }
// b even
uint dq_u16(uint b) { return (DQ_W[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu; }
float dq_f16(uint b) { return unpackHalf2x16(dq_u16(b)).x; }
// Any alignment.
uint dq_u32(uint b) {
    const uint i = b >> 2;
    const uint s = (b & 3u) * 8u;
    if (s == 0u) return DQ_W[i];
    return (DQ_W[i] >> s) | (DQ_W[i + 1u] << (32u - s));
}
// 16 bytes at any alignment.
uvec4 dq_u128(uint b) {
    const uint i = b >> 2;
    const uint s = (b & 3u) * 8u;
    const uvec4 a = uvec4(DQ_W[i], DQ_W[i + 1u], DQ_W[i + 2u], DQ_W[i + 3u]);
    if (s == 0u) return a;
    const uint e = DQ_W[i + 4u];
    const uint r = 32u - s;
    return uvec4((a.x >> s) | (a.y << r), (a.y >> s) | (a.z << r), (a.z >> s) | (a.w << r),
                 (a.w >> s) | (e << r));
}
// Byte j (0..15) of a 16-byte vector.
uint dq_byte(uvec4 q, uint j) { return (q[j >> 2] >> ((j & 3u) * 8u)) & 0xFFu; }

// ---- per type ----------------------------------------------------------------------------------

#if W_F32 || W_F16 || W_BF16

#if W_F32
#define DQ_ESIZE 4u
#else
#define DQ_ESIZE 2u
#endif

float deq1(uint row_byte, uint i) {
#if W_F32
    return uintBitsToFloat(DQ_W[(row_byte >> 2) + i]);
#elif W_F16
    return dq_f16(row_byte + 2u * i);
#else
    return uintBitsToFloat(dq_u16(row_byte + 2u * i) << 16);
#endif
}

#define DQ_ELEM 1
#define DQ_BS 1u
#define DQ_BB DQ_ESIZE

#elif W_Q4_0
// { f16 d; u8 qs[16]; }  x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8)
#define DQ_ELEM 0
#define DQ_BS 32u
#define DQ_BB 18u
#define DQ_UPB 1u
#define DQ_SPU 2u
uint dq_unit_sub(uint u, uint i) { return i; }
void deq16(uint blk, uint sub, out float v[16]) {
    const float d = dq_f16(blk);
    const uvec4 q = dq_u128(blk + 2u);
    const uint sh = sub * 4u;
    [[unroll]] for (uint j = 0u; j < 16u; ++j) v[j] = float(int((dq_byte(q, j) >> sh) & 15u) - 8) * d;
}

#elif W_Q4_1
// { f16 d; f16 m; u8 qs[16]; }  x = d * q + m
#define DQ_ELEM 0
#define DQ_BS 32u
#define DQ_BB 20u
#define DQ_UPB 1u
#define DQ_SPU 2u
uint dq_unit_sub(uint u, uint i) { return i; }
void deq16(uint blk, uint sub, out float v[16]) {
    const vec2 dm = unpackHalf2x16(DQ_W[blk >> 2]);  // blk % 4 == 0
    const uvec4 q = dq_u128(blk + 4u);
    const uint sh = sub * 4u;
    [[unroll]] for (uint j = 0u; j < 16u; ++j) v[j] = float((dq_byte(q, j) >> sh) & 15u) * dm.x + dm.y;
}

#elif W_Q5_0
// { f16 d; u8 qh[4]; u8 qs[16]; }  x = d * (q - 16), bit 4 of element j in qh bit j
#define DQ_ELEM 0
#define DQ_BS 32u
#define DQ_BB 22u
#define DQ_UPB 1u
#define DQ_SPU 2u
uint dq_unit_sub(uint u, uint i) { return i; }
void deq16(uint blk, uint sub, out float v[16]) {
    const float d = dq_f16(blk);
    const uint qh = dq_u32(blk + 2u) >> (sub * 16u);
    const uvec4 q = dq_u128(blk + 6u);
    const uint sh = sub * 4u;
    [[unroll]] for (uint j = 0u; j < 16u; ++j)
        v[j] = float(int(((dq_byte(q, j) >> sh) & 15u) | (((qh >> j) & 1u) << 4)) - 16) * d;
}

#elif W_Q5_1
// { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }  x = d * q + m
#define DQ_ELEM 0
#define DQ_BS 32u
#define DQ_BB 24u
#define DQ_UPB 1u
#define DQ_SPU 2u
uint dq_unit_sub(uint u, uint i) { return i; }
void deq16(uint blk, uint sub, out float v[16]) {
    const vec2 dm = unpackHalf2x16(DQ_W[blk >> 2]);  // blk % 4 == 0
    const uint qh = DQ_W[(blk >> 2) + 1u] >> (sub * 16u);
    const uvec4 q = uvec4(DQ_W[(blk >> 2) + 2u], DQ_W[(blk >> 2) + 3u], DQ_W[(blk >> 2) + 4u],
                          DQ_W[(blk >> 2) + 5u]);
    const uint sh = sub * 4u;
    [[unroll]] for (uint j = 0u; j < 16u; ++j)
        v[j] = float(((dq_byte(q, j) >> sh) & 15u) | (((qh >> j) & 1u) << 4)) * dm.x + dm.y;
}

#elif W_Q8_0
// { f16 d; i8 qs[32]; }  x = d * q
#define DQ_ELEM 0
#define DQ_BS 32u
#define DQ_BB 34u
#define DQ_UPB 2u
#define DQ_SPU 1u
uint dq_unit_sub(uint u, uint i) { return u; }
void deq16(uint blk, uint sub, out float v[16]) {
    const float d = dq_f16(blk);
    const uvec4 q = dq_u128(blk + 2u + 16u * sub);
    [[unroll]] for (uint j = 0u; j < 16u; ++j)
        v[j] = float(bitfieldExtract(int(q[j >> 2]), int((j & 3u) * 8u), 8)) * d;
}

#elif W_Q2_K
// { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }. Sub-block s (elements 16 s ..): half nh = s / 8,
// shift 2 j with j = (s % 8) / 2, bytes qs[32 nh + 16 (s % 2) + l]; scale byte s.
#define DQ_ELEM 0
#define DQ_BS 256u
#define DQ_BB 84u
#define DQ_UPB 4u
#define DQ_SPU 4u
uint dq_unit_sub(uint u, uint i) { return (u >> 1) * 8u + 2u * i + (u & 1u); }
void deq16(uint blk, uint sub, out float v[16]) {
    const vec2 dd = unpackHalf2x16(DQ_W[(blk >> 2) + 20u]);  // blk % 4 == 0; d, dmin
    const uint sc = dq_u8(blk + sub);
    const float dl = dd.x * float(sc & 15u);
    const float ml = dd.y * float(sc >> 4);
    const uvec4 q = dq_u128(blk + 16u + 32u * (sub >> 3) + 16u * (sub & 1u));
    const uint sh = ((sub & 7u) >> 1) * 2u;
    [[unroll]] for (uint j = 0u; j < 16u; ++j) v[j] = dl * float((dq_byte(q, j) >> sh) & 3u) - ml;
}

#elif W_Q3_K
// { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }. Sub-block s as Q2_K, with the high bit of
// element l in hmask[16 (s % 2) + l] bit 4 nh + j (set: +0, clear: -4) and a 6-bit signed scale.
#define DQ_ELEM 0
#define DQ_BS 256u
#define DQ_BB 110u
#define DQ_UPB 4u
#define DQ_SPU 4u
uint dq_unit_sub(uint u, uint i) { return (u >> 1) * 8u + 2u * i + (u & 1u); }
void deq16(uint blk, uint sub, out float v[16]) {
    const float d_all = dq_f16(blk + 108u);
    const uint lo = sub < 8u ? (dq_u8(blk + 96u + sub) & 15u) : (dq_u8(blk + 88u + sub) >> 4);
    const uint hi = (dq_u8(blk + 104u + (sub & 3u)) >> (2u * (sub >> 2))) & 3u;
    const float dl = d_all * float(int(lo | (hi << 4)) - 32);
    const uint nh = sub >> 3;
    const uint j4 = (sub & 7u) >> 1;
    const uvec4 q = dq_u128(blk + 32u + 32u * nh + 16u * (sub & 1u));
    const uvec4 h = dq_u128(blk + 16u * (sub & 1u));
    const uint sh = 2u * j4;
    const uint hb = 4u * nh + j4;
    [[unroll]] for (uint j = 0u; j < 16u; ++j) {
        const int hv = ((dq_byte(h, j) >> hb) & 1u) != 0u ? 0 : 4;
        v[j] = dl * float(int((dq_byte(q, j) >> sh) & 3u) - hv);
    }
}

#elif W_Q4_K || W_Q5_K
// Q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
// Q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
// Sub-block s: 64-chunk c = s / 4, nibble n = (s % 4) / 2 (scale/min 2 c + n), bytes
// qs[32 c + 16 (s % 2) + l]; Q5_K's fifth bit in qh[16 (s % 2) + l] bit 2 c + n.
#define DQ_ELEM 0
#define DQ_BS 256u
#if W_Q4_K
#define DQ_BB 144u
#define DQ_QS 16u
#else
#define DQ_BB 176u
#define DQ_QS 48u
#endif
#define DQ_UPB 8u
#define DQ_SPU 2u
uint dq_unit_sub(uint u, uint i) { return (u >> 1) * 4u + 2u * i + (u & 1u); }
void deq16(uint blk, uint sub, out float v[16]) {
    const uint b4 = blk >> 2;  // blk % 16 == 0
    const vec2 dd = unpackHalf2x16(DQ_W[b4]);
    const uint c = sub >> 2;
    const uint n = (sub >> 1) & 1u;
    const uint is = 2u * c + n;
    const uint sb = blk + 4u;  // scales
    uint sc, m;
    if (is < 4u) {
        sc = dq_u8(sb + is) & 63u;
        m = dq_u8(sb + is + 4u) & 63u;
    } else {
        sc = (dq_u8(sb + is + 4u) & 15u) | ((dq_u8(sb + is - 4u) >> 6) << 4);
        m = (dq_u8(sb + is + 4u) >> 4) | ((dq_u8(sb + is) >> 6) << 4);
    }
    const float d1 = dd.x * float(sc);
    const float m1 = dd.y * float(m);
    const uint lh = sub & 1u;
    const uint qo = b4 + DQ_QS / 4u + 8u * c + 4u * lh;
    const uvec4 q = uvec4(DQ_W[qo], DQ_W[qo + 1u], DQ_W[qo + 2u], DQ_W[qo + 3u]);
    const uint sh = 4u * n;
#if W_Q5_K
    const uint ho = b4 + 4u + 4u * lh;
    const uvec4 h = uvec4(DQ_W[ho], DQ_W[ho + 1u], DQ_W[ho + 2u], DQ_W[ho + 3u]);
    const uint hb = 2u * c + n;
    [[unroll]] for (uint j = 0u; j < 16u; ++j)
        v[j] = d1 * float(((dq_byte(q, j) >> sh) & 15u) + (((dq_byte(h, j) >> hb) & 1u) << 4)) - m1;
#else
    [[unroll]] for (uint j = 0u; j < 16u; ++j) v[j] = d1 * float((dq_byte(q, j) >> sh) & 15u) - m1;
#endif
}

#elif W_Q6_K
// { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }. Sub-block s: half nh = s / 8, quarter
// qr = (s % 8) / 2, lh = s % 2: low 4 bits from ql[64 nh + 32 (qr % 2) + 16 lh + l] nibble qr / 2,
// high 2 bits from qh[32 nh + 16 lh + l] >> 2 qr; scale scales[8 nh + lh + 2 qr].
#define DQ_ELEM 0
#define DQ_BS 256u
#define DQ_BB 210u
#define DQ_UPB 4u
#define DQ_SPU 4u
uint dq_unit_sub(uint u, uint i) { return (u >> 1) * 8u + 2u * i + (u & 1u); }
void deq16(uint blk, uint sub, out float v[16]) {
    const float d = dq_f16(blk + 208u);
    const uint nh = sub >> 3;
    const uint qr = (sub & 7u) >> 1;
    const uint lh = sub & 1u;
    const int sc = bitfieldExtract(int(dq_u8(blk + 192u + 8u * nh + lh + 2u * qr)), 0, 8);
    const float ds = d * float(sc);
    const uvec4 ql = dq_u128(blk + 64u * nh + 32u * (qr & 1u) + 16u * lh);
    const uvec4 qh = dq_u128(blk + 128u + 32u * nh + 16u * lh);
    const uint sl = 4u * (qr >> 1);
    const uint shh = 2u * qr;
    [[unroll]] for (uint j = 0u; j < 16u; ++j) {
        const int qv = int(((dq_byte(ql, j) >> sl) & 15u) | (((dq_byte(qh, j) >> shh) & 3u) << 4)) - 32;
        v[j] = ds * float(qv);
    }
}

#else
#error "dequant.glsl: define one W_<type>"
#endif

#endif  // KV_DEQUANT_GLSL
