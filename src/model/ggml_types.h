// Weight formats (ggml tensor types) and their block layouts, as stored in GGUF files. The GPU
// shaders read exactly these layouts (shaders/include/dequant.glsl mirrors dequantize_row).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kv::model {

// Values are the on-disk ggml_type ids.
enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    BF16 = 30,
};

struct TypeTraits {
    const char* name;     // "f32", "q4_k", ...
    uint32_t block_size;  // elements per block (1 for f32/f16/bf16)
    uint32_t type_size;   // bytes per block
    bool supported;       // kvulkan can dequantize it (CPU and GPU)
};

// Traits of on-disk type id `type`, or nullptr for an id ggml does not define.
const TypeTraits* type_traits(uint32_t type);
inline const TypeTraits* type_traits(GgmlType t) { return type_traits(static_cast<uint32_t>(t)); }

// Bytes of a row of `n` elements (n must be a multiple of the block size).
uint64_t row_bytes(GgmlType type, uint64_t n);

// IEEE half and bfloat16 conversions (round-to-nearest-even; NaN preserved).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

// Dequantizes `n` elements (a multiple of the block size) from `src` (n / block_size blocks) into
// `dst`. Bit-exact with ggml's reference dequantizers. Throws KV_ERR_UNSUPPORTED for types
// without `supported`.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Quantizes `n` floats into `dst`. Supported targets: F32, F16, BF16, Q8_0, Q4_0 (others throw
// KV_ERR_UNSUPPORTED). Follows ggml's reference quantizers (round-to-nearest), so files written
// here load in llama.cpp.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace kv::model
