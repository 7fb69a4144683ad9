// The architectures beyond llama/qwen2, end to end: random-weight fixtures written by kv-make-model
// at test time, GPU logits (F32 and F16 KV, a short and a long prompt, prefill then decode) against
// the float64 oracle tools/arch_oracle.py (numpy, written from the model definitions, sharing no
// code with src/), the CPU reference against the same oracle, and greedy generation through the
// cache equal to the no-cache recompute.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/runtime_fixture.h"
#include "model/gguf.h"
#include "reference/reference.h"

#ifndef KV_MAKE_MODEL
#error "KV_MAKE_MODEL (the kv-make-model program) must be defined by the build"
#endif
#ifndef KV_ARCH_ORACLE
#error "KV_ARCH_ORACLE (tools/arch_oracle.py) must be defined by the build"
#endif

namespace {

const char* python() { return kvtest::file_exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

// Skips (doctest MESSAGE "SKIPPED: ...") when numpy is not installed (scripts/deps.sh installs it).
bool require_numpy() {
    const std::string cmd = std::string(python()) + " -c 'import numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return true;
    MESSAGE("SKIPPED: numpy is not installed (python3-numpy): the float64 oracle needs it");
    return false;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kv-archs-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

void require_ok(kv_status s) { REQUIRE_MESSAGE(s == KV_OK, kv_status_string(s) << ": " << kv_last_error_message()); }

// Logits of every position of `ids` from the oracle: [ids.size()][n_vocab].
// n_ctx: the session's context (LongRoPE picks its factor table by it).
std::vector<float> oracle_logits(const std::string& model, const std::vector<int32_t>& ids, uint32_t n_vocab,
                                 uint32_t n_ctx, const std::string& dir) {
    std::string list;
    for (int32_t id : ids) list += std::to_string(id) + ",";
    const std::string out = dir + "/oracle.f32";
    const std::string cmd = std::string(python()) + " " + KV_ARCH_ORACLE + " '" + model + "' " + list + " '" + out + "' " + std::to_string(n_ctx);
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
    std::vector<uint8_t> bytes = kvtest::read_file(out);
    REQUIRE(bytes.size() == ids.size() * n_vocab * 4);
    std::vector<float> l(ids.size() * n_vocab);
    std::memcpy(l.data(), bytes.data(), bytes.size());
    return l;
}

struct Model {
    kv_model* m = nullptr;
    Model(kv_runtime* rt, const std::string& path, uint32_t page_size = 0) {
        kv_model_desc d = KV_MODEL_DESC_INIT;
        d.path = path.c_str();
        d.kv_page_size = page_size;
        require_ok(kv_model_load(rt, &d, &m));
    }
    ~Model() { kv_model_destroy(m); }
    uint32_t n_vocab() const {
        kv_model_info info{};
        info.struct_size = sizeof info;
        REQUIRE(kv_model_get_info(m, &info) == KV_OK);
        return info.n_vocab;
    }
};

struct Session {
    kv_session* s = nullptr;
    Session(kv_model* m, kv_cache_type type, uint32_t n_ctx, uint32_t flags = 0) {
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.cache_type = type;
        d.flags = flags;
        d.n_ctx = n_ctx;
        require_ok(kv_session_create(m, &d, &s));
    }
    ~Session() { kv_session_destroy(s); }
    std::vector<float> logits(uint32_t n_vocab) const {
        std::vector<float> l(n_vocab);
        require_ok(kv_session_logits(s, l.data(), n_vocab));
        return l;
    }
};

constexpr uint32_t kFollow = 3;  // tokens decoded one by one after each prompt

// Writes the fixture, then for a short and a long prompt (each followed by kFollow decoded
// tokens) holds the GPU (F32 and F16 KV) and the CPU reference to the oracle, for sessions of
// each context size in `contexts` (multiples of 16), then greedy generation with the cache to the
// no-cache recompute (the first context size) from the long prompt of the last context size: its
// pages are in the prefix cache then, which the cached session must not reuse when the sizes pick
// different LongRoPE tables.
void check_architecture(const std::string& arch, const std::string& args, std::vector<uint32_t> contexts = {128}) {
    if (!require_numpy()) return;
    TempDir dir;
    const std::string path = dir.path + "/" + arch + ".gguf";
    const std::string make = std::string(KV_MAKE_MODEL) + " -o '" + path + "' --arch " + arch + " " + args + " >/dev/null";
    REQUIRE_MESSAGE(std::system(make.c_str()) == 0, make);

    kvtest::Runtime rt;
    Model model(rt, path);
    const uint32_t V = model.n_vocab();
    auto file = kv::model::GgufFile::open(path);
    auto ref = kv::reference::ReferenceModel::load(*file);
    MESSAGE(arch << ": " << ref->config().summary());

    std::mt19937 rng(kvtest::fresh_seed());
    std::uniform_int_distribution<int32_t> tok(3, int32_t(V) - 1);
    std::vector<int32_t> long_prompt;
    for (uint32_t n_ctx : contexts) {
    for (uint32_t prompt_len : {5u, 40u}) {
        std::vector<int32_t> ids(prompt_len + kFollow);
        for (int32_t& t : ids) t = tok(rng);
        if (prompt_len == 40) long_prompt.assign(ids.begin(), ids.begin() + prompt_len);
        const std::vector<float> exact = oracle_logits(path, ids, V, n_ctx, dir.path);
        auto exact_row = [&](uint32_t pos) { return exact.data() + size_t(pos) * V; };

        // The CPU reference: float32 with double sums, ~1e-6 from float64.
        kv::reference::ReferenceSession rs(*ref, kv::model::GgmlType::F32, n_ctx);
        std::vector<float> r = rs.prefill(ids.data(), prompt_len);
        double ref_worst = kvtest::rel_l2(r.data(), exact_row(prompt_len - 1), V);
        for (uint32_t i = 0; i < kFollow; ++i) {
            r = rs.decode(ids[prompt_len + i]);
            ref_worst = std::max(ref_worst, kvtest::rel_l2(r.data(), exact_row(prompt_len + i), V));
        }

        double worst[2] = {0, 0};
        const kv_cache_type types[2] = {KV_CACHE_F32, KV_CACHE_F16};
        for (int t = 0; t < 2; ++t) {
            Session s(model.m, types[t], n_ctx);
            require_ok(kv_prefill(s.s, ids.data(), prompt_len));
            worst[t] = kvtest::rel_l2(s.logits(V).data(), exact_row(prompt_len - 1), V);
            for (uint32_t i = 0; i < kFollow; ++i) {
                require_ok(kv_prefill(s.s, &ids[prompt_len + i], 1));
                worst[t] = std::max(worst[t], kvtest::rel_l2(s.logits(V).data(), exact_row(prompt_len + i), V));
            }
        }
        MESSAGE(arch << ", n_ctx " << n_ctx << ", prompt " << prompt_len << " + " << kFollow << " decoded: rel L2 vs float64 oracle: GPU F32 KV "
                     << worst[0] << ", GPU F16 KV " << worst[1] << ", CPU reference " << ref_worst);
        CHECK(ref_worst <= 1e-5);
        CHECK(worst[0] <= 1e-4);
        CHECK(worst[1] <= 2e-3);
    }
    }

    // Greedy through the cache == greedy recomputing everything (F32 KV).
    Session cached(model.m, KV_CACHE_F32, contexts[0]), nocache(model.m, KV_CACHE_F32, contexts[0], KV_SESSION_NO_CACHE);
    require_ok(kv_prefill(cached.s, long_prompt.data(), uint32_t(long_prompt.size())));
    require_ok(kv_prefill(nocache.s, long_prompt.data(), uint32_t(long_prompt.size())));
    std::vector<int32_t> a, b;
    for (int step = 0; step < 12; ++step) {
        kv_token ta = -1, tb = -2;
        kv_status sa = kv_decode_step(cached.s, &ta), sb = kv_decode_step(nocache.s, &tb);
        REQUIRE((sa == KV_OK || sa == KV_END_OF_GENERATION));
        REQUIRE(sa == sb);
        a.push_back(ta);
        b.push_back(tb);
        if (sa == KV_END_OF_GENERATION) break;
    }
    std::string sa, sb;
    for (int32_t t : a) sa += std::to_string(t) + " ";
    for (int32_t t : b) sb += std::to_string(t) + " ";
    CHECK_MESSAGE(a == b, "cached: " << sa << "\nno cache: " << sb);
}

}  // namespace

// Q and K normalized per head before rope; 8 heads of 16 on n_embd 64 (q_dim 128, as Qwen3
// models have q_dim != n_embd); GQA 4; F16 weights. (Every fixture has head_dim 16 and F16 or Q8_0
// weights: fewer pipelines to compile on a cold shader cache.)
TEST_CASE("archs: qwen3 fixture vs float64 oracle, F32 and F16 KV, short and long prompts, cached greedy == no-cache") {
    check_architecture("qwen3", "--dim 64 --layers 2 --heads 8 --kv-heads 2 --head-dim 16 --ffn 128 --vocab 300 --type f16");
}

// Embeddings times sqrt(n_embd), GeGLU, norms after attention and feed-forward, attention and
// final logit soft-capping (small caps, so that they bend the logits), even layers windowed (8
// tokens: the long prompt runs past it), a tied output; Q8_0 weights.
TEST_CASE("archs: gemma2 fixture vs float64 oracle, F32 and F16 KV, short and long prompts, cached greedy == no-cache") {
    check_architecture("gemma2",
                       "--dim 64 --layers 4 --heads 4 --kv-heads 2 --head-dim 16 --ffn 128 --vocab 300 --window 8 "
                       "--attn-softcap 2 --final-softcap 2.5 --type q8_0");
}

// As gemma2 without attention soft-capping, plus per-head Q/K norms; five windowed layers then a
// global one, the windowed ones with rope base 10000 unscaled, the global one with the file's base
// (1e6) and linear scaling (8); MQA; F16 weights.
TEST_CASE("archs: gemma3 fixture vs float64 oracle, F32 and F16 KV, short and long prompts, cached greedy == no-cache") {
    check_architecture("gemma3",
                       "--dim 64 --layers 6 --heads 4 --kv-heads 1 --head-dim 16 --ffn 128 --vocab 300 --window 8 "
                       "--rope-base 1000000 --rope-scale 8 --type f16");
}

// Fused QKV and gate/up tensors, partial rope (8 of 16 dims) with LongRoPE factor tables and an
// attention factor: sessions of 128 tokens (over the original 64: the long table) and of 64 (the
// short one); a declared sliding window of 24 (the long prompt runs past it); Q8_0 weights.
TEST_CASE("archs: phi3 fixture vs float64 oracle, F32 and F16 KV, short and long prompts, both LongRoPE tables, cached greedy == no-cache") {
    check_architecture("phi3",
                       "--dim 64 --layers 2 --heads 4 --kv-heads 2 --n-rot 8 --ffn 128 --vocab 300 --ctx 256 "
                       "--longrope --ctx-orig 64 --attn-factor 1.19 --window 24 --type q8_0",
                       {128, 64});
}

// YaRN declared by the file (factor 4 over an original context of 16 tokens: the long prompt runs
// 2.7 times past it; the attention factor from the factor), on a qwen3 (NeoX pairs) and on a
// llama (adjacent pairs) fixture.
TEST_CASE("archs: YaRN rope scaling vs float64 oracle, qwen3 and llama fixtures, F32 and F16 KV, cached greedy == no-cache") {
    check_architecture("qwen3", "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 300 --yarn 4 --ctx-orig 16 --type f16");
    check_architecture("llama", "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 300 --yarn 4 --ctx-orig 16 --attn-factor 1.3 --type f16");
}

namespace {

kv_session_stats stats_of(kv_session* s) {
    kv_session_stats st{};
    st.struct_size = sizeof st;
    require_ok(kv_session_get_stats(s, &st));
    return st;
}

}  // namespace

// gemma2's windowed layers (window 8, pages of 4) keep their K/V in a page group of their own that
// lets go of what left the window (less 32 positions of slack for truncation): decoding far past
// it, that group's page count stays flat while the global layers' grows, the released pages are
// counted, and every step's logits and greedy token equal a no-cache recompute of the whole
// sequence (one kv_session_eval: nothing is released while one call runs, every layer masked
// over all its pages). Then fork, truncate, prefix sharing (a new session reuses the cached pages
// of both groups) and the refusals.
TEST_CASE("archs: gemma2 windowed layers release their pages as decode moves on, tokens equal a no-cache recompute") {
    TempDir dir;
    const std::string path = dir.path + "/gemma2.gguf";
    const std::string make = std::string(KV_MAKE_MODEL) + " -o '" + path +
                             "' --arch gemma2 --dim 64 --layers 4 --heads 4 --kv-heads 2 --head-dim 16 --ffn 128 "
                             "--vocab 300 --window 8 --attn-softcap 2 --final-softcap 2.5 --type q8_0 >/dev/null";
    REQUIRE_MESSAGE(std::system(make.c_str()) == 0, make);
    kvtest::Runtime rt;
    Model model(rt, path, 4);  // pages of 4 tokens: many pages leave the window in a short run
    const uint32_t V = model.n_vocab(), window = 8, slack = 32, n_decode = 100, n_prompt = 12;
    Session s(model.m, KV_CACHE_F32, 256);
    std::mt19937 rng(kvtest::fresh_seed());
    std::uniform_int_distribution<int32_t> tok(3, int32_t(V) - 1);
    std::vector<int32_t> seq(n_prompt);
    for (int32_t& t : seq) t = tok(rng);
    require_ok(kv_prefill(s.s, seq.data(), n_prompt));

    kv_session_stats st = stats_of(s.s);
    const uint32_t ps = st.page_size;
    REQUIRE(ps == 4);
    REQUIRE(st.window_layers == 2);  // layers 0 and 2
    // Resident after a call: the pages holding the last window + slack positions.
    const uint32_t bound = (window + slack + ps - 2) / ps + 1;
    const uint64_t layer_page_bytes = st.kv_bytes_per_token * ps / 4;  // one layer's K and V page
    uint32_t max_window_pages = 0;
    bool bytes_ok = true;
    std::vector<float> cached;  // the logits before each decoded token
    for (uint32_t step = 0; step < n_decode; ++step) {
        const std::vector<float> l = s.logits(V);
        cached.insert(cached.end(), l.begin(), l.end());
        kv_token t = -1;
        const kv_status ds = kv_decode_step(s.s, &t);
        REQUIRE((ds == KV_OK || ds == KV_END_OF_GENERATION));
        if (ds == KV_END_OF_GENERATION) require_ok(kv_prefill(s.s, &t, 1));  // go on past an end token
        seq.push_back(t);
        st = stats_of(s.s);
        max_window_pages = std::max(max_window_pages, st.window_layer_pages);
        bytes_ok = bytes_ok && st.kv_bytes == (uint64_t(st.pages) + st.window_layer_pages) * 2 * layer_page_bytes;
    }
    const uint32_t n = st.n_tokens;
    CHECK(n == n_prompt + n_decode);
    CHECK(st.pages == (n + ps - 1) / ps);  // the global layers keep every position
    CHECK(max_window_pages <= bound);
    CHECK(st.window_layer_pages_released + st.window_layer_pages == (n + ps - 1) / ps);
    CHECK(st.pages_released == 0);
    CHECK(bytes_ok);

    // Fork: parent and child go on alike (copy-on-write in both groups).
    kv_session* child = nullptr;
    require_ok(kv_session_fork(s.s, &child));
    for (int i = 0; i < 6; ++i) {
        const std::vector<float> l = s.logits(V);
        cached.insert(cached.end(), l.begin(), l.end());
        kv_token a = -1, c = -2;
        const kv_status sa = kv_decode_step(s.s, &a);
        REQUIRE(sa == KV_OK);
        REQUIRE(kv_decode_step(child, &c) == sa);
        CHECK(a == c);
        seq.push_back(a);
    }
    CHECK(stats_of(child).window_layer_pages <= bound);
    kv_session_destroy(child);

    // The recompute: every position's logits in one pass over the whole sequence.
    Session full(model.m, KV_CACHE_F32, 256, KV_SESSION_NO_CACHE);
    const uint32_t total = uint32_t(seq.size());
    std::vector<float> rows(size_t(total) * V);
    require_ok(kv_session_eval(full.s, seq.data(), total, rows.data(), rows.size()));
    double worst = 0;
    uint32_t token_mismatches = 0;
    for (uint32_t p = n_prompt; p < total; ++p) {
        const float* want = rows.data() + size_t(p - 1) * V;  // the logits after position p - 1
        worst = std::max(worst, kvtest::rel_l2(cached.data() + size_t(p - n_prompt) * V, want, V));
        if (int32_t(std::max_element(want, want + V) - want) != seq[p]) ++token_mismatches;
    }
    MESSAGE("gemma2, window " << window << " (+" << slack << " slack), pages of " << ps << ", " << total
                              << " tokens: windowed layers hold at most " << max_window_pages << " pages (bound "
                              << bound << "), released " << st.window_layer_pages_released << "; global layers hold "
                              << st.pages << "; worst rel L2 vs no-cache " << worst << ", greedy tokens differing "
                              << token_mismatches);
    CHECK(worst <= 1e-5);
    CHECK(token_mismatches == 0);

    // Truncate: recent positions can be dropped (the logits are then the recompute's); a cut whose
    // last token's window was released is refused, the session unchanged.
    CHECK(kv_session_truncate(s.s, 20) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("were released") != std::string::npos);
    CHECK(stats_of(s.s).n_tokens == total);
    require_ok(kv_session_truncate(s.s, total - slack));
    CHECK(kvtest::rel_l2(s.logits(V).data(), rows.data() + size_t(total - slack - 1) * V, V) <= 1e-5);

    // Prefix sharing: a new session with the same first 30 tokens reuses the whole pages of both
    // groups (the windowed group's are cached after their release) and equals the recompute.
    Session warm(model.m, KV_CACHE_F32, 256);
    require_ok(kv_prefill(warm.s, seq.data(), 30));
    st = stats_of(warm.s);
    CHECK(st.prefix_hit_tokens == 29 / ps * ps);
    CHECK(kvtest::rel_l2(warm.logits(V).data(), rows.data() + size_t(29) * V, V) <= 1e-5);
    // ... and it and a fork of it decode in one batched pass (each session's pages per layer) the
    // tokens that followed there (greedy ones, past the prompt).
    kv_session* twin = nullptr;
    require_ok(kv_session_fork(warm.s, &twin));
    for (uint32_t p = 30; p < 36; ++p) {
        kv_session* both[2] = {warm.s, twin};
        kv_token out[2] = {-1, -1};
        kv_status status[2] = {KV_ERR_INTERNAL, KV_ERR_INTERNAL};
        require_ok(kv_decode_batch(both, 2, out, status));
        CHECK(out[0] == seq[p]);
        CHECK(out[1] == seq[p]);
        CHECK(status[1] == status[0]);
        if (status[0] == KV_END_OF_GENERATION) {  // as above: the end token is fed
            require_ok(kv_prefill(warm.s, &out[0], 1));
            require_ok(kv_prefill(twin, &out[1], 1));
        } else {
            CHECK(status[0] == KV_OK);
        }
    }
    CHECK(stats_of(twin).window_layer_pages <= bound);
    kv_session_destroy(twin);
    // Speculative decoding with n-gram drafts of up to 40 tokens (more than the slack: the verify
    // pass's windowed pages stay until the rejected tokens are cut) gives the same greedy tokens.
    uint32_t at = 36, drafted_total = 0;
    std::vector<kv_token> spec(41);
    while (at < 80) {
        uint32_t n_out = 0, drafted = 0;
        const kv_status ss = kv_decode_speculative(warm.s, nullptr, 40, spec.data(), 41, &n_out, &drafted);
        REQUIRE_MESSAGE((ss == KV_OK || ss == KV_END_OF_GENERATION), kv_last_error_message());
        REQUIRE(n_out >= 1);
        for (uint32_t i = 0; i < n_out && at + i < seq.size(); ++i) CHECK(spec[i] == seq[at + i]);
        at += n_out;
        drafted_total += drafted;
        if (ss == KV_END_OF_GENERATION) require_ok(kv_prefill(warm.s, &spec[n_out - 1], 1));
    }
    CHECK(stats_of(warm.s).n_tokens == at);
    CHECK(stats_of(warm.s).window_layer_pages <= bound);
    MESSAGE("speculative (n-gram) on the two-group session: " << drafted_total << " tokens drafted up to position " << at);

    // Not yet: saving and offloading a two-group session say so.
    size_t size = 0;
    CHECK(kv_session_save(s.s, nullptr, &size) == KV_ERR_UNSUPPORTED);
    CHECK(std::string(kv_last_error_message()).find("cannot be saved") != std::string::npos);
    CHECK(kv_session_offload(s.s) == KV_ERR_UNSUPPORTED);
}
