// Grammars (src/engine/grammar.h) on the host: 200 temperature samples of stories260K (its CPU
// reference's logits, the engine's sampler and the model's token trie) under a JSON-object
// grammar all parse as JSON; the GBNF parser's errors, the matcher against the
// strings a grammar does and does not accept (UTF-8 split across tokens included), the trie mask
// against one-token checks in every state, the sampler's draw under a grammar against the masked
// softmax, logit bias and banned tokens, and JSON Schema -> GBNF.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "common/json_check.h"
#include "engine/grammar.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "reference/reference.h"

using kv::engine::Grammar;
using kv::engine::GrammarMatcher;
using kv::engine::Sampler;
using kv::engine::TokenTrie;

namespace {

// A vocabulary of every single byte (token b = byte b), a few multi-byte tokens, and an EOS.
struct Vocab {
    std::vector<std::string> text;
    std::vector<uint8_t> eog;
    int32_t eos = 0;
    std::shared_ptr<const TokenTrie> trie;
    Vocab() {
        for (int b = 0; b < 256; ++b) text.push_back(std::string(1, char(b)));
        text[0] = "";  // token 0: a control token (no text), never allowed
        for (const char* t : {"ab", "abc", "{\"", "\":", "12", "true", "\xC3", "\xA9x", "\xC3\xA9", " {", "\"}", "é!"})
            text.push_back(t);
        eog.assign(text.size(), 0);
        eos = int32_t(text.size());
        text.push_back("");
        eog.push_back(1);
        trie = std::make_shared<TokenTrie>(text, eog);
    }
    int32_t id(const std::string& t) const {
        for (size_t i = 0; i < text.size(); ++i)
            if (text[i] == t && !eog[i]) return int32_t(i);
        FAIL("no token " << t);
        return -1;
    }
};

const Vocab& vocab() {
    static Vocab v;
    return v;
}

GrammarMatcher matcher(const std::string& gbnf) { return GrammarMatcher(Grammar::parse(gbnf), vocab().trie); }

// Feeds `s` byte by byte (one token each): whether every byte fits, and whether it may end there.
std::pair<bool, bool> run(GrammarMatcher m, const std::string& s) {
    uint32_t pos = 0;
    for (unsigned char c : s)
        if (c == 0 || !m.accept(int32_t(c), pos++)) return {false, false};
    return {true, m.can_end()};
}

bool accepts(const std::string& gbnf, const std::string& s) {
    auto [fits, ends] = run(matcher(gbnf), s);
    return fits && ends;
}

// mask() and allows() agree on every token.
void check_mask_matches_allows(GrammarMatcher& m) {
    const uint32_t V = vocab().trie->n_vocab();
    std::vector<float> l(V, 0.f);
    m.mask(l.data(), V);
    for (uint32_t t = 0; t < V; ++t)
        CHECK_MESSAGE(std::isfinite(l[t]) == m.allows(int32_t(t)), "token " << t << " '" << vocab().text[t] << "'");
}

std::string error_of(const std::string& gbnf, const char* root = "root") {
    try {
        Grammar::parse(gbnf, root);
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_INVALID_ARGUMENT);
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("grammar: GBNF syntax errors name the line and column") {
    auto has = [](const std::string& msg, const char* part) {
        INFO(msg);
        CHECK(msg.find(part) != std::string::npos);
    };
    has(error_of("root ::= \"abc"), "line 1, column 14: unterminated string literal");
    has(error_of("root ::= a\n\nb ::= \"x\""), "rule 'a' is used but never defined");
    has(error_of("root ::= a\n\nb ::= \"x\""), "line 1, column 10");
    has(error_of("root ::= \"x\"\nroot ::= \"y\""), "line 2, column 1: rule 'root' is defined twice");
    has(error_of("root ::= root \"x\" | \"y\""), "rule 'root' is left-recursive");
    has(error_of("root ::= a\na ::= b? root\nb ::= \"x\""), "left-recursive");
    has(error_of("x ::= \"a\""), "no rule named 'root'");
    has(error_of("x ::= \"a\"", "start"), "no rule named 'start'");
    has(error_of("root ::= \"\\q\""), "line 1, column 11: unknown escape '\\q'");
    has(error_of("root ::= [z-a]"), "reversed");
    has(error_of("root ::= ( \"a\" | \"b\""), "line 1, column 10: unclosed '('");
    has(error_of("root ::= [abc"), "unterminated character class");
    has(error_of("root ::= \"a\"{3,2}"), "maximum is below the minimum");
    has(error_of("root ::= \"a\"{1001}"), "repetition count above 1000");
    has(error_of("root = \"a\""), "expected '::=' after rule name 'root'");
    has(error_of("root ::= \"a\" )"), "line 1, column 14");
    has(error_of(""), "no rule named 'root'");
    // Valid: comments, rules over several lines, escapes, any-character.
    CHECK(error_of("# a comment\nroot ::= a\n  | b # more\na ::= \"\\x41\\u00e9\\n\" .\nb ::= [^\\]\\\\]+") == "");
}

TEST_CASE("grammar: the matcher accepts exactly the grammar's strings") {
    const std::string g = R"(
        root ::= item ("," item){1,2} tail?
        item ::= [a-c]+ | num | "é" [^0-9é]
        num  ::= "-"? [1-9] [0-9]*
        tail ::= "!" | "?" "?"
    )";
    for (const char* s : {"a,b", "abc,-12,c", "a,b,c!", "é!,a", "a,é!??", "a,-9??"}) CHECK_MESSAGE(accepts(g, s), s);
    for (const char* s : {"a", "a,b,c,a", "a,0", "a,b!!", "é1,a", "a,,b", "d,a", "a,b?", "a,-"})
        CHECK_MESSAGE(!accepts(g, s), s);
    // A prefix is alive but may not end.
    auto [fits, ends] = run(matcher(g), "abc,");
    CHECK(fits);
    CHECK(!ends);
    CHECK(accepts("root ::= \"\"", ""));
    CHECK(accepts("root ::= \"x\"{3}", "xxx"));
    CHECK(!accepts("root ::= \"x\"{3}", "xxxx"));
    CHECK(accepts("root ::= \"x\"{2,}", "xxxxx"));
    CHECK(!accepts("root ::= \"x\"{2,}", "x"));
    CHECK(accepts("root ::= ( \"a\" | \"b\" )* \"c\"", "ababbc"));
}

TEST_CASE("grammar: tokens may split a UTF-8 character, and the mask equals one-token checks in every state") {
    const Vocab& v = vocab();
    GrammarMatcher m = matcher("root ::= \"é\" [x-z] \"!\"? | \"ab\" \"c\"*");
    check_mask_matches_allows(m);
    CHECK(m.allows(v.id("\xC3")));       // the first byte of é
    CHECK(m.allows(v.id("\xC3\xA9")));   // é whole
    CHECK(!m.allows(v.id("é!")));        // é then '!' (needs x-z first)
    CHECK(!m.allows(v.id("\xA9x")));     // a continuation byte first
    CHECK(!m.allows(v.eos));
    REQUIRE(m.accept(v.id("\xC3"), 0));  // a pending UTF-8 sequence
    check_mask_matches_allows(m);
    CHECK(m.allows(v.id("\xA9x")));
    CHECK(!m.allows(v.id("ab")));
    CHECK(!m.allows(v.eos));
    REQUIRE(m.accept(v.id("\xA9x"), 1));
    CHECK(m.can_end());
    CHECK(m.allows(v.eos));
    CHECK(m.allows(v.id("!")));
    check_mask_matches_allows(m);
    // truncate replays what stays; reset starts over.
    m.truncate(1);
    CHECK(m.n_accepted() == 1);
    CHECK(!m.can_end());
    CHECK(m.allows(v.id("\xA9x")));
    m.reset();
    CHECK(m.n_accepted() == 0);
    CHECK(m.allows(v.id("abc")));
    REQUIRE(m.accept(v.id("abc"), 0));
    check_mask_matches_allows(m);
    CHECK(m.can_end());
    CHECK(!m.allows(0));  // a control token never fits
}

TEST_CASE("grammar: the trie mask equals one-token checks along random walks of a JSON grammar") {
    const char* json = R"(
        root   ::= ws "{" ws pair ("," ws pair)* ws "}"
        pair   ::= string ws ":" ws value
        value  ::= string | num | "true" | "[" ws (value ("," ws value)*)? ws "]" | root
        string ::= "\"" [^"\\]* "\""
        num    ::= "-"? [0-9]+
        ws     ::= [ ]?
    )";
    std::mt19937 rng(7);
    for (int walk = 0; walk < 20; ++walk) {
        GrammarMatcher m = matcher(json);
        for (uint32_t step = 0; step < 40; ++step) {
            const uint32_t V = vocab().trie->n_vocab();
            std::vector<float> l(V, 0.f);
            m.mask(l.data(), V);
            std::vector<int32_t> ok;
            for (uint32_t t = 0; t < V; ++t) {
                CHECK(std::isfinite(l[t]) == m.allows(int32_t(t)));
                if (std::isfinite(l[t])) ok.push_back(int32_t(t));
            }
            REQUIRE(!ok.empty());
            int32_t t = ok[rng() % ok.size()];
            if (t == vocab().eos) break;
            REQUIRE(m.accept(t, step));
        }
    }
}

TEST_CASE("sampler: under a grammar, draws follow the softmax over the allowed tokens") {
    const Vocab& v = vocab();
    const uint32_t V = v.trie->n_vocab();
    std::vector<float> logits(V, -2.f);
    logits[size_t(v.id("a"))] = 1.f;   // not allowed: most of the mass
    logits[size_t(v.id("x"))] = 3.f;   // not allowed
    logits[size_t(v.id("1"))] = 0.5f;  // allowed
    logits[size_t(v.id("2"))] = 0.f;   // allowed
    logits[size_t(v.id("12"))] = 1.f;  // allowed
    for (int32_t top_k : {0, 300}) {   // the check-the-draw path and the full-mask path
        kv_sampler_desc d = KV_SAMPLER_DESC_INIT;
        d.temperature = 1.f;
        d.top_k = top_k;
        d.seed = 99;
        Sampler s(d, V);
        s.set_grammar(GrammarMatcher(Grammar::parse("root ::= [0-9]+"), v.trie));
        std::map<int32_t, double> f;
        const int draws = 20000;
        for (int i = 0; i < draws; ++i) {
            std::vector<float> l = logits;
            f[s.sample(l.data(), V, {})] += 1.0 / draws;
        }
        double sum = 0;
        std::map<int32_t, double> want;
        for (uint32_t t = 0; t < V; ++t)
            if (!v.text[t].empty() && v.text[t].find_first_not_of("0123456789") == std::string::npos)
                sum += want[int32_t(t)] = std::exp(double(logits[t]));
        for (auto& [t, p] : want) {
            p /= sum;
            CHECK_MESSAGE(std::fabs(f[t] - p) < 0.02, "top_k " << top_k << " token '" << v.text[size_t(t)] << "'");
        }
        for (auto& [t, p] : f) CHECK_MESSAGE(want.count(t), "drew a token the grammar forbids: " << t);
        // Greedy takes the masked argmax.
        kv_sampler_desc g = KV_SAMPLER_DESC_INIT;
        Sampler gs(g, V);
        gs.set_grammar(GrammarMatcher(Grammar::parse("root ::= [0-9]+"), v.trie));
        std::vector<float> l = logits;
        CHECK(gs.sample(l.data(), V, {}) == v.id("12"));
    }
}

TEST_CASE("sampler: logit bias adds, banned tokens are never drawn, and an empty choice is an error") {
    std::vector<float> logits = {1.f, 3.f, 2.f, 0.f};
    kv_logit_bias bias[] = {{3, 10.f}, {1, -INFINITY}};
    int32_t banned[] = {3};
    kv_sampler_desc d = KV_SAMPLER_DESC_INIT;
    d.logit_bias = bias;
    d.n_logit_bias = 1;
    {
        Sampler s(d, 4);
        CHECK(!s.gpu_greedy());
        std::vector<float> l = logits;
        CHECK(s.sample(l.data(), 4, {}) == 3);
        CHECK(l[3] == 10.f);
    }
    d.n_logit_bias = 2;  // token 1 biased to -inf: token 3 still wins
    d.banned_tokens = banned;
    d.n_banned_tokens = 1;  // ... until banned: token 2
    {
        Sampler s(d, 4);
        std::vector<float> l = logits;
        CHECK(s.sample(l.data(), 4, {}) == 2);
        d.temperature = 1.f;
        Sampler t(d, 4);
        for (int i = 0; i < 2000; ++i) {
            std::vector<float> x = logits;
            int32_t tok = t.sample(x.data(), 4, {});
            CHECK((tok == 0 || tok == 2));
        }
        d.temperature = 0.f;
    }
    int32_t all[] = {0, 1, 2, 3};
    d.banned_tokens = all;
    d.n_banned_tokens = 4;
    Sampler none(d, 4);
    std::vector<float> l = logits;
    CHECK_THROWS_WITH_AS(none.sample(l.data(), 4, {}), doctest::Contains("every token is banned"), kv::Error);
    // Tokens outside the vocabulary, NaN or +inf biases, NULL arrays: refused.
    int32_t bad_tok[] = {4};
    d.banned_tokens = bad_tok;
    d.n_banned_tokens = 1;
    CHECK_THROWS_WITH_AS(Sampler(d, 4), doctest::Contains("banned_tokens[0] is 4"), kv::Error);
    d.n_banned_tokens = 0;
    kv_logit_bias nan_bias[] = {{0, NAN}};
    d.logit_bias = nan_bias;
    d.n_logit_bias = 1;
    CHECK_THROWS_AS(kv::engine::check_sampler(d), kv::Error);
    d.logit_bias = nullptr;
    CHECK_THROWS_WITH_AS(kv::engine::check_sampler(d), doctest::Contains("logit_bias is NULL"), kv::Error);
}

TEST_CASE("grammar: JSON Schema to GBNF accepts the schema's JSON and refuses what it cannot express") {
    const std::string schema = R"({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 5},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b c", 3]}, "maxItems": 2},
            "ok": {"type": ["boolean", "null"]},
            "score": {"type": "number", "description": "ignored"}
        },
        "required": ["name", "age"]
    })";
    const std::string gbnf = kv::engine::json_schema_to_gbnf(schema);
    INFO(gbnf);
    auto yes = [&](const std::string& s) { CHECK_MESSAGE(accepts(gbnf, s), s); };
    auto no = [&](const std::string& s) { CHECK_MESSAGE(!accepts(gbnf, s), s); };
    yes(R"({"name":"bob","age":42})");
    yes(R"( { "name" : "", "age" : -1, "tags" : ["b c", 3], "ok": null, "score": 1.5e3 })");
    yes(R"({"name":"a\"b","age":0,"score":-0.25})");
    yes(R"({"name":"x","age":1,"ok":true})");
    no(R"({"age":42,"name":"bob"})");                 // the schema's order
    no(R"({"name":"bob"})");                          // age is required
    no(R"({"name":"bobbyb","age":1})");               // maxLength
    no(R"({"name":"b","age":1.5})");                  // integer
    no(R"({"name":"b","age":1,"tags":["a","a","a"]})");  // maxItems
    no(R"({"name":"b","age":1,"tags":["c"]})");       // enum
    no(R"({"name":"b","age":1,"extra":1})");          // no other properties
    no(R"({"name":"b","age":01})");                   // JSON numbers
    // All-optional properties: none, any subset, in order.
    const std::string opt = kv::engine::json_schema_to_gbnf(
        R"({"properties":{"a":{"const":1},"b":{"type":"string"},"c":{"type":"boolean"}}})");
    for (const char* s : {"{}", R"({"b":"x"})", R"({"a":1,"c":false})", R"({"c":true})", R"({"a":1,"b":"","c":true})"})
        CHECK_MESSAGE(accepts(opt, s), s);
    for (const char* s : {R"({,"b":"x"})", R"({"a":2})", R"({"c":true,"a":1})", R"({"a":1,})"}) CHECK_MESSAGE(!accepts(opt, s), s);
    // Any JSON value.
    const std::string any = kv::engine::json_schema_to_gbnf("{}");
    for (const char* s : {"1", "[1,{\"a\":[true,null]}]", "\"\\u00e9\"", "{ }"}) CHECK_MESSAGE(accepts(any, s), s);
    // Errors.
    auto status = [](const std::string& s, const char* part) -> kv_status {
        try {
            kv::engine::json_schema_to_gbnf(s);
        } catch (const kv::Error& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(part) != std::string::npos);
            return e.status();
        }
        FAIL("no error for " << s);
        return KV_OK;
    };
    CHECK(status(R"({"type":"string","pattern":"a+"})", "'pattern' is not supported") == KV_ERR_UNSUPPORTED);
    CHECK(status(R"({"properties":{"x":{"$ref":"#/a"}}})", "at '/properties/x'") == KV_ERR_UNSUPPORTED);
    CHECK(status(R"({"type":"object",)", "malformed JSON at byte 17") == KV_ERR_INVALID_ARGUMENT);
    CHECK(status(R"({"type":"strin"})", "unknown type 'strin'") == KV_ERR_INVALID_ARGUMENT);
    CHECK(status(R"({"properties":{"a":{}},"required":["b"]})", "'b' is required") == KV_ERR_INVALID_ARGUMENT);
}

TEST_CASE("grammar: 200 temperature samples of stories260K under a JSON-object grammar all parse as JSON") {
    if (!kvtest::require_shared()) return;
    const std::string path = kvtest::shared_dir() + "/models/stories260K/stories260K.gguf";
    auto file = kv::model::GgufFile::open(path);
    auto ref = kv::reference::ReferenceModel::load(*file);
    kv::model::Tokenizer tok(*file);
    auto trie = std::make_shared<const TokenTrie>(tok);
    auto grammar = Grammar::parse(kvtest::kJsonObjectGrammar);
    const uint32_t V = trie->n_vocab();
    const std::vector<int32_t> prompt = tok.encode("Once upon a time, there was a little girl who liked", true, false);
    kv::reference::ReferenceSession base(*ref);
    const std::vector<float> first = base.prefill(prompt);
    uint32_t parsed = 0, tokens = 0, utf8 = 0;
    std::string example;
    for (uint32_t i = 0; i < 200; ++i) {
        kv_sampler_desc d = KV_SAMPLER_DESC_INIT;
        d.temperature = 0.7f + 0.1f * float(i % 6);
        if (i % 2) {  // half through the full mask (top-k and top-p cut after it)
            d.top_k = 40;
            d.top_p = 0.95f;
        }
        d.seed = 7919 * i + 1;
        Sampler s(d, V);
        s.set_grammar(GrammarMatcher(grammar, trie));
        kv::reference::ReferenceSession rs = base;
        std::vector<float> logits = first;
        std::vector<int32_t> history = prompt;
        std::string text;
        bool ended = false;
        for (uint32_t step = 0; step < 120; ++step) {
            std::vector<float> l = logits;
            const int32_t t = s.sample(l.data(), V, history);
            if (trie->eog[size_t(t)]) {
                ended = true;
                break;
            }
            s.accept(t, uint32_t(history.size()));
            history.push_back(t);
            text += trie->text[size_t(t)];
            ++tokens;
            logits = rs.decode(t);
        }
        INFO("sample " << i << ": " << text);
        CHECK(ended);
        const bool ok = kvtest::JsonCheck(text).object_document();
        CHECK(ok);
        parsed += ok;
        utf8 += text.find("\xC3\xA9") != std::string::npos;
        if (text.size() > example.size() && text.size() < 60) example = text;
    }
    MESSAGE(parsed << " of 200 samples parse as JSON objects; " << tokens << " tokens, " << utf8
                   << " with a two-byte character; e.g. " << example);
    CHECK(parsed == 200);
}
