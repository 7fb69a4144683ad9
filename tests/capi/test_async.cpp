// Non-blocking work (kv_submit_*, tickets), one call at a time per session (KV_ERR_BUSY) and
// cancellation: submitted work gives the blocking calls' results; a session in use answers
// KV_ERR_BUSY and is never corrupted; a cancelled prefill leaves a session that continues exactly
// like an uncancelled one.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <vulkan/vulkan.h>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "common/trace.h"

namespace {

using kvtest::Model;
using kvtest::ok;

kv_session* make(const Model& m, uint32_t n_ctx = 512, uint32_t n_batch = 0) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.n_ctx = n_ctx;
    d.n_batch = n_batch;
    d.cache_type = KV_CACHE_F32;
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

std::vector<float> logits(const Model& m, kv_session* s) {
    std::vector<float> l(m.n_vocab);
    ok(kv_session_logits(s, l.data(), m.n_vocab));
    return l;
}

std::vector<kv_token> greedy(kv_session* s, int n) {
    std::vector<kv_token> out;
    for (int i = 0; i < n; ++i) {
        kv_token t;
        kv_status st = kv_decode_step(s, &t);
        REQUIRE_MESSAGE(st == KV_OK, kv_status_string(st) << ": " << kv_last_error_message());
        out.push_back(t);
    }
    return out;
}

// Sessions sharing a prefix compute it in passes of other shapes: their logits agree within fp32
// rounding, not bit for bit.
double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += double(a[i] - b[i]) * double(a[i] - b[i]);
        den += double(b[i]) * double(b[i]);
    }
    return std::sqrt(num / den);
}

// Waits by polling, as a frame loop would (never blocks on the ticket).
kv_status poll_until_done(kv_ticket* t) {
    for (;;) {
        kv_status st = kv_ticket_poll(t);
        if (st != KV_NOT_READY) return st;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

}  // namespace

TEST_CASE("async: submitted prefill and decode steps give the blocking calls' tokens") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    Model model(rt, t.model_path);

    kv_session* a = make(model);
    ok(kv_prefill(a, t.prompt.data(), uint32_t(t.prompt.size())));
    std::vector<kv_token> want = greedy(a, 24);

    kv_session* b = make(model);
    kv_ticket* tk = nullptr;
    ok(kv_submit_prefill(b, t.prompt.data(), uint32_t(t.prompt.size()), nullptr, nullptr, &tk));
    // Nothing of the caller's is read after the submit: the prompt may go away now.
    kv_ticket_wait(tk, UINT64_MAX);
    CHECK(kv_ticket_wait(tk, 0) == KV_OK);
    uint32_t n = 99;
    CHECK(kv_ticket_results(tk, nullptr, nullptr, 0, &n) == KV_OK);
    CHECK(n == 0);
    kv_ticket_destroy(tk);

    std::vector<kv_token> got;
    for (int i = 0; i < 24; ++i) {
        ok(kv_submit_decode(b, nullptr, nullptr, &tk));
        REQUIRE(poll_until_done(tk) == KV_OK);
        kv_token tok = -1;
        kv_status st = KV_ERR_INTERNAL;
        uint32_t n_out = 0;
        CHECK(kv_ticket_results(tk, &tok, &st, 0, &n_out) == KV_INCOMPLETE);  // capacity 0: the count
        CHECK(n_out == 1);
        ok(kv_ticket_results(tk, &tok, &st, 1, &n_out));
        CHECK(st == KV_OK);
        got.push_back(tok);
        kv_ticket_destroy(tk);
    }
    CHECK(got == want);
    CHECK(rel_l2(logits(model, b), logits(model, a)) < 1e-5);

    // Batch tickets equal kv_decode_batch on forks of the same sessions.
    kv_session* c = nullptr;
    kv_session* d = nullptr;
    ok(kv_session_fork(a, &c));
    ok(kv_session_fork(b, &d));
    kv_session* sync_pair[2] = {a, b};
    kv_session* async_pair[2] = {c, d};
    kv_token want_tok[2];
    kv_status want_st[2];
    ok(kv_decode_batch(sync_pair, 2, want_tok, want_st));
    ok(kv_submit_decode_batch(async_pair, 2, nullptr, nullptr, &tk));
    CHECK(kv_ticket_wait(tk, UINT64_MAX) == KV_OK);
    kv_token got_tok[2] = {-1, -1};
    kv_status got_st[2] = {KV_ERR_INTERNAL, KV_ERR_INTERNAL};
    ok(kv_ticket_results(tk, got_tok, got_st, 2, &n));
    CHECK(n == 2);
    CHECK(got_st[0] == want_st[0]);
    CHECK(got_st[1] == want_st[1]);
    CHECK(got_tok[0] == want_tok[0]);
    CHECK(got_tok[1] == want_tok[1]);
    kv_ticket_destroy(tk);
    for (kv_session* s : {a, b, c, d}) kv_session_destroy(s);
}

TEST_CASE("async: a session with work in flight answers KV_ERR_BUSY, and callbacks run on the worker after it is free") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    Model model(rt, t.model_path);
    kv_session* x = make(model);
    kv_session* y = make(model);
    ok(kv_prefill(x, t.prompt.data(), uint32_t(t.prompt.size())));
    ok(kv_prefill(y, t.prompt.data(), uint32_t(t.prompt.size())));

    // Ticket A's callback holds the worker, so ticket B (queued behind it) keeps y taken: every
    // call on y meanwhile is refused, deterministically.
    struct Hold {
        std::promise<void> release;
        std::shared_future<void> released;
        std::atomic<int> calls{0};
        kv_status status = KV_ERR_INTERNAL;
        kv_status inner_wait = KV_OK;
        kv_ticket* b = nullptr;
    } hold;
    hold.released = hold.release.get_future().share();
    kv_ticket* a = nullptr;
    kv_ticket* b = nullptr;
    auto on_a = [](kv_ticket* tk, kv_status st, void* user) {
        auto* h = static_cast<Hold*>(user);
        h->status = kv_ticket_wait(tk, 1000) == st ? st : KV_ERR_INTERNAL;  // its own: complete
        ++h->calls;
        h->released.wait();
        // Waiting here for work queued behind this callback would never end: refused.
        h->inner_wait = kv_ticket_wait(h->b, 1000);
    };
    ok(kv_submit_decode(x, on_a, &hold, &a));
    ok(kv_submit_decode(y, nullptr, nullptr, &b));
    hold.b = b;
    while (hold.calls.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));

    // x's ticket is complete: x is free again while its callback still runs.
    CHECK(kv_ticket_poll(a) == KV_OK);
    CHECK(hold.status == KV_OK);
    kv_session_stats st{};
    st.struct_size = sizeof st;
    CHECK(kv_session_get_stats(x, &st) == KV_OK);

    kv_token tok;
    CHECK(kv_ticket_poll(b) == KV_NOT_READY);
    CHECK(kv_decode_step(y, &tok) == KV_ERR_BUSY);
    CHECK(std::string(kv_last_error_message()).find("in use") != std::string::npos);
    CHECK(kv_prefill(y, t.prompt.data(), 1) == KV_ERR_BUSY);
    CHECK(kv_session_get_stats(y, &st) == KV_ERR_BUSY);
    CHECK(kv_session_truncate(y, 1) == KV_ERR_BUSY);
    kv_ticket* c = nullptr;
    CHECK(kv_submit_decode(y, nullptr, nullptr, &c) == KV_ERR_BUSY);
    CHECK(c == nullptr);
    // A batch runs the free session and gives the busy one its own KV_ERR_BUSY.
    kv_session* pair[2] = {x, y};
    kv_token toks[2] = {-1, -1};
    kv_status sts[2] = {KV_ERR_INTERNAL, KV_ERR_INTERNAL};
    // x is free, but the worker is held: run the batch on this thread.
    ok(kv_decode_batch(pair, 2, toks, sts));
    CHECK(sts[0] == KV_OK);
    CHECK(sts[1] == KV_ERR_BUSY);

    hold.release.set_value();
    CHECK(kv_ticket_wait(b, UINT64_MAX) == KV_OK);
    CHECK(hold.calls.load() == 1);
    CHECK(hold.inner_wait == KV_ERR_BAD_STATE);
    // y took exactly one step (the refused calls changed nothing).
    CHECK(kv_session_get_stats(y, &st) == KV_OK);
    CHECK(st.n_tokens == t.prompt.size() + 1);
    kv_ticket_destroy(a);
    kv_ticket_destroy(b);

    // A callback may destroy its own ticket.
    std::atomic<int> done{0};
    auto self_destroy = [](kv_ticket* tk, kv_status, void* user) {
        kv_ticket_destroy(tk);
        ++*static_cast<std::atomic<int>*>(user);
    };
    ok(kv_submit_decode(x, self_destroy, &done, &a));
    while (done.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));

    // Submit errors: no ticket.
    a = nullptr;
    CHECK(kv_submit_prefill(x, t.prompt.data(), 0, nullptr, nullptr, &a) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_submit_prefill(x, nullptr, 1, nullptr, nullptr, &a) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_submit_decode(x, nullptr, nullptr, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_submit_decode(nullptr, nullptr, nullptr, &a) == KV_ERR_INVALID_ARGUMENT);
    CHECK(a == nullptr);
    CHECK(kv_ticket_poll(nullptr) == KV_ERR_INVALID_ARGUMENT);
    kv_ticket_destroy(nullptr);
    // The work's own error is the ticket's status, with its message.
    kv_session* fresh = make(model);
    ok(kv_submit_decode(fresh, nullptr, nullptr, &a));
    CHECK(kv_ticket_wait(a, UINT64_MAX) == KV_ERR_BAD_STATE);
    CHECK(std::string(kv_last_error_message()).find("prefill") != std::string::npos);
    kv_ticket_destroy(a);
    // Destroying a session waits for its ticket.
    ok(kv_submit_prefill(fresh, t.prompt.data(), uint32_t(t.prompt.size()), nullptr, nullptr, &a));
    kv_session_destroy(fresh);
    CHECK(kv_ticket_wait(a, 0) == KV_OK);
    kv_ticket_destroy(a);
    kv_session_destroy(x);
    kv_session_destroy(y);
}

TEST_CASE("async: a cancelled prefill stops at a chunk boundary and the session continues like an uncancelled one") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    Model model(rt, t.model_path);
    // A long prompt in chunks of 8: the prompt's tokens, repeated.
    std::vector<kv_token> prompt;
    while (prompt.size() < 240) prompt.insert(prompt.end(), t.prompt.begin() + 1, t.prompt.end());
    prompt.resize(240);
    prompt[0] = t.prompt[0];
    const uint32_t n_batch = 8;

    // The uncancelled run on a model of its own: no page of it is shared with the runs below.
    Model other(rt, t.model_path);
    kv_session* whole = make(other, 512, n_batch);
    ok(kv_prefill(whole, prompt.data(), uint32_t(prompt.size())));
    const std::vector<float> want_logits = logits(other, whole);
    const std::vector<kv_token> want = greedy(whole, 8);

    kv_session* s = make(model, 512, n_batch);
    kv_ticket* tk = nullptr;
    ok(kv_submit_prefill(s, prompt.data(), uint32_t(prompt.size()), nullptr, nullptr, &tk));
    ok(kv_session_cancel(s));
    const auto t0 = std::chrono::steady_clock::now();
    kv_status st = kv_ticket_wait(tk, UINT64_MAX);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    kv_ticket_destroy(tk);
    REQUIRE_MESSAGE(st == KV_CANCELLED, kv_status_string(st));
    kv_session_stats ss = stats(s);
    MESSAGE("cancelled after " << ss.n_tokens << " of " << prompt.size() << " tokens, " << ms << " ms after the request");
    CHECK(ss.n_tokens > 0);
    CHECK(ss.n_tokens < prompt.size());
    CHECK(ss.n_tokens % n_batch == 0);
    CHECK(ss.last_prefill_tokens == ss.n_tokens);
    // Usable where it stopped: its logits are those after its last token (the uncancelled run's
    // row there agrees), and feeding the rest continues exactly as the uncancelled prefill (the
    // same chunks: bit for bit).
    kv_session* part = make(other, 512, n_batch);
    std::vector<float> rows(size_t(ss.n_tokens) * model.n_vocab);
    ok(kv_session_eval(part, prompt.data(), ss.n_tokens, rows.data(), rows.size()));
    const std::vector<float> last_row(rows.end() - model.n_vocab, rows.end());
    CHECK(rel_l2(logits(model, s), last_row) < 1e-5);
    ok(kv_prefill(s, prompt.data() + ss.n_tokens, uint32_t(prompt.size() - ss.n_tokens)));
    CHECK(logits(model, s) == want_logits);
    CHECK(greedy(s, 8) == want);

    // A blocking prefill cancelled from another thread; a cancel with nothing running is a no-op
    // (the next call is not affected).
    ok(kv_session_reset(s));
    ok(kv_session_cancel(s));
    ok(kv_prefill(s, prompt.data(), uint32_t(prompt.size())));
    CHECK(stats(s).n_tokens == prompt.size());
    ok(kv_session_reset(s));
    std::atomic<bool> started{false};
    std::thread canceller([&] {
        while (!started.load()) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        kv_session_cancel(s);
    });
    started = true;
    st = kv_prefill(s, prompt.data(), uint32_t(prompt.size()));
    canceller.join();
    // Whether the request arrived before the last chunk depends on timing: either outcome must
    // leave a consistent session.
    CHECK((st == KV_CANCELLED || st == KV_OK));
    ss = stats(s);
    CHECK(ss.n_tokens == (st == KV_OK ? prompt.size() : ss.n_tokens));
    if (st == KV_CANCELLED)
        ok(kv_prefill(s, prompt.data() + ss.n_tokens, uint32_t(prompt.size() - ss.n_tokens)));
    CHECK(rel_l2(logits(model, s), want_logits) < 1e-5);
    CHECK(kv_session_cancel(nullptr) == KV_ERR_INVALID_ARGUMENT);
    for (kv_session* x : {whole, s, part}) kv_session_destroy(x);
}

TEST_CASE("threads: two threads hammering one session get only KV_ERR_BUSY and the session decodes the right tokens") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    Model model(rt, t.model_path);
    kv_session* s = make(model);
    ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));
    const int per_thread = 40;
    std::vector<std::vector<kv_status>> seen(2);
    std::atomic<int> steps{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i)
        threads.emplace_back([&, i] {
            for (int k = 0; k < per_thread; ++k) {
                kv_token tok;
                kv_status st = kv_decode_step(s, &tok);
                seen[i].push_back(st);
                if (st == KV_OK) ++steps;
                kv_session_stats ss{};
                ss.struct_size = sizeof ss;
                seen[i].push_back(kv_session_get_stats(s, &ss));
            }
        });
    for (auto& th : threads) th.join();
    int busy = 0;
    for (auto& v : seen)
        for (kv_status st : v) {
            CHECK((st == KV_OK || st == KV_ERR_BUSY));
            busy += st == KV_ERR_BUSY;
        }
    MESSAGE(steps.load() << " steps taken, " << busy << " calls answered KV_ERR_BUSY");
    CHECK(steps.load() > 0);
    // The session is intact: it holds exactly the greedy continuation of its steps.
    kv_session* ref = make(model);
    ok(kv_prefill(ref, t.prompt.data(), uint32_t(t.prompt.size())));
    greedy(ref, steps.load());
    CHECK(stats(s).n_tokens == stats(ref).n_tokens);
    CHECK(rel_l2(logits(model, s), logits(model, ref)) < 1e-5);
    CHECK(greedy(s, 4) == greedy(ref, 4));
    kv_session_destroy(s);
    kv_session_destroy(ref);
}

namespace {
struct QueueUse {
    kv_session* s = nullptr;
    std::thread decoder;
    std::atomic<bool> decoded{false};
    bool decoded_while_held = true;
    kv_status decode_status = KV_ERR_INTERNAL;
    VkResult submit = VK_ERROR_UNKNOWN;
    std::chrono::steady_clock::duration hold{};
};
}  // namespace

TEST_CASE("async: kv_runtime_use_queue holds kvulkan's queue lock: a decode started meanwhile submits after fn returns") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    kvtest::Trace t = kvtest::load_trace("stories260K.once-upon-a-time");
    Model model(rt, t.model_path);
    kv_session* s = make(model);
    ok(kv_prefill(s, t.prompt.data(), uint32_t(t.prompt.size())));

    CHECK(kv_runtime_use_queue(nullptr, [](void*, void*) {}, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(kv_runtime_use_queue(rt, nullptr, nullptr) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("fn") != std::string::npos);

    // How long a decode step takes here (lavapipe on a loaded machine: up to ~0.5 s): fn holds
    // the lock for three times that, so an unlocked decode would finish while fn still runs.
    auto t0 = std::chrono::steady_clock::now();
    greedy(s, 1);
    auto step = std::chrono::steady_clock::now() - t0;

    QueueUse u;
    u.s = s;
    u.hold = std::chrono::milliseconds(200) + 3 * step;
    // fn gets the runtime's real queue: submit to it (an empty batch), as a host does.
    ok(kv_runtime_use_queue(rt, [](void* queue, void* p) {
        auto* u = static_cast<QueueUse*>(p);
        u->decoder = std::thread([u] {
            kv_token tok;
            u->decode_status = kv_decode_step(u->s, &tok);
            u->decoded = true;
        });
        // While fn holds the lock, the decode must not get its vkQueueSubmit through.
        auto until = std::chrono::steady_clock::now() + u->hold;
        while (!u->decoded && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        u->decoded_while_held = u->decoded;
        u->submit = vkQueueSubmit(static_cast<VkQueue>(queue), 0, nullptr, VK_NULL_HANDLE);
    }, &u));
    u.decoder.join();
    CHECK_FALSE(u.decoded_while_held);
    CHECK(u.decoded);
    CHECK(u.decode_status == KV_OK);
    CHECK(u.submit == VK_SUCCESS);
    kv_session_destroy(s);
}
