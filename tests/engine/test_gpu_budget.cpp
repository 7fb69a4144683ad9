// GpuBudget's plan: where a pass of a given row count is cut into submissions, from the layer
// costs recorded for earlier passes (no GPU needed: the costs are given).
#include <doctest/doctest.h>

#include <vector>

#include "engine/gpu_budget.h"

using kv::engine::GpuBudget;

namespace {
// The indices l with cut[l] set.
std::vector<uint32_t> cuts(const std::vector<bool>& cut) {
    std::vector<uint32_t> at;
    for (uint32_t l = 0; l < cut.size(); ++l)
        if (cut[l]) at.push_back(l);
    return at;
}
}  // namespace

TEST_CASE("gpu budget: nothing measured cuts after every layer and gives the head its own submission") {
    GpuBudget b(1000, 4);
    CHECK(cuts(b.plan(1, true)) == std::vector<uint32_t>{0, 1, 2, 3});
    CHECK(cuts(b.plan(1, false)) ==
          std::vector<uint32_t>{0, 1, 2});  // no head: nothing after the last layer
    CHECK(GpuBudget::slots(4) == 10);
    CHECK(b.head_slot() == 8);
}

TEST_CASE(
    "gpu budget: layers are packed into submissions that fit, a layer over the budget stands "
    "alone") {
    GpuBudget b(1000, 6);  // 1 ms
    // ns per layer: 400, 400, 400, 1500 (over the budget), 300, 300; head 200.
    b.record(1, {400e3, 400e3, 400e3, 1500e3, 300e3, 300e3}, 200e3);
    // [0 1] (800) | [2] (+1500 would overflow, alone 400) | [3] (1500) | [4 5 head] (800)
    CHECK(cuts(b.plan(1, true)) == std::vector<uint32_t>{1, 2, 3});
    // A budget larger than the whole pass: one submission.
    GpuBudget roomy(1000000, 6);
    roomy.record(1, {400e3, 400e3, 400e3, 1500e3, 300e3, 300e3}, 200e3);
    CHECK(cuts(roomy.plan(1, true)).empty());
}

TEST_CASE("gpu budget: an unmeasured row count borrows the nearest measured one, scaled up only") {
    GpuBudget b(1000, 2);
    b.record(8, {300e3, 300e3}, 100e3);
    double head = 0;
    std::vector<double> e = b.estimate(4, &head);  // fewer rows: the larger pass's cost as is
    REQUIRE(e.size() == 2);
    CHECK(e[0] == doctest::Approx(300e3));
    CHECK(head == doctest::Approx(100e3));
    e = b.estimate(32, &head);  // more rows: scaled linearly (4x)
    CHECK(e[0] == doctest::Approx(1200e3));
    CHECK(head == doctest::Approx(400e3));
    CHECK(cuts(b.plan(32, true)) == std::vector<uint32_t>{0, 1});
    CHECK(cuts(b.plan(8, true)).empty());  // 300 + 300 + 100 fit
    // Later passes move the estimate (a moving average); a bad sample (a timestamp not written)
    // is dropped.
    b.record(8, {700e3, 700e3}, 100e3);
    e = b.estimate(8, &head);
    CHECK(e[0] == doctest::Approx(0.75 * 300e3 + 0.25 * 700e3));
    b.record(8, {-1.0, 5.0}, 0);
    CHECK(b.estimate(8, &head)[0] == doctest::Approx(0.75 * 300e3 + 0.25 * 700e3));
}
