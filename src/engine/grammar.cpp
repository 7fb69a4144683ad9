#include "engine/grammar.h"

#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstring>
#include <map>

#include "common/error.h"
#include "model/tokenizer.h"

namespace kv::engine {

// ---- Parsing ------------------------------------------------------------------------------------

namespace {

constexpr uint32_t kMaxRepeat = 1000;  // the largest m or n of x{m,n}
constexpr uint32_t kMaxCodePoint = 0x10FFFF;

bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

class Parser {
public:
    Parser(std::string_view text, Grammar& g) : src_(text), g_(g) {}

    void parse(std::string_view root) {
        skip_space();
        while (at_ < src_.size()) {
            parse_rule();
            skip_space();
        }
        for (auto& [name, info] : symbols_)
            if (!info.defined) error_at(info.first_use, "rule '%s' is used but never defined", name.c_str());
        auto it = symbols_.find(std::string(root));
        if (it == symbols_.end())
            fail(KV_ERR_INVALID_ARGUMENT, "grammar: no rule named '%.*s' (the root rule)", int(root.size()), root.data());
        g_.root = it->second.id;
        check_left_recursion();
    }

private:
    struct Symbol {
        uint32_t id = 0;
        bool defined = false;
        size_t first_use = 0;
    };
    using Seq = std::vector<Grammar::Elem>;
    using Alts = std::vector<Seq>;

    [[noreturn]] void error_at(size_t pos, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
        uint32_t line = 1, col = 1;
        for (size_t i = 0; i < pos && i < src_.size(); ++i) {
            if (src_[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        fail(KV_ERR_INVALID_ARGUMENT, "grammar: line %u, column %u: %s", line, col, msg);
    }

    bool eof() const { return at_ >= src_.size(); }
    char peek(size_t k = 0) const { return at_ + k < src_.size() ? src_[at_ + k] : '\0'; }

    // Spaces, tabs, newlines and # comments.
    void skip_space() {
        while (!eof()) {
            char c = peek();
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                ++at_;
            } else if (c == '#') {
                while (!eof() && peek() != '\n') ++at_;
            } else {
                break;
            }
        }
    }

    std::string parse_name() {
        size_t b = at_;
        while (!eof() && is_word(peek())) ++at_;
        if (b == at_) error_at(at_, "expected a rule name");
        return std::string(src_.substr(b, at_ - b));
    }

    // A name followed by "::=" starts the next rule (so a rule may span lines).
    bool at_rule_start() const {
        size_t p = at_;
        if (p >= src_.size() || !is_word(src_[p])) return false;
        while (p < src_.size() && is_word(src_[p])) ++p;
        while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\r')) ++p;
        return src_.compare(p, 3, "::=") == 0;
    }

    Symbol& symbol(const std::string& name, size_t use) {
        auto it = symbols_.find(name);
        if (it != symbols_.end()) return it->second;
        Symbol s;
        s.id = new_rule(name);
        s.first_use = use;
        return symbols_.emplace(name, s).first->second;
    }

    uint32_t new_rule(const std::string& name) {
        g_.alts.emplace_back();
        g_.rule_names.push_back(name);
        rules_.emplace_back();
        return uint32_t(g_.alts.size() - 1);
    }

    uint32_t generated(const Alts& alts) {
        uint32_t id = new_rule(current_ + "~" + std::to_string(g_.alts.size()));
        rules_[id] = alts;
        return id;
    }

    void parse_rule() {
        size_t name_at = at_;
        std::string name = parse_name();
        skip_space();
        if (src_.compare(at_, 3, "::=") != 0) error_at(at_, "expected '::=' after rule name '%s'", name.c_str());
        at_ += 3;
        Symbol& sym = symbol(name, name_at);
        if (sym.defined) error_at(name_at, "rule '%s' is defined twice", name.c_str());
        sym.defined = true;
        current_ = name;
        const uint32_t id = sym.id;  // `sym` may move as rules are added
        Alts alts = parse_alternatives(false);
        rules_[id] = std::move(alts);
    }

    Alts parse_alternatives(bool nested) {
        Alts alts;
        alts.push_back(parse_sequence(nested));
        while (peek() == '|') {
            ++at_;
            alts.push_back(parse_sequence(nested));
        }
        return alts;
    }

    Seq parse_sequence(bool nested) {
        Seq seq;
        for (;;) {
            skip_space();
            if (eof() || peek() == '|' || peek() == ')') break;
            if (!nested && at_rule_start()) break;
            size_t item_at = at_;
            Seq item = parse_primary(nested);
            // Postfix repetition.
            skip_space_inline();
            char c = peek();
            if (c == '*' || c == '+' || c == '?') {
                ++at_;
                if (c == '*') item = {ref(star(item))};
                else if (c == '+') {
                    Seq s = item;
                    s.push_back(ref(star(item)));
                    item = s;
                } else {
                    item = {ref(generated({item, {}}))};
                }
            } else if (c == '{') {
                ++at_;
                uint32_t m = parse_count(), n = m;
                bool unbounded = false;
                skip_space_inline();
                if (peek() == ',') {
                    ++at_;
                    skip_space_inline();
                    if (peek() == '}') unbounded = true;
                    else n = parse_count();
                }
                skip_space_inline();
                if (peek() != '}') error_at(at_, "expected '}' to close a repetition count");
                ++at_;
                if (!unbounded && n < m) error_at(item_at, "repetition {%u,%u}: the maximum is below the minimum", m, n);
                Seq s;
                for (uint32_t i = 0; i < m; ++i) s.insert(s.end(), item.begin(), item.end());
                if (unbounded) {
                    s.push_back(ref(star(item)));
                } else if (n > m) {
                    // n - m nested optionals: O1 ::= x | "", Ok ::= x O(k-1) | "".
                    uint32_t inner = generated({item, {}});
                    for (uint32_t k = 1; k < n - m; ++k) {
                        Seq more = item;
                        more.push_back(ref(inner));
                        inner = generated({more, {}});
                    }
                    s.push_back(ref(inner));
                }
                item = s;
            }
            seq.insert(seq.end(), item.begin(), item.end());
        }
        return seq;
    }

    void skip_space_inline() {
        while (peek() == ' ' || peek() == '\t') ++at_;
    }

    uint32_t parse_count() {
        skip_space_inline();
        size_t b = at_;
        uint64_t v = 0;
        while (peek() >= '0' && peek() <= '9') {
            v = v * 10 + uint64_t(peek() - '0');
            if (v > kMaxRepeat) error_at(b, "repetition count above %u", kMaxRepeat);
            ++at_;
        }
        if (b == at_) error_at(at_, "expected a repetition count");
        return uint32_t(v);
    }

    static Grammar::Elem ref(uint32_t rule) { return {Grammar::Op::Ref, rule}; }

    uint32_t star(const Seq& item) {
        uint32_t id = new_rule(current_ + "~" + std::to_string(g_.alts.size()));
        Seq loop = item;
        loop.push_back(ref(id));
        rules_[id] = {loop, {}};
        return id;
    }

    Grammar::Elem char_elem(Grammar::CharClass c) {
        g_.classes.push_back(std::move(c));
        return {Grammar::Op::Char, uint32_t(g_.classes.size() - 1)};
    }

    Seq parse_primary(bool nested) {
        (void)nested;
        char c = peek();
        if (c == '"') {
            ++at_;
            Seq s;
            while (!eof() && peek() != '"') {
                uint32_t cp = parse_char();
                Grammar::CharClass cc;
                cc.ranges.push_back({cp, cp});
                s.push_back(char_elem(std::move(cc)));
            }
            if (eof()) error_at(at_, "unterminated string literal");
            ++at_;
            return s;
        }
        if (c == '[') {
            size_t open = at_;
            ++at_;
            Grammar::CharClass cc;
            if (peek() == '^') {
                cc.negated = true;
                ++at_;
            }
            while (!eof() && peek() != ']') {
                uint32_t lo = parse_char(), hi = lo;
                if (peek() == '-' && peek(1) != ']' && at_ + 1 < src_.size()) {
                    ++at_;
                    hi = parse_char();
                    if (hi < lo) error_at(at_, "character range U+%04X-U+%04X is reversed", lo, hi);
                }
                cc.ranges.push_back({lo, hi});
            }
            if (eof()) error_at(open, "unterminated character class");
            ++at_;
            if (cc.ranges.empty() && !cc.negated) error_at(open, "empty character class matches nothing");
            return {char_elem(std::move(cc))};
        }
        if (c == '.') {
            ++at_;
            Grammar::CharClass any;
            any.negated = true;  // the complement of nothing
            return {char_elem(std::move(any))};
        }
        if (c == '(') {
            size_t open = at_;
            ++at_;
            Alts alts = parse_alternatives(true);
            skip_space();
            if (peek() != ')') error_at(open, "unclosed '('");
            ++at_;
            if (alts.size() == 1) return alts[0];  // a plain group is its sequence
            return {ref(generated(alts))};
        }
        if (is_word(c)) {
            size_t b = at_;
            std::string name = parse_name();
            return {ref(symbol(name, b).id)};
        }
        if (eof()) error_at(at_, "unexpected end of grammar");
        error_at(at_, "unexpected character '%c'", c);
    }

    // One code point of a literal or class: UTF-8, or an escape.
    uint32_t parse_char() {
        size_t b = at_;
        unsigned char c = static_cast<unsigned char>(peek());
        if (c == '\\') {
            ++at_;
            char e = peek();
            ++at_;
            switch (e) {
                case 'n': return '\n';
                case 'r': return '\r';
                case 't': return '\t';
                case '0': return 0;
                case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '^': return uint32_t(e);
                case 'x': return parse_hex(2, b);
                case 'u': return parse_hex(4, b);
                case 'U': return parse_hex(8, b);
                default: error_at(b, "unknown escape '\\%c'", e ? e : '0');
            }
        }
        if (c < 0x80) {
            ++at_;
            return c;
        }
        int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0) error_at(b, "invalid UTF-8 byte 0x%02X", c);
        uint32_t cp = c & (0x3F >> n);
        ++at_;
        for (int i = 0; i < n; ++i) {
            unsigned char d = static_cast<unsigned char>(peek());
            if ((d & 0xC0) != 0x80) error_at(b, "invalid UTF-8 sequence");
            cp = (cp << 6) | (d & 0x3F);
            ++at_;
        }
        return cp;
    }

    uint32_t parse_hex(int digits, size_t b) {
        uint32_t v = 0;
        for (int i = 0; i < digits; ++i) {
            char h = peek();
            int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) error_at(b, "escape needs %d hex digits", digits);
            v = v * 16 + uint32_t(d);
            ++at_;
        }
        if (v > kMaxCodePoint) error_at(b, "code point 0x%X is beyond U+10FFFF", v);
        return v;
    }

public:
    // Lays every rule's alternatives out flat.
    void emit() {
        for (uint32_t r = 0; r < rules_.size(); ++r) {
            for (const Seq& s : rules_[r]) {
                g_.alts[r].push_back(uint32_t(g_.elems.size()));
                g_.elems.insert(g_.elems.end(), s.begin(), s.end());
                g_.elems.push_back({Grammar::Op::End, 0});
            }
        }
    }

private:
    // A rule that reaches itself through a prefix that may match "" would expand forever.
    void check_left_recursion() {
        const size_t R = rules_.size();
        std::vector<uint8_t> nullable(R, 0);
        for (bool changed = true; changed;) {
            changed = false;
            for (size_t r = 0; r < R; ++r) {
                if (nullable[r]) continue;
                for (const Seq& s : rules_[r]) {
                    bool all = std::all_of(s.begin(), s.end(), [&](const Grammar::Elem& e) {
                        return e.op == Grammar::Op::Ref && nullable[e.arg];
                    });
                    if (all) {
                        nullable[r] = 1;
                        changed = true;
                        break;
                    }
                }
            }
        }
        std::vector<std::vector<uint32_t>> left(R);
        for (size_t r = 0; r < R; ++r)
            for (const Seq& s : rules_[r])
                for (const Grammar::Elem& e : s) {
                    if (e.op != Grammar::Op::Ref) break;
                    left[r].push_back(e.arg);
                    if (!nullable[e.arg]) break;
                }
        std::vector<uint8_t> state(R, 0);  // 0 new, 1 on the path, 2 done
        for (size_t r0 = 0; r0 < R; ++r0) {
            if (state[r0]) continue;
            std::vector<std::pair<uint32_t, size_t>> path{{uint32_t(r0), 0}};
            state[r0] = 1;
            while (!path.empty()) {
                auto& [r, i] = path.back();
                if (i < left[r].size()) {
                    uint32_t n = left[r][i++];
                    if (state[n] == 1) {
                        std::string name = g_.rule_names[n];
                        name = name.substr(0, name.find('~'));
                        fail(KV_ERR_INVALID_ARGUMENT, "grammar: rule '%s' is left-recursive (it can reach itself before matching a character)", name.c_str());
                    }
                    if (state[n] == 0) {
                        state[n] = 1;
                        path.push_back({n, 0});
                    }
                } else {
                    state[r] = 2;
                    path.pop_back();
                }
            }
        }
    }

    std::string_view src_;
    Grammar& g_;
    size_t at_ = 0;
    std::map<std::string, Symbol> symbols_;
    std::vector<Alts> rules_;  // rule id -> alternatives, before emit()
    std::string current_;
};

}  // namespace

std::shared_ptr<const Grammar> Grammar::parse(std::string_view text, std::string_view root) {
    auto g = std::make_shared<Grammar>();
    Parser p(text, *g);
    p.parse(root);
    p.emit();
    return g;
}

bool Grammar::CharClass::matches(uint32_t cp) const {
    bool in = false;
    for (const auto& [lo, hi] : ranges)
        if (cp >= lo && cp <= hi) {
            in = true;
            break;
        }
    return in != negated;
}

bool Grammar::CharClass::matches_any(uint32_t lo, uint32_t hi) const {
    if (!negated) {
        for (const auto& r : ranges)
            if (r.first <= hi && r.second >= lo) return true;
        return false;
    }
    // Some point of [lo, hi] outside every range: walk the ranges covering lo upward.
    uint32_t p = lo;
    for (bool moved = true; moved && p <= hi;) {
        moved = false;
        for (const auto& r : ranges)
            if (r.first <= p && r.second >= p) {
                if (r.second >= hi) return false;
                p = r.second + 1;
                moved = true;
            }
    }
    return p <= hi;
}

// ---- Token trie ---------------------------------------------------------------------------------

TokenTrie::TokenTrie(const model::Tokenizer& tok) {
    const uint32_t V = uint32_t(tok.vocab_size());
    text.resize(V);
    eog.resize(V);
    model::DecodeOptions mid;
    mid.strip_leading_space = false;
    for (uint32_t t = 0; t < V; ++t) {
        text[t] = tok.piece(int32_t(t), false, mid);
        eog[t] = tok.is_eog(int32_t(t)) ? 1 : 0;
    }
    build();
}

TokenTrie::TokenTrie(std::vector<std::string> texts, std::vector<uint8_t> eog_flags)
    : text(std::move(texts)), eog(std::move(eog_flags)) {
    KV_CHECK(text.size() == eog.size());
    build();
}

void TokenTrie::build() {
    const uint32_t V = uint32_t(text.size());
    for (const std::string& t : text) max_len = std::max<uint32_t>(max_len, uint32_t(t.size()));
    // Sort the tokens by text; each trie node's children are then contiguous runs.
    std::vector<int32_t> order(V);
    for (uint32_t t = 0; t < V; ++t) order[t] = int32_t(t);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return text[a] < text[b] || (text[a] == text[b] && a < b); });
    tokens = order;
    // Build breadth-first over [begin, end) ranges of `order` sharing a prefix of length depth.
    struct Pending {
        uint32_t node, begin, end, depth;
    };
    nodes.emplace_back();
    std::vector<Pending> queue{{0, 0, V, 0}};
    for (size_t qi = 0; qi < queue.size(); ++qi) {
        Pending p = queue[qi];
        uint32_t i = p.begin;
        // Tokens whose text is exactly the prefix come first in sorted order.
        while (i < p.end && text[order[i]].size() == p.depth) ++i;
        nodes[p.node].token_begin = p.begin;
        nodes[p.node].token_end = i;
        std::vector<Pending> kids;
        while (i < p.end) {
            uint8_t b = uint8_t(text[order[i]][p.depth]);
            uint32_t j = i;
            while (j < p.end && uint8_t(text[order[j]][p.depth]) == b) ++j;
            uint32_t child = uint32_t(nodes.size());
            nodes.emplace_back();
            kids.push_back({child, i, j, p.depth + 1});
            i = j;
        }
        nodes[p.node].child_begin = uint32_t(edges.size());
        for (const Pending& k : kids) edges.push_back({uint8_t(text[order[k.begin]][p.depth]), k.node});
        nodes[p.node].child_end = uint32_t(edges.size());
        queue.insert(queue.end(), kids.begin(), kids.end());
    }
}

// ---- Matcher ------------------------------------------------------------------------------------

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie)
    : g_(std::move(grammar)), trie_(std::move(trie)) {
    start();
}

void GrammarMatcher::start() {
    arena_.clear();
    stacks_.clear();
    utf8_ = {};
    for (uint32_t a : g_->alts[g_->root]) expand(push(a, kNone), stacks_);
}

void GrammarMatcher::reset() {
    history_.clear();
    start();
}

uint32_t GrammarMatcher::push(uint32_t pos, uint32_t parent) {
    uint64_t h = parent == kNone ? 0x9E3779B97F4A7C15ull : arena_[parent].hash;
    h = (h ^ (uint64_t(pos) + 0x632BE59BD9B4E019ull)) * 0x100000001B3ull;
    h ^= h >> 29;
    arena_.push_back({pos, parent, h});
    return uint32_t(arena_.size() - 1);
}

bool GrammarMatcher::same(uint32_t a, uint32_t b) const {
    while (a != b) {
        if (a == kNone || b == kNone || a == kAccept || b == kAccept) return false;
        const Node &x = arena_[a], &y = arena_[b];
        if (x.hash != y.hash || x.pos != y.pos) return false;
        a = x.parent;
        b = y.parent;
    }
    return true;
}

void GrammarMatcher::add(std::vector<uint32_t>& out, uint32_t top) const {
    for (uint32_t o : out)
        if (same(o, top)) return;
    out.push_back(top);
}

void GrammarMatcher::expand(uint32_t node, std::vector<uint32_t>& out) {
    for (;;) {
        if (node == kNone) {
            add(out, kAccept);
            return;
        }
        const uint32_t pos = arena_[node].pos, parent = arena_[node].parent;
        const Grammar::Elem e = g_->elems[pos];
        if (e.op == Grammar::Op::End) {
            node = parent;
            continue;
        }
        if (e.op == Grammar::Op::Char) {
            add(out, node);
            return;
        }
        // A reference: continue after it once the rule is matched (not pushed when nothing
        // follows in this alternative: a tail call).
        const uint32_t cont = g_->elems[pos + 1].op == Grammar::Op::End ? parent : push(pos + 1, parent);
        const auto& alts = g_->alts[e.arg];
        for (uint32_t a : alts) expand(push(a, cont), out);
        return;
    }
}

void GrammarMatcher::advance(const std::vector<uint32_t>& in, uint32_t cp, std::vector<uint32_t>& out) {
    out.clear();
    for (uint32_t top : in) {
        if (top == kAccept) continue;
        const Node n = arena_[top];
        if (!g_->classes[g_->elems[n.pos].arg].matches(cp)) continue;
        expand(push(n.pos + 1, n.parent), out);
    }
}

// The code points a pending sequence can still become: [lo, hi] (empty when lo > hi).
std::pair<uint32_t, uint32_t> GrammarMatcher::pending_range(const Utf8& u) {
    const uint32_t shift = 6 * u.pending;
    const uint32_t lo = u.value << shift, hi = lo | ((1u << shift) - 1);
    return {std::max(lo, u.least), std::min(hi, kMaxCodePoint)};
}

bool GrammarMatcher::partial_ok(const Utf8& u) {
    auto [lo, hi] = pending_range(u);
    return lo <= hi;
}

bool GrammarMatcher::feasible(const std::vector<uint32_t>& in, const Utf8& u) const {
    auto [lo, hi] = pending_range(u);
    for (uint32_t top : in) {
        if (top == kAccept) continue;
        if (g_->classes[g_->elems[arena_[top].pos].arg].matches_any(lo, hi)) return true;
    }
    return false;
}

GrammarMatcher::Step GrammarMatcher::step(Utf8& u, uint8_t b) {
    if (u.pending == 0) {
        if (b < 0x80) {
            u.value = b;
            return Step::Complete;
        }
        // Overlong forms (a code point in more bytes than it needs) are invalid UTF-8.
        if ((b & 0xE0) == 0xC0) u = {uint32_t(b & 0x1F), 1, 0x80};
        else if ((b & 0xF0) == 0xE0) u = {uint32_t(b & 0x0F), 2, 0x800};
        else if ((b & 0xF8) == 0xF0) u = {uint32_t(b & 0x07), 3, 0x10000};
        else return Step::Invalid;
        return partial_ok(u) ? Step::Partial : Step::Invalid;
    }
    if ((b & 0xC0) != 0x80) return Step::Invalid;
    u.value = (u.value << 6) | (b & 0x3F);
    if (--u.pending == 0) return u.value >= u.least && u.value <= kMaxCodePoint ? Step::Complete : Step::Invalid;
    return partial_ok(u) ? Step::Partial : Step::Invalid;
}

bool GrammarMatcher::can_end() const {
    return utf8_.pending == 0 && std::find(stacks_.begin(), stacks_.end(), kAccept) != stacks_.end();
}

bool GrammarMatcher::walk(const std::string& text, std::vector<uint32_t>& out, Utf8* u) {
    std::vector<uint32_t> cur = stacks_, next;
    for (char ch : text) {
        switch (step(*u, uint8_t(ch))) {
            case Step::Invalid: return false;
            case Step::Partial:
                if (!feasible(cur, *u)) return false;
                break;
            case Step::Complete:
                advance(cur, u->value, next);
                if (next.empty()) return false;
                cur.swap(next);
                u->value = 0;
                break;
        }
    }
    out.swap(cur);
    return true;
}

bool GrammarMatcher::allows(int32_t token) {
    if (token < 0 || uint32_t(token) >= trie_->n_vocab()) return false;
    const std::string& text = trie_->text[size_t(token)];
    if (text.empty()) return trie_->eog[size_t(token)] && can_end();
    const size_t mark = arena_.size();
    std::vector<uint32_t> out;
    Utf8 u = utf8_;
    bool fits = walk(text, out, &u);
    arena_.resize(mark);
    return fits;
}

bool GrammarMatcher::accept(int32_t token, uint32_t pos) {
    if (token < 0 || uint32_t(token) >= trie_->n_vocab()) return false;
    const std::string& text = trie_->text[size_t(token)];
    if (text.empty()) return trie_->eog[size_t(token)] && can_end();
    const size_t mark = arena_.size();
    std::vector<uint32_t> out;
    Utf8 u = utf8_;
    if (!walk(text, out, &u)) {
        arena_.resize(mark);
        return false;
    }
    stacks_.swap(out);
    utf8_ = u;
    history_.push_back({pos, token});
    compact();
    return true;
}

void GrammarMatcher::truncate(uint32_t pos) {
    size_t keep = 0;
    while (keep < history_.size() && history_[keep].first < pos) ++keep;
    if (keep == history_.size()) return;
    auto replay = std::vector<std::pair<uint32_t, int32_t>>(history_.begin(), history_.begin() + long(keep));
    reset();
    for (const auto& [p, t] : replay) KV_CHECK(accept(t, p));
}

// Keeps only the nodes the live stacks reach (the arena otherwise grows with every token).
void GrammarMatcher::compact() {
    if (arena_.size() < 4096) return;
    std::vector<uint32_t> remap(arena_.size(), kNone);
    std::vector<Node> fresh;
    // Copies the chain under `n` (parents first) and returns its new index.
    auto copy = [&](uint32_t n) {
        std::vector<uint32_t> chain;
        for (uint32_t m = n; m != kNone && remap[m] == kNone; m = arena_[m].parent) chain.push_back(m);
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
            Node x = arena_[*it];
            x.parent = x.parent == kNone ? kNone : remap[x.parent];
            remap[*it] = uint32_t(fresh.size());
            fresh.push_back(x);
        }
        return remap[n];
    };
    for (uint32_t& top : stacks_)
        if (top != kAccept) top = copy(top);
    arena_.swap(fresh);
}

void GrammarMatcher::dfs(uint32_t node, const std::vector<uint32_t>& in, Utf8 u, uint32_t depth, std::vector<uint8_t>& ok) {
    const TokenTrie& t = *trie_;
    for (uint32_t e = t.nodes[node].child_begin; e < t.nodes[node].child_end; ++e) {
        const TokenTrie::Edge edge = t.edges[e];
        Utf8 v = u;
        const size_t mark = arena_.size();
        const std::vector<uint32_t>* cur = &in;
        switch (step(v, edge.byte)) {
            case Step::Invalid: continue;
            case Step::Partial:
                if (!feasible(in, v)) continue;
                break;
            case Step::Complete: {
                std::vector<uint32_t>& next = level_[depth];
                advance(in, v.value, next);
                if (next.empty()) {
                    arena_.resize(mark);
                    continue;
                }
                v.value = 0;
                cur = &next;
                break;
            }
        }
        const TokenTrie::Node& child = t.nodes[edge.node];
        for (uint32_t i = child.token_begin; i < child.token_end; ++i) ok[size_t(t.tokens[i])] = 1;
        if (child.child_begin != child.child_end) {
            // level_[depth] must survive the recursion, which uses deeper levels only.
            dfs(edge.node, *cur, v, depth + 1, ok);
        }
        arena_.resize(mark);
    }
}

void GrammarMatcher::mask(float* logits, uint32_t n) {
    KV_CHECK(n == trie_->n_vocab());
    ok_.assign(n, 0);
    // One scratch set per depth, sized before the walk (a set in use must not move).
    if (level_.size() < trie_->max_len + 1) level_.resize(trie_->max_len + 1);
    const size_t mark = arena_.size();
    dfs(0, stacks_, utf8_, 0, ok_);
    arena_.resize(mark);
    if (can_end())
        for (uint32_t t = 0; t < n; ++t)
            if (trie_->eog[t] && trie_->text[t].empty()) ok_[t] = 1;
    for (uint32_t t = 0; t < n; ++t)
        if (!ok_[t]) logits[t] = -INFINITY;
}

}  // namespace kv::engine
