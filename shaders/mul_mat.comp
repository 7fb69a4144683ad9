#version 450
// Prefill matrix-matrix product of a weight matrix in its file format (ggml block layouts):
//   y[t][y_row0 + r] = sum_c W[r][c] * x[t][c]     r < rows (this chunk), t < n_tokens, c < cols
// W: one chunk of whole rows, row_bytes each, read as 32-bit words (dequant.glsl);
// x: f32 [n_tokens][cols]; y: f32 [n_tokens][y_stride]. fp32 accumulation.
//
// Fused extras (specialization constants, so a pipeline without them carries none of their
// code or registers): GLU reads x as silu(x) * up (binding 3, same shape as x); ACCUMULATE adds
// the product to y (a residual stream).
//
// Tiling: workgroup (row tile, token tile) computes BM rows x BN tokens. Per step of BK columns
// it dequantizes a BM x BK tile of W and loads a BN x BK tile of x into shared memory (zeros past
// the edges), then each invocation accumulates a TM x TN register tile: rows tm + i * BM / TM and
// tokens tn + j * BN / TN (interleaved, so neighbouring invocations read neighbouring shared words
// and write neighbouring rows of y).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WGS = 256;  // (BM / TM) * (BN / TN)
layout(constant_id = 1) const uint BM = 64;    // multiple of TM
layout(constant_id = 2) const uint BN = 64;    // multiple of TN
layout(constant_id = 3) const uint BK = 32;    // 16 or 32 (quantized rows are multiples of 32)
layout(constant_id = 4) const uint TM = 4;
layout(constant_id = 5) const uint TN = 4;
layout(constant_id = 6) const bool GLU = false;
layout(constant_id = 7) const bool ACCUMULATE = false;

layout(std430, binding = 0) readonly buffer Wb { uint w_words[]; };
#define DQ_W w_words
#include "dequant.glsl"

layout(std430, binding = 1) readonly buffer Xb { float x[]; };
layout(std430, binding = 2) buffer Yb { float y[]; };
layout(std430, binding = 3) readonly buffer Ub { float up[]; };

layout(push_constant) uniform Push {
    uint cols;
    uint rows;       // rows in this chunk
    uint y_row0;     // logical row of the chunk's first row
    uint row_bytes;
    uint n_tokens;
    uint y_stride;
} pc;

// [BK][BM + 1] and [BK][BN + 1]: the padding spreads the transposed stores over banks.
#define WSS (BM + 1u)
#define XSS (BN + 1u)
shared float Ws[BK * (BM + 1)];
shared float Xs[BK * (BN + 1)];

void main() {
    const uint row0 = kv_group_index() * BM;
    if (row0 >= pc.rows) return;  // whole workgroup
    const uint n0 = gl_WorkGroupID.z * BN;
    const uint t = gl_LocalInvocationIndex;
    const uint tm = t % (BM / TM);
    const uint tn = t / (BM / TM);

    float acc[TM * TN];
    [[unroll]] for (uint i = 0u; i < TM * TN; ++i) acc[i] = 0.0;

    for (uint k0 = 0u; k0 < pc.cols; k0 += BK) {
        // W tile -> Ws[k][r]
#if DQ_ELEM
        for (uint task = t; task < BM * BK; task += WGS) {
            const uint kk = task % BK;
            const uint r = task / BK;
            const uint row = row0 + r;
            const uint k = k0 + kk;
            Ws[kk * WSS + r] = (row < pc.rows && k < pc.cols) ? deq1(row * pc.row_bytes, k) : 0.0;
        }
#else
        for (uint task = t; task < BM * (BK / 16u); task += WGS) {
            const uint r = task % BM;
            const uint s = task / BM;
            const uint row = row0 + r;
            const uint k = k0 + 16u * s;
            float v[16];
            if (row < pc.rows) {
                deq16(row * pc.row_bytes + (k / DQ_BS) * DQ_BB, (k % DQ_BS) / 16u, v);
            } else {
                [[unroll]] for (uint j = 0u; j < 16u; ++j) v[j] = 0.0;
            }
            [[unroll]] for (uint j = 0u; j < 16u; ++j) Ws[(16u * s + j) * WSS + r] = v[j];
        }
#endif
        // x tile -> Xs[k][n]
        for (uint task = t; task < BN * BK; task += WGS) {
            const uint kk = task % BK;
            const uint n = task / BK;
            const uint tok = n0 + n;
            const uint k = k0 + kk;
            float xv = 0.0;
            if (tok < pc.n_tokens && k < pc.cols) {
                const uint e = tok * pc.cols + k;
                xv = x[e];
                if (GLU) xv = xv / (1.0 + exp(-xv)) * up[e];
            }
            Xs[kk * XSS + n] = xv;
        }
        barrier();

        [[unroll]] for (uint kk = 0u; kk < BK; ++kk) {
            float a[TM], b[TN];
            [[unroll]] for (uint i = 0u; i < TM; ++i) a[i] = Ws[kk * WSS + tm + i * (BM / TM)];
            [[unroll]] for (uint j = 0u; j < TN; ++j) b[j] = Xs[kk * XSS + tn + j * (BN / TN)];
            [[unroll]] for (uint i = 0u; i < TM; ++i)
                [[unroll]] for (uint j = 0u; j < TN; ++j) acc[i * TN + j] += a[i] * b[j];
        }
        barrier();
    }

    [[unroll]] for (uint i = 0u; i < TM; ++i) {
        const uint row = row0 + tm + i * (BM / TM);
        if (row >= pc.rows) continue;
        [[unroll]] for (uint j = 0u; j < TN; ++j) {
            const uint tok = n0 + tn + j * (BN / TN);
            if (tok < pc.n_tokens) {
                const uint e = tok * pc.y_stride + pc.y_row0 + row;
                y[e] = ACCUMULATE ? y[e] + acc[i * TN + j] : acc[i * TN + j];
            }
        }
    }
}
