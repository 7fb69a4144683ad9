// Chat templates: the Jinja2 subset that models' tokenizer.chat_template texts use, rendered as
// Hugging Face transformers renders them (an ImmutableSandboxedEnvironment with trim_blocks,
// lstrip_blocks and the loopcontrols extension; Undefined prints as ""; its own tojson).
//
// Supported:
//   {{ expr }}, {% if/elif/else/endif %}, {% for a[, b] in expr [if cond] %}...{% else %}
//   {% endfor %} with loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem/
//   cycle, {% break %}, {% continue %}, {% set x = expr %}, {% set ns.attr = expr %},
//   {% set x %}...{% endset %}, {% macro name(a, b=default) %}...{% endmacro %} (called with
//   positional and keyword arguments; no caller()), {% generation %}...{% endgeneration %},
//   {# comments #},
//   whitespace control {%- -%} {{- -}} {#- -#} and {%+ +%};
//   literals (strings with escapes, ints, floats, true/false/none in either case, [lists],
//   (tuples), {dicts}), names, .attr, [item], [a:b:c] slices, calls with keyword arguments,
//   a if c else b, or/and/not, == != < > <= >= in, not in, + - * / // % ** ~;
//   filters: abs capitalize count d default first float int items join last length list lower
//   map reject rejectattr replace reverse safe select selectattr string title tojson trim unique
//   upper; tests: boolean callable defined divisibleby eq equalto even false float ge gt in
//   integer iterable le lower lt mapping ne none number odd sameas sequence string true
//   undefined upper (and ==, !=, <, <=, >, >=);
//   str methods: capitalize count endswith find join lower lstrip replace rstrip split
//   splitlines startswith strip title upper; dict methods: get items keys values;
//   globals: namespace(), range(), dict(), raise_exception(msg), strftime_now(fmt).
//
// Errors (kv::Error, the message naming the construct and its line and column):
//   - a syntax error (an unclosed tag, a missing {% endif %}, an unknown tag, filter or test
//     name, an unexpected token): `syntax_status` given to parse();
//   - a Jinja construct this engine does not implement ({% call %}, {% include %}, a Jinja
//     filter it lacks, ...): KV_ERR_UNSUPPORTED - a template it cannot render exactly is never
//     rendered approximately;
//   - while rendering: raise_exception(msg) and type errors (adding a string to a list, an
//     attribute of an undefined value, ...): KV_ERR_INVALID_ARGUMENT.
// Rendering is bounded (loop iterations, output size, nesting), so a hostile template fails
// with an error instead of exhausting memory or the stack.
//
// Thread-safety: a parsed Template is immutable; render() may run concurrently.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/value.h"

namespace kv::chat {

struct Node;

class Template {
public:
    static Template parse(std::string_view source, kv_status syntax_status = KV_ERR_INVALID_ARGUMENT);
    // Renders with `globals` (the built-ins are added unless a global of that name is given).
    // `max_steps` bounds the statements and expressions evaluated (a chat of a thousand messages
    // takes some ten thousand); past it the render fails.
    static constexpr uint64_t kDefaultMaxSteps = 10'000'000;
    std::string render(const Dict& globals, uint64_t max_steps = kDefaultMaxSteps) const;

private:
    std::shared_ptr<const std::vector<std::unique_ptr<Node>>> body_;
};

struct ChatMessage {
    std::string role;
    std::string content;
};

struct ChatOptions {
    Value bos_token;              // Undefined when the model has no BOS
    Value eos_token;
    bool add_generation_prompt = false;
    Value enable_thinking;        // Undefined: the template's default; else a Bool
    int64_t now = -1;             // strftime_now's time (seconds since the epoch); -1: now
};

// The conversation as the template writes it. Globals, as transformers passes them: messages
// (a list of {"role", "content"} dicts), add_generation_prompt, bos_token, eos_token, tools and
// documents (none), enable_thinking (only when set).
std::string format_chat(const Template& tmpl, const std::vector<ChatMessage>& messages, const ChatOptions& options);

}  // namespace kv::chat
