// Speculative decoding (kv_decode_speculative): prompt-lookup and draft-model drafts must give
// exactly the greedy tokens of plain decoding, and verify k drafted tokens in one forward pass.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "common/trace.h"
#include "engine/speculative.h"

namespace {

using kvtest::Model;
using kvtest::ok;

kv_session* make(const Model& m, uint32_t n_ctx) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.n_ctx = n_ctx;
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, &d, &s));
    return s;
}

uint64_t passes(kv_session* s) {
    kv_session_stats st{};
    st.struct_size = sizeof st;
    ok(kv_session_get_stats(s, &st));
    return st.forward_passes;
}

struct Run {
    std::vector<kv_token> tokens;
    uint64_t steps = 0, drafted = 0, accepted = 0, passes = 0, verify_passes_with_drafts = 0;
};

// `n` tokens after `prompt`: plain greedy, or speculative with `draft` (NULL: n-gram).
Run generate(const Model& m, const std::vector<kv_token>& prompt, uint32_t n, bool speculative,
             kv_session* draft = nullptr, uint32_t draft_n = 4) {
    kv_session* s = make(m, 512);
    ok(kv_prefill(s, prompt.data(), uint32_t(prompt.size())));
    Run r;
    const uint64_t p0 = passes(s);
    while (r.tokens.size() < n) {
        if (!speculative) {
            kv_token t;
            kv_status st = kv_decode_step(s, &t);
            REQUIRE((st == KV_OK || st == KV_END_OF_GENERATION));
            r.tokens.push_back(t);
            if (st != KV_OK) break;
            continue;
        }
        std::vector<kv_token> out(draft_n + 1);
        uint32_t n_out = 0, n_drafted = 0;
        const uint64_t before = passes(s);
        kv_status st = kv_decode_speculative(s, draft, draft_n, out.data(), uint32_t(out.size()), &n_out, &n_drafted);
        REQUIRE_MESSAGE((st == KV_OK || st == KV_END_OF_GENERATION), kv_last_error_message());
        REQUIRE(n_out >= 1);
        // One pass of the session per step, however many tokens it verified.
        CHECK(passes(s) - before == (st == KV_END_OF_GENERATION && n_out == 1 ? 0u : 1u));
        if (n_drafted) ++r.verify_passes_with_drafts;
        r.tokens.insert(r.tokens.end(), out.begin(), out.begin() + n_out);
        ++r.steps;
        r.drafted += n_drafted;
        r.accepted += n_out - 1;
        if (st != KV_OK) break;
    }
    if (r.tokens.size() > n) r.tokens.resize(n);
    r.passes = passes(s) - p0;
    kv_session_destroy(s);
    return r;
}

}  // namespace

TEST_CASE("speculative: n-gram lookup proposes what followed the latest earlier occurrence") {
    using kv::engine::ngram_draft;
    CHECK(ngram_draft({1, 2, 3, 4, 5, 1, 2, 3}, 2) == std::vector<int32_t>{4, 5});
    CHECK(ngram_draft({1, 2, 3, 9, 7, 2, 3, 8, 2, 3}, 3) == std::vector<int32_t>{8, 2, 3});  // latest 2-gram
    CHECK(ngram_draft({5, 6, 7}, 4).empty());
    CHECK(ngram_draft({4, 4}, 3) == std::vector<int32_t>{4});
    CHECK(ngram_draft({}, 3).empty());
}

TEST_CASE("speculative: n-gram drafting gives exactly the plain greedy tokens over 256 tokens (stories260K, llama fixture)") {
    if (!kvtest::require_shared()) return;
    const uint32_t n_gen = 256;
    kvtest::Runtime rt;
    for (const char* stem : {"stories260K.once-upon-a-time", "llama-gqa.q8_0.long"}) {
        kvtest::Trace t = kvtest::load_trace(stem);
        Model model(rt, t.model_path);
        std::vector<kv_token> prompt = t.prompt;
        if (prompt.size() > 40) prompt.resize(40);
        Run plain = generate(model, prompt, n_gen, false);
        Run spec = generate(model, prompt, n_gen, true);
        CHECK(spec.tokens == plain.tokens);
        MESSAGE(std::string(stem) << ": " << plain.tokens.size() << " tokens; speculative steps " << spec.steps
                                  << ", drafted " << spec.drafted << ", accepted " << spec.accepted << " ("
                                  << (spec.drafted ? 100.0 * double(spec.accepted) / double(spec.drafted) : 0.0)
                                  << "%), target passes " << spec.passes << " vs " << plain.passes << " plain");
        CHECK(spec.passes == spec.steps);
        CHECK(spec.verify_passes_with_drafts > 0);  // drafts were verified, several tokens per pass
    }
}

TEST_CASE("speculative: a draft model with the same vocabulary gives the plain greedy tokens") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("llama-gqa.f32.long");
    kvtest::Trace td = kvtest::load_trace("llama-gqa.q4_0.long");
    Model model(rt, t.model_path), draft_model(rt, td.model_path);
    std::vector<kv_token> prompt(t.prompt.begin(), t.prompt.begin() + 30);
    Run plain = generate(model, prompt, 96, false);
    kv_session* draft = make(draft_model, 512);
    Run spec = generate(model, prompt, 96, true, draft, 5);
    CHECK(spec.tokens == plain.tokens);
    MESSAGE("draft q4_0 for f32: steps " << spec.steps << ", drafted " << spec.drafted << ", accepted "
                                          << spec.accepted);
    CHECK(spec.accepted > 0);
    CHECK(spec.steps < plain.tokens.size());
    // Misuse: the session as its own draft, a sampler that is not greedy, too small a buffer.
    kv_session* s = make(model, 512);
    ok(kv_prefill(s, prompt.data(), uint32_t(prompt.size())));
    kv_token out[8];
    uint32_t n = 0;
    CHECK(kv_decode_speculative(s, s, 4, out, 8, &n, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_decode_speculative(s, nullptr, 4, out, 4, &n, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_decode_speculative(s, nullptr, 0, out, 8, &n, nullptr) == KV_ERR_INVALID_ARGUMENT);
    kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
    sd.temperature = 0.8f;
    ok(kv_session_set_sampler(s, &sd));
    CHECK(kv_decode_speculative(s, nullptr, 4, out, 8, &n, nullptr) == KV_ERR_UNSUPPORTED);
    kv_session_destroy(s);
    kv_session_destroy(draft);
}
