// CPU oracle for the attention kernels' visibility rule (causal, window, sinks) and a
// double-precision softmax(scale q K^T) V over stored K/V. Header-only; shared by the attention
// tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/attention.h"

namespace kvtest {

using kv::engine::AttentionParams;

inline bool visible(const AttentionParams& p, uint32_t j, uint32_t pos) {
    return j <= pos && (p.window == 0 || j + p.window > pos || j < p.sinks);
}

// softmax(cap(scale q K^T)) V over the visible keys (cap: p.softcap, when > 0), in double; k, v: stored values [pos][kvh][D].
inline std::vector<float> cpu_attention(const std::vector<float>& q, const std::vector<float>& k,
                                 const std::vector<float>& v, const AttentionParams& p) {
    const uint32_t D = p.head_dim, G = p.n_head / p.n_head_kv;
    std::vector<float> out(size_t(p.n_tokens) * p.n_head * D);
    std::vector<double> s, acc(D);
    for (uint32_t t = 0; t < p.n_tokens; ++t) {
        const uint32_t pos = p.pos0 + t;
        for (uint32_t h = 0; h < p.n_head; ++h) {
            const float* qr = &q[(size_t(t) * p.n_head + h) * D];
            const uint32_t kvh = h / G;
            s.assign(pos + 1, -INFINITY);
            double mx = -INFINITY;
            for (uint32_t j = 0; j <= pos; ++j) {
                if (!visible(p, j, pos)) continue;
                const float* kr = &k[(size_t(j) * p.n_head_kv + kvh) * D];
                double d = 0;
                for (uint32_t e = 0; e < D; ++e) d += double(qr[e]) * kr[e];
                s[j] = d * p.scale;
                if (p.softcap > 0) s[j] = p.softcap * std::tanh(s[j] / p.softcap);
                mx = std::max(mx, s[j]);
            }
            double sum = 0;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (uint32_t j = 0; j <= pos; ++j) {
                if (!visible(p, j, pos)) continue;
                const double w = std::exp(s[j] - mx);
                sum += w;
                const float* vr = &v[(size_t(j) * p.n_head_kv + kvh) * D];
                for (uint32_t e = 0; e < D; ++e) acc[e] += w * vr[e];
            }
            for (uint32_t e = 0; e < D; ++e)
                out[(size_t(t) * p.n_head + h) * D + e] = static_cast<float>(acc[e] / sum);
        }
    }
    return out;
}

}  // namespace kvtest
