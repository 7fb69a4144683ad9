// Constrained sampling: a GBNF grammar compiled to a pushdown matcher over UTF-8 code points, and
// per step the set of tokens whose text keeps the output inside the grammar.
//
// Grammar (immutable once parsed; shared by a session and its forks). Every rule is a list of
// alternatives, each a sequence of elements stored flat in `elems`, ended by End:
//   Char  one code point of a character class (a literal character is a one-range class),
//   Ref   the rule it names (groups and repetitions become generated rules:
//         x* -> R ::= x R | "",  x+ -> x R*,  x? -> R ::= x | "",  x{m,n} -> m copies of x, then
//         n - m nested optionals),
//   End   the end of the alternative.
// Left recursion (a rule reaching itself through elements that may all match "") is rejected at
// parse time, so expanding rule references always terminates.
//
// GrammarMatcher: the set of parse stacks alive after the text accepted so far. A stack is a
// chain of positions in `elems` (top: the next element to match; below: where each enclosing rule
// continues), held as nodes of an arena with parent links, so stacks share their tails and
// advancing one never copies it. Every live stack's top is a Char, or the stack is empty
// ("accepting": the grammar may end here). A reference that ends its alternative is not pushed
// (tail call), so right recursion (x*) keeps the stacks shallow however long the output grows.
// Token texts may end inside a UTF-8 sequence: the pending bytes are kept and a stack survives
// them when its class could hold some code point with that prefix.
//
// Which tokens fit: a byte trie of every token's text (TokenTrie, built once per model) walked
// depth-first with the stack set, pruning a subtree as soon as no stack survives its prefix. EOG
// tokens fit exactly when the grammar may end (and no UTF-8 sequence is pending); other tokens
// with no text (BOS, control tokens) never fit.
//
// Threading: a Grammar and a TokenTrie are immutable and may be shared across threads; a
// GrammarMatcher belongs to one session.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kv::model {
class Tokenizer;
}

namespace kv::engine {

class Grammar {
public:
    // Parses GBNF text with `root` as the start rule. Throws kv::Error KV_ERR_INVALID_ARGUMENT
    // naming the line and column of the problem (syntax, an undefined or twice-defined rule, left
    // recursion, a missing root).
    static std::shared_ptr<const Grammar> parse(std::string_view text, std::string_view root = "root");

    enum class Op : uint8_t { End, Ref, Char };
    struct Elem {
        Op op;
        uint32_t arg;  // Ref: rule id; Char: index into classes
    };
    // A set of code points: the union of inclusive ranges, or its complement when negated.
    struct CharClass {
        bool negated = false;
        std::vector<std::pair<uint32_t, uint32_t>> ranges;
        bool matches(uint32_t cp) const;
        // Whether some code point in [lo, hi] matches.
        bool matches_any(uint32_t lo, uint32_t hi) const;
    };

    std::vector<Elem> elems;                 // every alternative's elements, each ended by End
    std::vector<std::vector<uint32_t>> alts; // rule id -> start index in elems of each alternative
    std::vector<CharClass> classes;
    std::vector<std::string> rule_names;     // rule id -> name (generated rules: "name~N")
    uint32_t root = 0;
};

// Every token's text (the bytes kv_token_to_piece gives mid-text) as a byte trie, and which
// tokens end generation.
class TokenTrie {
public:
    explicit TokenTrie(const model::Tokenizer& tokenizer);
    // Any vocabulary: text[t] and eog[t] per token (tests).
    TokenTrie(std::vector<std::string> texts, std::vector<uint8_t> eog_flags);

    struct Node {
        uint32_t child_begin = 0, child_end = 0;  // edges[child_begin, child_end), sorted by byte
        uint32_t token_begin = 0, token_end = 0;  // tokens[...] whose text ends here
    };
    struct Edge {
        uint8_t byte;
        uint32_t node;
    };
    std::vector<Node> nodes;  // nodes[0]: the root (empty text)
    std::vector<Edge> edges;
    std::vector<int32_t> tokens;
    std::vector<std::string> text;  // token id -> bytes
    std::vector<uint8_t> eog;       // token id -> 1 when it ends generation
    uint32_t max_len = 0;           // longest text, bytes
    uint32_t n_vocab() const { return uint32_t(text.size()); }

private:
    void build();
};

class GrammarMatcher {
public:
    GrammarMatcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie);

    // Sets logits[t] = -inf for every token t that does not fit (n == trie's vocabulary size).
    void mask(float* logits, uint32_t n);
    // Whether token t fits (one token's walk: cheaper than mask()).
    bool allows(int32_t token);
    // Advances over a token that fits, remembering it was accepted at sequence position `pos`
    // (for truncate). Returns false, changing nothing, when it does not fit. EOG tokens change
    // nothing.
    bool accept(int32_t token, uint32_t pos);
    // The grammar may end here.
    bool can_end() const;
    // Back to the start (nothing accepted).
    void reset();
    // Forgets the tokens accepted at positions >= pos (the matcher replays the rest).
    void truncate(uint32_t pos);
    // Tokens accepted so far.
    size_t n_accepted() const { return history_.size(); }

private:
    static constexpr uint32_t kNone = 0xFFFFFFFFu;    // below the bottom of a stack
    static constexpr uint32_t kAccept = 0xFFFFFFFEu;  // an empty (accepting) stack in a set
    struct Node {
        uint32_t pos;     // index into elems
        uint32_t parent;  // node below, or kNone
        uint64_t hash;    // of the whole chain, for deduplication
    };
    struct Utf8 {
        uint32_t value = 0;
        uint32_t pending = 0;  // continuation bytes still expected
        uint32_t least = 0;    // the smallest code point this sequence's length may encode
    };
    enum class Step { Invalid, Partial, Complete };

    uint32_t push(uint32_t pos, uint32_t parent);
    bool same(uint32_t a, uint32_t b) const;
    void add(std::vector<uint32_t>& out, uint32_t top) const;
    void expand(uint32_t node, std::vector<uint32_t>& out);
    void advance(const std::vector<uint32_t>& in, uint32_t cp, std::vector<uint32_t>& out);
    bool feasible(const std::vector<uint32_t>& in, const Utf8& u) const;
    static Step step(Utf8& u, uint8_t byte);
    static std::pair<uint32_t, uint32_t> pending_range(const Utf8& u);
    static bool partial_ok(const Utf8& u);
    // Runs `text` from the current state; on success, stacks are left in `out` and *u updated.
    bool walk(const std::string& text, std::vector<uint32_t>& out, Utf8* u);
    void dfs(uint32_t node, const std::vector<uint32_t>& in, Utf8 u, uint32_t depth, std::vector<uint8_t>& ok);
    void compact();
    void start();

    std::shared_ptr<const Grammar> g_;
    std::shared_ptr<const TokenTrie> trie_;
    std::vector<Node> arena_;
    std::vector<uint32_t> stacks_;  // live stack tops (or kAccept)
    Utf8 utf8_;
    std::vector<std::pair<uint32_t, int32_t>> history_;  // (position, token) accepted
    std::vector<std::vector<uint32_t>> level_;           // scratch stack sets per trie depth
    std::vector<uint8_t> ok_;                            // scratch: token fits
};

}  // namespace kv::engine
