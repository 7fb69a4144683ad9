#version 450
// kv-game-loop's stand-in for a frame's rendering: `iterations` dependent multiply-adds per
// element of a buffer, a pure ALU load whose duration the sample calibrates at start-up.
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Data { float data[]; };
layout(push_constant) uniform Push { uint iterations; uint n; } pc;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    float x = data[i];
    for (uint k = 0u; k < pc.iterations; ++k) x = x * 0.9999 + 0.0001 * float(k & 7u);
    data[i] = x;
}
