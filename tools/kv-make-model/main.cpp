// kv-make-model: writes a GGUF with RANDOM weights and a small SentencePiece vocabulary, using
// kvulkan's own GGUF writer. Its output is gibberish by construction: it exists so the demo,
// benchmarks and tests have a model of any shape and weight type without a download.
//
//   kv-make-model -o out.gguf [--arch llama|qwen2|qwen3|gemma2|gemma3|phi3] [--dim 256] [--layers 6]
//                 [--heads 8] [--kv-heads 2] [--head-dim N] [--n-rot N] [--ffn 768] [--vocab 1000]
//                 [--ctx 2048] [--type f16|f32|q8_0|q4_0] [--seed 1] [--rope-base 10000]
//                 [--rope-scale F] [--window N] [--attn-softcap F] [--final-softcap F]
//                 [--yarn F] [--longrope] [--ctx-orig N] [--attn-factor F] [--chat-template FILE]
//
// --chat-template FILE stores FILE's text (a Jinja chat template) as tokenizer.chat_template.
//
// Per architecture, the tensors and keys its GGUF files carry: qwen2 Q/K/V biases; qwen3 per-head
// Q/K norms and key_length; gemma2/gemma3 post-attention and post-feed-forward norms, a tied
// output, attention.sliding_window (--window, default 16) and gemma2's soft-capping values
// (--attn-softcap, default 50; --final-softcap, default 30); gemma3 Q/K norms; phi3 fused
// attn_qkv and gate/up (ffn_up), its sliding window only with --window. Norm weights are
// written as GGUF converters store them (gemma: 1 + w already). --head-dim defaults to
// dim / heads, --n-rot (rotated dims, even) to head_dim. Rope scaling: --rope-scale F linear;
// --yarn F YaRN with factor F; --longrope random short and long LongRoPE factor tables (>= 1);
// both with original_context_length --ctx-orig (default ctx / 4) and, if given, attn_factor
// --attn-factor.
//
// TinyLlama's shape (the ~1B benchmark model): --dim 2048 --layers 22 --heads 32 --kv-heads 4
// --ffn 5632 --vocab 32000.
//
//   kv-make-model -o out.gguf --import DIR [--type f16|f32|q8_0|q4_0]
//
// writes trained weights instead (the folder tools/kv-train-kjv/train_kjv.py exports; import.cpp
// describes it): metadata, vocabulary and tensors come from DIR, 2-D weights are stored as --type.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "import.h"
#include "model/gguf.h"

using kv::model::GgmlType;

namespace {

const char* kWords[] = {
    "the", "a", "and", "to", "of", "in", "was", "it", "he", "she", "they", "day", "time", "once", "upon",
    "little", "big", "happy", "sad", "dog", "cat", "bird", "tree", "sun", "moon", "play", "run", "jump", "see",
    "went", "said", "saw", "had", "with", "for", "on", "at", "her", "his", "their", "friend", "mom", "dad",
    "house", "park", "ball", "red", "blue", "green", "one", "two", "there", "girl", "boy", "named", "loved",
    "wanted", "found", "looked", "very", "so", "but", "then", "home", "water", "food", "kvulkan", "vulkan",
    "cache", "page", "token", "layer", "head", "key", "value", "query", "window", "prefix", "shader", "gpu"};

int usage() {
    std::fprintf(stderr,
                 "usage: kv-make-model -o out.gguf [--arch llama|qwen2|qwen3|gemma2|gemma3|phi3] [--dim N]\n"
                 "                     [--layers N] [--heads N] [--kv-heads N] [--head-dim N] [--ffn N] [--vocab N] [--ctx N]\n"
                 "                     [--type f16|f32|q8_0|q4_0] [--seed N] [--rope-base F] [--rope-scale F]\n"
                 "                     [--window N] [--attn-softcap F] [--final-softcap F] [--n-rot N]\n"
                 "                     [--yarn F] [--longrope] [--ctx-orig N] [--attn-factor F] [--chat-template FILE]\n"
                 "       kv-make-model -o out.gguf --import DIR [--type f16|f32|q8_0|q4_0]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string out, import_dir, chat_template_path;
    uint32_t dim = 256, layers = 6, heads = 8, kv_heads = 2, ffn = 768, vocab = 1000, ctx = 2048, seed = 1;
    uint32_t head_dim = 0, n_rot = 0, window = 0, ctx_orig = 0;
    float rope_base = 10000.f, rope_scale = 0.f, attn_softcap = 50.f, final_softcap = 30.f, yarn = 0.f;
    float attn_factor = 0.f;
    bool longrope = false;
    std::string arch = "llama";
    GgmlType type = GgmlType::F16;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--longrope") {  // the one option without a value
            longrope = true;
            continue;
        }
        if (i + 1 >= argc) return usage();
        const char* v = argv[++i];
        auto u = [&] { return static_cast<uint32_t>(std::strtoul(v, nullptr, 10)); };
        auto f = [&] { return std::strtof(v, nullptr); };
        if (a == "-o") out = v;
        else if (a == "--arch") arch = v;
        else if (a == "--n-rot") n_rot = u();
        else if (a == "--yarn") yarn = f();
        else if (a == "--ctx-orig") ctx_orig = u();
        else if (a == "--attn-factor") attn_factor = f();
        else if (a == "--head-dim") head_dim = u();
        else if (a == "--window") window = u();
        else if (a == "--rope-base") rope_base = f();
        else if (a == "--rope-scale") rope_scale = f();
        else if (a == "--attn-softcap") attn_softcap = f();
        else if (a == "--final-softcap") final_softcap = f();
        else if (a == "--dim") dim = u();
        else if (a == "--layers") layers = u();
        else if (a == "--heads") heads = u();
        else if (a == "--kv-heads") kv_heads = u();
        else if (a == "--ffn") ffn = u();
        else if (a == "--vocab") vocab = u();
        else if (a == "--ctx") ctx = u();
        else if (a == "--seed") seed = u();
        else if (a == "--import") import_dir = v;
        else if (a == "--chat-template") chat_template_path = v;
        else if (a == "--type") {
            std::string t = v;
            if (t == "f16") type = GgmlType::F16;
            else if (t == "f32") type = GgmlType::F32;
            else if (t == "q8_0") type = GgmlType::Q8_0;
            else if (t == "q4_0") type = GgmlType::Q4_0;
            else return usage();
        } else return usage();
    }
    if (!out.empty() && !import_dir.empty()) {
        try {
            kv::model::GgufWriter w;
            kv::tools::import_model(import_dir, type, w);
            w.write(out);
        } catch (const kv::Error& e) {
            std::fprintf(stderr, "kv-make-model: %s\n", e.what());
            return 1;
        }
        std::printf("%s\n", out.c_str());
        return 0;
    }
    const bool gemma = arch == "gemma2" || arch == "gemma3", phi3 = arch == "phi3";
    const bool known = arch == "llama" || arch == "qwen2" || arch == "qwen3" || gemma || phi3;
    if (!head_dim && heads && dim % heads == 0) head_dim = dim / heads;
    if (!n_rot) n_rot = head_dim;
    if (gemma && !window) window = 16;
    if (!ctx_orig) ctx_orig = ctx / 4;
    if (out.empty() || !known || !dim || !layers || !heads || !kv_heads || heads % kv_heads || !head_dim ||
        head_dim % 2 || n_rot % 2 || n_rot > head_dim || dim % 32 || ffn % 32 || vocab < 259 + 3 ||
        !(attn_softcap > 0) || !(final_softcap > 0) || (yarn > 0 && (rope_scale > 0 || longrope)) || !ctx_orig)
        return usage();
    try {
        kv::model::GgufWriter w;
        const std::string A = arch + ".";
        w.set_string("general.architecture", arch);
        w.set_string("general.name", "kvulkan random demo model (random weights: output is gibberish)");
        w.set_u32(A + "context_length", ctx);
        w.set_u32(A + "embedding_length", dim);
        w.set_u32(A + "block_count", layers);
        w.set_u32(A + "feed_forward_length", ffn);
        w.set_u32(A + "attention.head_count", heads);
        w.set_u32(A + "attention.head_count_kv", kv_heads);
        w.set_u32(A + "attention.key_length", head_dim);
        w.set_u32(A + "attention.value_length", head_dim);
        w.set_u32(A + "rope.dimension_count", n_rot);
        w.set_f32(A + "rope.freq_base", rope_base);
        w.set_f32(A + "attention.layer_norm_rms_epsilon", gemma ? 1e-6f : 1e-5f);
        if (rope_scale > 0) {
            w.set_string(A + "rope.scaling.type", "linear");
            w.set_f32(A + "rope.scaling.factor", rope_scale);
        }
        if (yarn > 0) {
            w.set_string(A + "rope.scaling.type", "yarn");
            w.set_f32(A + "rope.scaling.factor", yarn);
        }
        if (yarn > 0 || longrope) {
            w.set_u32(A + "rope.scaling.original_context_length", ctx_orig);
            if (attn_factor > 0) w.set_f32(A + "rope.scaling.attn_factor", attn_factor);
        }
        if (gemma || (phi3 && window)) w.set_u32(A + "attention.sliding_window", window);
        if (arch == "gemma2") {
            w.set_f32(A + "attn_logit_softcapping", attn_softcap);
            w.set_f32(A + "final_logit_softcapping", final_softcap);
        }

        // SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, words, then filler pieces.
        std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
        std::vector<float> scores = {0, 0, 0};
        std::vector<int32_t> types = {2, 3, 3};  // unknown, control, control
        for (int b = 0; b < 256; ++b) {
            char s[8];
            std::snprintf(s, sizeof s, "<0x%02X>", b);
            tokens.push_back(s);
            scores.push_back(0);
            types.push_back(6);  // byte
        }
        const std::string sp = "\xE2\x96\x81";  // U+2581, SentencePiece's space
        float score = -1;
        tokens.push_back(sp);  // a lone space: so no text needs byte fallback for its spaces
        scores.push_back(score--);
        types.push_back(1);
        for (const char* word : kWords) {
            std::string cap = word;
            cap[0] = static_cast<char>(cap[0] - 'a' + 'A');
            for (const std::string& w : {std::string(word), cap}) {
                if (tokens.size() >= vocab) break;
                tokens.push_back(sp + w);
                scores.push_back(score--);
                types.push_back(1);
            }
        }
        for (char c = 'a'; c <= 'z' && tokens.size() < vocab; ++c) {
            tokens.push_back(std::string(1, c));
            scores.push_back(score--);
            types.push_back(1);
            if (tokens.size() >= vocab) break;
            tokens.push_back(std::string(1, char(c - 'a' + 'A')));
            scores.push_back(score--);
            types.push_back(1);
        }
        for (uint32_t i = 0; tokens.size() < vocab; ++i) {  // filler: distinct, never produced by merges
            tokens.push_back(sp + "w" + std::to_string(i));
            scores.push_back(-1e4f - float(i));
            types.push_back(1);
        }
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_array_string("tokenizer.ggml.tokens", tokens);
        w.set_array_f32("tokenizer.ggml.scores", scores);
        w.set_array_i32("tokenizer.ggml.token_type", types);
        w.set_u32("tokenizer.ggml.unknown_token_id", 0);
        w.set_u32("tokenizer.ggml.bos_token_id", 1);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        w.set_bool("tokenizer.ggml.add_bos_token", true);
        if (!chat_template_path.empty()) {
            std::ifstream f(chat_template_path, std::ios::binary);
            std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            if (!f.good() && !f.eof()) {
                std::fprintf(stderr, "kv-make-model: cannot read %s\n", chat_template_path.c_str());
                return 1;
            }
            w.set_string("tokenizer.chat_template", text);
        }

        std::mt19937 rng(seed);
        std::normal_distribution<float> N(0.f, 1.f);
        auto matrix = [&](const std::string& name, uint32_t in, uint32_t outd, GgmlType t) {
            std::vector<float> v(size_t(in) * outd);
            float s = 1.f / std::sqrt(float(in));
            for (auto& x : v) x = N(rng) * s;
            w.add_tensor_f32(name, t, {in, outd}, v.data());
        };
        // Norm weights near 1 (gemma's are 1 + w with w near 0: the same distribution).
        auto norm = [&](const std::string& name, uint32_t n) {
            std::vector<float> v(n);
            for (auto& x : v) x = 1.f + 0.1f * N(rng);
            w.add_tensor_f32(name, GgmlType::F32, {n}, v.data());
        };
        auto bias = [&](const std::string& name, uint32_t n) {
            std::vector<float> v(n);
            for (auto& x : v) x = 0.2f * N(rng);
            w.add_tensor_f32(name, GgmlType::F32, {n}, v.data());
        };
        const uint32_t qd = head_dim * heads, kvd = head_dim * kv_heads;
        matrix("token_embd.weight", dim, vocab, type);
        if (longrope) {  // LongRoPE factor tables: >= 1, the long ones larger
            for (const char* name : {"rope_factors_short.weight", "rope_factors_long.weight"}) {
                std::vector<float> v(n_rot / 2);
                for (uint32_t i = 0; i < v.size(); ++i)
                    v[i] = 1.f + std::fabs(N(rng)) * (name[13] == 'l' ? 4.f : 0.5f) * float(i + 1) / float(v.size());
                w.add_tensor_f32(name, GgmlType::F32, {n_rot / 2}, v.data());
            }
        }
        for (uint32_t l = 0; l < layers; ++l) {
            std::string p = "blk." + std::to_string(l) + ".";
            norm(p + "attn_norm.weight", dim);
            if (phi3) {
                matrix(p + "attn_qkv.weight", dim, qd + 2 * kvd, type);  // rows: Q, K, V
            } else {
                matrix(p + "attn_q.weight", dim, qd, type);
                matrix(p + "attn_k.weight", dim, kvd, type);
                matrix(p + "attn_v.weight", dim, kvd, type);
            }
            if (arch == "qwen2") {
                bias(p + "attn_q.bias", qd);
                bias(p + "attn_k.bias", kvd);
                bias(p + "attn_v.bias", kvd);
            }
            if (arch == "qwen3" || arch == "gemma3") {
                norm(p + "attn_q_norm.weight", head_dim);
                norm(p + "attn_k_norm.weight", head_dim);
            }
            matrix(p + "attn_output.weight", qd, dim, type);
            if (gemma) norm(p + "post_attention_norm.weight", dim);
            norm(p + "ffn_norm.weight", dim);
            if (phi3) {
                matrix(p + "ffn_up.weight", dim, 2 * ffn, type);  // rows: gate, then up
            } else {
                matrix(p + "ffn_gate.weight", dim, ffn, type);
                matrix(p + "ffn_up.weight", dim, ffn, type);
            }
            matrix(p + "ffn_down.weight", ffn, dim, type);
            if (gemma) norm(p + "post_ffw_norm.weight", dim);
        }
        norm("output_norm.weight", dim);
        if (!gemma) matrix("output.weight", dim, vocab, type);  // gemma: tied to token_embd
        w.write(out);
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "kv-make-model: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", out.c_str());
    return 0;
}
