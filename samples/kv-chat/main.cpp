// kv-chat: a multi-turn chat that reuses the cached history. Each turn resends the whole
// conversation, as a stateless chat app would; kvulkan's prefix cache finds the pages it already
// computed and prefills only the new turn. After each reply it prints how many prompt tokens were
// reused and how many were computed.
//
//   kv-chat -m model.gguf [-n 128] [--temp 0.7] [--seed 1] [--ctx 4096] [--kv-type f16|f32]
//           [--system "You are ..."] [--script FILE]  (lines of FILE are the user's turns)
//           [--template FILE | --no-template]
//
// The prompt is the conversation rendered by the model's own chat template (kv_chat_format), or
// by the Jinja template in --template FILE; a reply ends at the model's end-of-turn token. A model
// without a template (or --no-template) gets a plain "User:/Assistant:" transcript instead.
#include <kvulkan/kvulkan.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {
[[noreturn]] void die(const char* what, kv_status s) {
    std::fprintf(stderr, "kv-chat: %s: %s: %s\n", what, kv_status_string(s), kv_last_error_message());
    std::exit(1);
}
// bos: add BOS as the model asks (plain transcripts); special: the text's control-token markers
// become those tokens (rendered chat templates, which write BOS themselves).
std::vector<kv_token> tokenize(kv_model* m, const std::string& text, bool bos, bool special = false) {
    uint32_t n = 0;
    uint32_t flags = (bos ? KV_TOKENIZE_ADD_SPECIAL : 0) | (special ? KV_TOKENIZE_PARSE_SPECIAL : 0);
    kv_tokenize(m, text.data(), text.size(), flags, nullptr, &n);
    std::vector<kv_token> ids(n);
    kv_status s = kv_tokenize(m, text.data(), text.size(), flags, ids.data(), &n);
    if (s != KV_OK) die("tokenize", s);
    return ids;
}

// The conversation rendered by the chat template (the model's, or `tmpl` when not empty), ending
// with the opening of the assistant's turn.
std::string render_chat(kv_model* m, const std::string& tmpl, const std::vector<std::pair<std::string, std::string>>& turns) {
    std::vector<kv_chat_message> msgs;
    for (const auto& [role, content] : turns) {
        kv_chat_message msg = KV_CHAT_MESSAGE_INIT;
        msg.role = role.c_str();
        msg.content = content.c_str();
        msgs.push_back(msg);
    }
    auto call = [&](char* buf, size_t* len) {
        return tmpl.empty() ? kv_chat_format(m, msgs.data(), uint32_t(msgs.size()), KV_CHAT_ADD_ASSISTANT_PROMPT, buf, len)
                            : kv_chat_format_template(m, tmpl.c_str(), msgs.data(), uint32_t(msgs.size()),
                                                      KV_CHAT_ADD_ASSISTANT_PROMPT, buf, len);
    };
    size_t len = 0;
    kv_status s = call(nullptr, &len);
    if (s != KV_OK && s != KV_INCOMPLETE) die("chat template", s);
    std::string text(len, '\0');
    if ((s = call(text.data(), &len)) != KV_OK) die("chat template", s);
    text.resize(len);
    return text;
}
}  // namespace

int main(int argc, char** argv) {
    std::string path, system = "A conversation between a curious user and a helpful assistant.", script;
    std::string template_path;
    bool system_given = false, no_template = false;
    int n_reply = 128;
    kv_sampler_desc sampler = KV_SAMPLER_DESC_INIT;
    kv_session_desc sdesc = KV_SESSION_DESC_INIT;
    sdesc.n_ctx = 4096;
    sampler.temperature = 0.7f;
    sampler.top_p = 0.95f;
    sampler.seed = 1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--no-template") {
            no_template = true;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "kv-chat: %s needs a value\n", a.c_str());
            return 2;
        }
        const char* v = argv[++i];
        if (a == "-m") path = v;
        else if (a == "-n") n_reply = std::atoi(v);
        else if (a == "--temp") sampler.temperature = float(std::atof(v));
        else if (a == "--seed") sampler.seed = std::strtoull(v, nullptr, 10);
        else if (a == "--ctx") sdesc.n_ctx = uint32_t(std::atoi(v));
        else if (a == "--kv-type") sdesc.cache_type = std::string(v) == "f32" ? KV_CACHE_F32 : KV_CACHE_F16;
        else if (a == "--system") system = v, system_given = true;
        else if (a == "--script") script = v;
        else if (a == "--template") template_path = v;
        else {
            std::fprintf(stderr, "usage: kv-chat -m model.gguf [-n N] [--temp T] [--seed S] [--ctx N] "
                                 "[--kv-type f16|f32] [--system TEXT] [--script FILE] [--template FILE | "
                                 "--no-template]\n");
            return 2;
        }
    }
    if (path.empty()) {
        std::fprintf(stderr, "kv-chat: -m model.gguf is required\n");
        return 2;
    }
    kv_runtime_desc rd = KV_RUNTIME_DESC_INIT;
    kv_runtime* rt;
    kv_status s = kv_runtime_create(&rd, &rt);
    if (s) die("runtime", s);
    kv_model_desc md = KV_MODEL_DESC_INIT;
    md.path = path.c_str();
    kv_model* model;
    if ((s = kv_model_load(rt, &md, &model))) die(path.c_str(), s);
    sdesc.sampler = &sampler;

    // The prompt format: --template FILE, else the model's chat template, else a plain transcript.
    std::string tmpl;
    if (!template_path.empty()) {
        std::ifstream f(template_path);
        if (!f) {
            std::fprintf(stderr, "kv-chat: cannot read %s\n", template_path.c_str());
            return 1;
        }
        tmpl.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    size_t model_template_len = 0;
    kv_model_get_chat_template(model, nullptr, &model_template_len);
    const bool use_template = !no_template && (!tmpl.empty() || model_template_len > 0);
    if (use_template)
        std::fprintf(stderr, "[kv-chat] prompt format: %s\n",
                     tmpl.empty() ? "the model's chat template" : template_path.c_str());
    else
        std::fprintf(stderr, "[kv-chat] prompt format: a plain User:/Assistant: transcript%s\n",
                     no_template ? "" : " (the model has no chat template; --template FILE gives one)");
    std::vector<std::pair<std::string, std::string>> turns;  // (role, content), for the template
    if (use_template && system_given) turns.emplace_back("system", system);

    std::ifstream script_file;
    if (!script.empty()) {
        script_file.open(script);
        if (!script_file) {
            std::fprintf(stderr, "kv-chat: cannot read %s\n", script.c_str());
            return 1;
        }
    }
    std::istream& in = script.empty() ? std::cin : script_file;
    std::string transcript = system + "\n";
    uint64_t total_reused = 0, total_computed = 0;
    for (int turn = 1;; ++turn) {
        if (script.empty()) std::printf("\nyou> "), std::fflush(stdout);
        std::string line;
        if (!std::getline(in, line)) break;
        if (line.empty()) continue;
        if (!script.empty()) std::printf("\nyou> %s\n", line.c_str());
        transcript += "User: " + line + "\nAssistant:";
        turns.emplace_back("user", line);
        // A fresh session per turn, fed the whole conversation: the prefix cache supplies the history.
        kv_session* sess;
        if ((s = kv_session_create(model, &sdesc, &sess))) die("session", s);
        std::vector<kv_token> ids = use_template ? tokenize(model, render_chat(model, tmpl, turns), false, true)
                                                 : tokenize(model, transcript, true);
        if ((s = kv_prefill(sess, ids.data(), uint32_t(ids.size())))) die("prefill", s);
        kv_session_stats st{};
        st.struct_size = sizeof st;
        kv_session_get_stats(sess, &st);
        std::printf("assistant>");
        std::string reply;
        for (int i = 0; i < n_reply; ++i) {
            kv_token t;
            s = kv_decode_step(sess, &t);
            if (s == KV_END_OF_GENERATION || s == KV_ERR_CONTEXT_FULL) break;
            if (s) die("decode", s);
            char piece[256];
            size_t len = sizeof piece;
            if (kv_token_to_piece(model, t, piece, &len) != KV_OK) continue;
            std::string p(piece, len);
            reply += p;
            if (!use_template && reply.find("\nUser:") != std::string::npos) break;  // it began the next turn
            std::fwrite(piece, 1, len, stdout);
            std::fflush(stdout);
        }
        size_t cut = use_template ? std::string::npos : reply.find("\nUser:");
        if (cut != std::string::npos) reply.resize(cut);
        transcript += reply + "\n";
        turns.emplace_back("assistant", reply);
        total_reused += st.prefix_hit_tokens;
        total_computed += ids.size() - st.prefix_hit_tokens;
        std::printf("\n[turn %d: prompt %zu tokens, %llu reused from the cache, %llu prefilled]\n", turn, ids.size(),
                    (unsigned long long)st.prefix_hit_tokens, (unsigned long long)(ids.size() - st.prefix_hit_tokens));
        kv_session_destroy(sess);
    }
    kv_cache_stats cs{};
    cs.struct_size = sizeof cs;
    kv_model_get_cache_stats(model, sdesc.cache_type, &cs);
    std::printf("\n[kv-chat] prompt tokens reused %llu, prefilled %llu; page pool: %u pages of %u tokens, %u cached, "
                "%llu/%llu page lookups hit\n",
                (unsigned long long)total_reused, (unsigned long long)total_computed, cs.pages_total, cs.page_size,
                cs.pages_cached, (unsigned long long)cs.prefix_hits, (unsigned long long)cs.prefix_lookups);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    return 0;
}
