// Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata.
//
// Supported `tokenizer.ggml.model` values:
//   "llama"  SentencePiece-style BPE over UTF-8 characters: pieces merged by score, "▁" for a
//            space (and one prepended to each text fragment when add_space_prefix), byte fallback
//            through the <0xXX> tokens.
//   "gpt2"   byte-level BPE: the text is pre-tokenized according to `tokenizer.ggml.pre` (see
//            unicode::PreTokenizer for the accepted names), each piece's bytes are written with
//            GPT-2's byte-to-unicode mapping and merged by rank (`tokenizer.ggml.merges`).
// Any other model is KV_ERR_UNSUPPORTED, naming it. An unknown `tokenizer.ggml.pre` is also
// KV_ERR_UNSUPPORTED, naming it (a wrong pre-tokenizer silently gives wrong tokens, so we refuse
// rather than guess); an absent one means "default", as in llama.cpp.
//
// Malformed metadata is KV_ERR_BAD_MODEL with a message naming the key: no/empty
// tokenizer.ggml.tokens, scores or token_type of another length than tokens, a token type outside
// 0..6, a BYTE token whose text is not <0xXX>, a merge without a space, gpt2 without merges, a
// bos/eos/unk/eot/eom id outside the vocabulary. (pad/sep ids outside it are ignored, as are the
// sentinel values -1 / 0xFFFFFFFF meaning "none".)
//
// Deliberate choices:
//   - Defaults when keys are absent: "llama": bos 1, eos 2, unk 0, add_bos true, add_eos false,
//     add_space_prefix true; "gpt2": no special ids, add_bos true only for the llama3 family.
//   - Special tokens in the input text: USER_DEFINED tokens always match (as in Hugging Face
//     tokenizers and llama.cpp); CONTROL and UNKNOWN tokens match only with parse_special. Longer
//     tokens are split out first.
//   - Invalid UTF-8 in the input is kept byte for byte: "llama" sends each invalid byte through
//     byte fallback, "gpt2" classifies it as U+FFFD for pre-tokenization but encodes the original
//     byte. decode(encode(x)) == x then holds for any bytes x (except around special-token text)
//     where the vocabulary can spell every byte: always for "llama" with <0xXX> tokens; for
//     "gpt2" only if all 256 byte-level characters are normal tokens (gpt-2's are; refact lacks
//     the bytes valid UTF-8 never uses, deepseek-coder has them only as user-defined tokens).
//   - Whitespace next to special tokens is kept, except where llama.cpp strips it by model name:
//     a general.name containing "phi-3" or "phi3" (any case) gives every special token but <unk>,
//     <s> and <|endoftext|> llama.cpp's RSTRIP, so the ASCII whitespace after its text in the
//     input is dropped ("</s> hi" -> </s>, "▁hi" rather than </s>, "▁", "▁hi"). The attribute
//     is Hugging Face's per-token `rstrip`, which GGUF does not store. SPM's space prefix after a
//     special token applies either way.
//   - Not implemented: llama.cpp's LSTRIP attribute (set only for jina-v2 and BERT vocabularies,
//     which are not supported), clean_up_tokenization_spaces on decode, and tokenizer models
//     bert/t5/rwkv.
//   - A gpt2 merge whose parts or result are not in the vocabulary is ignored (Hugging Face
//     refuses to load such a file; llama.cpp would fall back to single bytes).
//
// Thread safety: a Tokenizer is immutable after construction; all const methods may run
// concurrently. It copies what it needs, so the GgufFile may be closed afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/unicode.h"

namespace kv::model {

class GgufFile;

// Values as stored in tokenizer.ggml.token_type.
enum class TokenType : uint8_t {
    Undefined = 0,  // treated as Normal
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

enum class VocabType : uint8_t {
    Spm,  // tokenizer.ggml.model "llama"
    Bpe,  // tokenizer.ggml.model "gpt2"
};

struct DecodeOptions {
    // SentencePiece vocabularies with add_space_prefix: drop the space that encode() put in front
    // of the text, i.e. one leading space of the first token that is not preceded by anything but
    // control tokens (such as BOS). No effect for other vocabularies.
    bool strip_leading_space = true;
    // Control and unknown (and unused) tokens: write their text (e.g. "<s>") instead of nothing.
    bool render_special = false;
};

class Tokenizer {
public:
    // Reads tokenizer.ggml.* from `gguf`. Throws kv::Error (KV_ERR_BAD_MODEL, KV_ERR_UNSUPPORTED).
    explicit Tokenizer(const GgufFile& gguf);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Text (any bytes) to token ids. add_special: prepend BOS / append EOS as the model asks
    // (add_bos() / add_eos(), when those ids exist). parse_special: text equal to a control or
    // unknown token's text becomes that token (user-defined tokens always do).
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // Ids to bytes (not necessarily valid UTF-8 if the ids end inside a character).
    // KV_ERR_BAD_TOKEN for an id outside [0, vocab_size()).
    std::string decode(const int32_t* ids, size_t n, const DecodeOptions& opts = {}) const;
    std::string decode(const std::vector<int32_t>& ids, const DecodeOptions& opts = {}) const {
        return decode(ids.data(), ids.size(), opts);
    }

    // One token's bytes, for streaming. `at_start`: nothing but control tokens precede this one
    // in the text (then strip_leading_space applies). Concatenating the pieces of ids[0..n) with
    // at_start true up to and including the first non-control token gives decode(ids, n, opts);
    // StreamDecoder below keeps that state. KV_ERR_BAD_TOKEN for a bad id.
    std::string piece(int32_t id, bool at_start = false, const DecodeOptions& opts = {}) const;
    void append_piece(std::string& out, int32_t id, bool at_start = false, const DecodeOptions& opts = {}) const;

    // Vocabulary.
    size_t vocab_size() const;
    VocabType type() const;
    unicode::PreTokenizer pre_tokenizer() const;  // Default for SPM (unused there)
    TokenType token_type(int32_t id) const;       // KV_ERR_BAD_TOKEN for a bad id
    std::string_view token_text(int32_t id) const;  // the raw vocabulary text
    float score(int32_t id) const;                  // 0 without tokenizer.ggml.scores
    int32_t find_token(std::string_view text) const;  // exact vocabulary text -> id, -1 if none

    // Special tokens: -1 where the model has none.
    int32_t bos() const;
    int32_t eos() const;
    int32_t eot() const;  // end of turn: tokenizer.ggml.eot_token_id, else a known text (<|eot_id|>, ...)
    int32_t eom() const;
    int32_t unk() const;
    int32_t pad() const;
    int32_t sep() const;
    int32_t nl() const;   // the token for "\n"
    bool add_bos() const;
    bool add_eos() const;
    bool add_space_prefix() const;
    // End of generation: eos, eot, eom, and control tokens with a known end-of-turn text.
    bool is_eog(int32_t id) const;
    bool is_control(int32_t id) const;  // a Control token (false for a bad id)

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer: feed ids one at a time, get the bytes to print. Holds back an
// incomplete UTF-8 character at the end until the rest arrives (flush() returns it anyway).
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tok, const DecodeOptions& opts = {}) : tok_(&tok), opts_(opts) {}
    // Bytes now complete; the concatenation of every push() and flush() is decode(all ids).
    std::string push(int32_t id);
    std::string flush();

private:
    const Tokenizer* tok_;
    DecodeOptions opts_;
    bool at_start_ = true;
    std::string pending_;
};

}  // namespace kv::model
