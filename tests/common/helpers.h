// Shared test helpers: paths to ../shared, random data and error metrics. (Pure: no kvulkan
// library code, so every test executable can link them. See runtime_fixture.h for the C API.)
#pragma once

#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace kvtest {

// ../shared beside the checkout (or $KV_SHARED_DIR); "" if absent.
std::string shared_dir();
// Skips the current test with a message when ../shared is absent. Returns false then.
bool require_shared();
bool file_exists(const std::string& path);
std::vector<uint8_t> read_file(const std::string& path);

// True when the Khronos validation layer is installed.
bool validation_layer_available();

// KV_TEST_FULL=1: sweeps run every combination of their parameters (weight type x token count x
// reduction, ...). Otherwise they run a covering subset: every value of every parameter at least
// once, chosen so the suite fits CI's time on lavapipe, where each new kernel variant costs
// seconds of LLVM compilation on a cold shader cache. Each such test says which set it ran.
bool full_sweep();

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// A fresh seed per call (tests compare on new random data each run); printed on failure.
uint32_t fresh_seed();

// ||a - b|| / ||b|| in double precision.
inline double rel_l2(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        double d = double(a[i]) - double(b[i]);
        num += d * d;
        den += double(b[i]) * double(b[i]);
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    return std::sqrt(num / den);
}
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    return rel_l2(a.data(), b.data(), a.size());
}
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
    return m;
}

}  // namespace kvtest
