#version 450
// Combines the split-KV partials of attn_decode / attn_tile (layout there) into the output:
//   M = max_s m_s,  w_s = exp(m_s - M),  out[row][d] = sum_s w_s o_s[row][d] / sum_s w_s l_s
// A split that saw no key of a row has m = -FLT_MAX, l = 0 and o = 0: weight 0. Every row sees
// at least its own position, so some split has l > 0.
//
// One workgroup per (output row (token * n_head + head), block of DL = pc.dl elements of it):
// linear group index g is row g / n_db, block g % n_db (n_db = ceil(head_dim / DL)). Invocation
// t is element lane t % DL of split lane t / DL (SL = WG / DL lanes): lane sl sums splits
// sl, sl + SL, ... of its element, NB loads in flight at a time; M, the sum of w_s l_s and the
// lanes' sums are shared-memory tree reductions. Splits are taken in chunks of WG, whose
// weights w_s go through shared memory, so any number of splits works.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;  // power of two

layout(std430, binding = 0) readonly buffer S { float part[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };

layout(push_constant) uniform Push {
    uint n_out;  // rows
    uint n_split;
    uint head_dim;
    uint dl;  // element lanes: a power of two <= WG
} pc;

const uint NB = 8;        // partial loads in flight per invocation

shared float w_sh[WG];    // weights of the current chunk of splits
shared float red_sh[WG];  // tree reductions

// Reduces v over the invocations t' = t % stride + k * stride, k < n (n a power of two,
// n * stride <= WG): the sum (the max: is_max) lands in red_sh[t % stride]. Uniform control
// flow; red_sh may be read until the next call.
void tree(float v, uint n, uint stride, bool is_max) {
    const uint t = gl_LocalInvocationIndex;
    barrier();  // the previous result has been read
    red_sh[t] = v;
    barrier();
    for (uint h = n / 2; h > 0; h >>= 1) {
        if (t < h * stride) {
            const float b = red_sh[t + h * stride];
            red_sh[t] = is_max ? max(red_sh[t], b) : red_sh[t] + b;
        }
        barrier();
    }
}

void main() {
    const uint t = gl_LocalInvocationIndex;
    const uint DL = pc.dl;
    const uint SL = WG / DL;  // split lanes
    const uint n_db = (pc.head_dim + DL - 1) / DL;
    const uint g = kv_group_index();
    const uint row = g / n_db;
    if (row >= pc.n_out) return;  // the whole workgroup
    const uint d = (g % n_db) * DL + t % DL;
    const uint sl = t / DL;
    const uint ml = pc.n_split * pc.n_out * pc.head_dim;

    float mx = -3.402823466e+38;
    for (uint s = t; s < pc.n_split; s += WG) mx = max(mx, part[ml + 2 * (s * pc.n_out + row)]);
    tree(mx, WG, 1, true);
    const float M = red_sh[0];

    float lw = 0.0, a = 0.0;
    for (uint c0 = 0; c0 < pc.n_split; c0 += WG) {
        const uint s = c0 + t;
        float w = 0.0;
        if (s < pc.n_split) {
            const uint e = ml + 2 * (s * pc.n_out + row);
            w = exp(part[e] - M);
            lw += w * part[e + 1];
        }
        w_sh[t] = w;
        barrier();
        const uint n = min(WG, pc.n_split - c0);
        if (d < pc.head_dim) {
            for (uint i0 = sl; i0 < n; i0 += NB * SL) {
                float v[NB];
                [[unroll]] for (uint b = 0; b < NB; ++b) {
                    const uint i = i0 + b * SL;
                    v[b] = i < n ? part[((c0 + i) * pc.n_out + row) * pc.head_dim + d] : 0.0;
                }
                [[unroll]] for (uint b = 0; b < NB; ++b) {
                    const uint i = i0 + b * SL;
                    if (i < n) a += w_sh[i] * v[b];
                }
            }
        }
        barrier();  // w_sh is rewritten by the next chunk
    }
    tree(lw, WG, 1, false);
    const float L = red_sh[0];
    tree(a, SL, DL, false);
    if (sl == 0 && d < pc.head_dim) o[row * pc.head_dim + d] = red_sh[t] * (1.0 / L);
}
