#version 450
// out[0] = index of the largest of x[0..n) as uint32: the lowest index among equal maxima.
// NaNs are never chosen; a row of only NaNs gives 0. One workgroup: each invocation scans a
// strided slice, then a shared-memory tree combines (value, index) pairs (no subgroup-size
// assumption).
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;  // power of two

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer O { uint o[]; };

layout(push_constant) uniform Push {
    uint n;
} pc;

shared float v_sh[WG];
shared uint i_sh[WG];

const uint NONE = 0xFFFFFFFFu;

// (v, i) beats (bv, bi): larger value, or equal value and lower index; NONE never wins.
bool better(float v, uint i, float bv, uint bi) {
    return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

void main() {
    const uint t = gl_LocalInvocationIndex;
    float bv = 0.0;
    uint bi = NONE;
    for (uint i = t; i < pc.n; i += WG) {
        const float v = x[i];
        if (!isnan(v) && better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    v_sh[t] = bv;
    i_sh[t] = bi;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s && better(v_sh[t + s], i_sh[t + s], v_sh[t], i_sh[t])) {
            v_sh[t] = v_sh[t + s];
            i_sh[t] = i_sh[t + s];
        }
        barrier();
    }
    if (t == 0) o[0] = i_sh[0] == NONE ? 0 : i_sh[0];
}
