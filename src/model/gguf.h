// GGUF v2/v3 reader and writer.
//
// Reader: the file is memory-mapped (or a caller's buffer is used/copied). Parsing is fully
// bounds-checked: truncation, absurd counts/lengths, overlapping or out-of-file tensor data and
// unknown types throw kv::Error(KV_ERR_BAD_MODEL or KV_ERR_UNSUPPORTED) with a message naming the
// key, tensor or byte offset. Counts read from the file are never trusted for allocation before
// they are checked against the bytes that remain.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/ggml_types.h"

namespace kv::model {

enum class GgufType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// One metadata value. Scalars are widened into u/i/f; strings are views into the file's bytes
// (valid while the GgufFile lives); arrays hold their elements (nested arrays allowed).
struct GgufValue {
    GgufType type = GgufType::UINT8;
    uint64_t u = 0;      // UINT8/16/32/64, BOOL
    int64_t i = 0;       // INT8/16/32/64
    double f = 0;        // FLOAT32/64
    std::string_view s;  // STRING
    GgufType array_type = GgufType::UINT8;  // ARRAY: element type
    std::vector<GgufValue> array;           // ARRAY elements

    bool is_integer() const;  // any integer type or BOOL
    bool is_float() const;
};

struct GgufTensorInfo {
    std::string name;
    uint32_t n_dims = 0;
    uint64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;  // from the start of the data section (aligned)
    uint64_t bytes = 0;   // row_bytes(type, ne[0]) * ne[1] * ne[2] * ne[3]
    uint64_t elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
public:
    // Memory-maps `path`. KV_ERR_IO if it cannot be opened/mapped.
    static std::unique_ptr<GgufFile> open(const std::string& path);
    // Parses a caller's buffer; with copy=false the buffer must outlive the GgufFile.
    static std::unique_ptr<GgufFile> from_memory(const void* data, size_t size, bool copy);
    ~GgufFile();

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t file_size() const { return size_; }
    uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section

    // Metadata, in file order.
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
    const GgufValue* find(std::string_view key) const;

    // Typed getters: std::nullopt when the key is absent; KV_ERR_BAD_MODEL naming the key when
    // present with an incompatible type (integers convert among themselves if in range, and
    // to float; floats do not convert to integers).
    std::optional<uint64_t> get_uint(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;
    std::optional<double> get_float(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    std::optional<std::string_view> get_string(std::string_view key) const;
    // Arrays: nullopt when absent, KV_ERR_BAD_MODEL when not an array of a compatible type.
    std::optional<std::vector<std::string_view>> get_string_array(std::string_view key) const;
    std::optional<std::vector<float>> get_float_array(std::string_view key) const;
    std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const;
    // Pointer to a tensor's bytes inside the mapping (bounds were checked at parse time).
    const uint8_t* tensor_data(const GgufTensorInfo& t) const { return base_ + data_offset_ + t.offset; }

private:
    GgufFile() = default;
    void parse();

    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    void* map_ = nullptr;          // mmap'd region, if any
    std::vector<uint8_t> owned_;   // copied buffer, if any
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<GgufTensorInfo> tensors_;
};

// Builds a GGUF v3 file in memory. Used by tests, samples and demo.sh to make models of any
// shape and weight type.
class GgufWriter {
public:
    GgufWriter();
    ~GgufWriter();
    void set_alignment(uint32_t a);  // also written as general.alignment

    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_u64(const std::string& key, uint64_t v);
    void set_f32(const std::string& key, float v);
    void set_bool(const std::string& key, bool v);
    void set_string(const std::string& key, const std::string& v);
    void set_array_string(const std::string& key, const std::vector<std::string>& v);
    void set_array_f32(const std::string& key, const std::vector<float>& v);
    void set_array_i32(const std::string& key, const std::vector<int32_t>& v);
    void set_value(const std::string& key, GgufValue v);  // any value, nested arrays included

    // Adds a tensor whose bytes are already in `type`'s layout. `ne` has 1..4 dims, ne[0] first.
    void add_tensor(const std::string& name, GgmlType type, const std::vector<uint64_t>& ne,
                    const void* data, size_t bytes);
    // Adds a tensor from float data, converting/quantizing to `type` (see quantize_row).
    void add_tensor_f32(const std::string& name, GgmlType type, const std::vector<uint64_t>& ne,
                        const float* data);

    std::vector<uint8_t> to_bytes() const;
    void write(const std::string& path) const;  // KV_ERR_IO on failure

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kv::model
