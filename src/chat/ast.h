// The parsed form of a chat template (internal to src/chat/): expressions and statements, each
// with the line and column of its source for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace kv::chat {

struct Pos {
    int line = 1;
    int col = 1;
    std::string str() const { return "line " + std::to_string(line) + ", column " + std::to_string(col); }
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

// Operands by kind (args):
//   Literal  -                      Name    -
//   List     items                  Dict    key0, value0, key1, value1, ...
//   Attr     object (name: attr)    Item    object, index
//   Slice    object, start, stop, step (absent ones are null)
//   Call     callee, positional...  (kwargs: keyword arguments)
//   Filter   subject, positional... (name: filter; kwargs)
//   Test     subject, positional... (name: test; negated: `is not`)
//   Unary    operand (name: "not", "-", "+")
//   Binary   left, right (name: the operator: "or" "and" "==" "!=" "<" ">" "<=" ">=" "in"
//            "not in" "+" "-" "*" "/" "//" "%" "**" "~")
//   Cond     then, condition, else (null: undefined)
struct Expr {
    enum class Kind { Literal, Name, List, Dict, Attr, Item, Slice, Call, Filter, Test, Unary, Binary, Cond };
    Kind kind;
    Pos pos;
    Value value;
    std::string name;
    std::vector<ExprPtr> args;
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
    bool negated = false;
    Expr(Kind k, Pos p) : kind(k), pos(p) {}
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

// By kind:
//   Text      text
//   Output    expr
//   If        conds[i] guards bodies[i]; a last extra body is the else branch
//   For       targets (loop variables), expr (the iterable), conds (0 or 1: the loop filter),
//             bodies[0] the loop body, bodies[1] (optional) the else branch
//   Set       targets[0] (and attr: `set ns.attr = ...`; several targets: unpacking), expr
//   SetBlock  targets[0], bodies[0] rendered into it
//   Break, Continue
//   Block     bodies[0] ({% generation %})
//   Macro     targets[0] the name, targets[1..] the parameters, conds[i] the default of
//             parameter i + 1 (null: required), bodies[0]
struct Node {
    enum class Kind { Text, Output, If, For, Set, SetBlock, Break, Continue, Block, Macro };
    Kind kind;
    Pos pos;
    std::string text;
    ExprPtr expr;
    std::vector<ExprPtr> conds;
    std::vector<Body> bodies;
    std::vector<std::string> targets;
    std::string attr;
    Node(Kind k, Pos p) : kind(k), pos(p) {}
};

// Names Jinja defines that this engine knows (builtins.cpp): a name Jinja lacks is a syntax
// error; one it has that is not implemented is KV_ERR_UNSUPPORTED when used.
bool jinja_filter_exists(const std::string& name);
bool jinja_test_exists(const std::string& name);

// The built-ins (builtins.cpp). `args.where` locates the call for error messages.
Value apply_filter(const std::string& name, const Value& subject, CallArgs& args);
bool apply_test(const std::string& name, const Value& subject, CallArgs& args);
// obj.name: a dict's key or method, a namespace's attribute, a string's method; else Undefined.
Value get_attr(const Value& obj, const std::string& name, const std::string& where);
// A render-time error: KV_ERR_INVALID_ARGUMENT, "chat template error at <where>: <what>".
[[noreturn]] void fail_render(const std::string& where, const std::string& what);
// What an Undefined value stands for, for messages ("'foo' is undefined").
std::string undefined_what(const Value& v);

}  // namespace kv::chat
