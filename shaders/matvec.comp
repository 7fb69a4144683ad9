#version 450
// Matrix-vector product y = W x (ggml mul_mat with one weight matrix, n_vecs vectors):
//   y[b][y_row0 + r] = sum_c W[r][c] * x[b][c]     r in [0, rows), c in [0, cols), b in [0, n_vecs)
// W: [rows][cols] row-major (ggml ne[0] = cols contiguous), F32 or F16 (read as 32-bit words
//    and unpacked with unpackHalf2x16: no 16-bit storage or fp16 arithmetic needed).
//    This binding is one chunk of a possibly split tensor: rows [0, rows) of the chunk are rows
//    [y_row0, y_row0 + rows) of the logical matrix.
// x: [n_vecs][x_stride] f32, y: [n_vecs][y_stride] f32. fp32 accumulation.
//
// One workgroup computes NR consecutive rows; its WG invocations stride over the row in units of
// EPU elements (uvec4 = 8 halves / vec4 = 4 floats in the VEC variants: consecutive
// invocations read consecutive 16-byte words, so loads are coalesced), then reduce.
//
// Variants (the host checks the layout preconditions):
//   matvec_f32     any cols                    matvec_f32_v4  cols % 4 == 0, x_stride % 4 == 0
//   matvec_f16     cols % 2 == 0, x_stride % 2 matvec_f16_v8  cols % 8 == 0, x_stride % 8 == 0
// and *_sg of each, reducing with subgroup arithmetic first.
#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;  // power of two
layout(constant_id = 1) const uint NR = 1;    // rows per workgroup

#define RED_WG WG
#define RED_N NR
#include "reduce.glsl"

#if W_F16 && VEC
#define EPU 8
#define XPE 4  // floats per element of x[]
layout(std430, binding = 0) readonly buffer Wb { uvec4 w[]; };
layout(std430, binding = 1) readonly buffer Xb { vec4 x[]; };
#elif W_F16
#define EPU 2
#define XPE 2
layout(std430, binding = 0) readonly buffer Wb { uint w[]; };
layout(std430, binding = 1) readonly buffer Xb { vec2 x[]; };
#elif W_F32 && VEC
#define EPU 4
#define XPE 4
layout(std430, binding = 0) readonly buffer Wb { vec4 w[]; };
layout(std430, binding = 1) readonly buffer Xb { vec4 x[]; };
#elif W_F32
#define EPU 1
#define XPE 1
layout(std430, binding = 0) readonly buffer Wb { float w[]; };
layout(std430, binding = 1) readonly buffer Xb { float x[]; };
#else
#error "define W_F32 or W_F16"
#endif
layout(std430, binding = 2) writeonly buffer Yb { float y[]; };

layout(push_constant) uniform Push {
    uint cols;      // elements per row (multiple of EPU)
    uint rows;      // rows in this chunk
    uint y_row0;    // logical row of the chunk's first row
    uint x_stride;  // elements between consecutive vectors of x (multiple of EPU)
    uint y_stride;  // elements between consecutive vectors of y
} pc;

// acc[r] += W[row r][unit k] . x[unit k] for every row of the workgroup.
#if W_F16 && VEC
#define ACCUMULATE(k)                                                                   \
    {                                                                                   \
        const vec4 x0 = x[xb + 2 * (k)];                                                \
        const vec4 x1 = x[xb + 2 * (k) + 1];                                            \
        for (uint r = 0; r < NR; ++r) {                                                 \
            const uvec4 q = w[wrow[r] + (k)];                                           \
            acc[r] += dot(vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y)), x0) +         \
                      dot(vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w)), x1);          \
        }                                                                               \
    }
#elif W_F16
#define ACCUMULATE(k)                                                                   \
    {                                                                                   \
        const vec2 x0 = x[xb + (k)];                                                    \
        for (uint r = 0; r < NR; ++r) acc[r] += dot(unpackHalf2x16(w[wrow[r] + (k)]), x0); \
    }
#elif VEC
#define ACCUMULATE(k)                                                                   \
    {                                                                                   \
        const vec4 x0 = x[xb + (k)];                                                    \
        for (uint r = 0; r < NR; ++r) acc[r] += dot(w[wrow[r] + (k)], x0);              \
    }
#else
#define ACCUMULATE(k)                                                                   \
    {                                                                                   \
        const float x0 = x[xb + (k)];                                                   \
        for (uint r = 0; r < NR; ++r) acc[r] += w[wrow[r] + (k)] * x0;                  \
    }
#endif

void main() {
    const uint row0 = kv_group_index() * NR;
    if (row0 >= pc.rows) return;
    const uint t = gl_LocalInvocationIndex;
    const uint b = gl_WorkGroupID.z;
    const uint units = pc.cols / EPU;  // load units per row
    const uint xb = b * (pc.x_stride / XPE);  // first x[] element of vector b

    // Rows past the end of the chunk re-read the last row (valid memory); their sums are dropped.
    uint wrow[NR];
    float acc[NR];
    for (uint r = 0; r < NR; ++r) {
        wrow[r] = min(row0 + r, pc.rows - 1) * units;
        acc[r] = 0.0;
    }

    // Two independent 16-byte loads per row and iteration keep more memory requests in flight.
    uint k = t;
    for (; k + WG < units; k += 2 * WG) {
        ACCUMULATE(k);
        ACCUMULATE(k + WG);
    }
    if (k < units) ACCUMULATE(k);

    red_sum(acc);

    if (t == 0) {
        for (uint r = 0; r < NR; ++r)
            if (row0 + r < pc.rows) y[b * pc.y_stride + pc.y_row0 + row0 + r] = acc[r];
    }
}
