#version 450
// Combines the split-KV partials of attn_decode / attn_tile (layout there) into the output:
//   M = max_s m_s,  w_s = exp(m_s - M),  out[row][d] = sum_s w_s o_s[row][d] / sum_s w_s l_s
// One workgroup per output row (token * n_head + head). A split that saw no key of a row has
// m = -FLT_MAX, l = 0 and o = 0: weight 0. Every row sees at least its own position, so some
// split has l > 0.
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

layout(std430, binding = 0) readonly buffer S { float part[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };

layout(push_constant) uniform Push {
    uint n_out;  // rows
    uint n_split;
    uint head_dim;
} pc;

void main() {
    const uint row = kv_group_index();
    if (row >= pc.n_out) return;
    const uint ml = pc.n_split * pc.n_out * pc.head_dim;
    float M = -3.402823466e+38;
    for (uint s = 0; s < pc.n_split; ++s) M = max(M, part[ml + 2 * (s * pc.n_out + row)]);
    float L = 0.0;
    for (uint s = 0; s < pc.n_split; ++s) {
        const uint e = ml + 2 * (s * pc.n_out + row);
        L += exp(part[e] - M) * part[e + 1];
    }
    const float inv = 1.0 / L;
    for (uint d = gl_LocalInvocationIndex; d < pc.head_dim; d += WG) {
        float a = 0.0;
        for (uint s = 0; s < pc.n_split; ++s) {
            const uint p = s * pc.n_out + row;
            a += exp(part[ml + 2 * p] - M) * part[p * pc.head_dim + d];
        }
        o[row * pc.head_dim + d] = a * inv;
    }
}
