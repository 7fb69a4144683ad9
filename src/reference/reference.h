// The CPU reference forward pass: the oracle every GPU test compares to.
//
// Plain C++ on float32 weights (every tensor dequantized once at load with
// model::dequantize_row) and float32 activations, with sums accumulated in double (see ops.h).
// Single-threaded and unoptimized on purpose: obviously correct first. Measured against the
// float64 "exact" logits in ../shared/reference/, every fixture and weight type is within
// 1e-5 relative L2 (tests/reference/test_reference.cpp).
//
//   auto file  = kv::model::GgufFile::open(path);
//   auto model = kv::reference::ReferenceModel::load(*file);   // file may be closed after this
//   kv::reference::ReferenceSession s(*model);
//   std::vector<float> logits = s.prefill(ids.data(), ids.size());   // last position's logits
//   logits = s.decode(kv::reference::argmax(logits.data(), logits.size()));
//
//   // The no-cache baseline: the whole sequence recomputed from scratch.
//   std::vector<float> same = kv::reference::forward_full(*model, all_ids.data(), all_ids.size());
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/arch.h"
#include "model/gguf.h"
#include "reference/ops.h"

namespace kv::reference {

// A model's weights as float32. Matrices are row-major [out][in] (ggml layout, ne = {in, out}).
// Absent optional tensors (biases, rope factors) are empty vectors.
struct LayerWeights {
    std::vector<float> attn_norm, wq, wk, wv, wo, bq, bk, bv, bo;
    std::vector<float> ffn_norm, ffn_gate, ffn_up, ffn_down;
    std::vector<float> attn_q_norm, attn_k_norm, post_attn_norm, post_ffn_norm;  // or empty
};

class ReferenceModel {
public:
    // Validates the architecture (model::describe_model: same errors) and dequantizes every
    // weight. The result does not refer to `file` afterwards.
    static std::unique_ptr<ReferenceModel> load(const model::GgufFile& file);

    // The configuration (its tensor pointers are not kept: only config values).
    const model::ModelConfig& config() const { return config_; }
    const std::vector<float>& token_embd() const { return token_embd_; }  // [n_vocab][n_embd]
    const std::vector<float>& output_norm() const { return output_norm_; }
    // [n_vocab][n_embd]; the same storage as token_embd() when the output is tied.
    const std::vector<float>& output() const { return config_.tied_output ? token_embd_ : output_; }
    const std::vector<float>& rope_freqs() const { return rope_freqs_; }  // [n_rot/2] or empty
    // The rope factor table of a session of n_ctx positions (nullptr: none): rope_freqs, YaRN's,
    // or LongRoPE's long table when n_ctx exceeds the original context, else its short one.
    const float* rope_factors(uint32_t n_ctx) const;
    const LayerWeights& layer(uint32_t l) const { return layers_.at(l); }

private:
    ReferenceModel() = default;
    model::ModelConfig config_;
    std::vector<float> token_embd_, output_norm_, output_, rope_freqs_, rope_short_, rope_long_;
    std::vector<LayerWeights> layers_;
};

// One sequence with a float32 KV cache: K (after RoPE) and V of every processed position, per
// layer, written once and never recomputed. Not thread-safe; several sessions may share a model,
// which must outlive them.
class ReferenceSession {
public:
    // `kv_type` emulates a KV cache stored in that format: every K/V vector is rounded through
    // round_kv (per KV head, head_dim values, blocks of kv_quant_block(head_dim)) when written,
    // so a GPU engine with F16/BF16/Q8_0/Q4_0 pages can be held to a tight tolerance against the
    // matching reference. F32 (default) stores exactly. Throws KV_ERR_UNSUPPORTED for other
    // types, or for Q8_0/Q4_0 when head_dim is neither a multiple of 32 nor 2, 4, 8 or 16.
    // `n_ctx` (0: the model's context_length) picks LongRoPE's factor table (rope_factors()).
    explicit ReferenceSession(const ReferenceModel& model,
                              model::GgmlType kv_type = model::GgmlType::F32, uint32_t n_ctx = 0);

    // Processes `n` tokens at positions [n_past(), n_past() + n). Returns the logits of the last
    // one (n_vocab floats), or of every one (n x n_vocab, row-major) when all_logits.
    // Throws KV_ERR_BAD_TOKEN for an id outside [0, n_vocab), KV_ERR_INVALID_ARGUMENT for n == 0.
    std::vector<float> prefill(const int32_t* ids, size_t n, bool all_logits = false);
    std::vector<float> prefill(const std::vector<int32_t>& ids, bool all_logits = false) {
        return prefill(ids.data(), ids.size(), all_logits);
    }
    // One token: prefill(&id, 1).
    std::vector<float> decode(int32_t id) { return prefill(&id, 1); }

    // The final hidden state (rms_norm with the output norm: the output head's input) of every
    // token of the last prefill, [n][n_embd], kept when set_keep_hidden(true) (default off).
    void set_keep_hidden(bool keep) { keep_hidden_ = keep; }
    const std::vector<float>& hidden() const { return hidden_; }

    uint32_t n_past() const { return n_past_; }
    model::GgmlType kv_type() const { return kv_type_; }
    void reset() { truncate(0); }
    // Forgets positions [n, n_past()) (rollback). n must be <= n_past().
    void truncate(uint32_t n);

    // Cached K (rotated) / V of `layer` at position `pos` < n_past(): kv_dim floats, KV head h at
    // offset h * head_dim. Valid until the next prefill/truncate.
    const float* key(uint32_t layer, uint32_t pos) const;
    const float* value(uint32_t layer, uint32_t pos) const;
    // Test hook: called with every new position's K (rotated) and V of each layer (kv_dim floats
    // each) once they are computed and rounded through kv_type, before any attention reads
    // them; it may replace them, e.g. with what a GPU cache holds for (layer, pos), so that the
    // reference is held to the K/V the GPU actually stored. Empty: none.
    using KvHook = std::function<void(uint32_t layer, uint32_t pos, float* k, float* v)>;
    void set_kv_hook(KvHook hook) { kv_hook_ = std::move(hook); }

private:
    void store_kv(float* x) const;  // rounds one position's kv_dim values through kv_type_

    const ReferenceModel& model_;
    model::GgmlType kv_type_;
    uint32_t n_ctx_ = 0;
    uint32_t n_past_ = 0;
    // Per layer: [position][kv_dim].
    std::vector<std::vector<float>> k_, v_;
    KvHook kv_hook_;
    bool keep_hidden_ = false;
    std::vector<float> hidden_;
};

// Values per fp16 scale of a Q8_0/Q4_0 KV row of head_dim values, as the engine's pages store
// them (engine::kv_quant_block): ggml's 32, or the whole row when head_dim < 32.
uint32_t kv_quant_block(uint32_t head_dim);

// Rounds x[0, n) in place as a KV cache of `type` stores it and reads it back:
//   F32: unchanged; F16, BF16: per value (model::quantize_row + dequantize_row);
//   Q8_0, Q4_0: per block of `block` values (n % block == 0; Q4_0: block even), ggml's
//     reference quantizers over the block:
//       Q8_0: d = amax / 127, q = round-half-away(x * (1 / d)) in [-127, 127], x' = q * fp16(d)
//       Q4_0: d = max / -8 (max: the first value of largest magnitude),
//             q = min(15, int(x * (1 / d) + 8.5)), x' = (q - 8) * fp16(d)
//     (1 / d is 0 for d == 0). block == 32 is bit-identical to model::quantize_row +
//     dequantize_row (tests/reference/test_kv_rounding.cpp).
// Throws KV_ERR_INVALID_ARGUMENT for a bad block, KV_ERR_UNSUPPORTED for other types.
void round_kv(model::GgmlType type, float* x, size_t n, uint32_t block);

// The no-cache baseline: the logits of tokens `ids` recomputed from scratch (a fresh session,
// discarded afterwards). Last position's logits, or every position's when all_logits.
std::vector<float> forward_full(const ReferenceModel& model, const int32_t* ids, size_t n,
                                bool all_logits = false);

// Greedy generation through the KV cache: prefill `prompt`, then `n_gen` times take the argmax and
// feed it back. Returns the generated ids; when `step_logits` is given, it receives the logits
// after the prompt and after each generated token (n_gen rows of n_vocab; the last token's own
// logits are not computed).
std::vector<int32_t> generate_greedy(const ReferenceModel& model,
                                     const std::vector<int32_t>& prompt, size_t n_gen,
                                     std::vector<std::vector<float>>* step_logits = nullptr);

}  // namespace kv::reference
