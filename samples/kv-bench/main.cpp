// kv-bench: prefill and decode speed of a model on this device, held against the floors:
//   decode floor  = (weight bytes + KV bytes read per step) / measured read bandwidth
//   prefill rate  = 2 x parameters FLOPs per token (reported as achieved TFLOP/s)
//
//   kv-bench -m model.gguf [--prompt 512] [--gen 128] [--ctx N] [--kv-type f16|f32] [--batch N]
//            [--device INDEX|NAME] [--reps 3]
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
    uint32_t prompt = 512, gen = 128, ctx = 0, batch = 0, reps = 3;
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
        else if (a == "--kv-type") kvt = std::string(v) == "f32" ? KV_CACHE_F32 : KV_CACHE_F16;
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
    kv_session* sess;
    if ((s = kv_session_create(model, &sd, &sess))) die("session", s);
    std::mt19937 rng(7);
    std::vector<kv_token> ids(prompt);
    for (auto& t : ids) t = kv_token(3 + rng() % (mi.n_vocab - 3));

    double best_prefill = 1e30, best_decode = 1e30;
    uint32_t decoded = 0;
    for (uint32_t r = 0; r < reps + 1; ++r) {  // the first repetition warms up (pipelines, caches)
        kv_session_reset(sess);
        double a = now_ms();
        if ((s = kv_prefill(sess, ids.data(), prompt))) die("prefill", s);
        double b = now_ms();
        uint32_t n = 0;
        for (; n < gen; ++n) {
            kv_token t;
            s = kv_decode_step(sess, &t);
            if (s == KV_END_OF_GENERATION) {  // random weights may emit EOS: feed a token instead
                if ((s = kv_prefill(sess, &ids[n % prompt], 1))) die("decode", s);
                continue;
            }
            if (s) die("decode", s);
        }
        double c = now_ms();
        if (r == 0) continue;
        best_prefill = std::min(best_prefill, b - a);
        if (n) best_decode = std::min(best_decode, (c - b) / n);
        decoded = n;
    }
    kv_session_stats st{};
    st.struct_size = sizeof st;
    kv_session_get_stats(sess, &st);
    double kv_read_avg = double(st.kv_bytes_per_token) * (prompt + decoded / 2.0);  // per decode step
    double floor_ms = (double(mi.weight_bytes) + kv_read_avg) / (bw.read_gbps * 1e9) * 1e3;
    double prefill_tps = prompt / (best_prefill / 1e3);
    double tflops = 2.0 * double(mi.n_params) * prompt / (best_prefill / 1e3) / 1e12;
    std::printf("device: %s (%s)\n", dev.device_name, dev.driver_info);
    std::printf("model: %s, %.3fB params, %.1f MiB weights (%s), load %.0f ms\n", path.c_str(), mi.n_params / 1e9,
                mi.weight_bytes / 1048576.0, mi.weight_types, load_ms);
    std::printf("read bandwidth: %.1f GB/s (kv_runtime_measure_bandwidth)\n", bw.read_gbps);
    std::printf("prefill: %u tokens in %.2f ms = %.0f tok/s (%.2f TFLOP/s at 2 x params per token)\n", prompt,
                best_prefill, prefill_tps, tflops);
    std::printf("decode: %.3f ms/token = %.1f tok/s at %u..%u cached tokens (KV %s)\n", best_decode,
                1e3 / best_decode, prompt, prompt + decoded, kvt == KV_CACHE_F32 ? "f32" : "f16");
    std::printf("decode floor: %.3f ms/token = %.1f tok/s ((%.1f MiB weights + %.1f MiB KV) / %.0f GB/s); "
                "achieved %.0f%% of the floor\n",
                floor_ms, 1e3 / floor_ms, mi.weight_bytes / 1048576.0, kv_read_avg / 1048576.0, bw.read_gbps,
                100.0 * floor_ms / best_decode);
    kv_session_destroy(sess);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    return 0;
}
