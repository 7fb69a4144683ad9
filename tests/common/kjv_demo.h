// The demo model committed in models/kjv-demo/ and the logits torch computed for it when
// tools/kv-train-kjv/train_kjv.py exported it (write_reference: float64, weights rounded to F16 as
// the GGUF stores them). Files that include this need KV_SOURCE_DIR_DEFAULT (tests/CMakeLists.txt).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/helpers.h"

namespace kvtest {

inline std::string kjv_demo_dir() {
    return std::string(KV_SOURCE_DIR_DEFAULT) + "/models/kjv-demo";
}
inline std::string kjv_demo_model() { return kjv_demo_dir() + "/kjv-demo.gguf"; }
// The prompt whose logits are stored (train_kjv.py write_reference).
constexpr const char* kKjvDemoPrompt = "In the beginning God created";

struct TorchLogits {
    std::vector<int32_t> ids;  // the prompt's ids, <s> first
    uint32_t n_vocab = 0;
    std::vector<float> logits;  // [ids.size()][n_vocab]
};

// reference-logits.bin: "KVRL", u32 n_tokens, u32 n_vocab, i32 ids[n_tokens],
// f32 logits[n_tokens][n_vocab], little-endian.
inline TorchLogits read_kjv_demo_logits() {
    const std::vector<uint8_t> b = read_file(kjv_demo_dir() + "/reference-logits.bin");
    REQUIRE(b.size() >= 12);
    REQUIRE(std::memcmp(b.data(), "KVRL", 4) == 0);
    uint32_t n = 0;
    TorchLogits t;
    std::memcpy(&n, b.data() + 4, 4);
    std::memcpy(&t.n_vocab, b.data() + 8, 4);
    REQUIRE(b.size() == 12 + size_t(n) * 4 + size_t(n) * t.n_vocab * 4);
    t.ids.resize(n);
    std::memcpy(t.ids.data(), b.data() + 12, size_t(n) * 4);
    t.logits.resize(size_t(n) * t.n_vocab);
    std::memcpy(t.logits.data(), b.data() + 12 + size_t(n) * 4, t.logits.size() * 4);
    return t;
}

}  // namespace kvtest
