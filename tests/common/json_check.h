// A strict JSON checker (RFC 8259) for tests of constrained sampling: JsonCheck(s).object_document()
// is true when `s` is exactly one JSON object, with optional whitespace around it.
#pragma once

#include <cctype>
#include <cstring>
#include <string>

namespace kvtest {

class JsonCheck {
public:
    explicit JsonCheck(const std::string& s) : s_(s) {}
    bool object_document() {
        ws();
        if (peek() != '{' || !value(0)) return false;
        ws();
        return i_ == s_.size();
    }

private:
    char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
    void ws() {
        while (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r') ++i_;
    }
    bool lit(const char* w) {
        size_t n = std::strlen(w);
        if (s_.compare(i_, n, w) != 0) return false;
        i_ += n;
        return true;
    }
    bool digits() {
        size_t b = i_;
        while (peek() >= '0' && peek() <= '9') ++i_;
        return i_ > b;
    }
    bool string() {
        if (peek() != '"') return false;
        ++i_;
        while (i_ < s_.size()) {
            unsigned char c = static_cast<unsigned char>(s_[i_++]);
            if (c == '"') return true;
            if (c < 0x20) return false;
            if (c == '\\') {
                char e = peek();
                ++i_;
                if (e == 'u') {
                    for (int k = 0; k < 4; ++k, ++i_)
                        if (!std::isxdigit(static_cast<unsigned char>(peek()))) return false;
                } else if (!std::strchr("\"\\/bfnrt", e) || e == '\0') {
                    return false;
                }
            } else if (c >= 0x80) {  // a whole UTF-8 sequence
                int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
                if (n < 0) return false;
                for (int k = 0; k < n; ++k, ++i_)
                    if ((static_cast<unsigned char>(peek()) & 0xC0) != 0x80) return false;
            }
        }
        return false;
    }
    bool value(int depth) {
        if (depth > 64) return false;
        ws();
        char c = peek();
        if (c == '{') {
            ++i_;
            ws();
            if (peek() == '}') return ++i_, true;
            for (;;) {
                ws();
                if (!string()) return false;
                ws();
                if (!lit(":") || !value(depth + 1)) return false;
                ws();
                if (lit(",")) continue;
                return lit("}");
            }
        }
        if (c == '[') {
            ++i_;
            ws();
            if (peek() == ']') return ++i_, true;
            for (;;) {
                if (!value(depth + 1)) return false;
                ws();
                if (lit(",")) continue;
                return lit("]");
            }
        }
        if (c == '"') return string();
        if (lit("true") || lit("false") || lit("null")) return true;
        if (c == '-' || (c >= '0' && c <= '9')) {
            if (c == '-') ++i_;
            if (peek() == '0') ++i_;
            else if (!digits()) return false;
            if (peek() == '.') {
                ++i_;
                if (!digits()) return false;
            }
            if (peek() == 'e' || peek() == 'E') {
                ++i_;
                if (peek() == '+' || peek() == '-') ++i_;
                if (!digits()) return false;
            }
            return true;
        }
        return false;
    }
    const std::string& s_;
    size_t i_ = 0;
};

// Bounded, so every sample ends within the step limit (at most ~70 bytes), and small, so that
// 200 samples stay cheap on a CPU device.
inline const char* kJsonObjectGrammar = R"(
root   ::= ws "{" ws pair ( ws "," ws pair )? ws "}"
pair   ::= key ws ":" ws value
key    ::= "\"" [a-z]{1,4} "\""
value  ::= str | num | "true" | "false" | "null" | "[" ws ( num ( ws "," ws num )? )? ws "]"
str    ::= "\"" ( [a-zA-Z é] | "\\" ["\\n] ){0,4} "\""
num    ::= "-"? ( "0" | [1-9] [0-9]{0,2} ) ( "." [0-9] )?
ws     ::= " "?
)";

}  // namespace kvtest
