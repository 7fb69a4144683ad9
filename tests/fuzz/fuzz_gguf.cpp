// libFuzzer target for the GGUF reader and, for every file it accepts, the writer, the
// dequantizers and the model-level checks (model::describe_model: architecture, hyper-parameters,
// tensor shapes and types). Invariants checked beyond "no crash, no sanitizer report":
//   - a rejected file throws kv::Error with KV_ERR_BAD_MODEL or KV_ERR_UNSUPPORTED and a message;
//   - every accepted tensor's bytes lie inside the buffer (ASan sees the reads);
//   - writing an accepted file back with GgufWriter and reading that gives the same content;
//   - a model describe_model accepts has the dimensions, finite hyper-parameters and tensor shapes
//     its own documentation promises (check_model below), whatever the metadata said.
// Seeds: tests/data/gguf_malformed/ (reader), and, when KV_FUZZ_SEED_DIR names a directory, valid
// tiny models of each supported variant written there at start-up (tests/reference/tiny_model.h),
// so that mutations reach the model checks. tests/fuzz/run_fuzz.sh does both.
// Built by tests/fuzz/CMakeLists.txt (-DKV_BUILD_FUZZERS=ON, clang) or tests/fuzz/run_fuzz.sh.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "model/arch.h"
#include "model/ggml_types.h"
#include "model/gguf.h"
#include "reference/tiny_model.h"

using namespace kv::model;

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_gguf: invariant violated: %s\n", what);
    std::abort();
}

bool same_value(const GgufValue& a, const GgufValue& b) {
    if (a.type != b.type) return false;
    switch (a.type) {
        case GgufType::FLOAT32:
        case GgufType::FLOAT64:
            return a.f == b.f || (std::isnan(a.f) && std::isnan(b.f));
        case GgufType::STRING:
            return a.s == b.s;
        case GgufType::ARRAY:
            if (a.array_type != b.array_type || a.array.size() != b.array.size()) return false;
            for (size_t i = 0; i < a.array.size(); ++i)
                if (!same_value(a.array[i], b.array[i])) return false;
            return true;
        default:
            return a.u == b.u && a.i == b.i;
    }
}

void exercise(const GgufFile& f) {
    // Typed getters on every key: either a value or a BAD_MODEL error.
    for (const auto& kv : f.metadata()) {
        auto attempt = [&](auto&& fn) {
            try {
                fn();
            } catch (const kv::Error& e) {
                if (e.status() != KV_ERR_BAD_MODEL)
                    violated("getter threw a status other than BAD_MODEL");
            }
        };
        attempt([&] { f.get_uint(kv.first); });
        attempt([&] { f.get_int(kv.first); });
        attempt([&] { f.get_float(kv.first); });
        attempt([&] { f.get_bool(kv.first); });
        attempt([&] { f.get_string(kv.first); });
        attempt([&] { f.get_string_array(kv.first); });
        attempt([&] { f.get_float_array(kv.first); });
        attempt([&] { f.get_int_array(kv.first); });
        if (f.find(kv.first) == nullptr) violated("find() misses a key");
    }
    // Tensor data: read the first and last byte, dequantize a bounded first row.
    std::vector<float> row;
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
        if (f.find_tensor(t.name) == nullptr) violated("find_tensor() misses a tensor");
        if (t.n_dims > 4) violated("n_dims > 4 accepted");
        if (f.data_offset() + t.offset + t.bytes > f.file_size())
            violated("tensor data outside the file");
        if (t.bytes == 0) continue;
        const uint8_t* p = f.tensor_data(t);
        sink = static_cast<uint8_t>(sink + p[0] + p[t.bytes - 1]);
        const TypeTraits* tt = type_traits(t.type);
        if (!tt) violated("tensor with unknown type accepted");
        if (!tt->supported) continue;
        uint64_t n = std::min<uint64_t>(t.ne[0], 1u << 14);
        n -= n % tt->block_size;
        if (row_bytes(t.type, n) > t.bytes) violated("row larger than the tensor");
        row.resize(n);
        dequantize_row(t.type, p, row.data(), static_cast<int64_t>(n));
    }
    (void)sink;
}

void round_trip(const GgufFile& f) {
    GgufWriter w;
    if (f.alignment() != 32) w.set_alignment(static_cast<uint32_t>(f.alignment()));
    for (const auto& kv : f.metadata()) w.set_value(kv.first, kv.second);
    for (const auto& t : f.tensors()) {
        const std::vector<uint64_t> ne(t.ne, t.ne + std::max<uint32_t>(t.n_dims, 1));
        w.add_tensor(t.name, t.type, ne, f.tensor_data(t), static_cast<size_t>(t.bytes));
    }
    const std::vector<uint8_t> bytes = w.to_bytes();
    std::unique_ptr<GgufFile> g;
    try {
        g = GgufFile::from_memory(bytes.data(), bytes.size(), false);
    } catch (const kv::Error& e) {
        std::fprintf(stderr, "re-read failed: %s\n", e.what());
        violated("the writer's output of an accepted file does not parse");
    }
    if (g->metadata().size() != f.metadata().size()) violated("round trip changed the key count");
    for (const auto& kv : f.metadata()) {
        const GgufValue* v = g->find(kv.first);
        if (!v || !same_value(*v, kv.second)) violated("round trip changed a value");
    }
    if (g->tensors().size() != f.tensors().size()) violated("round trip changed the tensor count");
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const GgufTensorInfo& a = f.tensors()[i];
        const GgufTensorInfo& b = g->tensors()[i];
        if (a.name != b.name || a.type != b.type || a.bytes != b.bytes ||
            std::memcmp(a.ne, b.ne, sizeof a.ne) != 0)
            violated("round trip changed a tensor info");
        if (a.bytes &&
            std::memcmp(f.tensor_data(a), g->tensor_data(b), static_cast<size_t>(a.bytes)) != 0)
            violated("round trip changed tensor data");
    }
}

void expect_shape(const GgufTensorInfo* t, std::vector<uint64_t> shape, const char* what) {
    if (!t) violated(what);
    for (size_t d = 0; d < 4; ++d)
        if (t->ne[d] != (d < shape.size() ? shape[d] : 1)) violated(what);
    const TypeTraits* tt = type_traits(t->type);
    if (!tt || !tt->supported) violated("accepted a tensor kvulkan cannot dequantize");
}

bool finite_positive(float x) { return std::isfinite(x) && x > 0; }

// What describe_model promises of a model it accepts (src/model/arch.h).
void check_model(const GgufFile& f) {
    ModelDesc d;
    try {
        d = describe_model(f);
    } catch (const kv::Error& e) {
        if (e.status() != KV_ERR_BAD_MODEL && e.status() != KV_ERR_UNSUPPORTED)
            violated("describe_model rejected with a status other than BAD_MODEL/UNSUPPORTED");
        if (std::strlen(e.what()) == 0) violated("describe_model rejected without a message");
        return;
    }
    const ModelConfig& c = d.config;
    const uint32_t i32max = 0x7FFFFFFF;
    for (uint32_t v : {c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_ctx_train})
        if (v == 0 || v > i32max) violated("a dimension is 0 or beyond int32");
    if (c.n_head % c.n_head_kv != 0) violated("n_head is not a multiple of n_head_kv");
    if (uint64_t(c.n_head) * c.head_dim > i32max) violated("n_head x head_dim beyond int32");
    if (c.n_rot > c.head_dim || c.n_rot % 2 != 0) violated("n_rot odd or above head_dim");
    if (!finite_positive(c.rope_freq_base)) violated("rope_freq_base not finite and positive");
    if (!finite_positive(c.rope_freq_scale)) violated("rope_freq_scale not finite and positive");
    if (!finite_positive(c.rms_eps)) violated("rms_eps not finite and positive");
    if (c.sliding_window.size() != c.n_layer) violated("sliding_window is not one entry per layer");
    for (uint32_t w : c.sliding_window)
        if (w > i32max) violated("sliding window beyond int32");

    const ModelTensors& t = d.tensors;
    const uint64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
    expect_shape(t.token_embd, {E, V}, "token_embd shape");
    expect_shape(t.output_norm, {E}, "output_norm shape");
    expect_shape(t.output, {E, V}, "output shape");
    if (c.tied_output != (t.output == t.token_embd)) violated("tied_output disagrees with the tensors");
    if (c.has_rope_freqs != (t.rope_freqs != nullptr)) violated("has_rope_freqs disagrees");
    if (t.rope_freqs) expect_shape(t.rope_freqs, {c.n_rot / 2}, "rope_freqs shape");
    if (t.layers.size() != c.n_layer) violated("not one LayerTensors per layer");
    for (const LayerTensors& L : t.layers) {
        expect_shape(L.attn_norm, {E}, "attn_norm shape");
        expect_shape(L.wq, {E, Q}, "attn_q shape");
        expect_shape(L.wk, {E, KV}, "attn_k shape");
        expect_shape(L.wv, {E, KV}, "attn_v shape");
        expect_shape(L.wo, {Q, E}, "attn_output shape");
        expect_shape(L.ffn_norm, {E}, "ffn_norm shape");
        expect_shape(L.ffn_gate, {E, F}, "ffn_gate shape");
        expect_shape(L.ffn_up, {E, F}, "ffn_up shape");
        expect_shape(L.ffn_down, {F, E}, "ffn_down shape");
        if ((L.bq != nullptr) != c.has_qkv_bias || (L.bk != nullptr) != c.has_qkv_bias ||
            (L.bv != nullptr) != c.has_qkv_bias || (L.bo != nullptr) != c.has_o_bias)
            violated("biases differ between layers or from the config");
        if (L.bq) expect_shape(L.bq, {Q}, "attn_q.bias shape");
        if (L.bk) expect_shape(L.bk, {KV}, "attn_k.bias shape");
        if (L.bv) expect_shape(L.bv, {KV}, "attn_v.bias shape");
        if (L.bo) expect_shape(L.bo, {E}, "attn_output.bias shape");
    }
    if (c.arch == Arch::Qwen2 && !c.has_qkv_bias) violated("qwen2 accepted without Q/K/V biases");
    if (c.weight_bytes > f.file_size()) violated("more weight bytes than the file holds");
    (void)c.summary();  // formats every field
    (void)c.weight_types_summary();
}

// Valid tiny models of each supported variant, small enough for -max_len.
void write_seeds(const char* dir) {
    std::vector<std::pair<std::string, kvtest::TinySpec>> specs;
    kvtest::TinySpec base;
    base.n_vocab = 8, base.n_embd = 8, base.n_layer = 1, base.n_head = 2, base.n_head_kv = 1, base.n_ff = 8;
    base.n_ctx = 16;
    specs.push_back({"llama", base});
    kvtest::TinySpec q = base;
    q.arch = "qwen2";
    q.rope_base = 1e6f;
    specs.push_back({"qwen2", q});
    kvtest::TinySpec v = base;
    v.n_layer = 2, v.tied = true, v.rope_freqs = true, v.n_rot = 2, v.sliding_window = 4;
    v.string_keys = {{"llama.rope.scaling.type", "linear"}};
    v.f32_keys = {{"llama.rope.scaling.factor", 2.f}};
    specs.push_back({"llama-tied-ropefreqs-window-scaled", v});
    kvtest::TinySpec h = base;
    h.type = GgmlType::F16;
    h.qkv_bias = true;
    specs.push_back({"llama-f16-bias", h});
    kvtest::TinySpec q8 = base;
    q8.n_embd = 32, q8.n_ff = 32, q8.n_vocab = 4, q8.type = GgmlType::Q8_0;
    specs.push_back({"llama-q8_0", q8});
    for (const auto& [name, spec] : specs) {
        const std::vector<uint8_t> bytes = kvtest::build_tiny_model(spec);
        const std::string path = std::string(dir) + "/tiny-" + name + ".gguf";
        if (FILE* out = std::fopen(path.c_str(), "wb")) {
            std::fwrite(bytes.data(), 1, bytes.size(), out);
            std::fclose(out);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("KV_FUZZ_SEED_DIR")) write_seeds(dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::unique_ptr<GgufFile> f;
    try {
        f = GgufFile::from_memory(data, size, false);
    } catch (const kv::Error& e) {
        if (e.status() != KV_ERR_BAD_MODEL && e.status() != KV_ERR_UNSUPPORTED)
            violated("rejected with a status other than BAD_MODEL/UNSUPPORTED");
        if (std::strlen(e.what()) == 0) violated("rejected without a message");
        return 0;
    }
    exercise(*f);
    // Large alignments are valid but make every round trip allocate and clear that much padding.
    if (f->alignment() <= (1u << 20)) round_trip(*f);
    check_model(*f);
    return 0;
}
