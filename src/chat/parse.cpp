// Lexer and parser of chat templates (see template.h): source -> pieces (text, {{ }}, {% %}) with
// Jinja's whitespace rules as transformers configures them, then pieces -> AST.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "chat/ast.h"
#include "chat/template.h"
#include "common/error.h"

namespace kv::chat {
namespace {

constexpr int kMaxDepth = 200;  // nesting of blocks and expressions

struct Token {
    enum Type { Name, String, Int, Float, Op, End } type = End;
    std::string text;  // Name, Op; String: the unescaped value
    int64_t i = 0;
    double f = 0;
    Pos pos;
};

struct Piece {
    enum Kind { Text, Output, Statement } kind = Text;
    std::string text;
    std::vector<Token> tokens;  // ends with an End token
    Pos pos;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
public:
    Lexer(std::string_view src, kv_status status) : src_(src), status_(status) {
        // keep_trailing_newline=False: one trailing newline of the source is dropped.
        if (!src_.empty() && src_.back() == '\n') src_.remove_suffix(1);
        line_starts_.push_back(0);
        for (size_t k = 0; k < src_.size(); ++k)
            if (src_[k] == '\n') line_starts_.push_back(k + 1);
    }

    std::vector<Piece> run() {
        std::vector<Piece> out;
        size_t pos = 0;
        bool strip_next = false, trim_next = false, line_starting = true;
        while (true) {
            size_t open = find_open(pos);
            std::string text(src_.substr(pos, open == std::string_view::npos ? std::string_view::npos : open - pos));
            if (strip_next) {
                size_t k = 0;
                while (k < text.size() && is_space(text[k])) ++k;
                text.erase(0, k);
            } else if (trim_next && !text.empty() && text[0] == '\n') {
                text.erase(0, 1);
            }
            if (open == std::string_view::npos) {
                push_text(out, std::move(text), pos);
                break;
            }
            char kind = src_[open + 1];
            size_t body = open + 2;
            char marker = body < src_.size() && (src_[body] == '-' || src_[body] == '+') ? src_[body] : 0;
            if (marker == '-') {
                while (!text.empty() && is_space(text.back())) text.pop_back();
            } else if (kind != '{' && marker != '+') {
                // lstrip_blocks: spaces and tabs between a line start and a block or comment tag.
                size_t nl = text.rfind('\n');
                size_t from = nl == std::string::npos ? 0 : nl + 1;
                if (nl != std::string::npos || line_starting) {
                    bool blank = true;
                    for (size_t k = from; k < text.size(); ++k) blank = blank && (text[k] == ' ' || text[k] == '\t');
                    if (blank) text.resize(from);
                }
            }
            push_text(out, std::move(text), pos);
            if (marker) ++body;
            Pos tag_pos = pos_of(open);
            size_t end;  // just past the closing delimiter
            char close_marker = 0;
            if (kind == '#') {
                size_t c = src_.find("#}", body);
                if (c == std::string_view::npos) fail_at(tag_pos, "unclosed comment '{#' (no '#}' follows)");
                if (c > body && (src_[c - 1] == '-' || src_[c - 1] == '+')) close_marker = src_[c - 1];
                end = c + 2;
            } else {
                Piece p;
                p.kind = kind == '{' ? Piece::Output : Piece::Statement;
                p.pos = tag_pos;
                end = lex_tag(p, body, kind, close_marker);
                out.push_back(std::move(p));
            }
            strip_next = close_marker == '-';
            // trim_blocks: the first newline after a block or comment tag.
            trim_next = kind != '{' && close_marker != '+';
            pos = end;
            line_starting = false;
            if (strip_next) {
                // Jinja's `-%}` consumes the whitespace after it; the line starts if it ended in \n.
                size_t k = pos;
                while (k < src_.size() && is_space(src_[k])) ++k;
                line_starting = k > pos && src_[k - 1] == '\n';
            } else if (trim_next && pos < src_.size() && src_[pos] == '\n') {
                line_starting = true;
            }
        }
        return out;
    }

private:
    size_t find_open(size_t from) const {
        for (size_t k = src_.find('{', from); k != std::string_view::npos; k = src_.find('{', k + 1))
            if (k + 1 < src_.size() && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
        return std::string_view::npos;
    }

    Pos pos_of(size_t offset) const {
        size_t line = size_t(std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - line_starts_.begin());
        Pos p;
        p.line = int(line);
        p.col = int(offset - line_starts_[line - 1]) + 1;
        return p;
    }

    [[noreturn]] void fail_at(Pos p, const std::string& what) const {
        fail(status_, "chat template syntax error at %s: %s", p.str().c_str(), what.c_str());
    }

    void push_text(std::vector<Piece>& out, std::string text, size_t pos) {
        if (text.empty()) return;
        Piece p;
        p.kind = Piece::Text;
        p.text = std::move(text);
        p.pos = pos_of(pos);
        out.push_back(std::move(p));
    }

    // Tokens of a {{ }} or {% %} tag from `k` to its closing delimiter (outside strings and
    // brackets). Returns the offset just past the delimiter.
    size_t lex_tag(Piece& p, size_t k, char kind, char& close_marker) {
        const char close = kind == '{' ? '}' : '%';
        std::string brackets;  // open brackets, innermost last: a delimiter inside them is no end
        while (true) {
            while (k < src_.size() && is_space(src_[k])) ++k;
            if (k >= src_.size())
                fail_at(p.pos, std::string("unclosed '") + (kind == '{' ? "{{" : "{%") + "' (no '" +
                                   (kind == '{' ? "}}" : "%}") + "' follows)");
            Token t;
            t.pos = pos_of(k);
            char c = src_[k];
            if (brackets.empty()) {
                size_t m = k + ((c == '-' || c == '+') ? 1 : 0);
                if (m + 1 < src_.size() && src_[m] == close && src_[m + 1] == '}') {
                    close_marker = m > k ? c : 0;
                    t.type = Token::End;
                    p.tokens.push_back(t);
                    return m + 2;
                }
            }
            if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
                size_t e = k;
                while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
                t.type = Token::Name;
                t.text = std::string(src_.substr(k, e - k));
                k = e;
            } else if (std::isdigit(static_cast<unsigned char>(c))) {
                size_t e = k;
                while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
                bool is_float = false;
                if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
                    is_float = true;
                    ++e;
                    while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
                }
                if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
                    size_t x = e + 1;
                    if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
                    if (x < src_.size() && std::isdigit(static_cast<unsigned char>(src_[x]))) {
                        is_float = true;
                        e = x;
                        while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
                    }
                }
                std::string num(src_.substr(k, e - k));
                if (is_float) {
                    t.type = Token::Float;
                    t.f = std::strtod(num.c_str(), nullptr);
                } else {
                    t.type = Token::Int;
                    errno = 0;
                    t.i = std::strtoll(num.c_str(), nullptr, 10);
                    if (errno == ERANGE) fail_at(t.pos, "integer literal " + num + " is too large");
                }
                k = e;
            } else if (c == '\'' || c == '"') {
                t.type = Token::String;
                k = lex_string(t, k);
            } else {
                static const char* const ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                                  "<",  ">",  "=",  "(",  ")",  "[",  "]", "{", "}", ",", ".", ":",
                                                  "|"};
                const char* found = nullptr;
                for (const char* op : ops)
                    if (src_.substr(k, std::strlen(op)) == op) {
                        found = op;
                        break;
                    }
                if (!found) {
                    if (c == '!' || c == ';' || c == '@' || c == '$' || c == '?' || c == '`' || c == '\\' || c == '&' ||
                        c == '^' || c == '#')
                        fail_at(t.pos, std::string("unexpected character '") + c + "'");
                    fail_at(t.pos, "unexpected character (byte 0x" + hex(static_cast<unsigned char>(c)) + ")");
                }
                t.type = Token::Op;
                t.text = found;
                k += t.text.size();
                if (t.text == "(" || t.text == "[" || t.text == "{") {
                    if (brackets.size() >= size_t(kMaxDepth)) fail_at(t.pos, "brackets nested deeper than 200 levels");
                    brackets += t.text == "(" ? ')' : t.text == "[" ? ']' : '}';
                } else if (t.text == ")" || t.text == "]" || t.text == "}") {
                    if (brackets.empty()) fail_at(t.pos, "unexpected '" + t.text + "'");
                    if (t.text[0] != brackets.back())
                        fail_at(t.pos, "unexpected '" + t.text + "', expected '" + brackets.back() + "'");
                    brackets.pop_back();
                }
            }
            p.tokens.push_back(std::move(t));
        }
    }

    static std::string hex(unsigned v) {
        char b[8];
        std::snprintf(b, sizeof b, "%02x", v);
        return b;
    }

    // A Python-style string literal; escapes \n \t \r \\ \' \" \0 \xhh \uhhhh; others stay as written.
    size_t lex_string(Token& t, size_t k) {
        const char q = src_[k++];
        std::string out;
        while (true) {
            if (k >= src_.size()) fail_at(t.pos, "unterminated string literal");
            char c = src_[k++];
            if (c == q) break;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (k >= src_.size()) fail_at(t.pos, "unterminated string literal");
            char e = src_[k++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case '0': out += '\0'; break;
                case '\\': out += '\\'; break;
                case '\'': out += '\''; break;
                case '"': out += '"'; break;
                case '\n': break;  // line continuation
                case 'x':
                case 'u': {
                    size_t n = e == 'x' ? 2 : 4;
                    if (k + n > src_.size()) fail_at(t.pos, "truncated \\" + std::string(1, e) + " escape");
                    std::string digits(src_.substr(k, n));
                    char* endp = nullptr;
                    unsigned long cp = std::strtoul(digits.c_str(), &endp, 16);
                    if (endp != digits.c_str() + n) fail_at(t.pos, "bad \\" + std::string(1, e) + " escape");
                    k += n;
                    append_utf8(out, uint32_t(cp));
                    break;
                }
                default: out += '\\', out += e;
            }
        }
        t.text = std::move(out);
        return k;
    }

    static void append_utf8(std::string& s, uint32_t cp) {
        if (cp < 0x80) {
            s += char(cp);
        } else if (cp < 0x800) {
            s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
        } else {
            s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
        }
    }

    std::string_view src_;
    kv_status status_;
    std::vector<size_t> line_starts_;  // offsets where each line begins
};

// Tags Jinja has that this engine does not implement.
const char* const kUnsupportedTags[] = {"call", "filter", "block", "extends", "include", "import",
                                        "from", "with", "raw", "autoescape", "trans", "do"};
// Closing and middle tags, which only appear inside their block.
const char* const kInnerTags[] = {"elif", "else", "endif", "endfor", "endset", "endgeneration", "endmacro",
                                  "endcall", "endfilter", "endblock", "endwith", "endraw", "endautoescape"};

class Parser {
public:
    Parser(std::vector<Piece> pieces, kv_status status) : pieces_(std::move(pieces)), status_(status) {}

    Body parse_template() {
        std::string end_tag;
        Body body = parse_body({}, end_tag);
        return body;
    }

private:
    // --- statements -------------------------------------------------------------------------
    // Parses nodes until a statement whose tag is in `ends` (left current, its name in end_tag)
    // or the end of the template (only allowed when `ends` is empty).
    Body parse_body(const std::vector<std::string>& ends, std::string& end_tag, const char* open = nullptr,
                    Pos open_pos = {}) {
        if (++depth_ > kMaxDepth) fail_at(open_pos, "blocks nested deeper than 200 levels");
        Body body;
        while (piece_ < pieces_.size()) {
            Piece& p = pieces_[piece_];
            if (p.kind == Piece::Text) {
                auto n = std::make_unique<Node>(Node::Kind::Text, p.pos);
                n->text = std::move(p.text);
                body.push_back(std::move(n));
                ++piece_;
                continue;
            }
            toks_ = &p.tokens;
            tok_ = 0;
            if (p.kind == Piece::Output) {
                auto n = std::make_unique<Node>(Node::Kind::Output, p.pos);
                if (peek().type == Token::End) fail_at(p.pos, "empty expression '{{ }}'");
                n->expr = parse_expr();
                expect_end("'}}'");
                body.push_back(std::move(n));
                ++piece_;
                continue;
            }
            const Token& t = peek();
            if (t.type != Token::Name) fail_at(t.pos, "expected a tag name after '{%'");
            std::string tag = t.text;
            for (const auto& e : ends)
                if (tag == e) {
                    end_tag = tag;
                    --depth_;
                    return body;
                }
            for (const char* u : kUnsupportedTags)
                if (tag == u)
                    fail(KV_ERR_UNSUPPORTED, "chat template uses {%% %s %%} at %s, which kvulkan's template engine does not support",
                         u, t.pos.str().c_str());
            for (const char* u : kInnerTags)
                if (tag == u) {
                    if (open)
                        fail_at(t.pos, "unexpected {% " + tag + " %} inside {% " + open + " %} opened at " +
                                           open_pos.str());
                    fail_at(t.pos, "unexpected {% " + tag + " %} without a matching opening tag");
                }
            next();
            Pos pos = p.pos;
            if (tag == "if") body.push_back(parse_if(pos));
            else if (tag == "for") body.push_back(parse_for(pos));
            else if (tag == "set") body.push_back(parse_set(pos));
            else if (tag == "macro") body.push_back(parse_macro(pos));
            else if (tag == "break" || tag == "continue") {
                if (loops_ == 0) fail_at(pos, "{% " + tag + " %} outside a {% for %} loop");
                expect_end("'%}'");
                ++piece_;
                body.push_back(std::make_unique<Node>(tag == "break" ? Node::Kind::Break : Node::Kind::Continue, pos));
            } else if (tag == "generation") {
                expect_end("'%}'");
                ++piece_;
                auto n = std::make_unique<Node>(Node::Kind::Block, pos);
                std::string end;
                n->bodies.push_back(parse_body({"endgeneration"}, end, "generation", pos));
                close_tag(end);
                body.push_back(std::move(n));
            } else {
                fail_at(t.pos, "unknown tag {% " + tag + " %}");
            }
        }
        if (!ends.empty())
            fail_at(open_pos, std::string("{% ") + open + " %} is never closed (expected {% " + ends.back() + " %})");
        --depth_;
        return body;
    }

    // At a closing/middle tag piece: checks nothing follows the tag name and moves past it.
    void close_tag(const std::string& tag) {
        toks_ = &pieces_[piece_].tokens;
        tok_ = 1;
        expect_end("'%}' after " + tag);
        ++piece_;
    }

    std::unique_ptr<Node> parse_if(Pos pos) {
        auto n = std::make_unique<Node>(Node::Kind::If, pos);
        n->conds.push_back(parse_expr());
        expect_end("'%}'");
        ++piece_;
        while (true) {
            std::string end;
            n->bodies.push_back(parse_body({"elif", "else", "endif"}, end, "if", pos));
            toks_ = &pieces_[piece_].tokens;
            tok_ = 1;
            if (end == "elif") {
                n->conds.push_back(parse_expr());
                expect_end("'%}'");
                ++piece_;
            } else if (end == "else") {
                expect_end("'%}' after else");
                ++piece_;
                std::string end2;
                n->bodies.push_back(parse_body({"endif"}, end2, "if", pos));
                close_tag(end2);
                return n;
            } else {
                close_tag(end);
                return n;
            }
        }
    }

    std::unique_ptr<Node> parse_for(Pos pos) {
        auto n = std::make_unique<Node>(Node::Kind::For, pos);
        bool paren = accept_op("(");
        do {
            const Token& t = next();
            if (t.type != Token::Name) fail_at(t.pos, "expected a loop variable name after {% for");
            n->targets.push_back(t.text);
        } while (accept_op(","));
        if (paren) expect_op(")");
        if (!accept_name("in")) fail_at(peek().pos, "expected 'in' in {% for %}");
        no_cond_ = true;  // `for x in y if c`: the `if` is the loop filter, not a conditional expression
        n->expr = parse_expr();
        no_cond_ = false;
        if (accept_name("if")) n->conds.push_back(parse_expr());
        if (accept_name("recursive"))
            fail(KV_ERR_UNSUPPORTED, "chat template uses a recursive {%% for %%} loop at %s, which kvulkan's template "
                 "engine does not support", pos.str().c_str());
        expect_end("'%}'");
        ++piece_;
        ++loops_;
        std::string end;
        n->bodies.push_back(parse_body({"else", "endfor"}, end, "for", pos));
        --loops_;
        if (end == "else") {
            close_tag(end);
            std::string end2;
            n->bodies.push_back(parse_body({"endfor"}, end2, "for", pos));
            close_tag(end2);
        } else {
            close_tag(end);
        }
        return n;
    }

    // {% macro name(a, b='x') %}...{% endmacro %}
    std::unique_ptr<Node> parse_macro(Pos pos) {
        auto n = std::make_unique<Node>(Node::Kind::Macro, pos);
        const Token& t = next();
        if (t.type != Token::Name) fail_at(t.pos, "expected a macro name after {% macro");
        n->targets.push_back(t.text);
        expect_op("(");
        while (!is_op(")")) {
            const Token& p = next();
            if (p.type != Token::Name) fail_at(p.pos, "expected a parameter name in {% macro %}");
            n->targets.push_back(p.text);
            if (accept_op("=")) n->conds.push_back(parse_expr());
            else if (n->conds.empty() || !n->conds.back()) n->conds.push_back(nullptr);
            else fail_at(p.pos, "a parameter without a default after one with a default");
            if (!accept_op(",")) break;
        }
        expect_op(")");
        expect_end("'%}'");
        ++piece_;
        const int saved_loops = loops_;
        loops_ = 0;  // {% break %} cannot leave a macro
        std::string end;
        n->bodies.push_back(parse_body({"endmacro"}, end, "macro", pos));
        loops_ = saved_loops;
        close_tag(end);
        return n;
    }

    std::unique_ptr<Node> parse_set(Pos pos) {
        const Token& t = next();
        if (t.type != Token::Name) fail_at(t.pos, "expected a variable name after {% set");
        std::vector<std::string> targets{t.text};
        std::string attr;
        if (accept_op(".")) {
            const Token& a = next();
            if (a.type != Token::Name) fail_at(a.pos, "expected an attribute name after '.' in {% set %}");
            attr = a.text;
        } else {
            while (accept_op(",")) {
                const Token& b = next();
                if (b.type != Token::Name) fail_at(b.pos, "expected a variable name in {% set a, b = ... %}");
                targets.push_back(b.text);
            }
        }
        if (peek().type == Token::End && attr.empty() && targets.size() == 1) {
            // {% set x %}...{% endset %}
            expect_end("'%}'");
            ++piece_;
            auto n = std::make_unique<Node>(Node::Kind::SetBlock, pos);
            n->targets = targets;
            std::string end;
            n->bodies.push_back(parse_body({"endset"}, end, "set", pos));
            close_tag(end);
            return n;
        }
        expect_op("=");
        auto n = std::make_unique<Node>(Node::Kind::Set, pos);
        n->targets = std::move(targets);
        n->attr = attr;
        n->expr = parse_expr();
        if (n->targets.size() > 1 && accept_op(",")) {
            // {% set a, b = x, y %}: the right side is a tuple
            auto tuple = std::make_unique<Expr>(Expr::Kind::List, n->expr->pos);
            tuple->args.push_back(std::move(n->expr));
            do tuple->args.push_back(parse_expr());
            while (accept_op(","));
            n->expr = std::move(tuple);
        }
        expect_end("'%}'");
        ++piece_;
        return n;
    }

    // --- expressions --------------------------------------------------------------------------
    ExprPtr parse_expr() {
        if (++depth_ > kMaxDepth) fail_at(peek().pos, "expression nested deeper than 200 levels");
        ExprPtr e = parse_or();
        while (!no_cond_ && is_name("if")) {
            Pos p = next().pos;
            auto c = std::make_unique<Expr>(Expr::Kind::Cond, p);
            c->args.push_back(std::move(e));
            c->args.push_back(parse_or());
            if (accept_name("else")) c->args.push_back(parse_expr());
            else c->args.push_back(nullptr);
            e = std::move(c);
        }
        --depth_;
        return e;
    }

    ExprPtr binary(const std::string& op, Pos p, ExprPtr l, ExprPtr r) {
        auto e = std::make_unique<Expr>(Expr::Kind::Binary, p);
        e->name = op;
        e->args.push_back(std::move(l));
        e->args.push_back(std::move(r));
        return e;
    }

    ExprPtr parse_or() {
        ExprPtr e = parse_and();
        while (is_name("or")) {
            Pos p = next().pos;
            e = binary("or", p, std::move(e), parse_and());
        }
        return e;
    }
    ExprPtr parse_and() {
        ExprPtr e = parse_not();
        while (is_name("and")) {
            Pos p = next().pos;
            e = binary("and", p, std::move(e), parse_not());
        }
        return e;
    }
    ExprPtr parse_not() {
        if (is_name("not")) {
            Pos p = next().pos;
            if (++depth_ > kMaxDepth) fail_at(p, "expression nested deeper than 200 levels");
            auto e = std::make_unique<Expr>(Expr::Kind::Unary, p);
            e->name = "not";
            e->args.push_back(parse_not());
            --depth_;
            return e;
        }
        return parse_compare();
    }
    ExprPtr parse_compare() {
        ExprPtr e = parse_math1();
        // a < b < c is (a < b) and (b < c) in Jinja; chat templates do not chain, so refuse it.
        int n = 0;
        while (true) {
            const Token& t = peek();
            std::string op;
            if (t.type == Token::Op && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == ">" ||
                                        t.text == "<=" || t.text == ">="))
                op = t.text;
            else if (is_name("in")) op = "in";
            else if (is_name("not") && peek(1).type == Token::Name && peek(1).text == "in") op = "not in";
            else break;
            if (++n > 1)
                fail(KV_ERR_UNSUPPORTED, "chat template chains comparisons at %s (a < b < c), which kvulkan's template "
                     "engine does not support", t.pos.str().c_str());
            Pos p = next().pos;
            if (op == "not in") next();
            e = binary(op, p, std::move(e), parse_math1());
        }
        return e;
    }
    ExprPtr parse_math1() {
        ExprPtr e = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token& t = next();
            std::string op = t.text;
            e = binary(op, t.pos, std::move(e), parse_concat());
        }
        return e;
    }
    ExprPtr parse_concat() {
        ExprPtr e = parse_math2();
        while (is_op("~")) {
            Pos p = next().pos;
            e = binary("~", p, std::move(e), parse_math2());
        }
        return e;
    }
    ExprPtr parse_math2() {
        ExprPtr e = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const Token& t = next();
            std::string op = t.text;
            e = binary(op, t.pos, std::move(e), parse_pow());
        }
        return e;
    }
    ExprPtr parse_pow() {
        ExprPtr e = parse_unary(true);
        while (is_op("**")) {
            Pos p = next().pos;
            e = binary("**", p, std::move(e), parse_unary(true));
        }
        return e;
    }
    ExprPtr parse_unary(bool with_filter) {
        ExprPtr e;
        if (is_op("-") || is_op("+")) {
            const Token& t = next();
            if (++depth_ > kMaxDepth) fail_at(t.pos, "expression nested deeper than 200 levels");
            e = std::make_unique<Expr>(Expr::Kind::Unary, t.pos);
            e->name = t.text;
            e->args.push_back(parse_unary(false));
            --depth_;
        } else {
            e = parse_primary();
        }
        e = parse_postfix(std::move(e));
        if (with_filter) e = parse_filters(std::move(e));
        return e;
    }

    ExprPtr parse_primary() {
        const Token& t = next();
        switch (t.type) {
            case Token::Name: {
                if (t.text == "true" || t.text == "True") return literal(Value(true), t.pos);
                if (t.text == "false" || t.text == "False") return literal(Value(false), t.pos);
                if (t.text == "none" || t.text == "None") return literal(Value::none(), t.pos);
                auto e = std::make_unique<Expr>(Expr::Kind::Name, t.pos);
                e->name = t.text;
                return e;
            }
            case Token::String: {
                std::string s = t.text;
                while (peek().type == Token::String) s += next().text;  // adjacent literals concatenate
                return literal(Value(std::move(s)), t.pos);
            }
            case Token::Int: return literal(Value(t.i), t.pos);
            case Token::Float: return literal(Value(t.f), t.pos);
            case Token::End: fail_at(t.pos, "unexpected end of the tag (an expression is missing)");
            case Token::Op: break;
        }
        if (t.text == "(") {
            if (accept_op(")")) return std::make_unique<Expr>(Expr::Kind::List, t.pos);  // ()
            bool saved = no_cond_;
            no_cond_ = false;
            ExprPtr e = parse_expr();
            if (is_op(",")) {
                auto tuple = std::make_unique<Expr>(Expr::Kind::List, t.pos);
                tuple->args.push_back(std::move(e));
                while (accept_op(",")) {
                    if (is_op(")")) break;
                    tuple->args.push_back(parse_expr());
                }
                e = std::move(tuple);
            }
            no_cond_ = saved;
            expect_op(")");
            return e;
        }
        if (t.text == "[") {
            auto e = std::make_unique<Expr>(Expr::Kind::List, t.pos);
            bool saved = no_cond_;
            no_cond_ = false;
            while (!is_op("]")) {
                e->args.push_back(parse_expr());
                if (!accept_op(",")) break;
            }
            no_cond_ = saved;
            expect_op("]");
            return e;
        }
        if (t.text == "{") {
            auto e = std::make_unique<Expr>(Expr::Kind::Dict, t.pos);
            bool saved = no_cond_;
            no_cond_ = false;
            while (!is_op("}")) {
                e->args.push_back(parse_expr());
                expect_op(":");
                e->args.push_back(parse_expr());
                if (!accept_op(",")) break;
            }
            no_cond_ = saved;
            expect_op("}");
            return e;
        }
        fail_at(t.pos, "unexpected '" + t.text + "'");
    }

    ExprPtr literal(Value v, Pos p) {
        auto e = std::make_unique<Expr>(Expr::Kind::Literal, p);
        e->value = std::move(v);
        return e;
    }

    ExprPtr parse_postfix(ExprPtr e) {
        while (true) {
            if (is_op(".")) {
                Pos p = next().pos;
                const Token& a = next();
                auto x = std::make_unique<Expr>(Expr::Kind::Attr, p);
                x->args.push_back(std::move(e));
                if (a.type == Token::Name) {
                    x->name = a.text;
                } else if (a.type == Token::Int) {  // x.0 is x[0]
                    x->kind = Expr::Kind::Item;
                    x->args.push_back(literal(Value(a.i), a.pos));
                } else {
                    fail_at(a.pos, "expected an attribute name after '.'");
                }
                e = std::move(x);
            } else if (is_op("[")) {
                Pos p = next().pos;
                bool saved = no_cond_;
                no_cond_ = false;
                ExprPtr parts[3];
                int n = 0;
                bool slice = false;
                while (true) {
                    if (!is_op(":") && !is_op("]")) parts[n] = parse_expr();
                    if (accept_op(":")) {
                        slice = true;
                        if (++n > 2) fail_at(p, "a slice takes at most three parts [start:stop:step]");
                        continue;
                    }
                    break;
                }
                no_cond_ = saved;
                expect_op("]");
                auto x = std::make_unique<Expr>(slice ? Expr::Kind::Slice : Expr::Kind::Item, p);
                x->args.push_back(std::move(e));
                if (slice) {
                    for (auto& part : parts) x->args.push_back(std::move(part));
                } else {
                    if (!parts[0]) fail_at(p, "empty subscript '[]'");
                    x->args.push_back(std::move(parts[0]));
                }
                e = std::move(x);
            } else if (is_op("(")) {
                Pos p = peek().pos;
                auto x = std::make_unique<Expr>(Expr::Kind::Call, p);
                x->args.push_back(std::move(e));
                parse_call_args(*x);
                e = std::move(x);
            } else {
                return e;
            }
        }
    }

    // ( a, b, name=c ) after the current '(' token.
    void parse_call_args(Expr& x) {
        expect_op("(");
        bool saved = no_cond_;
        no_cond_ = false;
        while (!is_op(")")) {
            if (peek().type == Token::Name && peek(1).type == Token::Op && peek(1).text == "=") {
                std::string k = next().text;
                next();
                x.kwargs.emplace_back(k, parse_expr());
            } else {
                if (!x.kwargs.empty()) fail_at(peek().pos, "a positional argument after keyword arguments");
                x.args.push_back(parse_expr());
            }
            if (!accept_op(",")) break;
        }
        no_cond_ = saved;
        expect_op(")");
    }

    ExprPtr parse_filters(ExprPtr e) {
        while (true) {
            if (is_op("|")) {
                next();
                const Token& n = next();
                if (n.type != Token::Name) fail_at(n.pos, "expected a filter name after '|'");
                if (!jinja_filter_exists(n.text)) fail_at(n.pos, "unknown filter '" + n.text + "'");
                auto x = std::make_unique<Expr>(Expr::Kind::Filter, n.pos);
                x->name = n.text;
                x->args.push_back(std::move(e));
                if (is_op("(")) parse_call_args(*x);
                e = std::move(x);
            } else if (is_name("is")) {
                next();
                auto x = std::make_unique<Expr>(Expr::Kind::Test, peek().pos);
                x->negated = accept_name("not");
                const Token& n = next();
                if (n.type == Token::Name) x->name = n.text;
                else if (n.type == Token::Op && (n.text == "==" || n.text == "!=" || n.text == "<" || n.text == ">" ||
                                                 n.text == "<=" || n.text == ">="))
                    x->name = n.text;
                else fail_at(n.pos, "expected a test name after 'is'");
                if (!jinja_test_exists(x->name)) fail_at(n.pos, "unknown test '" + x->name + "'");
                x->args.push_back(std::move(e));
                if (is_op("(")) {
                    parse_call_args(*x);
                } else {
                    // `x is divisibleby 3`, `x is sameas false`: one argument without parentheses
                    const Token& a = peek();
                    bool starts_arg = a.type == Token::String || a.type == Token::Int || a.type == Token::Float ||
                                      (a.type == Token::Op && (a.text == "[" || a.text == "{" || a.text == "(")) ||
                                      (a.type == Token::Name && a.text != "else" && a.text != "or" &&
                                       a.text != "and" && a.text != "if" && a.text != "is" && a.text != "in" &&
                                       a.text != "not");
                    if (starts_arg) x->args.push_back(parse_postfix(parse_primary()));
                }
                e = std::move(x);
            } else {
                return e;
            }
        }
    }

    // --- tokens -----------------------------------------------------------------------------
    const Token& peek(size_t ahead = 0) const {
        size_t k = tok_ + ahead;
        return k < toks_->size() ? (*toks_)[k] : toks_->back();
    }
    const Token& next() {
        const Token& t = peek();
        if (tok_ < toks_->size() - 1) ++tok_;
        return t;
    }
    bool is_op(const char* op) const { return peek().type == Token::Op && peek().text == op; }
    bool is_name(const char* n) const { return peek().type == Token::Name && peek().text == n; }
    bool accept_op(const char* op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool accept_name(const char* n) {
        if (!is_name(n)) return false;
        next();
        return true;
    }
    void expect_op(const char* op) {
        if (!accept_op(op)) fail_at(peek().pos, std::string("expected '") + op + "', found " + describe(peek()));
    }
    void expect_end(const std::string& what) {
        if (peek().type != Token::End) fail_at(peek().pos, "expected " + what + ", found " + describe(peek()));
    }
    static std::string describe(const Token& t) {
        switch (t.type) {
            case Token::End: return "the end of the tag";
            case Token::String: return "a string";
            case Token::Int:
            case Token::Float: return "a number";
            default: return "'" + t.text + "'";
        }
    }
    [[noreturn]] void fail_at(Pos p, const std::string& what) const {
        fail(status_, "chat template syntax error at %s: %s", p.str().c_str(), what.c_str());
    }

    std::vector<Piece> pieces_;
    kv_status status_;
    size_t piece_ = 0;
    const std::vector<Token>* toks_ = nullptr;
    size_t tok_ = 0;
    int depth_ = 0;
    int loops_ = 0;
    bool no_cond_ = false;
};

}  // namespace

Template Template::parse(std::string_view source, kv_status syntax_status) {
    Lexer lexer(source, syntax_status);
    Parser parser(lexer.run(), syntax_status);
    Template t;
    t.body_ = std::make_shared<const Body>(parser.parse_template());
    return t;
}

}  // namespace kv::chat
