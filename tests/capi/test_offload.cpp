// Sessions beyond what the device holds (kv_session_offload, the pool's LRU offload): a session
// whose pages went to host memory and came back gives exactly the tokens and logits of one that
// never left; a full pool offloads idle sessions, least recently used first, within the budget.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "common/trace.h"

namespace {

using kvtest::ok;

using kvtest::Model;

// An F32 session of 128 positions.
kv_session* session(const Model& m) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.cache_type = KV_CACHE_F32;
    d.n_ctx = 128;
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, &d, &s));
    return s;
}

kv_session_stats stats(kv_session* s) {
    kv_session_stats st{};
    st.struct_size = sizeof st;
    ok(kv_session_get_stats(s, &st));
    return st;
}

std::vector<float> logits(kv_session* s, uint32_t n_vocab) {
    std::vector<float> l(n_vocab);
    ok(kv_session_logits(s, l.data(), n_vocab));
    return l;
}

kv_token step(kv_session* s) {
    kv_token t = -1;
    kv_status st = kv_decode_step(s, &t);
    REQUIRE_MESSAGE(st == KV_OK, kv_status_string(st) << ": " << kv_last_error_message());
    return t;
}

// A prompt of its own for each session (no prefix shared between them).
std::vector<kv_token> prompt(uint32_t seed, uint32_t n, uint32_t n_vocab) {
    std::mt19937 rng(seed);
    std::vector<kv_token> p(n);
    for (auto& t : p) t = kv_token(3 + rng() % (n_vocab - 3));
    return p;
}

}  // namespace

TEST_CASE("offload: an offloaded session continues exactly like one that never left the device") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    const std::string path = kvtest::load_trace("stories260K.once-upon-a-time").model_path;
    Model stay(rt, path), move(rt, path);  // separate pools: nothing shared between the runs
    kv_session* a = session(stay);
    kv_session* b = session(move);
    auto p = prompt(1, 37, stay.n_vocab);
    ok(kv_prefill(a, p.data(), uint32_t(p.size())));
    ok(kv_prefill(b, p.data(), uint32_t(p.size())));
    for (int i = 0; i < 4; ++i) CHECK(step(a) == step(b));

    const uint32_t pages = stats(b).pages;
    REQUIRE(pages == 3);  // 41 tokens in 16-token pages
    ok(kv_session_offload(b));
    ok(kv_session_offload(b));  // already offloaded: nothing more
    kv_session_stats sb = stats(b);
    CHECK(sb.offloaded == 1);
    CHECK(sb.pages == 0);
    CHECK(sb.pages_offloaded == pages);
    CHECK(sb.n_tokens == 41);
    kv_cache_stats c = move.cache();
    CHECK(c.pages_in_use == 0);
    CHECK(c.pages_offloaded == pages);
    CHECK(c.offloaded_bytes == pages * c.page_bytes);
    // Logits and statistics are host state: reading them does not bring the pages back.
    CHECK(logits(b, move.n_vocab) == logits(a, stay.n_vocab));
    CHECK(stats(b).offloaded == 1);

    // The next step brings them back: the same bytes, the same results, bit for bit.
    for (int i = 0; i < 12; ++i) {
        CHECK(step(a) == step(b));
        CHECK(logits(b, move.n_vocab) == logits(a, stay.n_vocab));
    }
    sb = stats(b);
    CHECK(sb.offloaded == 0);
    CHECK(sb.pages_restored == pages);
    c = move.cache();
    CHECK(c.pages_restored == pages);
    CHECK(c.offloaded_bytes == 0);

    // Fork, truncate and save bring an offloaded session back too; reset just drops the copy.
    ok(kv_session_offload(b));
    kv_session* child = nullptr;
    ok(kv_session_fork(b, &child));
    CHECK(stats(b).offloaded == 0);
    ok(kv_session_truncate(child, 20));
    ok(kv_session_offload(b));
    ok(kv_session_reset(b));
    CHECK(stats(b).offloaded == 0);
    CHECK(move.cache().offloaded_bytes == 0);
    kv_session_destroy(child);

    // A windowed session cannot be offloaded; an empty one is a no-op.
    kv_session_desc wd = KV_SESSION_DESC_INIT;
    wd.window = 32;
    kv_session* w = nullptr;
    ok(kv_session_create(move.m, &wd, &w));
    ok(kv_prefill(w, p.data(), 8));
    CHECK(kv_session_offload(w) == KV_ERR_UNSUPPORTED);
    CHECK(kv_session_offload(b) == KV_OK);
    CHECK(kv_session_offload(nullptr) == KV_ERR_INVALID_ARGUMENT);
    kv_session_destroy(w);
    kv_session_destroy(a);
    kv_session_destroy(b);
}

TEST_CASE("offload: a full pool offloads idle sessions least recently used first and brings them back exactly") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    const std::string path = kvtest::load_trace("stories260K.once-upon-a-time").model_path;
    // 5 pages of 16 tokens; each session needs 2 (a 20-token prompt, then up to 32 tokens).
    Model big(rt, path), small(rt, path, 80, 0, 64ull << 20);
    const int n = 4;
    std::vector<kv_session*> ref(n), s(n);
    std::vector<std::vector<kv_token>> prompts(n);
    for (int i = 0; i < n; ++i) {
        prompts[i] = prompt(100 + i, 20, big.n_vocab);
        ref[i] = session(big);
        ok(kv_prefill(ref[i], prompts[i].data(), 20));
    }
    // Sessions 0 and 1 fit; 2 finds the pool full and pushes out 0 (the least recently used).
    for (int i = 0; i < 3; ++i) {
        s[i] = session(small);
        ok(kv_prefill(s[i], prompts[i].data(), 20));
    }
    CHECK(stats(s[0]).offloaded == 1);
    CHECK(stats(s[1]).offloaded == 0);
    CHECK(stats(s[2]).offloaded == 0);
    // Session 1 takes a step (it is now the most recent); 3 arrives and pushes out 2.
    CHECK(step(s[1]) == step(ref[1]));
    s[3] = session(small);
    ok(kv_prefill(s[3], prompts[3].data(), 20));
    CHECK(stats(s[2]).offloaded == 1);
    CHECK(stats(s[1]).offloaded == 0);

    // Round-robin steps: each offloaded session comes back (pushing out another) and continues
    // with exactly the tokens and logits of its never-offloaded twin.
    for (int round = 0; round < 3; ++round)
        for (int i = 0; i < n; ++i) {
            CHECK(step(s[i]) == step(ref[i]));
            CHECK(logits(s[i], small.n_vocab) == logits(ref[i], big.n_vocab));
        }
    kv_cache_stats c = small.cache();
    MESSAGE("pool of 5 pages, 4 sessions of 2: " << c.pages_offloaded << " pages offloaded, " << c.pages_restored
                                                 << " restored");
    CHECK(c.pages_offloaded >= 8);
    CHECK(c.pages_restored >= 6);

    // A batch holds all its sessions: none can be pushed out for another, so a session that
    // cannot come back gets its own KV_ERR_OUT_OF_DEVICE_MEMORY and the others step.
    std::vector<kv_token> toks(n, -1);
    std::vector<kv_status> sts(n, KV_ERR_INTERNAL);
    ok(kv_decode_batch(s.data(), n, toks.data(), sts.data()));
    int stepped = 0;
    for (int i = 0; i < n; ++i) {
        CHECK((sts[i] == KV_OK || sts[i] == KV_ERR_OUT_OF_DEVICE_MEMORY));
        if (sts[i] == KV_OK) {
            ++stepped;
            CHECK(toks[i] == step(ref[i]));
            // A two-row pass sums in another order than a one-row step: fp32 rounding apart.
            const std::vector<float> a = logits(s[i], small.n_vocab), b = logits(ref[i], big.n_vocab);
            double num = 0, den = 0;
            for (size_t k = 0; k < a.size(); ++k) {
                num += double(a[k] - b[k]) * double(a[k] - b[k]);
                den += double(b[k]) * double(b[k]);
            }
            CHECK(std::sqrt(num / den) < 1e-5);
        } else {
            CHECK(stats(s[i]).offloaded == 1);  // unchanged, still offloaded
        }
    }
    CHECK(stepped >= 2);
    CHECK(stepped < n);

    // Without a host budget the pool never offloads by itself (0.1 behaviour).
    Model strict(rt, path, 32);
    kv_session* x = session(strict);
    kv_session* y = session(strict);
    ok(kv_prefill(x, prompts[0].data(), 20));
    CHECK(kv_prefill(y, prompts[1].data(), 20) == KV_ERR_OUT_OF_DEVICE_MEMORY);
    CHECK(stats(x).offloaded == 0);
    // A budget smaller than a session: explicit offload is refused, the session untouched.
    Model tight(rt, path, 32, 0, 1);
    kv_session* z = session(tight);
    ok(kv_prefill(z, prompts[2].data(), 20));
    CHECK(kv_session_offload(z) == KV_ERR_OUT_OF_HOST_MEMORY);
    CHECK(stats(z).offloaded == 0);
    for (kv_session* v : {x, y, z}) kv_session_destroy(v);
    for (int i = 0; i < n; ++i) {
        kv_session_destroy(s[i]);
        kv_session_destroy(ref[i]);
    }
}
