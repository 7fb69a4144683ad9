// Builds small random-weight GGUF models in memory with model::GgufWriter (llama, qwen2, and the
// tensors of qwen3, gemma2 and gemma3; their keys come from the spec's extra keys), valid by default and
// breakable on purpose (drop or reshape a tensor, change its type, override or omit a key), for
// architecture-validation tests and reference-model tests. Used by tests/reference/ and
// tests/model/test_arch.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "model/ggml_types.h"
#include "model/gguf.h"

namespace kvtest {

struct TinySpec {
    std::string arch = "llama";
    uint32_t n_vocab = 64, n_embd = 32, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 48;
    uint32_t n_ctx = 256;
    uint32_t n_rot = 0;  // 0: key not written (defaults to head_dim)
    float rope_base = 10000.f;
    float rms_eps = 1e-5f;
    bool tied = false;             // no output.weight
    bool qkv_bias = false;         // attn_{q,k,v}.bias (always written for qwen2 unless dropped)
    bool rope_freqs = false;       // rope_freqs.weight: random factors >= 1
    float rope_freqs_value = 0.f;  // > 0: every factor this value instead
    uint32_t sliding_window = 0;   // 0: key not written
    kv::model::GgmlType type = kv::model::GgmlType::F32;  // matrices (norms/biases stay F32)
    uint32_t seed = 1;

    std::map<std::string, uint32_t> u32_overrides;  // "<arch>.block_count" -> value (written as is)
    std::set<std::string> omit_keys;                // keys not written
    std::map<std::string, std::string> string_keys;  // extra string keys
    std::map<std::string, float> f32_keys;           // extra float keys
    // Called for each tensor before it is written: may rename, reshape or retype it; return false
    // to leave it out.
    std::function<bool(std::string& name, std::vector<uint64_t>& ne, kv::model::GgmlType& type)>
        edit;
};

inline std::vector<uint8_t> build_tiny_model(const TinySpec& s) {
    using kv::model::GgmlType;
    kv::model::GgufWriter w;
    const std::string a = s.arch;
    std::set<std::string> written;
    auto u32 = [&](const std::string& key, uint32_t v) {
        written.insert(key);
        if (s.omit_keys.count(key)) return;
        auto it = s.u32_overrides.find(key);
        w.set_u32(key, it != s.u32_overrides.end() ? it->second : v);
    };
    if (!s.omit_keys.count("general.architecture")) w.set_string("general.architecture", a);
    w.set_string("general.name", "tiny-" + a);
    u32(a + ".context_length", s.n_ctx);
    u32(a + ".embedding_length", s.n_embd);
    u32(a + ".block_count", s.n_layer);
    u32(a + ".feed_forward_length", s.n_ff);
    u32(a + ".attention.head_count", s.n_head);
    u32(a + ".attention.head_count_kv", s.n_head_kv);
    if (s.n_rot) u32(a + ".rope.dimension_count", s.n_rot);
    if (s.sliding_window) u32(a + ".attention.sliding_window", s.sliding_window);
    for (const auto& kv : s.u32_overrides)  // extra keys (e.g. "<arch>.vocab_size")
        if (!written.count(kv.first)) w.set_u32(kv.first, kv.second);
    for (const auto& kv : s.string_keys) w.set_string(kv.first, kv.second);
    for (const auto& kv : s.f32_keys) w.set_f32(kv.first, kv.second);
    if (!s.omit_keys.count(a + ".attention.layer_norm_rms_epsilon"))
        w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_eps);
    if (!s.omit_keys.count(a + ".rope.freq_base")) w.set_f32(a + ".rope.freq_base", s.rope_base);

    std::mt19937 rng(s.seed), rng_factors(s.seed + 1);  // factors apart: other weights stay put
    std::normal_distribution<float> normal(0.f, 1.f);
    const uint64_t E = s.n_embd, HD = s.n_embd / s.n_head, Q = s.n_head * HD, KV = s.n_head_kv * HD,
                   F = s.n_ff, V = s.n_vocab;
    auto add = [&](std::string name, std::vector<uint64_t> ne, GgmlType type, int kind) {
        if (s.edit && !s.edit(name, ne, type)) return;
        uint64_t n = 1;
        for (uint64_t d : ne) n *= d;
        std::vector<float> data(n);
        const float fan_in = static_cast<float>(ne[0]);
        for (float& x : data) {
            if (kind == 0)
                x = normal(rng) / std::sqrt(fan_in);  // matrix
            else if (kind == 1)
                x = 1.f + 0.1f * normal(rng);  // norm weight
            else if (kind == 2)
                x = 0.2f * normal(rng);  // bias
            else
                x = s.rope_freqs_value > 0 ? s.rope_freqs_value
                                           : 1.f + std::fabs(normal(rng_factors));
        }
        const kv::model::TypeTraits* tr = kv::model::type_traits(type);
        bool quantizable = type == GgmlType::F32 || type == GgmlType::F16 ||
                           type == GgmlType::BF16 || type == GgmlType::Q8_0 ||
                           type == GgmlType::Q4_0;
        if (quantizable) {
            w.add_tensor_f32(name, type, ne, data.data());
        } else {  // raw zero blocks of a type we cannot produce (e.g. an unsupported one)
            uint64_t rows = n / ne[0];
            std::vector<uint8_t> bytes(rows * (ne[0] / tr->block_size) * tr->type_size, 0);
            w.add_tensor(name, type, ne, bytes.data(), bytes.size());
        }
    };
    const GgmlType M = s.type, N = GgmlType::F32;
    add("token_embd.weight", {E, V}, M, 0);
    add("output_norm.weight", {E}, N, 1);
    if (!s.tied) add("output.weight", {E, V}, M, 0);
    if (s.rope_freqs) add("rope_freqs.weight", {(s.n_rot ? s.n_rot : HD) / 2}, N, 3);
    const bool bias = s.qkv_bias || a == "qwen2";
    for (uint32_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", {E}, N, 1);
        add(p + "attn_q.weight", {E, Q}, M, 0);
        add(p + "attn_k.weight", {E, KV}, M, 0);
        add(p + "attn_v.weight", {E, KV}, M, 0);
        add(p + "attn_output.weight", {Q, E}, M, 0);
        if (bias) {
            add(p + "attn_q.bias", {Q}, N, 2);
            add(p + "attn_k.bias", {KV}, N, 2);
            add(p + "attn_v.bias", {KV}, N, 2);
        }
        if (a == "qwen3" || a == "gemma3") {  // per-head Q/K norms
            add(p + "attn_q_norm.weight", {HD}, N, 1);
            add(p + "attn_k_norm.weight", {HD}, N, 1);
        }
        if (a == "gemma2" || a == "gemma3") add(p + "post_attention_norm.weight", {E}, N, 1);
        add(p + "ffn_norm.weight", {E}, N, 1);
        add(p + "ffn_gate.weight", {E, F}, M, 0);
        add(p + "ffn_up.weight", {E, F}, M, 0);
        add(p + "ffn_down.weight", {F, E}, M, 0);
        if (a == "gemma2" || a == "gemma3") add(p + "post_ffw_norm.weight", {E}, N, 1);
    }
    return w.to_bytes();
}

}  // namespace kvtest
