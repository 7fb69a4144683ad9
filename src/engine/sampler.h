// Token sampling on the host: repetition penalty, top-k, temperature, min-p, top-p, seeded draw.
// Greedy sampling without a penalty runs on the GPU instead (AttentionKernels::argmax).
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace kv::engine {

class Sampler {
public:
    explicit Sampler(const kv_sampler_desc& desc);

    // Greedy without penalty: the GPU's argmax gives the same token.
    bool gpu_greedy() const { return greedy() && !penalized(); }
    bool greedy() const { return desc_.temperature <= 0.f; }
    bool penalized() const { return desc_.repeat_penalty != 1.f; }

    // Picks a token from `logits` (n_vocab floats; modified in place by the penalty), given the
    // sequence so far (for the repetition penalty).
    int32_t sample(float* logits, uint32_t n_vocab, const std::vector<int32_t>& history);

    void reset() { rng_.seed(desc_.seed); }
    // The random engine's state as text (saved sessions), and back (false if malformed).
    std::string rng_state() const;
    bool set_rng_state(const std::string& state);
    // The random engine itself, to put back after a step that failed past its draw.
    const std::mt19937_64& rng() const { return rng_; }
    void set_rng(const std::mt19937_64& rng) { rng_ = rng; }
    const kv_sampler_desc& desc() const { return desc_; }

private:
    kv_sampler_desc desc_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> candidates_;
};

// Validates a caller's sampler settings (KV_ERR_INVALID_ARGUMENT naming the field).
void check_sampler(const kv_sampler_desc& d);

}  // namespace kv::engine
