// The paged KV cache through the public API: prefix sharing, fork (copy-on-write), truncate,
// page accounting across sessions, and a full pool — each checked against sessions that were fed
// the same tokens independently.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <tuple>
#include <memory>
#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "common/trace.h"
#include "model/gguf.h"
#include "reference/reference.h"

namespace {

using kvtest::Model;
using kvtest::ok;
using kvtest::Session;

// A 100-token prompt of the llama fixture (head_dim 32, 2 KV heads).
struct Fixture {
    kvtest::Trace trace = kvtest::load_trace("llama-gqa.f32.long");
    std::vector<kv_token> prompt = trace.prompt;
};

}  // namespace

TEST_CASE("paged: a prefix-hit session equals a cold one and computes only the rest") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    Session cold(model);
    cold.prefill(f.prompt);
    auto lc = cold.logits();
    CHECK(cold.stats().prefix_hit_tokens == 0);

    Session warm(model);
    warm.prefill(f.prompt);
    auto st = warm.stats();
    const uint32_t ps = st.page_size;
    CHECK(st.prefix_hit_tokens == (uint32_t(f.prompt.size()) - 1) / ps * ps);
    CHECK(st.prefix_hit_tokens > 0);
    CHECK(st.shared_pages == st.prefix_hit_tokens / ps);
    double e = kvtest::rel_l2(warm.logits(), lc);
    MESSAGE("prefix hit of " << st.prefix_hit_tokens << " tokens: rel L2 vs cold " << e);
    CHECK(e <= 1e-4);
    // And they go on alike.
    CHECK(warm.greedy(12) == cold.greedy(12));
    auto cs = model.cache();
    CHECK(cs.prefix_hits >= st.prefix_hit_tokens / ps);
}

TEST_CASE("paged: N sessions sharing a P-token prompt hold its pages once plus their own") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    const uint32_t P = uint32_t(f.prompt.size());
    std::vector<std::unique_ptr<Session>> ss;
    const int N = 4;
    for (int i = 0; i < N; ++i) {
        ss.push_back(std::make_unique<Session>(model));
        ss.back()->prefill(f.prompt);
    }
    const uint32_t ps = ss[0]->stats().page_size;
    const uint32_t shared = (P - 1) / ps;                // full pages reused by sessions 2..N
    const uint32_t own = (P + ps - 1) / ps - shared;     // pages each session holds alone
    CHECK(model.cache().pages_in_use == shared + N * own);
    for (auto& s : ss) CHECK(s->stats().pages == shared + own);
    // Destroyed sessions leave their full pages cached for the next one.
    ss.clear();
    auto cs = model.cache();
    CHECK(cs.pages_in_use == 0);
    CHECK(cs.pages_cached >= P / ps);
    Session again(model);
    again.prefill(f.prompt);
    CHECK(again.stats().prefix_hit_tokens == shared * ps);
}

TEST_CASE("paged: a forked pair equals two independent sessions fed the same tokens") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    for (kv_cache_type type : {KV_CACHE_F32, KV_CACHE_F16}) {
        std::vector<kv_token> head(f.prompt.begin(), f.prompt.begin() + 37);  // ends inside a page
        Session parent(model, type);
        parent.prefill(head);
        kv_session* child_raw = nullptr;
        ok(kv_session_fork(parent.s, &child_raw));
        Session child(child_raw, model);
        CHECK(child.stats().n_tokens == 37);
        CHECK(kvtest::rel_l2(child.logits(), parent.logits()) == 0);

        // Diverge: the parent greedy-decodes, the child is fed different tokens.
        auto gen = parent.greedy(20);
        std::vector<kv_token> other = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
        child.prefill(other);

        Session ind_parent(model, type), ind_child(model, type);
        ind_parent.prefill(head);
        auto gen2 = ind_parent.greedy(20);
        CHECK(gen == gen2);
        CHECK(kvtest::rel_l2(parent.logits(), ind_parent.logits()) <= 1e-5);
        std::vector<kv_token> all = head;
        all.insert(all.end(), other.begin(), other.end());
        ind_child.prefill(all);
        double e = kvtest::rel_l2(child.logits(), ind_child.logits());
        MESSAGE("fork child vs independent: rel L2 " << e);
        CHECK(e <= 1e-5);
        CHECK(child.greedy(8) == ind_child.greedy(8));
    }
}

TEST_CASE("paged: truncate-then-continue equals a fresh run of the shorter sequence") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    Session s(model);
    s.prefill(f.prompt);
    s.greedy(10);
    for (uint32_t n : {90u, 64u, 33u, 1u}) {
        ok(kv_session_truncate(s.s, n));
        CHECK(s.stats().n_tokens == n);
        Session fresh(model);
        fresh.prefill(std::vector<kv_token>(f.prompt.begin(), f.prompt.begin() + n));
        double e = kvtest::rel_l2(s.logits(), fresh.logits());
        MESSAGE("truncate to " << n << ": rel L2 vs fresh " << e);
        CHECK(e <= 1e-5);
        CHECK(s.greedy(6) == fresh.greedy(6));
        ok(kv_session_truncate(s.s, n));  // back to n for the next, shorter truncation
    }
    CHECK(kv_session_truncate(s.s, 1000) == KV_ERR_INVALID_ARGUMENT);
    ok(kv_session_truncate(s.s, 0));
    CHECK(s.stats().n_tokens == 0);
    CHECK(s.stats().pages == 0);
}

TEST_CASE("paged: a full pool evicts cached pages first, then fails cleanly leaving every session intact") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path, 64, 16);  // 4 pages of 16 tokens
    std::vector<kv_token> a(f.prompt.begin(), f.prompt.begin() + 40), b(f.prompt.begin() + 50, f.prompt.begin() + 90);
    {
        Session first(model);
        first.prefill(a);  // 3 pages; 2 full ones stay cached when it goes
    }
    CHECK(model.cache().pages_cached == 2);
    Session s1(model);
    s1.prefill(b);  // 3 pages: takes the free page and evicts cached ones
    auto cs = model.cache();
    CHECK(cs.evictions >= 1);
    CHECK(cs.pages_in_use == 3);
    auto before = s1.logits();
    Session s2(model);
    CHECK(kv_prefill(s2.s, a.data(), uint32_t(a.size())) == KV_ERR_OUT_OF_DEVICE_MEMORY);
    CHECK(std::string(kv_last_error_message()).find("pool is full") != std::string::npos);
    CHECK(s2.stats().n_tokens == 0);
    CHECK(s2.stats().pages == 0);
    CHECK(model.cache().pages_in_use == 3);
    CHECK(s1.logits() == before);
    CHECK(s1.greedy(10).size() == 10);  // s1 goes on into its 4th page: the pool is now full
    std::vector<kv_token> small(10, 3);
    CHECK(kv_prefill(s2.s, small.data(), 10) == KV_ERR_OUT_OF_DEVICE_MEMORY);  // no page left at all
    ok(kv_session_truncate(s1.s, 20));  // returns pages
    s2.prefill(small);
    CHECK(s2.stats().n_tokens == 10);
}

TEST_CASE("paged: a pool larger than the device can hold is refused before any host bookkeeping") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    // UINT32_MAX tokens: 268M pages of 16. The page bookkeeping alone would take ~23 GB of host
    // memory; it used to be allocated before the size check (the process was killed).
    Model model(rt, f.trace.model_path, UINT32_MAX);
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.cache_type = KV_CACHE_F32;
    d.n_ctx = 64;
    kv_session* s = nullptr;
    const kv_status st = kv_session_create(model.m, &d, &s);
    CHECK((st == KV_ERR_UNSUPPORTED || st == KV_ERR_OUT_OF_DEVICE_MEMORY));
    CHECK(s == nullptr);
    CHECK(std::string(kv_last_error_message()).find("kv_pool_tokens") != std::string::npos);
    // The model stays usable with a session type whose pool is not created yet: still refused.
    d.cache_type = KV_CACHE_F16;
    CHECK(kv_session_create(model.m, &d, &s) != KV_OK);
    CHECK(s == nullptr);
}

TEST_CASE("saved sessions: a round trip restores identical logits and the same next tokens") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    for (kv_cache_type type : {KV_CACHE_F32, KV_CACHE_F16}) {
        kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
        sd.temperature = 0.8f;
        sd.top_k = 50;
        sd.seed = 42;
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.cache_type = type;
        d.n_ctx = 256;
        d.sampler = &sd;
        kv_session* raw = nullptr;
        ok(kv_session_create(model.m, &d, &raw));
        Session s(raw, model);
        s.prefill(std::vector<kv_token>(f.prompt.begin(), f.prompt.begin() + 45));
        s.greedy(5);  // (samples with the session's sampler)

        size_t size = 0;
        CHECK(kv_session_save(s.s, nullptr, &size) == KV_INCOMPLETE);
        REQUIRE(size > 0);
        std::vector<uint8_t> img(size);
        ok(kv_session_save(s.s, img.data(), &size));
        CHECK(size == img.size());

        kv_session* back_raw = nullptr;
        ok(kv_session_load(model.m, img.data(), img.size(), &back_raw));
        Session back(back_raw, model);
        CHECK(back.stats().n_tokens == s.stats().n_tokens);
        CHECK(back.logits() == s.logits());
        auto a = s.greedy(10), b = back.greedy(10);
        CHECK(a == b);
        CHECK(back.logits() == s.logits());

        // Files too.
        std::string path = "/tmp/kvulkan-test-session-" + std::to_string(int(type)) + ".kvs";
        ok(kv_session_save_file(s.s, path.c_str()));
        kv_session* from_file = nullptr;
        ok(kv_session_load_file(model.m, path.c_str(), &from_file));
        Session ff(from_file, model);
        CHECK(ff.logits() == s.logits());
        std::remove(path.c_str());
    }
}

TEST_CASE("saved sessions: truncated, corrupted and foreign images are rejected with a message") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    Session s(model);
    s.prefill(std::vector<kv_token>(f.prompt.begin(), f.prompt.begin() + 20));
    size_t size = 0;
    kv_session_save(s.s, nullptr, &size);
    std::vector<uint8_t> img(size);
    ok(kv_session_save(s.s, img.data(), &size));
    kv_session* out = nullptr;
    for (size_t cut : {size_t(0), size_t(7), size_t(40), size / 2, size - 1}) {
        CHECK(kv_session_load(model.m, img.data(), cut, &out) != KV_OK);
        CHECK(out == nullptr);
    }
    std::vector<uint8_t> bad = img;
    bad[bad.size() / 2] ^= 0x5A;
    CHECK(kv_session_load(model.m, bad.data(), bad.size(), &out) == KV_ERR_BAD_MODEL);
    CHECK(std::string(kv_last_error_message()).find("checksum") != std::string::npos);
    bad = img;
    bad[0] = 'X';
    CHECK(kv_session_load(model.m, bad.data(), bad.size(), &out) == KV_ERR_BAD_MODEL);
    CHECK(std::string(kv_last_error_message()).find("magic") != std::string::npos);

    Model other(rt, kvtest::shared_dir() + "/models/stories260K/stories260K.gguf");
    CHECK(kv_session_load(other.m, img.data(), img.size(), &out) == KV_ERR_BAD_MODEL);
    CHECK(std::string(kv_last_error_message()).find("another model") != std::string::npos);
    CHECK(kv_session_load_file(model.m, "/nonexistent/session.kvs", &out) == KV_ERR_IO);
    CHECK(out == nullptr);
}

TEST_CASE("window: endless generation with a window and sinks keeps memory flat and equals a single-pass recompute") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    // The no-cache baseline recomputes the whole sequence at every step, so the cost grows with the
    // square of the length: the covering run wraps a 24-token window (not a page multiple) 3
    // times, the full sweep a 32-token one 5 times.
    const bool full_run = kvtest::full_sweep();
    const uint32_t window = full_run ? 32 : 24, sinks = 4, laps = full_run ? 5 : 3;
    auto make = [&](uint32_t flags, uint32_t n_batch) {
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.cache_type = KV_CACHE_F32;
        d.n_ctx = 64;  // capacity caps nothing for a windowed session
        d.window = window;
        d.sinks = sinks;
        d.flags = flags;
        d.n_batch = n_batch;
        kv_session* s = nullptr;
        kv_status st = kv_session_create(model.m, &d, &s);
        REQUIRE_MESSAGE(st == KV_OK, kv_last_error_message());
        return s;
    };
    Session s(make(0, 16), model);
    // The baseline: every step recomputes the whole sequence in one pass (n_batch covers it), so
    // no page is released while it runs and the ring never wraps within a pass.
    Session full(make(KV_SESSION_NO_CACHE, 512), model);
    std::vector<kv_token> prompt(f.prompt.begin(), f.prompt.begin() + 20);
    s.prefill(prompt);
    full.prefill(prompt);
    uint32_t ps = s.stats().page_size;
    uint32_t bound = (sinks + ps - 1) / ps + (window + 16 + ps - 1) / ps + 2;
    uint32_t max_pages = 0;
    double worst = 0;
    for (int step = 0; step < int(laps * window); ++step) {  // several times the window
        worst = std::max(worst, kvtest::rel_l2(s.logits(), full.logits()));
        kv_token a, b;
        REQUIRE(kv_decode_step(s.s, &a) == KV_OK);
        REQUIRE(kv_decode_step(full.s, &b) == KV_OK);
        REQUIRE(a == b);
        max_pages = std::max(max_pages, s.stats().pages);
    }
    MESSAGE("window " << window << " + " << sinks << " sinks over " << s.stats().n_tokens << " tokens: at most "
                      << max_pages << " pages (bound " << bound << "), worst rel L2 vs single-pass " << worst);
    CHECK(s.stats().n_tokens == 20 + laps * window);
    CHECK(max_pages <= bound);
    CHECK(worst <= 1e-5);
    // A token whose window left the cache cannot be truncated back to.
    CHECK(kv_session_truncate(s.s, 40) == KV_ERR_INVALID_ARGUMENT);  // position 39's page was released
    ok(kv_session_truncate(s.s, s.stats().n_tokens - 1));  // recent positions can be dropped
}

TEST_CASE("quantized pages: Q8_0 and Q4_0 match the CPU reference rounding K/V the same way") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;  // head_dim 32: one quantization block per row
    Model model(rt, f.trace.model_path);
    auto file = kv::model::GgufFile::open(f.trace.model_path);
    auto ref_model = kv::reference::ReferenceModel::load(*file);
    // Same rounding on both sides: fp32 arithmetic gives ~5e-7. The slack above that covers a
    // K/V value that sits on a quantization boundary, where fp32 x * (1/d) on the GPU and the CPU
    // may land one step apart (seen as isolated steps near 1e-4 with Q8_0 on stories260K).
    for (auto [type, gtype, tol] : {std::tuple{KV_CACHE_Q8_0, kv::model::GgmlType::Q8_0, 5e-4},
                                    std::tuple{KV_CACHE_Q4_0, kv::model::GgmlType::Q4_0, 5e-3}}) {
        Session s(model, type);
        kv::reference::ReferenceSession ref(*ref_model, gtype);
        auto want = ref.prefill(f.prompt);
        s.prefill(f.prompt);
        double e = kvtest::rel_l2(s.logits(), want);
        double e_exact = kvtest::rel_l2(s.logits().data(), f.trace.exact.data(), model.n_vocab);
        std::vector<kv_token> gpu = s.greedy(16), cpu;
        for (int i = 0; i < 16; ++i) {
            kv_token t = kv::reference::argmax(want.data(), want.size());
            cpu.push_back(t);
            want = ref.decode(t);
        }
        size_t agree = 0;
        while (agree < gpu.size() && gpu[agree] == cpu[agree]) ++agree;
        MESSAGE(std::string(kv::model::type_traits(gtype)->name) << " pages: rel L2 vs the reference with the same rounding "
                << e << ", vs float64-exact (unrounded) " << e_exact << "; greedy tokens agree for " << agree
                << " of 16 steps");
        CHECK(e <= tol);
        CHECK(agree >= 8);
        auto st = s.stats();
        CHECK(st.kv_bytes_per_token < (type == KV_CACHE_Q8_0 ? 2u * 2 * 2 * 32 * 2 : 2u * 2 * 2 * 32));
    }
}

TEST_CASE("threads: sessions of one model decode concurrently and match sequential runs") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Fixture f;
    Model model(rt, f.trace.model_path);
    const int n_threads = 4;
    // Each thread: a prompt sharing the first 48 tokens with the others (shared pages), then 24
    // greedy steps of its own.
    auto prompt_of = [&](int i) {
        std::vector<kv_token> p(f.prompt.begin(), f.prompt.begin() + 48);
        p.push_back(kv_token(100 + i));
        return p;
    };
    std::vector<std::vector<kv_token>> seq(n_threads), par(n_threads);
    std::vector<kv_status> status(n_threads, KV_OK);
    for (int i = 0; i < n_threads; ++i) {
        Session s(model);
        s.prefill(prompt_of(i));
        seq[i] = s.greedy(24);
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < n_threads; ++i)
        threads.emplace_back([&, i] {
            kv_session_desc d = KV_SESSION_DESC_INIT;
            d.cache_type = KV_CACHE_F32;
            d.n_ctx = 256;
            kv_session* s = nullptr;
            kv_status st = kv_session_create(model.m, &d, &s);
            auto p = prompt_of(i);
            if (st == KV_OK) st = kv_prefill(s, p.data(), uint32_t(p.size()));
            for (int k = 0; k < 24 && st == KV_OK; ++k) {
                kv_token t;
                st = kv_decode_step(s, &t);
                if (st == KV_OK) par[i].push_back(t);
            }
            status[i] = st;
            kv_session_destroy(s);
        });
    for (auto& t : threads) t.join();
    for (int i = 0; i < n_threads; ++i) {
        CHECK(status[i] == KV_OK);
        CHECK(par[i] == seq[i]);
    }
    CHECK(model.cache().pages_in_use == 0);
}
