#version 450
// Decode matrix-vector product of a weight matrix in its file format (ggml block layouts):
//   y[y_row0 + r] = sum_c W[r][c] * x[c]     r in [0, rows) of this chunk, c in [0, cols)
// W: one chunk of whole rows, row_bytes each, read as 32-bit words (dequant.glsl); x, y f32.
// fp32 accumulation.
//
// One workgroup computes NR consecutive rows. Its WG invocations stride over the row's "units"
// (dequant.glsl: the sub-blocks of a block that share bytes), so consecutive invocations read
// consecutive bytes of the row (coalesced) and every weight byte is read once; each unit's
// 16-element sub-blocks are dotted with x, then the workgroup reduces (reduce.glsl: subgroup
// arithmetic in the *_sg variants, shared memory otherwise).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;  // power of two
layout(constant_id = 1) const uint NR = 2;   // rows per workgroup

#define RED_WG WG
#define RED_N NR
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer Wb { uint w_words[]; };
#define DQ_W w_words
#include "dequant.glsl"

// x through two views of one binding: vec4 when its offset is 16-byte aligned (x_vec4 != 0).
layout(std430, binding = 1) readonly buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Xb4 { vec4 x4[]; };
layout(std430, binding = 2) writeonly buffer Yb { float y[]; };

layout(push_constant) uniform Push {
    uint cols;       // elements per row (a multiple of DQ_BS)
    uint rows;       // rows in this chunk
    uint y_row0;     // logical row of the chunk's first row
    uint row_bytes;  // bytes per row
    uint x_vec4;     // 1: x's binding is 16-byte aligned
} pc;

void main() {
    const uint row0 = kv_group_index() * NR;
    if (row0 >= pc.rows) return;
    const uint t = gl_LocalInvocationIndex;

    // Rows past the end of the chunk re-read the last row (valid memory); their sums are dropped.
    uint rbase[NR];
    float acc[NR];
    [[unroll]] for (uint r = 0u; r < NR; ++r) {
        rbase[r] = min(row0 + r, pc.rows - 1u) * pc.row_bytes;
        acc[r] = 0.0;
    }

#if DQ_ELEM
    for (uint k = t; k < pc.cols; k += WG) {
        const float xv = x[k];
        [[unroll]] for (uint r = 0u; r < NR; ++r) acc[r] += deq1(rbase[r], k) * xv;
    }
#else
    const uint units = (pc.cols / DQ_BS) * DQ_UPB;
    for (uint k = t; k < units; k += WG) {
        const uint b = k / DQ_UPB;
        const uint u = k % DQ_UPB;
        [[unroll]] for (uint i = 0u; i < DQ_SPU; ++i) {
            const uint sub = dq_unit_sub(u, i);
            const uint xo = b * DQ_BS + 16u * sub;
            vec4 xv[4];
            if (pc.x_vec4 != 0u) {
                [[unroll]] for (uint j = 0u; j < 4u; ++j) xv[j] = x4[xo / 4u + j];
            } else {
                [[unroll]] for (uint j = 0u; j < 4u; ++j)
                    xv[j] = vec4(x[xo + 4u * j], x[xo + 4u * j + 1u], x[xo + 4u * j + 2u],
                                 x[xo + 4u * j + 3u]);
            }
            [[unroll]] for (uint r = 0u; r < NR; ++r) {
                float v[16];
                deq16(rbase[r] + b * DQ_BB, sub, v);
                acc[r] += dot(vec4(v[0], v[1], v[2], v[3]), xv[0]) +
                          dot(vec4(v[4], v[5], v[6], v[7]), xv[1]) +
                          dot(vec4(v[8], v[9], v[10], v[11]), xv[2]) +
                          dot(vec4(v[12], v[13], v[14], v[15]), xv[3]);
            }
        }
    }
#endif

    red_sum(acc);

    if (t == 0u) {
        [[unroll]] for (uint r = 0u; r < NR; ++r)
            if (row0 + r < pc.rows) y[pc.y_row0 + row0 + r] = acc[r];
    }
}
