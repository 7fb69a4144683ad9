// Tokenizers (src/model/tokenizer.h, unicode.h): llama.cpp's vocab test cases, real model vocabs,
// round trips, streaming, special tokens, malformed metadata, and the Unicode building blocks.
#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "common/vocab_cases.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/unicode.h"

using kv::model::DecodeOptions;
using kv::model::GgufFile;
using kv::model::GgufWriter;
using kv::model::StreamDecoder;
using kv::model::Tokenizer;
using kv::model::TokenType;
namespace uc = kv::model::unicode;

namespace {

std::string vocab_path(const std::string& name) {
    return kvtest::shared_dir() + "/models/vocab/ggml-vocab-" + name + ".gguf";
}

std::string show(const std::vector<int32_t>& v) {
    std::string s;
    for (int32_t x : v) s += " " + std::to_string(x);
    return s;
}

std::string escape(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20) out += "\\x" + std::to_string(c);
        else out.push_back(static_cast<char>(c));
    }
    return out;
}

// Runs every case of `cases_of` (a vocab name) through the tokenizer of `model_path`; returns the
// number that pass. Also checks decode(encode(x)) == x and the streaming invariants.
size_t run_cases(const std::string& model_path, const std::string& cases_of) {
    auto f = GgufFile::open(model_path);
    Tokenizer tok(*f);
    const auto cases = kvtest::load_vocab_cases(vocab_path(cases_of));
    REQUIRE(cases.size() == 46);
    size_t passed = 0;
    for (const kvtest::VocabCase& c : cases) {
        INFO(model_path << ": \"" << escape(c.text) << "\"");
        const auto ids = tok.encode(c.text, false, false);
        CHECK_MESSAGE(ids == c.ids, "got" << show(ids) << " want" << show(c.ids));
        if (ids == c.ids) ++passed;

        const std::string back = tok.decode(ids);
        CHECK(back == c.text);

        // Streaming: per-token pieces and the StreamDecoder both reassemble decode().
        std::string pieces;
        bool at_start = true;
        StreamDecoder sd(tok);
        std::string streamed;
        for (int32_t id : ids) {
            pieces += tok.piece(id, at_start);
            if (!tok.is_control(id)) at_start = false;
            const std::string chunk = sd.push(id);
            CHECK(uc::utf8_complete_prefix(chunk) == chunk.size());
            streamed += chunk;
        }
        streamed += sd.flush();
        CHECK(pieces == back);
        CHECK(streamed == back);
    }
    MESSAGE(model_path << " with " << cases_of << " cases: " << passed << "/" << cases.size() << " pass");
    return passed;
}

// A GgufWriter preloaded with a small valid SPM vocabulary: <unk> <s> </s>, the 256 byte tokens,
// then a few pieces.
void fill_spm(GgufWriter& w) {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        tokens.push_back(buf);
        types.push_back(6);
    }
    for (const char* p : {"\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab", "<|user|>"}) {
        tokens.push_back(p);
        types.push_back(std::strcmp(p, "<|user|>") == 0 ? 4 : 1);
    }
    std::vector<float> scores(tokens.size(), 0.0f);
    scores[tokens.size() - 3] = -1.0f;  // "ab"
    scores[tokens.size() - 2] = -0.5f;  // "▁ab"
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    w.set_array_f32("tokenizer.ggml.scores", scores);
    w.set_array_i32("tokenizer.ggml.token_type", types);
}

// A GgufWriter preloaded with a tiny byte-level BPE vocabulary: the 256 byte characters, then
// merged tokens, then <|endoftext|>.
void fill_bpe(GgufWriter& w, const std::string& pre = "gpt-2") {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(uc::to_utf8(uc::byte_to_cp(static_cast<uint8_t>(b))));
    const std::string sp = uc::to_utf8(uc::byte_to_cp(' '));  // "Ġ"
    for (const std::string& t : {std::string("he"), std::string("ll"), std::string("hell"), std::string("hello"),
                                 sp + "w", sp + "wo"})
        tokens.push_back(t);
    tokens.push_back("<|endoftext|>");
    std::vector<int32_t> types(tokens.size(), 1);
    types.back() = 3;
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", pre);
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    w.set_array_i32("tokenizer.ggml.token_type", types);
    w.set_array_string("tokenizer.ggml.merges",
                       {"h e", "l l", "he ll", "hell o", sp + " w", sp + "w o"});
    w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokens.size() - 1));
}

struct Spm {
    GgufWriter w;
    Spm() { fill_spm(w); }
};
struct Bpe {
    GgufWriter w;
    explicit Bpe(const std::string& pre = "gpt-2") { fill_bpe(w, pre); }
};

kv_status load_status(const GgufWriter& w) {
    const auto bytes = w.to_bytes();
    try {
        auto f = GgufFile::from_memory(bytes.data(), bytes.size(), true);
        Tokenizer tok(*f);
        return KV_OK;
    } catch (const kv::Error& e) {
        MESSAGE("error: " << std::string(e.what()));
        return e.status();
    }
}

std::unique_ptr<Tokenizer> load(const GgufWriter& w) {
    const auto bytes = w.to_bytes();
    auto f = GgufFile::from_memory(bytes.data(), bytes.size(), true);
    return std::make_unique<Tokenizer>(*f);
}

std::vector<std::string> split(uc::PreTokenizer p, const std::string& s) {
    std::vector<std::string> out;
    size_t expect = 0;
    for (const auto& [b, e] : uc::pre_tokenize(p, s)) {
        CHECK(b == expect);
        CHECK(e > b);
        expect = e;
        out.push_back(s.substr(b, e - b));
    }
    CHECK(expect == s.size());
    return out;
}

using Strings = std::vector<std::string>;

}  // namespace

// ---- llama.cpp vocab cases -------------------------------------------------------------------------

TEST_CASE("vocab cases: llama-spm") {
    if (!kvtest::require_shared()) return;
    CHECK(run_cases(vocab_path("llama-spm"), "llama-spm") == 46);
}
TEST_CASE("vocab cases: phi-3") {
    if (!kvtest::require_shared()) return;
    CHECK(run_cases(vocab_path("phi-3"), "phi-3") == 46);
}
TEST_CASE("vocab cases: gpt-2") {
    if (!kvtest::require_shared()) return;
    CHECK(run_cases(vocab_path("gpt-2"), "gpt-2") == 46);
}
TEST_CASE("vocab cases: deepseek-coder") {
    if (!kvtest::require_shared()) return;
    CHECK(run_cases(vocab_path("deepseek-coder"), "deepseek-coder") == 46);
}
TEST_CASE("vocab cases: refact") {
    if (!kvtest::require_shared()) return;
    CHECK(run_cases(vocab_path("refact"), "refact") == 46);
}

TEST_CASE("llama-2-tiny-random has the Llama 2 SPM vocab: every llama-spm case passes") {
    if (!kvtest::require_shared()) return;
    const std::string p = kvtest::shared_dir() + "/models/llama-2-tiny-random/llama-2-tiny-random.gguf";
    CHECK(run_cases(p, "llama-spm") == 46);
    auto f = GgufFile::open(p);
    Tokenizer tok(*f);
    CHECK(tok.vocab_size() == 32000);
    CHECK(tok.type() == kv::model::VocabType::Spm);
    CHECK(tok.bos() == 1);
    CHECK(tok.eos() == 2);
    CHECK(tok.unk() == 0);
    CHECK(tok.nl() == 13);  // <0x0A>
    CHECK(tok.add_bos());
    CHECK_FALSE(tok.add_eos());
    CHECK(tok.is_eog(2));
    CHECK_FALSE(tok.is_eog(1));
}

TEST_CASE("stories260K: \"Once upon a time\" -> [1, 403, 407, 261, 378]") {
    if (!kvtest::require_shared()) return;
    for (const char* name : {"stories260K.gguf", "stories260K-ggml-org.gguf"}) {
        INFO(std::string(name));
        auto f = GgufFile::open(kvtest::shared_dir() + "/models/stories260K/" + name);
        Tokenizer tok(*f);
        CHECK(tok.vocab_size() == 512);
        CHECK(tok.sep() == -1);  // stored as 0xFFFFFFFF
        CHECK(tok.pad() == -1);
        const auto ids = tok.encode("Once upon a time", true, false);
        CHECK(ids == std::vector<int32_t>{1, 403, 407, 261, 378});
        CHECK(tok.encode("Once upon a time", false, false) == std::vector<int32_t>{403, 407, 261, 378});
        // BOS renders as nothing and the space encode() added is dropped again.
        CHECK(tok.decode(ids) == "Once upon a time");
        DecodeOptions keep;
        keep.strip_leading_space = false;
        CHECK(tok.decode(ids, keep) == " Once upon a time");
        DecodeOptions special;
        special.render_special = true;
        CHECK(tok.decode(ids, special) == "<s>Once upon a time");
        CHECK(tok.piece(403) == " Once");
        CHECK(tok.piece(403, true) == "Once");
        // Characters outside the 512-token vocab go through byte fallback (<0xXX> = id 3 + byte).
        REQUIRE(tok.find_token("\xD0\xB6") == -1);  // "ж"
        const auto ids2 = tok.encode("\xD0\xB6", false, false);
        CHECK(ids2 == std::vector<int32_t>{tok.find_token("\xE2\x96\x81"), 3 + 0xD0, 3 + 0xB6});
        CHECK(tok.token_type(3 + 0xD0) == TokenType::Byte);
        CHECK(tok.decode(ids2) == "\xD0\xB6");
        CHECK(tok.piece(3 + 0xD0) == "\xD0");
        // The stream decoder holds a partial character back until it is complete.
        StreamDecoder sd(tok);
        CHECK(sd.push(ids2[0]) == "");  // "▁" at the start: the prefix space is stripped
        CHECK(sd.push(ids2[1]) == "");  // 0xD0: incomplete
        CHECK(sd.push(ids2[2]) == "\xD0\xB6");
        CHECK(sd.push(3 + 0xE2) == "");
        CHECK(sd.flush() == "\xE2");  // flush gives up on the rest
        CHECK(sd.push(403) == " Once");
    }
}

// ---- round trips beyond the fixtures -----------------------------------------------------------------

TEST_CASE("round trip: invalid UTF-8 and odd text survive encode/decode") {
    if (!kvtest::require_shared()) return;
    const std::vector<std::string> valid = {
        "   leading and trailing   ",
        "tabs\t\tand\r\nCRLF\n\n\n",
        "\xE2\x80\xA8 line separator, \xC2\xA0 nbsp, \xE3\x80\x80 ideographic space",
        std::string("nul\0byte", 8),
        "\xC3\xBF\xC3\xBE \xC3\x80 \xC3\xBC",  // ÿþ À ü (user-defined in deepseek-coder)
    };
    const std::vector<std::string> invalid = {
        std::string("\xFF\xFE abc \x80\xC3 \xE2\x82", 12),
        "\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99 \xED\xA0\x80 surrogate, overlong \xC0\xAF",
    };
    // Invalid bytes survive where the vocabulary can spell every byte: SPM through byte fallback,
    // gpt-2's full byte-level alphabet. (refact lacks the bytes that valid UTF-8 never uses;
    // deepseek-coder has them only as user-defined tokens whose text is the character itself.)
    for (const char* name : {"llama-spm", "phi-3", "gpt-2", "deepseek-coder", "refact"}) {
        auto f = GgufFile::open(vocab_path(name));
        Tokenizer tok(*f);
        const bool all_bytes = std::string(name) == "llama-spm" || std::string(name) == "phi-3" ||
                               std::string(name) == "gpt-2";
        std::vector<std::string> texts = valid;
        if (all_bytes) texts.insert(texts.end(), invalid.begin(), invalid.end());
        for (const auto& t : texts) {
            INFO(std::string(name) << ": \"" << escape(t) << "\"");
            const auto ids = tok.encode(t, false, false);
            for (int32_t id : ids) CHECK((id >= 0 && size_t(id) < tok.vocab_size()));
            CHECK(tok.decode(ids) == t);
        }
    }
}

// ---- special tokens ------------------------------------------------------------------------------------

TEST_CASE("special tokens: parse_special, user-defined tokens, EOG") {
    if (!kvtest::require_shared()) return;
    SUBCASE("phi-3") {
        auto f = GgufFile::open(vocab_path("phi-3"));
        Tokenizer tok(*f);
        CHECK(tok.eos() == 32000);
        CHECK(tok.eot() == 32007);  // "<|end|>", found by its text
        CHECK(tok.is_eog(32000));
        CHECK(tok.is_eog(32007));
        CHECK_FALSE(tok.is_eog(32010));
        const std::string chat = "<|user|>\nHi<|end|>\n<|assistant|>";
        const auto with = tok.encode(chat, true, true);
        REQUIRE(with.size() >= 5);
        CHECK(with[0] == 1);
        CHECK(with[1] == 32010);
        CHECK(std::count(with.begin(), with.end(), 32007) == 1);
        CHECK(with.back() == 32001);
        const auto without = tok.encode(chat, true, false);
        for (int32_t id : without) CHECK(id < 32000);
        CHECK(tok.decode(without) == chat);
        DecodeOptions special;
        special.render_special = true;
        // After a special token SPM adds a space prefix (as llama.cpp does), so only the specials
        // and the text pieces are checked here.
        const std::string shown = tok.decode(with, special);
        CHECK(shown.find("<|user|>") != std::string::npos);
        CHECK(shown.find("<|end|>") != std::string::npos);
        CHECK(tok.decode(with).find("<|end|>") == std::string::npos);
        // "</s>" is USER_DEFINED in this vocab: it is matched even without parse_special.
        CHECK(tok.token_type(2) == TokenType::UserDefined);
        const auto ud = tok.encode("a</s>b", false, false);
        CHECK(std::count(ud.begin(), ud.end(), 2) == 1);
    }
    SUBCASE("gpt-2") {
        auto f = GgufFile::open(vocab_path("gpt-2"));
        Tokenizer tok(*f);
        CHECK(tok.encode("<|endoftext|>", false, true) == std::vector<int32_t>{50256});
        const auto plain = tok.encode("<|endoftext|>", false, false);
        CHECK(plain.size() > 1);
        CHECK(std::find(plain.begin(), plain.end(), 50256) == plain.end());
        CHECK(tok.encode("a<|endoftext|>b", false, true) ==
              std::vector<int32_t>{tok.find_token("a"), 50256, tok.find_token("b")});
        CHECK(tok.is_eog(50256));
        CHECK(tok.nl() == tok.find_token("\xC4\x8A"));  // "Ċ"
        CHECK_FALSE(tok.add_bos());
        CHECK(tok.piece(50256).empty());
        DecodeOptions special;
        special.render_special = true;
        CHECK(tok.piece(50256, false, special) == "<|endoftext|>");
    }
    SUBCASE("deepseek-coder") {
        auto f = GgufFile::open(vocab_path("deepseek-coder"));
        Tokenizer tok(*f);
        CHECK(tok.bos() == 32013);
        CHECK(tok.add_bos());
        const auto ids = tok.encode("x", true, false);
        CHECK(ids.front() == 32013);
        const auto fim = tok.encode("<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", false, false);
        CHECK(fim == std::vector<int32_t>{32015});  // user-defined: always matched
    }
}

// llama.cpp gives Phi-3's special tokens (by general.name) its RSTRIP attribute: the whitespace
// after one is dropped, and SPM's space prefix then goes onto the next word. Without the rule the
// text after "</s> " got an extra "▁" token.
TEST_CASE("special tokens: whitespace after them is stripped for a model named Phi-3, kept otherwise") {
    if (!kvtest::require_shared()) return;
    auto f = GgufFile::open(vocab_path("phi-3"));  // general.name "Phi3"
    Tokenizer tok(*f);
    const int32_t sp = tok.find_token("\xE2\x96\x81"), hello = tok.find_token("\xE2\x96\x81" "Hello"),
                  world = tok.find_token("\xE2\x96\x81" "world");
    REQUIRE(sp >= 0);
    REQUIRE(hello >= 0);
    REQUIRE(world >= 0);
    // "</s>" is user-defined: matched without parse_special, and its RSTRIP applies then too.
    CHECK(tok.encode("Hello</s> world", false, false) == std::vector<int32_t>{hello, 2, world});
    CHECK(tok.encode("Hello</s> \n\t world", false, false) == std::vector<int32_t>{hello, 2, world});
    CHECK(tok.encode("Hello</s>world", false, false) == std::vector<int32_t>{hello, 2, world});
    CHECK(tok.encode("Hello</s>  ", false, false) == std::vector<int32_t>{hello, 2});
    // A chat turn, as llama.cpp (c392e509) tokenizes it: the newline after each chat token goes.
    CHECK(tok.encode("<|user|>\nSYS\nHI<|end|>\n<|assistant|>\n", true, true) ==
          std::vector<int32_t>{1, 32010, 317, 21554, 13, 17628, 32007, 32001});
    // Exempt, as in llama.cpp: <s>, <unk>, <|endoftext|> keep the whitespace after them.
    CHECK(tok.encode("<s> world", false, true) == std::vector<int32_t>{1, sp, world});
    CHECK(tok.encode("<|endoftext|> world", false, true) == std::vector<int32_t>{32000, sp, world});
    // Whitespace before a special token is kept (no LSTRIP).
    CHECK(tok.encode("Hello </s>", false, false) == std::vector<int32_t>{hello, sp, 2});

    // The rule follows general.name (case-insensitive "phi-3" / "phi3"), not the vocabulary.
    for (const char* name : {"", "llama", "Phi-3-mini-4k-instruct", "PHI3 medium"}) {
        INFO("general.name '" << name << "'");
        Spm s;
        if (*name) s.w.set_string("general.name", name);
        auto t = load(s.w);
        const bool phi3 = std::strlen(name) > 5;
        const int32_t spab = t->find_token("\xE2\x96\x81" "ab"), user = t->find_token("<|user|>");
        const std::vector<int32_t> kept = {spab, user, t->find_token("\xE2\x96\x81"), spab};
        CHECK(t->encode("ab<|user|> ab", false, false) == (phi3 ? std::vector<int32_t>{spab, user, spab} : kept));
        CHECK(t->encode("ab</s> ab", false, true) == (phi3 ? std::vector<int32_t>{spab, 2, spab}
                                                           : std::vector<int32_t>{spab, 2, kept[2], spab}));
        CHECK(t->encode("ab<s> ab", false, true) == std::vector<int32_t>{spab, 1, kept[2], spab});
    }
}

TEST_CASE("bad ids give KV_ERR_BAD_TOKEN") {
    auto tok = load(Spm().w);
    const int32_t bad[] = {5, static_cast<int32_t>(tok->vocab_size())};
    try {
        (void)tok->decode(bad, 2);
        FAIL("no error");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_BAD_TOKEN);
    }
    CHECK_THROWS_AS((void)tok->piece(-1), kv::Error);
    CHECK_THROWS_AS((void)tok->token_type(1 << 30), kv::Error);
    CHECK_FALSE(tok->is_eog(-5));
    CHECK_FALSE(tok->is_control(1 << 30));
}

// ---- synthetic vocabularies ----------------------------------------------------------------------------

TEST_CASE("SPM: merges by score, byte fallback, user-defined tokens, add_space_prefix") {
    auto tok = load(Spm().w);
    const int32_t sp = tok->find_token("\xE2\x96\x81"), a = tok->find_token("a"), ab = tok->find_token("ab"),
                  spab = tok->find_token("\xE2\x96\x81" "ab"), user = tok->find_token("<|user|>");
    REQUIRE(sp >= 0);
    REQUIRE(spab >= 0);
    // "▁ab" (-0.5) beats "ab" (-1).
    CHECK(tok->encode("ab", false, false) == std::vector<int32_t>{spab});
    CHECK(tok->encode("ab ab a", false, false) == std::vector<int32_t>{spab, spab, sp, a});
    // 'c' is not a piece: byte fallback.
    CHECK(tok->encode("c", false, false) == std::vector<int32_t>{sp, 3 + 'c'});
    // User-defined text is split out, and the text after it gets a space prefix again.
    CHECK(tok->encode("ab<|user|>ab", true, false) == std::vector<int32_t>{1, spab, user, spab});
    CHECK(tok->decode(std::vector<int32_t>{spab, user, ab}) == "ab<|user|>ab");

    Spm s; GgufWriter& w = s.w;
    w.set_bool("tokenizer.ggml.add_space_prefix", false);
    w.set_bool("tokenizer.ggml.add_bos_token", false);
    w.set_bool("tokenizer.ggml.add_eos_token", true);
    auto t2 = load(w);
    CHECK_FALSE(t2->add_space_prefix());
    CHECK(t2->encode("ab", true, false) == std::vector<int32_t>{ab, 2});
    CHECK(t2->decode(std::vector<int32_t>{spab}) == " ab");  // nothing to strip without the prefix
}

TEST_CASE("BPE: merges by rank, pre-tokenizer selection, special parsing") {
    auto tok = load(Bpe().w);
    const int32_t hello = tok->find_token("hello"), spwo = tok->find_token("\xC4\xA0wo");
    REQUIRE(hello >= 0);
    CHECK(tok->pre_tokenizer() == uc::PreTokenizer::Gpt2);
    const auto ids = tok->encode("hello world", false, false);
    REQUIRE(ids.size() == 5);
    CHECK(ids[0] == hello);
    CHECK(ids[1] == spwo);
    CHECK(tok->decode(ids) == "hello world");
    CHECK(tok->encode("hello<|endoftext|>", false, true) == std::vector<int32_t>{hello, tok->eos()});
    CHECK(tok->eot() == -1);  // <|endoftext|> is eos; is_eog still covers it
    CHECK(tok->is_eog(tok->eos()));

    Bpe b; GgufWriter& w = b.w;
    w.set_string("tokenizer.ggml.pre", "llama-bpe");
    auto t3 = load(w);
    CHECK(t3->pre_tokenizer() == uc::PreTokenizer::Llama3);
    CHECK(t3->add_bos());  // the llama3 default, but this vocab has no BOS id: nothing is added
    CHECK(t3->encode("hello", true, false) == std::vector<int32_t>{hello});

    // llama-bpe ignores merges for a pre-token that is itself a token.
    Bpe b4("llama-bpe");
    b4.w.set_array_string("tokenizer.ggml.merges", {"h e"});  // no merge reaches "hello"
    auto t4 = load(b4.w);
    CHECK(t4->encode("hello", false, false) == std::vector<int32_t>{hello});
    Bpe b5("gpt-2");
    b5.w.set_array_string("tokenizer.ggml.merges", {"h e"});
    auto t5 = load(b5.w);
    CHECK(t5->encode("hello", false, false) ==
          std::vector<int32_t>{t5->find_token("he"), 'l', 'l', 'o'});  // byte-level ids = bytes here
}

TEST_CASE("malformed tokenizer metadata gives the right status") {
    SUBCASE("valid baselines load") {
        CHECK(load_status(Spm().w) == KV_OK);
        CHECK(load_status(Bpe().w) == KV_OK);
    }
    SUBCASE("no tokenizer.ggml.model") {
        GgufWriter w;
        w.set_array_string("tokenizer.ggml.tokens", {"a"});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
    }
    SUBCASE("unknown tokenizer model") {
        for (const char* m : {"bert", "t5", "rwkv", "whatever"}) {
            Spm s; GgufWriter& w = s.w;
            w.set_string("tokenizer.ggml.model", m);
            CHECK(load_status(w) == KV_ERR_UNSUPPORTED);
        }
    }
    SUBCASE("unknown pre-tokenizer") {
        CHECK(load_status(Bpe("no-such-pre").w) == KV_ERR_UNSUPPORTED);
    }
    SUBCASE("missing / empty / mistyped tokens") {
        GgufWriter w;
        w.set_string("tokenizer.ggml.model", "llama");
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        w.set_array_string("tokenizer.ggml.tokens", {});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        w.set_array_i32("tokenizer.ggml.tokens", {1, 2, 3});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
    }
    SUBCASE("scores length mismatch") {
        Spm s; GgufWriter& w = s.w;
        w.set_array_f32("tokenizer.ggml.scores", {0.0f, 1.0f});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
    }
    SUBCASE("token_type length mismatch or bad value") {
        Spm s; GgufWriter& w = s.w;
        w.set_array_i32("tokenizer.ggml.token_type", {1, 1});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        Bpe b2; GgufWriter& w2 = b2.w;
        std::vector<int32_t> types(263, 1);
        types[7] = 9;
        w2.set_array_i32("tokenizer.ggml.token_type", types);
        CHECK(load_status(w2) == KV_ERR_BAD_MODEL);
    }
    SUBCASE("BYTE token that is not <0xXX>") {
        GgufWriter w;
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_array_string("tokenizer.ggml.tokens", {"<unk>", "<0xZZ>"});
        w.set_array_i32("tokenizer.ggml.token_type", {2, 6});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
    }
    SUBCASE("gpt2 without merges, bad merge lines") {
        GgufWriter w;
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_array_string("tokenizer.ggml.tokens", {"a", "b", "ab"});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        for (const char* bad : {"ab", "a ", "", " "}) {
            w.set_array_string("tokenizer.ggml.merges", {"a b", bad});
            CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        }
        w.set_array_i32("tokenizer.ggml.merges", {1});
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        w.set_array_string("tokenizer.ggml.merges", {"a b", "x y"});  // unknown parts: ignored
        CHECK(load_status(w) == KV_OK);
    }
    SUBCASE("special ids outside the vocabulary") {
        Spm s; GgufWriter& w = s.w;
        w.set_u32("tokenizer.ggml.eos_token_id", 100000);
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        Spm s2; GgufWriter& w2 = s2.w;
        w2.set_i32("tokenizer.ggml.bos_token_id", -7);
        CHECK(load_status(w2) == KV_ERR_BAD_MODEL);
        Spm s3; GgufWriter& w3 = s3.w;
        w3.set_u32("tokenizer.ggml.padding_token_id", 100000);  // ignored
        w3.set_u32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu);  // "none"
        auto tok = load(w3);
        CHECK(tok->pad() == -1);
        CHECK(tok->bos() == -1);
        CHECK(tok->encode("ab", true, false).front() != 1);
    }
    SUBCASE("wrong value types") {
        Spm s; GgufWriter& w = s.w;
        w.set_string("tokenizer.ggml.add_bos_token", "yes");
        CHECK(load_status(w) == KV_ERR_BAD_MODEL);
        Spm s2; GgufWriter& w2 = s2.w;
        w2.set_u32("tokenizer.ggml.model", 1);
        CHECK(load_status(w2) == KV_ERR_BAD_MODEL);
    }
}

// ---- Unicode building blocks --------------------------------------------------------------------------

TEST_CASE("unicode: categories and White_Space from the generated tables") {
    using GC = uc::GeneralCategory;
    CHECK(uc::category('A') == GC::Lu);
    CHECK(uc::category('z') == GC::Ll);
    CHECK(uc::category('5') == GC::Nd);
    CHECK(uc::category(0xBD) == GC::No);       // ½
    CHECK(uc::category(0x4E00) == GC::Lo);     // inside a First/Last range
    CHECK(uc::category(0x9FA5) == GC::Lo);
    CHECK(uc::category(0xAC01) == GC::Lo);     // Hangul syllable
    CHECK(uc::category(0x0378) == GC::Cn);     // unassigned
    CHECK(uc::category(0x1F680) == GC::So);    // 🚀
    CHECK(uc::category(0xE000) == GC::Co);
    CHECK(uc::category(0x0301) == GC::Mn);
    CHECK(uc::category(0x2028) == GC::Zl);
    CHECK(uc::category(0x10FFFF) == GC::Cn);
    CHECK(uc::category(0x110000) == GC::Cn);
    for (uint32_t c : {0x09u, 0x0Au, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u, 0x3000u})
        CHECK(uc::is_whitespace(c));
    for (uint32_t c : {0x08u, 0x1Cu, 0x200Bu, 0xFEFFu, uint32_t('a')})
        CHECK_FALSE(uc::is_whitespace(c));
    CHECK((uc::flags(0x0416) & uc::kLetter));  // Ж
    CHECK((uc::flags('!') & uc::kPunctuation));
    CHECK((uc::flags('$') & uc::kSymbol));
    CHECK((uc::flags(' ') & uc::kWhitespace));
}

TEST_CASE("unicode: UTF-8 decoding keeps every byte") {
    auto dec = [](const std::string& s) {
        std::vector<std::pair<uint32_t, int>> out;
        for (size_t i = 0; i < s.size();) {
            const auto d = uc::decode_utf8(s.data() + i, s.size() - i);
            out.push_back({d.cp, d.valid ? d.len : -1});
            i += d.len;
        }
        return out;
    };
    using V = std::vector<std::pair<uint32_t, int>>;
    CHECK(dec("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x9A\x80") == V{{'a', 1}, {0xE9, 2}, {0x20AC, 3}, {0x1F680, 4}});
    CHECK(dec("\x80") == V{{0xFFFD, -1}});
    CHECK(dec("\xC0\xAF") == V{{0xFFFD, -1}, {0xFFFD, -1}});          // overlong
    CHECK(dec("\xED\xA0\x80") == V{{0xFFFD, -1}, {0xFFFD, -1}, {0xFFFD, -1}});  // surrogate
    CHECK(dec("\xF4\x90\x80\x80") == V{{0xFFFD, -1}, {0xFFFD, -1}, {0xFFFD, -1}, {0xFFFD, -1}});
    CHECK(dec("\xE2\x82") == V{{0xFFFD, -1}, {0xFFFD, -1}});          // truncated
    CHECK(dec("\xE2\x82z") == V{{0xFFFD, -1}, {0xFFFD, -1}, {'z', 1}});
    CHECK(uc::to_utf8(0x1F680) == "\xF0\x9F\x9A\x80");
    CHECK(uc::to_utf8(0xD800) == "\xEF\xBF\xBD");
    CHECK(uc::utf8_complete_prefix("ab\xF0\x9F\x9A") == 2);
    CHECK(uc::utf8_complete_prefix("ab\xF0\x9F\x9A\x80") == 6);
    CHECK(uc::utf8_complete_prefix("ab\xC3") == 2);
    CHECK(uc::utf8_complete_prefix("ab\x80") == 3);
    CHECK(uc::utf8_complete_prefix("") == 0);
}

TEST_CASE("unicode: GPT-2 byte-level mapping is a bijection") {
    std::vector<bool> seen(0x144, false);
    for (int b = 0; b < 256; ++b) {
        const uint32_t cp = uc::byte_to_cp(static_cast<uint8_t>(b));
        REQUIRE(cp < 0x144);
        CHECK_FALSE(seen[cp]);
        seen[cp] = true;
        CHECK(uc::cp_to_byte(cp) == b);
    }
    CHECK(uc::byte_to_cp(' ') == 0x120);   // Ġ
    CHECK(uc::byte_to_cp('\n') == 0x10A);  // Ċ
    CHECK(uc::byte_to_cp('A') == 'A');
    CHECK(uc::cp_to_byte(0x20) == -1);
    CHECK(uc::cp_to_byte(0x4E00) == -1);
}

TEST_CASE("unicode: pre-tokenizers") {
    using P = uc::PreTokenizer;
    const std::string text = "Hello world 12345\n\n  x's I'M";
    CHECK(split(P::Gpt2, text) ==
          Strings{"Hello", " world", " 12345", "\n\n ", " x", "'s", " I", "'", "M"});
    CHECK(split(P::Llama3, text) ==
          Strings{"Hello", " world", " ", "123", "45", "\n\n", " ", " x", "'s", " I", "'M"});
    CHECK(split(P::Qwen2, text) ==
          Strings{"Hello", " world", " ", "1", "2", "3", "4", "5", "\n\n", " ", " x", "'s", " I", "'M"});
    CHECK(split(P::Refact, "ab 123") == Strings{"ab", " ", "1", "2", "3"});
    CHECK(split(P::Default, "x=1234567;") == Strings{"x", "=", "123", "456", "7", ";"});
    // deepseek-coder: newlines alone, letters with one leading space, numbers one by one.
    CHECK(split(P::DeepseekCoder, "ied 4 \xC2\xBD months\n\tok!!") ==
          Strings{"ied", " ", "4", " ", "\xC2\xBD", " months", "\n", "\tok", "!!"});
    // Letters/numbers beyond ASCII, and invalid bytes (a symbol) kept in place.
    CHECK(split(P::Gpt2, "\xD0\xBD\xD0\xB5 \xE2\x85\xA0 \xFF\xFEz") ==
          Strings{"\xD0\xBD\xD0\xB5", " \xE2\x85\xA0", " \xFF\xFE", "z"});
    CHECK(split(P::Llama3, "a\t\tb \n") == Strings{"a", "\t", "\tb", " \n"});
    CHECK(split(P::Llama3, "!!\r\nx") == Strings{"!!\r\n", "x"});
    // (?i:'s) folds U+017F LONG S to 's' (Unicode case folding, as Hugging Face does); GPT-2's
    // contractions are case-sensitive.
    CHECK(split(P::Llama3, "x'\xC5\xBFy") == Strings{"x", "'\xC5\xBF", "y"});
    CHECK(split(P::Gpt2, "x'Sy") == Strings{"x", "'", "Sy"});
    CHECK(uc::pre_tokenize(P::Gpt2, "").empty());

    uc::PreTokenizer p;
    CHECK(uc::pre_tokenizer_from_name("llama-bpe", &p));
    CHECK(p == P::Llama3);
    CHECK(uc::pre_tokenizer_from_name("qwen2", &p));
    CHECK(p == P::Qwen2);
    CHECK_FALSE(uc::pre_tokenizer_from_name("chameleon", &p));
    CHECK(std::string(uc::pre_tokenizer_name(P::DeepseekCoder)) == "deepseek-coder");
}
