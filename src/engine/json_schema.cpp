#include "engine/json_schema.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "common/error.h"

namespace kv::engine {

namespace {

// ---- A strict JSON reader (RFC 8259), keeping object members in order ----------------------------

struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double num = 0;
    std::string text;  // String: decoded UTF-8; Number: the literal as written
    std::vector<Json> items;
    std::vector<std::pair<std::string, Json>> members;
    const Json* get(const std::string& key) const {
        for (const auto& [k, v] : members)
            if (k == key) return &v;
        return nullptr;
    }
};

class Reader {
public:
    explicit Reader(std::string_view s) : s_(s) {}
    Json document() {
        Json v = value(0);
        space();
        if (at_ != s_.size()) error("unexpected text after the JSON value");
        return v;
    }

private:
    [[noreturn]] void error(const char* what) {
        fail(KV_ERR_INVALID_ARGUMENT, "JSON schema: malformed JSON at byte %zu: %s", at_, what);
    }
    void space() {
        while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n' || s_[at_] == '\r')) ++at_;
    }
    bool eat(const char* lit) {
        size_t n = std::strlen(lit);
        if (s_.compare(at_, n, lit) != 0) return false;
        at_ += n;
        return true;
    }
    Json value(int depth) {
        if (depth > 256) error("nested too deeply");
        space();
        if (at_ >= s_.size()) error("unexpected end");
        Json v;
        char c = s_[at_];
        if (c == '{') {
            ++at_;
            v.kind = Json::Object;
            space();
            if (at_ < s_.size() && s_[at_] == '}') {
                ++at_;
                return v;
            }
            for (;;) {
                space();
                if (at_ >= s_.size() || s_[at_] != '"') error("expected a member name");
                std::string key = string();
                space();
                if (!eat(":")) error("expected ':'");
                v.members.emplace_back(std::move(key), value(depth + 1));
                space();
                if (eat(",")) continue;
                if (eat("}")) return v;
                error("expected ',' or '}'");
            }
        }
        if (c == '[') {
            ++at_;
            v.kind = Json::Array;
            space();
            if (eat("]")) return v;
            for (;;) {
                v.items.push_back(value(depth + 1));
                space();
                if (eat(",")) continue;
                if (eat("]")) return v;
                error("expected ',' or ']'");
            }
        }
        if (c == '"') {
            v.kind = Json::String;
            v.text = string();
            return v;
        }
        if (eat("true")) {
            v.kind = Json::Bool;
            v.b = true;
            return v;
        }
        if (eat("false")) {
            v.kind = Json::Bool;
            return v;
        }
        if (eat("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t b = at_;
            if (s_[at_] == '-') ++at_;
            if (at_ < s_.size() && s_[at_] == '0') ++at_;
            else if (!digits()) error("bad number");
            if (at_ < s_.size() && s_[at_] == '.') {
                ++at_;
                if (!digits()) error("bad number");
            }
            if (at_ < s_.size() && (s_[at_] == 'e' || s_[at_] == 'E')) {
                ++at_;
                if (at_ < s_.size() && (s_[at_] == '+' || s_[at_] == '-')) ++at_;
                if (!digits()) error("bad number");
            }
            v.kind = Json::Number;
            v.text = std::string(s_.substr(b, at_ - b));
            v.num = std::strtod(v.text.c_str(), nullptr);
            return v;
        }
        error("unexpected character");
    }
    bool digits() {
        size_t b = at_;
        while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
        return at_ > b;
    }
    uint32_t hex4() {
        if (at_ + 4 > s_.size()) error("short \\u escape");
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            char h = s_[at_++];
            int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) error("bad \\u escape");
            v = v * 16 + uint32_t(d);
        }
        return v;
    }
    static void utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }
    std::string string() {
        ++at_;  // '"'
        std::string out;
        for (;;) {
            if (at_ >= s_.size()) error("unterminated string");
            unsigned char c = static_cast<unsigned char>(s_[at_++]);
            if (c == '"') return out;
            if (c < 0x20) error("control character in a string");
            if (c != '\\') {
                out += char(c);
                continue;
            }
            if (at_ >= s_.size()) error("unterminated string");
            char e = s_[at_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00) {
                        if (!eat("\\u")) error("unpaired surrogate");
                        uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo >= 0xE000) error("unpaired surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp < 0xE000) {
                        error("unpaired surrogate");
                    }
                    utf8(out, cp);
                    break;
                }
                default: error("unknown escape");
            }
        }
    }

    std::string_view s_;
    size_t at_ = 0;
};

// ---- Schema to GBNF -----------------------------------------------------------------------------

// Rules every grammar may use (emitted when referenced). Strings and numbers are bounded where
// JSON allows no end otherwise only in the length of digits (16) and whitespace (20).
const std::map<std::string, std::string> kPrimitives = {
    {"ws", "[ \\t\\n]{0,20}"},
    {"char", "[^\"\\\\\\x00-\\x1f] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})"},
    {"string", "\"\\\"\" char* \"\\\"\""},
    {"int", "\"0\" | [1-9] [0-9]{0,15}"},
    {"integer", "\"-\"? int"},
    {"number", "\"-\"? int (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?"},
    {"boolean", "\"true\" | \"false\""},
    {"null", "\"null\""},
    {"value", "object | array | string | number | boolean | null"},
    {"object", "\"{\" ws ( string ws \":\" ws value ( ws \",\" ws string ws \":\" ws value )* )? ws \"}\""},
    {"array", "\"[\" ws ( value ( ws \",\" ws value )* )? ws \"]\""},
};
const std::map<std::string, std::vector<std::string>> kNeeds = {
    {"string", {"char"}}, {"integer", {"int"}}, {"number", {"int"}},
    {"value", {"object", "array", "string", "number", "boolean", "null"}},
    {"object", {"ws", "string", "value"}}, {"array", {"ws", "value"}},
};

// A GBNF string literal for `text` (UTF-8 passes through; quotes, backslashes, controls escaped).
std::string literal(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        } else {
            out += char(c);
        }
    }
    return out + "\"";
}

// A JSON value written compactly (enum/const values; strings re-escaped as JSON).
std::string to_json(const Json& v) {
    switch (v.kind) {
        case Json::Null: return "null";
        case Json::Bool: return v.b ? "true" : "false";
        case Json::Number: return v.text;
        case Json::String: {
            std::string out = "\"";
            for (unsigned char c : v.text) {
                if (c == '"') out += "\\\"";
                else if (c == '\\') out += "\\\\";
                else if (c == '\n') out += "\\n";
                else if (c == '\r') out += "\\r";
                else if (c == '\t') out += "\\t";
                else if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else out += char(c);
            }
            return out + "\"";
        }
        case Json::Array: {
            std::string out = "[";
            for (size_t i = 0; i < v.items.size(); ++i) out += (i ? "," : "") + to_json(v.items[i]);
            return out + "]";
        }
        case Json::Object: {
            std::string out = "{";
            for (size_t i = 0; i < v.members.size(); ++i) {
                Json k;
                k.kind = Json::String;
                k.text = v.members[i].first;
                out += (i ? "," : "") + to_json(k) + ":" + to_json(v.members[i].second);
            }
            return out + "}";
        }
    }
    return "null";
}

class Converter {
public:
    std::string run(const Json& schema) {
        std::string top = convert(schema, "root-value", "");
        rules_.emplace_back("root", "ws " + top);
        need("ws");
        std::string out;
        for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
        for (const auto& name : prims_) out += name + " ::= " + kPrimitives.at(name) + "\n";
        return out;
    }

private:
    void need(const std::string& prim) {
        if (!prims_.insert(prim).second) return;
        auto it = kNeeds.find(prim);
        if (it != kNeeds.end())
            for (const auto& p : it->second) need(p);
    }
    std::string prim(const std::string& name) {
        need(name);
        return name;
    }
    std::string rule(const std::string& name, const std::string& body) {
        std::string n = name;
        for (char& c : n)
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) c = '-';
        std::string unique = n;
        for (int i = 2; used_.count(unique); ++i) unique = n + "-" + std::to_string(i);
        used_.insert(unique);
        rules_.emplace_back(unique, body);
        return unique;
    }
    [[noreturn]] static void bad(const std::string& where, const char* what) {
        fail(KV_ERR_INVALID_ARGUMENT, "JSON schema at '%s': %s", where.empty() ? "/" : where.c_str(), what);
    }
    static uint32_t count(const Json& v, const std::string& where, const char* key) {
        if (v.kind != Json::Number || v.num < 0 || v.num != std::floor(v.num))
            bad(where, (std::string(key) + " must be a non-negative integer").c_str());
        if (v.num > 1000) fail(KV_ERR_UNSUPPORTED, "JSON schema at '%s': %s above 1000 is not supported", where.c_str(), key);
        return uint32_t(v.num);
    }

    // `body` repeated min..max times (max < 0: unbounded), separated by `sep`.
    static std::string repeat(const std::string& item, const std::string& sep, uint32_t min, int64_t max) {
        if (max == 0) return "";
        std::string first = item, rest = "(" + sep + " " + item + ")";
        std::string bound;
        if (max < 0) bound = min > 1 ? "{" + std::to_string(min - 1) + ",}" : "*";
        else bound = "{" + std::to_string(min > 1 ? min - 1 : 0) + "," + std::to_string(max - 1) + "}";
        std::string seq = first + " " + rest + bound;
        return min == 0 ? "(" + seq + ")?" : seq;
    }

    std::string convert(const Json& s, const std::string& name, const std::string& where) {
        if (s.kind == Json::Bool) {
            if (!s.b) bad(where, "the schema false accepts nothing");
            return prim("value");
        }
        if (s.kind != Json::Object) bad(where, "a schema must be an object or a boolean");
        static const std::set<std::string> ignored = {"title", "description", "default", "examples", "$schema",
                                                      "$id", "$comment", "deprecated", "readOnly", "writeOnly"};
        static const std::set<std::string> known = {"type", "properties", "required", "items", "minItems", "maxItems",
                                                    "minLength", "maxLength", "enum", "const", "anyOf", "oneOf",
                                                    "additionalProperties"};
        for (const auto& [k, v] : s.members) {
            (void)v;
            if (!ignored.count(k) && !known.count(k))
                fail(KV_ERR_UNSUPPORTED, "JSON schema at '%s': the keyword '%s' is not supported",
                     where.empty() ? "/" : where.c_str(), k.c_str());
        }
        if (const Json* c = s.get("const")) return rule(name, literal(to_json(*c)));
        if (const Json* e = s.get("enum")) {
            if (e->kind != Json::Array || e->items.empty()) bad(where + "/enum", "enum must be a non-empty array");
            std::string body;
            for (size_t i = 0; i < e->items.size(); ++i) body += (i ? " | " : "") + literal(to_json(e->items[i]));
            return rule(name, body);
        }
        for (const char* key : {"anyOf", "oneOf"})
            if (const Json* a = s.get(key)) {
                if (a->kind != Json::Array || a->items.empty()) bad(where + "/" + key, "must be a non-empty array");
                std::string body;
                for (size_t i = 0; i < a->items.size(); ++i)
                    body += (i ? " | " : "") +
                            convert(a->items[i], name + "-" + std::to_string(i), where + "/" + key + "/" + std::to_string(i));
                return rule(name, body);
            }
        const Json* t = s.get("type");
        if (!t) {
            if (s.get("properties")) return object(s, name, where);
            if (s.get("items")) return array(s, name, where);
            return prim("value");
        }
        if (t->kind == Json::Array) {
            if (t->items.empty()) bad(where + "/type", "an empty list of types");
            std::string body;
            for (size_t i = 0; i < t->items.size(); ++i) {
                if (t->items[i].kind != Json::String) bad(where + "/type", "types must be strings");
                body += (i ? " | " : "") + typed(s, t->items[i].text, name + "-" + t->items[i].text, where);
            }
            return rule(name, body);
        }
        if (t->kind != Json::String) bad(where + "/type", "type must be a string or a list of strings");
        return typed(s, t->text, name, where);
    }

    std::string typed(const Json& s, const std::string& type, const std::string& name, const std::string& where) {
        if (type == "object") return object(s, name, where);
        if (type == "array") return array(s, name, where);
        if (type == "string") {
            const Json *lo = s.get("minLength"), *hi = s.get("maxLength");
            if (!lo && !hi) return prim("string");
            uint32_t min = lo ? count(*lo, where, "minLength") : 0;
            int64_t max = hi ? int64_t(count(*hi, where, "maxLength")) : -1;
            if (max >= 0 && max < min) bad(where, "maxLength is below minLength");
            need("char");
            std::string bound = max < 0 ? "{" + std::to_string(min) + ",}" : "{" + std::to_string(min) + "," + std::to_string(max) + "}";
            return rule(name, "\"\\\"\" char" + bound + " \"\\\"\"");
        }
        if (type == "number" || type == "integer" || type == "boolean" || type == "null") return prim(type);
        fail(KV_ERR_INVALID_ARGUMENT, "JSON schema at '%s': unknown type '%s'", where.empty() ? "/" : where.c_str(), type.c_str());
    }

    std::string array(const Json& s, const std::string& name, const std::string& where) {
        need("ws");
        std::string item = prim("value");
        if (const Json* it = s.get("items")) item = convert(*it, name + "-item", where + "/items");
        const Json *lo = s.get("minItems"), *hi = s.get("maxItems");
        uint32_t min = lo ? count(*lo, where, "minItems") : 0;
        int64_t max = hi ? int64_t(count(*hi, where, "maxItems")) : -1;
        if (max >= 0 && max < min) bad(where, "maxItems is below minItems");
        std::string items = repeat(item, "ws \",\" ws", min, max);
        return rule(name, "\"[\" ws " + (items.empty() ? "" : items + " ") + "ws \"]\"");
    }

    std::string object(const Json& s, const std::string& name, const std::string& where) {
        need("ws");
        const Json* props = s.get("properties");
        if (const Json* ap = s.get("additionalProperties")) {
            if (!(ap->kind == Json::Bool && !ap->b))
                fail(KV_ERR_UNSUPPORTED, "JSON schema at '%s': additionalProperties other than false is not supported",
                     where.empty() ? "/" : where.c_str());
        }
        if (!props) {
            if (s.get("required")) bad(where, "required without properties");
            if (s.get("additionalProperties")) return rule(name, "\"{\" ws \"}\"");
            return prim("object");
        }
        if (props->kind != Json::Object) bad(where + "/properties", "properties must be an object");
        std::set<std::string> required;
        if (const Json* r = s.get("required")) {
            if (r->kind != Json::Array) bad(where + "/required", "required must be an array");
            for (const Json& k : r->items) {
                if (k.kind != Json::String) bad(where + "/required", "required names must be strings");
                if (!props->get(k.text))
                    bad(where + "/required", ("'" + k.text + "' is required but not among the properties").c_str());
                required.insert(k.text);
            }
        }
        // kv_i: "name" ws ":" ws value. first(i): properties i.. with none written yet; after(i):
        // properties i.. after one was written (each then starts with a comma). Required ones
        // must appear; optional ones may be left out, in the schema's order either way.
        const size_t n = props->members.size();
        std::vector<std::string> kv(n);
        std::vector<bool> req(n);
        for (size_t i = 0; i < n; ++i) {
            const auto& [key, sub] = props->members[i];
            Json k;
            k.kind = Json::String;
            k.text = key;
            std::string value = convert(sub, name + "-" + key, where + "/properties/" + key);
            kv[i] = rule(name + "-" + key + "-kv", literal(to_json(k)) + " ws \":\" ws " + value);
            req[i] = required.count(key) > 0;
        }
        std::vector<std::string> after(n + 1), first(n + 1);
        for (size_t i = n; i-- > 0;) {
            std::string tail = after[i + 1].empty() ? "" : " " + after[i + 1];
            std::string body = req[i] ? "ws \",\" ws " + kv[i] + tail : "(ws \",\" ws " + kv[i] + ")?" + tail;
            after[i] = rule(name + "-after-" + std::to_string(i), body);
        }
        for (size_t i = n; i-- > 0;) {
            std::string here = kv[i] + (after[i + 1].empty() ? "" : " " + after[i + 1]);
            std::string body = req[i] ? here : here + (first[i + 1].empty() ? " | \"\"" : " | " + first[i + 1]);
            first[i] = rule(name + "-first-" + std::to_string(i), body);
        }
        std::string inside = n ? first[0] + " " : "";
        return rule(name, "\"{\" ws " + inside + "ws \"}\"");
    }

    std::vector<std::pair<std::string, std::string>> rules_;
    std::set<std::string> used_{"root", "ws", "char", "string", "int", "integer", "number", "boolean", "null",
                                "value", "object", "array"};
    std::set<std::string> prims_;
};

}  // namespace

std::string json_schema_to_gbnf(std::string_view schema_json) {
    Json schema = Reader(schema_json).document();
    return Converter().run(schema);
}

}  // namespace kv::engine
