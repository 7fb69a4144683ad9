// libFuzzer target for saved-session images (kv_session_load, src/engine/session_io.cpp).
//
// Restoring a session needs a device (create_session allocates its pages), so the image is loaded
// onto a model loaded WITHOUT a runtime: everything load() checks before any device work runs —
// magic, version, checksum, header size, model fingerprint, page size, token count vs n_ctx, KV
// type, sampler record and random state, tokens, logits, the size of the KV pages, trailing bytes
// — and an image that passes all of it reaches create_session, which refuses it with
// KV_ERR_BAD_STATE. The device half (page upload) is not fuzzed here.
//
// Invariants beyond "no crash, no sanitizer report": the status is KV_ERR_BAD_MODEL,
// KV_ERR_UNSUPPORTED or KV_ERR_INVALID_ARGUMENT (an empty image) with a message, or KV_ERR_BAD_STATE
// (every check passed); never KV_OK, and no session is returned.
// Each input is tried twice: as is, and with its FNV-1a trailer recomputed, so that mutations get
// past the checksum (which a fuzzer cannot solve) to the fields behind it.
//
// Model: stories260K from $KV_SHARED_DIR (default: the shared dir next to the repository), with
// 4-token KV pages. Seeds: when KV_FUZZ_SEED_DIR names a directory, LLVMFuzzerInitialize saves
// real images of that model there (F32 and F16 pages, with and without logits, a sampler with
// random state, an empty session); that needs a Vulkan device (lavapipe in CI).
// Built by tests/fuzz/CMakeLists.txt (-DKV_BUILD_FUZZERS=ON, clang, the library built with
// -fsanitize=fuzzer-no-link); run by scripts/sanitize.sh.
#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kPageSize = 4;
kv_model* g_model = nullptr;

[[noreturn]] void violated(const char* what, kv_status st) {
    std::fprintf(stderr, "fuzz_session: invariant violated: %s (status %s: %s)\n", what, kv_status_string(st),
                 kv_last_error_message());
    std::abort();
}

[[noreturn]] void setup_failed(const char* what, kv_status st) {
    std::fprintf(stderr, "fuzz_session: %s: %s: %s\n", what, kv_status_string(st), kv_last_error_message());
    std::exit(1);
}

std::string model_path() {
    const char* env = std::getenv("KV_SHARED_DIR");
    std::string dir = env && *env ? env : KV_SHARED_DIR_DEFAULT;
    return dir + "/models/stories260K/stories260K.gguf";
}

kv_model* load_model(kv_runtime* rt) {
    const std::string path = model_path();
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.path = path.c_str();
    d.kv_page_size = kPageSize;
    kv_model* m = nullptr;
    if (kv_status st = kv_model_load(rt, &d, &m); st != KV_OK) setup_failed(path.c_str(), st);
    return m;
}

// Saves images of a few kinds of session into `dir`.
void write_seeds(const char* dir) {
    kv_runtime* rt = nullptr;
    if (kv_status st = kv_runtime_create(nullptr, &rt); st != KV_OK) setup_failed("seeds: kv_runtime_create", st);
    kv_model* m = load_model(rt);
    struct Seed {
        const char* name;
        kv_cache_type type;
        uint32_t n_tokens;
        uint32_t decode;
        float temperature;
    };
    const kv_token prompt[] = {1, 403, 407, 261, 378, 260, 300, 262, 270};
    for (const Seed& seed : {Seed{"f32-5", KV_CACHE_F32, 5, 0, 0.f}, Seed{"f16-9-decoded", KV_CACHE_F16, 9, 2, 0.f},
                             Seed{"f32-sampled", KV_CACHE_F32, 3, 1, 0.8f}, Seed{"f16-empty", KV_CACHE_F16, 0, 0, 0.f}}) {
        kv_sampler_desc sd = KV_SAMPLER_DESC_INIT;
        sd.temperature = seed.temperature;
        sd.top_k = 20;
        sd.seed = 7;
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.cache_type = seed.type;
        d.n_ctx = 32;
        d.sampler = &sd;
        kv_session* s = nullptr;
        if (kv_status st = kv_session_create(m, &d, &s); st != KV_OK) setup_failed("seeds: kv_session_create", st);
        if (seed.n_tokens && kv_prefill(s, prompt, seed.n_tokens) != KV_OK) setup_failed("seeds: kv_prefill", KV_OK);
        kv_token t;
        for (uint32_t i = 0; i < seed.decode; ++i) kv_decode_step(s, &t);
        size_t size = 0;
        kv_session_save(s, nullptr, &size);
        std::vector<uint8_t> img(size);
        if (kv_status st = kv_session_save(s, img.data(), &size); st != KV_OK) setup_failed("seeds: kv_session_save", st);
        kv_session_destroy(s);
        const std::string path = std::string(dir) + "/session-" + seed.name + ".kvs";
        if (FILE* out = std::fopen(path.c_str(), "wb")) {
            std::fwrite(img.data(), 1, size, out);
            std::fclose(out);
        }
    }
    kv_model_destroy(m);
    kv_runtime_destroy(rt);
}

uint64_t fnv1a(const uint8_t* p, size_t n) {  // as src/engine/session_io.cpp
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void try_load(const uint8_t* data, size_t size) {
    kv_session* s = nullptr;
    const kv_status st = kv_session_load(g_model, data, size, &s);
    if (st == KV_OK || s != nullptr) violated("an image loaded onto a model without a runtime", st);
    if (st != KV_ERR_BAD_MODEL && st != KV_ERR_UNSUPPORTED && st != KV_ERR_BAD_STATE &&
        !(st == KV_ERR_INVALID_ARGUMENT && size == 0))
        violated("unexpected status", st);
    if (std::strlen(kv_last_error_message()) == 0) violated("rejected without a message", st);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("KV_FUZZ_SEED_DIR")) write_seeds(dir);
    g_model = load_model(nullptr);  // parse-only: no device work can happen
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try_load(size ? data : nullptr, size);
    if (size >= 24) {
        std::vector<uint8_t> fixed(data, data + size);
        const uint64_t h = fnv1a(fixed.data(), size - 8);
        std::memcpy(fixed.data() + size - 8, &h, 8);
        try_load(fixed.data(), size);
    }
    return 0;
}
