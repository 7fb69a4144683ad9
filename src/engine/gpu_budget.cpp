#include "engine/gpu_budget.h"

#include <cmath>

namespace kv::engine {

std::vector<double> GpuBudget::estimate_locked(uint32_t rows, double* head_ns) const {
    *head_ns = 0;
    if (costs_.empty()) return {};
    // The nearest measured row count at or above `rows`, else the largest below it (scaled up).
    auto it = costs_.lower_bound(rows);
    double scale = 1.0;
    if (it == costs_.end()) {
        --it;
        scale = double(rows) / double(it->first);
    }
    std::vector<double> est(it->second.layer_ns);
    for (double& ns : est) ns *= scale;
    *head_ns = it->second.head_ns * scale;
    return est;
}

std::vector<double> GpuBudget::estimate(uint32_t rows, double* head_ns) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return estimate_locked(rows, head_ns);
}

std::vector<bool> GpuBudget::plan(uint32_t rows, bool has_head) const {
    std::vector<bool> cut(n_layer_, false);
    double head_ns = 0;
    std::vector<double> est;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        est = estimate_locked(rows, &head_ns);
    }
    if (est.size() != n_layer_) {  // nothing measured: every layer (and the head) on its own
        for (uint32_t l = 0; l + 1 < n_layer_; ++l) cut[l] = true;
        if (has_head && n_layer_) cut[n_layer_ - 1] = true;
        return cut;
    }
    double acc = 0;
    for (uint32_t l = 0; l < n_layer_; ++l) {
        acc += est[l];
        const bool last = l + 1 == n_layer_;
        if (last && !has_head) break;
        const double next = last ? head_ns : est[l + 1];
        if (acc > 0 && acc + next > budget_ns_) {
            cut[l] = true;
            acc = 0;
        }
    }
    return cut;
}

void GpuBudget::record(uint32_t rows, const std::vector<double>& layer_ns, double head_ns) {
    if (layer_ns.size() != n_layer_) return;
    for (double ns : layer_ns)
        if (!(ns >= 0) || !std::isfinite(ns)) return;  // a timestamp not written (or wrapped)
    std::lock_guard<std::mutex> lock(mutex_);
    auto [it, fresh] = costs_.try_emplace(rows);
    Cost& c = it->second;
    if (fresh) {
        c.layer_ns = layer_ns;
        c.head_ns = head_ns;
        return;
    }
    // A moving average: the last passes weigh most (contexts grow, clocks change).
    const double a = 0.25;
    for (uint32_t l = 0; l < n_layer_; ++l)
        c.layer_ns[l] = (1 - a) * c.layer_ns[l] + a * layer_ns[l];
    c.head_ns = (1 - a) * c.head_ns + a * head_ns;
}

}  // namespace kv::engine
