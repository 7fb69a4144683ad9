// The evaluator of chat templates (see template.h): walks the AST with Jinja's scoping (a for
// loop's body gets a fresh scope each iteration; if/elif/else share their enclosing scope; only a
// namespace is changed in place), writing text into one output string.
#include <cmath>
#include <ctime>

#include "chat/ast.h"
#include "chat/template.h"
#include "common/error.h"

namespace kv::chat {

void fail_render(const std::string& where, const std::string& what) {
    fail(KV_ERR_INVALID_ARGUMENT, "chat template error at %s: %s", where.c_str(), what.c_str());
}

std::string undefined_what(const Value& v) { return v.str().empty() ? "a value is undefined" : v.str(); }

namespace {

constexpr size_t kMaxOutput = 64u << 20;         // bytes of rendered text
constexpr int kMaxCallDepth = 400;               // nested evaluation

enum class Flow { Normal, Break, Continue };

class Renderer {
public:
    Renderer(std::vector<Dict> scopes, uint64_t max_steps) : scopes_(std::move(scopes)), max_steps_(max_steps) {}

    std::string run(const Body& body) {
        exec(body);
        return std::move(out_);
    }

private:
    void step(const Pos& p) {
        if (++steps_ > max_steps_)
            fail_render(p.str(), "the template did not finish within " + std::to_string(max_steps_) + " steps");
    }

    Flow exec(const Body& body) {
        for (const auto& n : body) {
            Flow f = exec(*n);
            if (f != Flow::Normal) return f;
        }
        return Flow::Normal;
    }

    Flow exec(const Node& n) {
        step(n.pos);
        switch (n.kind) {
            case Node::Kind::Text: emit(n.text, n.pos); return Flow::Normal;
            case Node::Kind::Output: emit(eval(*n.expr).to_str(), n.pos); return Flow::Normal;
            case Node::Kind::If:
                for (size_t i = 0; i < n.conds.size(); ++i)
                    if (eval(*n.conds[i]).truthy()) return exec(n.bodies[i]);
                if (n.bodies.size() > n.conds.size()) return exec(n.bodies.back());
                return Flow::Normal;
            case Node::Kind::For: exec_for(n); return Flow::Normal;
            case Node::Kind::Set: exec_set(n); return Flow::Normal;
            case Node::Kind::SetBlock: {
                std::string saved = std::move(out_);
                out_.clear();
                Flow f = exec(n.bodies[0]);
                assign(n.targets[0], Value(std::move(out_)));
                out_ = std::move(saved);
                return f;
            }
            case Node::Kind::Break: return Flow::Break;
            case Node::Kind::Continue: return Flow::Continue;
            case Node::Kind::Block: return exec(n.bodies[0]);
            case Node::Kind::Macro: define_macro(n); return Flow::Normal;
        }
        return Flow::Normal;
    }

    // A macro is a function of the current render: called, it renders its body with its
    // arguments over the template's globals and top-level variables (not the caller's locals,
    // as in Jinja) and returns the text.
    void define_macro(const Node& n) {
        const Node* node = &n;
        assign(n.targets[0], Value::function(n.targets[0], [this, node](CallArgs& a) { return call_macro(*node, a); }));
    }

    Value call_macro(const Node& n, CallArgs& a) {
        const size_t n_params = n.targets.size() - 1;
        if (a.args.size() > n_params)
            fail_render(a.where, "macro '" + n.targets[0] + "' takes " + std::to_string(n_params) + " arguments, " +
                                     std::to_string(a.args.size()) + " given");
        Dict args;
        for (size_t i = 0; i < n_params; ++i) {
            const std::string& name = n.targets[i + 1];
            const Value* v = i < a.args.size() ? &a.args[i] : nullptr;
            for (const auto& kw : a.kwargs)
                if (kw.first == name) v = &kw.second;
            if (v) args.emplace_back(name, *v);
            else if (n.conds[i]) args.emplace_back(name, eval(*n.conds[i]));
            else args.emplace_back(name, Value::undefined("'" + name + "' is undefined (macro '" + n.targets[0] +
                                                          "' was called without it)"));
        }
        for (const auto& kw : a.kwargs) {
            bool known = false;
            for (size_t i = 1; i < n.targets.size(); ++i) known = known || n.targets[i] == kw.first;
            if (!known) fail_render(a.where, "macro '" + n.targets[0] + "' has no parameter '" + kw.first + "'");
        }
        if (++macro_depth_ > 100) fail_render(a.where, "macros nested deeper than 100 calls");
        std::vector<Dict> saved = std::move(scopes_);
        scopes_ = {saved[0], saved[1], std::move(args)};
        std::string saved_out = std::move(out_);
        out_.clear();
        exec(n.bodies[0]);
        std::string text = std::move(out_);
        out_ = std::move(saved_out);
        scopes_ = std::move(saved);
        --macro_depth_;
        return Value(std::move(text));
    }

    void emit(const std::string& s, const Pos& p) {
        if (out_.size() + s.size() > kMaxOutput)
            fail_render(p.str(), "the rendered text exceeds " + std::to_string(kMaxOutput >> 20) + " MiB");
        out_ += s;
    }

    void assign(const std::string& name, Value v) {
        Dict& scope = scopes_.back();
        for (auto& [k, old] : scope)
            if (k == name) {
                old = std::move(v);
                return;
            }
        scope.emplace_back(name, std::move(v));
    }

    Value lookup(const std::string& name) const {
        for (size_t i = scopes_.size(); i-- > 0;)
            for (const auto& [k, v] : scopes_[i])
                if (k == name) return v;
        return Value::undefined("'" + name + "' is undefined");
    }

    void exec_set(const Node& n) {
        Value v = eval(*n.expr);
        if (!n.attr.empty()) {
            Value ns = lookup(n.targets[0]);
            if (ns.kind() != Value::Kind::Namespace)
                fail_render(n.pos.str(), "cannot set attribute '" + n.attr + "' of '" + n.targets[0] + "', a " +
                                             ns.type_name() + " (only a namespace() can be changed)");
            Dict& d = ns.mutable_namespace();
            for (auto& [k, old] : d)
                if (k == n.attr) {
                    old = std::move(v);
                    return;
                }
            d.emplace_back(n.attr, std::move(v));
            return;
        }
        if (n.targets.size() == 1) {
            assign(n.targets[0], std::move(v));
            return;
        }
        List parts = unpack(v, n.targets.size(), n.pos);
        for (size_t i = 0; i < parts.size(); ++i) assign(n.targets[i], parts[i]);
    }

    List unpack(const Value& v, size_t n, const Pos& p) {
        if (!v.is_list() || v.list().size() != n)
            fail_render(p.str(), "cannot unpack a " + std::string(v.type_name()) + " into " + std::to_string(n) +
                                     " variables");
        return v.list();
    }

    List iterate(const Value& v, const Pos& p) {
        switch (v.kind()) {
            case Value::Kind::Undefined: return {};
            case Value::Kind::List: return v.list();
            case Value::Kind::Dict: {
                List keys;
                for (const auto& kv : v.dict()) keys.emplace_back(kv.first);
                return keys;
            }
            case Value::Kind::String: {
                List chars;
                for (auto& c : utf8_chars(v.str())) chars.emplace_back(std::move(c));
                return chars;
            }
            default: fail_render(p.str(), std::string("cannot loop over a ") + v.type_name());
        }
    }

    void bind_targets(const Node& n, const Value& item) {
        if (n.targets.size() == 1) {
            assign(n.targets[0], item);
            return;
        }
        List parts = unpack(item, n.targets.size(), n.pos);
        for (size_t i = 0; i < parts.size(); ++i) assign(n.targets[i], parts[i]);
    }

    void exec_for(const Node& n) {
        List all = iterate(eval(*n.expr), n.expr->pos);
        List items;
        if (n.conds.empty()) {
            items = std::move(all);
        } else {
            for (const Value& item : all) {
                scopes_.emplace_back();
                bind_targets(n, item);
                bool keep = eval(*n.conds[0]).truthy();
                scopes_.pop_back();
                if (keep) items.push_back(item);
            }
        }
        if (items.empty()) {
            if (n.bodies.size() > 1) {
                scopes_.emplace_back();
                exec(n.bodies[1]);
                scopes_.pop_back();
            }
            return;
        }
        // One loop object per loop, updated in place each iteration (as Jinja's LoopContext is).
        const int64_t len = int64_t(items.size());
        auto index = std::make_shared<int64_t>(0);
        Value loop(Dict{{"index", Value()}, {"index0", Value()}, {"revindex", Value()}, {"revindex0", Value()},
                        {"first", Value()}, {"last", Value()}, {"length", Value(len)}, {"depth", Value(1)},
                        {"depth0", Value(0)}, {"previtem", Value()}, {"nextitem", Value()},
                        {"cycle", Value::function("loop.cycle", [index](CallArgs& a) {
                             if (a.args.empty()) fail_render(a.where, "loop.cycle() needs at least one value");
                             return a.args[size_t(*index) % a.args.size()];
                         })}});
        Dict& fields = loop.mutable_namespace();
        scopes_.emplace_back();
        for (int64_t i = 0; i < len; ++i) {
            step(n.pos);
            *index = i;
            fields[0].second = Value(i + 1);
            fields[1].second = Value(i);
            fields[2].second = Value(len - i);
            fields[3].second = Value(len - i - 1);
            fields[4].second = Value(i == 0);
            fields[5].second = Value(i == len - 1);
            fields[9].second = i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item");
            fields[10].second = i + 1 < len ? items[size_t(i + 1)] : Value::undefined("there is no next item");
            scopes_.back().clear();
            bind_targets(n, items[size_t(i)]);
            assign("loop", loop);
            Flow f = exec(n.bodies[0]);
            if (f == Flow::Break) break;
        }
        scopes_.pop_back();
    }

    // --- expressions --------------------------------------------------------------------------
    struct DepthGuard {
        int& d;
        DepthGuard(int& depth, const Pos& p) : d(depth) {
            if (++d > kMaxCallDepth) fail_render(p.str(), "expressions nested too deeply");
        }
        ~DepthGuard() { --d; }
    };

    CallArgs eval_args(const Expr& e, size_t first) {
        CallArgs a;
        a.where = e.pos.str();
        for (size_t i = first; i < e.args.size(); ++i) a.args.push_back(eval(*e.args[i]));
        for (const auto& [k, x] : e.kwargs) a.kwargs.emplace_back(k, eval(*x));
        return a;
    }

    Value eval(const Expr& e) {
        step(e.pos);
        DepthGuard guard(depth_, e.pos);
        switch (e.kind) {
            case Expr::Kind::Literal: return e.value;
            case Expr::Kind::Name: return lookup(e.name);
            case Expr::Kind::List: {
                List l;
                for (const auto& x : e.args) l.push_back(eval(*x));
                return Value(std::move(l));
            }
            case Expr::Kind::Dict: {
                Dict d;
                for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
                    Value k = eval(*e.args[i]);
                    if (!k.is_string())
                        fail_render(e.args[i]->pos.str(), std::string("dict keys must be strings here, not a ") +
                                                              k.type_name());
                    Value v = eval(*e.args[i + 1]);
                    bool replaced = false;
                    for (auto& [dk, dv] : d)
                        if (dk == k.str()) dv = v, replaced = true;
                    if (!replaced) d.emplace_back(k.str(), std::move(v));
                }
                return Value(std::move(d));
            }
            case Expr::Kind::Attr: {
                Value obj = eval(*e.args[0]);
                if (obj.is_undefined())
                    fail_render(e.pos.str(), "cannot read '." + e.name + "': " + undefined_what(obj));
                return get_attr(obj, e.name, e.pos.str());
            }
            case Expr::Kind::Item: return item(eval(*e.args[0]), eval(*e.args[1]), e.pos);
            case Expr::Kind::Slice: return slice(e);
            case Expr::Kind::Call: {
                Value callee = eval(*e.args[0]);
                if (callee.is_undefined()) fail_render(e.pos.str(), "cannot call " + undefined_what(callee));
                if (callee.kind() != Value::Kind::Function)
                    fail_render(e.pos.str(), std::string("a ") + callee.type_name() + " is not callable");
                CallArgs a = eval_args(e, 1);
                return callee.fn()(a);
            }
            case Expr::Kind::Filter: {
                Value subject = eval(*e.args[0]);
                CallArgs a = eval_args(e, 1);
                return apply_filter(e.name, subject, a);
            }
            case Expr::Kind::Test: {
                Value subject = eval(*e.args[0]);
                CallArgs a = eval_args(e, 1);
                return Value(apply_test(e.name, subject, a) != e.negated);
            }
            case Expr::Kind::Unary: {
                Value v = eval(*e.args[0]);
                if (e.name == "not") return Value(!v.truthy());
                if (v.is_undefined()) fail_render(e.pos.str(), "unary '" + e.name + "' of " + undefined_what(v));
                if (!v.is_number())
                    fail_render(e.pos.str(), "unary '" + e.name + "' of a " + std::string(v.type_name()));
                if (e.name == "+") return v.kind() == Value::Kind::Bool ? Value(v.as_int()) : v;
                if (v.kind() == Value::Kind::Float) return Value(-v.as_number());
                return Value(-v.as_int());
            }
            case Expr::Kind::Binary: return binary(e);
            case Expr::Kind::Cond:
                if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
                if (e.args[2]) return eval(*e.args[2]);
                return Value::undefined("the conditional expression had no else branch");
        }
        return Value();
    }

    static int64_t norm_index(int64_t i, size_t n) { return i < 0 ? i + int64_t(n) : i; }

    Value item(const Value& obj, const Value& key, const Pos& p) {
        if (obj.is_undefined()) fail_render(p.str(), "cannot index: " + undefined_what(obj));
        if ((obj.is_list() || obj.is_string()) && (key.kind() == Value::Kind::Int || key.kind() == Value::Kind::Bool)) {
            if (obj.is_list()) {
                int64_t i = norm_index(key.as_int(), obj.list().size());
                if (i < 0 || i >= int64_t(obj.list().size()))
                    return Value::undefined("list index " + std::to_string(key.as_int()) + " is out of range");
                return obj.list()[size_t(i)];
            }
            auto chars = utf8_chars(obj.str());
            int64_t i = norm_index(key.as_int(), chars.size());
            if (i < 0 || i >= int64_t(chars.size()))
                return Value::undefined("string index " + std::to_string(key.as_int()) + " is out of range");
            return Value(chars[size_t(i)]);
        }
        if (obj.is_mapping() && key.is_string()) {
            if (const Value* v = obj.find(key.str())) return *v;
            return Value::undefined("the dict has no key '" + key.str() + "'");
        }
        if (key.is_string()) return get_attr(obj, key.str(), p.str());
        return Value::undefined(std::string("a ") + obj.type_name() + " has no item " + key.repr());
    }

    Value slice(const Expr& e) {
        Value obj = eval(*e.args[0]);
        if (obj.is_undefined()) fail_render(e.pos.str(), "cannot slice: " + undefined_what(obj));
        int64_t part[3] = {0, 0, 1};
        bool given[3] = {false, false, false};
        for (int k = 0; k < 3; ++k) {
            if (!e.args[size_t(k) + 1]) continue;
            Value v = eval(*e.args[size_t(k) + 1]);
            if (v.is_none()) continue;
            if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool)
                fail_render(e.pos.str(), std::string("slice indices must be integers, not a ") + v.type_name());
            part[k] = v.as_int();
            given[k] = true;
        }
        if (part[2] == 0) fail_render(e.pos.str(), "slice step cannot be zero");
        List src;
        bool is_str = obj.is_string();
        if (is_str) {
            for (auto& c : utf8_chars(obj.str())) src.emplace_back(std::move(c));
        } else if (obj.is_list()) {
            src = obj.list();
        } else {
            fail_render(e.pos.str(), std::string("cannot slice a ") + obj.type_name());
        }
        // Python's slice.indices()
        const int64_t n = int64_t(src.size()), step = part[2];
        auto clamp = [&](int64_t i, bool is_given, int64_t dflt) {
            if (!is_given) return dflt;
            if (i < 0) i += n;
            if (step > 0) return i < 0 ? 0 : (i > n ? n : i);
            return i < 0 ? -1 : (i >= n ? n - 1 : i);
        };
        int64_t start = clamp(part[0], given[0], step > 0 ? 0 : n - 1);
        int64_t stop = clamp(part[1], given[1], step > 0 ? n : -1);
        List out;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(src[size_t(i)]);
        if (!is_str) return Value(std::move(out));
        std::string s;
        for (const Value& c : out) s += c.str();
        return Value(std::move(s));
    }

    static bool numeric(const Value& v) { return v.is_number(); }
    static bool is_float(const Value& v) { return v.kind() == Value::Kind::Float; }

    Value binary(const Expr& e) {
        const std::string& op = e.name;
        if (op == "and") {
            Value l = eval(*e.args[0]);
            return l.truthy() ? eval(*e.args[1]) : l;
        }
        if (op == "or") {
            Value l = eval(*e.args[0]);
            return l.truthy() ? l : eval(*e.args[1]);
        }
        Value l = eval(*e.args[0]);
        Value r = eval(*e.args[1]);
        const std::string where = e.pos.str();
        if (op == "==") return Value(l.equals(r));
        if (op == "!=") return Value(!l.equals(r));
        if (op == "~") return Value(l.to_str() + r.to_str());
        if (op == "in" || op == "not in") {
            bool found = false;
            if (r.is_string()) {
                if (!l.is_string())
                    fail_render(where, std::string("'in <string>' needs a string on the left, not a ") + l.type_name());
                found = r.str().find(l.str()) != std::string::npos;
            } else if (r.is_list()) {
                for (const Value& x : r.list()) found = found || x.equals(l);
            } else if (r.is_mapping()) {
                found = l.is_string() && r.find(l.str()) != nullptr;
            } else if (!r.is_undefined()) {
                fail_render(where, std::string("'in' needs a string, list or dict on the right, not a ") + r.type_name());
            }
            return Value(found != (op == "not in"));
        }
        if (l.is_undefined() || r.is_undefined())
            fail_render(where, "'" + op + "' with an undefined operand: " + undefined_what(l.is_undefined() ? l : r));
        if (op == "<" || op == ">" || op == "<=" || op == ">=") {
            int c;
            if (numeric(l) && numeric(r)) {
                double a = l.as_number(), b = r.as_number();
                c = a < b ? -1 : a > b ? 1 : 0;
            } else if (l.is_string() && r.is_string()) {
                c = l.str().compare(r.str());
            } else {
                fail_render(where, "cannot compare a " + std::string(l.type_name()) + " and a " + r.type_name() +
                                       " with '" + op + "'");
            }
            return Value(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
        }
        auto type_error = [&]() {
            fail_render(where, "unsupported operand types for '" + op + "': a " + l.type_name() + " and a " +
                                   r.type_name());
        };
        if (op == "+") {
            if (numeric(l) && numeric(r)) {
                if (is_float(l) || is_float(r)) return Value(l.as_number() + r.as_number());
                return Value(l.as_int() + r.as_int());
            }
            if (l.is_string() && r.is_string()) return Value(l.str() + r.str());
            if (l.is_list() && r.is_list()) {
                List out = l.list();
                out.insert(out.end(), r.list().begin(), r.list().end());
                return Value(std::move(out));
            }
            type_error();
        }
        if (op == "*" && (l.is_string() || l.is_list() || r.is_string() || r.is_list())) {
            const Value& seq = (l.is_string() || l.is_list()) ? l : r;
            const Value& cnt = (l.is_string() || l.is_list()) ? r : l;
            if (cnt.kind() != Value::Kind::Int && cnt.kind() != Value::Kind::Bool) type_error();
            int64_t n = cnt.as_int() < 0 ? 0 : cnt.as_int();
            size_t unit = seq.is_string() ? seq.str().size() : seq.list().size();
            if (unit && uint64_t(n) > kMaxOutput / unit) fail_render(where, "a repetition too large to build");
            if (seq.is_string()) {
                std::string s;
                for (int64_t i = 0; i < n; ++i) s += seq.str();
                return Value(std::move(s));
            }
            List out;
            for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
            return Value(std::move(out));
        }
        if (op == "%" && l.is_string())
            fail(KV_ERR_UNSUPPORTED, "chat template uses '%%' string formatting at %s, which kvulkan's template engine "
                 "does not support", where.c_str());
        if (!numeric(l) || !numeric(r)) type_error();
        bool ints = !is_float(l) && !is_float(r);
        double a = l.as_number(), b = r.as_number();
        if (op == "-") return ints ? Value(l.as_int() - r.as_int()) : Value(a - b);
        if (op == "*") return ints ? Value(l.as_int() * r.as_int()) : Value(a * b);
        if (op == "/") {
            if (b == 0) fail_render(where, "division by zero");
            return Value(a / b);
        }
        if (op == "//" || op == "%") {
            if (b == 0) fail_render(where, op == "%" ? "modulo by zero" : "division by zero");
            if (ints) {
                int64_t x = l.as_int(), y = r.as_int();
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;  // Python floors
                return op == "//" ? Value(q) : Value(m);
            }
            double q = std::floor(a / b);
            return op == "//" ? Value(q) : Value(a - q * b);
        }
        if (op == "**") {
            if (ints && r.as_int() >= 0) {
                int64_t out = 1;
                for (int64_t i = 0; i < r.as_int(); ++i) {
                    if (std::abs(double(out) * double(l.as_int())) > 9.2e18) fail_render(where, "integer overflow in '**'");
                    out *= l.as_int();
                    if (out == 0 || out == 1) break;
                }
                return Value(out);
            }
            return Value(std::pow(a, b));
        }
        type_error();
        return Value();
    }

    std::vector<Dict> scopes_;
    std::string out_;
    uint64_t steps_ = 0;
    uint64_t max_steps_;
    int depth_ = 0;
    int macro_depth_ = 0;
};

std::string strftime_value(const std::string& fmt, int64_t now) {
    std::time_t t = now >= 0 ? std::time_t(now) : std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
    return std::string(buf, n);
}

Dict builtin_globals(int64_t now) {
    Dict g;
    g.emplace_back("raise_exception", Value::function("raise_exception", [](CallArgs& a) -> Value {
                       std::string msg = a.args.empty() ? std::string() : a.args[0].to_str();
                       fail(KV_ERR_INVALID_ARGUMENT, "the chat template rejected the messages: %s", msg.c_str());
                   }));
    g.emplace_back("strftime_now", Value::function("strftime_now", [now](CallArgs& a) {
                       Value f = a.get(0, "format", "strftime_now()");
                       if (!f.is_string()) fail_render(a.where, "strftime_now() needs a format string");
                       return Value(strftime_value(f.str(), now));
                   }));
    g.emplace_back("namespace", Value::function("namespace", [](CallArgs& a) {
                       Dict d;
                       for (const Value& v : a.args) {
                           if (!v.is_mapping()) fail_render(a.where, "namespace() takes a dict or keyword arguments");
                           for (const auto& kv : v.dict()) d.push_back(kv);
                       }
                       for (auto& kv : a.kwargs) d.push_back(kv);
                       return Value::namespace_of(std::move(d));
                   }));
    g.emplace_back("dict", Value::function("dict", [](CallArgs& a) {
                       Dict d;
                       for (auto& kv : a.kwargs) d.push_back(kv);
                       return Value(std::move(d));
                   }));
    g.emplace_back("range", Value::function("range", [](CallArgs& a) {
                       int64_t p[3] = {0, 0, 1};
                       if (a.args.empty() || a.args.size() > 3) fail_render(a.where, "range() takes 1 to 3 integers");
                       for (const Value& v : a.args)
                           if (v.kind() != Value::Kind::Int) fail_render(a.where, "range() takes integers");
                       if (a.args.size() == 1) p[1] = a.args[0].as_int();
                       else
                           for (size_t i = 0; i < a.args.size(); ++i) p[i] = a.args[i].as_int();
                       if (p[2] == 0) fail_render(a.where, "range() step cannot be zero");
                       List out;
                       for (int64_t i = p[0]; p[2] > 0 ? i < p[1] : i > p[1]; i += p[2]) {
                           if (out.size() >= 1000000) fail_render(a.where, "range() longer than 1000000 items");
                           out.emplace_back(i);
                       }
                       return Value(std::move(out));
                   }));
    return g;
}

}  // namespace

std::string Template::render(const Dict& globals, uint64_t max_steps) const {
    Dict base = builtin_globals(-1);
    for (const auto& [k, v] : globals) {
        bool replaced = false;
        for (auto& [bk, bv] : base)
            if (bk == k) bv = v, replaced = true;
        if (!replaced) base.emplace_back(k, v);
    }
    std::vector<Dict> scopes;
    scopes.push_back(std::move(base));
    scopes.emplace_back();  // the template's own top-level variables
    Renderer r(std::move(scopes), max_steps);
    return r.run(*body_);
}

std::string format_chat(const Template& tmpl, const std::vector<ChatMessage>& messages, const ChatOptions& options) {
    List msgs;
    for (const auto& m : messages) msgs.emplace_back(Dict{{"role", Value(m.role)}, {"content", Value(m.content)}});
    Dict g{{"messages", Value(std::move(msgs))},
           {"add_generation_prompt", Value(options.add_generation_prompt)},
           {"tools", Value::none()},
           {"documents", Value::none()}};
    if (!options.bos_token.is_undefined()) g.emplace_back("bos_token", options.bos_token);
    if (!options.eos_token.is_undefined()) g.emplace_back("eos_token", options.eos_token);
    if (!options.enable_thinking.is_undefined()) g.emplace_back("enable_thinking", options.enable_thinking);
    if (options.now >= 0) {
        int64_t now = options.now;
        g.emplace_back("strftime_now", Value::function("strftime_now", [now](CallArgs& a) {
                           Value f = a.get(0, "format", "strftime_now()");
                           if (!f.is_string()) fail_render(a.where, "strftime_now() needs a format string");
                           return Value(strftime_value(f.str(), now));
                       }));
    }
    return tmpl.render(g);
}

}  // namespace kv::chat
