// Filters, tests and methods of chat templates (see template.h for the list). Each follows the
// Jinja/Python behaviour it is named after; a Jinja built-in not implemented here is reported as
// KV_ERR_UNSUPPORTED when a template reaches it, never approximated.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "chat/ast.h"
#include "common/error.h"

namespace kv::chat {
namespace {

const char* const kJinjaFilters[] = {
    "abs",    "attr",      "batch",  "capitalize", "center",   "count",    "d",          "default",
    "dictsort", "e",       "escape", "filesizeformat", "first", "float",   "forceescape", "format",
    "groupby", "indent",   "int",    "items",      "join",     "last",     "length",     "list",
    "lower",  "map",       "max",    "min",        "pprint",   "random",   "reject",     "rejectattr",
    "replace", "reverse",  "round",  "safe",       "select",   "selectattr", "slice",    "sort",
    "string", "striptags", "sum",    "title",      "tojson",   "trim",     "truncate",   "unique",
    "upper",  "urlencode", "urlize", "wordcount",  "wordwrap", "xmlattr"};
const char* const kJinjaTests[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false",
    "filter", "float", "ge", "gt", "greaterthan", "in", "integer", "iterable", "le", "lower",
    "lessthan", "lt", "mapping", "ne", "none", "number", "odd", "sameas", "sequence", "string",
    "test", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">="};

[[noreturn]] void unsupported(const char* what, const std::string& name, const std::string& where) {
    fail(KV_ERR_UNSUPPORTED, "chat template uses the %s '%s' at %s, which kvulkan's template engine does not support",
         what, name.c_str(), where.c_str());
}

bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// The code point of one UTF-8 character (as utf8_chars splits them); invalid bytes map to 0xFFFD.
uint32_t code_point(const std::string& c) {
    const auto* b = reinterpret_cast<const unsigned char*>(c.data());
    switch (c.size()) {
        case 1: return b[0] < 0x80 ? b[0] : 0xFFFD;
        case 2: return (uint32_t(b[0] & 0x1F) << 6) | (b[1] & 0x3F);
        case 3: return (uint32_t(b[0] & 0x0F) << 12) | (uint32_t(b[1] & 0x3F) << 6) | (b[2] & 0x3F);
        case 4: return (uint32_t(b[0] & 0x07) << 18) | (uint32_t(b[1] & 0x3F) << 12) | (uint32_t(b[2] & 0x3F) << 6) | (b[3] & 0x3F);
        default: return 0xFFFD;
    }
}

// Python's str.isspace() code points (what str.strip() and str.split() remove).
bool is_py_space_cp(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Case mapping here is ASCII only: text with letters of the scripts that have case beyond ASCII
// (Latin, Greek, Cyrillic, Armenian, Georgian, Glagolitic, fullwidth Latin, ...) is refused rather
// than mapped wrongly. Scripts without case (CJK, Arabic, emoji, ...) map to themselves, as in Python.
void require_ascii_case(const std::string& s, const char* op, const std::string& where) {
    for (unsigned char c : s)
        if (c >= 0x80) {
            for (const auto& ch : utf8_chars(s)) {
                uint32_t cp = code_point(ch);
                bool cased = (cp >= 0xB5 && cp <= 0x58F && cp != 0xD7 && cp != 0xF7) || (cp >= 0x10A0 && cp <= 0x10FF) ||
                             (cp >= 0x13A0 && cp <= 0x13FF) || (cp >= 0x1C80 && cp <= 0x1CBF) ||
                             (cp >= 0x1D00 && cp <= 0x1FFF) || (cp >= 0x2C00 && cp <= 0x2D2F) ||
                             (cp >= 0xA640 && cp <= 0xA7FF) || (cp >= 0xAB30 && cp <= 0xABBF) ||
                             (cp >= 0xFF21 && cp <= 0xFF5A) || (cp >= 0x10400 && cp <= 0x1E95F) ||
                             (cp >= 0x2160 && cp <= 0x217F) || (cp >= 0x24B6 && cp <= 0x24E9);
                if (cased)
                    fail(KV_ERR_UNSUPPORTED, "chat template applies %s at %s to text with non-ASCII letters, which "
                         "kvulkan's template engine does not support (its case mapping is ASCII only)", op, where.c_str());
            }
            return;
        }
}

// Python's str.strip/lstrip/rstrip: `chars` absent strips whitespace, else any of its code points.
std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
    std::vector<std::string> set;
    bool ws = chars.is_undefined() || chars.is_none();
    if (!ws) set = utf8_chars(chars.str());
    auto stripped = [&](const std::string& c) {
        if (ws) return is_py_space_cp(code_point(c));
        return std::find(set.begin(), set.end(), c) != set.end();
    };
    std::vector<std::string> cs = utf8_chars(s);
    size_t b = 0, e = cs.size();
    if (left)
        while (b < e && stripped(cs[b])) ++b;
    if (right)
        while (e > b && stripped(cs[e - 1])) --e;
    std::string out;
    for (size_t i = b; i < e; ++i) out += cs[i];
    return out;
}

std::string ascii_case(std::string s, bool upper) {
    for (char& c : s)
        if (upper && c >= 'a' && c <= 'z') c = char(c - 32);
        else if (!upper && c >= 'A' && c <= 'Z') c = char(c + 32);
    return s;
}

std::string capitalize(const std::string& s) {
    std::string out = ascii_case(s, false);
    if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = char(out[0] - 32);
    return out;
}

std::string title(const std::string& s) {
    std::string out;
    bool prev_alpha = false;
    for (char c : s) {
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alpha) out += prev_alpha ? ascii_case(std::string(1, c), false)[0] : ascii_case(std::string(1, c), true)[0];
        else out += c;
        prev_alpha = alpha;
    }
    return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
    std::string out;
    if (from.empty()) {
        // Python inserts `to` between code points (and at both ends)
        auto cs = utf8_chars(s);
        int64_t done = 0;
        for (const auto& c : cs) {
            if (count < 0 || done < count) out += to, ++done;
            out += c;
        }
        if (count < 0 || done < count) out += to;
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        size_t k = s.find(from, pos);
        if (k == std::string::npos) break;
        out.append(s, pos, k - pos);
        out += to;
        pos = k + from.size();
        ++done;
    }
    out.append(s, pos, std::string::npos);
    return out;
}

List split(const std::string& s, const Value& sep, int64_t maxsplit, const std::string& where) {
    List out;
    if (sep.is_undefined() || sep.is_none()) {
        size_t i = 0;
        while (true) {
            while (i < s.size() && is_py_space(s[i])) ++i;
            if (i >= s.size()) break;
            if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
                size_t e = s.size();
                while (e > i && is_py_space(s[e - 1])) --e;
                out.emplace_back(s.substr(i, e - i));
                break;
            }
            size_t j = i;
            while (j < s.size() && !is_py_space(s[j])) ++j;
            out.emplace_back(s.substr(i, j - i));
            i = j;
        }
        return out;
    }
    if (!sep.is_string()) fail_render(where, "split() separator must be a string");
    if (sep.str().empty()) fail_render(where, "split() with an empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
        size_t k = s.find(sep.str(), pos);
        if (k == std::string::npos) break;
        out.emplace_back(s.substr(pos, k - pos));
        pos = k + sep.str().size();
    }
    out.emplace_back(s.substr(pos));
    return out;
}

int64_t int_arg(const Value& v, const std::string& where, const char* what) {
    if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool)
        fail_render(where, std::string(what) + " must be an integer, not a " + v.type_name());
    return v.as_int();
}

std::string str_arg(const Value& v, const std::string& where, const char* what) {
    if (!v.is_string()) fail_render(where, std::string(what) + " must be a string, not a " + v.type_name());
    return v.str();
}

// Python's `prefix` argument of startswith/endswith: a string or a tuple (list) of strings.
bool affix_match(const std::string& s, const Value& arg, bool start, const std::string& where) {
    auto one = [&](const Value& v) {
        std::string a = str_arg(v, where, start ? "startswith() argument" : "endswith() argument");
        if (a.size() > s.size()) return false;
        return start ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
    };
    if (arg.is_list()) {
        for (const Value& v : arg.list())
            if (one(v)) return true;
        return false;
    }
    return one(arg);
}

Value string_method(const std::string& s, const std::string& name, const std::string& where) {
    auto bind = [&](auto f) { return Value::function(name, [s, f](CallArgs& a) { return f(s, a); }); };
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
        bool l = name != "rstrip", r = name != "lstrip";
        return bind([l, r](const std::string& self, CallArgs& a) {
            return Value(strip(self, a.get(0, "chars", "strip()", Value::undefined("absent")), l, r));
        });
    }
    if (name == "upper" || name == "lower")
        return bind([up = name == "upper"](const std::string& self, CallArgs& a) {
            require_ascii_case(self, up ? "upper()" : "lower()", a.where);
            return Value(ascii_case(self, up));
        });
    if (name == "title")
        return bind([](const std::string& self, CallArgs& a) {
            require_ascii_case(self, "title()", a.where);
            return Value(title(self));
        });
    if (name == "capitalize")
        return bind([](const std::string& self, CallArgs& a) {
            require_ascii_case(self, "capitalize()", a.where);
            return Value(capitalize(self));
        });
    if (name == "startswith" || name == "endswith")
        return bind([start = name == "startswith"](const std::string& self, CallArgs& a) {
            return Value(affix_match(self, a.get(0, "prefix", start ? "startswith()" : "endswith()"), start, a.where));
        });
    if (name == "split")
        return bind([](const std::string& self, CallArgs& a) {
            Value sep = a.get(0, "sep", "split()", Value::none());
            int64_t max = int_arg(a.get(1, "maxsplit", "split()", Value(int64_t(-1))), a.where, "maxsplit");
            return Value(split(self, sep, max, a.where));
        });
    if (name == "splitlines")
        return bind([](const std::string& self, CallArgs&) {
            List out;
            size_t pos = 0;
            while (pos < self.size()) {
                size_t k = self.find_first_of("\r\n", pos);
                if (k == std::string::npos) {
                    out.emplace_back(self.substr(pos));
                    break;
                }
                out.emplace_back(self.substr(pos, k - pos));
                pos = k + ((self[k] == '\r' && k + 1 < self.size() && self[k + 1] == '\n') ? 2 : 1);
            }
            return Value(std::move(out));
        });
    if (name == "replace")
        return bind([](const std::string& self, CallArgs& a) {
            std::string from = str_arg(a.get(0, "old", "replace()"), a.where, "replace() old");
            std::string to = str_arg(a.get(1, "new", "replace()"), a.where, "replace() new");
            int64_t count = int_arg(a.get(2, "count", "replace()", Value(int64_t(-1))), a.where, "count");
            return Value(replace_all(self, from, to, count));
        });
    if (name == "find")
        return bind([](const std::string& self, CallArgs& a) {
            size_t k = self.find(str_arg(a.get(0, "sub", "find()"), a.where, "find() argument"));
            return Value(k == std::string::npos ? int64_t(-1) : int64_t(utf8_length(self.substr(0, k))));
        });
    if (name == "count")
        return bind([](const std::string& self, CallArgs& a) {
            std::string sub = str_arg(a.get(0, "sub", "count()"), a.where, "count() argument");
            if (sub.empty()) return Value(int64_t(utf8_length(self) + 1));
            int64_t n = 0;
            for (size_t k = self.find(sub); k != std::string::npos; k = self.find(sub, k + sub.size())) ++n;
            return Value(n);
        });
    if (name == "join")
        return bind([](const std::string& self, CallArgs& a) {
            Value items = a.get(0, "iterable", "join()");
            if (!items.is_list()) fail_render(a.where, "str.join() needs a list");
            std::string out;
            for (size_t i = 0; i < items.list().size(); ++i)
                out += (i ? self : "") + str_arg(items.list()[i], a.where, "join() item");
            return Value(std::move(out));
        });
    static const char* const python_str_methods[] = {
        "casefold", "center", "encode", "expandtabs", "format", "format_map", "index", "isalnum", "isalpha",
        "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace",
        "istitle", "isupper", "ljust", "maketrans", "partition", "removeprefix", "removesuffix", "rfind",
        "rindex", "rjust", "rpartition", "rsplit", "swapcase", "translate", "zfill"};
    for (const char* m : python_str_methods)
        if (name == m) unsupported("string method", name, where);
    return Value::undefined("a string has no attribute '" + name + "'");
}

Value dict_method(const Value& d, const std::string& name) {
    if (name == "items")
        return Value::function(name, [d](CallArgs&) {
            List out;
            for (const auto& [k, v] : d.dict()) out.emplace_back(List{Value(k), v});
            return Value(std::move(out));
        });
    if (name == "keys")
        return Value::function(name, [d](CallArgs&) {
            List out;
            for (const auto& kv : d.dict()) out.emplace_back(kv.first);
            return Value(std::move(out));
        });
    if (name == "values")
        return Value::function(name, [d](CallArgs&) {
            List out;
            for (const auto& kv : d.dict()) out.push_back(kv.second);
            return Value(std::move(out));
        });
    if (name == "get")
        return Value::function(name, [d](CallArgs& a) {
            Value key = a.get(0, "key", "get()");
            if (key.is_string())
                if (const Value* v = d.find(key.str())) return *v;
            return a.get(1, "default", "get()", Value::none());
        });
    return Value();
}

int64_t length_of(const Value& v, const std::string& where) {
    switch (v.kind()) {
        case Value::Kind::Undefined: return 0;
        case Value::Kind::String: return int64_t(utf8_length(v.str()));
        case Value::Kind::List: return int64_t(v.list().size());
        case Value::Kind::Dict:
        case Value::Kind::Namespace: return int64_t(v.dict().size());
        default: fail_render(where, std::string("a ") + v.type_name() + " has no length");
    }
}

List as_list(const Value& v, const std::string& where, const char* what) {
    switch (v.kind()) {
        case Value::Kind::Undefined: return {};
        case Value::Kind::List: return v.list();
        case Value::Kind::Dict: {
            List keys;
            for (const auto& kv : v.dict()) keys.emplace_back(kv.first);
            return keys;
        }
        case Value::Kind::String: {
            List out;
            for (auto& c : utf8_chars(v.str())) out.emplace_back(std::move(c));
            return out;
        }
        default: fail_render(where, std::string(what) + " needs a list, not a " + v.type_name());
    }
}

// The attribute (possibly dotted: "function.name") of an item, for selectattr/map/join.
Value attr_path(const Value& item, const std::string& path, const std::string& where) {
    Value cur = item;
    size_t pos = 0;
    while (pos <= path.size()) {
        size_t dot = path.find('.', pos);
        std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
        if (cur.is_undefined()) return cur;
        if (cur.is_mapping()) {
            const Value* v = cur.find(part);
            cur = v ? *v : Value::undefined("no attribute '" + part + "'");
        } else {
            cur = get_attr(cur, part, where);
        }
        if (dot == std::string::npos) break;
        pos = dot + 1;
    }
    return cur;
}

// select/reject(test, args...) and selectattr/rejectattr(attr, test, args...).
Value select_items(const Value& subject, CallArgs& a, bool by_attr, bool keep_matching) {
    List items = as_list(subject, a.where, "select");
    size_t first = by_attr ? 1 : 0;
    std::string attr;
    if (by_attr) attr = str_arg(a.get(0, nullptr, "selectattr()"), a.where, "attribute name");
    std::string test;
    if (a.args.size() > first) test = str_arg(a.args[first], a.where, "test name");
    if (!test.empty() && !jinja_test_exists(test)) fail_render(a.where, "unknown test '" + test + "'");
    List out;
    for (const Value& item : items) {
        Value v = by_attr ? attr_path(item, attr, a.where) : item;
        bool match;
        if (test.empty()) {
            match = v.truthy();
        } else {
            CallArgs ta;
            ta.where = a.where;
            ta.args.assign(a.args.begin() + std::ptrdiff_t(first + 1), a.args.end());
            match = apply_test(test, v, ta);
        }
        if (match == keep_matching) out.push_back(item);
    }
    return Value(std::move(out));
}

}  // namespace

bool jinja_filter_exists(const std::string& name) {
    for (const char* f : kJinjaFilters)
        if (name == f) return true;
    return false;
}

bool jinja_test_exists(const std::string& name) {
    for (const char* t : kJinjaTests)
        if (name == t) return true;
    return false;
}

Value get_attr(const Value& obj, const std::string& name, const std::string& where) {
    switch (obj.kind()) {
        case Value::Kind::Dict: {
            Value m = dict_method(obj, name);
            if (!m.is_undefined()) return m;
            if (const Value* v = obj.find(name)) return *v;
            return Value::undefined("the dict has no attribute '" + name + "'");
        }
        case Value::Kind::Namespace:
            if (const Value* v = obj.find(name)) return *v;
            return Value::undefined("the namespace has no attribute '" + name + "'");
        case Value::Kind::String: return string_method(obj.str(), name, where);
        default: return Value::undefined(std::string("a ") + obj.type_name() + " has no attribute '" + name + "'");
    }
}

Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
    const std::string& w = a.where;
    if (name == "safe") return v;
    if (name == "trim") {
        if (v.is_undefined()) return Value(std::string());
        return Value(strip(v.to_str(), a.get(0, "chars", "trim", Value::undefined("absent")), true, true));
    }
    if (name == "string") return Value(v.to_str());
    if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
        std::string text = v.to_str();
        require_ascii_case(text, ("the filter " + name).c_str(), w);
        if (name == "capitalize") return Value(capitalize(text));
        if (name == "title") return Value(title(text));
        return Value(ascii_case(text, name == "upper"));
    }
    if (name == "length" || name == "count") return Value(length_of(v, w));
    if (name == "default" || name == "d") {
        Value dflt = a.get(0, "default_value", "default", Value(std::string()));
        bool boolean = a.get(1, "boolean", "default", Value(false)).truthy();
        if (v.is_undefined() || (boolean && !v.truthy())) return dflt;
        return v;
    }
    if (name == "tojson") {
        Value indent = a.get(0, "indent", "tojson", Value::none());
        for (const auto& kw : a.kwargs)
            if (kw.first != "indent" && kw.first != "ensure_ascii" && kw.first != "sort_keys" &&
                kw.first != "separators")
                fail_render(w, "tojson() has no argument '" + kw.first + "'");
        for (const auto& kw : a.kwargs)
            if ((kw.first == "sort_keys" && kw.second.truthy()) || (kw.first == "ensure_ascii" && kw.second.truthy()) ||
                kw.first == "separators")
                unsupported("tojson argument", kw.first, w);
        if (v.is_undefined()) fail_render(w, "tojson of an undefined value: " + undefined_what(v));
        return Value(v.to_json(indent.is_none() ? -1 : int(int_arg(indent, w, "tojson indent"))));
    }
    if (name == "first" || name == "last") {
        if (v.is_undefined()) return Value::undefined("first/last of an undefined value");
        List items = as_list(v, w, name.c_str());
        if (items.empty()) return Value::undefined("first/last of an empty sequence");
        return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
        std::string sep = a.get(0, "d", "join", Value(std::string())).to_str();
        Value attr = a.get(1, "attribute", "join", Value::none());
        std::string out;
        List items = as_list(v, w, "join");
        for (size_t i = 0; i < items.size(); ++i) {
            Value x = attr.is_none() ? items[i] : attr_path(items[i], attr.to_str(), w);
            out += (i ? sep : "") + x.to_str();
        }
        return Value(std::move(out));
    }
    if (name == "list") return Value(as_list(v, w, "list"));
    if (name == "reverse") {
        if (v.is_string()) {
            auto cs = utf8_chars(v.str());
            std::string out;
            for (size_t i = cs.size(); i-- > 0;) out += cs[i];
            return Value(std::move(out));
        }
        List items = as_list(v, w, "reverse");
        std::reverse(items.begin(), items.end());
        return Value(std::move(items));
    }
    if (name == "items") {
        if (v.is_undefined()) return Value(List{});
        if (!v.is_mapping()) fail_render(w, std::string("items needs a dict, not a ") + v.type_name());
        List out;
        for (const auto& [k, x] : v.dict()) out.emplace_back(List{Value(k), x});
        return Value(std::move(out));
    }
    if (name == "replace") {
        std::string from = str_arg(a.get(0, "old", "replace"), w, "replace old");
        std::string to = str_arg(a.get(1, "new", "replace"), w, "replace new");
        int64_t count = int_arg(a.get(2, "count", "replace", Value::none()).is_none()
                                    ? Value(int64_t(-1))
                                    : a.get(2, "count", "replace"),
                                w, "count");
        return Value(replace_all(v.to_str(), from, to, count));
    }
    if (name == "int") {
        if (v.kind() == Value::Kind::Float) return Value(int64_t(v.as_number()));
        if (v.is_number()) return Value(v.as_int());
        if (v.is_string()) {
            std::string s = strip(v.str(), Value::undefined("absent"), true, true);
            char* end = nullptr;
            long long i = std::strtoll(s.c_str(), &end, 10);
            if (!s.empty() && end && *end == 0) return Value(int64_t(i));
            double f = std::strtod(s.c_str(), &end);
            if (!s.empty() && end && *end == 0 && std::isfinite(f)) return Value(int64_t(f));
        }
        return a.get(0, "default", "int", Value(int64_t(0)));
    }
    if (name == "float") {
        if (v.is_number()) return Value(v.as_number());
        if (v.is_string()) {
            std::string s = strip(v.str(), Value::undefined("absent"), true, true);
            char* end = nullptr;
            double f = std::strtod(s.c_str(), &end);
            if (!s.empty() && end && *end == 0) return Value(f);
        }
        return a.get(0, "default", "float", Value(0.0));
    }
    if (name == "abs") {
        if (v.kind() == Value::Kind::Float) return Value(std::fabs(v.as_number()));
        if (v.is_number()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
        fail_render(w, std::string("abs of a ") + v.type_name());
    }
    if (name == "unique") {
        List out;
        for (const Value& x : as_list(v, w, "unique")) {
            bool seen = false;
            for (const Value& y : out) seen = seen || y.equals(x);
            if (!seen) out.push_back(x);
        }
        return Value(std::move(out));
    }
    if (name == "select" || name == "reject") return select_items(v, a, false, name == "select");
    if (name == "selectattr" || name == "rejectattr") return select_items(v, a, true, name == "selectattr");
    if (name == "map") {
        List items = as_list(v, w, "map");
        List out;
        Value attr;
        for (const auto& kw : a.kwargs)
            if (kw.first == "attribute") attr = kw.second;
        if (!attr.is_undefined()) {
            Value dflt;
            for (const auto& kw : a.kwargs)
                if (kw.first == "default") dflt = kw.second;
            for (const Value& x : items) {
                Value y = attr_path(x, attr.to_str(), w);
                out.push_back(y.is_undefined() && !dflt.is_undefined() ? dflt : y);
            }
            return Value(std::move(out));
        }
        std::string filter = str_arg(a.get(0, nullptr, "map"), w, "map filter name");
        if (!jinja_filter_exists(filter)) fail_render(w, "unknown filter '" + filter + "'");
        CallArgs fa;
        fa.where = w;
        fa.args.assign(a.args.begin() + 1, a.args.end());
        for (const Value& x : items) out.push_back(apply_filter(filter, x, fa));
        return Value(std::move(out));
    }
    unsupported("filter", name, w);
}

bool apply_test(const std::string& name, const Value& v, CallArgs& a) {
    const std::string& w = a.where;
    using K = Value::Kind;
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.kind() == K::Bool;
    if (name == "true") return v.kind() == K::Bool && v.as_bool();
    if (name == "false") return v.kind() == K::Bool && !v.as_bool();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind() == K::Int;
    if (name == "float") return v.kind() == K::Float;
    if (name == "mapping") return v.is_mapping();
    if (name == "iterable") return v.is_list() || v.is_string() || v.is_mapping() || v.is_undefined();
    if (name == "sequence") return v.is_list() || v.is_string() || v.is_mapping();
    if (name == "callable") return v.kind() == K::Function;
    if (name == "lower" || name == "upper") {
        if (!v.is_string()) return false;
        std::string s = v.str();
        return s == ascii_case(s, name == "upper") && s != ascii_case(s, name != "upper");
    }
    if (name == "odd" || name == "even" || name == "divisibleby") {
        if (v.kind() != K::Int && v.kind() != K::Bool) fail_render(w, "'" + name + "' tests an integer");
        int64_t d = name == "divisibleby" ? int_arg(a.get(0, "num", "divisibleby"), w, "divisibleby") : 2;
        if (d == 0) fail_render(w, "divisibleby 0");
        bool div = v.as_int() % d == 0;
        return name == "odd" ? !div : div;
    }
    if (name == "sameas") {
        Value o = a.get(0, "other", "sameas");
        if (v.kind() != o.kind()) return false;
        if (v.kind() == K::None || v.kind() == K::Bool) return v.equals(o);
        return v.equals(o) && (v.is_number() || v.is_string());
    }
    if (name == "in") {
        Value seq = a.get(0, "seq", "in");
        if (seq.is_string()) return v.is_string() && seq.str().find(v.str()) != std::string::npos;
        if (seq.is_mapping()) return v.is_string() && seq.find(v.str());
        for (const Value& x : as_list(seq, w, "in")) if (x.equals(v)) return true;
        return false;
    }
    if (name == "eq" || name == "equalto" || name == "==") return v.equals(a.get(0, "other", "eq"));
    if (name == "ne" || name == "!=") return !v.equals(a.get(0, "other", "ne"));
    if (name == "lt" || name == "lessthan" || name == "<" || name == "le" || name == "<=" || name == "gt" ||
        name == "greaterthan" || name == ">" || name == "ge" || name == ">=") {
        Value o = a.get(0, "other", name.c_str());
        int c;
        if (v.is_number() && o.is_number()) c = v.as_number() < o.as_number() ? -1 : v.as_number() > o.as_number();
        else if (v.is_string() && o.is_string()) c = v.str().compare(o.str());
        else fail_render(w, "cannot compare a " + std::string(v.type_name()) + " and a " + o.type_name());
        if (name == "lt" || name == "lessthan" || name == "<") return c < 0;
        if (name == "le" || name == "<=") return c <= 0;
        if (name == "gt" || name == "greaterthan" || name == ">") return c > 0;
        return c >= 0;
    }
    unsupported("test", name, w);
}

}  // namespace kv::chat
