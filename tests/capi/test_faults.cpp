// Fault injection (vk/fault_injection.h) through the public API: every device allocation and every
// queue submission of model load, session create, prefill, decode, fork, save and restore is made
// to fail in turn, and each time the call must return the status a real failure gives, with a
// message naming it, leave nothing half-made (no object returned, or the object unchanged and
// still decoding the same tokens), leak no device memory or KV pages, and leave a witness session
// decoding exactly the reference tokens. Device loss (at a submit, at a wait) must make every later
// call on the runtime's sessions report KV_ERR_DEVICE_LOST, and leave another runtime untouched.
// Host leaks are checked by running this file under ASan (tests/sanitizers/lsan.supp).
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "engine/runtime.h"  // test-only: the runtime's device, its fault injector and allocator
#include "vk/fault_injection.h"

namespace {

using kv::vk::FaultInjector;
using kv::vk::FaultPoint;
using kvtest::ok;

const char* kModel = "/models/fixtures/llama-gqa.f32.gguf";  // 2 layers, vocab 1024, 6.6 MB
// Prompts: A leaves its last KV page partly filled (page size 16), so the first write of a fork
// of it copies that page (copy-on-write); A + B spans two prefill chunks of n_batch 8.
const std::vector<kv_token> kPromptA = {1, 450, 496, 173, 701};
const std::vector<kv_token> kPromptB = {871, 975, 278, 366, 203, 889, 13, 3};
const std::vector<kv_token> kPromptW = {1, 318, 501, 263};  // the witness's
constexpr int kContinue = 3;                                   // tokens checked after a failure

kv_session_desc session_desc() {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.cache_type = KV_CACHE_F32;
    d.n_ctx = 64;
    d.n_batch = 8;
    return d;
}

kv_session* new_session(kv_model* m, kv_cache_type type = KV_CACHE_F32) {
    kv_session_desc d = session_desc();
    d.cache_type = type;
    kv_session* s = nullptr;
    ok(kv_session_create(m, &d, &s));
    return s;
}

std::vector<kv_token> greedy(kv_session* s, int n) {
    std::vector<kv_token> out;
    for (int i = 0; i < n; ++i) {
        kv_token t = -1;
        ok(kv_decode_step(s, &t));
        out.push_back(t);
    }
    return out;
}

uint32_t n_tokens(kv_session* s) {
    kv_session_stats st{};
    st.struct_size = sizeof st;
    ok(kv_session_get_stats(s, &st));
    return st.n_tokens;
}

uint32_t pages_in_use(kv_model* m) {
    kv_cache_stats st{};
    st.struct_size = sizeof st;
    ok(kv_model_get_cache_stats(m, KV_CACHE_F32, &st));
    return st.pages_in_use;
}

constexpr uint32_t kPoolTokens = 512;

kv_model* load_model(kv_runtime* rt, const std::string& path) {
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.path = path.c_str();
    d.kv_pool_tokens = kPoolTokens;
    kv_model* m = nullptr;
    ok(kv_model_load(rt, &d, &m));
    return m;
}

FaultInjector& faults(kv_runtime* rt) { return rt->device->faults(); }
uint32_t device_allocations(kv_runtime* rt) { return rt->allocator->stats().allocation_count; }

// A session created before the faults, decoding on and compared with a reference run after each.
struct Witness {
    kv_model* model;
    kv_session* s = nullptr;
    std::vector<kv_token> ref;
    size_t next = 0;
    explicit Witness(kv_model* m) : model(m) {
        kv_session* r = new_session(m);
        ok(kv_prefill(r, kPromptW.data(), uint32_t(kPromptW.size())));
        ref = greedy(r, 16);
        kv_session_destroy(r);
        s = new_session(m);
        restart();
    }
    ~Witness() { kv_session_destroy(s); }
    void restart() {
        ok(kv_session_reset(s));
        ok(kv_prefill(s, kPromptW.data(), uint32_t(kPromptW.size())));
        next = 0;
    }
    // One more token, which must be the reference's.
    void check() {
        if (next == ref.size()) restart();
        kv_token t = -1;
        ok(kv_decode_step(s, &t));
        REQUIRE_MESSAGE(t == ref[next], "the witness session diverged at token " << next);
        ++next;
    }
};

// One operation walked over its failure points. `prepare` makes what the operation needs (not
// under injection); `run` is the operation; `failed` checks what a failed run left behind (given
// its status); `cleanup` destroys what prepare and run made.
struct Operation {
    const char* name;
    std::function<void()> prepare;
    std::function<kv_status()> run;
    std::function<void()> succeeded;
    std::function<void()> failed;
    std::function<void()> cleanup;
};

struct Counts {
    uint64_t allocations = 0, submits = 0;
};

// Runs `op` once counting its events, then fails each allocation and each submit in turn.
Counts walk(kv_runtime* rt, kv_model* pool_model, Witness& witness, const Operation& op) {
    FaultInjector& inj = faults(rt);
    const uint32_t allocs0 = device_allocations(rt);
    const uint32_t pages0 = pages_in_use(pool_model);
    op.prepare();
    inj.count();
    kv_status st = op.run();
    inj.disarm();
    REQUIRE_MESSAGE(st == KV_OK, op.name << ": " << kv_status_string(st) << ": " << kv_last_error_message());
    Counts c{inj.events(FaultPoint::Allocation), inj.events(FaultPoint::Submit)};
    op.succeeded();
    op.cleanup();
    REQUIRE(device_allocations(rt) == allocs0);
    REQUIRE(pages_in_use(pool_model) == pages0);

    for (FaultPoint point : {FaultPoint::Allocation, FaultPoint::Submit}) {
        const uint64_t n_points = point == FaultPoint::Allocation ? c.allocations : c.submits;
        const char* what = point == FaultPoint::Allocation ? "allocation" : "submit";
        for (uint64_t n = 1; n <= n_points; ++n) {
            const std::string op_name = op.name;
            CAPTURE(op_name);
            const std::string point_name = what;
            CAPTURE(point_name);
            CAPTURE(n);
            const uint32_t pages_before = pages_in_use(pool_model);  // the witness grows between points
            op.prepare();
            inj.arm(point, n, VK_ERROR_OUT_OF_DEVICE_MEMORY);
            st = op.run();
            inj.disarm();
            REQUIRE(inj.fired());
            REQUIRE_MESSAGE(st == KV_ERR_OUT_OF_DEVICE_MEMORY, kv_status_string(st) << ": " << kv_last_error_message());
            const std::string msg = kv_last_error_message();
            CHECK_MESSAGE(msg.find("VK_ERROR_OUT_OF_DEVICE_MEMORY") != std::string::npos, msg);
            CHECK_MESSAGE(msg.find(point == FaultPoint::Allocation ? "vkAllocateMemory" : "vkQueueSubmit") !=
                              std::string::npos,
                          msg);
            op.failed();
            op.cleanup();
            REQUIRE(device_allocations(rt) == allocs0);
            REQUIRE(pages_in_use(pool_model) == pages_before);
            witness.check();
        }
    }
    MESSAGE(std::string(op.name) << ": " << c.allocations << " allocation + " << c.submits
                    << " submit failure points walked");
    return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("faults: every allocation and submit of load, create, prefill, decode, fork, save, restore") {
    if (!kvtest::require_shared()) return;
    auto t0 = std::chrono::steady_clock::now();
    const std::string path = kvtest::shared_dir() + kModel;
    kvtest::Runtime rt;
    kvtest::Model owner(rt, path, kPoolTokens);
    kv_model* model = owner.m;
    Witness witness(model);

    // Reference continuations of A, and the template every victim is forked from.
    std::vector<kv_token> ref_a;
    {
        kv_session* r = new_session(model);
        ok(kv_prefill(r, kPromptA.data(), uint32_t(kPromptA.size())));
        ref_a = greedy(r, kContinue);
        kv_session_destroy(r);
    }
    kv_session* tmpl = new_session(model);
    ok(kv_prefill(tmpl, kPromptA.data(), uint32_t(kPromptA.size())));
    // A session unchanged by a failed call: same length, decodes A's continuation (on a fork, so
    // the session itself stays as it was).
    auto check_holds_a = [&](kv_session* s) {
        CHECK(n_tokens(s) == kPromptA.size());
        kv_session* f = nullptr;
        ok(kv_session_fork(s, &f));
        CHECK(greedy(f, kContinue) == ref_a);
        kv_session_destroy(f);
    };

    kv_session* victim = nullptr;
    kv_model* out_model = nullptr;
    kv_session* out_session = nullptr;
    auto destroy_outputs = [&] {
        kv_session_destroy(out_session);
        out_session = nullptr;
        kv_session_destroy(victim);
        victim = nullptr;
    };
    auto fork_victim = [&] { ok(kv_session_fork(tmpl, &victim)); };
    std::vector<uint8_t> image;
    {
        size_t size = 0;
        REQUIRE(kv_session_save(tmpl, nullptr, &size) == KV_INCOMPLETE);
        image.resize(size);
        ok(kv_session_save(tmpl, image.data(), &size));
    }
    std::vector<uint8_t> save_buf(image.size());
    kv_token out_token = -1;

    const std::vector<Operation> ops = {
        {"model load", [] {},
         [&] {
             kv_model_desc d = KV_MODEL_DESC_INIT;
             d.path = path.c_str();
             d.kv_pool_tokens = kPoolTokens;
             return kv_model_load(rt, &d, &out_model);
         },
         [&] { CHECK(out_model != nullptr); }, [&] { CHECK(out_model == nullptr); },
         [&] {
             kv_model_destroy(out_model);
             out_model = nullptr;
         }},
        {"session create", [] {},
         [&] {
             kv_session_desc d = session_desc();
             return kv_session_create(model, &d, &out_session);
         },
         [&] { CHECK(out_session != nullptr); }, [&] { CHECK(out_session == nullptr); }, destroy_outputs},
        // The first session of a cache type also makes the model's KV page pool of that type.
        {"session create (new page pool)", [&] { out_model = load_model(rt, path); },
         [&] {
             kv_session_desc d = session_desc();
             d.cache_type = KV_CACHE_F16;
             return kv_session_create(out_model, &d, &out_session);
         },
         [&] { CHECK(out_session != nullptr); }, [&] { CHECK(out_session == nullptr); },
         [&] {
             destroy_outputs();
             kv_model_destroy(out_model);
             out_model = nullptr;
         }},
        // Into a fork of A (copy-on-write of A's last page), in two chunks.
        {"prefill", fork_victim,
         [&] {
             std::vector<kv_token> b = kPromptB;
             b.insert(b.end(), kPromptB.begin(), kPromptB.end());
             return kv_prefill(victim, b.data(), uint32_t(b.size()));
         },
         [&] { CHECK(n_tokens(victim) == kPromptA.size() + 2 * kPromptB.size()); },
         [&] { check_holds_a(victim); }, destroy_outputs},
        {"decode step", fork_victim,
         [&] {
             out_token = -1;
             return kv_decode_step(victim, &out_token);
         },
         [&] { CHECK(out_token == ref_a[0]); },
         [&] {
             CHECK_MESSAGE(out_token == -1, "a failed decode step wrote its out_token");
             check_holds_a(victim);
         },
         destroy_outputs},
        {"fork", [] {}, [&] { return kv_session_fork(tmpl, &out_session); },
         [&] { CHECK(greedy(out_session, kContinue) == ref_a); },
         [&] {
             CHECK(out_session == nullptr);
             check_holds_a(tmpl);
         },
         destroy_outputs},
        {"save", [] {},
         [&] {
             size_t size = save_buf.size();
             return kv_session_save(tmpl, save_buf.data(), &size);
         },
         [&] { CHECK(save_buf == image); }, [&] { check_holds_a(tmpl); }, [] {}},
        {"restore", [] {}, [&] { return kv_session_load(model, image.data(), image.size(), &out_session); },
         [&] { CHECK(greedy(out_session, kContinue) == ref_a); }, [&] { CHECK(out_session == nullptr); },
         destroy_outputs},
    };
    uint64_t total = 0;
    for (const Operation& op : ops) {
        Counts c = walk(rt, model, witness, op);
        total += c.allocations + c.submits;
        if (std::string(op.name) == "prefill" || std::string(op.name) == "decode step")
            CHECK(c.submits > 0);  // the walk really reaches the GPU passes
    }
    check_holds_a(tmpl);
    kv_session_destroy(tmpl);
    MESSAGE("fault injection: " << total << " failure points walked in " << seconds_since(t0) << " s");
    CHECK(total > 0);
}

TEST_CASE("faults: device loss at a submit or a wait: every later call reports it, another runtime runs on") {
    if (!kvtest::require_shared()) return;
    const std::string path = kvtest::shared_dir() + kModel;
    kvtest::Runtime healthy;
    kvtest::Model healthy_model(healthy, path, kPoolTokens);
    Witness witness(healthy_model.m);
    int walked = 0;

    struct Case {
        FaultPoint point;
        uint64_t n;
        bool decode;  // the lost call: a decode step (else a prefill)
    };
    // A decode step submits twice (2 layers: a part after layer 0, then the rest); a prefill of A
    // waits for two parts.
    for (Case c : {Case{FaultPoint::Submit, 1, true}, Case{FaultPoint::Submit, 2, true},
                   Case{FaultPoint::Wait, 1, false}, Case{FaultPoint::Wait, 2, false}}) {
        CAPTURE(int(c.point));
        CAPTURE(c.n);
        kvtest::Runtime lost;
        kv_model* model = load_model(lost, path);
        kv_session* a = new_session(model);
        kv_session* b = new_session(model);
        ok(kv_prefill(a, kPromptA.data(), uint32_t(kPromptA.size())));
        ok(kv_prefill(b, kPromptW.data(), uint32_t(kPromptW.size())));

        faults(lost).arm(c.point, c.n, VK_ERROR_DEVICE_LOST);
        kv_token t = -1;
        kv_status st = c.decode ? kv_decode_step(a, &t) : kv_prefill(a, kPromptB.data(), uint32_t(kPromptB.size()));
        faults(lost).disarm();
        REQUIRE(faults(lost).fired());
        CHECK(st == KV_ERR_DEVICE_LOST);
        CHECK_MESSAGE(std::string(kv_last_error_message()).find("lost") != std::string::npos, kv_last_error_message());
        ++walked;

        // Every later call on the runtime's sessions reports the loss, the untouched one too.
        std::vector<float> logits(1024);
        size_t size = 0;
        for (kv_session* s : {a, b}) {
            CHECK(kv_decode_step(s, &t) == KV_ERR_DEVICE_LOST);
            CHECK(std::string(kv_last_error_message()).find("lost") != std::string::npos);
            CHECK(kv_prefill(s, kPromptB.data(), uint32_t(kPromptB.size())) == KV_ERR_DEVICE_LOST);
            CHECK(kv_session_eval(s, kPromptB.data(), 1, nullptr, 0) == KV_ERR_DEVICE_LOST);
            CHECK(kv_session_logits(s, logits.data(), uint32_t(logits.size())) == KV_ERR_DEVICE_LOST);
            CHECK(kv_session_truncate(s, 1) == KV_ERR_DEVICE_LOST);
            CHECK(kv_session_reset(s) == KV_ERR_DEVICE_LOST);
            kv_session* child = nullptr;
            CHECK(kv_session_fork(s, &child) == KV_ERR_DEVICE_LOST);
            CHECK(child == nullptr);
            CHECK(kv_session_save(s, nullptr, &size) == KV_ERR_DEVICE_LOST);
        }
        // New sessions of the lost runtime are refused as well.
        kv_session* fresh = nullptr;
        kv_session_desc d = session_desc();
        CHECK(kv_session_create(model, &d, &fresh) == KV_ERR_DEVICE_LOST);
        CHECK(fresh == nullptr);
        kv_session_destroy(fresh);
        kv_model* another = nullptr;
        kv_model_desc md = KV_MODEL_DESC_INIT;
        md.path = path.c_str();
        CHECK(kv_model_load(lost, &md, &another) == KV_ERR_DEVICE_LOST);
        CHECK(another == nullptr);
        kv_model_destroy(another);
        // Destroying everything still works (ASan: nothing leaks).
        kv_session_destroy(a);
        kv_session_destroy(b);
        kv_model_destroy(model);

        // The other runtime never noticed.
        for (int i = 0; i < 2; ++i) witness.check();
    }
    MESSAGE("device loss: " << walked << " failure points walked");
}
