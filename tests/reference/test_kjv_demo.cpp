// The demo model (models/kjv-demo/, trained by tools/kv-train-kjv/train_kjv.py): kvulkan's
// tokenizer gives the ids the training script gave the prompt, and the CPU reference's logits at
// every position equal the ones torch computed (float64, weights rounded to F16 as stored) when it
// exported the model. A wrong RoPE layout, head grouping, norm or weight orientation anywhere
// between torch and the GGUF would show here as an error of order 1.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "reference/reference.h"

namespace {

const std::string kDir = std::string(KV_SOURCE_DIR_DEFAULT) + "/models/kjv-demo";
const char* const kPrompt = "In the beginning God created";  // train_kjv.py write_reference

// reference-logits.bin: "KVRL", u32 n_tokens, u32 n_vocab, i32 ids[n_tokens] (<s> first),
// f32 logits[n_tokens][n_vocab], little-endian.
struct TorchLogits {
    std::vector<int32_t> ids;
    uint32_t n_vocab = 0;
    std::vector<float> logits;
};

TorchLogits read_torch_logits() {
    const std::vector<uint8_t> b = kvtest::read_file(kDir + "/reference-logits.bin");
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

}  // namespace

TEST_CASE("kjv demo model: tokenizer and CPU reference logits equal the training script's") {
    const TorchLogits t = read_torch_logits();
    std::unique_ptr<kv::model::GgufFile> f = kv::model::GgufFile::open(kDir + "/kjv-demo.gguf");

    kv::model::Tokenizer tok(*f);
    CHECK(tok.encode(kPrompt, /*add_special=*/true, /*parse_special=*/false) == t.ids);
    CHECK(tok.decode(t.ids) == kPrompt);

    auto model = kv::reference::ReferenceModel::load(*f);
    REQUIRE(model->config().n_vocab == t.n_vocab);
    kv::reference::ReferenceSession s(*model);
    const std::vector<float> logits = s.prefill(t.ids, /*all_logits=*/true);
    REQUIRE(logits.size() == t.logits.size());
    double worst = 0;
    for (size_t row = 0; row < t.ids.size(); ++row) {
        const float* ours = logits.data() + row * t.n_vocab;
        const float* torch = t.logits.data() + row * t.n_vocab;
        const double e = kvtest::rel_l2(ours, torch, t.n_vocab);
        worst = std::max(worst, e);
        CHECK_MESSAGE(e < 1e-4, "position " << row << ": rel L2 " << e);
        CHECK(kv::reference::argmax(ours, t.n_vocab) == kv::reference::argmax(torch, t.n_vocab));
    }
    MESSAGE("max rel L2 vs torch over " << t.ids.size() << " positions: " << worst);
}
