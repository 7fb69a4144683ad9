// A reference trace of ../shared/reference/ (format in its README.md): the model path, prompt and
// generated ids, top-5 per step and the 4 float64-exact logits rows. Header-only.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/helpers.h"
#include "common/mini_json.h"

namespace kvtest {

struct Trace {
    std::string model_path;
    std::vector<int32_t> prompt;
    std::vector<int32_t> generated;
    std::vector<std::vector<std::pair<int32_t, float>>> top5;  // per step
    size_t n_vocab = 0;
    std::vector<float> exact;  // 4 rows of n_vocab
};

inline Trace load_trace(const std::string& stem) {
    const std::string dir = kvtest::shared_dir() + "/reference/";
    std::vector<uint8_t> text = kvtest::read_file(dir + stem + ".json");
    kvtest::json::Value j = kvtest::json::parse(std::string(text.begin(), text.end()));
    Trace t;
    const std::string model = j["model"].str;
    t.model_path = kvtest::shared_dir() + "/models/" +
                   (model.rfind("stories260K", 0) == 0 ? "stories260K/" : "fixtures/") + model;
    t.prompt = j["prompt_ids"].as_int32_array();
    t.generated = j["generated_ids"].as_int32_array();
    t.n_vocab = static_cast<size_t>(j["n_vocab"].as_int());
    for (const auto& step : j["steps"].arr) {
        std::vector<std::pair<int32_t, float>> row;
        for (const auto& e : step["top5"].arr)
            row.emplace_back(static_cast<int32_t>(e[0].as_int()), static_cast<float>(e[1].num));
        t.top5.push_back(row);
    }
    std::vector<uint8_t> raw = kvtest::read_file(dir + stem + ".exact.logits.f32");
    REQUIRE(raw.size() == 4 * t.n_vocab * sizeof(float));
    t.exact.resize(raw.size() / sizeof(float));
    std::memcpy(t.exact.data(), raw.data(), raw.size());
    return t;
}

// Every fixture trace stem with its exact logits ("llama-gqa.q4_k_m.short", ...).
inline std::vector<std::string> fixture_stems() {
    std::vector<std::string> out;
    for (const char* t : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q4_k_s",
                          "q4_k_m", "q5_k_s", "q6_k"})
        for (const char* len : {"short", "long"}) out.push_back(std::string("llama-gqa.") + t + "." + len);
    for (const char* t : {"f16", "q8_0"})
        for (const char* len : {"short", "long"}) out.push_back(std::string("qwen2-bias.") + t + "." + len);
    return out;
}

}  // namespace kvtest
