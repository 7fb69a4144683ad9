// kv-bench: prefill and decode speed of a model on this device, held against the floors:
//   decode floor  = (weight bytes + KV bytes read per step) / measured read bandwidth
//   prefill rate  = 2 x parameters FLOPs per token (reported as achieved TFLOP/s)
//
//   kv-bench -m model.gguf [--prompt 512] [--gen 128] [--ctx N] [--kv-type f16|f32|q8_0|q4_0]
//            [--batch N] [--sessions N [--sequential]] [--device INDEX|NAME] [--reps 3] [--json]
//            [--bw-mib N]
//
// With --sessions N, N sessions (distinct prompts) are served together: their prompts go in as
// chunks of one kv_batch_eval call and every decode step advances all N in ONE forward pass
// (kv_batch_eval), so the weights are read once per step for all of them. The floor is then
//   (weight bytes + the KV bytes of every session) / read bandwidth per step of N tokens.
// --sequential decodes them one after another instead (kv_prefill / kv_decode_step per session:
// N passes per round, the weights read N times), the way an app without batching would.
// --json prints one JSON object instead of the text report. --bw-mib N measures the read
// bandwidth (the floors' denominator) on an N MiB buffer instead of the runtime's default size
// (one that defeats caches; on a CPU device that measurement alone takes seconds).
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {
[[noreturn]] void die(const char* what, kv_status s) {
    std::fprintf(stderr, "kv-bench: %s: %s: %s\n", what, kv_status_string(s), kv_last_error_message());
    std::exit(1);
}
double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
    std::string path;
    uint32_t prompt = 512, gen = 128, ctx = 0, batch = 0, reps = 3, n_sessions = 1, bw_mib = 0;
    bool sequential = false, json = false;
    kv_cache_type kvt = KV_CACHE_F16;
    kv_runtime_desc rd = KV_RUNTIME_DESC_INIT;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--sequential" || a == "--json") {
            (a == "--json" ? json : sequential) = true;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "kv-bench: %s needs a value\n", a.c_str());
            return 2;
        }
        const char* v = argv[++i];
        if (a == "-m") path = v;
        else if (a == "--prompt") prompt = uint32_t(std::atoi(v));
        else if (a == "--gen") gen = uint32_t(std::atoi(v));
        else if (a == "--ctx") ctx = uint32_t(std::atoi(v));
        else if (a == "--batch") batch = uint32_t(std::atoi(v));
        else if (a == "--reps") reps = uint32_t(std::max(1, std::atoi(v)));
        else if (a == "--bw-mib") bw_mib = uint32_t(std::max(1, std::atoi(v)));
        else if (a == "--sessions") n_sessions = uint32_t(std::max(1, std::atoi(v)));
        else if (a == "--kv-type") {
            std::string t = v;
            kvt = t == "f32" ? KV_CACHE_F32 : t == "q8_0" ? KV_CACHE_Q8_0 : t == "q4_0" ? KV_CACHE_Q4_0 : KV_CACHE_F16;
        }
        else if (a == "--device") rd.device_name = v;
        else {
            std::fprintf(stderr, "usage: kv-bench -m model.gguf [--prompt N] [--gen N] [--ctx N] [--kv-type f16|f32] "
                                 "[--batch N] [--sessions N [--sequential]] [--device NAME] [--reps N] [--json] [--bw-mib N]\n");
            return 2;
        }
    }
    if (path.empty() || prompt == 0) {
        std::fprintf(stderr, "kv-bench: -m model.gguf is required (and --prompt > 0)\n");
        return 2;
    }
    kv_runtime* rt;
    kv_status s = kv_runtime_create(&rd, &rt);
    if (s) die("runtime", s);
    kv_device_info dev{};
    dev.struct_size = sizeof dev;
    kv_runtime_get_info(rt, &dev);
    kv_bandwidth_result bw{};
    bw.struct_size = sizeof bw;
    if ((s = kv_runtime_measure_bandwidth(rt, uint64_t(bw_mib) << 20, 10, &bw))) die("bandwidth", s);
    kv_model_desc md = KV_MODEL_DESC_INIT;
    md.path = path.c_str();
    // Room in the page pool for every session's whole context.
    md.kv_pool_tokens = n_sessions * (ctx ? ctx : prompt + gen + 16);
    kv_model* model;
    double t0 = now_ms();
    if ((s = kv_model_load(rt, &md, &model))) die(path.c_str(), s);
    double load_ms = now_ms() - t0;
    kv_model_info mi{};
    mi.struct_size = sizeof mi;
    kv_model_get_info(model, &mi);

    kv_session_desc sd = KV_SESSION_DESC_INIT;
    sd.cache_type = kvt;
    sd.n_ctx = ctx ? ctx : prompt + gen + 16;
    sd.n_batch = batch ? batch : std::min<uint32_t>(prompt, 512);
    std::vector<kv_session*> sessions(n_sessions);
    for (auto& sess : sessions)
        if ((s = kv_session_create(model, &sd, &sess))) die("session", s);
    std::mt19937 rng(7);
    std::vector<std::vector<kv_token>> ids(n_sessions, std::vector<kv_token>(prompt));

    const bool batched = n_sessions > 1 && !sequential;
    // The batched path: one kv_batch_eval call per step, an item per session (a decode item, or a
    // one-token item for a session whose random weights just chose end-of-generation).
    std::vector<kv_batch_item> items(n_sessions);
    std::vector<kv_status> last(n_sessions, KV_OK);
    auto prefill_all = [&](uint32_t n) {
        if (!batched) {
            for (uint32_t i = 0; i < n_sessions; ++i)
                if ((s = kv_prefill(sessions[i], ids[i].data(), n))) die("prefill", s);
            return;
        }
        std::vector<uint32_t> done(n_sessions, 0);
        for (bool more = true; more;) {
            more = false;
            std::vector<kv_batch_item> chunk;
            for (uint32_t i = 0; i < n_sessions; ++i)
                if (done[i] < n) {
                    kv_batch_item it = KV_BATCH_ITEM_INIT;
                    it.session = sessions[i];
                    it.tokens = ids[i].data() + done[i];
                    it.n_tokens = n - done[i];
                    chunk.push_back(it);
                }
            if (chunk.empty()) break;
            if ((s = kv_batch_eval(chunk.data(), uint32_t(chunk.size())))) die("batch prefill", s);
            for (auto& it : chunk) {
                if (it.status) die("batch prefill (a session)", it.status);
                uint32_t i = uint32_t(std::find(sessions.begin(), sessions.end(), it.session) - sessions.begin());
                done[i] += it.n_done;
                more |= done[i] < n;
            }
        }
    };
    auto decode_round = [&](uint32_t n) {
        if (!batched) {
            for (uint32_t i = 0; i < n_sessions; ++i) {
                kv_token t;
                s = kv_decode_step(sessions[i], &t);
                if (s == KV_END_OF_GENERATION) {  // random weights may emit EOS: feed a token instead
                    if ((s = kv_prefill(sessions[i], &ids[i][n % prompt], 1))) die("decode", s);
                    continue;
                }
                if (s) die("decode", s);
            }
            return;
        }
        for (uint32_t i = 0; i < n_sessions; ++i) {
            items[i] = KV_BATCH_ITEM_INIT;
            items[i].session = sessions[i];
            if (last[i] == KV_END_OF_GENERATION) {
                items[i].tokens = &ids[i][n % prompt];
                items[i].n_tokens = 1;
            }
        }
        if ((s = kv_batch_eval(items.data(), n_sessions))) die("batch decode", s);
        for (uint32_t i = 0; i < n_sessions; ++i) {
            last[i] = items[i].status;
            if (last[i] != KV_OK && last[i] != KV_END_OF_GENERATION) die("batch decode (a session)", last[i]);
        }
    };

    double best_prefill = 1e30, best_decode = 1e30;
    uint32_t decoded = 0;
    for (uint32_t r = 0; r < reps + 1; ++r) {  // the first repetition warms up (pipelines, caches)
        for (auto* sess : sessions) kv_session_reset(sess);
        std::fill(last.begin(), last.end(), KV_OK);
        // Fresh prompts every repetition: pages cached by an earlier one would otherwise be
        // reused (prefix sharing) and the prefill would compute only the rest.
        for (auto& p : ids)
            for (auto& t : p) t = kv_token(3 + rng() % (mi.n_vocab - 3));
        if (r == 0) {  // warm-up: pipelines and each session's per-pass state (descriptor sets),
                       // for every pass shape, on a short prefix of each session
            prefill_all(std::min<uint32_t>(prompt, 2 * sd.n_batch));
            for (uint32_t n = 0; n < 2; ++n) decode_round(n);
            continue;
        }
        double a = now_ms();
        prefill_all(prompt);
        double b = now_ms();
        uint32_t n = 0;
        for (; n < gen; ++n) decode_round(n);
        double c = now_ms();
        best_prefill = std::min(best_prefill, b - a);
        if (n) best_decode = std::min(best_decode, (c - b) / double(n));  // one round: every session one token
        decoded = n;
    }
    kv_session* sess = sessions[0];
    kv_session_stats st{};
    st.struct_size = sizeof st;
    kv_session_get_stats(sess, &st);
    // One round (every session one token): the weights are read once per pass, so once when
    // batched and once per session when sequential; every session reads its own KV either way.
    double kv_read_avg = double(st.kv_bytes_per_token) * (prompt + decoded / 2.0);
    double weight_reads = batched ? 1.0 : double(n_sessions);
    double floor_round_ms =
        (weight_reads * double(mi.weight_bytes) + n_sessions * kv_read_avg) / (bw.read_gbps * 1e9) * 1e3;
    double agg_tps = n_sessions * 1e3 / best_decode, floor_tps = n_sessions * 1e3 / floor_round_ms;
    double prefill_tps = double(prompt) * n_sessions / (best_prefill / 1e3);
    double tflops = 2.0 * double(mi.n_params) * prefill_tps / 1e12;
    const char* kv_name = kvt == KV_CACHE_F32 ? "f32" : kvt == KV_CACHE_Q8_0 ? "q8_0" : kvt == KV_CACHE_Q4_0 ? "q4_0" : "f16";
    const char* mode = n_sessions == 1 ? "single" : batched ? "batched" : "sequential";
    if (json) {
        std::printf("{\"device\": \"%s\", \"driver\": \"%s\", \"model\": \"%s\", \"params\": %llu, "
                    "\"weight_bytes\": %llu, \"weight_types\": \"%s\", \"read_gbps\": %.2f, \"kv_type\": \"%s\", "
                    "\"sessions\": %u, \"mode\": \"%s\", \"prompt\": %u, \"gen\": %u, \"prefill_ms\": %.3f, "
                    "\"prefill_tok_s\": %.1f, \"prefill_tflops\": %.4f, \"decode_round_ms\": %.4f, "
                    "\"decode_tok_s\": %.2f, \"decode_tok_s_per_session\": %.2f, \"decode_floor_tok_s\": %.2f, "
                    "\"decode_share_of_floor\": %.4f, \"forward_passes\": %llu}\n",
                    dev.device_name, dev.driver_info, path.c_str(), static_cast<unsigned long long>(mi.n_params),
                    static_cast<unsigned long long>(mi.weight_bytes), mi.weight_types, bw.read_gbps, kv_name, n_sessions,
                    mode, prompt, decoded, best_prefill, prefill_tps, tflops, best_decode, agg_tps, agg_tps / n_sessions,
                    floor_tps, floor_round_ms / best_decode, static_cast<unsigned long long>(st.forward_passes));
    } else {
        std::printf("device: %s (%s)\n", dev.device_name, dev.driver_info);
        std::printf("model: %s, %.3fB params, %.1f MiB weights (%s), load %.0f ms\n", path.c_str(), mi.n_params / 1e9,
                    mi.weight_bytes / 1048576.0, mi.weight_types, load_ms);
        std::printf("read bandwidth: %.1f GB/s (kv_runtime_measure_bandwidth)\n", bw.read_gbps);
        std::printf("prefill: %u x %u tokens in %.2f ms = %.0f tok/s (%.2f TFLOP/s at 2 x params per token)\n",
                    n_sessions, prompt, best_prefill, prefill_tps, tflops);
        if (st.prefix_hit_tokens)  // fresh random prompts: only by chance
            std::printf("prefix cache: %llu of the last prefill's tokens were reused, not computed\n",
                        static_cast<unsigned long long>(st.prefix_hit_tokens));
        std::printf("decode: %.1f tok/s at %u..%u cached tokens (KV %s, %u session%s, %s: %.3f ms per round of one "
                    "token each, %.1f tok/s per session)\n",
                    agg_tps, prompt, prompt + decoded, kv_name, n_sessions, n_sessions > 1 ? "s" : "", mode,
                    best_decode, agg_tps / n_sessions);
        std::printf("decode floor: %.1f tok/s ((%.0f x %.1f MiB weights + %u x %.1f MiB KV) / %.0f GB/s per round); "
                    "achieved %.0f%% of the floor\n",
                    floor_tps, weight_reads, mi.weight_bytes / 1048576.0, n_sessions, kv_read_avg / 1048576.0,
                    bw.read_gbps, 100.0 * floor_round_ms / best_decode);
    }
    for (auto* x : sessions) kv_session_destroy(x);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    return 0;
}
