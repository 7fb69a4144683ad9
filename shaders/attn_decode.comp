#version 450
// Causal GQA attention over the paged KV cache, "decode" shape: few query rows per KV head.
// Also correct (if not the fastest) for any number of query tokens.
//
// Query rows: for KV head kvh, row r in [0, n_tokens * G) (G = n_head / n_head_kv) is token
// t = r / G of query head h = kvh * G + r % G, at position p = pos0 + t; it sees keys j with
// j <= p and (window == 0 or j + window > p or j < sinks).
//
// Keys of a block of rows (positions p_first..p_last): the sinks [0, s1) and the window
// [w0, p_last] (w0 = p_first + 1 - window, or 0; s1 = min(sinks, w0)), numbered 0.. as one
// "virtual" range (v < s1: key v; else key w0 + v - s1); splits cut that range. Keys outside it
// are never read (with a ring block table their page may hold another position).
//
// Workgroup (x, y, z) = (block of R rows, KV head, split): the split covers keys
// [z * keys_per_split, (z + 1) * keys_per_split). One tile = WG keys, one key per invocation:
// the invocation computes its key's scores for the R rows (q in shared memory, K read straight
// from the pool, KB unit loads of the row issued before their use), keeps the row's base in
// row_sh for the V pass, the workgroup reduces per-row max and sum (reduce.glsl: shared memory
// or subgroup arithmetic, any subgroup size), and the invocations then accumulate P V over the
// tile, each owning units of U elements (one 16-byte load in the VEC variants) of the R output
// rows, NB keys at a time (their V loads issued before the accumulation, so NB memory
// latencies overlap; the last batch of a tile masks the keys past its end, which are not read).
// Online softmax (running max m, sum l) in fp32; masked scores are -inf and get weight exactly 0.
//
// Quantized pools (KV_QUANT 8: Q8_0, 4: Q4_0; kv_cache.glsl layout, QB = kv_qblock(D) values
// per scale): units of 8 elements (Q8_0: two words, Q4_0: one word) times their block's fp16
// scale; head_dim 2 and 4 (QSMALL variants): units of 2 elements (Q8_0: half a word, Q4_0: one
// byte).
//
// Output: n_split == 1: out[t][h][:] = acc / l (normalized).
//         n_split > 1:  scratch partials, reduced by attn_reduce.comp:
//           o part: [n_split][n_tokens * n_head][D]  (unnormalized acc)
//           m, l:   at float offset n_split * n_tokens * n_head * D: [n_split][n_tokens * n_head][2]
// Shared memory: R * D + 2 * R * WG floats, plus WG row bases (one word each; two for quantized
// pools).
// Variants: f32/f16/q8_0/q4_0 pools x VEC (not quantized) (16-byte loads: D % 4 == 0 for F32, D % 8 == 0 for F16, pool
// bindings 16-byte aligned) x QSMALL (quantized pools, D < 8: _s) x subgroup-arithmetic
// reductions (_sg).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifndef QSMALL
#define QSMALL 0
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;  // power of two
layout(constant_id = 1) const uint D = 128;   // head_dim, even
layout(constant_id = 2) const uint R = 8;     // query rows per workgroup
// False: no window, sinks or ring (the push constants' window, sinks and ring_pages are 0), so
// the plain causal mask and block table compile to the code without them.
layout(constant_id = 3) const bool WINDOWED = true;

#define RED_WG WG
#define RED_N R
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer Qb { float q[]; };
// K/V are read in units of U elements (one load each); ROW(pos) is a row's base (KV_BASE), and
// LOAD_ROW_UNIT(pool, base, u, out_v) reads unit u of that row.
#if KV_QUANT && QSMALL
// D < 8 (one block per row): unit u is elements 2u, 2u + 1.
#define U 2
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define KV_BASE uvec2
#define ROW(pos) kv_qrow(pos, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages, KV_RING_PAGES, D, QVW)
#if KV_QUANT == 8
#define LOAD_ROW_UNIT(pool, base, u, out_v)                                  \
    {                                                                        \
        const float d_ = KV_SCALE(pool, (base).y);                           \
        const int w_ = int(pool[(base).x + (u) / 2]);                        \
        const int s_ = int(16 * ((u) & 1));                                  \
        out_v[0] = float(bitfieldExtract(w_, s_, 8)) * d_;                   \
        out_v[1] = float(bitfieldExtract(w_, s_ + 8, 8)) * d_;               \
    }
#else
#define LOAD_ROW_UNIT(pool, base, u, out_v)                                  \
    {                                                                        \
        const float d_ = KV_SCALE(pool, (base).y);                           \
        const uint w_ = pool[(base).x + (u) / 4];                            \
        const int s_ = int(8 * ((u) & 3));                                   \
        out_v[0] = float(int(bitfieldExtract(w_, s_, 4)) - 8) * d_;          \
        out_v[1] = float(int(bitfieldExtract(w_, s_ + 4, 4)) - 8) * d_;      \
    }
#endif
#elif KV_QUANT
#define U 8
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define KV_BASE uvec2
#define ROW(pos) kv_qrow(pos, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages, KV_RING_PAGES, D, QVW)
// Unit u's block: (8 * u) / QB (u / 4 when QB == 32; 0 when D < 32).
#if KV_QUANT == 8
#define LOAD_ROW_UNIT(pool, base, u, out_v)                                  \
    {                                                                        \
        const float d_ = KV_SCALE(pool, (base).y + (u) / (QB / 8));          \
        const int w0_ = int(pool[(base).x + 2 * (u)]);                       \
        const int w1_ = int(pool[(base).x + 2 * (u) + 1]);                   \
        [[unroll]] for (int b_ = 0; b_ < 4; ++b_) {                          \
            out_v[b_] = float(bitfieldExtract(w0_, 8 * b_, 8)) * d_;         \
            out_v[4 + b_] = float(bitfieldExtract(w1_, 8 * b_, 8)) * d_;     \
        }                                                                    \
    }
#else
#define LOAD_ROW_UNIT(pool, base, u, out_v)                                  \
    {                                                                        \
        const float d_ = KV_SCALE(pool, (base).y + (u) / (QB / 8));          \
        const uint w_ = pool[(base).x + (u)];                                \
        [[unroll]] for (uint b_ = 0; b_ < 8; ++b_)                           \
            out_v[b_] = float(int(bitfieldExtract(w_, int(4 * b_), 4)) - 8) * d_; \
    }
#endif
#elif KV_F16 && VEC
#define U 8
layout(std430, binding = 1) readonly buffer Kb { uvec4 k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uvec4 v_pool[]; };
#define LOAD_UNIT(pool, u, out_v)                 \
    {                                             \
        const uvec4 w_ = pool[u];                 \
        const vec2 a_ = unpackHalf2x16(w_.x);     \
        const vec2 b_ = unpackHalf2x16(w_.y);     \
        const vec2 c_ = unpackHalf2x16(w_.z);     \
        const vec2 d_ = unpackHalf2x16(w_.w);     \
        out_v[0] = a_.x; out_v[1] = a_.y;         \
        out_v[2] = b_.x; out_v[3] = b_.y;         \
        out_v[4] = c_.x; out_v[5] = c_.y;         \
        out_v[6] = d_.x; out_v[7] = d_.y;         \
    }
#elif KV_F16
#define U 2
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define LOAD_UNIT(pool, u, out_v)                 \
    {                                             \
        const vec2 a_ = unpackHalf2x16(pool[u]);  \
        out_v[0] = a_.x; out_v[1] = a_.y;         \
    }
#elif VEC
#define U 4
layout(std430, binding = 1) readonly buffer Kb { vec4 k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { vec4 v_pool[]; };
#define LOAD_UNIT(pool, u, out_v)                 \
    {                                             \
        const vec4 a_ = pool[u];                  \
        out_v[0] = a_.x; out_v[1] = a_.y;         \
        out_v[2] = a_.z; out_v[3] = a_.w;         \
    }
#else
#define U 2
layout(std430, binding = 1) readonly buffer Kb { float k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { float v_pool[]; };
#define LOAD_UNIT(pool, u, out_v)                 \
    {                                             \
        out_v[0] = pool[2 * (u)];                 \
        out_v[1] = pool[2 * (u) + 1];             \
    }
#endif
#if !KV_QUANT
#define KV_BASE uint
#define ROW(pos) (kv_row(pos, kvh, pc.page_size, pc.n_head_kv, pc.sink_pages, KV_RING_PAGES) * NU)
#define LOAD_ROW_UNIT(pool, base, u, out_v) LOAD_UNIT(pool, (base) + (u), out_v)
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
    uint window;  // 0: none
    uint n_split;
    uint keys_per_split;
    float scale;
    uint sinks;
    uint sink_pages;
    uint ring_pages;  // 0: identity block table
    float softcap;    // > 0: scores s -> softcap * tanh(s / softcap) (after the scale)
} pc;

float soft_cap(float s) { return pc.softcap > 0.0 ? pc.softcap * tanh(clamp(s / pc.softcap, -15.0, 15.0)) : s; }

const float LOWEST = -3.402823466e+38;     // finite start for running maxima
const uint HD = D / 2;                     // q pairs per row
const uint NU = D / U;                     // load units per K/V row
// P V ownership: NG groups of NU invocations split the keys of a tile (when NU < WG);
// invocation t owns units t % NU + k * WG, k < UPT, of all R rows.
const uint NG = WG >= NU ? WG / NU : 1;
const uint UPT = (NU + WG - 1) / WG;
const uint QVW = KV_QUANT == 8 ? (D + 3) / 4 : (D + 7) / 8;  // value words per quantized row
const uint QB = D < 32 ? D : 32;  // values per scale (kv_qblock) of quantized rows

// Loads issued together: KB units of a K row (scores), then NB keys' units of V (P V). Larger
// batches multiply the unrolled code (KB 8 made lavapipe compile the quantized variants about
// twice as slowly) for loads that a GPU compiler may hoist from the loop by itself anyway.
const uint KB = KV_QUANT != 0 ? 2 : 4;
const uint NB = 4;

shared vec2 q_sh[R * HD];  // after the key loop: the buffer that combines the NG groups
shared float p_sh[R * WG];
shared KV_BASE row_sh[WG];  // K/V row base of key kt + t of the tile (the pools share the layout)

void main() {
    const float NEG_INF = uintBitsToFloat(0xFF800000u);
    const uint t = gl_LocalInvocationIndex;
    const uint G = pc.n_head / pc.n_head_kv;
    const uint kvh = gl_WorkGroupID.y;
    const uint split = gl_WorkGroupID.z;
    const uint n_rows = pc.n_tokens * G;
    const uint row0 = gl_WorkGroupID.x * R;
    if (row0 >= n_rows) return;
    const uint n_valid = min(R, n_rows - row0);

    // Load q rows (invalid rows: zeros, never used).
    for (uint e = t; e < R * HD; e += WG) {
        const uint i = e / HD;
        vec2 v = vec2(0.0);
        if (i < n_valid) {
            const uint r = row0 + i;
            const uint qrow = (r / G) * pc.n_head + kvh * G + r % G;
            const uint qe = qrow * D + 2 * (e % HD);
            v = vec2(q[qe], q[qe + 1]);
        }
        q_sh[e] = v;
    }

    // Virtual key range of this block and split: key(v) = v < s1 ? v : v + koff.
    const uint p_first = pc.pos0 + row0 / G;
    const uint p_last = pc.pos0 + (row0 + n_valid - 1) / G;
    const uint w0 = KV_WINDOW != 0 && p_first + 1 > KV_WINDOW ? p_first + 1 - KV_WINDOW : 0;
    const uint s1 = min(KV_SINKS, w0);
    const uint koff = w0 - s1;
    const uint k0 = split * pc.keys_per_split;
    const uint k1 = min(p_last + 1 - koff, (split + 1) * pc.keys_per_split);

    float m[R], l[R], acc[R * UPT * U];
    [[unroll]] for (uint i = 0; i < R; ++i) {
        m[i] = LOWEST;
        l[i] = 0.0;
    }
    [[unroll]] for (uint i = 0; i < R * UPT * U; ++i) acc[i] = 0.0;
    const uint grp = t / NU;
    barrier();

    for (uint kt = k0; kt < k1; kt += WG) {
        const uint vj = kt + t;
        const uint j = vj < s1 ? vj : vj + koff;
        float s[R];
        [[unroll]] for (uint i = 0; i < R; ++i) s[i] = 0.0;
        if (vj < k1) {
            const KV_BASE ku = ROW(j);
            row_sh[t] = ku;  // published by red_max's barriers
            // KB units at a time: their loads are all issued before the dot products.
            for (uint u0 = 0; u0 < NU; u0 += KB) {
                float kk[KB][U];
                [[unroll]] for (uint b = 0; b < KB; ++b)
                    if (u0 + b < NU) LOAD_ROW_UNIT(k_pool, ku, u0 + b, kk[b])
                [[unroll]] for (uint b = 0; b < KB; ++b) {
                    if (u0 + b < NU)
                        [[unroll]] for (uint h = 0; h < U / 2; ++h) {
                            const vec2 k2 = vec2(kk[b][2 * h], kk[b][2 * h + 1]);
                            [[unroll]] for (uint i = 0; i < R; ++i)
                                s[i] += dot(q_sh[i * HD + (u0 + b) * (U / 2) + h], k2);
                        }
                }
            }
        }
        [[unroll]] for (uint i = 0; i < R; ++i) {
            const uint p = pc.pos0 + (row0 + i) / G;
            const bool vis = vj < k1 && i < n_valid && j <= p &&
                             (KV_WINDOW == 0 || j + KV_WINDOW > p || j < KV_SINKS);
            s[i] = vis ? soft_cap(s[i] * pc.scale) : NEG_INF;
        }
        float mx[R];
        [[unroll]] for (uint i = 0; i < R; ++i) mx[i] = s[i];
        red_max(mx);
        float alpha[R];
        [[unroll]] for (uint i = 0; i < R; ++i) {
            const float mn = max(m[i], mx[i]);
            alpha[i] = exp(m[i] - mn);
            m[i] = mn;
            s[i] = s[i] == NEG_INF ? 0.0 : exp(s[i] - mn);
            p_sh[i * WG + t] = s[i];
        }
        red_sum(s);  // its barriers also publish p_sh
        [[unroll]] for (uint i = 0; i < R; ++i) l[i] = l[i] * alpha[i] + s[i];

        [[unroll]] for (uint i = 0; i < R; ++i)
            [[unroll]] for (uint k = 0; k < UPT * U; ++k) acc[i * UPT * U + k] *= alpha[i];
        // Group grp takes keys grp, grp + NG, ... of the tile, NB at a time: the batch's V loads
        // are all issued before any is used. Keys c >= nc (past the split) are not read.
        const uint nc = min(WG, k1 - kt);
        if (grp < NG) {
            for (uint c0 = grp; c0 < nc; c0 += NB * NG) {
                KV_BASE vu[NB];
                [[unroll]] for (uint b = 0; b < NB; ++b)
                    vu[b] = row_sh[min(c0 + b * NG, nc - 1)];
                [[unroll]] for (uint k = 0; k < UPT; ++k) {
                    const uint u = t % NU + k * WG;
                    if (u < NU) {
                        float vv[NB][U];
                        [[unroll]] for (uint b = 0; b < NB; ++b)
                            if (c0 + b * NG < nc) LOAD_ROW_UNIT(v_pool, vu[b], u, vv[b])
                        [[unroll]] for (uint b = 0; b < NB; ++b) {
                            const uint c = c0 + b * NG;
                            if (c < nc)
                                [[unroll]] for (uint i = 0; i < R; ++i) {
                                    const float pw = p_sh[i * WG + c];
                                    [[unroll]] for (uint x = 0; x < U; ++x)
                                        acc[(i * UPT + k) * U + x] += pw * vv[b][x];
                                }
                        }
                    }
                }
            }
        }
        barrier();  // p_sh and row_sh are rewritten by the next tile
    }

    // Combine the NG key groups into group 0, one group at a time through q_sh (R * D floats;
    // NG > 1 means UPT == 1 and each group holds all R x D outputs).
    if (NG > 1) {
        for (uint g = 1; g < NG; ++g) {
            if (grp == g)
                [[unroll]] for (uint i = 0; i < R; ++i)
                    [[unroll]] for (uint x = 0; x < U / 2; ++x)
                        q_sh[i * HD + (t % NU) * (U / 2) + x] =
                            vec2(acc[i * U + 2 * x], acc[i * U + 2 * x + 1]);
            barrier();
            if (grp == 0)
                [[unroll]] for (uint i = 0; i < R; ++i)
                    [[unroll]] for (uint x = 0; x < U / 2; ++x) {
                        const vec2 o2 = q_sh[i * HD + t * (U / 2) + x];
                        acc[i * U + 2 * x] += o2.x;
                        acc[i * U + 2 * x + 1] += o2.y;
                    }
            barrier();
        }
        if (grp != 0) return;  // after the last barrier
    }

    const uint n_out = pc.n_tokens * pc.n_head;
    [[unroll]] for (uint i = 0; i < R; ++i) {
        if (i >= n_valid) break;
        const uint r = row0 + i;
        const uint orow = (r / G) * pc.n_head + kvh * G + r % G;
        const bool final_out = pc.n_split == 1;
        const float w = final_out ? 1.0 / l[i] : 1.0;
        const uint obase = final_out ? orow * D : (split * n_out + orow) * D;
        [[unroll]] for (uint k = 0; k < UPT; ++k) {
            const uint u = t % NU + k * WG;
            if (u < NU)
                [[unroll]] for (uint x = 0; x < U; ++x)
                    o[obase + u * U + x] = acc[(i * UPT + k) * U + x] * w;
        }
        if (!final_out && t == 0) {
            const uint ml = pc.n_split * n_out * D + 2 * (split * n_out + orow);
            o[ml] = m[i];
            o[ml + 1] = l[i];
        }
    }
}
