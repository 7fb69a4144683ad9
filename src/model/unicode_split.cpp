// Pre-tokenizers for byte-level BPE, written as hand-made matchers instead of regular expressions.
//
// Each tokenizer.ggml.pre value names a chain of expressions. The text starts as one chunk; each
// expression in turn is searched left to right through every chunk, and each chunk is replaced by
// its matches and the unmatched gaps between them (both kept, in order) - the "Isolated" split of
// Hugging Face tokenizers, and what llama.cpp does. A matcher below returns the length (in
// codepoints) of the match that the expression's leftmost-first alternation finds at a given
// position, or 0 if it finds none there. A chunk is matched as if it were the whole string:
// lookaheads see the chunk's end as the end of the text.
//
// Expressions (as written by the reference tokenizers; \s is White_Space):
//   GPT2  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   LLAMA3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   QWEN2  as LLAMA3 with \p{N} instead of \p{N}{1,3}
//   chains:
//   default        [\p{P}\$\+<=>\^~\|]+ ; GPT2 ; \p{N}+ ; [0-9][0-9][0-9]
//   gpt-2          GPT2
//   llama-bpe      LLAMA3
//   qwen2          QWEN2
//   deepseek-coder [\r\n] ; \s?\p{L}+ ; \s?\p{P}+ ; [\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+ ; \p{N}
//   refact         \p{N} ; GPT2
// (The default chain's GPT2 lacks the final |\s+; it makes no difference: a whitespace that
// \s+(?!\S) leaves unmatched is a single one before a non-space, which always matches, so the
// gap it leaves is exactly the one-codepoint chunk \s+ would have produced.)
#include "model/unicode.h"

#include <utility>

namespace kv::model::unicode {

namespace {

struct Text {
    std::vector<uint32_t> cp;     // codepoints (U+FFFD for an invalid byte)
    std::vector<uint16_t> fl;     // flags(cp)
    std::vector<size_t> offset;   // byte offset of each codepoint, plus the total size at the end

    explicit Text(std::string_view s) {
        cp.reserve(s.size());
        fl.reserve(s.size());
        offset.reserve(s.size() + 1);
        size_t i = 0;
        while (i < s.size()) {
            const Decoded d = decode_utf8(s.data() + i, s.size() - i);
            cp.push_back(d.cp);
            fl.push_back(flags(d.cp));
            offset.push_back(i);
            i += d.len;
        }
        offset.push_back(s.size());
    }
    size_t size() const { return cp.size(); }
};

// A matcher: length of the match at pos within the chunk [.., end), 0 if none.
using Matcher = size_t (*)(const Text& t, size_t pos, size_t end);

constexpr uint16_t kWs = kWhitespace;

inline bool has(const Text& t, size_t i, size_t end, uint16_t f) { return i < end && (t.fl[i] & f); }
inline bool is_nl(uint32_t c) { return c == '\r' || c == '\n'; }
// Simple case folding, enough for (?i:'s|'t|'re|'ve|'m|'ll|'d): ASCII capitals and U+017F LATIN
// SMALL LETTER LONG S, the one other codepoint that folds to one of s t r e v m l d
// (CaseFolding.txt). Hugging Face tokenizers (Oniguruma) fold it too; llama.cpp does not.
inline uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c == 0x17F ? 's' : c;
}

// Advances from i while the predicate holds; returns the first index where it does not.
template <class Pred>
inline size_t run(const Text& t, size_t i, size_t end, Pred pred) {
    while (i < end && pred(i)) ++i;
    (void)t;
    return i;
}

// 's|'t|'re|'ve|'m|'ll|'d, optionally ASCII-case-insensitive.
size_t match_contraction(const Text& t, size_t pos, size_t end, bool fold_case) {
    if (t.cp[pos] != '\'' || pos + 1 >= end) return 0;
    auto at = [&](size_t i) { return fold_case ? fold(t.cp[i]) : t.cp[i]; };
    const uint32_t a = at(pos + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 < end) {
        const uint32_t b = at(pos + 2);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

// \s+(?!\S)|\s+ at a whitespace position.
size_t match_trailing_space(const Text& t, size_t pos, size_t end) {
    const size_t k = run(t, pos, end, [&](size_t i) { return (t.fl[i] & kWs) != 0; });
    if (k == end) return k - pos;          // the lookahead succeeds at the end of the chunk
    if (k - pos >= 2) return k - pos - 1;  // leave the last space for the next word
    return 1;                              // \s+
}

size_t match_gpt2(const Text& t, size_t pos, size_t end) {
    if (size_t n = match_contraction(t, pos, end, false)) return n;
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
    const size_t j = t.cp[pos] == ' ' ? pos + 1 : pos;
    if (j < end) {
        const uint16_t f = t.fl[j];
        if (f & kLetter) return run(t, j, end, [&](size_t i) { return (t.fl[i] & kLetter) != 0; }) - pos;
        if (f & kNumber) return run(t, j, end, [&](size_t i) { return (t.fl[i] & kNumber) != 0; }) - pos;
        if (!(f & (kWs | kLetter | kNumber)))
            return run(t, j, end, [&](size_t i) { return !(t.fl[i] & (kWs | kLetter | kNumber)); }) - pos;
    }
    if (t.fl[pos] & kWs) return match_trailing_space(t, pos, end);
    return 0;
}

size_t match_llama3_like(const Text& t, size_t pos, size_t end, size_t max_digits) {
    if (size_t n = match_contraction(t, pos, end, true)) return n;
    const uint32_t c = t.cp[pos];
    const uint16_t f = t.fl[pos];
    auto letters = [&](size_t i) { return (t.fl[i] & kLetter) != 0; };
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is_nl(c) && !(f & (kLetter | kNumber)) && has(t, pos + 1, end, kLetter))
        return run(t, pos + 1, end, letters) - pos;
    if (f & kLetter) return run(t, pos, end, letters) - pos;
    // \p{N}{1,max_digits}
    if (f & kNumber) {
        size_t k = pos;
        while (k < end && (t.fl[k] & kNumber) && k - pos < max_digits) ++k;
        return k - pos;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t j = c == ' ' ? pos + 1 : pos;
    if (j < end && !(t.fl[j] & (kWs | kLetter | kNumber))) {
        size_t k = run(t, j, end, [&](size_t i) { return !(t.fl[i] & (kWs | kLetter | kNumber)); });
        k = run(t, k, end, [&](size_t i) { return is_nl(t.cp[i]); });
        return k - pos;
    }
    if (f & kWs) {
        // \s*[\r\n]+ : the whitespace run up to and including its last \r or \n.
        size_t k = pos, last_nl = end;
        for (; k < end && (t.fl[k] & kWs); ++k)
            if (is_nl(t.cp[k])) last_nl = k;
        if (last_nl != end) return last_nl + 1 - pos;
        return match_trailing_space(t, pos, end);
    }
    return 0;
}

size_t match_llama3(const Text& t, size_t pos, size_t end) { return match_llama3_like(t, pos, end, 3); }
size_t match_qwen2(const Text& t, size_t pos, size_t end) { return match_llama3_like(t, pos, end, 1); }

// [\p{P}\$\+<=>\^~\|]+
size_t match_default_punct(const Text& t, size_t pos, size_t end) {
    auto pred = [&](size_t i) {
        const uint32_t c = t.cp[i];
        return (t.fl[i] & kPunctuation) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
               c == '^' || c == '~' || c == '|';
    };
    return run(t, pos, end, pred) - pos;
}

// \p{N}+
size_t match_numbers(const Text& t, size_t pos, size_t end) {
    return run(t, pos, end, [&](size_t i) { return (t.fl[i] & kNumber) != 0; }) - pos;
}

// \p{N}
size_t match_number(const Text& t, size_t pos, size_t /*end*/) { return (t.fl[pos] & kNumber) ? 1 : 0; }

// [0-9][0-9][0-9]
size_t match_three_ascii_digits(const Text& t, size_t pos, size_t end) {
    if (pos + 3 > end) return 0;
    for (size_t i = pos; i < pos + 3; ++i)
        if (t.cp[i] < '0' || t.cp[i] > '9') return 0;
    return 3;
}

// [\r\n]
size_t match_newline(const Text& t, size_t pos, size_t /*end*/) { return is_nl(t.cp[pos]) ? 1 : 0; }

// \s?X+ for the class flag X.
template <uint16_t X>
size_t match_space_then_class(const Text& t, size_t pos, size_t end) {
    auto cls = [&](size_t i) { return (t.fl[i] & X) != 0; };
    if ((t.fl[pos] & kWs) && has(t, pos + 1, end, X)) return run(t, pos + 1, end, cls) - pos;
    if (t.fl[pos] & X) return run(t, pos, end, cls) - pos;
    return 0;
}

// [一-龥ࠀ-一가-퟿]+ : U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF.
size_t match_cjk(const Text& t, size_t pos, size_t end) {
    auto pred = [&](size_t i) {
        const uint32_t c = t.cp[i];
        return (c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
    };
    return run(t, pos, end, pred) - pos;
}

using Chunks = std::vector<std::pair<size_t, size_t>>;  // codepoint ranges [b, e)

Chunks apply(const Text& t, const Chunks& in, Matcher m) {
    Chunks out;
    out.reserve(in.size() * 2);
    for (const auto& [b, e] : in) {
        size_t pos = b, gap = b;
        while (pos < e) {
            const size_t n = m(t, pos, e);
            if (n == 0) {
                ++pos;
                continue;
            }
            if (gap < pos) out.emplace_back(gap, pos);
            out.emplace_back(pos, pos + n);
            pos += n;
            gap = pos;
        }
        if (gap < e) out.emplace_back(gap, e);
    }
    return out;
}

std::vector<Matcher> chain(PreTokenizer p) {
    switch (p) {
        case PreTokenizer::Default:
            return {match_default_punct, match_gpt2, match_numbers, match_three_ascii_digits};
        case PreTokenizer::Gpt2: return {match_gpt2};
        case PreTokenizer::Llama3: return {match_llama3};
        case PreTokenizer::Qwen2: return {match_qwen2};
        case PreTokenizer::DeepseekCoder:
            return {match_newline, match_space_then_class<kLetter>, match_space_then_class<kPunctuation>,
                    match_cjk, match_number};
        case PreTokenizer::Refact: return {match_number, match_gpt2};
    }
    return {match_gpt2};
}

struct Name {
    const char* name;
    PreTokenizer pre;
};
const Name kNames[] = {
    {"default", PreTokenizer::Default},
    {"gpt-2", PreTokenizer::Gpt2},
    {"phi-2", PreTokenizer::Gpt2},
    {"mpt", PreTokenizer::Gpt2},
    {"olmo", PreTokenizer::Gpt2},
    {"llama-bpe", PreTokenizer::Llama3},
    {"llama3", PreTokenizer::Llama3},
    {"llama-v3", PreTokenizer::Llama3},
    {"falcon3", PreTokenizer::Llama3},
    {"qwen2", PreTokenizer::Qwen2},
    {"deepseek-r1-qwen", PreTokenizer::Qwen2},
    {"deepseek-coder", PreTokenizer::DeepseekCoder},
    {"refact", PreTokenizer::Refact},
    {"starcoder", PreTokenizer::Refact},
};

}  // namespace

bool pre_tokenizer_from_name(std::string_view name, PreTokenizer* out) {
    for (const Name& n : kNames) {
        if (name == n.name) {
            *out = n.pre;
            return true;
        }
    }
    return false;
}

const char* pre_tokenizer_name(PreTokenizer p) {
    switch (p) {
        case PreTokenizer::Default: return "default";
        case PreTokenizer::Gpt2: return "gpt-2";
        case PreTokenizer::Llama3: return "llama-bpe";
        case PreTokenizer::Qwen2: return "qwen2";
        case PreTokenizer::DeepseekCoder: return "deepseek-coder";
        case PreTokenizer::Refact: return "refact";
    }
    return "?";
}

std::vector<std::pair<size_t, size_t>> pre_tokenize(PreTokenizer p, std::string_view text) {
    if (text.empty()) return {};
    const Text t(text);
    Chunks chunks{{0, t.size()}};
    for (Matcher m : chain(p)) chunks = apply(t, chunks, m);
    for (auto& [b, e] : chunks) {
        b = t.offset[b];
        e = t.offset[e];
    }
    return chunks;
}

}  // namespace kv::model::unicode
