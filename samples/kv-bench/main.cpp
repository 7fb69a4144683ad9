// kv-bench: prefill and decode speed of a model on this device, held against the floors:
//   decode floor  = (weight bytes + KV bytes read per step) / measured read bandwidth
//   prefill rate  = 2 x parameters FLOPs per token (reported as achieved TFLOP/s)
//
//   kv-bench -m model.gguf [--prompt 512] [--gen 128] [--ctx N] [--kv-type f16|f32|q8_0|q4_0]
//            [--batch N] [--sessions N] [--device INDEX|NAME] [--reps 3]
//
// With --sessions N, N sessions (distinct prompts) decode in turn, one token each per round, from
// one thread: the aggregate tok/s of N users served by one GPU, each step reading its own KV.
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
    uint32_t prompt = 512, gen = 128, ctx = 0, batch = 0, reps = 3, n_sessions = 1;
    kv_cache_type kvt = KV_CACHE_F16;
    kv_runtime_desc rd = KV_RUNTIME_DESC_INIT;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
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
        else if (a == "--sessions") n_sessions = uint32_t(std::max(1, std::atoi(v)));
        else if (a == "--kv-type") {
            std::string t = v;
            kvt = t == "f32" ? KV_CACHE_F32 : t == "q8_0" ? KV_CACHE_Q8_0 : t == "q4_0" ? KV_CACHE_Q4_0 : KV_CACHE_F16;
        }
        else if (a == "--device") rd.device_name = v;
        else {
            std::fprintf(stderr, "usage: kv-bench -m model.gguf [--prompt N] [--gen N] [--ctx N] [--kv-type f16|f32] "
                                 "[--batch N] [--device NAME] [--reps N]\n");
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
    if ((s = kv_runtime_measure_bandwidth(rt, 0, 10, &bw))) die("bandwidth", s);
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

    double best_prefill = 1e30, best_decode = 1e30;
    uint32_t decoded = 0;
    for (uint32_t r = 0; r < reps + 1; ++r) {  // the first repetition warms up (pipelines, caches)
        for (auto* sess : sessions) kv_session_reset(sess);
        // Fresh prompts every repetition: pages cached by an earlier one would otherwise be
        // reused (prefix sharing) and the prefill would compute only the rest.
        for (auto& p : ids)
            for (auto& t : p) t = kv_token(3 + rng() % (mi.n_vocab - 3));
        if (r == 0) {  // warm-up: pipelines and each session's per-pass state (descriptor sets),
                       // for every pass shape, on a short prefix of each session
            uint32_t w = std::min<uint32_t>(prompt, 2 * sd.n_batch);
            for (uint32_t i = 0; i < n_sessions; ++i) {
                if ((s = kv_prefill(sessions[i], ids[i].data(), w))) die("prefill", s);
                kv_token t;
                kv_decode_step(sessions[i], &t);
            }
            continue;
        }
        double a = now_ms();
        for (uint32_t i = 0; i < n_sessions; ++i)
            if ((s = kv_prefill(sessions[i], ids[i].data(), prompt))) die("prefill", s);
        double b = now_ms();
        uint32_t n = 0;
        for (; n < gen; ++n)
            for (uint32_t i = 0; i < n_sessions; ++i) {
                kv_token t;
                s = kv_decode_step(sessions[i], &t);
                if (s == KV_END_OF_GENERATION) {  // random weights may emit EOS: feed a token instead
                    if ((s = kv_prefill(sessions[i], &ids[i][n % prompt], 1))) die("decode", s);
                    continue;
                }
                if (s) die("decode", s);
            }
        double c = now_ms();
        best_prefill = std::min(best_prefill, (b - a) / n_sessions);
        if (n) best_decode = std::min(best_decode, (c - b) / (double(n) * n_sessions));
        decoded = n;
    }
    kv_session* sess = sessions[0];
    kv_session_stats st{};
    st.struct_size = sizeof st;
    kv_session_get_stats(sess, &st);
    // Per decode step of one session: the weights (read once per step: sessions decode one after
    // another, so each step reads them again) plus that session's KV.
    double kv_read_avg = double(st.kv_bytes_per_token) * (prompt + decoded / 2.0);
    double floor_ms = (double(mi.weight_bytes) + kv_read_avg) / (bw.read_gbps * 1e9) * 1e3;
    double prefill_tps = prompt / (best_prefill / 1e3);
    double tflops = 2.0 * double(mi.n_params) * prompt / (best_prefill / 1e3) / 1e12;
    std::printf("device: %s (%s)\n", dev.device_name, dev.driver_info);
    std::printf("model: %s, %.3fB params, %.1f MiB weights (%s), load %.0f ms\n", path.c_str(), mi.n_params / 1e9,
                mi.weight_bytes / 1048576.0, mi.weight_types, load_ms);
    std::printf("read bandwidth: %.1f GB/s (kv_runtime_measure_bandwidth)\n", bw.read_gbps);
    std::printf("prefill: %u tokens in %.2f ms = %.0f tok/s (%.2f TFLOP/s at 2 x params per token)\n", prompt,
                best_prefill, prefill_tps, tflops);
    if (st.prefix_hit_tokens)  // fresh random prompts: only by chance
        std::printf("prefix cache: %llu of the last prefill's tokens were reused, not computed\n",
                    static_cast<unsigned long long>(st.prefix_hit_tokens));
    const char* kv_name = kvt == KV_CACHE_F32 ? "f32" : kvt == KV_CACHE_Q8_0 ? "q8_0" : kvt == KV_CACHE_Q4_0 ? "q4_0" : "f16";
    std::printf("decode: %.3f ms/token = %.1f tok/s at %u..%u cached tokens (KV %s, %u session%s, tokens of all "
                "sessions counted)\n",
                best_decode, 1e3 / best_decode, prompt, prompt + decoded, kv_name, n_sessions, n_sessions > 1 ? "s" : "");
    std::printf("decode floor: %.3f ms/token = %.1f tok/s ((%.1f MiB weights + %.1f MiB KV) / %.0f GB/s); "
                "achieved %.0f%% of the floor\n",
                floor_ms, 1e3 / floor_ms, mi.weight_bytes / 1048576.0, kv_read_avg / 1048576.0, bw.read_gbps,
                100.0 * floor_ms / best_decode);
    for (auto* x : sessions) kv_session_destroy(x);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    return 0;
}
