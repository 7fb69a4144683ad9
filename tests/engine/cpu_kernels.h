// CPU versions of src/engine/kernels.h, the oracle for tests/engine/test_kernels.cpp. Plain loops
// accumulating in double: obviously correct, slow. Shapes and conventions match Kernels exactly.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace kvtest::cpu {

// out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * w[i]
inline std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w,
                                   size_t n_cols, size_t n_rows, float eps) {
    std::vector<float> out(n_cols * n_rows);
    for (size_t r = 0; r < n_rows; ++r) {
        const float* xr = x.data() + r * n_cols;
        double ss = 0;
        for (size_t i = 0; i < n_cols; ++i) ss += double(xr[i]) * xr[i];
        const double scale = 1.0 / std::sqrt(ss / double(n_cols) + double(eps));
        for (size_t i = 0; i < n_cols; ++i) out[r * n_cols + i] = float(xr[i] * scale * w[i]);
    }
    return out;
}

// out[i] = a[i] + b[i % nb]
inline std::vector<float> add(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> out(a.size());
    for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] + b[i % b.size()];
    return out;
}

// out[i] = a[i] * b[i % nb]
inline std::vector<float> mul(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> out(a.size());
    for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] * b[i % b.size()];
    return out;
}

// out[i] = silu(gate[i]) * up[i]
inline std::vector<float> silu_mul(const std::vector<float>& gate, const std::vector<float>& up) {
    std::vector<float> out(gate.size());
    for (size_t i = 0; i < gate.size(); ++i) {
        const double g = gate[i];
        out[i] = float(g / (1.0 + std::exp(-g)) * up[i]);
    }
    return out;
}

// out[r] = softmax(scale * x[r]); -inf entries get 0, an all -inf row gives zeros.
inline std::vector<float> softmax_rows(const std::vector<float>& x, size_t n_cols, size_t n_rows,
                                       float scale) {
    std::vector<float> out(n_cols * n_rows);
    for (size_t r = 0; r < n_rows; ++r) {
        const float* xr = x.data() + r * n_cols;
        double m = -std::numeric_limits<double>::infinity();
        for (size_t i = 0; i < n_cols; ++i) m = std::max(m, double(scale) * xr[i]);
        if (std::isinf(m)) {
            for (size_t i = 0; i < n_cols; ++i) out[r * n_cols + i] = 0.f;
            continue;
        }
        double s = 0;
        for (size_t i = 0; i < n_cols; ++i) s += std::exp(double(scale) * xr[i] - m);
        for (size_t i = 0; i < n_cols; ++i)
            out[r * n_cols + i] = float(std::exp(double(scale) * xr[i] - m) / s);
    }
    return out;
}

// y[b][r] = sum_c W[r][c] * x[b][c]; W given as floats (already decoded from F16 if need be).
inline std::vector<float> matvec(const std::vector<float>& W, size_t rows, size_t cols,
                                 const std::vector<float>& x, size_t n_vecs) {
    std::vector<float> y(rows * n_vecs);
    for (size_t b = 0; b < n_vecs; ++b)
        for (size_t r = 0; r < rows; ++r) {
            double s = 0;
            const float* wr = W.data() + r * cols;
            const float* xb = x.data() + b * cols;
            for (size_t c = 0; c < cols; ++c) s += double(wr[c]) * xb[c];
            y[b * rows + r] = float(s);
        }
    return y;
}

// sum_c |W[r][c] * x[b][c]|: the scale of the rounding error of y[b][r] (a dot product may cancel
// to near zero, so its error is bounded relative to this, not to y).
inline std::vector<float> matvec_abs(const std::vector<float>& W, size_t rows, size_t cols,
                                     const std::vector<float>& x, size_t n_vecs) {
    std::vector<float> a(rows * n_vecs);
    for (size_t b = 0; b < n_vecs; ++b)
        for (size_t r = 0; r < rows; ++r) {
            double s = 0;
            for (size_t c = 0; c < cols; ++c)
                s += std::fabs(double(W[r * cols + c]) * x[b * cols + c]);
            a[b * rows + r] = float(s);
        }
    return a;
}

}  // namespace kvtest::cpu
