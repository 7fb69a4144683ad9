#version 450
// Elementwise binary ops on f32: out[i] = OP(a[i], b[i % nb]) for i in [0, n).
// nb == n is the plain elementwise case; nb < n broadcasts b over rows of nb elements (a bias
// or per-channel scale). out may alias a or b (each element is read and written by one
// invocation).
//   add_f32:       a + b
//   mul_f32:       a * b
//   silu_mul_f32:  silu(a) * b = a / (1 + exp(-a)) * b     (a = gate, b = up)
//   gelu_mul_f32:  gelu(a) * b, tanh approximation:
//                  0.5 a (1 + tanh(sqrt(2 / pi) (a + 0.044715 a^3))) * b
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };

layout(push_constant) uniform Push {
    uint n;   // elements of a and out
    uint nb;  // elements of b (divides n)
} pc;

void main() {
    const uint i = kv_group_index() * WG + gl_LocalInvocationIndex;
    if (i >= pc.n) return;
    const float x = a[i];
    const float y = b[pc.nb == pc.n ? i : i % pc.nb];
#if OP_ADD
    o[i] = x + y;
#elif OP_MUL
    o[i] = x * y;
#elif OP_SILU_MUL
    o[i] = x / (1.0 + exp(-x)) * y;
#elif OP_GELU_MUL
    // tanh's argument clamped where tanh is +-1 in fp32 (an exp-based tanh would give inf / inf).
    const float u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    o[i] = 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0))) * y;
#else
#error "define OP_ADD, OP_MUL, OP_SILU_MUL or OP_GELU_MUL"
#endif
}
