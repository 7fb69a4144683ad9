// The host sampler (src/engine/sampler.h) on hand-made logits: which tokens each filter keeps, the
// probabilities a draw follows, the repetition penalty's arithmetic and window, and the order the
// header documents (penalty, top-k, temperature, softmax, min-p, top-p, draw).
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "engine/sampler.h"

using kv::engine::Sampler;

namespace {

kv_sampler_desc desc(float temperature) {
    kv_sampler_desc d = KV_SAMPLER_DESC_INIT;
    d.temperature = temperature;
    d.seed = 1234;
    return d;
}

// Logits whose softmax at temperature 1 is exactly `p` (up to rounding).
std::vector<float> logits_of(const std::vector<double>& p) {
    std::vector<float> l;
    for (double x : p) l.push_back(float(std::log(x)));
    return l;
}

constexpr int kDraws = 20000;
// A drawn frequency's standard error is at most sqrt(0.25 / kDraws) = 0.0035: 0.02 is ~6 sigma.
constexpr double kFreqTol = 0.02;

// Draws kDraws tokens and returns each token's frequency.
std::map<int32_t, double> frequencies(Sampler& s, const std::vector<float>& logits,
                                      const std::vector<int32_t>& history = {}) {
    std::map<int32_t, double> f;
    for (int i = 0; i < kDraws; ++i) {
        std::vector<float> l = logits;  // sample() may modify its input (the penalty)
        f[s.sample(l.data(), uint32_t(l.size()), history)] += 1.0 / kDraws;
    }
    return f;
}

std::set<int32_t> support(const std::map<int32_t, double>& f) {
    std::set<int32_t> s;
    for (auto& [t, _] : f) s.insert(t);
    return s;
}

// Softmax of `l` restricted to `keep`, at temperature `temp`.
std::map<int32_t, double> expected(const std::vector<float>& l, const std::set<int32_t>& keep, double temp) {
    double sum = 0;
    std::map<int32_t, double> p;
    for (int32_t t : keep) sum += p[t] = std::exp(double(l[size_t(t)]) / temp);
    for (auto& [_, v] : p) v /= sum;
    return p;
}

void check_distribution(const std::map<int32_t, double>& got, const std::map<int32_t, double>& want) {
    CHECK(support(got) == support(want));
    for (auto& [t, p] : want) {
        auto it = got.find(t);
        double f = it == got.end() ? 0.0 : it->second;
        CHECK_MESSAGE(std::fabs(f - p) < kFreqTol, "token " << t << ": drawn " << f << ", expected " << p);
    }
}

}  // namespace

TEST_CASE("sampler: top-k keeps the k largest logits and draws by their softmax") {
    std::vector<float> l = {1.f, 5.f, 3.f, 4.f, 2.f};
    kv_sampler_desc d = desc(1.f);
    d.top_k = 2;
    Sampler s(d);
    check_distribution(frequencies(s, l), expected(l, {1, 3}, 1.0));  // 0.731 / 0.269
    d.top_k = 1;  // top-1 is greedy, whatever the temperature
    Sampler one(d);
    CHECK(support(frequencies(one, l)) == std::set<int32_t>{1});
    d.top_k = 0;  // off: every token can be drawn
    Sampler all(d);
    check_distribution(frequencies(all, l), expected(l, {0, 1, 2, 3, 4}, 1.0));
}

TEST_CASE("sampler: temperature divides the logits before the softmax, after top-k") {
    std::vector<float> l = {0.f, 1.f, 2.f, -1.f};
    for (float temp : {0.5f, 2.f}) {
        kv_sampler_desc d = desc(temp);
        d.top_k = 3;  // the same three tokens at any temperature
        Sampler s(d);
        check_distribution(frequencies(s, l), expected(l, {0, 1, 2}, temp));
    }
    Sampler greedy(desc(0.f));  // <= 0: argmax, no draw
    std::vector<float> g = l;
    CHECK(greedy.sample(g.data(), 4, {}) == 2);
}

TEST_CASE("sampler: min-p drops tokens below min_p x p(top)") {
    std::vector<float> l = logits_of({0.5, 0.3, 0.15, 0.05});
    kv_sampler_desc d = desc(1.f);
    d.min_p = 0.2f;  // threshold 0.1: keeps 0.5, 0.3, 0.15
    Sampler a(d);
    check_distribution(frequencies(a, l), expected(l, {0, 1, 2}, 1.0));
    d.min_p = 0.4f;  // threshold 0.2: keeps 0.5, 0.3
    Sampler b(d);
    check_distribution(frequencies(b, l), expected(l, {0, 1}, 1.0));
}

TEST_CASE("sampler: top-p keeps the smallest prefix whose mass reaches top_p") {
    std::vector<float> l = logits_of({0.5, 0.3, 0.15, 0.05});
    kv_sampler_desc d = desc(1.f);
    d.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8
    Sampler a(d);
    check_distribution(frequencies(a, l), expected(l, {0, 1}, 1.0));
    d.top_p = 0.85f;  // 0.8 < 0.85 <= 0.95
    Sampler b(d);
    check_distribution(frequencies(b, l), expected(l, {0, 1, 2}, 1.0));
    d.top_p = 0.4f;  // the top token alone already reaches it
    Sampler c(d);
    CHECK(support(frequencies(c, l)) == std::set<int32_t>{0});
}

TEST_CASE("sampler: min-p and top-p together keep what both keep") {
    // p = 0.4, 0.3, 0.2, 0.1. min_p 0.3 (threshold 0.12) keeps 0..2; top_p 0.6 keeps 0, 1
    // (0.4 < 0.6 <= 0.7); both compare the softmax over the top-k survivors (here: all).
    std::vector<float> l = logits_of({0.4, 0.3, 0.2, 0.1});
    kv_sampler_desc d = desc(1.f);
    d.min_p = 0.3f;
    d.top_p = 0.6f;
    Sampler s(d);
    check_distribution(frequencies(s, l), expected(l, {0, 1}, 1.0));
}

TEST_CASE("sampler: the repetition penalty divides positive and multiplies negative logits of seen tokens") {
    kv_sampler_desc d = desc(0.f);
    d.repeat_penalty = 1.25f;
    d.repeat_last_n = 3;
    Sampler s(d);
    // History: token 0 long ago (outside the last 3), tokens 1 and 2 recently, 2 twice (once applied).
    std::vector<int32_t> history = {0, 1, 2, 2};
    std::vector<float> l = {4.f, 2.5f, -2.f, 1.f};
    int32_t t = s.sample(l.data(), 4, history);
    CHECK(l[0] == 4.f);           // outside the window: untouched
    CHECK(l[1] == 2.5f / 1.25f);  // positive: divided
    CHECK(l[2] == -2.f * 1.25f);  // negative: multiplied, once
    CHECK(l[3] == 1.f);           // never seen
    CHECK(t == 0);

    // The penalty changes the greedy choice: 2.0 / 1.25 = 1.6 < 1.9.
    std::vector<float> m = {2.0f, 1.9f, 0.f};
    CHECK(s.sample(m.data(), 3, {0}) == 1);
    // Penalty 1 is off; the GPU-greedy path is only used when it is.
    CHECK(!Sampler(desc(0.f)).penalized());
    CHECK(s.penalized());
    CHECK(!s.gpu_greedy());
}

TEST_CASE("sampler: the penalty applies before top-k") {
    // Without the penalty top-2 is {0, 1}; token 0 penalized to 3 / 2 = 1.5 falls behind token 2.
    std::vector<float> l = {3.f, 2.f, 1.75f, 0.f};
    kv_sampler_desc d = desc(1.f);
    d.top_k = 2;
    d.repeat_penalty = 2.f;
    Sampler s(d);
    std::vector<float> penalized = {1.5f, 2.f, 1.75f, 0.f};
    check_distribution(frequencies(s, l, {0}), expected(penalized, {1, 2}, 1.0));
}

TEST_CASE("sampler: a seed gives the same draws, reset() restarts them, and the state round-trips") {
    std::vector<float> l = logits_of({0.25, 0.25, 0.25, 0.25});
    Sampler a(desc(1.f)), b(desc(1.f));
    std::vector<int32_t> da, db;
    for (int i = 0; i < 64; ++i) {
        std::vector<float> x = l, y = l;
        da.push_back(a.sample(x.data(), 4, {}));
        db.push_back(b.sample(y.data(), 4, {}));
    }
    CHECK(da == db);
    CHECK(std::set<int32_t>(da.begin(), da.end()).size() == 4);  // a draw, not a constant
    std::string mid = a.rng_state();
    std::vector<int32_t> next;
    for (int i = 0; i < 16; ++i) {
        std::vector<float> x = l;
        next.push_back(a.sample(x.data(), 4, {}));
    }
    Sampler c(desc(1.f));
    REQUIRE(c.set_rng_state(mid));
    for (int i = 0; i < 16; ++i) {
        std::vector<float> x = l;
        CHECK(c.sample(x.data(), 4, {}) == next[size_t(i)]);
    }
    CHECK(!c.set_rng_state("not a state"));
    a.reset();
    for (int i = 0; i < 8; ++i) {
        std::vector<float> x = l;
        CHECK(a.sample(x.data(), 4, {}) == da[size_t(i)]);
    }
}

TEST_CASE("sampler: non-finite logits are never drawn, and invalid settings are refused") {
    std::vector<float> l = {-INFINITY, 1.f, NAN, 0.5f};
    Sampler s(desc(1.f));
    CHECK(support(frequencies(s, l)) == std::set<int32_t>{1, 3});
    kv_sampler_desc d = desc(1.f);
    d.top_p = 0.f;
    CHECK_THROWS(kv::engine::check_sampler(d));
    d = desc(1.f);
    d.min_p = 1.f;
    CHECK_THROWS(kv::engine::check_sampler(d));
    d = desc(NAN);
    CHECK_THROWS(kv::engine::check_sampler(d));
    d = desc(1.f);
    d.repeat_penalty = 0.f;
    CHECK_THROWS(kv::engine::check_sampler(d));
}
