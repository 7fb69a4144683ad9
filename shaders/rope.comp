#version 450
// Rotary position embedding, in place, one invocation per rotated pair:
//   x: [n_tokens][n_heads][head_dim] f32; token t is at position pos0 + t.
//   pair i < n_rot / 2 is (x[2i], x[2i+1]) (normal) or (x[i], x[i + n_rot/2]) (NeoX);
//   theta = pos * freq_scale * base^(-2i / n_rot) / factors[i]  (factors only with FACTORS=1)
//   (a, b) -> (a c - b s, a s + b c), c = mscale cos theta, s = mscale sin theta. Dims >= n_rot
//   untouched.
//
// Precision: the angle is carried as an unevaluated sum of two floats (about 48 bits) through
// the product and the reduction modulo 2 pi, so long positions lose no more than the final
// sin/cos of an argument in [-pi, pi] (plain fp32 would be off by ~pos * 6e-8 radians).
// base^(-2i/n_rot) = r^i with r = base^(-2/n_rot) given by the host as a float pair, raised by
// binary powering in double-float arithmetic. `precise` keeps the compiler from fusing or
// reassociating the error-free transformations (Vulkan fp32 add/mul are correctly rounded).
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, binding = 0) buffer X { float x[]; };
#if FACTORS
layout(std430, binding = 1) readonly buffer F { float factors[]; };
#endif

layout(push_constant) uniform Push {
    uint n_tokens;
    uint n_heads;
    uint head_dim;
    uint n_rot;
    uint pos0;
    uint neox;
    float freq_scale;
    float r_hi;  // base^(-2/n_rot) = r_hi + r_lo
    float r_lo;
    float mscale;  // YaRN / LongRoPE attention factor (1: plain rope)
} pc;

// ---- double-float arithmetic (value = x + y, |y| <= ulp(x) / 2) ----------------------------
vec2 two_sum(float a, float b) {
    precise float s = a + b;
    precise float bb = s - a;
    precise float e = (a - (s - bb)) + (b - bb);
    return vec2(s, e);
}
vec2 fast_two_sum(float a, float b) {  // |a| >= |b|
    precise float s = a + b;
    precise float e = b - (s - a);
    return vec2(s, e);
}
vec2 split(float a) {  // Veltkamp: a = hi + lo with 12-bit halves
    precise float c = 4097.0 * a;
    precise float hi = c - (c - a);
    precise float lo = a - hi;
    return vec2(hi, lo);
}
vec2 two_prod(float a, float b) {  // Dekker: a * b exactly, as p + e
    precise float p = a * b;
    const vec2 as = split(a), bs = split(b);
    precise float e = ((as.x * bs.x - p) + as.x * bs.y + as.y * bs.x) + as.y * bs.y;
    return vec2(p, e);
}
vec2 df_mul(vec2 a, vec2 b) {
    vec2 p = two_prod(a.x, b.x);
    precise float t = p.y + (a.x * b.y + a.y * b.x);
    return fast_two_sum(p.x, t);
}
vec2 df_add(vec2 a, vec2 b) {
    vec2 s = two_sum(a.x, b.x);
    precise float t = s.y + (a.y + b.y);
    return fast_two_sum(s.x, t);
}
vec2 df_div_f(vec2 a, float b) {
    precise float q1 = a.x / b;
    vec2 p = two_prod(q1, b);
    precise float r = ((a.x - p.x) - p.y + a.y) / b;
    return fast_two_sum(q1, r);
}

// 2 pi as a double-float.
const vec2 TWO_PI = vec2(6.28318548202514648, -1.74845553146951715e-07);

void main() {
    const uint half_rot = pc.n_rot / 2;
    const uint idx = kv_group_index() * WG + gl_LocalInvocationIndex;
    if (idx >= pc.n_tokens * pc.n_heads * half_rot) return;
    const uint i = idx % half_rot;
    const uint row = idx / half_rot;  // token * n_heads + head
    const uint t = row / pc.n_heads;

    // f = r^i by binary powering.
    vec2 f = vec2(1.0, 0.0);
    vec2 b = vec2(pc.r_hi, pc.r_lo);
    for (uint e = i; e != 0; e >>= 1) {
        if ((e & 1) != 0) f = df_mul(f, b);
        b = df_mul(b, b);
    }
    // theta = pos * freq_scale * f / factor. pos < 2^24 is exact in a float.
    vec2 theta = df_mul(f, two_prod(float(pc.pos0 + t), pc.freq_scale));
#if FACTORS
    theta = df_div_f(theta, factors[i]);
#endif
    // Reduce modulo 2 pi: theta - k * 2pi with k = round(theta / 2pi), in double-float.
    const float k = floor(theta.x / TWO_PI.x + 0.5);
    const vec2 red = df_add(theta, -df_mul(vec2(k, 0.0), TWO_PI));
    const float ang = red.x + red.y;
    const float c = cos(ang) * pc.mscale, s = sin(ang) * pc.mscale;

    const uint base = row * pc.head_dim;
    const uint i0 = pc.neox != 0 ? i : 2 * i;
    const uint i1 = pc.neox != 0 ? i + half_rot : 2 * i + 1;
    const float a = x[base + i0], bb = x[base + i1];
    x[base + i0] = a * c - bb * s;
    x[base + i1] = a * s + bb * c;
}
