#version 450
// Causal GQA attention over the paged KV cache, "prefill" shape: many query rows per KV head.
// Rows, visibility (window, sinks), the virtual key range, splits and the output/partials
// layout are those of attn_decode.comp.
//
// Workgroup (x, y, z) = (block of BR rows, KV head, split). Per tile of BC keys, K and then V
// are staged in shared memory as vec4 rows padded to D/4 + 1 (conflict-free column reads), so
// each K/V element read from the pool serves BR query rows.
//   scores: invocation t takes key c = t % BC for rows t / BC + k * (WG / BC): one K vec4 load
//           serves NS rows (the q loads are broadcasts).
//   softmax: one invocation per row updates its running max/sum (online softmax, fp32).
//   P V:    invocation t owns output column vec4 t % D4 of rows t / D4 + k * (WG / D4): per
//           4 keys, 4 V vec4 loads and one vec4 of P per row feed 16 FMAs per row.
// Needs D % 4 == 0, BC % 4 == 0, BC <= WG, D / 4 <= WG. Shared memory:
// BR*D + BC*(D+4) + BR*BC + 3*BR floats.
// Variants: f32/f16 pools x VEC (one 16-byte (F32) or 8-byte (F16) load per 4 elements; pool
// bindings 16-byte aligned); q8_0/q4_0 pools (KV_QUANT 8/4: 4 elements are one word (Q8_0) or
// half a word (Q4_0) times their block's fp16 scale; QB = kv_qblock(D) values per scale).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;  // power of two
layout(constant_id = 1) const uint D = 128;   // head_dim, multiple of 4
layout(constant_id = 2) const uint BR = 16;   // query rows per workgroup
layout(constant_id = 3) const uint BC = 16;   // keys per tile, multiple of 4, <= WG
// False: no window, sinks or ring (see attn_decode.comp).
layout(constant_id = 4) const bool WINDOWED = true;

layout(std430, binding = 0) readonly buffer Qb { float q[]; };
// LOAD4(pool, base, d4): elements 4 * d4 .. 4 * d4 + 3 of the row at `base` (ROW(pos)) as a vec4.
#if KV_QUANT
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define KV_BASE uvec2
#define ROW(pos) kv_qrow(pos, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages, KV_RING_PAGES, D, QVW)
#if KV_QUANT == 8
vec4 q8_4(uint w, float d) {
    const int wi = int(w);
    return vec4(bitfieldExtract(wi, 0, 8), bitfieldExtract(wi, 8, 8), bitfieldExtract(wi, 16, 8),
                bitfieldExtract(wi, 24, 8)) * d;
}
#define LOAD4(pool, base, d4) \
    q8_4(pool[(base).x + (d4)], KV_SCALE(pool, (base).y + (d4) / (QB / 4)))
#else
vec4 q4_4(uint w, float d) {
    return (vec4(bitfieldExtract(w, 0, 4), bitfieldExtract(w, 4, 4), bitfieldExtract(w, 8, 4),
                 bitfieldExtract(w, 12, 4)) - 8.0) * d;
}
#define LOAD4(pool, base, d4)                                     \
    q4_4(pool[(base).x + (d4) / 2] >> (16 * ((d4) & 1)),          \
         KV_SCALE(pool, (base).y + (d4) / (QB / 4)))
#endif
#elif KV_F16 && VEC
layout(std430, binding = 1) readonly buffer Kb { uvec2 k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uvec2 v_pool[]; };
#define LOAD4E(pool, e) \
    vec4(unpackHalf2x16(pool[(e) >> 2].x), unpackHalf2x16(pool[(e) >> 2].y))
#elif KV_F16
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define LOAD4E(pool, e) \
    vec4(unpackHalf2x16(pool[(e) >> 1]), unpackHalf2x16(pool[((e) >> 1) + 1]))
#elif VEC
layout(std430, binding = 1) readonly buffer Kb { vec4 k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { vec4 v_pool[]; };
#define LOAD4E(pool, e) pool[(e) >> 2]
#else
layout(std430, binding = 1) readonly buffer Kb { float k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { float v_pool[]; };
#define LOAD4E(pool, e) vec4(pool[e], pool[(e) + 1], pool[(e) + 2], pool[(e) + 3])
#endif
#if !KV_QUANT
#define KV_BASE uint
#define ROW(pos) (kv_row(pos, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages, KV_RING_PAGES) * D)
#define LOAD4(pool, base, d4) LOAD4E(pool, (base) + 4 * (d4))
#endif
layout(std430, binding = 3) readonly buffer Bt { uint block_table[]; };
layout(std430, binding = 4) writeonly buffer Ob { float o[]; };

#include "kv_cache.glsl"
#define KV_RING_PAGES (WINDOWED ? pc.ring_pages : 0u)
#define KV_WINDOW (WINDOWED ? pc.window : 0u)
#define KV_SINKS (WINDOWED ? pc.sinks : 0u)

layout(push_constant) uniform Push {
    uint n_tokens;
    uint pos0;
    uint n_head;
    uint n_head_kv;
    uint page_size;
    uint window;
    uint n_split;
    uint keys_per_split;
    float scale;
    uint sinks;
    uint sink_pages;
    uint ring_pages;  // 0: identity block table
    float softcap;    // > 0: scores s -> softcap * tanh(s / softcap) (after the scale)
} pc;

float soft_cap(float s) { return pc.softcap > 0.0 ? pc.softcap * tanh(clamp(s / pc.softcap, -15.0, 15.0)) : s; }

const float LOWEST = -3.402823466e+38;
const uint D4 = D / 4;
const uint DP4 = D4 + 1;        // padded shared row, in vec4
const uint BC4 = BC / 4;
const uint NRS = WG / BC;        // row groups of the score phase
const uint NS = (BR + NRS - 1) / NRS;
const uint NRA = WG / D4;        // row groups of the P V phase
const uint NA = (BR + NRA - 1) / NRA;
const uint NIT = (BC * D4 + WG - 1) / WG;  // K/V staging loads per invocation and tile
const uint QVW = KV_QUANT == 8 ? (D + 3) / 4 : (D + 7) / 8;  // value words per quantized row
const uint QB = D < 32 ? D : 32;  // values per scale (kv_qblock) of quantized rows (D >= 4)

shared vec4 q_sh[BR * D4];       // q * scale
shared vec4 kv_sh[BC * DP4];
shared vec4 s_sh[BR * BC4];      // scores, then probabilities
shared float m_sh[BR];
shared float l_sh[BR];
shared float a_sh[BR];

void main() {
    const float NEG_INF = uintBitsToFloat(0xFF800000u);
    const uint t = gl_LocalInvocationIndex;
    const uint G = pc.n_head / pc.n_head_kv;
    const uint kvh = gl_WorkGroupID.y;
    const uint split = gl_WorkGroupID.z;
    const uint n_rows = pc.n_tokens * G;
    const uint row0 = gl_WorkGroupID.x * BR;
    if (row0 >= n_rows) return;
    const uint n_valid = min(BR, n_rows - row0);

    for (uint e = t; e < BR * D4; e += WG) {
        const uint i = e / D4;
        vec4 v = vec4(0.0);
        if (i < n_valid) {
            const uint r = row0 + i;
            const uint qe = ((r / G) * pc.n_head + kvh * G + r % G) * D + 4 * (e % D4);
            v = vec4(q[qe], q[qe + 1], q[qe + 2], q[qe + 3]) * pc.scale;
        }
        q_sh[e] = v;
    }
    for (uint i = t; i < BR; i += WG) {
        m_sh[i] = LOWEST;
        l_sh[i] = 0.0;
    }

    // Virtual key range of this block and split: key(v) = v < s1 ? v : v + koff.
    const uint p_first = pc.pos0 + row0 / G;
    const uint p_last = pc.pos0 + (row0 + n_valid - 1) / G;
    const uint w0 = KV_WINDOW != 0 && p_first + 1 > KV_WINDOW ? p_first + 1 - KV_WINDOW : 0;
    const uint s1 = min(KV_SINKS, w0);
    const uint koff = w0 - s1;
    const uint k0 = split * pc.keys_per_split;
    const uint k1 = min(p_last + 1 - koff, (split + 1) * pc.keys_per_split);

    const uint sc = t % BC, srg = t / BC;  // score phase: key, row group
    const uint ad = t % D4, arg = t / D4;  // P V phase: column, row group (idle if >= NRA)
    vec4 acc[NA];
    [[unroll]] for (uint k = 0; k < NA; ++k) acc[k] = vec4(0.0);
    barrier();

    for (uint kt = k0; kt < k1; kt += BC) {
        // Staging: element group e = t + i * WG (key c, vec4 d4); the K pass looks the rows
        // up and the V pass reuses them.
        KV_BASE rows[NIT];
        [[unroll]] for (uint i = 0; i < NIT; ++i) {
            const uint e = t + i * WG;
            const uint c = e / D4, d4 = e % D4;
            const uint vc = kt + c;
            vec4 v = vec4(0.0);
            rows[i] = KV_BASE(0);
            if (e < BC * D4 && vc < k1) {
                rows[i] = ROW(vc < s1 ? vc : vc + koff);
                v = LOAD4(k_pool, rows[i], d4);
            }
            if (e < BC * D4) kv_sh[c * DP4 + d4] = v;
        }
        barrier();
        {
            float s[NS];
            [[unroll]] for (uint k = 0; k < NS; ++k) s[k] = 0.0;
            for (uint d4 = 0; d4 < D4; ++d4) {
                const vec4 kk = kv_sh[sc * DP4 + d4];
                [[unroll]] for (uint k = 0; k < NS; ++k) {
                    const uint r = min(srg + k * NRS, BR - 1);
                    s[k] += dot(q_sh[r * D4 + d4], kk);
                }
            }
            const uint vj = kt + sc;
            const uint j = vj < s1 ? vj : vj + koff;
            [[unroll]] for (uint k = 0; k < NS; ++k) {
                const uint r = srg + k * NRS;
                if (r < BR) {
                    const uint p = pc.pos0 + (row0 + r) / G;
                    const bool vis = r < n_valid && vj < k1 && j <= p &&
                                     (KV_WINDOW == 0 || j + KV_WINDOW > p || j < KV_SINKS);
                    s_sh[r * BC4 + sc / 4][sc % 4] = vis ? soft_cap(s[k]) : NEG_INF;
                }
            }
        }
        barrier();
        [[unroll]] for (uint i = 0; i < NIT; ++i) {
            const uint e = t + i * WG;
            const uint c = e / D4, d4 = e % D4;
            vec4 v = vec4(0.0);
            if (e < BC * D4 && kt + c < k1) v = LOAD4(v_pool, rows[i], d4);
            if (e < BC * D4) kv_sh[c * DP4 + d4] = v;
        }
        for (uint r = t; r < BR; r += WG) {
            const float mo = m_sh[r];
            float mx = mo;
            for (uint c4 = 0; c4 < BC4; ++c4) {
                const vec4 sv = s_sh[r * BC4 + c4];
                mx = max(mx, max(max(sv.x, sv.y), max(sv.z, sv.w)));
            }
            float sum = 0.0;
            for (uint c4 = 0; c4 < BC4; ++c4) {
                const vec4 sv = s_sh[r * BC4 + c4];
                vec4 pr;
                pr.x = sv.x == NEG_INF ? 0.0 : exp(sv.x - mx);
                pr.y = sv.y == NEG_INF ? 0.0 : exp(sv.y - mx);
                pr.z = sv.z == NEG_INF ? 0.0 : exp(sv.z - mx);
                pr.w = sv.w == NEG_INF ? 0.0 : exp(sv.w - mx);
                s_sh[r * BC4 + c4] = pr;
                sum += (pr.x + pr.y) + (pr.z + pr.w);
            }
            const float a = exp(mo - mx);
            a_sh[r] = a;
            l_sh[r] = l_sh[r] * a + sum;
            m_sh[r] = mx;
        }
        barrier();
        if (arg < NRA) {
            [[unroll]] for (uint k = 0; k < NA; ++k) acc[k] *= a_sh[min(arg + k * NRA, BR - 1)];
            for (uint c4 = 0; c4 < BC4; ++c4) {
                const vec4 v0 = kv_sh[(4 * c4 + 0) * DP4 + ad];
                const vec4 v1 = kv_sh[(4 * c4 + 1) * DP4 + ad];
                const vec4 v2 = kv_sh[(4 * c4 + 2) * DP4 + ad];
                const vec4 v3 = kv_sh[(4 * c4 + 3) * DP4 + ad];
                [[unroll]] for (uint k = 0; k < NA; ++k) {
                    const vec4 pw = s_sh[min(arg + k * NRA, BR - 1) * BC4 + c4];
                    acc[k] += pw.x * v0 + pw.y * v1 + pw.z * v2 + pw.w * v3;
                }
            }
        }
        barrier();
    }

    if (arg >= NRA) return;  // after the last barrier
    const uint n_out = pc.n_tokens * pc.n_head;
    [[unroll]] for (uint k = 0; k < NA; ++k) {
        const uint i = arg + k * NRA;
        if (i >= n_valid) break;
        const uint r = row0 + i;
        const uint orow = (r / G) * pc.n_head + kvh * G + r % G;
        const bool final_out = pc.n_split == 1;
        const vec4 v = final_out ? acc[k] / l_sh[i] : acc[k];
        const uint ob = (final_out ? orow : split * n_out + orow) * D + 4 * ad;
        o[ob] = v.x;
        o[ob + 1] = v.y;
        o[ob + 2] = v.z;
        o[ob + 3] = v.w;
        if (!final_out && ad == 0) {
            const uint ml = pc.n_split * n_out * D + 2 * (split * n_out + orow);
            o[ml] = m_sh[i];
            o[ml + 1] = l_sh[i];
        }
    }
}
