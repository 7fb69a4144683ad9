// kv-info: lists the Vulkan devices kvulkan can use, their features and limits, and the one the
// runtime picks; with --bench, measures device-memory bandwidth (the decode floor).
//
//   kv-info [--bench [--bytes N] [--iters N]] [--device INDEX|NAME] [--validation]
//   kv-info -m model.gguf      the model's architecture and sizes (parsed and validated; no GPU)
#include <kvulkan/kvulkan.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static const char* type_name(kv_device_type t) {
    switch (t) {
        case KV_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
        case KV_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
        case KV_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
        case KV_DEVICE_TYPE_CPU: return "CPU";
        default: return "other";
    }
}

static std::string mib(uint64_t b) {
    char s[64];
    std::snprintf(s, sizeof s, "%.0f MiB", double(b) / (1 << 20));
    return s;
}

static void print_device(const kv_device_info& d, bool chosen) {
    std::printf("%s[%u] %s (%s)\n", chosen ? "* " : "  ", d.index, d.device_name, type_name(d.device_type));
    std::printf("      driver: %s %s, Vulkan %u.%u.%u, vendor 0x%04x device 0x%04x\n", d.driver_name, d.driver_info,
                d.api_version >> 22, (d.api_version >> 12) & 0x3ff, d.api_version & 0xfff, d.vendor_id, d.device_id);
    std::printf("      subgroup: %u (min %u, max %u), ops 0x%x\n", d.subgroup_size, d.subgroup_size_min,
                d.subgroup_size_max, d.subgroup_ops);
    struct { uint32_t bit; const char* name; } feats[] = {
        {KV_FEATURE_SHADER_FLOAT16, "fp16-arith"}, {KV_FEATURE_STORAGE_16BIT, "16bit-storage"},
        {KV_FEATURE_STORAGE_8BIT, "8bit-storage"}, {KV_FEATURE_SHADER_INT8, "int8"},
        {KV_FEATURE_INTEGER_DOT_PRODUCT, "int-dot"}, {KV_FEATURE_COOPMAT_NV, "coopmat-nv"},
        {KV_FEATURE_COOPMAT_KHR, "coopmat-khr"}, {KV_FEATURE_MEMORY_BUDGET, "memory-budget"},
        {KV_FEATURE_SUBGROUP_SIZE_CONTROL, "subgroup-size-control"}, {KV_FEATURE_TIMESTAMPS, "timestamps"},
        {KV_FEATURE_UNIFIED_MEMORY, "unified-memory"}, {KV_FEATURE_SHADER_INT64, "int64"}};
    std::printf("      features:");
    for (auto& f : feats)
        if (d.features & f.bit) std::printf(" %s", f.name);
    std::printf("\n      limits: maxStorageBufferRange %s, max allocation %s, shared memory %u KiB, "
                "workgroup %u invocations\n",
                mib(d.max_storage_buffer_range).c_str(), mib(d.max_allocation_size).c_str(),
                d.max_shared_memory / 1024, d.max_workgroup_invocations);
    for (uint32_t h = 0; h < d.memory_heap_count; ++h)
        std::printf("      heap %u: %s%s, budget %s, used %s\n", h, mib(d.memory_heaps[h].size).c_str(),
                    d.memory_heaps[h].device_local ? " device-local" : "", mib(d.memory_heaps[h].budget).c_str(),
                    mib(d.memory_heaps[h].usage).c_str());
}

static int usage() {
    std::fprintf(stderr, "usage: kv-info [--bench [--bytes N] [--iters N]] [--device INDEX|NAME] [--validation]\n"
                         "       kv-info -m model.gguf\n");
    return 2;
}

static int model_info(const char* path) {
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.path = path;
    kv_model* m = nullptr;
    kv_status s = kv_model_load(nullptr, &d, &m);
    if (s != KV_OK) {
        std::fprintf(stderr, "kv-info: %s: %s: %s\n", path, kv_status_string(s), kv_last_error_message());
        return 1;
    }
    kv_model_info i{};
    i.struct_size = sizeof i;
    kv_model_get_info(m, &i);
    std::printf("model: %s\n", path);
    std::printf("  architecture: %s%s%s\n", i.architecture, i.name[0] ? ", name: " : "", i.name);
    std::printf("  parameters: %llu (%.2fM), weights %.2f MiB, file %.2f MiB\n", (unsigned long long)i.n_params,
                double(i.n_params) / 1e6, double(i.weight_bytes) / (1 << 20), double(i.file_size) / (1 << 20));
    std::printf("  layers %u, embedding %u, heads %u, KV heads %u, head dim %u, ffn %u, vocab %u\n", i.n_layer,
                i.n_embd, i.n_head, i.n_head_kv, i.head_dim, i.n_ff, i.n_vocab);
    std::printf("  context length %u, rope %s, base %g, %s output\n", i.n_ctx_train, i.rope_neox ? "neox" : "normal",
                double(i.rope_freq_base), i.tied_output ? "tied" : "separate");
    std::printf("  weight types: %s\n", i.weight_types);
    std::printf("  KV cache: %llu bytes per token in f16 (2 x %u layers x %u KV heads x %u head dim x 2 bytes)\n",
                2ull * i.n_layer * i.n_head_kv * i.head_dim * 2, i.n_layer, i.n_head_kv, i.head_dim);
    std::printf("  special tokens: BOS %d, EOS %d\n", kv_model_token_bos(m), kv_model_token_eos(m));
    kv_model_destroy(m);
    return 0;
}

int main(int argc, char** argv) {
    bool bench = false;
    uint64_t bytes = 0;
    uint32_t iters = 0;
    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto need = [&](const char* what) -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "kv-info: %s needs a value\n", what);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-m" || a == "--model") return model_info(need("-m"));
        if (a == "--bench") bench = true;
        else if (a == "--bytes") bytes = std::strtoull(need("--bytes"), nullptr, 10);
        else if (a == "--iters") iters = static_cast<uint32_t>(std::strtoul(need("--iters"), nullptr, 10));
        else if (a == "--validation") desc.flags |= KV_RUNTIME_VALIDATION;
        else if (a == "--device") {
            const char* v = need("--device");
            char* end = nullptr;
            long idx = std::strtol(v, &end, 10);
            if (end && *end == 0) desc.device_index = static_cast<int32_t>(idx);
            else desc.device_name = v;
        } else if (a == "-h" || a == "--help") {
            usage();
            return 0;
        } else {
            std::fprintf(stderr, "kv-info: unknown argument '%s'\n", a.c_str());
            return usage();
        }
    }
    std::printf("kvulkan %s\n", kv_version_string());
    uint32_t n = 0;
    kv_status s = kv_enumerate_devices(&desc, nullptr, &n);
    if (s != KV_OK) {
        std::fprintf(stderr, "kv-info: %s: %s\n", kv_status_string(s), kv_last_error_message());
        return 1;
    }
    std::vector<kv_device_info> infos(n);
    for (auto& d : infos) d.struct_size = sizeof d;
    kv_enumerate_devices(&desc, infos.data(), &n);

    kv_runtime* rt = nullptr;
    s = kv_runtime_create(&desc, &rt);
    if (s != KV_OK) {
        for (auto& d : infos) print_device(d, false);
        std::fprintf(stderr, "kv-info: %s: %s\n", kv_status_string(s), kv_last_error_message());
        return 1;
    }
    kv_device_info chosen{};
    chosen.struct_size = sizeof chosen;
    kv_runtime_get_info(rt, &chosen);
    std::printf("%u Vulkan device(s); * = the one kvulkan uses (override with --device or KV_DEVICE)\n", n);
    for (auto& d : infos) print_device(d, d.index == chosen.index && std::strcmp(d.device_name, chosen.device_name) == 0);

    int rc = 0;
    if (bench) {
        kv_bandwidth_result bw{};
        bw.struct_size = sizeof bw;
        s = kv_runtime_measure_bandwidth(rt, bytes, iters, &bw);
        if (s != KV_OK) {
            std::fprintf(stderr, "kv-info: bandwidth probe: %s: %s\n", kv_status_string(s), kv_last_error_message());
            rc = 1;
        } else {
            std::printf("bandwidth on %s (%s buffer, best of %u, GPU timestamps):\n", chosen.device_name,
                        mib(bw.bytes).c_str(), iters ? iters : 10);
            std::printf("  read  %8.1f GB/s\n  write %8.1f GB/s\n  copy  %8.1f GB/s (read + write bytes)\n",
                        bw.read_gbps, bw.write_gbps, bw.copy_gbps);
            std::printf("  decode floor: a step that reads B bytes of weights and KV takes at least B / %.1f GB/s\n",
                        bw.read_gbps);
        }
    }
    kv_runtime_destroy(rt);
    return rc;
}
