#version 450
// Row softmax, one workgroup per row:
//   out[r][i] = exp(scale * x[r][i] - m) / sum_j exp(scale * x[r][j] - m),  m = max_j scale * x[r][j]
// x, out: [n_rows][n_cols] f32 contiguous; out may alias x. Entries equal to -inf (masked) get
// probability 0; a row that is entirely -inf comes out as all zeros rather than NaN.
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;  // power of two

#define RED_WG WG
#define RED_N 1
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };

layout(push_constant) uniform Push {
    uint n_cols;
    uint n_rows;
    float scale;
} pc;

// Finite start for the max: a row of -inf then gives m = -FLT_MAX, exp(-inf) = 0, sum 0.
const float LOWEST = -3.402823466e+38;

void main() {
    const uint row = kv_group_index();
    if (row >= pc.n_rows) return;
    const uint t = gl_LocalInvocationIndex;
    const uint base = row * pc.n_cols;

    float m[1];
    m[0] = LOWEST;
    for (uint i = t; i < pc.n_cols; i += WG) m[0] = max(m[0], pc.scale * x[base + i]);
    red_max(m);
    const float mx = m[0];

    float s[1];
    s[0] = 0.0;
    for (uint i = t; i < pc.n_cols; i += WG) s[0] += exp(pc.scale * x[base + i] - mx);
    red_sum(s);
    const float inv = s[0] > 0.0 ? 1.0 / s[0] : 0.0;
    for (uint i = t; i < pc.n_cols; i += WG) o[base + i] = exp(pc.scale * x[base + i] - mx) * inv;
}
