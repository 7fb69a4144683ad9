#include "chat/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "common/error.h"

namespace kv::chat {

Value Value::undefined(std::string what) {
    Value v;
    v.s_ = std::move(what);
    return v;
}
Value Value::none() {
    Value v;
    v.kind_ = Kind::None;
    return v;
}
Value::Value(bool b) : kind_(Kind::Bool), b_(b), i_(b ? 1 : 0) {}
Value::Value(int64_t i) : kind_(Kind::Int), i_(i) {}
Value::Value(double f) : kind_(Kind::Float), f_(f) {}
Value::Value(std::string s) : kind_(Kind::String), s_(std::move(s)) {}
Value::Value(List l) : kind_(Kind::List), list_(std::make_shared<List>(std::move(l))) {}
Value::Value(Dict d) : kind_(Kind::Dict), dict_(std::make_shared<Dict>(std::move(d))) {}
Value Value::namespace_of(Dict d) {
    Value v(std::move(d));
    v.kind_ = Kind::Namespace;
    return v;
}
Value Value::function(std::string name, Function f) {
    Value v;
    v.kind_ = Kind::Function;
    v.s_ = std::move(name);
    v.fn_ = std::make_shared<Function>(std::move(f));
    return v;
}

double Value::as_number() const {
    switch (kind_) {
        case Kind::Bool: return b_ ? 1 : 0;
        case Kind::Int: return double(i_);
        case Kind::Float: return f_;
        default: return 0;
    }
}

const Value* Value::find(const std::string& key) const {
    if (!is_mapping()) return nullptr;
    for (const auto& [k, v] : *dict_)
        if (k == key) return &v;
    return nullptr;
}

bool Value::truthy() const {
    switch (kind_) {
        case Kind::Undefined:
        case Kind::None: return false;
        case Kind::Bool: return b_;
        case Kind::Int: return i_ != 0;
        case Kind::Float: return f_ != 0;
        case Kind::String: return !s_.empty();
        case Kind::List: return !list_->empty();
        case Kind::Dict: return !dict_->empty();
        case Kind::Namespace:
        case Kind::Function: return true;
    }
    return false;
}

namespace {

// Python's repr(float): the shortest digits that read back, fixed notation for exponents in
// [-4, 16), else d.ddde+XX.
std::string float_repr(double f) {
    if (std::isnan(f)) return "nan";
    if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
    std::string sci(buf, r.ptr);  // "-1.2345e+02"
    size_t e = sci.find('e');
    std::string mant = sci.substr(0, e);
    int exp = std::atoi(sci.c_str() + e + 1);
    bool neg = !mant.empty() && mant[0] == '-';
    if (neg) mant.erase(0, 1);
    std::string digits;
    for (char c : mant)
        if (c != '.') digits += c;
    std::string out = neg ? "-" : "";
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out += "0." + std::string(size_t(-exp - 1), '0') + digits;
        } else if (size_t(exp) + 1 >= digits.size()) {
            out += digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
        } else {
            out += digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
        }
        return out;
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return out + eb;
}

std::string string_repr(const std::string& s) {
    char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
    std::string out(1, q);
    for (unsigned char c : s) {
        if (c == '\\') out += "\\\\";
        else if (c == q) out += std::string("\\") + char(q);
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        } else {
            out += char(c);
        }
    }
    return out + q;
}

void json_string(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    char b[8];
                    std::snprintf(b, sizeof b, "\\u%04x", c);
                    out += b;
                } else {
                    out += char(c);
                }
        }
    }
    out += '"';
}

void json_value(std::string& out, const Value& v, int indent, int depth) {
    auto newline = [&](int d) {
        if (indent < 0) return;
        out += '\n';
        out.append(size_t(indent) * size_t(d), ' ');
    };
    const char* item_sep = indent < 0 ? ", " : ",";
    switch (v.kind()) {
        case Value::Kind::None: out += "null"; return;
        case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
        case Value::Kind::Int: out += std::to_string(v.as_int()); return;
        case Value::Kind::Float: {
            double f = v.as_number();
            out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f < 0 ? "-Infinity" : "Infinity") : float_repr(f);
            return;
        }
        case Value::Kind::String: json_string(out, v.str()); return;
        case Value::Kind::List: {
            if (v.list().empty()) {
                out += "[]";
                return;
            }
            out += '[';
            bool first = true;
            for (const Value& e : v.list()) {
                if (!first) out += item_sep;
                first = false;
                newline(depth + 1);
                json_value(out, e, indent, depth + 1);
            }
            newline(depth);
            out += ']';
            return;
        }
        case Value::Kind::Dict: {
            if (v.dict().empty()) {
                out += "{}";
                return;
            }
            out += '{';
            bool first = true;
            for (const auto& [k, e] : v.dict()) {
                if (!first) out += item_sep;
                first = false;
                newline(depth + 1);
                json_string(out, k);
                out += ": ";
                json_value(out, e, indent, depth + 1);
            }
            newline(depth);
            out += '}';
            return;
        }
        default:
            fail(KV_ERR_INVALID_ARGUMENT, "tojson: a %s cannot be written as JSON", v.type_name());
    }
}

}  // namespace

std::string Value::to_str() const {
    switch (kind_) {
        case Kind::Undefined: return "";
        case Kind::String: return s_;
        default: return repr();
    }
}

std::string Value::repr() const {
    switch (kind_) {
        case Kind::Undefined: return "";
        case Kind::None: return "None";
        case Kind::Bool: return b_ ? "True" : "False";
        case Kind::Int: return std::to_string(i_);
        case Kind::Float: return float_repr(f_);
        case Kind::String: return string_repr(s_);
        case Kind::List: {
            std::string out = "[";
            for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
            return out + "]";
        }
        case Kind::Dict:
        case Kind::Namespace: {
            std::string out = kind_ == Kind::Namespace ? "<Namespace {" : "{";
            bool first = true;
            for (const auto& [k, v] : *dict_) {
                out += (first ? "" : ", ") + string_repr(k) + ": " + v.repr();
                first = false;
            }
            return out + (kind_ == Kind::Namespace ? "}>" : "}");
        }
        case Kind::Function: return "<built-in function " + s_ + ">";
    }
    return "";
}

std::string Value::to_json(int indent) const {
    std::string out;
    json_value(out, *this, indent, 0);
    return out;
}

const char* Value::type_name() const {
    switch (kind_) {
        case Kind::Undefined: return "undefined value";
        case Kind::None: return "none";
        case Kind::Bool: return "boolean";
        case Kind::Int: return "integer";
        case Kind::Float: return "float";
        case Kind::String: return "string";
        case Kind::List: return "list";
        case Kind::Dict: return "dict";
        case Kind::Namespace: return "namespace";
        case Kind::Function: return "function";
    }
    return "value";
}

bool Value::equals(const Value& o) const {
    if (is_number() && o.is_number()) {
        if (kind_ != Kind::Float && o.kind_ != Kind::Float) return i_ == o.i_;
        return as_number() == o.as_number();
    }
    if (kind_ != o.kind_) return false;
    switch (kind_) {
        case Kind::Undefined:
        case Kind::None: return true;
        case Kind::String: return s_ == o.s_;
        case Kind::List: {
            if (list_->size() != o.list_->size()) return false;
            for (size_t i = 0; i < list_->size(); ++i)
                if (!(*list_)[i].equals((*o.list_)[i])) return false;
            return true;
        }
        case Kind::Dict: {
            if (dict_->size() != o.dict_->size()) return false;
            for (const auto& [k, v] : *dict_) {
                const Value* w = o.find(k);
                if (!w || !v.equals(*w)) return false;
            }
            return true;
        }
        case Kind::Namespace: return dict_ == o.dict_;
        case Kind::Function: return fn_ == o.fn_;
        default: return false;
    }
}

Value CallArgs::get(size_t i, const char* name, const char* what, Value fallback) const {
    for (const auto& [k, v] : kwargs)
        if (name && k == name) return v;
    if (i < args.size()) return args[i];
    if (fallback.is_undefined() && fallback.str() == "")
        fail(KV_ERR_INVALID_ARGUMENT, "chat template error at %s: %s needs argument %zu (%s)", where.c_str(), what,
             i + 1, name ? name : "?");
    return fallback;
}

std::vector<std::string> utf8_chars(const std::string& s) {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        if (i + n > s.size()) n = 1;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) n = 1;
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}

size_t utf8_length(const std::string& s) {
    for (unsigned char c : s)
        if (c >= 0x80) return utf8_chars(s).size();
    return s.size();
}

}  // namespace kv::chat
