#version 450
// Writes K and V rows of positions [pos0, pos0 + n_tokens) into the paged pools (kv_cache.glsl),
// one invocation per pair of elements:
//   k, v: [n_tokens][n_head_kv][D] f32  ->  pools at kv_row(pos0 + t, kvh) * D
// F16 pools take packHalf2x16 words (values beyond the half range become +-inf).
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, binding = 0) readonly buffer Kin { float k_in[]; };
layout(std430, binding = 1) readonly buffer Vin { float v_in[]; };
#if KV_F16
layout(std430, binding = 2) writeonly buffer Kp { uint k_pool[]; };
layout(std430, binding = 3) writeonly buffer Vp { uint v_pool[]; };
#else
layout(std430, binding = 2) writeonly buffer Kp { float k_pool[]; };
layout(std430, binding = 3) writeonly buffer Vp { float v_pool[]; };
#endif
layout(std430, binding = 4) readonly buffer Bt { uint block_table[]; };

#include "kv_cache.glsl"

layout(push_constant) uniform Push {
    uint n_tokens;
    uint pos0;
    uint n_head_kv;
    uint head_dim;
    uint page_size;
} pc;

void main() {
    const uint half_dim = pc.head_dim / 2;
    const uint idx = kv_group_index() * WG + gl_LocalInvocationIndex;
    if (idx >= pc.n_tokens * pc.n_head_kv * half_dim) return;
    const uint pair = idx % half_dim;
    const uint row = idx / half_dim;  // token * n_head_kv + kv head
    const uint kvh = row % pc.n_head_kv;
    const uint t = row / pc.n_head_kv;
    const uint dst = kv_row(pc.pos0 + t, kvh, pc.page_size, pc.n_head_kv) * half_dim + pair;
    const uint src = 2 * idx;
#if KV_F16
    k_pool[dst] = packHalf2x16(vec2(k_in[src], k_in[src + 1]));
    v_pool[dst] = packHalf2x16(vec2(v_in[src], v_in[src + 1]));
#else
    k_pool[2 * dst] = k_in[src];
    k_pool[2 * dst + 1] = k_in[src + 1];
    v_pool[2 * dst] = v_in[src];
    v_pool[2 * dst + 1] = v_in[src + 1];
#endif
}
