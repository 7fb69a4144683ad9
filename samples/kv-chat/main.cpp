// kv-chat: a multi-turn chat that reuses the cached history. Each turn resends the whole
// conversation, as a stateless chat app would; kvulkan's prefix cache finds the pages it already
// computed and prefills only the new turn. After each reply it prints how many prompt tokens were
// reused and how many were computed.
//
//   kv-chat -m model.gguf [-n 128] [--temp 0.7] [--seed 1] [--ctx 4096] [--kv-type f16|f32]
//           [--system "You are ..."] [--script FILE]  (lines of FILE are the user's turns)
//
// The prompt format is a plain "User:/Assistant:" transcript; models with a chat template expect
// their own, which this sample does not render.
#include <kvulkan/kvulkan.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {
[[noreturn]] void die(const char* what, kv_status s) {
    std::fprintf(stderr, "kv-chat: %s: %s: %s\n", what, kv_status_string(s), kv_last_error_message());
    std::exit(1);
}
std::vector<kv_token> tokenize(kv_model* m, const std::string& text, bool bos) {
    uint32_t n = 0;
    uint32_t flags = bos ? KV_TOKENIZE_ADD_SPECIAL : 0;
    kv_tokenize(m, text.data(), text.size(), flags, nullptr, &n);
    std::vector<kv_token> ids(n);
    kv_status s = kv_tokenize(m, text.data(), text.size(), flags, ids.data(), &n);
    if (s != KV_OK) die("tokenize", s);
    return ids;
}
}  // namespace

int main(int argc, char** argv) {
    std::string path, system = "A conversation between a curious user and a helpful assistant.", script;
    int n_reply = 128;
    kv_sampler_desc sampler = KV_SAMPLER_DESC_INIT;
    kv_session_desc sdesc = KV_SESSION_DESC_INIT;
    sdesc.n_ctx = 4096;
    sampler.temperature = 0.7f;
    sampler.top_p = 0.95f;
    sampler.seed = 1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
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
        else if (a == "--system") system = v;
        else if (a == "--script") script = v;
        else {
            std::fprintf(stderr, "usage: kv-chat -m model.gguf [-n N] [--temp T] [--seed S] [--ctx N] "
                                 "[--kv-type f16|f32] [--system TEXT] [--script FILE]\n");
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
        // A fresh session per turn, fed the whole transcript: the prefix cache supplies the history.
        kv_session* sess;
        if ((s = kv_session_create(model, &sdesc, &sess))) die("session", s);
        std::vector<kv_token> ids = tokenize(model, transcript, true);
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
            if (reply.find("\nUser:") != std::string::npos) break;  // the model started the next turn
            std::fwrite(piece, 1, len, stdout);
            std::fflush(stdout);
        }
        size_t cut = reply.find("\nUser:");
        if (cut != std::string::npos) reply.resize(cut);
        transcript += reply + "\n";
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
