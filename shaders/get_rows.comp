#version 450
// Embedding lookup from a weight matrix in its file format:
//   out[i][c] = W[ids[i]][c]    i in [0, n_ids), for the ids whose row lies in this chunk
// W: one chunk of whole rows (logical rows [row0, row0 + rows)), row_bytes each, read as 32-bit
// words (dequant.glsl). ids: uint, out: f32 [n_ids][cols]. Ids outside the chunk are left to the
// dispatch of their own chunk.
//
// Workgroup g handles id g / groups_per_id, part g % groups_per_id of its row: WG invocations each
// dequantize one 16-element sub-block (or one element for the float types).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

layout(std430, binding = 0) readonly buffer Wb { uint w_words[]; };
#define DQ_W w_words
#include "dequant.glsl"

layout(std430, binding = 1) readonly buffer Ib { uint ids[]; };
layout(std430, binding = 2) writeonly buffer Ob { float outv[]; };

layout(push_constant) uniform Push {
    uint cols;
    uint row0;       // logical row of the chunk's first row
    uint rows;       // rows in this chunk
    uint n_ids;
    uint row_bytes;
    uint groups_per_id;
} pc;

void main() {
    const uint g = kv_group_index();
    const uint i = g / pc.groups_per_id;
    if (i >= pc.n_ids) return;
    const uint row = ids[i];
    if (row < pc.row0 || row - pc.row0 >= pc.rows) return;
    const uint rb = (row - pc.row0) * pc.row_bytes;
    const uint e = (g % pc.groups_per_id) * WG + gl_LocalInvocationIndex;
#if DQ_ELEM
    if (e < pc.cols) outv[i * pc.cols + e] = deq1(rb, e);
#else
    if (e < pc.cols / 16u) {
        const uint b = e / (DQ_BS / 16u);
        const uint sub = e % (DQ_BS / 16u);
        float v[16];
        deq16(rb + b * DQ_BB, sub, v);
        const uint o = i * pc.cols + 16u * e;
        [[unroll]] for (uint j = 0u; j < 16u; ++j) outv[o + j] = v[j];
    }
#endif
}
