// The values a chat template computes with: Python/Jinja semantics in a small tagged type.
//
// Kinds: Undefined (a missing variable, key or attribute; prints as "", is falsy, iterates as
// empty, but an attribute, item or arithmetic on it is an error naming what was missing), None,
// Bool, Int (int64), Float (double), String (UTF-8 bytes; length, indexing and slicing count code
// points, as Python does), List, Dict (string keys in insertion order, as Python dicts keep
// them), Namespace (the mutable object of `namespace(...)`, the only value a template may change
// in place) and Function (a built-in: raise_exception, a bound string method, ...).
//
// List, Dict and Namespace share their storage when copied (Python references); templates run in
// an immutable environment, so only a Namespace is ever written through a copy.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kv::chat {

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;
struct CallArgs;
using Function = std::function<Value(CallArgs&)>;

class Value {
public:
    enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };

    Value() = default;  // Undefined
    static Value undefined(std::string what = {});
    static Value none();
    Value(bool b);
    Value(int64_t i);
    Value(int i) : Value(int64_t(i)) {}
    Value(double f);
    Value(std::string s);
    Value(const char* s) : Value(std::string(s)) {}
    Value(List l);
    Value(Dict d);
    static Value namespace_of(Dict d);
    static Value function(std::string name, Function f);

    Kind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == Kind::Undefined; }
    bool is_none() const { return kind_ == Kind::None; }
    bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
    bool is_string() const { return kind_ == Kind::String; }
    bool is_list() const { return kind_ == Kind::List; }
    bool is_dict() const { return kind_ == Kind::Dict; }
    bool is_mapping() const { return kind_ == Kind::Dict || kind_ == Kind::Namespace; }

    bool as_bool() const { return b_; }
    int64_t as_int() const { return i_; }
    double as_number() const;  // Bool, Int or Float
    const std::string& str() const { return s_; }  // String; Undefined: what is missing; Function: name
    const List& list() const { return *list_; }
    const Dict& dict() const { return *dict_; }  // Dict or Namespace
    Dict& mutable_namespace() const { return *dict_; }
    const Function& fn() const { return *fn_; }

    // Dict/Namespace lookup: nullptr when absent.
    const Value* find(const std::string& key) const;

    bool truthy() const;
    // Jinja's {{ x }} and |string: Python's str() ("None", "True", "1.5", "['a', 1]"); "" for Undefined.
    std::string to_str() const;
    // Python's repr(): strings quoted, as inside a printed list.
    std::string repr() const;
    // json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=False) as transformers' tojson
    // filter writes it (indent < 0: one line with ", " and ": " separators).
    std::string to_json(int indent = -1) const;
    // A short name of the kind for messages ("string", "list", "undefined value", ...).
    const char* type_name() const;

    bool equals(const Value& other) const;  // Python ==

private:
    Kind kind_ = Kind::Undefined;
    bool b_ = false;
    int64_t i_ = 0;
    double f_ = 0;
    std::string s_;
    std::shared_ptr<List> list_;
    std::shared_ptr<Dict> dict_;
    std::shared_ptr<Function> fn_;
};

// The arguments of a call, filter or test, with the position of the call for error messages.
struct CallArgs {
    std::vector<Value> args;
    std::vector<std::pair<std::string, Value>> kwargs;
    std::string where;  // "line 3, column 7"

    // The i-th positional argument, or the keyword `name`, or `fallback`; a default-constructed
    // `fallback` means the argument is required (an error names it when absent).
    Value get(size_t i, const char* name, const char* what, Value fallback = Value()) const;
};

// UTF-8 helpers: code points of a string (as byte strings), and its length in code points.
std::vector<std::string> utf8_chars(const std::string& s);
size_t utf8_length(const std::string& s);

}  // namespace kv::chat
