#version 450
// Memory-bandwidth probe: grid-stride read, write or copy of vec4s. The floor every decode figure
// is held against. Variants (bandwidth.variants): BW_READ, BW_WRITE, BW_COPY.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Src { vec4 src[]; };
layout(std430, binding = 1) buffer Dst { vec4 dst[]; };
layout(push_constant) uniform Push {
    uint n;     // vec4 elements
    uint flag;  // never equal to the magic: keeps the read loop from being optimized away
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint gid = gl_GlobalInvocationID.x;
#if defined(BW_READ)
    vec4 acc = vec4(0.0);
    for (uint i = gid; i < p.n; i += stride) acc += src[i];
    if (p.flag == 0x7fffffffu && acc.x == 1.2345) dst[gid & 15u] = acc;
#elif defined(BW_WRITE)
    for (uint i = gid; i < p.n; i += stride) dst[i] = vec4(float(i & 1023u));
#elif defined(BW_COPY)
    for (uint i = gid; i < p.n; i += stride) dst[i] = src[i];
#endif
}
