// Unicode support for the tokenizers: UTF-8 decoding that never fails (invalid bytes are kept as
// single-byte "invalid" units so that no input byte is lost), General_Category / White_Space
// lookups from tables generated at build time (model/unicode_tables.h), GPT-2's byte<->unicode
// mapping, and the regex-free pre-tokenizers of the byte-level BPE tokenizers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/unicode_tables.h"

namespace kv::model::unicode {

// ---- UTF-8 -------------------------------------------------------------------------------------

// Marks a byte that does not start a well-formed UTF-8 sequence (stray continuation byte,
// overlong form, surrogate, value above U+10FFFF, truncated sequence). Its `cp` is U+FFFD for
// classification purposes.
constexpr uint32_t kReplacement = 0xFFFD;

struct Decoded {
    uint32_t cp;   // the codepoint, or kReplacement for an invalid byte
    uint8_t len;   // bytes consumed: 1..4 (1 for an invalid byte)
    bool valid;
};

// Decodes the sequence starting at s[0] (n > 0 bytes available). Never reads past s[n-1].
Decoded decode_utf8(const char* s, size_t n);
// Length of the sequence starting at s[0] as decode_utf8 would consume it.
inline size_t utf8_len(const char* s, size_t n) { return decode_utf8(s, n).len; }
// Appends the UTF-8 encoding of cp (cp <= 0x10FFFF and not a surrogate, else U+FFFD).
void append_utf8(std::string& out, uint32_t cp);
std::string to_utf8(uint32_t cp);
// The length of the longest prefix of s that does not end inside an incomplete (but so far
// valid) UTF-8 sequence: a streaming consumer can emit s[0, n) and keep the rest for later.
size_t utf8_complete_prefix(std::string_view s);

// ---- properties --------------------------------------------------------------------------------

GeneralCategory category(uint32_t cp);
bool is_whitespace(uint32_t cp);  // White_Space property (regex \s)

// Coarse classes used by the pre-tokenizer regexes.
enum Flags : uint16_t {
    kLetter = 1 << 0,       // \p{L}
    kNumber = 1 << 1,       // \p{N}
    kPunctuation = 1 << 2,  // \p{P}
    kSymbol = 1 << 3,       // \p{S}
    kMark = 1 << 4,         // \p{M}
    kSeparator = 1 << 5,    // \p{Z}
    kOther = 1 << 6,        // \p{C} (unassigned included)
    kWhitespace = 1 << 7,   // \s
};
uint16_t flags(uint32_t cp);

// ---- GPT-2 byte-level mapping ------------------------------------------------------------------

// The codepoint byte b is written as in byte-level BPE vocabularies (printable Latin-1 bytes map
// to themselves, the other 68 to U+0100.. in byte order).
uint32_t byte_to_cp(uint8_t b);
// Inverse of byte_to_cp; -1 for a codepoint that no byte maps to.
int cp_to_byte(uint32_t cp);
// Appends the byte-level form of bytes [s, s+n).
void append_byte_level(std::string& out, const char* s, size_t n);

// ---- pre-tokenizers ----------------------------------------------------------------------------

// The splitting rules of tokenizer.ggml.pre values, each a hand-written equivalent of the
// regular expressions used by the reference tokenizers (named in unicode_split.cpp).
enum class PreTokenizer {
    Default,        // "default" (and absent): llama.cpp's fallback chain of four expressions
    Gpt2,           // "gpt-2", "phi-2", "mpt", "olmo"
    Llama3,         // "llama-bpe", "llama3", "llama-v3", "falcon3"
    Qwen2,          // "qwen2", "deepseek-r1-qwen"
    DeepseekCoder,  // "deepseek-coder"
    Refact,         // "refact", "starcoder"
};
// Maps a tokenizer.ggml.pre value; false if it is not recognised.
bool pre_tokenizer_from_name(std::string_view name, PreTokenizer* out);
const char* pre_tokenizer_name(PreTokenizer p);

// Splits text into pre-tokens, returned as byte ranges [begin, end) that tile the text in order
// (no byte is dropped or reordered; no range is empty). Invalid UTF-8 bytes are classified as
// U+FFFD (a symbol) and stay in the output ranges unchanged.
std::vector<std::pair<size_t, size_t>> pre_tokenize(PreTokenizer p, std::string_view text);

}  // namespace kv::model::unicode
