// kv-generate: generates text from a GGUF model on the GPU with kvulkan.
//
//   kv-generate -m model.gguf [-p "prompt" | --prompt-ids 1,2,3] [-n 128] [--temp 0] [--top-k 0]
//               [--top-p 1] [--min-p 0] [--repeat-penalty 1] [--seed 0] [--ctx N] [--batch N]
//               [--kv-type f16|f32|q8_0|q4_0] [--page-size N] [--window N] [--sinks N]
//               [--no-cache] [--device INDEX|NAME] [--ids]
//               [--dump-logits FILE] [--quiet] [--validation] [--draft ngram|MODEL] [--draft-n K]
//               [--pipeline-cache FILE] [--grammar FILE.gbnf | --json-schema FILE.json] [--chat]
//
// --chat sends the prompt as one user message in the model's own chat template (kv_chat_format,
// ending with the opening of the assistant's turn), so an instruction-tuned model answers it; a
// model without a chat template is an error.
// --grammar constrains the output to a GBNF grammar (root rule "root"); --json-schema to the JSON
// a schema accepts (translated with kv_json_schema_to_grammar; --grammar-out FILE writes the GBNF).
//
// Streams the text as it is generated; at the end prints prefill and decode tok/s, the time to
// the first token (runtime creation, model load, prefill, first step), the KV cache bytes and the
// device (to stderr, so stdout is only the text, or the ids with --ids).
// --draft decodes speculatively (greedy only; the tokens are those of plain greedy decoding):
// `ngram` drafts by prompt lookup, a path loads a smaller model with the same vocabulary as the
// draft; --draft-n K tokens are drafted per step (default 4). It prints the acceptance rate.
// --pipeline-cache keeps compiled pipelines in FILE across runs (kv_runtime_desc.pipeline_cache_path).
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// With --pipeline-cache: the runtime's lines about its pipeline cache (loaded, ignored, saved, and
// how many pipelines were compiled or taken from it), warnings and errors, to stderr.
void log_pipeline_cache(void*, kv_log_level level, const char* message) {
    if (level >= KV_LOG_WARNING || std::strncmp(message, "pipeline cache", 14) == 0)
        std::fprintf(stderr, "[kv-generate] %s\n", message);
}

[[noreturn]] void die(const char* what, kv_status s) {
    std::fprintf(stderr, "kv-generate: %s: %s: %s\n", what, kv_status_string(s), kv_last_error_message());
    std::exit(1);
}

int usage(int rc) {
    std::fprintf(rc ? stderr : stdout,
                 "usage: kv-generate -m model.gguf [-p PROMPT | --prompt-ids 1,2,3] [-n N] [--temp T]\n"
                 "         [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--ctx N]\n"
                 "         [--batch N] [--kv-type f16|f32|q8_0|q4_0] [--page-size N] [--window N] [--sinks N]\n"
                 "         [--no-cache] [--device INDEX|NAME] [--ids]\n"
                 "         [--dump-logits FILE] [--quiet] [--validation] [--draft ngram|MODEL] [--draft-n K]\n"
                 "         [--pipeline-cache FILE] [--grammar FILE.gbnf | --json-schema FILE.json [--grammar-out FILE]]\n"
                 "         [--chat]\n");
    return rc;
}

bool parse_ids(const char* s, std::vector<kv_token>* out) {
    while (*s) {
        char* end = nullptr;
        long v = std::strtol(s, &end, 10);
        if (end == s) return false;
        out->push_back(static_cast<kv_token>(v));
        s = end;
        if (*s == ',') ++s;
        else if (*s) return false;
    }
    return !out->empty();
}

bool read_text(const std::string& path, std::string* out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
    std::fclose(f);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_path, prompt = "Once upon a time", dump_path, draft_path, grammar_path, schema_path, grammar_out;
    uint32_t draft_n = 4;
    std::vector<kv_token> prompt_ids;
    bool have_ids = false, print_ids = false, quiet = false, chat = false;
    int n_predict = 128;
    uint32_t page_size = 0;
    kv_sampler_desc sampler = KV_SAMPLER_DESC_INIT;
    kv_session_desc sdesc = KV_SESSION_DESC_INIT;
    kv_runtime_desc rdesc = KV_RUNTIME_DESC_INIT;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "kv-generate: %s needs a value\n", a.c_str());
                std::exit(usage(2));
            }
            return argv[++i];
        };
        auto num = [&](double lo, double hi) {
            const char* v = val();
            char* end = nullptr;
            double d = std::strtod(v, &end);
            if (!end || *end || d < lo || d > hi) {
                std::fprintf(stderr, "kv-generate: bad value '%s' for %s\n", v, a.c_str());
                std::exit(usage(2));
            }
            return d;
        };
        if (a == "-m" || a == "--model") model_path = val();
        else if (a == "-p" || a == "--prompt") prompt = val();
        else if (a == "--prompt-ids") {
            if (!parse_ids(val(), &prompt_ids)) {
                std::fprintf(stderr, "kv-generate: --prompt-ids wants comma-separated integers\n");
                return usage(2);
            }
            have_ids = true;
        } else if (a == "-n") n_predict = int(num(0, 1e9));
        else if (a == "--temp") sampler.temperature = float(num(0, 1e6));
        else if (a == "--top-k") sampler.top_k = int32_t(num(0, 1e9));
        else if (a == "--top-p") sampler.top_p = float(num(1e-6, 1));
        else if (a == "--min-p") sampler.min_p = float(num(0, 0.999));
        else if (a == "--repeat-penalty") sampler.repeat_penalty = float(num(1e-3, 1e3));
        else if (a == "--seed") sampler.seed = uint64_t(num(0, 1.8e19));
        else if (a == "--ctx") sdesc.n_ctx = uint32_t(num(1, 1 << 24));
        else if (a == "--batch") sdesc.n_batch = uint32_t(num(1, 4096));
        else if (a == "--kv-type") {
            std::string t = val();
            if (t == "f16") sdesc.cache_type = KV_CACHE_F16;
            else if (t == "f32") sdesc.cache_type = KV_CACHE_F32;
            else if (t == "q8_0") sdesc.cache_type = KV_CACHE_Q8_0;
            else if (t == "q4_0") sdesc.cache_type = KV_CACHE_Q4_0;
            else {
                std::fprintf(stderr, "kv-generate: --kv-type must be f16, f32, q8_0 or q4_0, not '%s'\n", t.c_str());
                return usage(2);
            }
        } else if (a == "--page-size") page_size = uint32_t(num(1, 1024));
        else if (a == "--window") sdesc.window = uint32_t(num(0, 1u << 30));
        else if (a == "--sinks") sdesc.sinks = uint32_t(num(0, 1u << 30));
        else if (a == "--no-cache") sdesc.flags |= KV_SESSION_NO_CACHE;
        else if (a == "--device") {
            const char* v = val();
            char* end = nullptr;
            long idx = std::strtol(v, &end, 10);
            if (end && *end == 0) rdesc.device_index = int32_t(idx);
            else rdesc.device_name = v;
        } else if (a == "--ids") print_ids = true;
        else if (a == "--dump-logits") dump_path = val();
        else if (a == "--quiet") quiet = true;
        else if (a == "--chat") chat = true;
        else if (a == "--draft") draft_path = val();
        else if (a == "--draft-n") draft_n = uint32_t(num(1, 64));
        else if (a == "--grammar") grammar_path = val();
        else if (a == "--json-schema") schema_path = val();
        else if (a == "--grammar-out") grammar_out = val();
        else if (a == "--validation") rdesc.flags |= KV_RUNTIME_VALIDATION;
        else if (a == "--pipeline-cache") {
            rdesc.pipeline_cache_path = val();
            rdesc.log_callback = &log_pipeline_cache;
        }
        else if (a == "-h" || a == "--help") return usage(0);
        else {
            std::fprintf(stderr, "kv-generate: unknown argument '%s'\n", a.c_str());
            return usage(2);
        }
    }
    if (!grammar_path.empty() && !schema_path.empty()) {
        std::fprintf(stderr, "kv-generate: --grammar and --json-schema exclude each other\n");
        return usage(2);
    }
    std::string grammar;
    if (!grammar_path.empty() && !read_text(grammar_path, &grammar)) {
        std::fprintf(stderr, "kv-generate: cannot read %s\n", grammar_path.c_str());
        return 1;
    }
    if (!schema_path.empty()) {
        std::string schema;
        if (!read_text(schema_path, &schema)) {
            std::fprintf(stderr, "kv-generate: cannot read %s\n", schema_path.c_str());
            return 1;
        }
        size_t size = 0;
        kv_status gs = kv_json_schema_to_grammar(schema.data(), schema.size(), nullptr, &size);
        if (gs == KV_INCOMPLETE) {
            grammar.resize(size);
            gs = kv_json_schema_to_grammar(schema.data(), schema.size(), &grammar[0], &size);
            grammar.resize(size ? size - 1 : 0);  // without the NUL
        }
        if (gs != KV_OK) die(schema_path.c_str(), gs);
        if (!grammar_out.empty()) {
            FILE* f = std::fopen(grammar_out.c_str(), "wb");
            if (!f || std::fwrite(grammar.data(), 1, grammar.size(), f) != grammar.size()) {
                std::fprintf(stderr, "kv-generate: cannot write %s\n", grammar_out.c_str());
                return 1;
            }
            std::fclose(f);
        }
    }
    if (model_path.empty()) {
        std::fprintf(stderr, "kv-generate: no model: pass -m model.gguf\n");
        return usage(2);
    }
    if (chat && have_ids) {
        std::fprintf(stderr, "kv-generate: --chat renders a text prompt: not with --prompt-ids\n");
        return usage(2);
    }
    if (!draft_path.empty() && (sampler.temperature != 0 || !dump_path.empty() || (sdesc.flags & KV_SESSION_NO_CACHE))) {
        std::fprintf(stderr, "kv-generate: --draft is greedy decoding over the cache: not with --temp > 0, "
                             "--dump-logits or --no-cache\n");
        return usage(2);
    }

    using clock = std::chrono::steady_clock;
    auto ms_since = [](clock::time_point t) { return std::chrono::duration<double, std::milli>(clock::now() - t).count(); };
    const clock::time_point t_start = clock::now();
    double runtime_ms = 0, load_ms = 0, first_token_ms = 0;
    kv_runtime* rt = nullptr;
    kv_status s = kv_runtime_create(&rdesc, &rt);
    if (s != KV_OK) die("runtime", s);
    runtime_ms = ms_since(t_start);
    kv_device_info dev{};
    dev.struct_size = sizeof dev;
    kv_runtime_get_info(rt, &dev);
    kv_model_desc mdesc = KV_MODEL_DESC_INIT;
    mdesc.path = model_path.c_str();
    mdesc.kv_page_size = page_size;
    kv_model* model = nullptr;
    const clock::time_point t_load = clock::now();
    if ((s = kv_model_load(rt, &mdesc, &model)) != KV_OK) die(model_path.c_str(), s);
    load_ms = ms_since(t_load);
    kv_model_info info{};
    info.struct_size = sizeof info;
    kv_model_get_info(model, &info);
    uint32_t tokenize_flags = KV_TOKENIZE_ADD_SPECIAL;
    if (chat) {
        size_t template_len = 0;
        kv_model_get_chat_template(model, nullptr, &template_len);
        if (template_len == 0) {
            std::fprintf(stderr, "kv-generate: --chat: %s has no chat template (tokenizer.chat_template); "
                                 "leave out --chat to continue the prompt as plain text\n", model_path.c_str());
            return 1;
        }
        // One user message, then the opening of the assistant's turn. The rendered text carries
        // its special tokens (BOS included where the template writes it): parse them, add none.
        kv_chat_message msg = KV_CHAT_MESSAGE_INIT;
        msg.role = "user";
        msg.content = prompt.c_str();
        size_t len = 0;
        s = kv_chat_format(model, &msg, 1, KV_CHAT_ADD_ASSISTANT_PROMPT, nullptr, &len);
        std::string text(len, '\0');
        if (s == KV_INCOMPLETE) s = kv_chat_format(model, &msg, 1, KV_CHAT_ADD_ASSISTANT_PROMPT, &text[0], &len);
        if (s != KV_OK) die("--chat: the model's chat template", s);
        text.resize(len);
        prompt = text;
        tokenize_flags = KV_TOKENIZE_PARSE_SPECIAL;
    }
    if (!have_ids) {
        uint32_t n = 0;
        kv_tokenize(model, prompt.data(), prompt.size(), tokenize_flags, nullptr, &n);
        prompt_ids.resize(n);
        if ((s = kv_tokenize(model, prompt.data(), prompt.size(), tokenize_flags, prompt_ids.data(), &n)) != KV_OK)
            die("tokenize", s);
    }
    if (prompt_ids.empty()) {
        std::fprintf(stderr, "kv-generate: the prompt has no tokens\n");
        return 2;
    }
    if (sdesc.n_ctx == 0 && sdesc.window == 0) {
        // Room for the prompt and every requested token, at least the model's context (max 4096).
        uint32_t want = uint32_t(prompt_ids.size()) + uint32_t(n_predict);
        uint32_t model_ctx = info.n_ctx_train ? std::min<uint32_t>(info.n_ctx_train, 4096) : 4096;
        sdesc.n_ctx = std::max(want, model_ctx);
    }
    sdesc.sampler = &sampler;
    kv_session* session = nullptr;
    if ((s = kv_session_create(model, &sdesc, &session)) != KV_OK) die("session", s);
    const bool constrained = !grammar_path.empty() || !schema_path.empty();
    if (constrained && (s = kv_session_set_grammar(session, grammar.c_str(), "root")) != KV_OK)
        die(grammar_path.empty() ? "the schema's grammar" : grammar_path.c_str(), s);
    // The draft: NULL for prompt lookup, else a session of the draft model (same n_ctx).
    kv_model* draft_model = nullptr;
    kv_session* draft = nullptr;
    if (!draft_path.empty() && draft_path != "ngram") {
        kv_model_desc dd = KV_MODEL_DESC_INIT;
        dd.path = draft_path.c_str();
        if ((s = kv_model_load(rt, &dd, &draft_model)) != KV_OK) die(draft_path.c_str(), s);
        kv_session_desc ds = KV_SESSION_DESC_INIT;
        ds.n_ctx = sdesc.n_ctx;
        ds.cache_type = sdesc.cache_type;
        if ((s = kv_session_create(draft_model, &ds, &draft)) != KV_OK) die("draft session", s);
    }
    uint64_t n_steps = 0, n_drafted = 0, n_accepted = 0;

    FILE* dump = nullptr;
    std::vector<float> logits(info.n_vocab);
    if (!dump_path.empty()) {
        dump = std::fopen(dump_path.c_str(), "wb");
        if (!dump) {
            std::fprintf(stderr, "kv-generate: cannot write %s\n", dump_path.c_str());
            return 1;
        }
    }
    auto dump_row = [&] {
        if (!dump) return;
        if (kv_session_logits(session, logits.data(), info.n_vocab) != KV_OK) die("logits", KV_ERR_INTERNAL);
        std::fwrite(logits.data(), 4, logits.size(), dump);
    };

    if ((s = kv_prefill(session, prompt_ids.data(), uint32_t(prompt_ids.size()))) != KV_OK) die("prefill", s);
    dump_row();
    if (!print_ids && !quiet) {
        // Echo the prompt, then stream the continuation.
        std::vector<char> buf(prompt_ids.size() * 32 + 64);
        size_t len = buf.size();
        if (kv_detokenize(model, prompt_ids.data(), uint32_t(prompt_ids.size()), buf.data(), &len) == KV_OK)
            std::fwrite(buf.data(), 1, len, stdout);
        std::fflush(stdout);
    }
    std::vector<kv_token> generated;
    char piece[256];
    auto emit = [&](kv_token tok) {
        if (generated.empty()) first_token_ms = ms_since(t_start);
        generated.push_back(tok);
        if (print_ids || quiet) return;
        size_t len = sizeof piece;
        if (kv_token_to_piece(model, tok, piece, &len) == KV_OK) {
            std::fwrite(piece, 1, len, stdout);
            std::fflush(stdout);
        }
    };
    std::vector<kv_token> step(draft_n + 1);
    while (generated.size() < size_t(n_predict)) {
        if (!draft_path.empty()) {
            uint32_t n_out = 0, drafted = 0;
            // Never draft past -n: the last step asks for no more tokens than are left.
            uint32_t k = std::min<uint32_t>(draft_n, uint32_t(n_predict - generated.size()));
            s = k ? kv_decode_speculative(session, draft, k, step.data(), k + 1, &n_out, &drafted) : KV_OK;
            if (s == KV_OK || s == KV_END_OF_GENERATION) {
                ++n_steps;
                n_drafted += drafted;
                n_accepted += n_out - 1;  // the first token is the session's own choice
                // With KV_END_OF_GENERATION the last token is the end token: not appended.
                uint32_t keep = s == KV_END_OF_GENERATION ? n_out - 1 : n_out;
                for (uint32_t j = 0; j < keep && generated.size() < size_t(n_predict); ++j) emit(step[j]);
                if (s == KV_END_OF_GENERATION) break;
                continue;
            }
        } else {
            kv_token tok = -1;
            s = kv_decode_step(session, &tok);
            if (s == KV_OK) {
                emit(tok);
                if (generated.size() < size_t(n_predict)) dump_row();
                continue;
            }
        }
        if (s == KV_END_OF_GENERATION) break;
        if (s == KV_ERR_CONTEXT_FULL) {
            std::fprintf(stderr, "\nkv-generate: the context is full (%u tokens); stopping\n", sdesc.n_ctx);
            break;
        }
        die("decode", s);
    }
    if (print_ids) {
        for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? "," : "", generated[i]);
        std::printf("\n");
    } else if (!quiet) {
        std::printf("\n");
    }
    if (dump) std::fclose(dump);

    kv_session_stats st{};
    st.struct_size = sizeof st;
    kv_session_get_stats(session, &st);
    const char* kv_name = sdesc.cache_type == KV_CACHE_F32 ? "f32" : sdesc.cache_type == KV_CACHE_Q8_0 ? "q8_0"
                          : sdesc.cache_type == KV_CACHE_Q4_0 ? "q4_0" : "f16";
    double prefill_tps = st.total_prefill_ms > 0 ? st.tokens_prefilled / (st.total_prefill_ms / 1e3) : 0;
    double decode_tps = st.total_decode_ms > 0 ? st.tokens_decoded / (st.total_decode_ms / 1e3) : 0;
    std::fprintf(stderr,
                 "\n[kv-generate] device: %s\n"
                 "[kv-generate] model: %s, %s, %.2fM params, %.1f MiB of weights\n"
                 "[kv-generate] prefill: %llu tokens in %.1f ms (%.1f tok/s)\n"
                 "[kv-generate] decode: %llu tokens in %.1f ms (%.1f tok/s, %.3f ms/token)%s\n"
                 "[kv-generate] first token: %.1f ms after start (runtime %.1f ms, model load %.1f ms)%s\n"
                 "[kv-generate] KV cache: %s, %u tokens capacity, %llu bytes in %u pages of %u tokens "
                 "(%llu bytes per token = 2 x %u layers x %u kv heads x %u head dim x %s element)\n",
                 dev.device_name, info.architecture, info.name, double(info.n_params) / 1e6,
                 double(info.weight_bytes) / (1 << 20), (unsigned long long)st.tokens_prefilled,
                 st.total_prefill_ms, prefill_tps, (unsigned long long)st.tokens_decoded, st.total_decode_ms,
                 decode_tps, st.tokens_decoded ? st.total_decode_ms / double(st.tokens_decoded) : 0.0,
                 (sdesc.flags & KV_SESSION_NO_CACHE) ? " [no cache: full recompute every step]" : "",
                 first_token_ms, runtime_ms, load_ms, rdesc.pipeline_cache_path ? " [pipeline cache file given]" : "",
                 kv_name, st.n_ctx, (unsigned long long)st.kv_bytes, st.pages, st.page_size,
                 (unsigned long long)st.kv_bytes_per_token, info.n_layer, info.n_head_kv, info.head_dim, kv_name);
    if (!draft_path.empty()) {
        std::fprintf(stderr,
                     "[kv-generate] speculative (%s, up to %u drafted per step): %llu steps for %llu tokens "
                     "(%.2f tokens per pass), %llu of %llu drafted tokens accepted (%.1f%%), %.1f tok/s\n",
                     draft ? "draft model" : "n-gram prompt lookup", draft_n, (unsigned long long)n_steps,
                     (unsigned long long)st.tokens_decoded, n_steps ? double(st.tokens_decoded) / n_steps : 0.0,
                     (unsigned long long)n_accepted, (unsigned long long)n_drafted,
                     n_drafted ? 100.0 * double(n_accepted) / double(n_drafted) : 0.0, decode_tps);
    }
    if (draft) kv_session_destroy(draft);
    if (draft_model) kv_model_destroy(draft_model);
    kv_session_destroy(session);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    return 0;
}
