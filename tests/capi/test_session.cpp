// The engine through the public API: GPU logits against the float64-exact reference rows for every
// fixture and weight type, the KV-cache invariant (cached decode == no-cache recompute), greedy
// generation against llama.cpp's trace, and the error paths that must leave a session intact.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/runtime_fixture.h"
#include "common/trace.h"

// tests/capi/c_caller.c: the call as a C caller makes it, with any int32 as the cache type.
extern "C" kv_status kv_c_model_get_cache_stats(kv_model* model, int32_t type, kv_cache_stats* stats);

namespace {

struct Model {
    kv_model* m = nullptr;
    Model(kv_runtime* rt, const std::string& path) {
        kv_model_desc d = KV_MODEL_DESC_INIT;
        d.path = path.c_str();
        kv_status s = kv_model_load(rt, &d, &m);
        REQUIRE_MESSAGE(s == KV_OK, path << ": " << kv_status_string(s) << ": " << kv_last_error_message());
    }
    ~Model() { kv_model_destroy(m); }
    operator kv_model*() const { return m; }
    uint32_t n_vocab() const {
        kv_model_info info{};
        info.struct_size = sizeof info;
        REQUIRE(kv_model_get_info(m, &info) == KV_OK);
        return info.n_vocab;
    }
};

struct Session {
    kv_session* s = nullptr;
    Session(kv_model* m, kv_cache_type type, uint32_t flags = 0, uint32_t n_ctx = 256, uint32_t n_batch = 0) {
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.cache_type = type;
        d.flags = flags;
        d.n_ctx = n_ctx;
        d.n_batch = n_batch;
        kv_status st = kv_session_create(m, &d, &s);
        REQUIRE_MESSAGE(st == KV_OK, kv_status_string(st) << ": " << kv_last_error_message());
    }
    ~Session() { kv_session_destroy(s); }
    operator kv_session*() const { return s; }
    std::vector<float> logits(uint32_t n_vocab) const {
        std::vector<float> l(n_vocab);
        REQUIRE(kv_session_logits(s, l.data(), n_vocab) == KV_OK);
        return l;
    }
    kv_session_stats stats() const {
        kv_session_stats st{};
        st.struct_size = sizeof st;
        REQUIRE(kv_session_get_stats(s, &st) == KV_OK);
        return st;
    }
};

void require_ok(kv_status s) { REQUIRE_MESSAGE(s == KV_OK, kv_status_string(s) << ": " << kv_last_error_message()); }

// Prompt, then the first 3 generated tokens fed back: 4 logits rows vs the exact rows.
double worst_vs_exact(kv_runtime* rt, const kvtest::Trace& t, kv_cache_type type, uint32_t n_batch = 0) {
    Model model(rt, t.model_path);
    const uint32_t V = model.n_vocab();
    REQUIRE(V == t.n_vocab);
    Session s(model, type, 0, 256, n_batch);
    require_ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
    double worst = 0;
    for (int row = 0; row < 4; ++row) {
        if (row > 0) require_ok(kv_prefill(s, &t.generated[size_t(row - 1)], 1));
        auto l = s.logits(V);
        double e = kvtest::rel_l2(l.data(), t.exact.data() + size_t(row) * V, V);
        worst = std::max(worst, e);
    }
    return worst;
}

}  // namespace

TEST_CASE("engine: GPU logits vs float64-exact reference, every fixture and weight type, F32 and F16 KV") {
    if (!kvtest::require_shared()) return;
    // Every fixture with F32 KV. F16 KV (whose rounding does not depend on the weight type): every
    // fixture in the full sweep; in the covering run, every long prompt and the short prompts of
    // one fixture in three.
    const bool full = kvtest::full_sweep();
    kvtest::Runtime rt;
    const std::vector<std::string> stems = kvtest::fixture_stems();
    for (size_t i = 0; i < stems.size(); ++i) {
        const std::string& stem = stems[i];
        kvtest::Trace t = kvtest::load_trace(stem);
        double e32 = worst_vs_exact(rt, t, KV_CACHE_F32);
        CHECK_MESSAGE(e32 <= 1e-4, stem << " F32 KV rel L2 " << e32);
        const bool f16 = full || stem.find(".long") != std::string::npos || i % 6 == 0;
        if (!f16) {
            MESSAGE(stem << ": rel L2 vs exact: F32 KV " << e32);
            continue;
        }
        double e16 = worst_vs_exact(rt, t, KV_CACHE_F16);
        MESSAGE(stem << ": rel L2 vs exact: F32 KV " << e32 << ", F16 KV " << e16);
        CHECK_MESSAGE(e16 <= 2e-3, stem << " F16 KV rel L2 " << e16);
    }
}

TEST_CASE("engine: stories260K logits vs exact, and chunked prefill equals one batch") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    double e32 = worst_vs_exact(rt, t, KV_CACHE_F32);
    double e16 = worst_vs_exact(rt, t, KV_CACHE_F16);
    double e32_chunked = worst_vs_exact(rt, t, KV_CACHE_F32, 2);  // prompt in chunks of 2
    MESSAGE("stories260K rel L2 vs exact: F32 " << e32 << ", F16 " << e16 << ", F32 chunked " << e32_chunked);
    CHECK(e32 <= 1e-4);
    CHECK(e16 <= 2e-3);
    CHECK(e32_chunked <= 1e-4);
}

TEST_CASE("engine: stories260K greedy reproduces the 128 reference tokens, F32 and F16 KV") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    REQUIRE(t.generated.size() == 128);
    Model model(rt, t.model_path);
    for (kv_cache_type type : {KV_CACHE_F32, KV_CACHE_F16}) {
        Session s(model, type);
        require_ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
        std::vector<int32_t> got;
        for (size_t i = 0; i < t.generated.size(); ++i) {
            kv_token tok = -1;
            kv_status st = kv_decode_step(s, &tok);
            REQUIRE((st == KV_OK || st == KV_END_OF_GENERATION));
            got.push_back(tok);
            if (st == KV_END_OF_GENERATION) break;
        }
        CHECK_MESSAGE(got == t.generated, "cache type " << int(type));
        auto st = s.stats();
        CHECK(st.n_tokens == t.prompt.size() + got.size());
        CHECK(st.tokens_decoded == got.size());
    }
}

TEST_CASE("engine: cached decode equals the no-cache recompute over 64 steps (llama and qwen2, F32 KV)") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    for (const char* stem : {"llama-gqa.q8_0.short", "qwen2-bias.f16.short"}) {
        kvtest::Trace t = kvtest::load_trace(stem);
        Model model(rt, t.model_path);
        const uint32_t V = model.n_vocab();
        Session cached(model, KV_CACHE_F32);
        Session nocache(model, KV_CACHE_F32, KV_SESSION_NO_CACHE);
        require_ok(kv_prefill(cached, t.prompt.data(), uint32_t(t.prompt.size())));
        require_ok(kv_prefill(nocache, t.prompt.data(), uint32_t(t.prompt.size())));
        double worst = 0;
        for (int step = 0; step < 64; ++step) {
            auto a = cached.logits(V), b = nocache.logits(V);
            worst = std::max(worst, kvtest::rel_l2(a.data(), b.data(), V));
            kv_token ta = -1, tb = -2;
            kv_status sa = kv_decode_step(cached, &ta), sb = kv_decode_step(nocache, &tb);
            REQUIRE(sa == sb);
            REQUIRE(ta == tb);
            if (sa == KV_END_OF_GENERATION) break;
        }
        MESSAGE(std::string(stem) << ": cached vs no-cache worst rel L2 over 64 steps: " << worst);
        CHECK(worst <= 1e-4);
        CHECK(cached.stats().n_tokens == nocache.stats().n_tokens);
    }
}

TEST_CASE("engine: kv_session_eval returns every position's logits, equal to step-by-step prefill") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("llama-gqa.f16.long");
    Model model(rt, t.model_path);
    const uint32_t V = model.n_vocab();
    Session a(model, KV_CACHE_F32, 0, 256, 16);  // eval in chunks of 16
    std::vector<float> all(t.prompt.size() * V, NAN);
    require_ok(kv_session_eval(a, t.prompt.data(), uint32_t(t.prompt.size()), all.data(), all.size()));
    Session b(model, KV_CACHE_F32);
    double worst = 0;
    for (size_t i = 0; i < t.prompt.size(); ++i) {
        require_ok(kv_prefill(b, &t.prompt[i], 1));
        auto l = b.logits(V);
        worst = std::max(worst, kvtest::rel_l2(all.data() + i * V, l.data(), V));
    }
    MESSAGE("eval vs one-by-one: worst rel L2 " << worst);
    CHECK(worst <= 1e-5);
    // The last row is also the session's current logits.
    auto cur = a.logits(V);
    CHECK(kvtest::rel_l2(cur.data(), all.data() + (t.prompt.size() - 1) * V, V) == 0);
}

TEST_CASE("engine: context full, bad tokens and bad arguments leave the session intact") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("llama-gqa.q4_0.short");
    Model model(rt, t.model_path);
    const uint32_t V = model.n_vocab();
    Session s(model, KV_CACHE_F16, 0, 16);  // one page
    kv_token tok;
    CHECK(kv_decode_step(s, &tok) == KV_ERR_BAD_STATE);  // nothing prefilled
    require_ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
    auto before = s.logits(V);
    auto st0 = s.stats();
    CHECK(st0.n_ctx == 16);

    std::vector<kv_token> many(9, 5);  // 8 + 9 > 16
    CHECK(kv_prefill(s, many.data(), uint32_t(many.size())) == KV_ERR_CONTEXT_FULL);
    CHECK(std::string(kv_last_error_message()).find("do not fit") != std::string::npos);
    std::vector<kv_token> bad = {1, 2, int32_t(V)};
    CHECK(kv_prefill(s, bad.data(), 3) == KV_ERR_BAD_TOKEN);
    CHECK(std::string(kv_last_error_message()).find(std::to_string(V)) != std::string::npos);
    kv_token neg = -1;
    CHECK(kv_prefill(s, &neg, 1) == KV_ERR_BAD_TOKEN);
    CHECK(kv_prefill(s, nullptr, 1) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_prefill(s, bad.data(), 0) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_decode_step(s, nullptr) == KV_ERR_INVALID_ARGUMENT);
    std::vector<float> small(V - 1);
    CHECK(kv_session_logits(s, small.data(), V - 1) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_prefill(nullptr, bad.data(), 1) == KV_ERR_INVALID_ARGUMENT);

    auto after = s.logits(V);
    CHECK(before == after);
    CHECK(s.stats().n_tokens == st0.n_tokens);

    // Fill to capacity, then decode is refused and nothing changes.
    std::vector<kv_token> fill(16 - t.prompt.size(), 7);
    require_ok(kv_prefill(s, fill.data(), uint32_t(fill.size())));
    auto full = s.logits(V);
    CHECK(kv_decode_step(s, &tok) == KV_ERR_CONTEXT_FULL);
    CHECK(s.stats().n_tokens == 16);
    CHECK(s.logits(V) == full);

    // Reset: empty again, same allocations, same results.
    require_ok(kv_session_reset(s));
    CHECK(s.stats().n_tokens == 0);
    CHECK(kv_session_logits(s, after.data(), V) == KV_ERR_BAD_STATE);
    require_ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
    CHECK(kvtest::rel_l2(s.logits(V), before) <= 1e-6);
}

TEST_CASE("engine: hostile arguments: a huge token count, cache types outside the enum") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("llama-gqa.q4_0.short");
    Model model(rt, t.model_path);
    Session s(model, KV_CACHE_F16, 0, 16);  // one page
    require_ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
    const uint32_t room = 16 - uint32_t(t.prompt.size());

    // Capacity is checked before any id is read: the ids past what fits are never looked at
    // (they used to be checked first, so this failed with KV_ERR_BAD_TOKEN, and a huge n read
    // past the caller's array).
    std::vector<kv_token> over(room + 1, 5);
    over.back() = -1;
    CHECK(kv_prefill(s, over.data(), uint32_t(over.size())) == KV_ERR_CONTEXT_FULL);
    kv_token two[2] = {5, -1};
    CHECK(kv_prefill(s, two, UINT32_MAX) == KV_ERR_CONTEXT_FULL);
    CHECK(std::string(kv_last_error_message()).find(std::to_string(UINT32_MAX)) != std::string::npos);
    CHECK(s.stats().n_tokens == t.prompt.size());

    // A cache type outside the enumerators (the raw bits of the caller's int32) is refused by
    // value; it is never loaded as a kv_cache_type (UBSan: invalid enum load).
    for (int32_t bad : {-1, INT32_MIN, 4, 0x7FFFFFFF}) {
        INFO("cache_type " << bad);
        kv_session_desc d = KV_SESSION_DESC_INIT;
        std::memcpy(&d.cache_type, &bad, sizeof bad);
        kv_session* out = nullptr;
        CHECK(kv_session_create(model, &d, &out) == KV_ERR_INVALID_ARGUMENT);
        CHECK(out == nullptr);
        CHECK(std::string(kv_last_error_message()).find("cache_type " + std::to_string(bad)) != std::string::npos);
        kv_cache_stats cs{};
        cs.struct_size = sizeof cs;
        CHECK(kv_c_model_get_cache_stats(model, bad, &cs) == KV_ERR_INVALID_ARGUMENT);
        CHECK(std::string(kv_last_error_message()).find("cache_type " + std::to_string(bad)) != std::string::npos);
    }
}

TEST_CASE("engine: KV bytes are exactly 2 x layers x kv_heads x head_dim x bytes per cached token, in whole pages") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("llama-gqa.f32.short");
    Model model(rt, t.model_path);
    kv_model_info info{};
    info.struct_size = sizeof info;
    require_ok(kv_model_get_info(model, &info));
    for (auto [type, bytes] : {std::pair{KV_CACHE_F32, 4u}, std::pair{KV_CACHE_F16, 2u}}) {
        Session s(model, type, 0, 100);  // n_ctx is rounded up to whole pages
        auto st = s.stats();
        CHECK(st.n_ctx % st.page_size == 0);
        CHECK(st.n_ctx >= 100);
        const uint64_t per_token = 2ull * info.n_layer * info.n_head_kv * info.head_dim * bytes;
        CHECK(st.kv_bytes_per_token == per_token);
        CHECK(st.kv_bytes == 0);  // pages are taken as tokens arrive
        std::vector<kv_token> toks(37, 5);
        require_ok(kv_prefill(s, toks.data(), uint32_t(toks.size())));
        st = s.stats();
        uint32_t pages = (37 + st.page_size - 1) / st.page_size;
        CHECK(st.pages == pages);
        CHECK(st.kv_bytes == uint64_t(pages) * st.page_size * per_token);
        kv_cache_stats cs{};
        cs.struct_size = sizeof cs;
        require_ok(kv_model_get_cache_stats(model, type, &cs));
        CHECK(cs.page_bytes == st.page_size * per_token);
        CHECK(cs.device_bytes == uint64_t(cs.pages_total) * cs.page_bytes);
        CHECK(cs.pages_in_use == pages);
    }
}

TEST_CASE("engine: out of device memory is a status, leaks nothing, and the runtime stays usable") {
    if (!kvtest::require_shared()) return;
    std::string path = kvtest::shared_dir() + "/models/fixtures/llama-gqa.f32.gguf";  // ~6.6 MB
    kv_runtime_desc d = KV_RUNTIME_DESC_INIT;
    d.memory_budget = 2 << 20;  // too small for the weights
    if (kvtest::validation_layer_available()) d.flags |= KV_RUNTIME_VALIDATION;
    kv_runtime* rt = nullptr;
    require_ok(kv_runtime_create(&d, &rt));
    kv_model_desc md = KV_MODEL_DESC_INIT;
    md.path = path.c_str();
    kv_model* m = nullptr;
    CHECK(kv_model_load(rt, &md, &m) == KV_ERR_OUT_OF_DEVICE_MEMORY);
    CHECK(m == nullptr);
    CHECK(std::string(kv_last_error_message()).find("limit") != std::string::npos);
    kv_runtime_destroy(rt);

    d.memory_budget = 40 << 20;  // weights and a default pool fit; a 200k-token pool does not
    require_ok(kv_runtime_create(&d, &rt));
    require_ok(kv_model_load(rt, &md, &m));
    kv_session_desc sd = KV_SESSION_DESC_INIT;
    sd.n_ctx = 200000;
    sd.cache_type = KV_CACHE_F32;
    kv_session* s = nullptr;
    CHECK(kv_session_create(m, &sd, &s) == KV_ERR_OUT_OF_DEVICE_MEMORY);
    CHECK(s == nullptr);
    sd.n_ctx = 64;  // and a small one still fits: nothing leaked
    require_ok(kv_session_create(m, &sd, &s));
    kv_token p[] = {1, 2, 3};
    require_ok(kv_prefill(s, p, 3));
    kv_session_destroy(s);
    kv_model_destroy(m);
    CHECK(kv_runtime_validation_message_count(rt) == 0);
    kv_runtime_destroy(rt);
}

TEST_CASE("engine: sampling is reproducible with a seed and greedy at temperature 0") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    Model model(rt, t.model_path);
    auto run = [&](const kv_sampler_desc& sd) {
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.sampler = &sd;
        kv_session* s = nullptr;
        require_ok(kv_session_create(model, &d, &s));
        require_ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
        std::vector<kv_token> out;
        for (int i = 0; i < 24; ++i) {
            kv_token tok;
            if (kv_decode_step(s, &tok) != KV_OK) break;
            out.push_back(tok);
        }
        kv_session_destroy(s);
        return out;
    };
    kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
    sd.temperature = 0.9f;
    sd.top_k = 40;
    sd.top_p = 0.95f;
    sd.min_p = 0.02f;
    sd.repeat_penalty = 1.1f;
    sd.seed = 1234;
    auto a = run(sd), b = run(sd);
    CHECK(a == b);
    CHECK(a.size() == 24);
    sd.seed = 99;
    auto c = run(sd);
    CHECK(c != a);  // (24 tokens from a 512 vocab at T=0.9: equal only by extreme coincidence)
    kv_sampler_desc greedy = KV_SAMPLER_DESC_INIT;
    auto g = run(greedy);
    CHECK(std::vector<int32_t>(t.generated.begin(), t.generated.begin() + long(g.size())) == g);
    kv_sampler_desc bad = KV_SAMPLER_DESC_INIT;
    bad.top_p = 0;
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.sampler = &bad;
    kv_session* s = nullptr;
    CHECK(kv_session_create(model, &d, &s) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("top_p") != std::string::npos);
}

TEST_CASE("engine: a model loaded without a runtime tokenizes but cannot run sessions") {
    if (!kvtest::require_shared()) return;
    std::string path = kvtest::shared_dir() + "/models/stories260K/stories260K.gguf";
    kv_model_desc md = KV_MODEL_DESC_INIT;
    md.path = path.c_str();
    kv_model* m = nullptr;
    require_ok(kv_model_load(nullptr, &md, &m));
    kv_model_info info{};
    info.struct_size = sizeof info;
    require_ok(kv_model_get_info(m, &info));
    CHECK(info.on_device == 0);
    CHECK(std::string(info.architecture) == "llama");
    CHECK(info.n_layer == 5);
    CHECK(info.n_head_kv == 4);
    kv_token ids[16];
    uint32_t n = 16;
    require_ok(kv_tokenize(m, "Once upon a time", size_t(-1), KV_TOKENIZE_ADD_SPECIAL, ids, &n));
    CHECK(std::vector<kv_token>(ids, ids + n) == std::vector<kv_token>{1, 403, 407, 261, 378});
    uint32_t small = 2;
    CHECK(kv_tokenize(m, "Once upon a time", size_t(-1), KV_TOKENIZE_ADD_SPECIAL, ids, &small) == KV_INCOMPLETE);
    CHECK(small == 5);
    char text[64];
    size_t len = sizeof text;
    require_ok(kv_detokenize(m, ids, n, text, &len));
    CHECK(std::string(text, len) == "Once upon a time");
    kv_session* s = nullptr;
    CHECK(kv_session_create(m, nullptr, &s) == KV_ERR_BAD_STATE);
    kv_model_destroy(m);

    // From memory, copied, and a broken file gives KV_ERR_BAD_MODEL.
    auto bytes = kvtest::read_file(path);
    md = KV_MODEL_DESC_INIT;
    md.data = bytes.data();
    md.size = bytes.size();
    md.copy_data = 1;
    require_ok(kv_model_load(nullptr, &md, &m));
    kv_model_destroy(m);
    md.size = bytes.size() / 2;
    CHECK(kv_model_load(nullptr, &md, &m) == KV_ERR_BAD_MODEL);
    CHECK(std::strlen(kv_last_error_message()) > 0);
    md = KV_MODEL_DESC_INIT;
    md.path = "/nonexistent/model.gguf";
    CHECK(kv_model_load(nullptr, &md, &m) == KV_ERR_IO);
}
