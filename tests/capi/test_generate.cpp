// kv_generate: streaming text with stop strings on top of kv_decode_step. The text equals the
// pieces of a plain kv_decode_step loop; a stop string spanning two tokens is found and never
// delivered; characters whose bytes come in separate byte-fallback tokens are delivered whole (a
// model built here whose greedy output is a fixed chain of tokens, with Llama 2's byte-fallback
// tokens);
// end of generation, a full context, a callback that stops, and bad arguments.
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"
#include "model/gguf.h"

namespace {

using kvtest::Model;
using kvtest::ok;
using kvtest::Session;

const std::vector<kv_token> kPrompt = {1, 403, 407, 261, 378};  // stories260K: "Once upon a time"

std::string stories_path() { return kvtest::shared_dir() + "/models/stories260K/stories260K.gguf"; }

std::string piece(const kv_model* m, kv_token t) {
    char buf[256];
    size_t len = sizeof buf;
    ok(kv_token_to_piece(m, t, buf, &len));
    return std::string(buf, len);
}

// What a plain kv_decode_step loop gives: the tokens (up to n or end of generation) and pieces.
struct Plain {
    std::vector<kv_token> tokens;
    std::vector<std::string> pieces;
    std::string text() const {
        std::string s;
        for (const auto& p : pieces) s += p;
        return s;
    }
};

Plain plain_run(const Model& m, const std::vector<kv_token>& prompt, uint32_t n, uint32_t n_ctx = 512) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.n_ctx = n_ctx;
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, &d, &s));
    Session owner(s, m);
    owner.prefill(prompt);
    Plain p;
    for (uint32_t i = 0; i < n; ++i) {
        kv_token t = -1;
        const kv_status st = kv_decode_step(s, &t);
        if (st == KV_END_OF_GENERATION || st == KV_ERR_CONTEXT_FULL) break;
        ok(st);
        p.tokens.push_back(t);
        p.pieces.push_back(piece(m.m, t));
    }
    return p;
}

// The callback side: every piece received, and an optional stop after `stop_after` pieces.
struct Sink {
    std::vector<std::string> pieces;
    size_t stop_after = 0;  // 0: never
    std::string text() const {
        std::string s;
        for (const auto& p : pieces) s += p;
        return s;
    }
    static int on_piece(void* user, const char* text, size_t len) {
        auto* self = static_cast<Sink*>(user);
        CHECK(len > 0);
        self->pieces.emplace_back(text, len);
        return self->stop_after && self->pieces.size() >= self->stop_after ? 1 : 0;
    }
};

struct Generated {
    kv_status status;
    kv_generate_result result;
    Sink sink;
};

Generated generate(kv_session* s, uint32_t max_tokens, const std::vector<const char*>& stops = {},
                   size_t stop_after = 0) {
    Generated g;
    g.sink.stop_after = stop_after;
    kv_generate_desc d = KV_GENERATE_DESC_INIT;
    d.max_tokens = max_tokens;
    d.stop_strings = stops.empty() ? nullptr : stops.data();
    d.n_stop_strings = uint32_t(stops.size());
    d.on_piece = &Sink::on_piece;
    d.user_data = &g.sink;
    g.result = {};
    g.result.struct_size = sizeof g.result;
    g.status = kv_generate(s, &d, &g.result);
    return g;
}

kv_session* new_session(const Model& m, uint32_t n_ctx = 512) {
    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.n_ctx = n_ctx;
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, &d, &s));
    return s;
}

// True when every byte sequence in s is a complete, well-formed UTF-8 character.
bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

// A one-layer Llama with a cut of the Llama 2 vocabulary (its first 259 tokens: <unk>, <s>, </s>
// and the 256 byte-fallback tokens <0x00>..<0xFF>, then the words the chain needs, with their
// scores and types) whose greedy output follows a fixed chain of tokens: attention and FFN
// outputs are zero, so the last hidden state is the embedding of the current token; chain token k
// embeds as the unit vector e_k and the output row of its successor is 10 e_k, so its logit is the
// only non-zero one.
struct ChainModel {
    std::vector<uint8_t> gguf;
    std::vector<kv_token> chain;  // chain[0] is the prompt; the model then emits chain[1..]
};

ChainModel build_chain_model(const std::vector<std::string>& chain_texts) {
    auto llama = kv::model::GgufFile::open(kvtest::shared_dir() + "/models/llama-2-tiny-random/llama-2-tiny-random.gguf");
    auto all_tokens = llama->get_string_array("tokenizer.ggml.tokens");
    auto all_scores = llama->get_float_array("tokenizer.ggml.scores");
    auto all_types = llama->get_int_array("tokenizer.ggml.token_type");
    REQUIRE(all_tokens);
    REQUIRE(all_scores);
    REQUIRE(all_types);
    std::vector<size_t> keep;
    for (size_t i = 0; i < 259; ++i) keep.push_back(i);
    ChainModel cm;
    for (const auto& t : chain_texts) {
        auto it = std::find(all_tokens->begin(), all_tokens->end(), t);
        REQUIRE_MESSAGE(it != all_tokens->end(), "no token " << t);
        size_t id = size_t(it - all_tokens->begin());
        auto at = std::find(keep.begin(), keep.end(), id);
        if (at == keep.end()) {
            keep.push_back(id);
            at = keep.end() - 1;
        }
        cm.chain.push_back(kv_token(at - keep.begin()));
    }
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (size_t id : keep) {
        tokens.emplace_back((*all_tokens)[id]);
        scores.push_back((*all_scores)[id]);
        types.push_back(int32_t((*all_types)[id]));
    }
    // Shaped like stories260K (dim 64, 8 heads, 4 KV heads, FFN 172), so it needs no pipeline
    // the other tests do not compile anyway.
    const uint64_t E = 64, V = tokens.size(), F = 172, H = 8, HKV = 4;
    REQUIRE(cm.chain.size() <= E);
    kv::model::GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "chain");
    w.set_u32("llama.context_length", 256);
    w.set_u32("llama.embedding_length", uint32_t(E));
    w.set_u32("llama.block_count", 1);
    w.set_u32("llama.feed_forward_length", uint32_t(F));
    w.set_u32("llama.attention.head_count", uint32_t(H));
    w.set_u32("llama.attention.head_count_kv", uint32_t(HKV));
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_f32("llama.rope.freq_base", 10000.f);
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    w.set_array_f32("tokenizer.ggml.scores", scores);
    w.set_array_i32("tokenizer.ggml.token_type", types);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    const uint64_t KV = E / H * HKV;
    std::vector<float> embd(E * V, 0.f), out(E * V, 0.f), ones(E, 1.f), zero_ee(E * E, 0.f), zero_ekv(E * KV, 0.f),
        zero_ef(E * F, 0.f);
    for (size_t k = 0; k + 1 < cm.chain.size(); ++k) {
        embd[size_t(cm.chain[k]) * E + k] = 1.f;
        out[size_t(cm.chain[k + 1]) * E + k] = 10.f;
    }
    using kv::model::GgmlType;
    w.add_tensor_f32("token_embd.weight", GgmlType::F32, {E, V}, embd.data());
    w.add_tensor_f32("output_norm.weight", GgmlType::F32, {E}, ones.data());
    w.add_tensor_f32("output.weight", GgmlType::F32, {E, V}, out.data());
    w.add_tensor_f32("blk.0.attn_norm.weight", GgmlType::F32, {E}, ones.data());
    w.add_tensor_f32("blk.0.attn_q.weight", GgmlType::F32, {E, E}, zero_ee.data());
    w.add_tensor_f32("blk.0.attn_k.weight", GgmlType::F32, {E, KV}, zero_ekv.data());
    w.add_tensor_f32("blk.0.attn_v.weight", GgmlType::F32, {E, KV}, zero_ekv.data());
    w.add_tensor_f32("blk.0.attn_output.weight", GgmlType::F32, {E, E}, zero_ee.data());
    w.add_tensor_f32("blk.0.ffn_norm.weight", GgmlType::F32, {E}, ones.data());
    w.add_tensor_f32("blk.0.ffn_gate.weight", GgmlType::F32, {E, F}, zero_ef.data());
    w.add_tensor_f32("blk.0.ffn_up.weight", GgmlType::F32, {E, F}, zero_ef.data());
    w.add_tensor_f32("blk.0.ffn_down.weight", GgmlType::F32, {F, E}, zero_ef.data());
    cm.gguf = w.to_bytes();
    return cm;
}

struct LoadedChain {
    kv_model* m = nullptr;
    std::vector<kv_token> chain;
    LoadedChain(kv_runtime* rt, const std::vector<std::string>& texts) {
        ChainModel cm = build_chain_model(texts);
        chain = cm.chain;
        kv_model_desc d = KV_MODEL_DESC_INIT;
        d.data = cm.gguf.data();
        d.size = cm.gguf.size();
        d.copy_data = 1;
        ok(kv_model_load(rt, &d, &m));
    }
    ~LoadedChain() { kv_model_destroy(m); }
};

// "€ x😀 yé" with every multi-byte character split into its byte tokens, then end of generation.
const std::vector<std::string> kChainTexts = {"▁The", "<0xE2>", "<0x82>", "<0xAC>", "▁x", "<0xF0>", "<0x9F>",
                                              "<0x98>", "<0x80>", "▁y", "<0xC3>", "<0xA9>", "</s>"};
const std::string kChainText = "\xE2\x82\xAC x\xF0\x9F\x98\x80 y\xC3\xA9";

}  // namespace

TEST_CASE("generate: the text equals the pieces of a plain decode-step loop") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    const uint32_t n = 16;
    Plain more = plain_run(m, kPrompt, n + 4);
    REQUIRE(more.tokens.size() == n + 4);  // stories260K does not end this early
    Plain plain = more;
    plain.tokens.resize(n);
    plain.pieces.resize(n);
    REQUIRE(plain.text().rfind(", there was a little girl named Lily.", 0) == 0);

    kv_session* s = new_session(m);
    Session owner(s, m);
    owner.prefill(kPrompt);
    Generated g = generate(s, n);
    ok(g.status);
    CHECK(g.result.stop_reason == KV_GENERATE_STOP_MAX_TOKENS);
    CHECK(g.result.n_tokens == n);
    CHECK(g.result.stop_string == -1);
    CHECK(g.result.last_token == plain.tokens.back());
    CHECK(g.sink.text() == plain.text());
    CHECK(g.result.n_bytes == plain.text().size());
    // ASCII text, no stop strings: nothing to hold back, one piece per token with text.
    CHECK(g.sink.pieces.size() == size_t(std::count_if(plain.pieces.begin(), plain.pieces.end(),
                                                       [](const std::string& p) { return !p.empty(); })));
    CHECK(owner.stats().n_tokens == kPrompt.size() + n);
    // The session goes on exactly where the plain loop would.
    CHECK(owner.greedy(4) == std::vector<kv_token>(more.tokens.begin() + n, more.tokens.end()));
}

TEST_CASE("generate: a stop string spanning two tokens is found and never delivered") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    const uint32_t n = 16;
    Plain plain = plain_run(m, kPrompt, n);
    const std::string text = plain.text();
    // The first token boundary whose 2 + 2 surrounding characters occur nowhere earlier in the text.
    std::string stop;
    size_t boundary = 0, i_first = 0;  // stop begins 2 bytes before `boundary`; token i_first + 1 completes it
    for (size_t i = 0, at = 0; i + 1 < plain.pieces.size(); ++i) {
        at += plain.pieces[i].size();
        if (plain.pieces[i].size() < 2 || plain.pieces[i + 1].size() < 2) continue;
        std::string cand = plain.pieces[i].substr(plain.pieces[i].size() - 2) + plain.pieces[i + 1].substr(0, 2);
        if (text.find(cand) == at - 2) {
            stop = cand;
            boundary = at;
            i_first = i;
            break;
        }
    }
    REQUIRE_MESSAGE(!stop.empty(), "no usable token boundary in: " << text);
    INFO("stop string '" << stop << "' at byte " << boundary - 2);

    kv_session* s = new_session(m);
    Session owner(s, m);
    owner.prefill(kPrompt);
    Generated g = generate(s, n, {"never in this text", stop.c_str()});
    ok(g.status);
    CHECK(g.result.stop_reason == KV_GENERATE_STOP_STRING);
    CHECK(g.result.stop_string == 1);
    CHECK(g.sink.text() == text.substr(0, boundary - 2));
    // Every token sampled stays in the session, the two that make up the stop string included.
    CHECK(g.result.n_tokens == i_first + 2);
    CHECK(g.result.last_token == plain.tokens[i_first + 1]);
    CHECK(owner.stats().n_tokens == kPrompt.size() + i_first + 2);
    // A stop string that starts matching and then fails is delivered in full.
    kv_session* s2 = new_session(m);
    Session owner2(s2, m);
    owner2.prefill(kPrompt);
    const std::string almost = stop + "\x01";
    Generated g2 = generate(s2, n, {almost.c_str()});
    ok(g2.status);
    CHECK(g2.result.stop_reason == KV_GENERATE_STOP_MAX_TOKENS);
    CHECK(g2.sink.text() == text);
}

TEST_CASE("generate: characters split across byte tokens are delivered whole") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    LoadedChain m(rt, kChainTexts);
    // The chain model emits its chain through kv_decode_step (a check of the model itself).
    {
        kv_session* s = nullptr;
        ok(kv_session_create(m.m, nullptr, &s));
        ok(kv_prefill(s, m.chain.data(), 1));
        for (size_t k = 1; k + 1 < m.chain.size(); ++k) {
            kv_token t = -1;
            ok(kv_decode_step(s, &t));
            REQUIRE(t == m.chain[k]);
        }
        kv_token t = -1;
        CHECK(kv_decode_step(s, &t) == KV_END_OF_GENERATION);
        CHECK(t == m.chain.back());
        kv_session_destroy(s);
    }
    kv_session* s = nullptr;
    ok(kv_session_create(m.m, nullptr, &s));
    ok(kv_prefill(s, m.chain.data(), 1));
    Sink sink;
    kv_generate_desc d = KV_GENERATE_DESC_INIT;
    d.on_piece = &Sink::on_piece;
    d.user_data = &sink;
    kv_generate_result r{};
    r.struct_size = sizeof r;
    ok(kv_generate(s, &d, &r));
    CHECK(r.stop_reason == KV_GENERATE_STOP_END_OF_GENERATION);
    CHECK(r.last_token == m.chain.back());  // </s>: sampled, not appended
    CHECK(r.n_tokens == m.chain.size() - 2);
    CHECK(sink.text() == kChainText);
    // One piece per character or word: "€", " x", "😀", " y", "é" — none cut inside a character.
    CHECK(sink.pieces == std::vector<std::string>{"\xE2\x82\xAC", " x", "\xF0\x9F\x98\x80", " y", "\xC3\xA9"});
    for (const auto& p : sink.pieces) CHECK(valid_utf8(p));

    // A stop string made of the two bytes of "é" (two tokens), and one inside "😀" (bytes 2..3).
    for (auto [stop, want] : {std::pair<std::string, std::string>{"\xC3\xA9", "\xE2\x82\xAC x\xF0\x9F\x98\x80 y"},
                              {"\x9F\x98", "\xE2\x82\xAC x\xF0"}}) {
        ok(kv_session_reset(s));
        ok(kv_prefill(s, m.chain.data(), 1));
        sink = {};
        const char* stops[] = {stop.c_str()};
        d.stop_strings = stops;
        d.n_stop_strings = 1;
        ok(kv_generate(s, &d, &r));
        CHECK(r.stop_reason == KV_GENERATE_STOP_STRING);
        CHECK(sink.text() == want);
    }
    kv_session_destroy(s);
}

TEST_CASE("generate: a callback that stops, a full context, and calls that continue") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    const uint32_t n = 16;
    Plain plain = plain_run(m, kPrompt, n);

    kv_session* s = new_session(m);
    Session owner(s, m);
    owner.prefill(kPrompt);
    Generated g = generate(s, n, {}, 3);  // stop after the third piece
    ok(g.status);
    CHECK(g.result.stop_reason == KV_GENERATE_STOP_CALLBACK);
    CHECK(g.sink.pieces.size() == 3);
    const uint32_t done = g.result.n_tokens;
    CHECK(done >= 3);
    CHECK(owner.stats().n_tokens == kPrompt.size() + done);
    // A second call continues the same sequence.
    Generated rest = generate(s, n - done);
    ok(rest.status);
    CHECK(rest.result.n_tokens == n - done);
    CHECK(g.sink.text() + rest.sink.text() == plain.text());

    // A full context ends generation with KV_OK and the reason; the session is intact.
    kv_session* small = new_session(m, 16);
    Session owner_small(small, m);
    owner_small.prefill(kPrompt);
    Generated full = generate(small, 0);  // 0: no limit
    ok(full.status);
    CHECK(std::string(kv_last_error_message()).empty());
    CHECK(full.result.stop_reason == KV_GENERATE_STOP_CONTEXT_FULL);
    CHECK(full.result.n_tokens == 16 - kPrompt.size());
    Plain plain_small = plain_run(m, kPrompt, 16 - uint32_t(kPrompt.size()));
    CHECK(full.sink.text() == plain_small.text());
    CHECK(owner_small.stats().n_tokens == 16);
    // No callback and no result: generation still runs.
    ok(kv_session_truncate(small, uint32_t(kPrompt.size())));
    kv_generate_desc quiet = KV_GENERATE_DESC_INIT;
    quiet.max_tokens = 3;
    ok(kv_generate(small, &quiet, nullptr));
    CHECK(owner_small.stats().n_tokens == kPrompt.size() + 3);
}

TEST_CASE("generate: bad arguments are rejected and nothing is generated") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    Model m(rt, stories_path());
    kv_session* s = new_session(m);
    Session owner(s, m);
    kv_generate_result r{};
    r.struct_size = sizeof r;

    // Before any prefill: kv_decode_step's error, with the result filled in.
    kv_generate_desc d = KV_GENERATE_DESC_INIT;
    d.max_tokens = 4;
    CHECK(kv_generate(s, &d, &r) == KV_ERR_BAD_STATE);
    CHECK(std::string(kv_last_error_message()).size() > 0);
    CHECK(r.stop_reason == KV_GENERATE_STOP_ERROR);
    CHECK(r.n_tokens == 0);

    owner.prefill(kPrompt);
    CHECK(kv_generate(nullptr, &d, &r) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("session") != std::string::npos);
    kv_generate_desc bad = d;
    bad.struct_size = 8;
    CHECK(kv_generate(s, &bad, &r) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("struct_size") != std::string::npos);
    bad = d;
    bad.n_stop_strings = 2;  // with stop_strings NULL
    CHECK(kv_generate(s, &bad, &r) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("stop_strings") != std::string::npos);
    const char* with_null[] = {"x", nullptr};
    bad.stop_strings = with_null;
    CHECK(kv_generate(s, &bad, &r) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("stop_strings[1] is NULL") != std::string::npos);
    const char* with_empty[] = {"", "x"};
    bad.stop_strings = with_empty;
    CHECK(kv_generate(s, &bad, &r) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("stop_strings[0] is empty") != std::string::npos);
    bad = d;
    bad.reserved = 1;
    CHECK(kv_generate(s, &bad, &r) == KV_ERR_INVALID_ARGUMENT);
    kv_generate_result small{};
    small.struct_size = 4;
    CHECK(kv_generate(s, &d, &small) == KV_ERR_INVALID_ARGUMENT);
    CHECK(std::string(kv_last_error_message()).find("result") != std::string::npos);
    // None of these generated anything.
    CHECK(owner.stats().n_tokens == kPrompt.size());
}
