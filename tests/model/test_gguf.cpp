// GGUF reader and writer: round trips of every value and tensor type, the shared models, and a
// malformed-file suite built from a valid file (truncations, corrupted counts, lengths, types,
// offsets, alignment, version, magic) plus the checked-in corpus tests/data/gguf_malformed/.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "model/ggml_types.h"
#include "model/gguf.h"

using namespace kv::model;

namespace {

using Bytes = std::vector<uint8_t>;

struct Outcome {
    kv_status status = KV_OK;
    std::string message;
};

// Parses `b` from memory; on success reads every tensor byte and metadata value (so ASan sees any
// out-of-bounds pointer the parser let through). Anything but kv::Error is a test failure.
Outcome try_parse(const Bytes& b, bool copy = false) {
    Outcome o;
    try {
        auto f = GgufFile::from_memory(b.data(), b.size(), copy);
        uint64_t sum = 0;
        for (const auto& t : f->tensors()) {
            const uint8_t* p = f->tensor_data(t);
            for (uint64_t i = 0; i < t.bytes; i += 7) sum += p[i];
            if (t.bytes) sum += p[t.bytes - 1];
        }
        std::function<void(const GgufValue&)> walk = [&](const GgufValue& v) {
            for (char c : v.s) sum += static_cast<uint8_t>(c);
            for (const auto& e : v.array) walk(e);
        };
        for (const auto& kv : f->metadata()) walk(kv.second);
        CHECK(f->data_offset() <= f->file_size());
        (void)sum;
    } catch (const kv::Error& e) {
        o.status = e.status();
        o.message = e.what();
    } catch (const std::exception& e) {
        FAIL("unexpected exception type: " << e.what());
    }
    return o;
}

#define EXPECT_REJECTED(bytes, want_status, what)                                     \
    do {                                                                              \
        const Outcome o_ = try_parse(bytes);                                          \
        CHECK_MESSAGE(o_.status == (want_status),                                     \
                      what << ": status " << o_.status << " (" << o_.message << ")"); \
        CHECK_MESSAGE(o_.message.size() > 10, what);                                  \
    } while (0)

template <typename T>
void put(Bytes& b, size_t at, T v) {
    REQUIRE(at + sizeof(T) <= b.size());
    std::memcpy(b.data() + at, &v, sizeof(T));
}
template <typename T>
T get(const Bytes& b, size_t at) {
    T v;
    std::memcpy(&v, b.data() + at, sizeof(T));
    return v;
}

// Byte offsets of every field of a *valid* file, found by an independent minimal walk.
struct Layout {
    struct Kv {
        std::string key;
        size_t key_len_at, type_at, value_at;
        uint32_t type;
        size_t arr_type_at = 0, arr_count_at = 0;  // ARRAY only
        std::vector<size_t> string_len_at;         // every string length inside the value
    };
    struct Ti {
        std::string name;
        size_t name_len_at, n_dims_at, ne_at[4], type_at, offset_at;
        uint32_t n_dims;
    };
    std::vector<Kv> kvs;
    std::vector<Ti> tis;
    size_t info_end = 0;

    const Kv& kv(const std::string& k) const {
        for (const auto& e : kvs)
            if (e.key == k) return e;
        FAIL("no key " << k);
        return kvs[0];
    }
    const Ti& ti(const std::string& n) const {
        for (const auto& e : tis)
            if (e.name == n) return e;
        FAIL("no tensor " << n);
        return tis[0];
    }
};

Layout layout_of(const Bytes& b) {
    Layout l;
    size_t p = 24;
    const uint64_t n_t = get<uint64_t>(b, 8), n_kv = get<uint64_t>(b, 16);
    std::function<void(uint32_t, Layout::Kv&)> skip = [&](uint32_t t, Layout::Kv& kv) {
        static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        if (t == 8) {
            kv.string_len_at.push_back(p);
            p += 8 + get<uint64_t>(b, p);
        } else if (t == 9) {
            const uint32_t et = get<uint32_t>(b, p);
            const uint64_t n = get<uint64_t>(b, p + 4);
            p += 12;
            for (uint64_t i = 0; i < n; ++i) skip(et, kv);
        } else {
            p += sz[t];
        }
    };
    for (uint64_t i = 0; i < n_kv; ++i) {
        Layout::Kv kv;
        kv.key_len_at = p;
        const uint64_t len = get<uint64_t>(b, p);
        kv.key.assign(reinterpret_cast<const char*>(b.data() + p + 8), len);
        p += 8 + len;
        kv.type_at = p;
        kv.type = get<uint32_t>(b, p);
        p += 4;
        kv.value_at = p;
        if (kv.type == 9) {
            kv.arr_type_at = p;
            kv.arr_count_at = p + 4;
        }
        skip(kv.type, kv);
        l.kvs.push_back(kv);
    }
    for (uint64_t i = 0; i < n_t; ++i) {
        Layout::Ti ti;
        ti.name_len_at = p;
        const uint64_t len = get<uint64_t>(b, p);
        ti.name.assign(reinterpret_cast<const char*>(b.data() + p + 8), len);
        p += 8 + len;
        ti.n_dims_at = p;
        ti.n_dims = get<uint32_t>(b, p);
        p += 4;
        for (uint32_t d = 0; d < ti.n_dims; ++d) {
            ti.ne_at[d] = p;
            p += 8;
        }
        ti.type_at = p;
        p += 4;
        ti.offset_at = p;
        p += 8;
        l.tis.push_back(ti);
    }
    l.info_end = p;
    return l;
}

GgufValue scalar(GgufType t, uint64_t u = 0, int64_t i = 0, double f = 0) {
    GgufValue v;
    v.type = t;
    v.u = u;
    v.i = i;
    v.f = f;
    return v;
}
GgufValue str_value(std::string_view s) {
    GgufValue v;
    v.type = GgufType::STRING;
    v.s = s;
    return v;
}
GgufValue array_of(GgufType et, std::vector<GgufValue> elems) {
    GgufValue v;
    v.type = GgufType::ARRAY;
    v.array_type = et;
    v.array = std::move(elems);
    return v;
}

// The valid file every corruption starts from.
Bytes base_file() {
    GgufWriter w;
    w.set_alignment(32);
    w.set_string("general.architecture", "test");
    w.set_u32("test.aaa", 7);
    w.set_i32("test.aab", -3);
    w.set_string("test.str", "hello");
    w.set_array_i32("test.arr", {1, 2, 3});
    w.set_array_string("test.strs", {"a", "bc", ""});
    w.set_value("test.nested", array_of(GgufType::ARRAY,
                                        {array_of(GgufType::UINT16, {scalar(GgufType::UINT16, 5)}),
                                         array_of(GgufType::UINT16, {})}));
    w.set_f32("test.f32", 1.5f);
    std::vector<float> a(16), b(128), c(4);
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(i);
    for (size_t i = 0; i < b.size(); ++i) b[i] = std::sin(float(i));
    for (size_t i = 0; i < c.size(); ++i) c[i] = -float(i);
    w.add_tensor_f32("t.a", GgmlType::F32, {8, 2}, a.data());
    w.add_tensor_f32("t.b", GgmlType::Q4_0, {64, 2}, b.data());
    w.add_tensor_f32("t.c", GgmlType::F16, {4}, c.data());
    return w.to_bytes();
}

std::string data_dir() {
    const char* env = std::getenv("KV_TEST_DATA_DIR");
    if (env && *env) return env;
    // An absolute path compiled in (__FILE__ is relative under a compiler cache's base_dir).
    return KV_TEST_DATA_DIR_DEFAULT;
}

std::string temp_path(const char* tag) {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp && *tmp ? tmp : "/tmp") + "/kv_test_gguf_" + std::to_string(getpid()) +
           "_" + tag;
}

}  // namespace

// ---- writer -> reader --------------------------------------------------------------------------

TEST_CASE("gguf: every metadata value type round-trips, nested arrays included") {
    GgufWriter w;
    w.set_value("v.u8", scalar(GgufType::UINT8, 250));
    w.set_value("v.i8", scalar(GgufType::INT8, 0, -128));
    w.set_value("v.u16", scalar(GgufType::UINT16, 65535));
    w.set_value("v.i16", scalar(GgufType::INT16, 0, -32768));
    w.set_u32("v.u32", 4000000000u);
    w.set_i32("v.i32", -2000000000);
    w.set_f32("v.f32", -0.125f);
    w.set_bool("v.bool", true);
    w.set_bool("v.false", false);
    const std::string with_nul("a\0b\xff\xce\xbb", 6);
    w.set_string("v.str", with_nul);
    w.set_string("v.empty", "");
    w.set_u64("v.u64", 0xFFFFFFFFFFFFFFFFull);
    w.set_value("v.i64", scalar(GgufType::INT64, 0, INT64_MIN));
    w.set_value("v.f64", scalar(GgufType::FLOAT64, 0, 0, 1e300));
    w.set_array_f32("v.af32", {1.0f, -2.5f, 3e-8f});
    w.set_array_i32("v.ai32", {-1, 0, 2147483647});
    w.set_array_string("v.astr", {"x", "", "hello world"});
    w.set_array_string("v.aempty", {});
    w.set_value("v.au8", array_of(GgufType::UINT8,
                                  {scalar(GgufType::UINT8, 1), scalar(GgufType::UINT8, 255)}));
    w.set_value("v.ai64", array_of(GgufType::INT64, {scalar(GgufType::INT64, 0, -5)}));
    w.set_value("v.abool",
                array_of(GgufType::BOOL, {scalar(GgufType::BOOL, 1), scalar(GgufType::BOOL, 0)}));
    w.set_value("v.af64", array_of(GgufType::FLOAT64, {scalar(GgufType::FLOAT64, 0, 0, -0.5)}));
    // [[["p", "q"], []], [["r"]]]
    w.set_value(
        "v.nested",
        array_of(GgufType::ARRAY,
                 {array_of(GgufType::ARRAY,
                           {array_of(GgufType::STRING, {str_value("p"), str_value("q")}),
                            array_of(GgufType::STRING, {})}),
                  array_of(GgufType::ARRAY, {array_of(GgufType::STRING, {str_value("r")})})}));
    w.set_u32("v.replaced", 1);
    w.set_u32("v.replaced", 2);  // replaces in place
    const Bytes bytes = w.to_bytes();

    auto f = GgufFile::from_memory(bytes.data(), bytes.size(), true);
    CHECK(f->version() == 3);
    CHECK(f->alignment() == 32);
    CHECK(f->tensors().empty());
    REQUIRE(f->metadata().size() == 24);
    CHECK(f->metadata()[0].first == "v.u8");  // file order kept
    CHECK(f->metadata().back().first == "v.replaced");
    CHECK(f->find("v.u8")->type == GgufType::UINT8);
    CHECK(f->find("v.u8")->u == 250);
    CHECK(f->find("v.i8")->i == -128);
    CHECK(f->find("v.u16")->u == 65535);
    CHECK(f->find("v.i16")->i == -32768);
    CHECK(f->find("v.u32")->u == 4000000000u);
    CHECK(f->find("v.i32")->i == -2000000000);
    CHECK(f->find("v.f32")->f == -0.125);
    CHECK(f->find("v.bool")->type == GgufType::BOOL);
    CHECK(*f->get_bool("v.bool") == true);
    CHECK(*f->get_bool("v.false") == false);
    CHECK(*f->get_string("v.str") == with_nul);
    CHECK(f->get_string("v.empty")->empty());
    CHECK(*f->get_uint("v.u64") == 0xFFFFFFFFFFFFFFFFull);
    CHECK(*f->get_int("v.i64") == INT64_MIN);
    CHECK(*f->get_float("v.f64") == 1e300);
    CHECK(*f->get_float_array("v.af32") == std::vector<float>{1.0f, -2.5f, 3e-8f});
    CHECK(*f->get_int_array("v.ai32") == std::vector<int64_t>{-1, 0, 2147483647});
    const auto astr = *f->get_string_array("v.astr");
    REQUIRE(astr.size() == 3);
    CHECK(astr[0] == "x");
    CHECK(astr[1].empty());
    CHECK(astr[2] == "hello world");
    CHECK(f->get_string_array("v.aempty")->empty());
    CHECK(*f->get_int_array("v.au8") == std::vector<int64_t>{1, 255});
    CHECK(*f->get_int_array("v.ai64") == std::vector<int64_t>{-5});
    CHECK(*f->get_int_array("v.abool") == std::vector<int64_t>{1, 0});
    CHECK(*f->get_float_array("v.af64") == std::vector<float>{-0.5f});
    const GgufValue* n = f->find("v.nested");
    REQUIRE(n != nullptr);
    REQUIRE(n->type == GgufType::ARRAY);
    REQUIRE(n->array_type == GgufType::ARRAY);
    REQUIRE(n->array.size() == 2);
    REQUIRE(n->array[0].array.size() == 2);
    CHECK(n->array[0].array_type == GgufType::ARRAY);
    CHECK(n->array[0].array[0].array_type == GgufType::STRING);
    CHECK(n->array[0].array[0].array[1].s == "q");
    CHECK(n->array[0].array[1].array.empty());
    CHECK(n->array[1].array[0].array[0].s == "r");
    CHECK(*f->get_uint("v.replaced") == 2);

    // Typed getters: absent -> nullopt; integers convert when in range; wrong types throw.
    CHECK_FALSE(f->get_uint("nope").has_value());
    CHECK_FALSE(f->get_string_array("nope").has_value());
    CHECK(*f->get_int("v.u32") == 4000000000ll);
    CHECK_THROWS_AS(f->get_uint("v.i16"), kv::Error);  // negative
}

TEST_CASE("gguf: typed getters reject incompatible types with the key in the message") {
    GgufWriter w;
    w.set_i32("neg", -1);
    w.set_u64("big", 0xFFFFFFFFFFFFFFFFull);
    w.set_f32("flt", 2.0f);
    w.set_string("str", "s");
    w.set_array_string("strs", {"a"});
    w.set_array_f32("flts", {1.0f});
    w.set_u32("u", 3);
    const Bytes b = w.to_bytes();
    auto f = GgufFile::from_memory(b.data(), b.size(), false);
    auto expect_bad = [](const std::function<void()>& fn, const char* key) {
        try {
            fn();
            FAIL("no error for " << key);
        } catch (const kv::Error& e) {
            CHECK(e.status() == KV_ERR_BAD_MODEL);
            CHECK_MESSAGE(std::string(e.what()).find(key) != std::string::npos, e.what());
        }
    };
    expect_bad([&] { f->get_uint("neg"); }, "neg");
    expect_bad([&] { f->get_int("big"); }, "big");
    expect_bad([&] { f->get_uint("flt"); }, "flt");
    expect_bad([&] { f->get_int("str"); }, "str");
    expect_bad([&] { f->get_string("u"); }, "u");
    expect_bad([&] { f->get_float("str"); }, "str");
    expect_bad([&] { f->get_bool("flt"); }, "flt");
    expect_bad([&] { f->get_string_array("flts"); }, "flts");
    expect_bad([&] { f->get_float_array("strs"); }, "strs");
    expect_bad([&] { f->get_int_array("flts"); }, "flts");
    expect_bad([&] { f->get_string_array("str"); }, "str");
    CHECK(*f->get_float("u") == 3.0);
    CHECK(*f->get_int("neg") == -1);
    CHECK(*f->get_float("neg") == -1.0);
    CHECK(*f->get_bool("u") == true);
    CHECK(*f->get_float_array("flts") == std::vector<float>{1.0f});
}

TEST_CASE("gguf: tensors of every type, shape and alignment round-trip") {
    const uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    for (uint32_t alignment : {1u, 8u, 32u, 64u, 4096u}) {
        CAPTURE(alignment);
        GgufWriter w;
        if (alignment != 32) w.set_alignment(alignment);
        w.set_string("general.architecture", "test");
        struct Want {
            std::string name;
            GgmlType type;
            std::vector<uint64_t> ne;
            Bytes data;
        };
        std::vector<Want> want;
        int k = 0;
        for (uint32_t id = 0; id < 64; ++id) {
            const TypeTraits* tt = type_traits(id);
            if (!tt) continue;
            std::vector<uint64_t> ne;
            const size_t nd = 1 + (k++ % 4);
            ne.push_back(tt->block_size * (1 + rng() % 3));
            for (size_t d = 1; d < nd; ++d) ne.push_back(1 + rng() % 3);
            Want t{std::string("tensor.") + tt->name, static_cast<GgmlType>(id), ne, {}};
            uint64_t bytes = row_bytes(t.type, ne[0]);
            for (size_t d = 1; d < nd; ++d) bytes *= ne[d];
            t.data.resize(bytes);
            for (auto& x : t.data) x = static_cast<uint8_t>(rng());
            w.add_tensor(t.name, t.type, t.ne, t.data.data(), t.data.size());
            want.push_back(std::move(t));
        }
        want.push_back({"empty", GgmlType::F32, {0, 5}, {}});
        w.add_tensor("empty", GgmlType::F32, {0, 5}, nullptr, 0);
        const Bytes bytes = w.to_bytes();
        auto f = GgufFile::from_memory(bytes.data(), bytes.size(), false);
        CHECK(f->alignment() == alignment);
        CHECK(f->data_offset() % alignment == 0);
        REQUIRE(f->tensors().size() == want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            const GgufTensorInfo& t = f->tensors()[i];
            CAPTURE(want[i].name);
            CHECK(t.name == want[i].name);
            CHECK(t.type == want[i].type);
            CHECK(t.n_dims == want[i].ne.size());
            for (size_t d = 0; d < 4; ++d)
                CHECK(t.ne[d] == (d < want[i].ne.size() ? want[i].ne[d] : 1));
            CHECK(t.offset % alignment == 0);
            REQUIRE(t.bytes == want[i].data.size());
            CHECK((t.bytes == 0 ||
                   std::memcmp(f->tensor_data(t), want[i].data.data(), t.bytes) == 0));
            CHECK(f->find_tensor(want[i].name) == &t);
        }
        CHECK(f->find_tensor("nope") == nullptr);
    }
}

TEST_CASE("gguf: add_tensor_f32 converts and quantizes") {
    const uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    const auto x = kvtest::random_floats(64 * 3, seed);
    GgufWriter w;
    for (GgmlType t :
         {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0})
        w.add_tensor_f32(type_traits(t)->name, t, {64, 3}, x.data());
    const Bytes b = w.to_bytes();
    auto f = GgufFile::from_memory(b.data(), b.size(), false);
    for (GgmlType t :
         {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        const GgufTensorInfo* ti = f->find_tensor(type_traits(t)->name);
        REQUIRE(ti != nullptr);
        CHECK(ti->type == t);
        Bytes q(row_bytes(t, x.size()));
        quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
        REQUIRE(ti->bytes == q.size());
        CHECK(std::memcmp(f->tensor_data(*ti), q.data(), q.size()) == 0);
        std::vector<float> y(x.size());
        dequantize_row(t, f->tensor_data(*ti), y.data(), static_cast<int64_t>(y.size()));
        CHECK(kvtest::rel_l2(y, x) < 0.12);
    }
    GgufWriter w2;
    CHECK_THROWS_AS(w2.add_tensor_f32("q", GgmlType::Q4_K, {256}, x.data()), kv::Error);
}

TEST_CASE("gguf: writer rejects bad input") {
    GgufWriter w;
    float x[64] = {};
    uint8_t buf[256] = {};
    auto status = [](const std::function<void()>& fn) -> kv_status {
        try {
            fn();
        } catch (const kv::Error& e) {
            return e.status();
        }
        return KV_OK;
    };
    CHECK(status([&] { w.set_alignment(0); }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.set_alignment(48); }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.set_alignment(1u << 25); }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.add_tensor("a", GgmlType::F32, {4}, buf, 15); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.add_tensor("a", GgmlType::Q8_0, {33}, buf, 34); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.add_tensor("a", GgmlType::F32, {}, buf, 4); }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] {
              w.add_tensor("a", GgmlType::F32, {1, 1, 1, 1, 1}, buf, 4);
          }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.add_tensor("a", static_cast<GgmlType>(4), {1}, buf, 4); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.add_tensor("a", GgmlType::F32, {4}, buf, 16); }) == KV_OK);
    CHECK(status([&] { w.add_tensor("a", GgmlType::F32, {4}, buf, 16); }) ==
          KV_ERR_INVALID_ARGUMENT);  // dup
    CHECK(status([&] { w.add_tensor_f32("b", GgmlType::Q4_0, {48}, x); }) ==
          KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] {
              w.set_value("bad", array_of(GgufType::UINT8, {scalar(GgufType::INT8)}));
          }) == KV_ERR_INVALID_ARGUMENT);
    CHECK(status([&] { w.write("/nonexistent-dir/x.gguf"); }) == KV_ERR_IO);
}

TEST_CASE("gguf: write to a file and open it, and open errors") {
    GgufWriter w;
    w.set_string("general.architecture", "test");
    const float x[4] = {1, 2, 3, 4};
    w.add_tensor_f32("x", GgmlType::F32, {4}, x);
    const std::string path = temp_path("rt.gguf");
    w.write(path);
    {
        auto f = GgufFile::open(path);
        REQUIRE(f->tensors().size() == 1);
        CHECK(std::memcmp(f->tensor_data(f->tensors()[0]), x, 16) == 0);
        CHECK(*f->get_string("general.architecture") == "test");
        CHECK(f->file_size() == w.to_bytes().size());
    }
    std::remove(path.c_str());
    try {
        GgufFile::open(path);
        FAIL("opened a missing file");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_IO);
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
    try {
        GgufFile::open("/");
        FAIL("opened a directory");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_IO);
    }
    // An empty file is a bad model, not an I/O error; the path is in the message.
    const std::string empty = temp_path("empty.gguf");
    std::fclose(std::fopen(empty.c_str(), "wb"));
    try {
        GgufFile::open(empty);
        FAIL("opened an empty file");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_BAD_MODEL);
        CHECK(std::string(e.what()).find(empty) != std::string::npos);
    }
    std::remove(empty.c_str());
}

TEST_CASE("gguf: from_memory copies when asked") {
    Bytes b = base_file();
    auto copied = GgufFile::from_memory(b.data(), b.size(), true);
    auto borrowed = GgufFile::from_memory(b.data(), b.size(), false);
    std::fill(b.begin(), b.end(), 0);
    CHECK(*copied->get_string("test.str") == "hello");
    CHECK(borrowed->tensor_data(borrowed->tensors()[0]) == b.data() + borrowed->data_offset());
    CHECK_THROWS_AS(GgufFile::from_memory(nullptr, 10, false), kv::Error);
}

// ---- the shared models -------------------------------------------------------------------------

TEST_CASE("gguf: the shared models parse with known facts") {
    if (!kvtest::require_shared()) return;
    const std::string s = kvtest::shared_dir() + "/models/";
    for (const std::string name :
         {"stories260K/stories260K.gguf", "stories260K/stories260K-ggml-org.gguf"}) {
        CAPTURE(name);
        auto f = GgufFile::open(s + name);
        CHECK(f->version() == 3);
        CHECK(f->tensors().size() == 48);
        CHECK(f->metadata().size() == 19);
        CHECK(*f->get_string("general.architecture") == "llama");
        CHECK(*f->get_uint("llama.block_count") == 5);
        CHECK(*f->get_uint("llama.embedding_length") == 64);
        CHECK(*f->get_uint("llama.feed_forward_length") == 172);
        CHECK(*f->get_uint("llama.attention.head_count") == 8);
        CHECK(*f->get_uint("llama.attention.head_count_kv") == 4);
        CHECK(*f->get_uint("llama.context_length") ==
              (name.find("ggml-org") != std::string::npos ? 2048u : 128u));
        CHECK(*f->get_float("llama.attention.layer_norm_rms_epsilon") == doctest::Approx(1e-5));
        CHECK(*f->get_string("tokenizer.ggml.model") == "llama");
        const auto tokens = *f->get_string_array("tokenizer.ggml.tokens");
        REQUIRE(tokens.size() == 512);
        CHECK(tokens[0] == "<unk>");
        CHECK(tokens[3] == "<0x00>");
        CHECK(f->get_float_array("tokenizer.ggml.scores")->size() == 512);
        CHECK(f->get_int_array("tokenizer.ggml.token_type")->size() == 512);
        const GgufTensorInfo* e = f->find_tensor("token_embd.weight");
        REQUIRE(e != nullptr);
        CHECK(e->type == GgmlType::F32);
        CHECK(e->n_dims == 2);
        CHECK(e->ne[0] == 64);
        CHECK(e->ne[1] == 512);
        CHECK(e->bytes == 64 * 512 * 4);
        uint64_t params = 0;
        for (const auto& t : f->tensors()) params += t.elements();
        CHECK(params == 292800);  // dim 64, hidden 172, 5 layers, kv_dim 32, vocab 512, untied
        // The weights equal the llama2.c checkpoint's (token embedding first, after its 28-byte
        // header).
        const std::string bin = s + "stories260K/stories260K.bin";
        if (kvtest::file_exists(bin)) {
            const auto raw = kvtest::read_file(bin);
            REQUIRE(raw.size() > 28 + e->bytes);
            CHECK(std::memcmp(raw.data() + 28, f->tensor_data(*e), e->bytes) == 0);
        }
    }
    {
        auto f = GgufFile::open(s + "llama-2-tiny-random/llama-2-tiny-random.gguf");
        CHECK(f->tensors().size() == 12);
        CHECK(*f->get_string("general.name") == "LLaMA v2");
        CHECK(f->get_string_array("tokenizer.ggml.tokens")->size() == 32000);
        CHECK(f->find_tensor("token_embd.weight")->type == GgmlType::F16);
        CHECK(f->find_tensor("blk.0.attn_norm.weight")->type == GgmlType::F32);
    }
    for (const std::string v : {"llama-spm", "phi-3", "gpt-2", "deepseek-coder", "refact"}) {
        CAPTURE(v);
        auto f = GgufFile::open(s + "vocab/ggml-vocab-" + v + ".gguf");
        CHECK(f->tensors().empty());
        CHECK(f->data_offset() <= f->file_size());
        CHECK(f->get_string_array("tokenizer.ggml.tokens")->size() > 30000);
    }
}

TEST_CASE("gguf: re-writing a shared model reproduces it byte for byte") {
    if (!kvtest::require_shared()) return;
    for (const std::string name :
         {"stories260K/stories260K.gguf", "llama-2-tiny-random/llama-2-tiny-random.gguf",
          "fixtures/llama-gqa.q4_k_m.gguf", "vocab/ggml-vocab-gpt-2.gguf"}) {
        CAPTURE(name);
        const auto orig = kvtest::read_file(kvtest::shared_dir() + "/models/" + name);
        auto f = GgufFile::from_memory(orig.data(), orig.size(), false);
        GgufWriter w;
        for (const auto& kv : f->metadata()) w.set_value(kv.first, kv.second);
        for (const auto& t : f->tensors())
            w.add_tensor(t.name, t.type, std::vector<uint64_t>(t.ne, t.ne + t.n_dims),
                         f->tensor_data(t), t.bytes);
        Bytes out = w.to_bytes();
        if (f->tensors().empty())
            out.resize(std::min(out.size(), orig.size()));  // no trailing padding there
        CHECK(out.size() == orig.size());
        CHECK(out == orig);
    }
}

// ---- malformed files ---------------------------------------------------------------------------

TEST_CASE("gguf malformed: every truncation of a valid file is rejected") {
    const Bytes base = base_file();
    REQUIRE(try_parse(base).status == KV_OK);
    auto f = GgufFile::from_memory(base.data(), base.size(), false);
    uint64_t need = f->data_offset();
    for (const auto& t : f->tensors()) need = std::max(need, f->data_offset() + t.offset + t.bytes);
    for (size_t n = 0; n <= base.size(); ++n) {
        CAPTURE(n);
        const Bytes cut(base.begin(), base.begin() + static_cast<long>(n));
        const Outcome o = try_parse(cut);
        if (n < need) {
            REQUIRE_MESSAGE(o.status == KV_ERR_BAD_MODEL, o.message);
            REQUIRE(o.message.find("GGUF") != std::string::npos);
        } else {
            REQUIRE_MESSAGE(o.status == KV_OK, o.message);  // only trailing padding was cut
        }
    }
    // Messages say what was cut and where.
    const Bytes header_only(base.begin(), base.begin() + 20);
    CHECK(try_parse(header_only).message.find("truncated") != std::string::npos);
    const Bytes no_data(base.begin(), base.begin() + static_cast<long>(f->data_offset() + 8));
    const Outcome o = try_parse(no_data);
    CHECK(o.message.find("t.") != std::string::npos);  // names the tensor
}

TEST_CASE("gguf malformed: truncations of the shared models are rejected") {
    if (!kvtest::require_shared()) return;
    for (const std::string name :
         {"stories260K/stories260K.gguf", "llama-2-tiny-random/llama-2-tiny-random.gguf"}) {
        CAPTURE(name);
        const auto orig = kvtest::read_file(kvtest::shared_dir() + "/models/" + name);
        auto f = GgufFile::from_memory(orig.data(), orig.size(), false);
        uint64_t need = 0;
        for (const auto& t : f->tensors())
            need = std::max(need, f->data_offset() + t.offset + t.bytes);
        std::vector<size_t> cuts;
        for (size_t n = 0; n < std::min<size_t>(f->data_offset() + 64, orig.size());
             n += (n < 4096 ? 1 : 97))
            cuts.push_back(n);
        for (size_t n = f->data_offset(); n < orig.size(); n += 4099) cuts.push_back(n);
        cuts.push_back(need - 1);
        for (size_t n : cuts) {
            const Bytes cut(orig.begin(), orig.begin() + static_cast<long>(n));
            const Outcome o = try_parse(cut);
            REQUIRE_MESSAGE(o.status == KV_ERR_BAD_MODEL, "cut at " << n << ": " << o.message);
        }
    }
}

TEST_CASE("gguf malformed: corrupted header, counts, lengths, types, offsets and alignment") {
    const Bytes base = base_file();
    const Layout l = layout_of(base);
    REQUIRE(l.kvs.size() == 9);
    REQUIRE(l.tis.size() == 3);
    auto with = [&](const std::function<void(Bytes&)>& edit) {
        Bytes b = base;
        edit(b);
        return b;
    };
    const uint64_t huge[] = {0xFFFFFFFFFFFFFFFFull, 0x8000000000000000ull, 0x7FFFFFFFFFFFFFFFull,
                             uint64_t(1) << 40, base.size()};

    // Magic and version.
    for (size_t i = 0; i < 4; ++i)
        EXPECT_REJECTED(with([&](Bytes& b) { b[i] ^= 0x20; }), KV_ERR_BAD_MODEL,
                        "magic byte " << i);
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, 4, 0); }), KV_ERR_BAD_MODEL, "version 0");
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, 4, 0xFFFFFFFFu); }), KV_ERR_BAD_MODEL,
                    "version ~0");
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, 4, 1); }), KV_ERR_UNSUPPORTED,
                    "version 1");
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, 4, 4); }), KV_ERR_UNSUPPORTED,
                    "version 4");
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, 4, 0x03000000u); }), KV_ERR_UNSUPPORTED,
                    "big-endian");
    CHECK(try_parse(with([&](Bytes& b) { put<uint32_t>(b, 4, 2); })).status ==
          KV_OK);  // v2 is the same layout

    // Counts.
    for (uint64_t h : huge) {
        EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, 8, h); }), KV_ERR_BAD_MODEL,
                        "n_tensors " << h);
        EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, 16, h); }), KV_ERR_BAD_MODEL,
                        "n_kv " << h);
    }
    const Outcome more_tensors = try_parse(with([&](Bytes& b) { put<uint64_t>(b, 8, 4); }));
    CHECK(more_tensors.status == KV_ERR_BAD_MODEL);  // the 4th info would be read from padding/data
    for (uint64_t n :
         {uint64_t(0), uint64_t(2), uint64_t(10)}) {  // fewer/more: garbage, never a crash
        const Outcome o = try_parse(with([&](Bytes& b) { put<uint64_t>(b, 16, n); }));
        CHECK((o.status == KV_OK || o.status == KV_ERR_BAD_MODEL));
    }

    // Every string length (keys, string values, array strings, tensor names).
    std::vector<size_t> lens;
    for (const auto& kv : l.kvs) {
        lens.push_back(kv.key_len_at);
        lens.insert(lens.end(), kv.string_len_at.begin(), kv.string_len_at.end());
    }
    for (const auto& ti : l.tis) lens.push_back(ti.name_len_at);
    for (size_t at : lens) {
        for (uint64_t h : huge)
            EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, at, h); }), KV_ERR_BAD_MODEL,
                            "string length at " << at << " = " << h);
        for (int64_t d : {-1, 1, 7}) {  // off by a little: misparse, never a crash
            const Outcome o =
                try_parse(with([&](Bytes& b) { put<uint64_t>(b, at, get<uint64_t>(b, at) + d); }));
            CHECK((o.status == KV_OK || o.status == KV_ERR_BAD_MODEL ||
                   o.status == KV_ERR_UNSUPPORTED));
        }
    }

    // Value types and arrays.
    for (const auto& kv : l.kvs) {
        CAPTURE(kv.key);
        for (uint32_t t : {13u, 100u, 0xFFFFFFFFu})
            EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, kv.type_at, t); }),
                            KV_ERR_BAD_MODEL, "type " << t);
        for (uint32_t t = 0; t <= 12; ++t) {  // another valid type: misparse, never a crash
            const Outcome o = try_parse(with([&](Bytes& b) { put<uint32_t>(b, kv.type_at, t); }));
            CHECK((o.status == KV_OK || o.status == KV_ERR_BAD_MODEL));
        }
        if (kv.type == 9) {
            EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, kv.arr_type_at, 13); }),
                            KV_ERR_BAD_MODEL, "array type");
            for (uint64_t h : huge)
                EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, kv.arr_count_at, h); }),
                                KV_ERR_BAD_MODEL, "array count " << h);
        }
    }
    {
        const Outcome o = try_parse(
            with([&](Bytes& b) { put<uint64_t>(b, l.kv("test.strs").arr_count_at, 1u << 30); }));
        CHECK(o.message.find("test.strs") != std::string::npos);
    }

    // Duplicate key / tensor name (same-length names in the base file).
    {
        const auto& a = l.kv("test.aaa");
        const auto& b2 = l.kv("test.aab");
        const Bytes d = with([&](Bytes& b) { b[b2.key_len_at + 8 + 7] = 'a'; });
        EXPECT_REJECTED(d, KV_ERR_BAD_MODEL, "duplicate key");
        CHECK(try_parse(d).message.find("test.aaa") != std::string::npos);
        (void)a;
        const Bytes dt = with([&](Bytes& b) { b[l.ti("t.b").name_len_at + 8 + 2] = 'a'; });
        EXPECT_REJECTED(dt, KV_ERR_BAD_MODEL, "duplicate tensor");
        CHECK(try_parse(dt).message.find("t.a") != std::string::npos);
    }

    // Tensor infos.
    for (const auto& ti : l.tis) {
        CAPTURE(ti.name);
        for (uint32_t nd : {5u, 100u, 0xFFFFFFFFu})
            EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, ti.n_dims_at, nd); }),
                            KV_ERR_BAD_MODEL, "n_dims " << nd);
        for (uint64_t h : huge)
            EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, ti.ne_at[0], h); }),
                            KV_ERR_BAD_MODEL, "ne0 " << h);
        if (ti.n_dims >= 2) {
            // 2^32 x 2^32 elements: element count overflows.
            const Bytes o = with([&](Bytes& b) {
                put<uint64_t>(b, ti.ne_at[0], uint64_t(1) << 32);
                put<uint64_t>(b, ti.ne_at[1], uint64_t(1) << 32);
            });
            EXPECT_REJECTED(o, KV_ERR_BAD_MODEL, "element overflow");
            CHECK(try_parse(o).message.find(ti.name) != std::string::npos);
            EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, ti.ne_at[1], 1000); }),
                            KV_ERR_BAD_MODEL, "data past the end");
        }
        for (uint32_t t : {4u, 5u, 31u, 40u, 1000u, 0xFFFFFFFFu}) {
            const Bytes o = with([&](Bytes& b) { put<uint32_t>(b, ti.type_at, t); });
            EXPECT_REJECTED(o, KV_ERR_BAD_MODEL, "tensor type " << t);
            CHECK(try_parse(o).message.find(ti.name) != std::string::npos);
        }
        for (uint64_t h : huge)
            EXPECT_REJECTED(
                with([&](Bytes& b) { put<uint64_t>(b, ti.offset_at, h & ~uint64_t(31)); }),
                KV_ERR_BAD_MODEL, "offset " << h);
        const uint64_t off = get<uint64_t>(base, ti.offset_at);
        EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, ti.offset_at, off + 1); }),
                        KV_ERR_BAD_MODEL, "misaligned offset");
        EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, ti.offset_at, off + 16); }),
                        KV_ERR_BAD_MODEL, "misaligned offset");
    }
    // Q4_0 tensor: row length not a multiple of 32.
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint64_t>(b, l.ti("t.b").ne_at[0], 48); }),
                    KV_ERR_BAD_MODEL, "partial block");
    // A known type kvulkan cannot compute with is accepted by the reader (iq4_nl has q4_0's block
    // size).
    {
        const Bytes o = with([&](Bytes& b) { put<uint32_t>(b, l.ti("t.b").type_at, 20); });
        auto f = GgufFile::from_memory(o.data(), o.size(), false);
        CHECK(f->find_tensor("t.b")->type == static_cast<GgmlType>(20));
    }
    // Overlapping tensors: t.c moved onto t.a.
    {
        const Bytes o = with([&](Bytes& b) { put<uint64_t>(b, l.ti("t.c").offset_at, 0); });
        EXPECT_REJECTED(o, KV_ERR_BAD_MODEL, "overlap");
        CHECK(try_parse(o).message.find("overlaps") != std::string::npos);
    }
    // n_dims 0 is a scalar (1 element): the rest of the info is then misread, never a crash.
    {
        const Outcome o =
            try_parse(with([&](Bytes& b) { put<uint32_t>(b, l.ti("t.a").n_dims_at, 0); }));
        CHECK((o.status == KV_OK || o.status == KV_ERR_BAD_MODEL));
    }

    // general.alignment.
    const auto& al = l.kv("general.alignment");
    REQUIRE(al.type == 4);
    for (uint32_t a : {0u, 3u, 48u, 0x80000000u})
        EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, al.value_at, a); }), KV_ERR_BAD_MODEL,
                        "alignment " << a);
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, al.type_at, 6); }), KV_ERR_BAD_MODEL,
                    "float alignment");
    EXPECT_REJECTED(with([&](Bytes& b) { put<uint32_t>(b, al.value_at, 64); }), KV_ERR_BAD_MODEL,
                    "alignment 64 (offsets become misaligned)");
    {
        // Alignment 1 is valid, but the data section then starts right after the infos.
        const Outcome o = try_parse(with([&](Bytes& b) { put<uint32_t>(b, al.value_at, 1); }));
        CHECK((o.status == KV_OK || o.status == KV_ERR_BAD_MODEL));
    }
}

TEST_CASE("gguf malformed: hostile structures") {
    auto header = [](uint64_t n_tensors, uint64_t n_kv) {
        Bytes b = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
        b.resize(24);
        std::memcpy(b.data() + 8, &n_tensors, 8);
        std::memcpy(b.data() + 16, &n_kv, 8);
        return b;
    };
    auto app = [](Bytes& b, const void* p, size_t n) {
        b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    auto app_str = [&](Bytes& b, const std::string& s) {
        const uint64_t n = s.size();
        app(b, &n, 8);
        app(b, s.data(), s.size());
    };
    // Arrays nested 100000 deep: rejected by depth, no stack overflow.
    {
        Bytes b = header(0, 1);
        app_str(b, "deep");
        const uint32_t arr = 9;
        app(b, &arr, 4);
        for (int i = 0; i < 100000; ++i) {
            const uint64_t one = 1;
            app(b, &arr, 4);
            app(b, &one, 8);
        }
        EXPECT_REJECTED(b, KV_ERR_BAD_MODEL, "deep nesting");
        CHECK(try_parse(b).message.find("nested") != std::string::npos);
    }
    // More metadata values than the reader's bound, each one byte: rejected before allocating.
    {
        Bytes b = header(0, 1);
        app_str(b, "many");
        const uint32_t arr = 9, u8 = 0;
        const uint64_t n = (uint64_t(1) << 24) + 1;
        app(b, &arr, 4);
        app(b, &u8, 4);
        app(b, &n, 8);
        b.resize(b.size() + n);
        EXPECT_REJECTED(b, KV_ERR_BAD_MODEL, "too many values");
    }
    // Many empty arrays of arrays: each costs 12 bytes, cannot fit a huge count.
    {
        Bytes b = header(0, 1);
        app_str(b, "k");
        const uint32_t arr = 9;
        const uint64_t n = 1000;
        app(b, &arr, 4);
        app(b, &arr, 4);
        app(b, &n, 8);
        b.resize(b.size() + 12 * 999);  // one element short
        EXPECT_REJECTED(b, KV_ERR_BAD_MODEL, "array of arrays too long");
    }
    // A single q8_0 row of nearly 2^63 elements: element count fits int64, data cannot fit the
    // file.
    {
        Bytes b = header(1, 0);
        app_str(b, "t");
        const uint32_t nd = 1;
        const uint64_t ne = 0x7FFFFFFFFFFFFFE0ull;  // multiple of 32, fits int64, bytes overflow
        const uint32_t type = 8;
        const uint64_t off = 0;
        app(b, &nd, 4);
        app(b, &ne, 8);
        app(b, &type, 4);
        app(b, &off, 8);
        b.resize(b.size() + 64);
        EXPECT_REJECTED(b, KV_ERR_BAD_MODEL, "huge row");
    }
    // Empty input and a lone magic.
    EXPECT_REJECTED(Bytes{}, KV_ERR_BAD_MODEL, "empty");
    EXPECT_REJECTED((Bytes{'G', 'G', 'U', 'F'}), KV_ERR_BAD_MODEL, "magic only");
    CHECK(try_parse(header(0, 0)).status == KV_OK);  // no metadata, no tensors: valid
}

TEST_CASE("gguf malformed: random mutations never crash") {
    const Bytes base = base_file();
    const uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 4000; ++iter) {
        Bytes b = base;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const size_t at = rng() % b.size();
            switch (rng() % 4) {
                case 0:
                    b[at] = static_cast<uint8_t>(rng());
                    break;
                case 1:
                    b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
                    break;
                case 2:
                    if (at + 8 <= b.size()) put<uint64_t>(b, at, uint64_t(rng()) << (rng() % 40));
                    break;
                case 3:
                    b.resize(at);
                    break;
            }
            if (b.empty()) break;
        }
        const Outcome o = try_parse(b, (iter & 1) != 0);
        if (o.status == KV_OK) {
            ++ok;
        } else {
            ++bad;
            REQUIRE_MESSAGE((o.status == KV_ERR_BAD_MODEL || o.status == KV_ERR_UNSUPPORTED),
                            o.message);
            REQUIRE(!o.message.empty());
        }
    }
    MESSAGE("random mutations: " << ok << " still valid, " << bad << " rejected");
    CHECK(bad > 0);
}

TEST_CASE("gguf malformed: the checked-in regression corpus") {
    // tests/data/gguf_malformed/<expect>-<what>.gguf, <expect> one of ok, bad_model, unsupported.
    const std::string dir = data_dir() + "/gguf_malformed";
    std::vector<std::string> files;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            const std::string n = e->d_name;
            if (n.size() > 5 && n.compare(n.size() - 5, 5, ".gguf") == 0) files.push_back(n);
        }
        closedir(d);
    }
    std::sort(files.begin(), files.end());
    REQUIRE_MESSAGE(files.size() >= 20, "corpus missing in " << dir);
    int checked = 0;
    for (const auto& n : files) {
        CAPTURE(n);
        const auto bytes = kvtest::read_file(dir + "/" + n);
        const std::string expect = n.substr(0, n.find('-'));
        const Outcome o = try_parse(bytes);
        if (expect == "ok") {
            CHECK_MESSAGE(o.status == KV_OK, o.message);
        } else if (expect == "bad_model") {
            CHECK_MESSAGE(o.status == KV_ERR_BAD_MODEL, o.message);
            CHECK(o.message.size() > 10);
        } else if (expect == "unsupported") {
            CHECK_MESSAGE(o.status == KV_ERR_UNSUPPORTED, o.message);
            CHECK(o.message.size() > 10);
        } else {
            FAIL("corpus file without an expectation prefix: " << n);
        }
        // The same bytes through open() (mmap) give the same outcome.
        Outcome via_file;
        try {
            GgufFile::open(dir + "/" + n);
        } catch (const kv::Error& e) {
            via_file.status = e.status();
        }
        CHECK(via_file.status == o.status);
        ++checked;
    }
    MESSAGE(checked << " corpus files checked");
}
