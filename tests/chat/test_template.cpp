// Chat templates (src/chat/): the templates of real model families (tests/chat/templates/, see its
// README) rendered against their documented prompt formats, the Jinja semantics they rely on
// (whitespace rules, scoping, filters, tests, methods), and malformed or unsupported templates
// failing with an error that names the construct and where it is.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "chat/template.h"
#include "common/error.h"

using kv::chat::ChatMessage;
using kv::chat::ChatOptions;
using kv::chat::Template;
using kv::chat::Value;

namespace {

std::string template_text(const std::string& name) {
    std::ifstream f(std::string(KV_TESTS_SOURCE_DIR) + "/chat/templates/" + name);
    REQUIRE_MESSAGE(f.good(), "cannot read tests/chat/templates/" << name);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// 2025-03-14 12:00 UTC: the same calendar day in every time zone from UTC-11 to UTC+11.
constexpr int64_t kNow = 1741953600;

struct Render {
    std::string bos, eos;
    bool gen = true;
    Value thinking;
};

std::string render_file(const std::string& name, const std::vector<ChatMessage>& msgs, const Render& r = {}) {
    ChatOptions o;
    if (!r.bos.empty()) o.bos_token = Value(r.bos);
    if (!r.eos.empty()) o.eos_token = Value(r.eos);
    o.add_generation_prompt = r.gen;
    o.enable_thinking = r.thinking;
    o.now = kNow;
    return kv::chat::format_chat(Template::parse(template_text(name)), msgs, o);
}

// Renders `src` with `globals`; on error returns "ERROR <status>: <message>".
std::string render(const std::string& src, const kv::chat::Dict& globals = {}) {
    try {
        return Template::parse(src).render(globals);
    } catch (const kv::Error& e) {
        return "ERROR " + std::to_string(e.status()) + ": " + e.what();
    }
}

struct Failure {
    kv_status status = KV_OK;
    std::string message;
};

Failure failure(const std::string& src, const kv::chat::Dict& globals = {}) {
    try {
        Template::parse(src).render(globals);
    } catch (const kv::Error& e) {
        return {e.status(), e.what()};
    }
    return {};
}

Failure file_failure(const std::string& name, const std::vector<ChatMessage>& msgs, const Render& r = {}) {
    try {
        render_file(name, msgs, r);
    } catch (const kv::Error& e) {
        return {e.status(), e.what()};
    }
    return {};
}

const std::vector<ChatMessage> kChat = {
    {"user", "Hello"}, {"assistant", "Hi there!"}, {"user", "How are you?"}};
const std::vector<ChatMessage> kChatSys = {{"system", "You are a helpful assistant."},
                                           {"user", "Hello"},
                                           {"assistant", "Hi there!"},
                                           {"user", "How are you?"}};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---- real templates against their published prompt formats -----------------------------------

TEST_CASE("chat templates: ChatML renders <|im_start|>role\\ncontent<|im_end|> turns") {
    CHECK(render_file("chatml.jinja", kChatSys) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\nHi there!<|im_end|>\n"
          "<|im_start|>user\nHow are you?<|im_end|>\n"
          "<|im_start|>assistant\n");
    Render no_prompt;
    no_prompt.gen = false;
    CHECK(render_file("chatml.jinja", {{"user", "Hi"}}, no_prompt) == "<|im_start|>user\nHi<|im_end|>\n");
}

TEST_CASE("chat templates: Llama 2 wraps the system prompt in <<SYS>> inside the first [INST]") {
    Render r{"<s>", "</s>"};
    CHECK(render_file("llama2.jinja", kChatSys, r) ==
          "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there! </s>"
          "<s>[INST] How are you? [/INST]");
    // Without a system message; content is stripped.
    CHECK(render_file("llama2.jinja", {{"user", "  Hello \n"}, {"assistant", " Hi there! "}, {"user", "How are you?"}}, r) ==
          "<s>[INST] Hello [/INST] Hi there! </s><s>[INST] How are you? [/INST]");
    Failure f = file_failure("llama2.jinja", {{"user", "a"}, {"user", "b"}}, r);
    CHECK(f.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(f.message, "Conversation roles must alternate user/assistant/user/assistant/..."));
}

TEST_CASE("chat templates: Llama 3 header/eot turns with BOS once") {
    Render r{"<|begin_of_text|>", "<|eot_id|>"};
    CHECK(render_file("llama3.jinja", kChatSys, r) ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    r.gen = false;
    CHECK(render_file("llama3.jinja", {{"user", "  padded\n"}}, r) ==
          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>");
}

TEST_CASE("chat templates: Llama 3.2 system header carries the knowledge cutoff and today's date") {
    Render r{"<|begin_of_text|>", "<|eot_id|>"};
    CHECK(render_file("llama3.2.jinja", kChatSys, r) ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
          "Cutting Knowledge Date: December 2023\nToday Date: 14 Mar 2025\n\n"
          "You are a helpful assistant.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    // No system message: the header is still there, with an empty system text.
    r.gen = false;
    CHECK(render_file("llama3.2.jinja", {{"user", "Hi"}}, r) ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
          "Cutting Knowledge Date: December 2023\nToday Date: 14 Mar 2025\n\n<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST_CASE("chat templates: Mistral v0.1 [INST] turns and its role checks") {
    Render r{"<s>", "</s>"};
    CHECK(render_file("mistral-v0.1.jinja", kChat, r) ==
          "<s>[INST] Hello [/INST]Hi there!</s>[INST] How are you? [/INST]");
    Failure f = file_failure("mistral-v0.1.jinja", kChatSys, r);
    CHECK(f.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(f.message, "Conversation roles must alternate"));
}

TEST_CASE("chat templates: Mistral v0.3 puts the system prompt into the last user turn") {
    Render r{"<s>", "</s>"};
    CHECK(render_file("mistral-v0.3.jinja", kChatSys, r) ==
          "<s>[INST] Hello[/INST] Hi there!</s>[INST] You are a helpful assistant.\n\nHow are you?[/INST]");
    CHECK(render_file("mistral-v0.3.jinja", kChat, r) == "<s>[INST] Hello[/INST] Hi there!</s>[INST] How are you?[/INST]");
    Failure f = file_failure("mistral-v0.3.jinja", {{"user", "a"}, {"user", "b"}}, r);
    CHECK(contains(f.message, "After the optional system message, conversation roles must alternate"));
    f = file_failure("mistral-v0.3.jinja", {{"user", "a"}, {"critic", "b"}}, r);
    CHECK(contains(f.message, "Only user and assistant roles are supported"));
}

TEST_CASE("chat templates: Qwen2.5 ChatML with its default system prompt") {
    CHECK(render_file("qwen2.5.jinja", kChat) ==
          "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\nHi there!<|im_end|>\n"
          "<|im_start|>user\nHow are you?<|im_end|>\n"
          "<|im_start|>assistant\n");
    CHECK(render_file("qwen2.5.jinja", kChatSys) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\nHi there!<|im_end|>\n"
          "<|im_start|>user\nHow are you?<|im_end|>\n"
          "<|im_start|>assistant\n");
}

TEST_CASE("chat templates: Qwen3 drops past reasoning, keeps the last, and can switch thinking off") {
    const std::vector<ChatMessage> history = {{"system", "You are a helpful assistant."},
                                              {"user", "Hello"},
                                              {"assistant", "<think>\nThe user greets me.\n</think>\n\nHi there!"},
                                              {"user", "How are you?"}};
    const std::string want =
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there!<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\n";
    CHECK(render_file("qwen3.jinja", history) == want);
    Render off;
    off.thinking = Value(false);
    CHECK(render_file("qwen3.jinja", history, off) == want + "<think>\n\n</think>\n\n");
    Render on;
    on.thinking = Value(true);
    CHECK(render_file("qwen3.jinja", history, on) == want);
    // An assistant turn after the last user query keeps its reasoning (empty reasoning too).
    Render closed;
    closed.gen = false;
    CHECK(render_file("qwen3.jinja", {{"user", "Hello"}, {"assistant", "<think>\nGreet back.\n</think>\n\nHi!"}}, closed) ==
          "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\nGreet back.\n</think>\n\nHi!<|im_end|>\n");
    CHECK(render_file("qwen3.jinja", {{"user", "Hello"}, {"assistant", "Hi!"}}, closed) ==
          "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi!<|im_end|>\n");
}

TEST_CASE("chat templates: Gemma 2 turns with the model role, and no system role") {
    Render r{"<bos>", "<eos>"};
    CHECK(render_file("gemma2.jinja", kChat, r) ==
          "<bos><start_of_turn>user\nHello<end_of_turn>\n"
          "<start_of_turn>model\nHi there!<end_of_turn>\n"
          "<start_of_turn>user\nHow are you?<end_of_turn>\n"
          "<start_of_turn>model\n");
    Failure f = file_failure("gemma2.jinja", kChatSys, r);
    CHECK(f.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(f.message, "System role not supported"));
}

TEST_CASE("chat templates: Gemma 3 prefixes the system prompt to the first user turn") {
    Render r{"<bos>", "<eos>"};
    CHECK(render_file("gemma3.jinja", kChatSys, r) ==
          "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello<end_of_turn>\n"
          "<start_of_turn>model\nHi there!<end_of_turn>\n"
          "<start_of_turn>user\nHow are you?<end_of_turn>\n"
          "<start_of_turn>model\n");
    r.gen = false;
    CHECK(render_file("gemma3.jinja", {{"user", " Hi "}}, r) == "<bos><start_of_turn>user\nHi<end_of_turn>\n");
}

TEST_CASE("chat templates: Phi-3 <|role|> turns, EOS when no assistant prompt follows") {
    Render r{"<s>", "<|endoftext|>"};
    CHECK(render_file("phi3.jinja", kChatSys, r) ==
          "<|system|>\nYou are a helpful assistant.<|end|>\n"
          "<|user|>\nHello<|end|>\n"
          "<|assistant|>\nHi there!<|end|>\n"
          "<|user|>\nHow are you?<|end|>\n"
          "<|assistant|>\n");
    r.gen = false;
    CHECK(render_file("phi3.jinja", {{"user", "Hi"}}, r) == "<|user|>\nHi<|end|>\n<|endoftext|>");
}

TEST_CASE("chat templates: a conversation of 2000 messages renders through every template") {
    std::vector<ChatMessage> msgs;
    for (int i = 0; i < 2000; ++i) msgs.push_back({i % 2 ? "assistant" : "user", "message " + std::to_string(i)});
    const char* files[] = {"chatml.jinja",       "llama2.jinja",  "llama3.jinja", "llama3.2.jinja",
                           "mistral-v0.1.jinja", "mistral-v0.3.jinja", "qwen2.5.jinja", "qwen3.jinja",
                           "gemma2.jinja",       "gemma3.jinja",  "phi3.jinja"};
    Render r{"<s>", "</s>"};
    for (const char* f : files) {
        CAPTURE(std::string(f));
        std::string out = render_file(f, msgs, r);
        // Every message, in order.
        size_t at = 0;
        for (int i = 0; i < 2000; i += 199) {
            at = out.find("message " + std::to_string(i), at);
            CHECK(at != std::string::npos);
        }
    }
}

// ---- the Jinja semantics the templates rely on -----------------------------------------------

TEST_CASE("chat templates: whitespace control, trim_blocks, lstrip_blocks and the trailing newline") {
    CHECK(render("a  {{- 'b' -}}  \n c") == "abc");
    CHECK(render("{% if true %}\nx\n{% endif %}\ny") == "x\ny");                // trim_blocks
    CHECK(render("  {% if true %}x{% endif %}") == "x");                        // lstrip_blocks
    CHECK(render("a  {% if true %}x{% endif %}") == "a  x");                    // not at a line start
    CHECK(render("  {%+ if true %}x{% endif %}") == "  x");                     // {%+ keeps it
    CHECK(render("{% if true +%}\nx{% endif %}") == "\nx");                     // +%} keeps the newline
    CHECK(render("a\n  {# note #}\nb") == "a\nb");                              // comments too
    CHECK(render("{{ 'x' }}\n") == "x");                                        // one trailing newline dropped
    CHECK(render("{{ 'x' }}\n\n") == "x\n");
    CHECK(render("{{ 'a' }}\n{{ 'b' }}") == "a\nb");                            // {{ }} is no block
}

TEST_CASE("chat templates: loops, loop variables, break/continue, else and filters on the loop") {
    kv::chat::Dict g{{"xs", Value(kv::chat::List{Value("a"), Value("b"), Value("c")})}};
    CHECK(render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex0 }}{{ x }}"
                 "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}{{ loop.length }}|{% endfor %}",
                 g) == "012aF3|121b3|230cL3|");
    CHECK(render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{% if x == 'c' %}{% break %}"
                 "{% endif %}{{ x }}{% endfor %}",
                 g) == "a");
    CHECK(render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}") == "empty");
    CHECK(render("{% for x in xs if x != 'a' %}{{ loop.index }}{{ x }}{% endfor %}", g) == "1b2c");
    CHECK(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;");
    CHECK(render("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}{{ v }}{% endfor %}") == "a1b2");
    CHECK(render("{% for x in xs %}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('-', '+') }}{% endfor %}", g) ==
          "b-ac+b-");
    CHECK(render("{% for x in xs %}{% for y in [1, 2] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}", g) ==
          "121122123");
}

TEST_CASE("chat templates: set is scoped to a loop iteration, namespace() carries across") {
    CHECK(render("{% set n = 0 %}{% for x in [1, 2, 3] %}{% set n = n + x %}{% endfor %}{{ n }}") == "0");
    CHECK(render("{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}") ==
          "6");
    CHECK(render("{% if true %}{% set a = 'top' %}{% endif %}{{ a }}") == "top");
    CHECK(render("{% set a, b = 1, 2 %}{{ b }}{{ a }}") == "21");
    CHECK(render("{% set x %}in {{ 'block' }}{% endset %}[{{ x }}]") == "[in block]");
    CHECK(render("{% set ns = namespace() %}{% set ns.found = false %}{% for m in ['a', 'b'] %}"
                 "{% if m == 'b' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}") == "True");
}

TEST_CASE("chat templates: macros take positional, keyword and default arguments and see the template's globals") {
    kv::chat::Dict g{{"sep", Value(": ")}};
    CHECK(render("{% macro turn(role, text, end='<|end|>') %}{{ role }}{{ sep }}{{ text | trim }}{{ end }}{% endmacro %}"
                 "{{ turn('user', ' hi ') }}|{{ turn('bot', 'yo', end='.') }}|{{ turn(text='x', role='r') }}",
                 g) == "user: hi<|end|>|bot: yo.|r: x<|end|>");
    // The caller's loop variables are not visible inside (Jinja's macro scoping).
    CHECK(render("{% macro m() %}[{{ x is defined }}]{% endmacro %}{% for x in [1] %}{{ m() }}{% endfor %}") == "[False]");
    CHECK(contains(render("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), "macro 'm' takes 1 arguments, 2 given"));
    CHECK(contains(render("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}"), "macro 'm' has no parameter 'b'"));
    CHECK(contains(render("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"), "macros nested deeper than 100 calls"));
}

TEST_CASE("chat templates: expressions follow Python and Jinja precedence and semantics") {
    CHECK(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}") ==
          "7 9 3 -4 2 3.5 1024");
    CHECK(render("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 2 }} {{ [1] + [2] }}") == "a1NoneTrue abab [1, 2]");
    CHECK(render("{{ 'x' if 1 > 2 else 'y' }}{{ 'z' if false }}") == "y");
    CHECK(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}") == "True True True True");
    CHECK(render("{{ not 1 == 2 and 'yes' or 'no' }}") == "yes");
    CHECK(render("{{ 'trim me' | upper | trim }}|{{ ' a ' ~ 'b' | trim }}|") == "TRIM ME| a b|");
    CHECK(render("{{ [1, 2, 3][-1] }} {{ 'hello'[1:3] }} {{ [1, 2, 3, 4][::-1] }} {{ 'abc'[::2] }} {{ [1, 2][5] }}.") ==
          "3 el [4, 3, 2, 1] ac .");
    CHECK(render("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 2.5e-7 }} {{ 3 == 3.0 }}") ==
          "1.0 0.30000000000000004 1e+20 2.5e-07 True");
    CHECK(render("{{ {'a': [1, 'x', none, true]} }}") == "{'a': [1, 'x', None, True]}");
    CHECK(render("{{ 'h\\u00e9\\n' | length }} {{ 'hé' | length }} {{ 'hé'[1] }}") == "3 2 é");
}

TEST_CASE("chat templates: filters") {
    kv::chat::Dict g{{"msgs", Value(kv::chat::List{Value(kv::chat::Dict{{"role", Value("user")}, {"n", Value(1)}}),
                                                  Value(kv::chat::Dict{{"role", Value("tool")}, {"n", Value(2)}}),
                                                  Value(kv::chat::Dict{{"role", Value("user")}, {"n", Value(3)}})})}};
    CHECK(render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='n') | join(',') }}", g) == "1,3");
    CHECK(render("{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}", g) == "1");
    CHECK(render("{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3] | reject('even') | first }}") == "[1, 3] 1");
    CHECK(render("{{ ['a', 'b'] | join }} {{ ['a', 'b'] | join(', ') }} {{ [3, 4] | last }} {{ [] | first }}.") ==
          "ab a, b 4 .");
    CHECK(render("{{ nope | default('dflt') }} {{ '' | default('e', true) }} {{ 0 | d(5) }}") == "dflt e 0");
    CHECK(render("{{ 'Hello World' | lower }} {{ 'hello world' | title }} {{ 'hELLO' | capitalize }}") ==
          "hello world Hello World Hello");
    CHECK(render("{{ 'a-b-c' | replace('-', '+') }} {{ '42' | int + 1 }} {{ '2.5' | float }} {{ -3 | abs }}") ==
          "a+b+c 43 2.5 3");
    CHECK(render("{{ 5 | string ~ '!' }} {{ [1, 1, 2] | unique | list }} {{ 'ab' | reverse }} {{ 'x' | safe }}") ==
          "5! [1, 2] ba x");
    CHECK(render("{{ {'b': 1, 'a': [1, 2.5, 'x\"y\\n', none, false]} | tojson }}") ==
          "{\"b\": 1, \"a\": [1, 2.5, \"x\\\"y\\n\", null, false]}");
    CHECK(render("{{ {'name': 'f', 'args': {'x': 1}, 'e': []} | tojson(indent=2) }}") ==
          "{\n  \"name\": \"f\",\n  \"args\": {\n    \"x\": 1\n  },\n  \"e\": []\n}");
    CHECK(render("{{ 'é' | tojson }}") == "\"é\"");  // ensure_ascii=False, as transformers' tojson
    // Python's strip() removes Unicode whitespace; case mapping of scripts without case is identity.
    CHECK(render("[{{ ' \u00a0x\u3000\n' | trim }}] {{ '日本 ok' | upper }} {{ 'ÀB'.startswith('À') }}") == "[x] 日本 OK True");
}

TEST_CASE("chat templates: tests and string and dict methods") {
    CHECK(render("{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }} "
                 "{{ 1 is integer }} {{ 1.5 is float }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is not none }}") ==
          "False True True True True True True True True True");
    CHECK(render("{{ false is false }} {{ 0 is false }} {{ true is true }} {{ 4 is even }} {{ 3 is odd }} "
                 "{{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 2 is in [1, 2] }} {{ 1 is eq 1 }}") ==
          "True False True True True True False True True");
    CHECK(render("{{ '  x y  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\nhi'.lstrip('\\n') }}|{{ 'hi\\n'.rstrip() }}|") ==
          "x y|hi|hi|hi|");
    CHECK(render("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }}") ==
          "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c']");
    CHECK(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.upper() }} {{ 'ABC'.lower() }} "
                 "{{ 'abcb'.find('b') }} {{ 'abcb'.count('b') }} {{ '-'.join(['a', 'b']) }} {{ 'a\\nb'.splitlines() }}") ==
          "True True ABC abc 1 2 a-b ['a', 'b']");
    CHECK(render("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 7) }} {{ {'a': 1}.keys() | list }} {{ {'a': 1}.values() | first }}") ==
          "1 7 ['a'] 1");
    CHECK(render("{{ range(3) | list }} {{ range(1, 7, 2) | join(',') }}") == "[0, 1, 2] 1,3,5");
}

// ---- malformed and unsupported templates -------------------------------------------------------

TEST_CASE("chat templates: a syntax error names the construct and its line and column") {
    struct Case {
        const char* src;
        const char* want;
    } cases[] = {
        {"{% if x %}abc", "line 1, column 1: {% if %} is never closed (expected {% endif %})"},
        {"ab\n  {{ x ", "line 2, column 3: unclosed '{{' (no '}}' follows)"},
        {"{% for x in y %}{% endif %}", "line 1, column 20: unexpected {% endif %} inside {% for %} opened at line 1, column 1"},
        {"{% endfor %}", "line 1, column 4: unexpected {% endfor %} without a matching opening tag"},
        {"{{ x | frobnicate }}", "line 1, column 8: unknown filter 'frobnicate'"},
        {"{{ x is frobbed }}", "line 1, column 9: unknown test 'frobbed'"},
        {"{% frob %}", "line 1, column 4: unknown tag {% frob %}"},
        {"{{ 'abc }}", "line 1, column 4: unterminated string literal"},
        {"{{ }}", "line 1, column 1: empty expression '{{ }}'"},
        {"{{ (1 + 2 }}", "line 1, column 11: unexpected '}', expected ')'"},
        {"{{ [1, 2) }}", "line 1, column 9: unexpected ')', expected ']'"},
        {"{{ a b }}", "line 1, column 6: expected '}}', found 'b'"},
        {"{% for x y %}{% endfor %}", "line 1, column 10: expected 'in' in {% for %}"},
        {"{% break %}", "line 1, column 1: {% break %} outside a {% for %} loop"},
        {"{# never closed", "line 1, column 1: unclosed comment '{#'"},
        {"{{ x ; y }}", "line 1, column 6: unexpected character ';'"},
        {"{% set %}", "line 1, column 8: expected a variable name after {% set"},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.src));
        Failure f = failure(c.src);
        CHECK(f.status == KV_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(contains(f.message, std::string("chat template syntax error at ") + c.want), f.message);
    }
    // The caller chooses the status of syntax errors (a model's own template: KV_ERR_BAD_MODEL).
    try {
        Template::parse("{% if %}", KV_ERR_BAD_MODEL);
        FAIL("no error");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_BAD_MODEL);
    }
}

TEST_CASE("chat templates: Jinja constructs the engine lacks are KV_ERR_UNSUPPORTED, never rendered approximately") {
    struct Case {
        const char* src;
        const char* want;
    } cases[] = {
        {"{% call m() %}x{% endcall %}", "{% call %} at line 1, column 4"},
        {"a{% include 'x.jinja' %}", "{% include %} at line 1, column 5"},
        {"{{ 'long text' | wordwrap(3) }}", "the filter 'wordwrap' at line 1, column 18"},
        {"{{ 'x'.zfill(3) }}", "the string method 'zfill' at line 1, column 7"},
        {"{{ '%s!' % 'hi' }}", "'%' string formatting at line 1, column 10"},
        {"{% for x in y recursive %}{% endfor %}", "recursive {% for %} loop at line 1, column 1"},
        {"{{ 1 < 2 < 3 }}", "chains comparisons at line 1, column 10"},
        {"{{ {'a': 1} | tojson(sort_keys=true) }}", "the tojson argument 'sort_keys'"},
        {"{{ 'café' | upper }}", "applies the filter upper at line 1, column 14 to text with non-ASCII letters"},
        {"{{ 'Ωmega'.lower() }}", "applies lower() at line 1, column 18 to text with non-ASCII letters"},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.src));
        Failure f = failure(c.src);
        CHECK(f.status == KV_ERR_UNSUPPORTED);
        CHECK_MESSAGE(contains(f.message, c.want), f.message);
        CHECK_MESSAGE(contains(f.message, "kvulkan's template engine does not support"), f.message);
    }
}

TEST_CASE("chat templates: render-time errors say what went wrong and where") {
    Failure f = failure("{{ raise_exception('Only user and assistant roles are supported!') }}");
    CHECK(f.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(f.message == "the chat template rejected the messages: Only user and assistant roles are supported!");
    f = failure("\n{{ foo.bar }}");
    CHECK(f.status == KV_ERR_INVALID_ARGUMENT);
    CHECK(contains(f.message, "line 2, column 7: cannot read '.bar': 'foo' is undefined"));
    f = failure("{{ 'a' + 1 }}");
    CHECK(contains(f.message, "line 1, column 8: unsupported operand types for '+': a string and a integer"));
    f = failure("{{ messages[0]['role'] }}", {{"messages", Value(kv::chat::List{})}});
    CHECK(contains(f.message, "cannot index: list index 0 is out of range"));
    f = failure("{% for x in 5 %}{% endfor %}");
    CHECK(contains(f.message, "cannot loop over a integer"));
    f = failure("{% set x = 1 %}{% set x.y = 2 %}");
    CHECK(contains(f.message, "only a namespace() can be changed"));
    f = failure("{{ 1 / 0 }}");
    CHECK(contains(f.message, "division by zero"));
}

TEST_CASE("chat templates: hostile templates fail cleanly instead of exhausting the stack or memory") {
    std::string deep(5000, '(');
    CHECK(failure("{{ " + deep + "1" + std::string(5000, ')') + " }}").status == KV_ERR_INVALID_ARGUMENT);
    std::string nested;
    for (int i = 0; i < 300; ++i) nested += "{% if true %}";
    CHECK(contains(failure(nested).message, "nested deeper than 200 levels"));
    try {
        Template::parse("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
            .render({}, 100000);
        FAIL("no error");
    } catch (const kv::Error& e) {
        CHECK(contains(e.what(), "did not finish within 100000 steps"));
    }
    CHECK(contains(failure("{{ 'x' * 1000000000 }}").message, "too large"));
    CHECK(contains(failure("{{ range(10000000) }}").message, "longer than"));
}
