// Workgroup-wide reductions of RED_N floats per invocation (every invocation gets the results).
//
// Before including, define:
//   RED_WG  the workgroup size (a specialization constant; must be a power of two for the
//           shared-memory path)
//   RED_N   how many independent values each invocation reduces at once (a literal, >= 1)
// and optionally KV_SUBGROUP=1 to reduce within subgroups first (GL_KHR_shader_subgroup_
// arithmetic; the host picks that variant only where the device supports subgroup arithmetic in
// compute shaders). Neither path assumes a subgroup size: the subgroup path combines the partial
// results of gl_NumSubgroups subgroups of whatever size the driver chose, the other path is a
// plain shared-memory tree.
//
// Must be called in uniform control flow by every invocation of the workgroup. Shared memory:
// RED_N * RED_WG floats.
#ifndef KV_REDUCE_GLSL
#define KV_REDUCE_GLSL

#if KV_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

shared float red_sh[RED_N * RED_WG];

#if KV_SUBGROUP

void red_sum(inout float v[RED_N]) {
    for (uint i = 0; i < RED_N; ++i) {
        float s = subgroupAdd(v[i]);
        if (subgroupElect()) red_sh[i * RED_WG + gl_SubgroupID] = s;
    }
    barrier();
    for (uint i = 0; i < RED_N; ++i) {
        float s = 0.0;
        for (uint k = 0; k < gl_NumSubgroups; ++k) s += red_sh[i * RED_WG + k];
        v[i] = s;
    }
    barrier();  // red_sh may be reused right after
}

void red_max(inout float v[RED_N]) {
    for (uint i = 0; i < RED_N; ++i) {
        float s = subgroupMax(v[i]);
        if (subgroupElect()) red_sh[i * RED_WG + gl_SubgroupID] = s;
    }
    barrier();
    for (uint i = 0; i < RED_N; ++i) {
        float s = red_sh[i * RED_WG];
        for (uint k = 1; k < gl_NumSubgroups; ++k) s = max(s, red_sh[i * RED_WG + k]);
        v[i] = s;
    }
    barrier();
}

#else

void red_sum(inout float v[RED_N]) {
    const uint t = gl_LocalInvocationIndex;
    for (uint i = 0; i < RED_N; ++i) red_sh[i * RED_WG + t] = v[i];
    barrier();
    for (uint s = RED_WG / 2; s > 0; s >>= 1) {
        if (t < s) {
            for (uint i = 0; i < RED_N; ++i)
                red_sh[i * RED_WG + t] += red_sh[i * RED_WG + t + s];
        }
        barrier();
    }
    for (uint i = 0; i < RED_N; ++i) v[i] = red_sh[i * RED_WG];
    barrier();
}

void red_max(inout float v[RED_N]) {
    const uint t = gl_LocalInvocationIndex;
    for (uint i = 0; i < RED_N; ++i) red_sh[i * RED_WG + t] = v[i];
    barrier();
    for (uint s = RED_WG / 2; s > 0; s >>= 1) {
        if (t < s) {
            for (uint i = 0; i < RED_N; ++i)
                red_sh[i * RED_WG + t] = max(red_sh[i * RED_WG + t], red_sh[i * RED_WG + t + s]);
        }
        barrier();
    }
    for (uint i = 0; i < RED_N; ++i) v[i] = red_sh[i * RED_WG];
    barrier();
}

#endif

#endif  // KV_REDUCE_GLSL
