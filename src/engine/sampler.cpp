#include "engine/sampler.h"

#include <algorithm>
#include <sstream>
#include <cmath>
#include <unordered_set>

#include "common/error.h"

namespace kv::engine {

void check_sampler(const kv_sampler_desc& d) {
    if (!(d.temperature == d.temperature) || d.temperature > 1e6f)  // NaN or absurd
        fail(KV_ERR_INVALID_ARGUMENT, "sampler temperature %g is invalid", double(d.temperature));
    if (!(d.top_p == d.top_p) || d.top_p <= 0.f)
        fail(KV_ERR_INVALID_ARGUMENT, "sampler top_p %g must be in (0, 1] (>= 1: off)", double(d.top_p));
    if (!(d.min_p == d.min_p) || d.min_p >= 1.f)
        fail(KV_ERR_INVALID_ARGUMENT, "sampler min_p %g must be < 1 (<= 0: off)", double(d.min_p));
    if (!(d.repeat_penalty > 0.f) || d.repeat_penalty > 1e6f)
        fail(KV_ERR_INVALID_ARGUMENT, "sampler repeat_penalty %g must be > 0 (1: off)", double(d.repeat_penalty));
    if (d.n_logit_bias && !d.logit_bias)
        fail(KV_ERR_INVALID_ARGUMENT, "sampler logit_bias is NULL with n_logit_bias %u", d.n_logit_bias);
    if (d.n_banned_tokens && !d.banned_tokens)
        fail(KV_ERR_INVALID_ARGUMENT, "sampler banned_tokens is NULL with n_banned_tokens %u", d.n_banned_tokens);
    for (uint32_t i = 0; i < d.n_logit_bias && d.logit_bias; ++i) {
        float b = d.logit_bias[i].bias;
        if (std::isnan(b) || b == INFINITY)
            fail(KV_ERR_INVALID_ARGUMENT, "sampler logit_bias[%u].bias is %g: it must be finite or -INFINITY", i, double(b));
    }
}

Sampler::Sampler(const kv_sampler_desc& desc, uint32_t n_vocab) : desc_(desc), rng_(desc.seed) {
    if (desc_.repeat_last_n == 0) desc_.repeat_last_n = 64;
    if (desc.logit_bias) bias_.assign(desc.logit_bias, desc.logit_bias + desc.n_logit_bias);
    if (desc.banned_tokens) banned_.assign(desc.banned_tokens, desc.banned_tokens + desc.n_banned_tokens);
    desc_.logit_bias = nullptr;  // the copies above are what is used; the caller's arrays are not kept
    desc_.banned_tokens = nullptr;
    desc_.n_logit_bias = uint32_t(bias_.size());
    desc_.n_banned_tokens = uint32_t(banned_.size());
    if (n_vocab) {
        for (size_t i = 0; i < bias_.size(); ++i)
            if (bias_[i].token < 0 || uint32_t(bias_[i].token) >= n_vocab)
                fail(KV_ERR_INVALID_ARGUMENT, "sampler logit_bias[%zu].token is %d, outside the vocabulary [0, %u)", i,
                     bias_[i].token, n_vocab);
        for (size_t i = 0; i < banned_.size(); ++i)
            if (banned_[i] < 0 || uint32_t(banned_[i]) >= n_vocab)
                fail(KV_ERR_INVALID_ARGUMENT, "sampler banned_tokens[%zu] is %d, outside the vocabulary [0, %u)", i,
                     banned_[i], n_vocab);
    }
}

void Sampler::accept(int32_t token, uint32_t pos) {
    // The token was sampled through the mask, so it fits; a grammar attached after the draw
    // (impossible within one step) would be the only way not to.
    if (grammar_) KV_CHECK(grammar_->accept(token, pos));
}

std::string Sampler::rng_state() const {
    std::ostringstream os;
    os << rng_;
    return os.str();
}

bool Sampler::set_rng_state(const std::string& state) {
    std::istringstream is(state);
    std::mt19937_64 r;
    is >> r;
    if (is.fail()) return false;
    rng_ = r;
    return true;
}

int32_t Sampler::sample(float* logits, uint32_t n_vocab, const std::vector<int32_t>& history) {
    for (const kv_logit_bias& b : bias_)
        if (uint32_t(b.token) < n_vocab) logits[b.token] += b.bias;
    for (int32_t t : banned_)
        if (uint32_t(t) < n_vocab) logits[t] = -INFINITY;
    if (penalized()) {
        // llama.cpp semantics: a seen token's positive logit is divided, a negative one multiplied.
        std::unordered_set<int32_t> seen;
        size_t from = history.size() > desc_.repeat_last_n ? history.size() - desc_.repeat_last_n : 0;
        for (size_t i = from; i < history.size(); ++i) seen.insert(history[i]);
        for (int32_t t : seen)
            if (t >= 0 && uint32_t(t) < n_vocab)
                logits[t] = logits[t] > 0 ? logits[t] / desc_.repeat_penalty : logits[t] * desc_.repeat_penalty;
    }
    int32_t tok;
    if (grammar_ && !truncates()) {
        // Greedy or plain temperature: draw from the unmasked distribution and keep the token when
        // it fits. This IS the masked distribution: a fitting t comes out with probability
        // p(t) + P(misfit) * p(t) / P(fit) = p(t) / P(fit). Only a misfit pays for the full mask.
        // (Greedy: the argmax, when it fits, is the masked argmax.)
        tok = draw(logits, n_vocab);
        if (tok >= 0 && grammar_->allows(tok)) return tok;
    }
    if (grammar_) grammar_->mask(logits, n_vocab);
    tok = draw(logits, n_vocab);
    if (tok < 0) {
        if (!constrained()) return 0;  // no finite logit at all: a broken model's output
        fail(KV_ERR_BAD_STATE, "no token is left to sample: %s", grammar_ ? "the grammar allows none of the vocabulary here (or the banned tokens and bias removed those it allows)" : "every token is banned or biased to -INFINITY");
    }
    return tok;
}

int32_t Sampler::draw(float* logits, uint32_t n_vocab) {
    if (greedy()) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < n_vocab; ++i)
            if (logits[i] > logits[best]) best = i;
        if (!(logits[best] > -INFINITY)) {  // all -inf or NaN: the first finite one, if any
            best = 0;
            while (best < n_vocab && !std::isfinite(logits[best])) ++best;
            if (best == n_vocab) return -1;
        }
        return static_cast<int32_t>(best);
    }
    auto& c = candidates_;
    c.clear();
    c.reserve(n_vocab);
    for (uint32_t i = 0; i < n_vocab; ++i)
        if (std::isfinite(logits[i])) c.emplace_back(logits[i], static_cast<int32_t>(i));
    if (c.empty()) return -1;
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t k = c.size();
    if (desc_.top_k > 0 && size_t(desc_.top_k) < k) k = size_t(desc_.top_k);
    std::partial_sort(c.begin(), c.begin() + long(k), c.end(), by_logit);
    c.resize(k);
    // Temperature and softmax (in double for stable sums).
    double max = c[0].first, sum = 0;
    std::vector<double> p(c.size());
    for (size_t i = 0; i < c.size(); ++i) sum += p[i] = std::exp((double(c[i].first) - max) / double(desc_.temperature));
    for (auto& x : p) x /= sum;
    // min-p: drop tokens below min_p * p(top).
    size_t n = c.size();
    if (desc_.min_p > 0.f)
        while (n > 1 && p[n - 1] < double(desc_.min_p) * p[0]) --n;
    // top-p: the smallest prefix whose mass reaches top_p.
    if (desc_.top_p < 1.f) {
        double acc = 0;
        for (size_t i = 0; i < n; ++i) {
            acc += p[i];
            if (acc >= double(desc_.top_p)) {
                n = i + 1;
                break;
            }
        }
    }
    double mass = 0;
    for (size_t i = 0; i < n; ++i) mass += p[i];
    double r = std::uniform_real_distribution<double>(0.0, mass)(rng_);
    for (size_t i = 0; i < n; ++i) {
        r -= p[i];
        if (r <= 0) return c[i].second;
    }
    return c[n - 1].second;
}

}  // namespace kv::engine
