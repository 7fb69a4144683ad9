// GGUF v2/v3 reader (bounds-checked, mmap on POSIX) and v3 writer.
//
// File layout (little-endian):
//   "GGUF" u32 version, u64 n_tensors, u64 n_kv
//   n_kv x { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to `alignment` (general.alignment, default 32), then the data section; tensor
//   offsets are relative to it and multiples of the alignment.
//   string = u64 length + bytes (no terminator); array = u32 elem_type, u64 count, elements.
#include "model/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <unordered_set>

#include "common/error.h"

#if defined(__unix__) || defined(__APPLE__)
#define KV_GGUF_MMAP 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#include <fstream>
#include <iterator>
#endif

namespace kv::model {

namespace {

constexpr uint32_t kMaxArrayDepth = 16;
// Bound on metadata values (array elements included) a file may hold. Each costs a GgufValue
// (~100 bytes) in memory, so this caps what a small hostile file can make us allocate; real
// models hold a few hundred thousand (vocabularies and merges).
constexpr uint64_t kMaxValues = uint64_t(1) << 24;
constexpr uint32_t kMaxDims = 4;
// general.alignment: a power of two up to 16 MiB (real files use 32; page or huge-page
// alignment fits); larger values only serve to make a writer emit gigabytes of padding.
constexpr uint64_t kMaxAlignment = uint64_t(1) << 24;

using ull = unsigned long long;

const char* gguf_type_name(uint32_t t) {
    static const char* const names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                        "int32",  "float32", "bool",   "string", "array",
                                        "uint64", "int64",   "float64"};
    return t < 13 ? names[t] : "invalid";
}

// Smallest encoding of one value of type t (t already validated).
uint64_t min_value_bytes(GgufType t) {
    switch (t) {
        case GgufType::UINT8:
        case GgufType::INT8:
        case GgufType::BOOL:
            return 1;
        case GgufType::UINT16:
        case GgufType::INT16:
            return 2;
        case GgufType::UINT32:
        case GgufType::INT32:
        case GgufType::FLOAT32:
            return 4;
        case GgufType::UINT64:
        case GgufType::INT64:
        case GgufType::FLOAT64:
            return 8;
        case GgufType::STRING:
            return 8;
        case GgufType::ARRAY:
            return 12;
    }
    return 1;
}

// Checked arithmetic on untrusted sizes.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
    *out = a * b;
    return false;
}

// A cursor over the file's bytes; every read checks the bytes that remain.
class Cursor {
public:
    Cursor(const uint8_t* base, uint64_t size) : base_(base), size_(size) {}
    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    void need(uint64_t n, const char* what, const std::string& ctx) const {
        if (n > remaining())
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: truncated file: %s%s%s at byte %llu needs %llu bytes but only %llu remain "
                 "(file is %llu bytes)",
                 what, ctx.empty() ? "" : " of ", ctx.c_str(), ull(pos_), ull(n), ull(remaining()),
                 ull(size_));
    }
    template <typename T>
    T read(const char* what, const std::string& ctx) {
        need(sizeof(T), what, ctx);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string_view str(const char* what, const std::string& ctx) {
        const uint64_t at = pos_;
        const uint64_t len = read<uint64_t>(what, ctx);
        if (len > remaining())
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: %s%s%s at byte %llu has length %llu but only %llu bytes remain in the file",
                 what, ctx.empty() ? "" : " of ", ctx.c_str(), ull(at), ull(len), ull(remaining()));
        std::string_view s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }

private:
    const uint8_t* base_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

std::string printable(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 120)) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7F && c != '\'') {
            out += c;
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        }
    }
    if (s.size() > 120) out += "...";
    return out;
}

struct ValueParser {
    Cursor& cur;
    uint64_t values = 0;

    void count_values(uint64_t n, const std::string& ctx) {
        if (n > kMaxValues - values)
            fail(KV_ERR_BAD_MODEL, "GGUF: %s: more than %llu metadata values in the file",
                 ctx.c_str(), ull(kMaxValues));
        values += n;
    }

    GgufType value_type(const char* what, const std::string& ctx) {
        const uint64_t at = cur.pos();
        const uint32_t t = cur.read<uint32_t>(what, ctx);
        if (t > static_cast<uint32_t>(GgufType::FLOAT64))
            fail(KV_ERR_BAD_MODEL, "GGUF: %s has invalid %s %u at byte %llu", ctx.c_str(), what, t,
                 ull(at));
        return static_cast<GgufType>(t);
    }

    // Reads one value of type t (its type tag already consumed) into v.
    void parse(GgufType t, GgufValue& v, uint32_t depth, const std::string& ctx) {
        v.type = t;
        switch (t) {
            case GgufType::UINT8:
                v.u = cur.read<uint8_t>("uint8 value", ctx);
                return;
            case GgufType::INT8:
                v.i = cur.read<int8_t>("int8 value", ctx);
                return;
            case GgufType::UINT16:
                v.u = cur.read<uint16_t>("uint16 value", ctx);
                return;
            case GgufType::INT16:
                v.i = cur.read<int16_t>("int16 value", ctx);
                return;
            case GgufType::UINT32:
                v.u = cur.read<uint32_t>("uint32 value", ctx);
                return;
            case GgufType::INT32:
                v.i = cur.read<int32_t>("int32 value", ctx);
                return;
            case GgufType::UINT64:
                v.u = cur.read<uint64_t>("uint64 value", ctx);
                return;
            case GgufType::INT64:
                v.i = cur.read<int64_t>("int64 value", ctx);
                return;
            case GgufType::FLOAT32:
                v.f = cur.read<float>("float32 value", ctx);
                return;
            case GgufType::FLOAT64:
                v.f = cur.read<double>("float64 value", ctx);
                return;
            case GgufType::BOOL:
                v.u = cur.read<uint8_t>("bool value", ctx) != 0;
                return;
            case GgufType::STRING:
                v.s = cur.str("string value", ctx);
                return;
            case GgufType::ARRAY:
                break;
        }
        if (depth >= kMaxArrayDepth)
            fail(KV_ERR_BAD_MODEL, "GGUF: %s: arrays nested deeper than %u levels at byte %llu",
                 ctx.c_str(), kMaxArrayDepth, ull(cur.pos()));
        v.array_type = value_type("array element type", ctx);
        const uint64_t at = cur.pos();
        const uint64_t n = cur.read<uint64_t>("array length", ctx);
        const uint64_t min = min_value_bytes(v.array_type);
        if (n > cur.remaining() / min)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: %s: array of %llu %s elements at byte %llu cannot fit in the %llu bytes "
                 "that remain",
                 ctx.c_str(), ull(n), gguf_type_name(static_cast<uint32_t>(v.array_type)), ull(at),
                 ull(cur.remaining()));
        count_values(n, ctx);
        v.array.resize(static_cast<size_t>(n));
        for (auto& e : v.array) parse(v.array_type, e, depth + 1, ctx);
    }
};

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

// ---- GgufValue ---------------------------------------------------------------------------------

namespace {
bool is_integer_type(GgufType type) {
    switch (type) {
        case GgufType::UINT8:
        case GgufType::INT8:
        case GgufType::UINT16:
        case GgufType::INT16:
        case GgufType::UINT32:
        case GgufType::INT32:
        case GgufType::UINT64:
        case GgufType::INT64:
        case GgufType::BOOL:
            return true;
        default:
            return false;
    }
}
}  // namespace

bool GgufValue::is_integer() const { return is_integer_type(type); }

bool GgufValue::is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

namespace {

bool is_signed(GgufType t) {
    return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 ||
           t == GgufType::INT64;
}

std::string key_ctx(std::string_view key) { return "key '" + printable(key) + "'"; }

[[noreturn]] void bad_type(std::string_view key, const GgufValue& v, const char* wanted) {
    if (v.type == GgufType::ARRAY)
        fail(KV_ERR_BAD_MODEL, "GGUF: key '%s' is an array of %s, expected %s",
             printable(key).c_str(), gguf_type_name(static_cast<uint32_t>(v.array_type)), wanted);
    fail(KV_ERR_BAD_MODEL, "GGUF: key '%s' has type %s, expected %s", printable(key).c_str(),
         gguf_type_name(static_cast<uint32_t>(v.type)), wanted);
}

uint64_t as_uint(std::string_view key, const GgufValue& v) {
    if (!v.is_integer()) bad_type(key, v, "an unsigned integer");
    if (is_signed(v.type)) {
        if (v.i < 0)
            fail(KV_ERR_BAD_MODEL, "GGUF: key '%s' is %lld, expected a non-negative integer",
                 printable(key).c_str(), static_cast<long long>(v.i));
        return static_cast<uint64_t>(v.i);
    }
    return v.u;
}

int64_t as_int(std::string_view key, const GgufValue& v) {
    if (!v.is_integer()) bad_type(key, v, "an integer");
    if (is_signed(v.type)) return v.i;
    if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(KV_ERR_BAD_MODEL, "GGUF: key '%s' is %llu, out of range of int64",
             printable(key).c_str(), ull(v.u));
    return static_cast<int64_t>(v.u);
}

double as_float(std::string_view key, const GgufValue& v) {
    if (v.is_float()) return v.f;
    if (v.is_integer())
        return is_signed(v.type) ? static_cast<double>(v.i) : static_cast<double>(v.u);
    bad_type(key, v, "a number");
}

}  // namespace

// ---- GgufFile ----------------------------------------------------------------------------------

GgufFile::~GgufFile() {
#if KV_GGUF_MMAP
    if (map_) munmap(map_, static_cast<size_t>(size_));
#endif
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> f(new GgufFile());
#if KV_GGUF_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(KV_ERR_IO, "cannot open '%s': %s", path.c_str(), std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        fail(KV_ERR_IO, "cannot stat '%s': %s", path.c_str(), std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(KV_ERR_IO, "'%s' is not a regular file", path.c_str());
    }
    f->size_ = static_cast<uint64_t>(st.st_size);
    if (f->size_ > 0) {
        if (f->size_ > std::numeric_limits<size_t>::max()) {
            ::close(fd);
            fail(KV_ERR_IO, "'%s' is too large to map", path.c_str());
        }
        void* m = mmap(nullptr, static_cast<size_t>(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            fail(KV_ERR_IO, "cannot map '%s': %s", path.c_str(), std::strerror(e));
        }
        f->map_ = m;
        f->base_ = static_cast<const uint8_t*>(m);
    }
    ::close(fd);
#else
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(KV_ERR_IO, "cannot open '%s'", path.c_str());
    f->owned_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) fail(KV_ERR_IO, "cannot read '%s'", path.c_str());
    f->base_ = f->owned_.data();
    f->size_ = f->owned_.size();
#endif
    try {
        f->parse();
    } catch (const Error& e) {
        throw Error(e.status(), path + ": " + e.what());
    } catch (const std::bad_alloc&) {
        fail(KV_ERR_OUT_OF_HOST_MEMORY, "%s: out of memory while reading the GGUF metadata",
             path.c_str());
    }
    return f;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const void* data, size_t size, bool copy) {
    if (!data && size)
        fail(KV_ERR_INVALID_ARGUMENT, "GGUF: from_memory given a null buffer of %zu bytes", size);
    std::unique_ptr<GgufFile> f(new GgufFile());
    if (copy) {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        f->owned_.assign(p, p + size);
        f->base_ = f->owned_.data();
    } else {
        f->base_ = static_cast<const uint8_t*>(data);
    }
    f->size_ = size;
    try {
        f->parse();
    } catch (const std::bad_alloc&) {
        fail(KV_ERR_OUT_OF_HOST_MEMORY, "GGUF: out of memory while reading the metadata");
    }
    return f;
}

void GgufFile::parse() {
    Cursor cur(base_, size_);
    const std::string none;

    // Header.
    if (size_ < 4)
        fail(KV_ERR_BAD_MODEL, "GGUF: file is %llu bytes, too small for a GGUF header", ull(size_));
    if (std::memcmp(base_, "GGUF", 4) != 0)
        fail(KV_ERR_BAD_MODEL,
             "GGUF: not a GGUF file (magic bytes %02x %02x %02x %02x, expected \"GGUF\")", base_[0],
             base_[1], base_[2], base_[3]);
    cur.read<uint32_t>("magic", none);
    version_ = cur.read<uint32_t>("version", none);
    if (version_ == 1)
        fail(KV_ERR_UNSUPPORTED,
             "GGUF: version 1 files are not supported (convert it again with a current tool)");
    if (version_ == 0x02000000u || version_ == 0x03000000u)
        fail(KV_ERR_UNSUPPORTED, "GGUF: big-endian GGUF (version field 0x%08x) is not supported",
             version_);
    if (version_ != 2 && version_ != 3) {
        if (version_ > 3 && version_ < 256)
            fail(KV_ERR_UNSUPPORTED,
                 "GGUF: version %u is newer than this reader (supports 2 and 3)", version_);
        fail(KV_ERR_BAD_MODEL, "GGUF: invalid version %u at byte 4", version_);
    }
    const uint64_t n_tensors = cur.read<uint64_t>("tensor count", none);
    const uint64_t n_kv = cur.read<uint64_t>("metadata count", none);
    // Smallest possible metadata entry: empty key (8) + type (4) + uint8 (1); tensor info: empty
    // name (8) + n_dims (4) + type (4) + offset (8).
    if (n_kv > cur.remaining() / 13)
        fail(KV_ERR_BAD_MODEL,
             "GGUF: metadata count %llu at byte 16 cannot fit in the %llu bytes that follow",
             ull(n_kv), ull(cur.remaining()));
    if (n_tensors > cur.remaining() / 24)
        fail(KV_ERR_BAD_MODEL,
             "GGUF: tensor count %llu at byte 8 cannot fit in the %llu bytes that follow",
             ull(n_tensors), ull(cur.remaining()));

    // Metadata.
    ValueParser vp{cur};
    // Counts are only upper bounds checked against the remaining bytes (which include tensor
    // data), so reserve no more than a sane amount up front; entries are added as they parse.
    kv_.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, 4096)));
    std::unordered_set<std::string_view> keys;
    for (uint64_t k = 0; k < n_kv; ++k) {
        const uint64_t at = cur.pos();
        const std::string idx = format("metadata entry %llu", ull(k));
        const std::string_view key = cur.str("key", idx);
        const std::string ctx = key_ctx(key);
        if (!keys.insert(key).second)
            fail(KV_ERR_BAD_MODEL, "GGUF: duplicate metadata key '%s' (entry %llu at byte %llu)",
                 printable(key).c_str(), ull(k), ull(at));
        vp.count_values(1, ctx);
        GgufValue v;
        const GgufType t = vp.value_type("value type", ctx);
        vp.parse(t, v, 0, ctx);
        kv_.emplace_back(std::string(key), std::move(v));
    }

    // Alignment.
    alignment_ = 32;
    if (const GgufValue* a = find("general.alignment")) {
        if (!a->is_integer() || a->type == GgufType::BOOL)
            fail(KV_ERR_BAD_MODEL, "GGUF: general.alignment has type %s, expected uint32",
                 gguf_type_name(static_cast<uint32_t>(a->type)));
        const uint64_t al = as_uint("general.alignment", *a);
        if (al == 0 || (al & (al - 1)) != 0 || al > kMaxAlignment)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: general.alignment is %llu, expected a power of two up to %llu", ull(al),
                 ull(kMaxAlignment));
        alignment_ = al;
    }

    // Tensor infos.
    tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, 4096)));
    std::unordered_set<std::string_view> names;
    for (uint64_t ti = 0; ti < n_tensors; ++ti) {
        const uint64_t at = cur.pos();
        const std::string idx = format("tensor info %llu", ull(ti));
        const std::string_view name = cur.str("name", idx);
        const std::string ctx = "tensor '" + printable(name) + "'";
        if (!names.insert(name).second)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: duplicate tensor name '%s' (tensor info %llu at byte %llu)",
                 printable(name).c_str(), ull(ti), ull(at));
        GgufTensorInfo t;
        t.name = std::string(name);
        t.n_dims = cur.read<uint32_t>("n_dims", ctx);
        if (t.n_dims > kMaxDims)
            fail(KV_ERR_BAD_MODEL, "GGUF: %s has %u dimensions (at most %u supported)", ctx.c_str(),
                 t.n_dims, kMaxDims);
        uint64_t elems = 1;
        bool overflow = false;
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            t.ne[d] = cur.read<uint64_t>("dimension", ctx);
            if (t.ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                overflow = true;
            if (!overflow && mul_overflows(elems, t.ne[d], &elems)) overflow = true;
            if (!overflow && elems > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                overflow = true;
        }
        if (overflow)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: %s has shape [%llu, %llu, %llu, %llu] whose element count overflows",
                 ctx.c_str(), ull(t.ne[0]), ull(t.ne[1]), ull(t.ne[2]), ull(t.ne[3]));
        const uint64_t type_at = cur.pos();
        const uint32_t type = cur.read<uint32_t>("type", ctx);
        const TypeTraits* tt = type_traits(type);
        if (!tt)
            fail(KV_ERR_BAD_MODEL, "GGUF: %s has unknown ggml type id %u (at byte %llu)",
                 ctx.c_str(), type, ull(type_at));
        t.type = static_cast<GgmlType>(type);
        if (t.ne[0] % tt->block_size != 0)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: %s: row length %llu is not a multiple of %s's block size %u", ctx.c_str(),
                 ull(t.ne[0]), tt->name, tt->block_size);
        uint64_t bytes = 0;
        if (mul_overflows(t.ne[0] / tt->block_size, tt->type_size, &bytes) ||
            mul_overflows(bytes, t.ne[1], &bytes) || mul_overflows(bytes, t.ne[2], &bytes) ||
            mul_overflows(bytes, t.ne[3], &bytes))
            fail(KV_ERR_BAD_MODEL, "GGUF: %s: byte size overflows", ctx.c_str());
        t.bytes = bytes;
        const uint64_t off_at = cur.pos();
        t.offset = cur.read<uint64_t>("data offset", ctx);
        if (t.offset % alignment_ != 0)
            fail(
                KV_ERR_BAD_MODEL,
                "GGUF: %s: data offset %llu (at byte %llu) is not a multiple of the alignment %llu",
                ctx.c_str(), ull(t.offset), ull(off_at), ull(alignment_));
        tensors_.push_back(std::move(t));
    }

    // Data section.
    const uint64_t info_end = cur.pos();
    data_offset_ = align_up(info_end, alignment_);  // info_end <= size_ < 2^63, alignment <= 2^24
    if (tensors_.empty()) {
        data_offset_ = std::min(data_offset_, size_);  // vocab-only files may end without padding
        return;
    }
    if (data_offset_ > size_)
        fail(KV_ERR_BAD_MODEL,
             "GGUF: truncated file: the data section starts at byte %llu (tensor infos end at "
             "%llu, alignment "
             "%llu) but the file is %llu bytes",
             ull(data_offset_), ull(info_end), ull(alignment_), ull(size_));
    const uint64_t data_size = size_ - data_offset_;
    std::vector<size_t> order;
    order.reserve(tensors_.size());
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const GgufTensorInfo& t = tensors_[i];
        if (t.offset > data_size || t.bytes > data_size - t.offset)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: tensor '%s' data [%llu, +%llu bytes) at file byte %llu runs past the end "
                 "of the file "
                 "(data section is %llu bytes from byte %llu)",
                 printable(t.name).c_str(), ull(t.offset), ull(t.bytes),
                 ull(data_offset_ + t.offset), ull(data_size), ull(data_offset_));
        if (t.bytes) order.push_back(i);
    }
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
        const GgufTensorInfo& p = tensors_[order[k - 1]];
        const GgufTensorInfo& c = tensors_[order[k]];
        if (p.offset + p.bytes > c.offset)
            fail(KV_ERR_BAD_MODEL,
                 "GGUF: tensor '%s' data [%llu, %llu) overlaps tensor '%s' data [%llu, %llu)",
                 printable(c.name).c_str(), ull(c.offset), ull(c.offset + c.bytes),
                 printable(p.name).c_str(), ull(p.offset), ull(p.offset + p.bytes));
    }
}

const GgufValue* GgufFile::find(std::string_view key) const {
    for (const auto& kv : kv_)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return as_uint(key, *v);
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return as_int(key, *v);
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return as_float(key, *v);
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type == GgufType::BOOL) return v->u != 0;
    if (v->is_integer()) return (is_signed(v->type) ? v->i != 0 : v->u != 0);
    bad_type(key, *v, "a bool");
}

std::optional<std::string_view> GgufFile::get_string(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::STRING) bad_type(key, *v, "a string");
    return v->s;
}

std::optional<std::vector<std::string_view>> GgufFile::get_string_array(
    std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::ARRAY || v->array_type != GgufType::STRING)
        bad_type(key, *v, "an array of strings");
    std::vector<std::string_view> out;
    out.reserve(v->array.size());
    for (const auto& e : v->array) out.push_back(e.s);
    return out;
}

std::optional<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::ARRAY || v->array_type == GgufType::STRING ||
        v->array_type == GgufType::ARRAY)
        bad_type(key, *v, "an array of numbers");
    std::vector<float> out;
    out.reserve(v->array.size());
    for (const auto& e : v->array) out.push_back(static_cast<float>(as_float(key, e)));
    return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::ARRAY || !is_integer_type(v->array_type))
        bad_type(key, *v, "an array of integers");
    std::vector<int64_t> out;
    out.reserve(v->array.size());
    for (const auto& e : v->array) out.push_back(as_int(key, e));
    return out;
}

// ---- GgufWriter --------------------------------------------------------------------------------

namespace {

class Bytes {
public:
    std::vector<uint8_t> b;
    template <typename T>
    void put(T v) {
        const size_t n = b.size();
        b.resize(n + sizeof(T));
        std::memcpy(b.data() + n, &v, sizeof(T));
    }
    void str(std::string_view s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void raw(const void* p, size_t n) {
        const uint8_t* q = static_cast<const uint8_t*>(p);
        b.insert(b.end(), q, q + n);
    }
    void pad_to(uint64_t a) { b.resize(static_cast<size_t>(align_up(b.size(), a)), 0); }
};

// Serializes v's payload (no type tag); v.type must be `t`.
void put_value(Bytes& out, GgufType t, const GgufValue& v, const std::string& key, uint32_t depth) {
    if (v.type != t)
        fail(KV_ERR_INVALID_ARGUMENT,
             "GgufWriter: key '%s': array element of type %s in an array of %s", key.c_str(),
             gguf_type_name(static_cast<uint32_t>(v.type)),
             gguf_type_name(static_cast<uint32_t>(t)));
    switch (t) {
        case GgufType::UINT8:
            out.put(static_cast<uint8_t>(v.u));
            return;
        case GgufType::INT8:
            out.put(static_cast<int8_t>(v.i));
            return;
        case GgufType::UINT16:
            out.put(static_cast<uint16_t>(v.u));
            return;
        case GgufType::INT16:
            out.put(static_cast<int16_t>(v.i));
            return;
        case GgufType::UINT32:
            out.put(static_cast<uint32_t>(v.u));
            return;
        case GgufType::INT32:
            out.put(static_cast<int32_t>(v.i));
            return;
        case GgufType::UINT64:
            out.put(v.u);
            return;
        case GgufType::INT64:
            out.put(v.i);
            return;
        case GgufType::FLOAT32:
            out.put(static_cast<float>(v.f));
            return;
        case GgufType::FLOAT64:
            out.put(v.f);
            return;
        case GgufType::BOOL:
            out.put(static_cast<uint8_t>(v.u != 0));
            return;
        case GgufType::STRING:
            out.str(v.s);
            return;
        case GgufType::ARRAY:
            break;
    }
    if (depth >= kMaxArrayDepth)
        fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: key '%s': arrays nested deeper than %u levels",
             key.c_str(), kMaxArrayDepth);
    if (static_cast<uint32_t>(v.array_type) > static_cast<uint32_t>(GgufType::FLOAT64))
        fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: key '%s': invalid array element type",
             key.c_str());
    out.put(static_cast<uint32_t>(v.array_type));
    out.put(static_cast<uint64_t>(v.array.size()));
    for (const auto& e : v.array) put_value(out, v.array_type, e, key, depth + 1);
}

}  // namespace

struct GgufWriter::Impl {
    uint32_t alignment = 32;
    std::vector<std::pair<std::string, std::vector<uint8_t>>> kv;  // key -> type tag + payload
    struct Tensor {
        std::string name;
        GgmlType type;
        std::vector<uint64_t> ne;
        std::vector<uint8_t> data;
    };
    std::vector<Tensor> tensors;

    void set(const std::string& key, const GgufValue& v) {
        Bytes b;
        if (static_cast<uint32_t>(v.type) > static_cast<uint32_t>(GgufType::FLOAT64))
            fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: key '%s': invalid value type", key.c_str());
        b.put(static_cast<uint32_t>(v.type));
        put_value(b, v.type, v, key, 0);
        for (auto& e : kv)
            if (e.first == key) {
                e.second = std::move(b.b);
                return;
            }
        kv.emplace_back(key, std::move(b.b));
    }

    // Validates name/shape and returns the byte size for `type`.
    uint64_t check_tensor(const std::string& name, GgmlType type,
                          const std::vector<uint64_t>& ne) const {
        const TypeTraits* tt = type_traits(type);
        if (!tt)
            fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: tensor '%s': unknown ggml type id %u",
                 name.c_str(), static_cast<unsigned>(type));
        if (ne.empty() || ne.size() > kMaxDims)
            fail(KV_ERR_INVALID_ARGUMENT,
                 "GgufWriter: tensor '%s' has %zu dimensions (1..4 allowed)", name.c_str(),
                 ne.size());
        for (const auto& t : tensors)
            if (t.name == name)
                fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: duplicate tensor name '%s'",
                     name.c_str());
        if (ne[0] % tt->block_size != 0)
            fail(KV_ERR_INVALID_ARGUMENT,
                 "GgufWriter: tensor '%s': row length %llu is not a multiple of %s's block size %u",
                 name.c_str(), ull(ne[0]), tt->name, tt->block_size);
        uint64_t bytes = 0;
        bool overflow = mul_overflows(ne[0] / tt->block_size, tt->type_size, &bytes);
        for (size_t d = 1; d < ne.size() && !overflow; ++d)
            overflow = mul_overflows(bytes, ne[d], &bytes);
        if (overflow || bytes > std::numeric_limits<size_t>::max() / 2)
            fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: tensor '%s' is too large", name.c_str());
        return bytes;
    }
};

GgufWriter::GgufWriter() : impl_(new Impl()) {}
GgufWriter::~GgufWriter() = default;

void GgufWriter::set_alignment(uint32_t a) {
    if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment)
        fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: alignment %u is not a power of two up to %llu",
             a, ull(kMaxAlignment));
    impl_->alignment = a;
    set_u32("general.alignment", a);
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
    GgufValue g;
    g.type = GgufType::UINT32;
    g.u = v;
    impl_->set(key, g);
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
    GgufValue g;
    g.type = GgufType::INT32;
    g.i = v;
    impl_->set(key, g);
}
void GgufWriter::set_u64(const std::string& key, uint64_t v) {
    GgufValue g;
    g.type = GgufType::UINT64;
    g.u = v;
    impl_->set(key, g);
}
void GgufWriter::set_f32(const std::string& key, float v) {
    GgufValue g;
    g.type = GgufType::FLOAT32;
    g.f = v;
    impl_->set(key, g);
}
void GgufWriter::set_bool(const std::string& key, bool v) {
    GgufValue g;
    g.type = GgufType::BOOL;
    g.u = v;
    impl_->set(key, g);
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
    GgufValue g;
    g.type = GgufType::STRING;
    g.s = v;
    impl_->set(key, g);
}
void GgufWriter::set_array_string(const std::string& key, const std::vector<std::string>& v) {
    GgufValue g;
    g.type = GgufType::ARRAY;
    g.array_type = GgufType::STRING;
    g.array.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        g.array[i].type = GgufType::STRING;
        g.array[i].s = v[i];
    }
    impl_->set(key, g);
}
void GgufWriter::set_array_f32(const std::string& key, const std::vector<float>& v) {
    GgufValue g;
    g.type = GgufType::ARRAY;
    g.array_type = GgufType::FLOAT32;
    g.array.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        g.array[i].type = GgufType::FLOAT32;
        g.array[i].f = v[i];
    }
    impl_->set(key, g);
}
void GgufWriter::set_array_i32(const std::string& key, const std::vector<int32_t>& v) {
    GgufValue g;
    g.type = GgufType::ARRAY;
    g.array_type = GgufType::INT32;
    g.array.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        g.array[i].type = GgufType::INT32;
        g.array[i].i = v[i];
    }
    impl_->set(key, g);
}
void GgufWriter::set_value(const std::string& key, GgufValue v) { impl_->set(key, v); }

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<uint64_t>& ne,
                            const void* data, size_t bytes) {
    const uint64_t want = impl_->check_tensor(name, type, ne);
    if (bytes != want)
        fail(KV_ERR_INVALID_ARGUMENT,
             "GgufWriter: tensor '%s' of type %s needs %llu bytes, given %zu", name.c_str(),
             type_traits(type)->name, ull(want), bytes);
    if (!data && bytes)
        fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: tensor '%s': null data", name.c_str());
    Impl::Tensor t{name, type, ne, {}};
    if (bytes)
        t.data.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
    impl_->tensors.push_back(std::move(t));
}

void GgufWriter::add_tensor_f32(const std::string& name, GgmlType type,
                                const std::vector<uint64_t>& ne, const float* data) {
    const uint64_t bytes = impl_->check_tensor(name, type, ne);
    uint64_t n = 1;
    for (uint64_t d : ne)
        n *= d;  // no overflow: bytes did not overflow and type_size >= 1 per block
    if (!data && n)
        fail(KV_ERR_INVALID_ARGUMENT, "GgufWriter: tensor '%s': null data", name.c_str());
    Impl::Tensor t{name, type, ne, std::vector<uint8_t>(static_cast<size_t>(bytes))};
    if (n) quantize_row(type, data, t.data.data(), static_cast<int64_t>(n));
    impl_->tensors.push_back(std::move(t));
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    const uint64_t a = impl_->alignment;
    Bytes out;
    out.raw("GGUF", 4);
    out.put<uint32_t>(3);
    out.put<uint64_t>(impl_->tensors.size());
    out.put<uint64_t>(impl_->kv.size());
    for (const auto& kv : impl_->kv) {
        out.str(kv.first);
        out.raw(kv.second.data(), kv.second.size());
    }
    uint64_t offset = 0;
    for (const auto& t : impl_->tensors) {
        out.str(t.name);
        out.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
        for (uint64_t d : t.ne) out.put<uint64_t>(d);
        out.put<uint32_t>(static_cast<uint32_t>(t.type));
        out.put<uint64_t>(offset);
        offset = align_up(offset + t.data.size(), a);
    }
    out.pad_to(a);
    for (const auto& t : impl_->tensors) {
        out.raw(t.data.data(), t.data.size());
        out.pad_to(a);
    }
    return std::move(out.b);
}

void GgufWriter::write(const std::string& path) const {
    const std::vector<uint8_t> bytes = to_bytes();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail(KV_ERR_IO, "cannot create '%s': %s", path.c_str(), std::strerror(errno));
    const size_t n = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
    const int e = errno;
    const bool ok = n == bytes.size();
    if (std::fclose(f) != 0 || !ok)
        fail(KV_ERR_IO, "cannot write '%s': %s", path.c_str(), std::strerror(ok ? errno : e));
}

}  // namespace kv::model
