// The demo model (models/kjv-demo/) through the public API on the GPU: kv_tokenize gives the ids
// the training script gave the prompt, kv_session_eval's logits at every position equal torch's
// (F32 KV; tests/reference/test_kjv_demo.cpp holds the CPU reference to the same numbers), and
// greedy decoding from the prompt gives the CPU reference's tokens and detokenizes to printable
// text, as ./scripts/demo.sh shows it.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/kjv_demo.h"
#include "common/runtime_fixture.h"
#include "model/gguf.h"
#include "reference/reference.h"

namespace {

void require_ok(kv_status s) {
    REQUIRE_MESSAGE(s == KV_OK, kv_status_string(s) << ": " << kv_last_error_message());
}

}  // namespace

TEST_CASE("kjv demo model: GPU logits equal the training script's, greedy text detokenizes") {
    const kvtest::TorchLogits t = kvtest::read_kjv_demo_logits();
    kvtest::Runtime rt;
    kv_model* m = nullptr;
    kv_model_desc md = KV_MODEL_DESC_INIT;
    const std::string path = kvtest::kjv_demo_model();
    md.path = path.c_str();
    require_ok(kv_model_load(rt, &md, &m));

    std::vector<kv_token> ids(64);
    uint32_t n = uint32_t(ids.size());
    require_ok(kv_tokenize(m, kvtest::kKjvDemoPrompt, size_t(-1), KV_TOKENIZE_ADD_SPECIAL,
                           ids.data(), &n));
    ids.resize(n);
    CHECK(ids == t.ids);

    kv_session* s = nullptr;
    kv_session_desc sd = KV_SESSION_DESC_INIT;
    sd.cache_type = KV_CACHE_F32;
    sd.n_ctx = 128;
    require_ok(kv_session_create(m, &sd, &s));
    std::vector<float> logits(t.logits.size());
    require_ok(
        kv_session_eval(s, t.ids.data(), uint32_t(t.ids.size()), logits.data(), logits.size()));
    double worst = 0;
    for (size_t row = 0; row < t.ids.size(); ++row) {
        const double e = kvtest::rel_l2(logits.data() + row * t.n_vocab,
                                        t.logits.data() + row * t.n_vocab, t.n_vocab);
        worst = std::max(worst, e);
        CHECK_MESSAGE(e < 1e-3, "position " << row << ": rel L2 " << e);
    }
    MESSAGE("max rel L2 vs torch over " << t.ids.size() << " positions: " << worst);

    // Greedy continuation: the CPU reference's tokens (where they first differ, the two candidates
    // must be a near-tie in the reference's logits; nothing after is compared), then printable
    // text (letters, spaces, punctuation), no byte soup.
    const size_t n_gen = 24;
    std::vector<kv_token> gen;
    for (size_t i = 0; i < n_gen; ++i) {
        kv_token tok = -1;
        require_ok(kv_decode_step(s, &tok));
        gen.push_back(tok);
    }
    auto file = kv::model::GgufFile::open(path);
    auto ref_model = kv::reference::ReferenceModel::load(*file);
    std::vector<std::vector<float>> ref_logits;
    const std::vector<int32_t> ref =
        kv::reference::generate_greedy(*ref_model, t.ids, n_gen, &ref_logits);
    REQUIRE(ref.size() == n_gen);
    REQUIRE(ref_logits.size() == n_gen);
    for (size_t i = 0; i < n_gen; ++i) {
        if (gen[i] == ref[i]) continue;
        const std::vector<float>& l = ref_logits[i];
        CHECK_MESSAGE(
            std::fabs(l[size_t(gen[i])] - l[size_t(ref[i])]) < 1e-3f,
            "token " << i << ": GPU " << gen[i] << ", reference " << ref[i] << " (not a tie)");
        break;
    }
    size_t len = 0;
    kv_status st = kv_detokenize(m, gen.data(), uint32_t(gen.size()), nullptr, &len);
    REQUIRE((st == KV_OK || st == KV_INCOMPLETE));
    std::string text(len, '\0');
    require_ok(kv_detokenize(m, gen.data(), uint32_t(gen.size()), text.data(), &len));
    MESSAGE("greedy: " << std::string(kvtest::kKjvDemoPrompt) << text);
    size_t letters = 0;
    for (char c : text) letters += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ';
    CHECK_MESSAGE(letters * 10 >= text.size() * 8,
                  "not mostly letters and spaces: '" << text << "'");
    kv_session_destroy(s);
    kv_model_destroy(m);
}
