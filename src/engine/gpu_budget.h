// The per-submission GPU time budget (kv_runtime_desc.gpu_budget_us): where a forward pass is cut
// into submissions so that none is expected to run longer than the budget on the GPU.
//
// Costs come from timestamp queries of earlier passes of the same model: a pass with the budget
// on writes a timestamp at the start and at the end of every layer and of the output head
// (slots(), in the pass's CommandStream), and record() keeps, per row count T of the pass, the
// nanoseconds of each layer and of the head (a moving average). plan() cuts at layer boundaries:
// it puts as many consecutive layers into one submission as fit the budget by those estimates.
// A row count never measured borrows the nearest measured one (scaled up linearly for more rows,
// kept as is for fewer: both over-estimates, since part of a layer's cost is per pass); with no
// measurement at all every layer is its own submission. The output head is always the last
// submission's (it also holds the sampling copies).
//
// Thread-safe: sessions of one model run passes on several threads.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace kv::engine {

class GpuBudget {
public:
    GpuBudget(uint32_t budget_us, uint32_t n_layer)
        : budget_ns_(double(budget_us) * 1000.0), n_layer_(n_layer) {}

    // Timestamp slots a pass needs: [2l, 2l+1] = start and end of layer l; the head's are the last
    // two.
    static uint32_t slots(uint32_t n_layer) { return 2 * n_layer + 2; }
    uint32_t head_slot() const { return 2 * n_layer_; }

    // For a pass of `rows` rows: cut[l] = submit after layer l (l < n_layer; cut[n_layer - 1]:
    // the head goes into a submission of its own).
    std::vector<bool> plan(uint32_t rows, bool has_head) const;
    // The measured cost of a pass of `rows` rows (n_layer layer costs, and the head's or 0).
    void record(uint32_t rows, const std::vector<double>& layer_ns, double head_ns);
    // Estimated ns of each layer for `rows` rows (empty: nothing measured yet).
    std::vector<double> estimate(uint32_t rows, double* head_ns) const;

private:
    struct Cost {
        std::vector<double> layer_ns;
        double head_ns = 0;
    };
    std::vector<double> estimate_locked(uint32_t rows, double* head_ns) const;

    double budget_ns_;
    uint32_t n_layer_;
    mutable std::mutex mutex_;
    std::map<uint32_t, Cost> costs_;  // by row count
};

}  // namespace kv::engine
