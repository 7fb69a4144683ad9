#version 450
// Elementwise unary ops on f32 with one scalar parameter f: out[i] = OP(x[i]) for i in [0, n).
// out may alias x (each element is read and written by one invocation).
//   scale_f32:    x * f
//   softcap_f32:  f * tanh(x / f)      (logit soft-capping, f > 0)
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };

layout(push_constant) uniform Push {
    uint n;
    float f;
} pc;

void main() {
    const uint i = kv_group_index() * WG + gl_LocalInvocationIndex;
    if (i >= pc.n) return;
#if OP_SCALE
    o[i] = x[i] * pc.f;
#elif OP_SOFTCAP
    o[i] = pc.f * tanh(clamp(x[i] / pc.f, -15.0, 15.0));  // clamped: see binary.comp
#else
#error "define OP_SCALE or OP_SOFTCAP"
#endif
}
