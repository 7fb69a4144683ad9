// A minimal JSON reader for the reference trace files (../shared/reference/*.json): objects,
// arrays, numbers, strings (escapes kept undecoded except \" and \\), true/false/null.
// Throws std::runtime_error with the byte offset on malformed input.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvtest::json {

struct Value {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double num = 0;
    std::string str;
    std::vector<Value> arr;
    std::map<std::string, Value> obj;

    const Value& operator[](const std::string& key) const {
        if (kind != Object)
            throw std::runtime_error("json: not an object (looking up '" + key + "')");
        auto it = obj.find(key);
        if (it == obj.end()) throw std::runtime_error("json: missing key '" + key + "'");
        return it->second;
    }
    const Value& operator[](size_t i) const {
        if (kind != Array || i >= arr.size()) throw std::runtime_error("json: bad array index");
        return arr[i];
    }
    size_t size() const { return kind == Array ? arr.size() : obj.size(); }
    int64_t as_int() const {
        if (kind != Number || num != static_cast<double>(static_cast<int64_t>(num)))
            throw std::runtime_error("json: not an integer");
        return static_cast<int64_t>(num);
    }
    std::vector<int32_t> as_int32_array() const {
        if (kind != Array) throw std::runtime_error("json: not an array");
        std::vector<int32_t> v;
        for (const Value& e : arr) v.push_back(static_cast<int32_t>(e.as_int()));
        return v;
    }
};

class Parser {
public:
    explicit Parser(const std::string& text) : s_(text) {}
    Value parse() {
        Value v = value();
        ws();
        if (i_ != s_.size()) error("trailing characters");
        return v;
    }

private:
    [[noreturn]] void error(const char* what) const {
        throw std::runtime_error(std::string("json: ") + what + " at byte " + std::to_string(i_));
    }
    void ws() {
        while (i_ < s_.size() &&
               (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
            ++i_;
    }
    bool eat(char c) {
        ws();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) error((std::string("expected '") + c + "'").c_str());
    }
    bool word(const char* w) {
        size_t n = std::char_traits<char>::length(w);
        if (s_.compare(i_, n, w) == 0) {
            i_ += n;
            return true;
        }
        return false;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (i_ < s_.size() && s_[i_] != '"') {
            if (s_[i_] == '\\' && i_ + 1 < s_.size()) {
                char e = s_[i_ + 1];
                if (e == '"' || e == '\\' || e == '/') {
                    out += e;
                } else {
                    out += '\\';
                    out += e;
                }
                i_ += 2;
            } else {
                out += s_[i_++];
            }
        }
        if (i_ >= s_.size()) error("unterminated string");
        ++i_;
        return out;
    }
    Value value() {
        if (++depth_ > 64) error("nesting too deep");
        ws();
        if (i_ >= s_.size()) error("unexpected end");
        Value v;
        char c = s_[i_];
        if (c == '{') {
            v.kind = Value::Object;
            ++i_;
            if (!eat('}')) {
                do {
                    ws();
                    std::string k = string();
                    expect(':');
                    v.obj[k] = value();
                } while (eat(','));
                expect('}');
            }
        } else if (c == '[') {
            v.kind = Value::Array;
            ++i_;
            if (!eat(']')) {
                do v.arr.push_back(value());
                while (eat(','));
                expect(']');
            }
        } else if (c == '"') {
            v.kind = Value::String;
            v.str = string();
        } else if (word("true")) {
            v.kind = Value::Bool;
            v.b = true;
        } else if (word("false")) {
            v.kind = Value::Bool;
        } else if (word("null")) {
            v.kind = Value::Null;
        } else {
            const char* begin = s_.c_str() + i_;
            char* end = nullptr;
            v.kind = Value::Number;
            v.num = std::strtod(begin, &end);
            if (end == begin) error("unexpected character");
            i_ += static_cast<size_t>(end - begin);
        }
        --depth_;
        return v;
    }

    const std::string& s_;
    size_t i_ = 0;
    int depth_ = 0;
};

inline Value parse(const std::string& text) { return Parser(text).parse(); }

}  // namespace kvtest::json
