// The building blocks of the CPU reference forward pass, one plain function per operation, so
// GPU kernel tests can check a single shader (RoPE, attention, RMSNorm, ...) against them.
//
// Precision: values are float32; every sum (dot products, norms, softmax) is accumulated in
// double and rotary angles are computed in double. The whole forward pass then lands within
// 1.2e-7 relative L2 of an all-float64 computation on every fixture (about the rounding of the
// logits to float32 itself; tests/reference/). Plain float accumulation in dot() gave up to
// 8e-7 and was slower (a serial chain does not vectorize): double it is.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/arch.h"

namespace kv::reference {

// dot(a, b) over n elements, accumulated in double.
double dot(const float* a, const float* b, size_t n);

// y[o] = sum_i w[o * n_in + i] * x[i] (+ bias[o] when bias != nullptr), for o < n_out.
// `w` is row-major [n_out][n_in] (the ggml layout of a tensor with ne = {n_in, n_out}).
void matvec(const float* w, const float* bias, const float* x, float* y, size_t n_in, size_t n_out);

// y = x / sqrt(mean(x^2) + eps) * weight. y may alias x.
void rms_norm(const float* x, const float* weight, float* y, size_t n, float eps);

// Rotary position embedding of one head vector `x` (head_dim values) at position `pos`, in place.
// Only the first n_rot dims rotate. Pair i (i < n_rot/2) is (x[2i], x[2i+1]) for Norm and
// (x[i], x[i + n_rot/2]) for Neox; its angle is
//   pos * freq_scale * base^(-2i / n_rot) / (freq_factors ? freq_factors[i] : 1),
// and cos and sin are multiplied by mscale (YaRN / LongRoPE attention factor).
void rope(float* x, uint32_t n_rot, int64_t pos, model::RopeType type, float base, float freq_scale,
          const float* freq_factors, float mscale = 1.f);

// In-place softmax over n values (max-subtracted).
void softmax(float* x, size_t n);

// silu(g) * u, elementwise, into out (may alias g or u).
void swiglu(const float* g, const float* u, float* out, size_t n);

// gelu(g) * u with the tanh approximation, 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))),
// elementwise, into out (may alias g or u).
void geglu(const float* g, const float* u, float* out, size_t n);

// Causal attention of one query head over cached keys/values.
//   q:    head_dim values (already rotated)
//   k, v: n_kv positions, position j at k + j * stride (head_dim values each, same for v)
// out = sum_j softmax_j(cap(q . k_j * scale)) v_j over j in [0, n_kv), where cap(s) is
// softcap * tanh(s / softcap) when softcap > 0, else s.
void attend(const float* q, const float* k, const float* v, size_t stride, size_t n_kv,
            size_t head_dim, float scale, float* out, float softcap = 0.f);

// Index of the largest value (the first one on ties).
int32_t argmax(const float* x, size_t n);

}  // namespace kv::reference
