// Constrained sampling and embeddings through the public API on real models: temperature samples
// of stories260K through kv_decode_batch under a JSON-object grammar all parse as JSON (the 200
// samples are in tests/engine/test_grammar.cpp, on the CPU reference's logits); the grammar's state
// through reset, truncate, fork and set_sampler, and the calls that refuse it; logit bias and
// banned tokens (and a saved session keeping them); kv_session_embeddings against the CPU
// reference's final hidden state.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/json_check.h"
#include "common/runtime_fixture.h"
#include "model/gguf.h"
#include "reference/reference.h"

namespace {

using kvtest::Model;
using kvtest::ok;

const std::vector<kv_token> kPrompt = {1, 403, 407, 261, 378};  // "Once upon a time"

std::string stories_path() { return kvtest::shared_dir() + "/models/stories260K/stories260K.gguf"; }


std::string piece(const Model& m, kv_token t) {
    char buf[256];
    size_t len = sizeof buf;
    ok(kv_token_to_piece(m.m, t, buf, &len));
    return std::string(buf, len);
}

kv_session* make(const Model& m, uint32_t n_ctx, const kv_sampler_desc* sd = nullptr, kv_cache_type type = KV_CACHE_F16,
                 uint32_t n_batch = 0) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.n_ctx = n_ctx;
    d.sampler = sd;
    d.cache_type = type;
    d.n_batch = n_batch;
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, &d, &s));
    return s;
}

// A small JSON object: a few tokens per sample keep this GPU test cheap on a CPU device (the 200
// samples of tests/engine/test_grammar.cpp use kvtest::kJsonObjectGrammar).
const char* kSmallObject = R"(root ::= " "? "{\"" [a-z]{1,3} "\": " ( [0-9]{1,2} | "true" | "null" | "\"é\"" ) "}")";

}  // namespace

TEST_CASE("grammar: temperature samples of stories260K through kv_decode_batch under a JSON-object grammar all parse") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    const kv_token eos = kv_model_token_eos(m.m);
    // A prompt of more than 8 tokens (its pass then takes the matrix-matrix path; see below).
    const char* prompt = "Once upon a time, there was a little girl who liked";
    kv_token ids[64];
    uint32_t n_prompt = 64;
    ok(kv_tokenize(m.m, prompt, size_t(-1), KV_TOKENIZE_ADD_SPECIAL, ids, &n_prompt));
    REQUIRE(n_prompt > 8);
    constexpr uint32_t kSessions = 12, kRounds = 1, kMaxSteps = 40;
    std::vector<kv_session*> ss(kSessions);
    for (auto& s : ss) {
        s = make(m, 160, nullptr, KV_CACHE_F16, 16);
        ok(kv_session_set_grammar(s, kSmallObject, "root"));
    }
    uint32_t parsed = 0, total_tokens = 0, longest = 0, with_utf8 = 0;
    std::string example;
    for (uint32_t round = 0; round < kRounds; ++round) {
        std::vector<std::string> text(kSessions);
        std::vector<bool> done(kSessions, false);
        for (uint32_t i = 0; i < kSessions; ++i) {
            kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
            sd.temperature = 0.7f + 0.1f * float(i % 6);
            if (i % 2) {  // half of them through the full mask (top-k / top-p cut after it)
                sd.top_k = 40;
                sd.top_p = 0.95f;
            }
            sd.seed = 1000 * round + i;
            ok(kv_session_reset(ss[i]));            // the grammar restarts
            ok(kv_session_set_sampler(ss[i], &sd));  // and is kept
            ok(kv_prefill(ss[i], ids, n_prompt));
        }
        for (uint32_t step = 0; step < kMaxSteps; ++step) {
            std::vector<kv_session*> live;
            std::vector<uint32_t> idx;
            for (uint32_t i = 0; i < kSessions; ++i)
                if (!done[i]) {
                    live.push_back(ss[i]);
                    idx.push_back(i);
                }
            if (live.empty()) break;
            std::vector<kv_token> toks(live.size());
            std::vector<kv_status> st(live.size());
            if (live.size() > 8) {
                ok(kv_decode_batch(live.data(), uint32_t(live.size()), toks.data(), st.data()));
            } else {
                // One by one: a CPU device JIT-compiles every 2..8-row matmul variant slowly,
                // and a shrinking batch would meet each of them.
                for (size_t j = 0; j < live.size(); ++j) st[j] = kv_decode_step(live[j], &toks[j]);
            }
            for (size_t j = 0; j < live.size(); ++j) {
                REQUIRE_MESSAGE((st[j] == KV_OK || st[j] == KV_END_OF_GENERATION), kv_status_string(st[j]));
                if (st[j] == KV_END_OF_GENERATION) {
                    CHECK(toks[j] == eos);
                    done[idx[j]] = true;
                } else {
                    text[idx[j]] += piece(m, toks[j]);
                    ++total_tokens;
                }
            }
        }
        for (uint32_t i = 0; i < kSessions; ++i) {
            INFO("round " << round << " session " << i << ": " << text[i]);
            CHECK(done[i]);
            bool good = kvtest::JsonCheck(text[i]).object_document();
            CHECK(good);
            parsed += good;
            longest = std::max<uint32_t>(longest, uint32_t(text[i].size()));
            with_utf8 += text[i].find("\xC3\xA9") != std::string::npos;
            if (example.size() < 20 || (text[i].size() > example.size() && text[i].size() < 80)) example = text[i];
        }
    }
    MESSAGE(parsed << " of " << kSessions * kRounds << " samples parse as JSON objects; " << total_tokens
                   << " tokens, longest " << longest << " bytes, " << with_utf8 << " with 'é'; e.g. " << example);
    CHECK(parsed == kSessions * kRounds);
    for (auto* s : ss) kv_session_destroy(s);
}

TEST_CASE("grammar: its state follows reset, truncate, fork and set_sampler, and errors leave it as it was") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    const kv_token eos = kv_model_token_eos(m.m);
    kv_session* s = make(m, 128);
    ok(kv_prefill(s, kPrompt.data(), uint32_t(kPrompt.size())));
    // Greedy under "three digits": three digit tokens, then only EOS.
    ok(kv_session_set_grammar(s, "root ::= [0-9] [0-9] [0-9]", nullptr));
    auto digits = [&](kv_session* x, int n) {
        std::string out;
        for (int i = 0; i < n; ++i) {
            kv_token t;
            REQUIRE_MESSAGE(kv_decode_step(x, &t) == KV_OK, kv_last_error_message());
            out += piece(m, t);
        }
        return out;
    };
    auto ends = [&](kv_session* x) {
        kv_token t = -1;
        CHECK(kv_decode_step(x, &t) == KV_END_OF_GENERATION);
        CHECK(t == eos);
    };
    std::string first = digits(s, 1);
    CHECK(first.size() == 1);
    CHECK(std::isdigit(static_cast<unsigned char>(first[0])));
    kv_session* child = nullptr;
    ok(kv_session_fork(s, &child));  // the child's grammar has matched one digit too
    std::string rest = digits(s, 2);
    ends(s);
    CHECK(digits(child, 2) == rest);  // same logits, same greedy choices
    ends(child);
    kv_session_destroy(child);
    // Truncating the last digit lets one more come; set_sampler keeps the grammar's state.
    kv_session_stats st{};
    st.struct_size = sizeof st;
    ok(kv_session_get_stats(s, &st));
    ok(kv_session_truncate(s, st.n_tokens - 1));
    kv_sampler_desc hot = KV_SAMPLER_DESC_INIT;
    hot.temperature = 1.5f;
    hot.seed = 5;
    ok(kv_session_set_sampler(s, &hot));
    std::string again = digits(s, 1);
    CHECK(std::isdigit(static_cast<unsigned char>(again[0])));
    ends(s);
    // A bad grammar: INVALID_ARGUMENT with the position; the old grammar stays.
    CHECK(kv_session_set_grammar(s, "root ::= [0-9", nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("line 1, column 10") != std::string::npos);
    CHECK(kv_session_set_grammar(s, "x ::= \"a\"", "root") == KV_ERR_INVALID_ARGUMENT);
    ends(s);
    // Speculative decoding and saving refuse a grammar session.
    kv_token out[5];
    uint32_t n_out = 0;
    ok(kv_session_set_sampler(s, nullptr));
    CHECK(kv_decode_speculative(s, nullptr, 2, out, 5, &n_out, nullptr) == KV_ERR_UNSUPPORTED);
    size_t size = 0;
    CHECK(kv_session_save(s, nullptr, &size) == KV_INCOMPLETE);  // the size query needs no image
    std::vector<uint8_t> img(size);
    CHECK(kv_session_save(s, img.data(), &size) == KV_ERR_UNSUPPORTED);
    // Reset restarts it: three digits again after a new prompt. NULL removes it.
    ok(kv_session_reset(s));
    ok(kv_prefill(s, kPrompt.data(), uint32_t(kPrompt.size())));
    CHECK(digits(s, 3).size() == 3);
    ends(s);
    ok(kv_session_set_grammar(s, nullptr, nullptr));
    kv_token t;
    CHECK(kv_decode_step(s, &t) == KV_OK);
    CHECK(t != eos);
    size = 0;
    CHECK(kv_session_save(s, nullptr, &size) == KV_INCOMPLETE);
    img.resize(size);
    ok(kv_session_save(s, img.data(), &size));
    // Digits banned under a digits-only grammar: no token is left (BAD_STATE, nothing changes).
    std::vector<kv_token> digit_tokens;
    for (kv_token k = 0; k < kv_token(m.n_vocab); ++k) {
        std::string p = piece(m, k);
        if (!p.empty() && p.find_first_not_of("0123456789") == std::string::npos) digit_tokens.push_back(k);
    }
    kv_sampler_desc ban = KV_SAMPLER_DESC_INIT;
    ban.banned_tokens = digit_tokens.data();
    ban.n_banned_tokens = uint32_t(digit_tokens.size());
    ok(kv_session_set_sampler(s, &ban));
    ok(kv_session_set_grammar(s, "root ::= [0-9]+", nullptr));
    ok(kv_session_get_stats(s, &st));
    CHECK(kv_decode_step(s, &t) == KV_ERR_BAD_STATE);
    CHECK(std::string(kv_last_error_message()).find("grammar allows none") != std::string::npos);
    kv_session_stats after{};
    after.struct_size = sizeof after;
    ok(kv_session_get_stats(s, &after));
    CHECK(after.n_tokens == st.n_tokens);
    kv_session_destroy(s);
}

TEST_CASE("sampler: logit bias and banned tokens through the C API, kept by fork and by a saved session") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    kv_session* plain = make(m, 128);
    ok(kv_prefill(plain, kPrompt.data(), uint32_t(kPrompt.size())));
    std::vector<float> l(m.n_vocab);
    ok(kv_session_logits(plain, l.data(), m.n_vocab));
    const kv_token best = kv_token(std::max_element(l.begin(), l.end()) - l.begin());
    std::vector<float> rest = l;
    rest[size_t(best)] = -INFINITY;
    const kv_token second = kv_token(std::max_element(rest.begin(), rest.end()) - rest.begin());
    const kv_token boosted = 300;  // some token far from the top
    REQUIRE((boosted != best && boosted != second));

    kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
    sd.banned_tokens = &best;
    sd.n_banned_tokens = 1;
    kv_session* s = make(m, 128, &sd);
    ok(kv_prefill(s, kPrompt.data(), uint32_t(kPrompt.size())));
    kv_token t;
    ok(kv_decode_step(s, &t));
    CHECK(t == second);
    // Bias: +1000 on one token makes it the greedy choice at every step; fork keeps it.
    kv_logit_bias b{boosted, 1000.f};
    kv_sampler_desc bias = KV_SAMPLER_DESC_INIT;
    bias.logit_bias = &b;
    bias.n_logit_bias = 1;
    ok(kv_session_set_sampler(s, &bias));
    b.token = 0;  // the library copied the array: changing it now changes nothing
    ok(kv_decode_step(s, &t));
    CHECK(t == boosted);
    kv_session* child = nullptr;
    ok(kv_session_fork(s, &child));
    ok(kv_decode_step(child, &t));
    CHECK(t == boosted);
    // A saved image keeps the bias.
    size_t size = 0;
    CHECK(kv_session_save(s, nullptr, &size) == KV_INCOMPLETE);
    std::vector<uint8_t> img(size);
    ok(kv_session_save(s, img.data(), &size));
    kv_session* loaded = nullptr;
    ok(kv_session_load(m.m, img.data(), size, &loaded));
    ok(kv_decode_step(loaded, &t));
    CHECK(t == boosted);
    // Bad input: a token outside the vocabulary, a NaN bias, NULL arrays.
    kv_logit_bias bad{kv_token(m.n_vocab), 1.f};
    bias.logit_bias = &bad;
    CHECK(kv_session_set_sampler(s, &bias) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("outside the vocabulary") != std::string::npos);
    bad = {1, NAN};
    CHECK(kv_session_set_sampler(s, &bias) == KV_ERR_INVALID_ARGUMENT);
    bias.logit_bias = nullptr;
    CHECK(kv_session_set_sampler(s, &bias) == KV_ERR_INVALID_ARGUMENT);
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.sampler = &bias;
    kv_session* none = nullptr;
    CHECK(kv_session_create(m.m, &d, &none) == KV_ERR_INVALID_ARGUMENT);
    CHECK(none == nullptr);
    ok(kv_decode_step(s, &t));  // the failed calls left the bias in place
    CHECK(t == boosted);
    for (kv_session* x : {plain, s, child, loaded}) kv_session_destroy(x);
}

TEST_CASE("embeddings: the final hidden state equals the CPU reference's, and the session is left as it was") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    for (const std::string& path : {stories_path()}) {
        INFO(path);
        Model m(rt, path);
        kv_model_info info{};
        info.struct_size = sizeof info;
        ok(kv_model_get_info(m.m, &info));
        const uint32_t E = info.n_embd;
        auto file = kv::model::GgufFile::open(path);
        auto ref_model = kv::reference::ReferenceModel::load(*file);
        const uint32_t seed = kvtest::fresh_seed();
        INFO("seed " << seed);
        std::mt19937 rng(seed);
        // Every pass over 8 rows (matrix-matrix; CPU devices JIT each 2..8-row variant slowly).
        std::vector<kv_token> ctx(12), toks(41);
        for (auto& t : ctx) t = kv_token(rng() % m.n_vocab);
        for (auto& t : toks) t = kv_token(rng() % m.n_vocab);
        // n_batch 16: the 41 tokens take three passes (16, 16, 9).
        kv_session* s = make(m, 256, nullptr, KV_CACHE_F32, 16);
        for (bool with_context : {false, true}) {
            kv::reference::ReferenceSession ref(*ref_model);
            ref.set_keep_hidden(true);
            std::vector<float> before;
            if (with_context) {
                ok(kv_prefill(s, ctx.data(), uint32_t(ctx.size())));
                before.resize(m.n_vocab);
                ok(kv_session_logits(s, before.data(), m.n_vocab));
                ref.prefill(ctx);
            }
            ref.prefill(toks);
            const std::vector<float>& h = ref.hidden();
            REQUIRE(h.size() == toks.size() * E);
            std::vector<float> last(h.end() - E, h.end()), mean(E, 0.f);
            for (size_t r = 0; r < toks.size(); ++r)
                for (uint32_t i = 0; i < E; ++i) mean[i] += h[r * E + i] / float(toks.size());
            for (uint32_t flags : {uint32_t(KV_EMBED_LAST), uint32_t(KV_EMBED_MEAN), uint32_t(KV_EMBED_MEAN | KV_EMBED_NORMALIZE),
                                   uint32_t(KV_EMBED_NORMALIZE)}) {
                std::vector<float> want = (flags & KV_EMBED_MEAN) ? mean : last;
                if (flags & KV_EMBED_NORMALIZE) {
                    double n2 = 0;
                    for (float x : want) n2 += double(x) * x;
                    for (float& x : want) x = float(x / std::sqrt(n2));
                }
                std::vector<float> got(E + 3, 7.f);
                ok(kv_session_embeddings(s, toks.data(), uint32_t(toks.size()), flags, got.data(), E + 3));
                CHECK(got[E] == 7.f);  // nothing past n_embd
                got.resize(E);
                const double err = kvtest::rel_l2(got, want);
                MESSAGE("flags " << flags << std::string(with_context ? " after a context" : "") << ": rel L2 vs reference "
                                << err);
                CHECK(err <= 1e-5);
                if (flags & KV_EMBED_NORMALIZE) {
                    double n2 = 0;
                    for (float x : got) n2 += double(x) * x;
                    CHECK(std::fabs(n2 - 1.0) < 1e-5);
                }
            }
            // The session is as it was: its tokens and logits.
            kv_session_stats st{};
            st.struct_size = sizeof st;
            ok(kv_session_get_stats(s, &st));
            CHECK(st.n_tokens == (with_context ? ctx.size() : 0));
            if (with_context) {
                std::vector<float> now(m.n_vocab);
                ok(kv_session_logits(s, now.data(), m.n_vocab));
                CHECK(now == before);
            } else {
                std::vector<float> l(m.n_vocab);
                CHECK(kv_session_logits(s, l.data(), m.n_vocab) == KV_ERR_BAD_STATE);
            }
        }
        // Bad input.
        std::vector<float> out(E);
        CHECK(kv_session_embeddings(s, toks.data(), 0, 0, out.data(), E) == KV_ERR_INVALID_ARGUMENT);
        CHECK(kv_session_embeddings(s, toks.data(), 3, 4, out.data(), E) == KV_ERR_INVALID_ARGUMENT);
        CHECK(kv_session_embeddings(s, toks.data(), 3, 0, out.data(), E - 1) == KV_ERR_INVALID_ARGUMENT);
        CHECK(kv_session_embeddings(s, nullptr, 3, 0, out.data(), E) == KV_ERR_INVALID_ARGUMENT);
        kv_token bad = kv_token(m.n_vocab);
        CHECK(kv_session_embeddings(s, &bad, 1, 0, out.data(), E) == KV_ERR_BAD_TOKEN);
        std::vector<kv_token> many(300, 1);
        CHECK(kv_session_embeddings(s, many.data(), uint32_t(many.size()), 0, out.data(), E) == KV_ERR_CONTEXT_FULL);
        kv_session_destroy(s);
    }
}
