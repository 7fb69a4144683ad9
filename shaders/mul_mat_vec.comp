#version 450
// Decode matrix-vector product of a weight matrix in its file format (ggml block layouts):
//   y[y_row0 + r] = sum_c W[r][c] * x[c]     r in [0, rows) of this chunk, c in [0, cols)
// W: one chunk of whole rows, row_bytes each, read as 32-bit words (dequant.glsl); x, y f32.
// fp32 accumulation.
//
// Fused extras (specialization constants: a pipeline without them carries none of their code):
// GLU reads x as silu(x) * up (the SwiGLU feed-forward's gate and up activations, binding 3);
// NORM reads x RMS-normalized, x * norm_w / sqrt(mean(x^2) + eps) (norm_w at binding 4): the
// products use x * norm_w and the sum of x^2 accumulates beside them, from the x loads the
// product makes anyway, so the scale applies once per row at the end and costs no extra pass,
// load or barrier; ACCUMULATE adds the product to y instead of overwriting it (a residual
// connection: y is the residual stream). Bindings 3 and 4 are bound (to any buffer) when
// unused; GLU and NORM exclude each other.
//
// One workgroup computes NR consecutive rows. Its WG invocations stride over the row's "units"
// (dequant.glsl: the sub-blocks of a block that share bytes, so every weight byte is read once);
// each unit's 16-element sub-blocks are dotted with x, then the workgroup reduces (reduce.glsl:
// subgroup arithmetic in the *_sg variants, shared memory otherwise).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;  // power of two
layout(constant_id = 1) const uint NR = 2;   // rows per workgroup
layout(constant_id = 2) const bool GLU = false;
layout(constant_id = 3) const bool NORM = false;  // excludes GLU
layout(constant_id = 4) const bool ACCUMULATE = false;
layout(constant_id = 5) const uint NT = 1;  // tokens (x vectors) per dispatch, 1..8; NORM: 1

#define RED_WG WG
// Reduced per invocation: the NR x NT sums and the norm's sum of squares.
const uint NRS = NR * NT + 1u;
#define RED_N NRS
#include "reduce.glsl"

// Weight reads:
//  - quantized types: each invocation dequantizes its units straight from the buffer, as 32-bit
//    words (dequant.glsl); consecutive invocations read consecutive units. (Staging the blocks
//    through shared memory with 16-byte loads was measured slower on an H200, for K-quants ~5x.)
//  - F32/F16/BF16 with rows of whole 16-byte words (MV_VEC): one uvec4 per invocation and step;
//  - other float rows (odd lengths): element by element.
layout(std430, binding = 0) readonly buffer Wb { uint w_words[]; };
layout(std430, binding = 0) readonly buffer Wb4 { uvec4 w4[]; };

#define DQ_W w_words
#include "dequant.glsl"

// x through two views of one binding: vec4 when its offset is 16-byte aligned (x_vec4 != 0).
layout(std430, binding = 1) readonly buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Xb4 { vec4 x4[]; };
layout(std430, binding = 2) buffer Yb { float y[]; };
layout(std430, binding = 3) readonly buffer Ub { float up[]; };
layout(std430, binding = 3) readonly buffer Ub4 { vec4 up4[]; };
layout(std430, binding = 4) readonly buffer Nb { float norm_w[]; };
layout(std430, binding = 4) readonly buffer Nb4 { vec4 norm_w4[]; };

layout(push_constant) uniform Push {
    uint cols;       // elements per row (a multiple of DQ_BS)
    uint rows;       // rows in this chunk
    uint y_row0;     // logical row of the chunk's first row
    uint row_bytes;  // bytes per row
    uint x_vec4;     // 1: the bindings of x, up and norm_w are 16-byte aligned
    float eps;       // NORM
    uint y_stride;   // floats between the outputs of consecutive tokens (the logical rows)
} pc;

float ssq = 0.0;  // norm: this invocation's part of sum(x^2)

vec4 silu_mul(vec4 g, vec4 u) { return g / (1.0 + exp(-g)) * u; }

vec4 load_x4(uint e) {  // x[e .. e + 4), e % 4 == 0
    if (pc.x_vec4 != 0u) {
        if (GLU) return silu_mul(x4[e >> 2], up4[e >> 2]);
        if (NORM) {
            const vec4 v = x4[e >> 2];
            ssq += dot(v, v);
            return v * norm_w4[e >> 2];
        }
        return x4[e >> 2];
    }
    const vec4 g = vec4(x[e], x[e + 1u], x[e + 2u], x[e + 3u]);
    if (GLU) return silu_mul(g, vec4(up[e], up[e + 1u], up[e + 2u], up[e + 3u]));
    if (NORM) {
        ssq += dot(g, g);
        return g * vec4(norm_w[e], norm_w[e + 1u], norm_w[e + 2u], norm_w[e + 3u]);
    }
    return g;
}
float load_x1(uint e) {
    if (GLU) return x[e] / (1.0 + exp(-x[e])) * up[e];
    if (NORM) {
        ssq += x[e] * x[e];
        return x[e] * norm_w[e];
    }
    return x[e];
}

void main() {
    const uint row0 = kv_group_index() * NR;
    if (row0 >= pc.rows) return;
    const uint t = gl_LocalInvocationIndex;

    // Rows past the end of the chunk re-read the last row (valid memory); their sums are dropped.
    uint rbase[NR];
    float acc[NRS];  // [r * NT + j]: row r, token j; [NR * NT]: the norm's sum of squares
    [[unroll]] for (uint r = 0u; r < NR; ++r) rbase[r] = min(row0 + r, pc.rows - 1u) * pc.row_bytes;
    [[unroll]] for (uint i = 0u; i < NRS; ++i) acc[i] = 0.0;

#if !(W_F32 || W_F16 || W_BF16)
    const uint units = (pc.cols / DQ_BS) * DQ_UPB;
    for (uint k = t; k < units; k += WG) {
        const uint b = k / DQ_UPB;
        const uint u = k % DQ_UPB;
        [[unroll]] for (uint i = 0u; i < DQ_SPU; ++i) {
            const uint sub = dq_unit_sub(u, i);
            const uint xo = b * DQ_BS + 16u * sub;
            if (NT == 1) {  // x loaded once for the rows (NORM sums its squares here)
                const vec4 x0 = load_x4(xo), x1 = load_x4(xo + 4u), x2 = load_x4(xo + 8u),
                           x3 = load_x4(xo + 12u);
                [[unroll]] for (uint r = 0u; r < NR; ++r) {
                    float v[16];
                    deq16(rbase[r] + b * DQ_BB, sub, v);
                    acc[r] += dot(vec4(v[0], v[1], v[2], v[3]), x0) +
                              dot(vec4(v[4], v[5], v[6], v[7]), x1) +
                              dot(vec4(v[8], v[9], v[10], v[11]), x2) +
                              dot(vec4(v[12], v[13], v[14], v[15]), x3);
                }
            } else {  // each row dequantized once for the NT tokens (x rows from the cache)
                [[unroll]] for (uint r = 0u; r < NR; ++r) {
                    float v[16];
                    deq16(rbase[r] + b * DQ_BB, sub, v);
                    [[unroll]] for (uint j = 0u; j < NT; ++j) {
                        const uint xj = j * pc.cols + xo;
                        acc[r * NT + j] += dot(vec4(v[0], v[1], v[2], v[3]), load_x4(xj)) +
                                           dot(vec4(v[4], v[5], v[6], v[7]), load_x4(xj + 4u)) +
                                           dot(vec4(v[8], v[9], v[10], v[11]), load_x4(xj + 8u)) +
                                           dot(vec4(v[12], v[13], v[14], v[15]), load_x4(xj + 12u));
                    }
                }
            }
        }
    }
#elif MV_VEC
    // One uvec4 per step: 4 floats (F32) or 8 halves (F16/BF16). row_bytes % 16 == 0.
#if W_F32
#define EPU 4u
#else
#define EPU 8u
#endif
    const uint units = pc.cols / EPU;
    for (uint k = t; k < units; k += WG) {
        // x loaded once per row and token; with one token, once for all the rows.
        vec4 xs0[NT], xs1[NT];
        if (NT == 1) {
            xs0[0] = load_x4(k * EPU);
#if !W_F32
            xs1[0] = load_x4(k * EPU + 4u);
#endif
        }
        [[unroll]] for (uint r = 0u; r < NR; ++r) {
            const uvec4 q = w4[(rbase[r] >> 4) + k];
#if W_F32
            const vec4 w0 = uintBitsToFloat(q), w1 = vec4(0.0);
#elif W_F16
            const vec4 w0 = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
            const vec4 w1 = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
#else
            const vec4 w0 = uintBitsToFloat(uvec4(q.x << 16, q.x & 0xFFFF0000u, q.y << 16,
                                                  q.y & 0xFFFF0000u));
            const vec4 w1 = uintBitsToFloat(uvec4(q.z << 16, q.z & 0xFFFF0000u, q.w << 16,
                                                  q.w & 0xFFFF0000u));
#endif
            [[unroll]] for (uint j = 0u; j < NT; ++j) {
                if (NT > 1) {  // (NORM is one token only)
                    xs0[j] = load_x4(j * pc.cols + k * EPU);
#if !W_F32
                    xs1[j] = load_x4(j * pc.cols + k * EPU + 4u);
#endif
                }
#if W_F32
                acc[r * NT + j] += dot(w0, xs0[j]);
#else
                acc[r * NT + j] += dot(w0, xs0[j]) + dot(w1, xs1[j]);
#endif
            }
        }
    }
#else
    for (uint k = t; k < pc.cols; k += WG) {
        [[unroll]] for (uint j = 0u; j < NT; ++j) {
            const float xv = load_x1(j * pc.cols + k);
            [[unroll]] for (uint r = 0u; r < NR; ++r) acc[r * NT + j] += deq1(rbase[r], k) * xv;
        }
    }
#endif

    acc[NR * NT] = ssq;
    red_sum(acc);
    const float nscale = NORM ? 1.0 / sqrt(acc[NR * NT] / float(pc.cols) + pc.eps) : 1.0;

    if (t == 0u) {
        [[unroll]] for (uint r = 0u; r < NR; ++r)
            if (row0 + r < pc.rows)
                [[unroll]] for (uint j = 0u; j < NT; ++j) {
                    const uint i = j * pc.y_stride + pc.y_row0 + row0 + r;
                    const float v = acc[r * NT + j] * nscale;
                    y[i] = ACCUMULATE ? y[i] + v : v;
                }
    }
}
