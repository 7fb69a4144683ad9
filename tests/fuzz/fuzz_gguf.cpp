// libFuzzer target for the GGUF reader (and, for every file it accepts, the writer and the
// dequantizers). Invariants checked beyond "no crash, no sanitizer report":
//   - a rejected file throws kv::Error with KV_ERR_BAD_MODEL or KV_ERR_UNSUPPORTED and a message;
//   - every accepted tensor's bytes lie inside the buffer (ASan sees the reads);
//   - writing an accepted file back with GgufWriter and reading that gives the same content.
// Built by tests/fuzz/CMakeLists.txt (-DKV_BUILD_FUZZERS=ON, clang) or tests/fuzz/run_fuzz.sh.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "model/ggml_types.h"
#include "model/gguf.h"

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

}  // namespace

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
    return 0;
}
