#version 450
// Causal GQA attention over the paged KV cache, "decode" shape: few query rows per KV head.
// Also correct (if not the fastest) for any number of query tokens.
//
// Query rows: for KV head kvh, row r in [0, n_tokens * G) (G = n_head / n_head_kv) is token
// t = r / G of query head h = kvh * G + r % G, at position p = pos0 + t; it sees keys j with
// j <= p and (window == 0 or j > p - window).
//
// Workgroup (x, y, z) = (block of R rows, KV head, split): the split covers keys
// [z * keys_per_split, (z + 1) * keys_per_split). One tile = WG keys, one key per invocation:
// the invocation computes its key's scores for the R rows (q in shared memory, K read straight
// from the pool), the workgroup reduces per-row max and sum (reduce.glsl: shared memory or
// subgroup arithmetic, any subgroup size), and the invocations then accumulate P V over the
// tile, each owning D-slices of the R output rows. Online softmax (running max m, sum l) in
// fp32; masked scores are -inf and get weight exactly 0.
//
// Output: n_split == 1: out[t][h][:] = acc / l (normalized).
//         n_split > 1:  scratch partials, reduced by attn_reduce.comp:
//           o part: [n_split][n_tokens * n_head][D]  (unnormalized acc)
//           m, l:   at float offset n_split * n_tokens * n_head * D: [n_split][n_tokens * n_head][2]
// Shared memory: R * D + 2 * R * WG floats.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;  // power of two
layout(constant_id = 1) const uint D = 128;   // head_dim, even
layout(constant_id = 2) const uint R = 8;     // query rows per workgroup

#define RED_WG WG
#define RED_N R
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer Qb { float q[]; };
#if KV_F16
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define K_PAIR(w) unpackHalf2x16(k_pool[w])
#define V_ELEM(e) unpackHalf2x16(v_pool[(e) >> 1])[(e) & 1]
#else
layout(std430, binding = 1) readonly buffer Kb { float k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { float v_pool[]; };
#define K_PAIR(w) vec2(k_pool[2 * (w)], k_pool[2 * (w) + 1])
#define V_ELEM(e) v_pool[e]
#endif
layout(std430, binding = 3) readonly buffer Bt { uint block_table[]; };
layout(std430, binding = 4) writeonly buffer Ob { float o[]; };

#include "kv_cache.glsl"

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
} pc;

const float LOWEST = -3.402823466e+38;     // finite start for running maxima
const uint HD = D / 2;                     // pairs per row
// Output ownership: NG groups of D invocations split the keys of a tile (when D < WG);
// invocation t owns dims t % D + k * WG, k < DPT.
const uint NG = WG >= D ? WG / D : 1;
const uint DPT = (D + WG - 1) / WG;

shared vec2 q_sh[R * HD];
shared float p_sh[R * WG];

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

    // Key range of this block and split.
    const uint p_first = pc.pos0 + row0 / G;
    const uint p_last = pc.pos0 + (row0 + n_valid - 1) / G;
    uint k0 = pc.window != 0 && p_first + 1 > pc.window ? p_first + 1 - pc.window : 0;
    uint k1 = p_last + 1;
    k0 = max(k0, split * pc.keys_per_split);
    k1 = min(k1, (split + 1) * pc.keys_per_split);

    float m[R], l[R], acc[R * DPT];
    for (uint i = 0; i < R; ++i) {
        m[i] = LOWEST;
        l[i] = 0.0;
    }
    for (uint i = 0; i < R * DPT; ++i) acc[i] = 0.0;
    const uint grp = t / D;
    barrier();

    for (uint kt = k0; kt < k1; kt += WG) {
        const uint j = kt + t;
        float s[R];
        for (uint i = 0; i < R; ++i) s[i] = 0.0;
        if (j < k1) {
            const uint kw = kv_row(j, kvh, pc.page_size, pc.n_head_kv) * HD;
            for (uint d = 0; d < HD; ++d) {
                const vec2 kk = K_PAIR(kw + d);
                for (uint i = 0; i < R; ++i) s[i] += dot(q_sh[i * HD + d], kk);
            }
        }
        for (uint i = 0; i < R; ++i) {
            const uint p = pc.pos0 + (row0 + i) / G;
            const bool vis = j < k1 && i < n_valid && j <= p && (pc.window == 0 || j + pc.window > p);
            s[i] = vis ? s[i] * pc.scale : NEG_INF;
        }
        float mx[R];
        for (uint i = 0; i < R; ++i) mx[i] = s[i];
        red_max(mx);
        float alpha[R];
        for (uint i = 0; i < R; ++i) {
            const float mn = max(m[i], mx[i]);
            alpha[i] = exp(m[i] - mn);
            m[i] = mn;
            s[i] = s[i] == NEG_INF ? 0.0 : exp(s[i] - mn);
            p_sh[i * WG + t] = s[i];
        }
        red_sum(s);  // its barriers also publish p_sh
        for (uint i = 0; i < R; ++i) l[i] = l[i] * alpha[i] + s[i];

        for (uint i = 0; i < R; ++i)
            for (uint k = 0; k < DPT; ++k) acc[i * DPT + k] *= alpha[i];
        const uint nc = min(WG, k1 - kt);
        if (grp < NG) {
            for (uint c = grp; c < nc; c += NG) {
                const uint vrow = kv_row(kt + c, kvh, pc.page_size, pc.n_head_kv) * D;
                for (uint k = 0; k < DPT; ++k) {
                    const uint d = t % D + k * WG;
                    if (d < D) {
                        const float v = V_ELEM(vrow + d);
                        for (uint i = 0; i < R; ++i) acc[i * DPT + k] += p_sh[i * WG + c] * v;
                    }
                }
            }
        }
        barrier();  // p_sh is rewritten by the next tile
    }

    // Combine the NG key groups (p_sh holds R * WG >= R * NG * D floats).
    if (NG > 1) {
        if (grp < NG)
            for (uint i = 0; i < R; ++i) p_sh[(i * NG + grp) * D + t % D] = acc[i * DPT];
        barrier();
        if (grp == 0)
            for (uint i = 0; i < R; ++i) {
                float a = 0.0;
                for (uint g = 0; g < NG; ++g) a += p_sh[(i * NG + g) * D + t];
                acc[i * DPT] = a;
            }
        if (grp != 0) return;  // after the last barrier
    }

    const uint n_out = pc.n_tokens * pc.n_head;
    for (uint i = 0; i < n_valid; ++i) {
        const uint r = row0 + i;
        const uint orow = (r / G) * pc.n_head + kvh * G + r % G;
        if (pc.n_split == 1) {
            const float inv = 1.0 / l[i];
            for (uint k = 0; k < DPT; ++k) {
                const uint d = t % D + k * WG;
                if (d < D) o[orow * D + d] = acc[i * DPT + k] * inv;
            }
        } else {
            const uint prow = split * n_out + orow;
            for (uint k = 0; k < DPT; ++k) {
                const uint d = t % D + k * WG;
                if (d < D) o[prow * D + d] = acc[i * DPT + k];
            }
            if (t == 0) {
                const uint ml = pc.n_split * n_out * D + 2 * prow;
                o[ml] = m[i];
                o[ml + 1] = l[i];
            }
        }
    }
}
