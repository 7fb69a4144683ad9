// kv-make-model: writes a llama-architecture GGUF with RANDOM weights and a small SentencePiece
// vocabulary, using kvulkan's own GGUF writer. Its output is gibberish by construction: it exists
// so the demo, benchmarks and tests have a model of any shape and weight type without a download.
//
//   kv-make-model -o out.gguf [--dim 256] [--layers 6] [--heads 8] [--kv-heads 2] [--ffn 768]
//                 [--vocab 1000] [--ctx 2048] [--type f16|f32|q8_0|q4_0] [--seed 1]
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
                 "usage: kv-make-model -o out.gguf [--dim N] [--layers N] [--heads N] [--kv-heads N] [--ffn N]\n"
                 "                     [--vocab N] [--ctx N] [--type f16|f32|q8_0|q4_0] [--seed N]\n"
                 "       kv-make-model -o out.gguf --import DIR [--type f16|f32|q8_0|q4_0]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string out, import_dir;
    uint32_t dim = 256, layers = 6, heads = 8, kv_heads = 2, ffn = 768, vocab = 1000, ctx = 2048, seed = 1;
    GgmlType type = GgmlType::F16;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) return usage();
        const char* v = argv[++i];
        auto u = [&] { return static_cast<uint32_t>(std::strtoul(v, nullptr, 10)); };
        if (a == "-o") out = v;
        else if (a == "--dim") dim = u();
        else if (a == "--layers") layers = u();
        else if (a == "--heads") heads = u();
        else if (a == "--kv-heads") kv_heads = u();
        else if (a == "--ffn") ffn = u();
        else if (a == "--vocab") vocab = u();
        else if (a == "--ctx") ctx = u();
        else if (a == "--seed") seed = u();
        else if (a == "--import") import_dir = v;
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
    if (out.empty() || !dim || !layers || !heads || !kv_heads || heads % kv_heads || dim % heads || dim % 32 ||
        ffn % 32 || vocab < 259 + 3)
        return usage();
    try {
        kv::model::GgufWriter w;
        w.set_string("general.architecture", "llama");
        w.set_string("general.name", "kvulkan random demo model (random weights: output is gibberish)");
        w.set_u32("llama.context_length", ctx);
        w.set_u32("llama.embedding_length", dim);
        w.set_u32("llama.block_count", layers);
        w.set_u32("llama.feed_forward_length", ffn);
        w.set_u32("llama.attention.head_count", heads);
        w.set_u32("llama.attention.head_count_kv", kv_heads);
        w.set_u32("llama.rope.dimension_count", dim / heads);
        w.set_f32("llama.rope.freq_base", 10000.f);
        w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);

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

        std::mt19937 rng(seed);
        std::normal_distribution<float> N(0.f, 1.f);
        auto matrix = [&](const std::string& name, uint32_t in, uint32_t outd, GgmlType t) {
            std::vector<float> v(size_t(in) * outd);
            float s = 1.f / std::sqrt(float(in));
            for (auto& x : v) x = N(rng) * s;
            w.add_tensor_f32(name, t, {in, outd}, v.data());
        };
        auto norm = [&](const std::string& name) {
            std::vector<float> v(dim);
            for (auto& x : v) x = 1.f + 0.1f * N(rng);
            w.add_tensor_f32(name, GgmlType::F32, {dim}, v.data());
        };
        uint32_t hd = dim / heads, kvd = hd * kv_heads;
        matrix("token_embd.weight", dim, vocab, type);
        for (uint32_t l = 0; l < layers; ++l) {
            std::string p = "blk." + std::to_string(l) + ".";
            norm(p + "attn_norm.weight");
            matrix(p + "attn_q.weight", dim, dim, type);
            matrix(p + "attn_k.weight", dim, kvd, type);
            matrix(p + "attn_v.weight", dim, kvd, type);
            matrix(p + "attn_output.weight", dim, dim, type);
            norm(p + "ffn_norm.weight");
            matrix(p + "ffn_gate.weight", dim, ffn, type);
            matrix(p + "ffn_up.weight", dim, ffn, type);
            matrix(p + "ffn_down.weight", ffn, dim, type);
        }
        norm("output_norm.weight");
        matrix("output.weight", dim, vocab, type);
        w.write(out);
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "kv-make-model: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", out.c_str());
    return 0;
}
