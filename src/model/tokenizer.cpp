// Tokenizer: loading tokenizer.ggml.* metadata, special-token partitioning, detokenization.
// The two merge algorithms (SentencePiece-style by score, byte-level BPE by rank) are below too.
#include "model/tokenizer.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <queue>
#include <unordered_map>

#include "common/error.h"
#include "model/gguf.h"

namespace kv::model {

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space
constexpr size_t kSpaceMarkerLen = 3;

// Texts that mark an end-of-turn token when tokenizer.ggml.eot_token_id is absent, in order of
// preference; control/user-defined tokens with these texts also end generation.
const char* const kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", ("<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"),
};

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// "<0xHH>" -> 0..255, else -1.
int parse_byte_token(std::string_view s) {
    if (s.size() != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    const int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

std::string printable(std::string_view s, size_t max = 64) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7F) out += format("\\x%02X", c);
        else out.push_back(static_cast<char>(c));
    }
    if (s.size() > max) out += "...";
    return out;
}

// What llama.cpp's partition strips next to a special token (C isspace: ASCII only).
bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool contains_ascii_nocase(std::string_view s, std::string_view what) {
    std::string lower(s);
    for (char& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return lower.find(what) != std::string::npos;
}

}  // namespace

struct Tokenizer::Impl {
    VocabType type = VocabType::Spm;
    unicode::PreTokenizer pre = unicode::PreTokenizer::Default;
    bool ignore_merges = false;  // llama3: a pre-token that is itself a token is not merged

    std::vector<std::string> text;  // never resized after load: text_to_id holds views into it
    std::vector<float> score;
    std::vector<TokenType> ttype;
    std::unordered_map<std::string_view, int32_t> text_to_id;

    // SPM byte fallback: the token for each byte (-1: none, use unk).
    int32_t byte_token[256];
    // SPM: the byte value of each BYTE token (-1 for others). Only filled for BYTE tokens.
    std::vector<int16_t> byte_value;

    // BPE merges: (left id << 32 | right id) -> rank and merged id.
    struct Merge {
        int32_t rank;
        int32_t result;
    };
    std::unordered_map<uint64_t, Merge> merges;

    // Tokens matched in the input before tokenization, longest text first.
    std::vector<int32_t> specials;
    // Per token: a match swallows the ASCII whitespace after it (llama.cpp's RSTRIP attribute).
    std::vector<uint8_t> rstrip;

    int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, pad = -1, sep = -1, nl = -1;
    bool add_bos = false, add_eos = false, add_space_prefix = false;
    std::vector<uint8_t> eog;  // per token

    int32_t lookup(std::string_view s) const {
        auto it = text_to_id.find(s);
        return it == text_to_id.end() ? -1 : it->second;
    }
    void check_id(int32_t id) const {
        if (id < 0 || static_cast<size_t>(id) >= text.size())
            fail(KV_ERR_BAD_TOKEN, "token id %d is outside the vocabulary [0, %zu)", id, text.size());
    }

    void load(const GgufFile& f);
    void encode_spm(std::string_view raw, bool prefix_space, std::vector<int32_t>& out) const;
    void encode_bpe(std::string_view raw, std::vector<int32_t>& out) const;
    void encode_bpe_word(const std::string& word, std::vector<int32_t>& out) const;
    void append_piece(std::string& out, int32_t id, bool at_start, const DecodeOptions& o) const;
};

// ---- loading -----------------------------------------------------------------------------------

void Tokenizer::Impl::load(const GgufFile& f) {
    const auto model = f.get_string("tokenizer.ggml.model");
    if (!model) fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.model is missing");
    if (*model == "llama") {
        type = VocabType::Spm;
    } else if (*model == "gpt2") {
        type = VocabType::Bpe;
    } else {
        fail(KV_ERR_UNSUPPORTED, "tokenizer.ggml.model '%s' is not supported (supported: llama, gpt2)",
             printable(*model).c_str());
    }

    // Tokens, scores, types.
    const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    if (!tokens) fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.tokens is missing");
    if (tokens->empty()) fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.tokens is empty");
    if (tokens->size() > static_cast<size_t>(INT32_MAX))
        fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.tokens has %zu entries (more than INT32_MAX)", tokens->size());
    const size_t n = tokens->size();
    text.assign(tokens->begin(), tokens->end());

    if (auto s = f.get_float_array("tokenizer.ggml.scores")) {
        if (s->size() != n)
            fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.scores has %zu entries but tokenizer.ggml.tokens has %zu",
                 s->size(), n);
        score = std::move(*s);
    } else {
        score.assign(n, 0.0f);
    }

    ttype.assign(n, TokenType::Normal);
    if (auto t = f.get_int_array("tokenizer.ggml.token_type")) {
        if (t->size() != n)
            fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.token_type has %zu entries but tokenizer.ggml.tokens has %zu",
                 t->size(), n);
        for (size_t i = 0; i < n; ++i) {
            const int64_t v = (*t)[i];
            if (v < 0 || v > 6)
                fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.token_type[%zu] is %" PRId64 " (valid: 0..6)", i, v);
            ttype[i] = v == 0 ? TokenType::Normal : static_cast<TokenType>(v);
        }
    }

    // Text -> id. Among equal texts a vocabulary token (normal, byte, unused) beats a special one
    // (control, user-defined, unknown): deepseek-coder has user-defined "ÿ" beside the byte-level
    // "ÿ" that stands for byte 0xFF, and merging must use the latter. Otherwise the last wins, as
    // in llama.cpp. (Special-token text in the input is matched by id, not through this map.)
    text_to_id.reserve(n * 2);
    auto is_special = [&](size_t i) {
        return ttype[i] == TokenType::Control || ttype[i] == TokenType::UserDefined || ttype[i] == TokenType::Unknown;
    };
    for (size_t i = 0; i < n; ++i)
        if (!is_special(i)) text_to_id[text[i]] = static_cast<int32_t>(i);
    for (size_t i = 0; i < n; ++i)
        if (is_special(i)) text_to_id.emplace(text[i], static_cast<int32_t>(i));

    // Byte tokens.
    std::fill(std::begin(byte_token), std::end(byte_token), -1);
    byte_value.assign(n, -1);
    for (size_t i = 0; i < n; ++i) {
        if (ttype[i] != TokenType::Byte) continue;
        const int b = parse_byte_token(text[i]);
        if (b < 0)
            fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.tokens[%zu] '%s' has type BYTE but is not <0xXX>", i,
                 printable(text[i]).c_str());
        byte_value[i] = static_cast<int16_t>(b);
        if (byte_token[b] < 0) byte_token[b] = static_cast<int32_t>(i);
    }
    for (int b = 0; b < 256; ++b) {
        if (byte_token[b] >= 0) continue;
        const char c = static_cast<char>(b);
        byte_token[b] = lookup(std::string_view(&c, 1));  // a vocabulary without <0xXX> tokens
    }

    // Special ids. -1 and 0xFFFFFFFF mean "none".
    auto read_id = [&](const char* key, int32_t def, bool strict) -> int32_t {
        const auto v = f.get_int(key);
        if (!v) return (def >= 0 && static_cast<size_t>(def) < n) ? def : -1;
        if (*v == -1 || *v == 0xFFFFFFFFll) return -1;
        if (*v < 0 || static_cast<uint64_t>(*v) >= n) {
            if (strict)
                fail(KV_ERR_BAD_MODEL, "%s is %" PRId64 ", outside the vocabulary [0, %zu)", key, *v, n);
            return -1;
        }
        return static_cast<int32_t>(*v);
    };
    const bool spm = type == VocabType::Spm;
    bos = read_id("tokenizer.ggml.bos_token_id", spm ? 1 : -1, true);
    eos = read_id("tokenizer.ggml.eos_token_id", spm ? 2 : -1, true);
    unk = read_id("tokenizer.ggml.unknown_token_id", spm ? 0 : -1, true);
    eot = read_id("tokenizer.ggml.eot_token_id", -1, true);
    eom = read_id("tokenizer.ggml.eom_token_id", -1, true);
    pad = read_id("tokenizer.ggml.padding_token_id", -1, false);
    sep = read_id("tokenizer.ggml.seperator_token_id", -1, false);  // sic: llama.cpp's key
    if (sep < 0) sep = read_id("tokenizer.ggml.separator_token_id", -1, false);

    // Pre-tokenizer and merges.
    if (type == VocabType::Bpe) {
        const auto pre_name = f.get_string("tokenizer.ggml.pre");
        if (pre_name && !unicode::pre_tokenizer_from_name(*pre_name, &pre))
            fail(KV_ERR_UNSUPPORTED,
                 "tokenizer.ggml.pre '%s' is not supported (supported: default, gpt-2, llama-bpe, qwen2, "
                 "deepseek-coder, refact and their aliases)",
                 printable(*pre_name).c_str());
        ignore_merges = pre == unicode::PreTokenizer::Llama3;

        const auto m = f.get_string_array("tokenizer.ggml.merges");
        if (!m) fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.merges is missing (required for tokenizer.ggml.model gpt2)");
        merges.reserve(m->size() * 2);
        std::string joined;
        for (size_t r = 0; r < m->size(); ++r) {
            const std::string_view line = (*m)[r];
            const size_t sp = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
            if (sp == std::string_view::npos || sp + 1 >= line.size())
                fail(KV_ERR_BAD_MODEL, "tokenizer.ggml.merges[%zu] '%s' is not two tokens separated by a space", r,
                     printable(line).c_str());
            const std::string_view a = line.substr(0, sp), b = line.substr(sp + 1);
            const int32_t ia = lookup(a), ib = lookup(b);
            if (ia < 0 || ib < 0) continue;
            joined.assign(a);
            joined.append(b);
            const int32_t ir = lookup(joined);
            if (ir < 0) continue;
            const uint64_t key = (uint64_t(uint32_t(ia)) << 32) | uint32_t(ib);
            merges.emplace(key, Merge{static_cast<int32_t>(r), ir});  // the first (best) rank wins
        }
    }

    // Flags.
    const bool default_bos = spm || pre == unicode::PreTokenizer::Llama3;
    add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(default_bos);
    add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
    add_space_prefix = spm && f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);

    // Newline token.
    if (spm) {
        nl = byte_token[static_cast<unsigned char>('\n')];
        if (nl < 0) nl = lookup("\n");
    } else {
        std::string s;
        unicode::append_byte_level(s, "\n", 1);
        nl = lookup(s);
    }

    // End of turn / generation.
    eog.assign(n, 0);
    for (const char* t : kEndOfTurnTexts) {
        const int32_t id = lookup(t);
        if (id < 0 || (ttype[id] != TokenType::Control && ttype[id] != TokenType::UserDefined)) continue;
        if (eot < 0 && id != eos) eot = id;
        eog[id] = 1;
    }
    for (int32_t id : {eos, eot, eom})
        if (id >= 0) eog[id] = 1;

    // Special tokens matched in the input.
    for (size_t i = 0; i < n; ++i) {
        const TokenType t = ttype[i];
        if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !text[i].empty())
            specials.push_back(static_cast<int32_t>(i));
    }
    std::stable_sort(specials.begin(), specials.end(),
                     [&](int32_t a, int32_t b) { return text[a].size() > text[b].size(); });

    // Whitespace after special tokens. Hugging Face keeps an `rstrip` flag per added token; GGUF
    // has no such key, and llama.cpp restores it from general.name: a name containing "phi-3" or
    // "phi3" (any case) gives every special token RSTRIP but <unk>, <s> and <|endoftext|> (in
    // Phi-3's tokenizer_config "</s>" and the chat tokens have rstrip true). No other vocabulary
    // strips: llama.cpp keeps Llama 2's "</s> hi" as </s>, "▁", "▁hi".
    rstrip.assign(n, 0);
    const auto name = f.get_string("general.name");
    if (name && (contains_ascii_nocase(*name, "phi-3") || contains_ascii_nocase(*name, "phi3"))) {
        for (int32_t id : specials) rstrip[id] = 1;
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
            const int32_t id = lookup(t);
            if (id >= 0) rstrip[id] = 0;
        }
    }
}

// ---- SentencePiece-style ------------------------------------------------------------------------

// Merges adjacent pieces by the score of the token they form, highest first (leftmost on ties),
// until no adjacent pair forms a token. Pieces start as the UTF-8 characters of the text with
// spaces written as "▁"; a final piece that is not a token goes out as byte tokens.
void Tokenizer::Impl::encode_spm(std::string_view raw, bool prefix_space, std::vector<int32_t>& out) const {
    std::string s;
    s.reserve(raw.size() + 8);
    if (prefix_space) s.append(kSpaceMarker, kSpaceMarkerLen);
    for (char c : raw) {
        if (c == ' ') s.append(kSpaceMarker, kSpaceMarkerLen);
        else s.push_back(c);
    }
    if (s.empty()) return;

    struct Sym {
        size_t start, len;
        int prev, next;
    };
    std::vector<Sym> sym;
    sym.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t len = unicode::utf8_len(s.data() + i, s.size() - i);
        const int idx = static_cast<int>(sym.size());
        sym.push_back({i, len, idx - 1, idx + 1});
        i += len;
    }
    sym.back().next = -1;

    struct Bigram {
        float score;
        int left, right;
        size_t len;
    };
    auto worse = [](const Bigram& a, const Bigram& b) {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        const size_t len = sym[l].len + sym[r].len;
        const int32_t id = lookup(std::string_view(s.data() + sym[l].start, len));
        if (id < 0) return;
        queue.push({score[id], l, r, len});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Sym& l = sym[b.left];
        Sym& r = sym[b.right];
        // Stale: one side was merged away or grew since this pair was queued.
        if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    for (int i = 0; i >= 0; i = sym[i].next) {
        const std::string_view piece(s.data() + sym[i].start, sym[i].len);
        const int32_t id = lookup(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (char c : piece) {
            const int32_t bt = byte_token[static_cast<unsigned char>(c)];
            if (bt >= 0) out.push_back(bt);
            else if (unk >= 0) out.push_back(unk);
        }
    }
}

// ---- byte-level BPE ------------------------------------------------------------------------------

void Tokenizer::Impl::encode_bpe(std::string_view raw, std::vector<int32_t>& out) const {
    std::string word;
    for (const auto& [b, e] : unicode::pre_tokenize(pre, raw)) {
        word.clear();
        unicode::append_byte_level(word, raw.data() + b, e - b);
        encode_bpe_word(word, out);
    }
}

// Merges adjacent pieces by merge rank, lowest first (leftmost on ties). Pieces start as the
// characters of the byte-level word.
void Tokenizer::Impl::encode_bpe_word(const std::string& word, std::vector<int32_t>& out) const {
    if (ignore_merges) {
        const int32_t id = lookup(word);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    struct Sym {
        int32_t id;  // -1: a character that is not a token
        int prev, next;
        bool alive;
    };
    std::vector<Sym> sym;
    for (size_t i = 0; i < word.size();) {
        const size_t len = unicode::utf8_len(word.data() + i, word.size() - i);
        const int idx = static_cast<int>(sym.size());
        sym.push_back({lookup(std::string_view(word.data() + i, len)), idx - 1, idx + 1, true});
        i += len;
    }
    if (sym.empty()) return;
    sym.back().next = -1;

    struct Bigram {
        int32_t rank;
        int left, right;
        int32_t left_id, right_id, result;
    };
    auto worse = [](const Bigram& a, const Bigram& b) {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return;
        const uint64_t key = (uint64_t(uint32_t(sym[l].id)) << 32) | uint32_t(sym[r].id);
        const auto it = merges.find(key);
        if (it == merges.end()) return;
        queue.push({it->second.rank, l, r, sym[l].id, sym[r].id, it->second.result});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Sym& l = sym[b.left];
        Sym& r = sym[b.right];
        if (!l.alive || !r.alive || l.next != b.right || l.id != b.left_id || r.id != b.right_id) continue;
        l.id = b.result;
        r.alive = false;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    for (int i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0) out.push_back(sym[i].id);
        else if (unk >= 0) out.push_back(unk);
    }
}

// ---- detokenization ------------------------------------------------------------------------------

void Tokenizer::Impl::append_piece(std::string& out, int32_t id, bool at_start, const DecodeOptions& o) const {
    check_id(id);
    const size_t start = out.size();
    const std::string& t = text[id];
    switch (ttype[id]) {
        case TokenType::Undefined:
        case TokenType::Normal:
            if (type == VocabType::Spm) {
                for (size_t i = 0; i < t.size();) {
                    if (t.compare(i, kSpaceMarkerLen, kSpaceMarker) == 0) {
                        out.push_back(' ');
                        i += kSpaceMarkerLen;
                    } else {
                        out.push_back(t[i++]);
                    }
                }
            } else {
                for (size_t i = 0; i < t.size();) {
                    const unicode::Decoded d = unicode::decode_utf8(t.data() + i, t.size() - i);
                    const int b = d.valid ? unicode::cp_to_byte(d.cp) : -1;
                    if (b >= 0) out.push_back(static_cast<char>(b));
                    else out.append(t, i, d.len);  // not a byte-level character: keep it as is
                    i += d.len;
                }
            }
            break;
        case TokenType::Byte:
            out.push_back(static_cast<char>(byte_value[id]));
            break;
        case TokenType::UserDefined:
            out += t;
            break;
        case TokenType::Control:
        case TokenType::Unknown:
        case TokenType::Unused:
            if (o.render_special) out += t;
            break;
    }
    if (at_start && o.strip_leading_space && add_space_prefix && out.size() > start && out[start] == ' ')
        out.erase(start, 1);
}

// ---- Tokenizer -----------------------------------------------------------------------------------

Tokenizer::Tokenizer(const GgufFile& gguf) : impl_(std::make_unique<Impl>()) { impl_->load(gguf); }
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const Impl& m = *impl_;
    std::vector<int32_t> out;
    if (add_special && m.add_bos && m.bos >= 0) out.push_back(m.bos);

    // Partition the text: special-token occurrences become tokens, the rest stays raw text.
    struct Frag {
        int32_t token;  // -1: raw text [begin, end)
        size_t begin, end;
    };
    std::vector<Frag> frags;
    if (!text.empty()) frags.push_back({-1, 0, text.size()});
    std::vector<Frag> next;
    for (int32_t id : m.specials) {
        if (!parse_special && m.ttype[id] != TokenType::UserDefined) continue;
        const std::string& st = m.text[id];
        if (text.find(st) == std::string_view::npos) continue;  // cheap reject
        next.clear();
        for (const Frag& f : frags) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t pos = f.begin;
            while (pos < f.end) {
                const size_t hit = text.substr(0, f.end).find(st, pos);
                if (hit == std::string_view::npos) break;
                if (hit > pos) next.push_back({-1, pos, hit});
                next.push_back({id, hit, hit + st.size()});
                pos = hit + st.size();
                if (m.rstrip[id])
                    while (pos < f.end && is_ascii_space(text[pos])) ++pos;
            }
            if (pos < f.end) next.push_back({-1, pos, f.end});
        }
        frags.swap(next);
    }

    bool after_special = true;  // SPM: a space prefix starts the text and follows each special token
    for (const Frag& f : frags) {
        if (f.token >= 0) {
            out.push_back(f.token);
            after_special = true;
            continue;
        }
        const std::string_view raw = text.substr(f.begin, f.end - f.begin);
        if (m.type == VocabType::Spm) m.encode_spm(raw, m.add_space_prefix && after_special, out);
        else m.encode_bpe(raw, out);
        after_special = false;
    }

    if (add_special && m.add_eos && m.eos >= 0) out.push_back(m.eos);
    return out;
}

std::string Tokenizer::decode(const int32_t* ids, size_t n, const DecodeOptions& opts) const {
    std::string out;
    bool at_start = true;
    for (size_t i = 0; i < n; ++i) {
        impl_->append_piece(out, ids[i], at_start, opts);
        if (impl_->ttype[ids[i]] != TokenType::Control) at_start = false;
    }
    return out;
}

std::string Tokenizer::piece(int32_t id, bool at_start, const DecodeOptions& opts) const {
    std::string out;
    impl_->append_piece(out, id, at_start, opts);
    return out;
}

void Tokenizer::append_piece(std::string& out, int32_t id, bool at_start, const DecodeOptions& opts) const {
    impl_->append_piece(out, id, at_start, opts);
}

size_t Tokenizer::vocab_size() const { return impl_->text.size(); }
VocabType Tokenizer::type() const { return impl_->type; }
unicode::PreTokenizer Tokenizer::pre_tokenizer() const { return impl_->pre; }

TokenType Tokenizer::token_type(int32_t id) const {
    impl_->check_id(id);
    return impl_->ttype[id];
}
std::string_view Tokenizer::token_text(int32_t id) const {
    impl_->check_id(id);
    return impl_->text[id];
}
float Tokenizer::score(int32_t id) const {
    impl_->check_id(id);
    return impl_->score[id];
}
int32_t Tokenizer::find_token(std::string_view text) const { return impl_->lookup(text); }

int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
int32_t Tokenizer::eot() const { return impl_->eot; }
int32_t Tokenizer::eom() const { return impl_->eom; }
int32_t Tokenizer::unk() const { return impl_->unk; }
int32_t Tokenizer::pad() const { return impl_->pad; }
int32_t Tokenizer::sep() const { return impl_->sep; }
int32_t Tokenizer::nl() const { return impl_->nl; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
bool Tokenizer::add_space_prefix() const { return impl_->add_space_prefix; }

bool Tokenizer::is_eog(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < impl_->eog.size() && impl_->eog[id];
}
bool Tokenizer::is_control(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < impl_->ttype.size() && impl_->ttype[id] == TokenType::Control;
}

// ---- StreamDecoder -------------------------------------------------------------------------------

std::string StreamDecoder::push(int32_t id) {
    tok_->append_piece(pending_, id, at_start_, opts_);
    if (!tok_->is_control(id)) at_start_ = false;
    const size_t n = unicode::utf8_complete_prefix(pending_);
    std::string ready = pending_.substr(0, n);
    pending_.erase(0, n);
    return ready;
}

std::string StreamDecoder::flush() {
    std::string rest;
    rest.swap(pending_);
    return rest;
}

}  // namespace kv::model
