/* A caller built against the 0.1.0 header (tests/abi/v0.1/kvulkan/kvulkan.h, a frozen copy) and run
 * against the current library: what every binary shipped against 0.1 does. It checks that
 *  - each struct at its 0.1 size is accepted, and one byte less is rejected (the library's frozen
 *    first sizes equal 0.1's, on this platform);
 *  - output structs and arrays are written within the caller's 0.1 struct_size and no further
 *    (canaries after each);
 *  - a model loads, a session prefills, decodes and reports stats, with 0.1 semantics.
 *
 *   compat_v0_1 <model.gguf>     exit 0: compatible; otherwise prints what broke
 */
#include <kvulkan/kvulkan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if KV_VERSION_MAJOR != 0 || KV_VERSION_MINOR != 1 || KV_VERSION_PATCH != 0
#error "compat_v0_1.c must be compiled against the frozen 0.1.0 header"
#endif

static int failures = 0;
#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (!(cond)) {                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
            fprintf(stderr, __VA_ARGS__);                          \
            fprintf(stderr, " (%s)\n", kv_last_error_message());   \
            ++failures;                                            \
        }                                                          \
    } while (0)

#define CANARY 0xA5u
static int canary_intact(const unsigned char* p, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != CANARY) return 0;
    return 1;
}

/* An output struct followed by canary bytes: the library must write none of them. */
#define GUARDED(T) \
    struct {       \
        T value;   \
        unsigned char canary[64]; \
    }

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: compat_v0_1 <model.gguf>\n");
        return 2;
    }
    uint32_t v = kv_version();
    printf("library %s, header 0.1.0\n", kv_version_string());
    CHECK(KV_VERSION_GET_MAJOR(v) == 0 && KV_VERSION_GET_MINOR(v) >= 1, "library version %s", kv_version_string());

    /* Devices: an array of 0.1-sized infos, then canaries. */
    uint32_t count = 0;
    CHECK(kv_enumerate_devices(NULL, NULL, &count) == KV_OK && count > 0, "enumerate count");
    {
        struct {
            kv_device_info infos[2];
            unsigned char canary[64];
        } arr;
        memset(&arr, CANARY, sizeof arr);
        arr.infos[0].struct_size = arr.infos[1].struct_size = (uint32_t)sizeof(kv_device_info);
        uint32_t n = 2;
        kv_status st = kv_enumerate_devices(NULL, arr.infos, &n);
        CHECK(st == KV_OK || st == KV_INCOMPLETE, "enumerate: %d", st);
        for (uint32_t i = 0; i < n; ++i) {
            CHECK(arr.infos[i].index == i, "infos[%u].index = %u", i, arr.infos[i].index);
            CHECK(arr.infos[i].device_name[0] != 0, "infos[%u] has no name", i);
            CHECK(arr.infos[i].struct_size == sizeof(kv_device_info), "infos[%u].struct_size changed", i);
        }
        if (n < 2) CHECK(arr.infos[1].struct_size == sizeof(kv_device_info), "infos[1] written past the count");
        CHECK(canary_intact(arr.canary, sizeof arr.canary), "enumerate wrote past the caller's array");
        kv_device_info small;
        memset(&small, 0, sizeof small);
        small.struct_size = (uint32_t)sizeof(kv_device_info) - 1;
        n = 1;
        CHECK(kv_enumerate_devices(NULL, &small, &n) == KV_ERR_INVALID_ARGUMENT, "a short kv_device_info accepted");
    }

    /* Runtime: a 0.1 desc; one byte short is rejected. */
    kv_runtime_desc rd = KV_RUNTIME_DESC_INIT;
    kv_runtime* rt = NULL;
    rd.struct_size -= 1;
    CHECK(kv_runtime_create(&rd, &rt) == KV_ERR_INVALID_ARGUMENT && rt == NULL, "a short kv_runtime_desc accepted");
    rd.struct_size += 1;
    kv_status st = kv_runtime_create(&rd, &rt);
    CHECK(st == KV_OK, "runtime_create: %d", st);
    if (st != KV_OK) return 1;
    {
        GUARDED(kv_device_info) g;
        memset(&g, CANARY, sizeof g);
        g.value.struct_size = (uint32_t)sizeof(kv_device_info);
        CHECK(kv_runtime_get_info(rt, &g.value) == KV_OK, "runtime_get_info");
        CHECK(g.value.device_name[0] != 0 && g.value.max_storage_buffer_range > 0, "device info empty");
        CHECK(canary_intact(g.canary, sizeof g.canary), "runtime_get_info wrote past a 0.1 kv_device_info");
        printf("device: %s\n", g.value.device_name);
    }
    {
        GUARDED(kv_bandwidth_result) g;
        memset(&g, CANARY, sizeof g);
        g.value.struct_size = (uint32_t)sizeof(kv_bandwidth_result) - 1;
        CHECK(kv_runtime_measure_bandwidth(rt, 1 << 20, 1, &g.value) == KV_ERR_INVALID_ARGUMENT,
              "a short kv_bandwidth_result accepted");
        g.value.struct_size = (uint32_t)sizeof(kv_bandwidth_result);
        CHECK(kv_runtime_measure_bandwidth(rt, 1 << 20, 1, &g.value) == KV_OK && g.value.read_gbps > 0, "bandwidth");
        CHECK(canary_intact(g.canary, sizeof g.canary), "measure_bandwidth wrote past a 0.1 kv_bandwidth_result");
    }

    /* Model: a 0.1 desc (flags 0); one byte short is rejected. */
    kv_model_desc md = KV_MODEL_DESC_INIT;
    kv_model* model = NULL;
    md.path = argv[1];
    md.struct_size -= 1;
    CHECK(kv_model_load(rt, &md, &model) == KV_ERR_INVALID_ARGUMENT && model == NULL, "a short kv_model_desc accepted");
    md.struct_size += 1;
    st = kv_model_load(rt, &md, &model);
    CHECK(st == KV_OK, "model_load %s: %d", argv[1], st);
    if (st != KV_OK) {
        kv_runtime_destroy(rt);
        return 1;
    }
    GUARDED(kv_model_info) mi;
    memset(&mi, CANARY, sizeof mi);
    mi.value.struct_size = (uint32_t)sizeof(kv_model_info);
    CHECK(kv_model_get_info(model, &mi.value) == KV_OK && mi.value.n_vocab > 0 && mi.value.on_device == 1, "model info");
    CHECK(canary_intact(mi.canary, sizeof mi.canary), "model_get_info wrote past a 0.1 kv_model_info");
    mi.value.struct_size -= 1;
    CHECK(kv_model_get_info(model, &mi.value) == KV_ERR_INVALID_ARGUMENT, "a short kv_model_info accepted");

    /* Sessions: NULL desc (0.1 accepted it), a 0.1 desc with a 0.1 sampler, and short structs. */
    kv_session* s0 = NULL;
    CHECK(kv_session_create(model, NULL, &s0) == KV_OK, "session_create with a NULL desc");
    kv_session_destroy(s0);

    kv_sampler_desc sampler = KV_SAMPLER_DESC_INIT;
    kv_session_desc sd = KV_SESSION_DESC_INIT;
    sd.n_ctx = 64;
    sd.sampler = &sampler;
    kv_session* s = NULL;
    sampler.struct_size -= 1;
    CHECK(kv_session_create(model, &sd, &s) == KV_ERR_INVALID_ARGUMENT && s == NULL, "a short kv_sampler_desc accepted");
    sampler.struct_size += 1;
    sd.struct_size -= 1;
    CHECK(kv_session_create(model, &sd, &s) == KV_ERR_INVALID_ARGUMENT && s == NULL, "a short kv_session_desc accepted");
    sd.struct_size += 1;
    st = kv_session_create(model, &sd, &s);
    CHECK(st == KV_OK, "session_create: %d", st);
    if (st == KV_OK) {
        kv_token prompt[64];
        uint32_t n = 64, appended = 0;
        st = kv_tokenize(model, "once upon a time", (size_t)-1, KV_TOKENIZE_ADD_SPECIAL, prompt, &n);
        CHECK(st == KV_OK && n > 0, "tokenize: %d", st);
        CHECK(kv_prefill(s, prompt, n) == KV_OK, "prefill");
        kv_token greedy[4];
        for (int i = 0; i < 4; ++i) {
            st = kv_decode_step(s, &greedy[i]);
            CHECK(st == KV_OK || st == KV_END_OF_GENERATION, "decode step %d: %d", i, st);
            appended += st == KV_OK;
        }
        /* The same tokens again after a reset: 0.1 semantics of reset and greedy decoding. */
        CHECK(kv_session_reset(s) == KV_OK && kv_prefill(s, prompt, n) == KV_OK, "reset + prefill");
        for (int i = 0; i < 4; ++i) {
            kv_token t = -1;
            st = kv_decode_step(s, &t);
            appended += st == KV_OK;
            CHECK(t == greedy[i], "token %d after reset: %d, first run %d", i, t, greedy[i]);
        }
        CHECK(kv_session_set_sampler(s, &sampler) == KV_OK, "set_sampler with a 0.1 kv_sampler_desc");
        sampler.struct_size -= 1;
        CHECK(kv_session_set_sampler(s, &sampler) == KV_ERR_INVALID_ARGUMENT, "a short kv_sampler_desc accepted");
        sampler.struct_size += 1;

        GUARDED(kv_session_stats) ss;
        memset(&ss, CANARY, sizeof ss);
        ss.value.struct_size = (uint32_t)sizeof(kv_session_stats);
        CHECK(kv_session_get_stats(s, &ss.value) == KV_OK, "session stats");
        CHECK(ss.value.n_tokens == n + appended / 2 && ss.value.n_ctx == 64 && ss.value.pages > 0, "stats: %u tokens, n_ctx %u",
              ss.value.n_tokens, ss.value.n_ctx);
        CHECK(canary_intact(ss.canary, sizeof ss.canary), "session_get_stats wrote past a 0.1 kv_session_stats");
        ss.value.struct_size -= 1;
        CHECK(kv_session_get_stats(s, &ss.value) == KV_ERR_INVALID_ARGUMENT, "a short kv_session_stats accepted");

        GUARDED(kv_cache_stats) cs;
        memset(&cs, CANARY, sizeof cs);
        cs.value.struct_size = (uint32_t)sizeof(kv_cache_stats);
        CHECK(kv_model_get_cache_stats(model, KV_CACHE_F16, &cs.value) == KV_OK && cs.value.pages_in_use > 0,
              "cache stats");
        CHECK(canary_intact(cs.canary, sizeof cs.canary), "model_get_cache_stats wrote past a 0.1 kv_cache_stats");
        cs.value.struct_size -= 1;
        CHECK(kv_model_get_cache_stats(model, KV_CACHE_F16, &cs.value) == KV_ERR_INVALID_ARGUMENT,
              "a short kv_cache_stats accepted");
        kv_session_destroy(s);
    }
    kv_model_destroy(model);
    CHECK(kv_runtime_validation_message_count(rt) == 0, "validation messages");
    kv_runtime_destroy(rt);
    if (failures) {
        fprintf(stderr, "%d check(s) failed: the current library is not compatible with 0.1.0 callers\n", failures);
        return 1;
    }
    printf("compatible: every 0.1.0 check passed\n");
    return 0;
}
