#version 450
// Writes K and V rows of positions [pos0, pos0 + n_tokens) into the paged pools (kv_cache.glsl):
//   k, v: [n_tokens][n_head_kv][D] f32  ->  pools at the rows of positions pos0 + t
// F32/F16 (KV_QUANT == 0): one invocation per pair of elements; F16 pools take packHalf2x16
// words (values beyond the half range become +-inf).
// Q8_0/Q4_0 (KV_QUANT == 8 / 4): one invocation per block of QB = kv_qblock(D) elements (32,
// or the whole row when D < 32) of a K row and the same V row, quantized with ggml's reference
// formulas over the block (as model::quantize_row does for QB == 32; fp16 scale through
// packHalf2x16). A scale shares its word with a neighbouring block's (maybe another
// invocation's, or another row's), so scales are stored with atomicAnd/atomicOr on their half.
// Value words belong to one block (rows of D < 32 are padded to whole words).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, binding = 0) readonly buffer Kin { float k_in[]; };
layout(std430, binding = 1) readonly buffer Vin { float v_in[]; };
#if KV_QUANT
layout(std430, binding = 2) buffer Kp { uint k_pool[]; };
layout(std430, binding = 3) buffer Vp { uint v_pool[]; };
#elif KV_F16
layout(std430, binding = 2) writeonly buffer Kp { uint k_pool[]; };
layout(std430, binding = 3) writeonly buffer Vp { uint v_pool[]; };
#else
layout(std430, binding = 2) writeonly buffer Kp { float k_pool[]; };
layout(std430, binding = 3) writeonly buffer Vp { float v_pool[]; };
#endif
layout(std430, binding = 4) readonly buffer Bt { uint block_table[]; };

#include "kv_cache.glsl"

layout(push_constant) uniform Push {
    uint n_tokens;
    uint pos0;
    uint n_head_kv;
    uint head_dim;
    uint page_size;
    uint sink_pages;
    uint ring_pages;
} pc;

#if KV_QUANT
// roundf (half away from zero) of v, exactly: floor(a + 0.5) can round up a value just below
// one half (a + 0.5 rounds to the next integer in fp32).
float round_away(float v) {
    const float a = abs(v);
    float r = floor(a + 0.5);
    if (r - a > 0.5) r -= 1.0;
    return v < 0.0 ? -r : r;
}

// Quantizes x (32 values: a block, or a block of fewer values followed by zeros, which change
// neither its maximum nor its scale) into the first NW words starting at value word `vw0` and
// scale half `sh`.
#define QUANTIZE_BLOCK(pool, x, vw0, sh, NW)                                                \
    {                                                                                       \
        float amax_ = 0.0, max_ = 0.0;                                                      \
        [[unroll]] for (uint j_ = 0; j_ < 32; ++j_) {                                       \
            if (amax_ < abs(x[j_])) {                                                       \
                amax_ = abs(x[j_]);                                                         \
                max_ = x[j_];                                                               \
            }                                                                               \
        }                                                                                   \
        const float d_ = KV_QUANT == 8 ? amax_ / 127.0 : max_ / -8.0;                       \
        const float id_ = d_ != 0.0 ? 1.0 / d_ : 0.0;                                       \
        if (KV_QUANT == 8) {                                                                \
            [[unroll]] for (uint w_ = 0; w_ < 8; ++w_) {                                    \
                uint word_ = 0;                                                             \
                [[unroll]] for (uint b_ = 0; b_ < 4; ++b_) {                                \
                    precise float v_ = x[4 * w_ + b_] * id_;                            \
                    const float q_ = clamp(round_away(v_), -127.0, 127.0);                  \
                    word_ |= (uint(int(q_)) & 0xFFu) << (8 * b_);                           \
                }                                                                           \
                if (w_ < (NW)) pool[(vw0) + w_] = word_;                                    \
            }                                                                               \
        } else {                                                                            \
            [[unroll]] for (uint w_ = 0; w_ < 4; ++w_) {                                    \
                uint word_ = 0;                                                             \
                [[unroll]] for (uint b_ = 0; b_ < 8; ++b_) {                                \
                    precise float t_ = x[8 * w_ + b_] * id_ + 8.5;                      \
                    t_ = clamp(t_, 0.0, 15.0);                                              \
                    word_ |= uint(t_) << (4 * b_);                                          \
                }                                                                           \
                if (w_ < (NW)) pool[(vw0) + w_] = word_;                                    \
            }                                                                               \
        }                                                                                   \
        const uint sbits_ = packHalf2x16(vec2(d_, 0.0));                                    \
        const uint shift_ = 16 * ((sh) & 1);                                                \
        atomicAnd(pool[(sh) >> 1], ~(0xFFFFu << shift_));                                   \
        atomicOr(pool[(sh) >> 1], sbits_ << shift_);                                        \
    }
#endif

void main() {
#if KV_QUANT
    const uint qb = kv_qblock(pc.head_dim);  // values per block
    const uint nb = pc.head_dim / qb;
    const uint idx = kv_group_index() * WG + gl_LocalInvocationIndex;
    if (idx >= pc.n_tokens * pc.n_head_kv * nb) return;
    const uint b = idx % nb;
    const uint row = idx / nb;  // token * n_head_kv + kv head
    const uint kvh = row % pc.n_head_kv;
    const uint t = row / pc.n_head_kv;
    const uint vw = KV_QUANT == 8 ? (pc.head_dim + 3) / 4 : (pc.head_dim + 7) / 8;
    const uvec2 a = kv_qrow(pc.pos0 + t, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages,
                            pc.ring_pages, pc.head_dim, vw);
    const uint vw0 = a.x + b * (KV_QUANT == 8 ? 8 : 4);
    const uint sh = a.y + b;
    const uint src = qb * idx;
    float x[32];
    if (qb == 32) {
        [[unroll]] for (uint j = 0; j < 32; ++j) x[j] = k_in[src + j];
        QUANTIZE_BLOCK(k_pool, x, vw0, sh, KV_QUANT == 8 ? 8u : 4u)
        [[unroll]] for (uint j = 0; j < 32; ++j) x[j] = v_in[src + j];
        QUANTIZE_BLOCK(v_pool, x, vw0, sh, KV_QUANT == 8 ? 8u : 4u)
    } else {
        // D < 32: the block is the whole row, vw words (the padding holds quantized zeros).
        [[unroll]] for (uint j = 0; j < 32; ++j) {
            x[j] = 0.0;
            if (j < qb) x[j] = k_in[src + j];
        }
        QUANTIZE_BLOCK(k_pool, x, vw0, sh, vw)
        [[unroll]] for (uint j = 0; j < 32; ++j) {
            x[j] = 0.0;
            if (j < qb) x[j] = v_in[src + j];
        }
        QUANTIZE_BLOCK(v_pool, x, vw0, sh, vw)
    }
#else
    const uint half_dim = pc.head_dim / 2;
    const uint idx = kv_group_index() * WG + gl_LocalInvocationIndex;
    if (idx >= pc.n_tokens * pc.n_head_kv * half_dim) return;
    const uint pair = idx % half_dim;
    const uint row = idx / half_dim;  // token * n_head_kv + kv head
    const uint kvh = row % pc.n_head_kv;
    const uint t = row / pc.n_head_kv;
    const uint dst = kv_row(pc.pos0 + t, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages,
                            pc.ring_pages) * half_dim + pair;
    const uint src = 2 * idx;
#if KV_F16
    k_pool[dst] = packHalf2x16(vec2(k_in[src], k_in[src + 1]));
    v_pool[dst] = packHalf2x16(vec2(v_in[src], v_in[src + 1]));
#else
    k_pool[2 * dst] = k_in[src];
    k_pool[2 * dst + 1] = k_in[src + 1];
    v_pool[2 * dst] = v_in[src];
    v_pool[2 * dst + 1] = v_in[src + 1];
#endif
#endif
}
