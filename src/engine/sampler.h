// Token sampling on the host: repetition penalty, top-k, temperature, min-p, top-p, seeded draw.
// Greedy sampling without a penalty runs on the GPU instead (AttentionKernels::argmax). Logit
// bias, banned tokens and a grammar (engine/grammar.h) constrain the choice first.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar.h"

namespace kv::engine {

class Sampler {
public:
    // Copies desc's logit_bias and banned_tokens arrays (desc() then has NULL pointers and the
    // counts). n_vocab > 0 checks their tokens against the vocabulary (KV_ERR_INVALID_ARGUMENT).
    explicit Sampler(const kv_sampler_desc& desc, uint32_t n_vocab = 0);

    // Greedy without penalty, bias, bans or grammar: the GPU's argmax gives the same token.
    bool gpu_greedy() const { return greedy() && !penalized() && !constrained(); }
    bool greedy() const { return desc_.temperature <= 0.f; }
    bool penalized() const { return desc_.repeat_penalty != 1.f; }
    bool constrained() const { return !bias_.empty() || !banned_.empty() || grammar_.has_value(); }

    // Picks a token from `logits` (n_vocab floats; modified in place by the bias, bans, grammar
    // mask and penalty), given the sequence so far (for the repetition penalty). With a bias, bans
    // or a grammar, KV_ERR_BAD_STATE when they leave no token to pick.
    int32_t sample(float* logits, uint32_t n_vocab, const std::vector<int32_t>& history);

    // The grammar: the sampled token `token` entered the sequence at position `pos`.
    void accept(int32_t token, uint32_t pos);
    // The sequence was cut to `n` positions: the grammar forgets what it matched after them.
    void truncate(uint32_t n) {
        if (grammar_) grammar_->truncate(n);
    }
    std::optional<GrammarMatcher>& grammar() { return grammar_; }
    const std::optional<GrammarMatcher>& grammar() const { return grammar_; }
    void set_grammar(std::optional<GrammarMatcher> g) { grammar_ = std::move(g); }

    // The random engine restarts from the seed; the grammar from its start.
    void reset() {
        rng_.seed(desc_.seed);
        if (grammar_) grammar_->reset();
    }
    // The random engine's state as text (saved sessions), and back (false if malformed).
    std::string rng_state() const;
    bool set_rng_state(const std::string& state);
    // The random engine itself, to put back after a step that failed past its draw.
    const std::mt19937_64& rng() const { return rng_; }
    void set_rng(const std::mt19937_64& rng) { rng_ = rng; }
    const kv_sampler_desc& desc() const { return desc_; }
    const std::vector<kv_logit_bias>& logit_bias() const { return bias_; }
    const std::vector<int32_t>& banned() const { return banned_; }

private:
    // The draw of the header's order after the bias, bans and grammar: -1 when no finite logit.
    int32_t draw(float* logits, uint32_t n_vocab);
    // top-k, top-p or min-p cut the distribution (the grammar mask must come before them).
    bool truncates() const { return !greedy() && (desc_.top_k > 0 || desc_.top_p < 1.f || desc_.min_p > 0.f); }

    kv_sampler_desc desc_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> candidates_;
    std::vector<kv_logit_bias> bias_;
    std::vector<int32_t> banned_;
    std::optional<GrammarMatcher> grammar_;
};

// Validates a caller's sampler settings (KV_ERR_INVALID_ARGUMENT naming the field).
void check_sampler(const kv_sampler_desc& d);

}  // namespace kv::engine
