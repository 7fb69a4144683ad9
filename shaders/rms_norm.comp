#version 450
// RMSNorm with weight, one workgroup per row:
//   out[r][i] = x[r][i] / sqrt(mean_i(x[r][i]^2) + eps) * w[i]
// x, out: [n_rows][n_cols] f32 contiguous; w: [n_cols] f32. out may alias x (each element is
// read and written by the same invocation). fp32 accumulation.
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;  // power of two

#define RED_WG WG
#define RED_N 1
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };

layout(push_constant) uniform Push {
    uint n_cols;
    uint n_rows;
    float eps;
} pc;

void main() {
    const uint row = kv_group_index();
    if (row >= pc.n_rows) return;
    const uint t = gl_LocalInvocationIndex;
    const uint base = row * pc.n_cols;

    float s[1];
    s[0] = 0.0;
    for (uint i = t; i < pc.n_cols; i += WG) {
        const float v = x[base + i];
        s[0] += v * v;
    }
    red_sum(s);
    const float scale = 1.0 / sqrt(s[0] / float(pc.n_cols) + pc.eps);
    for (uint i = t; i < pc.n_cols; i += WG) o[base + i] = x[base + i] * scale * w[i];
}
