#version 450
// Causal GQA attention over the paged KV cache, "prefill" shape: many query rows per KV head.
// Rows, visibility, splits and the output/partials layout are those of attn_decode.comp.
//
// Workgroup (x, y, z) = (block of BR rows, KV head, split). Per tile of BC keys, K and then V
// are staged in shared memory (rows padded to D + 1 floats: the score loop reads a column of
// keys across invocations without bank conflicts), so each K/V element read from the pool
// serves BR query rows. Scores S[BR][BC] go to shared memory; one invocation per row updates
// its running max/sum (online softmax, fp32) and rescales; each invocation owns NACC of the
// BR x D output accumulators. Shared memory: BR*D + BC*(D+1) + BR*BC + 3*BR floats.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint D = 128;   // head_dim, even
layout(constant_id = 2) const uint BR = 16;   // query rows per workgroup (<= WG)
layout(constant_id = 3) const uint BC = 16;   // keys per tile

layout(std430, binding = 0) readonly buffer Qb { float q[]; };
#if KV_F16
layout(std430, binding = 1) readonly buffer Kb { uint k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { uint v_pool[]; };
#define K_PAIR(w) unpackHalf2x16(k_pool[w])
#define V_PAIR(w) unpackHalf2x16(v_pool[w])
#else
layout(std430, binding = 1) readonly buffer Kb { float k_pool[]; };
layout(std430, binding = 2) readonly buffer Vb { float v_pool[]; };
#define K_PAIR(w) vec2(k_pool[2 * (w)], k_pool[2 * (w) + 1])
#define V_PAIR(w) vec2(v_pool[2 * (w)], v_pool[2 * (w) + 1])
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
    uint window;
    uint n_split;
    uint keys_per_split;
    float scale;
} pc;

const float LOWEST = -3.402823466e+38;
const uint HD = D / 2;
const uint DP = D + 1;  // padded shared row
const uint NACC = (BR * D + WG - 1) / WG;

shared float q_sh[BR * D];
shared float kv_sh[BC * DP];
shared float s_sh[BR * BC];
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

    for (uint e = t; e < BR * HD; e += WG) {
        const uint i = e / HD, d = 2 * (e % HD);
        vec2 v = vec2(0.0);
        if (i < n_valid) {
            const uint r = row0 + i;
            const uint qe = ((r / G) * pc.n_head + kvh * G + r % G) * D + d;
            v = vec2(q[qe], q[qe + 1]);
        }
        q_sh[i * D + d] = v.x;
        q_sh[i * D + d + 1] = v.y;
    }
    for (uint i = t; i < BR; i += WG) {
        m_sh[i] = LOWEST;
        l_sh[i] = 0.0;
    }

    const uint p_first = pc.pos0 + row0 / G;
    const uint p_last = pc.pos0 + (row0 + n_valid - 1) / G;
    uint k0 = pc.window != 0 && p_first + 1 > pc.window ? p_first + 1 - pc.window : 0;
    uint k1 = p_last + 1;
    k0 = max(k0, split * pc.keys_per_split);
    k1 = min(k1, (split + 1) * pc.keys_per_split);

    float acc[NACC];
    for (uint k = 0; k < NACC; ++k) acc[k] = 0.0;
    barrier();

    for (uint kt = k0; kt < k1; kt += BC) {
        for (uint e = t; e < BC * HD; e += WG) {
            const uint c = e / HD, d = 2 * (e % HD);
            vec2 v = vec2(0.0);
            if (kt + c < k1) v = K_PAIR(kv_row(kt + c, kvh, pc.page_size, pc.n_head_kv) * HD + d / 2);
            kv_sh[c * DP + d] = v.x;
            kv_sh[c * DP + d + 1] = v.y;
        }
        barrier();
        for (uint e = t; e < BR * BC; e += WG) {
            const uint r = e / BC, c = e % BC, j = kt + c;
            const uint p = pc.pos0 + (row0 + r) / G;
            float s = NEG_INF;
            if (r < n_valid && j < k1 && j <= p && (pc.window == 0 || j + pc.window > p)) {
                float a = 0.0;
                for (uint d = 0; d < D; ++d) a += q_sh[r * D + d] * kv_sh[c * DP + d];
                s = a * pc.scale;
            }
            s_sh[e] = s;
        }
        barrier();
        for (uint e = t; e < BC * HD; e += WG) {
            const uint c = e / HD, d = 2 * (e % HD);
            vec2 v = vec2(0.0);
            if (kt + c < k1) v = V_PAIR(kv_row(kt + c, kvh, pc.page_size, pc.n_head_kv) * HD + d / 2);
            kv_sh[c * DP + d] = v.x;
            kv_sh[c * DP + d + 1] = v.y;
        }
        for (uint r = t; r < BR; r += WG) {
            const float mo = m_sh[r];
            float mx = mo;
            for (uint c = 0; c < BC; ++c) mx = max(mx, s_sh[r * BC + c]);
            float sum = 0.0;
            for (uint c = 0; c < BC; ++c) {
                const float s = s_sh[r * BC + c];
                const float pr = s == NEG_INF ? 0.0 : exp(s - mx);
                s_sh[r * BC + c] = pr;
                sum += pr;
            }
            const float a = exp(mo - mx);
            a_sh[r] = a;
            l_sh[r] = l_sh[r] * a + sum;
            m_sh[r] = mx;
        }
        barrier();
        for (uint k = 0; k < NACC; ++k) {
            const uint e = t + k * WG;
            if (e < BR * D) {
                const uint r = e / D, d = e % D;
                float a = acc[k] * a_sh[r];
                for (uint c = 0; c < BC; ++c) a += s_sh[r * BC + c] * kv_sh[c * DP + d];
                acc[k] = a;
            }
        }
        barrier();
    }

    const uint n_out = pc.n_tokens * pc.n_head;
    for (uint k = 0; k < NACC; ++k) {
        const uint e = t + k * WG;
        if (e >= BR * D) break;
        const uint i = e / D, d = e % D;
        if (i >= n_valid) break;
        const uint r = row0 + i;
        const uint orow = (r / G) * pc.n_head + kvh * G + r % G;
        if (pc.n_split == 1) {
            o[orow * D + d] = acc[k] / l_sh[i];
        } else {
            o[(split * n_out + orow) * D + d] = acc[k];
        }
    }
    if (pc.n_split > 1) {
        for (uint i = t; i < n_valid; i += WG) {
            const uint r = row0 + i;
            const uint orow = (r / G) * pc.n_head + kvh * G + r % G;
            const uint ml = pc.n_split * n_out * D + 2 * (split * n_out + orow);
            o[ml] = m_sh[i];
            o[ml + 1] = l_sh[i];
        }
    }
}
