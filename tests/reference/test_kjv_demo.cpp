// The demo model (models/kjv-demo/, trained by tools/kv-train-kjv/train_kjv.py): kvulkan's
// tokenizer gives the ids the training script gave the prompt, and the CPU reference's logits at
// every position equal the ones torch computed when it exported the model. A wrong RoPE layout,
// head grouping, norm or weight orientation between torch and the GGUF shows as an error of
// order 1.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/helpers.h"
#include "common/kjv_demo.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "reference/reference.h"

TEST_CASE("kjv demo model: tokenizer and CPU reference logits equal the training script's") {
    const kvtest::TorchLogits t = kvtest::read_kjv_demo_logits();
    std::unique_ptr<kv::model::GgufFile> f = kv::model::GgufFile::open(kvtest::kjv_demo_model());

    kv::model::Tokenizer tok(*f);
    CHECK(tok.encode(kvtest::kKjvDemoPrompt, /*add_special=*/true, /*parse_special=*/false) ==
          t.ids);
    CHECK(tok.decode(t.ids) == kvtest::kKjvDemoPrompt);

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
