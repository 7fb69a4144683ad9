#include "reference/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kv::reference {

double dot(const float* a, const float* b, size_t n) {
    // Four independent chains: same rounding class as one chain in double, and faster.
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += double(a[i]) * double(b[i]);
        s1 += double(a[i + 1]) * double(b[i + 1]);
        s2 += double(a[i + 2]) * double(b[i + 2]);
        s3 += double(a[i + 3]) * double(b[i + 3]);
    }
    for (; i < n; ++i) s0 += double(a[i]) * double(b[i]);
    return (s0 + s1) + (s2 + s3);
}

void matvec(const float* w, const float* bias, const float* x, float* y, size_t n_in,
            size_t n_out) {
    for (size_t o = 0; o < n_out; ++o) {
        double s = dot(w + o * n_in, x, n_in);
        if (bias) s += double(bias[o]);
        y[o] = static_cast<float>(s);
    }
}

void rms_norm(const float* x, const float* weight, float* y, size_t n, float eps) {
    double ss = dot(x, x, n);
    double scale = 1.0 / std::sqrt(ss / double(n) + double(eps));
    for (size_t i = 0; i < n; ++i)
        y[i] = static_cast<float>(double(x[i]) * scale * double(weight[i]));
}

void rope(float* x, uint32_t n_rot, int64_t pos, model::RopeType type, float base, float freq_scale,
          const float* freq_factors, float mscale) {
    const uint32_t half = n_rot / 2;
    for (uint32_t i = 0; i < half; ++i) {
        double theta = double(pos) * double(freq_scale) *
                       std::pow(double(base), -2.0 * double(i) / double(n_rot));
        if (freq_factors) theta /= double(freq_factors[i]);
        const double c = std::cos(theta) * double(mscale), s = std::sin(theta) * double(mscale);
        const uint32_t i0 = type == model::RopeType::Norm ? 2 * i : i;
        const uint32_t i1 = type == model::RopeType::Norm ? 2 * i + 1 : i + half;
        const double a = x[i0], b = x[i1];
        x[i0] = static_cast<float>(a * c - b * s);
        x[i1] = static_cast<float>(a * s + b * c);
    }
}

void softmax(float* x, size_t n) {
    if (n == 0) return;
    float mx = x[0];
    for (size_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0;
    std::vector<double> e(n);
    for (size_t i = 0; i < n; ++i) sum += (e[i] = std::exp(double(x[i]) - double(mx)));
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(e[i] / sum);
}

void swiglu(const float* g, const float* u, float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const double gv = g[i];
        out[i] = static_cast<float>(gv / (1.0 + std::exp(-gv)) * double(u[i]));
    }
}

void geglu(const float* g, const float* u, float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const double gv = g[i];
        const double t = std::tanh(0.7978845608028654 * (gv + 0.044715 * gv * gv * gv));
        out[i] = static_cast<float>(0.5 * gv * (1.0 + t) * double(u[i]));
    }
}

void attend(const float* q, const float* k, const float* v, size_t stride, size_t n_kv,
            size_t head_dim, float scale, float* out, float softcap) {
    // Scores and weights stay in double: no rounding between q.k and the weighted sum of v.
    std::vector<double> p(n_kv);
    double mx = -INFINITY;
    for (size_t j = 0; j < n_kv; ++j) {
        p[j] = dot(q, k + j * stride, head_dim) * double(scale);
        if (softcap > 0) p[j] = double(softcap) * std::tanh(p[j] / double(softcap));
        mx = std::max(mx, p[j]);
    }
    double sum = 0;
    for (size_t j = 0; j < n_kv; ++j) sum += (p[j] = std::exp(p[j] - mx));
    std::vector<double> acc(head_dim, 0.0);
    for (size_t j = 0; j < n_kv; ++j) {
        const float* vj = v + j * stride;
        for (size_t d = 0; d < head_dim; ++d) acc[d] += p[j] * double(vj[d]);
    }
    for (size_t d = 0; d < head_dim; ++d) out[d] = static_cast<float>(acc[d] / sum);
}

int32_t argmax(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return static_cast<int32_t>(best);
}

}  // namespace kv::reference
