// Test-side readers of what a KV cache holds: one value of a pool page in the layout of
// engine::kv_page_bytes, and every position's K/V out of a kv_session_save image
// (src/engine/session_io.cpp, format version 1). They let an oracle use the values the GPU
// stored rather than its own rounding of them.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/attention.h"
#include "model/ggml_types.h"

namespace kvtest {

// Element e of row (KV head h, slot) of one page (F32, F16, Q8_0 or Q4_0) of
// [n_head_kv][page_size] rows of head_dim values.
inline float kv_page_value(kv::model::GgmlType type, uint32_t n_head_kv, uint32_t page_size,
                           uint32_t head_dim, const uint8_t* page, uint32_t h, uint32_t slot,
                           uint32_t e) {
    using kv::model::GgmlType;
    const uint32_t D = head_dim, r = h * page_size + slot, rows = n_head_kv * page_size;
    auto half_at = [](const uint8_t* b) {
        uint16_t v;
        std::memcpy(&v, b, 2);
        return kv::model::fp16_to_fp32(v);
    };
    if (type == GgmlType::F32) {
        float v;
        std::memcpy(&v, page + (size_t(r) * D + e) * 4, 4);
        return v;
    }
    if (type == GgmlType::F16) return half_at(page + (size_t(r) * D + e) * 2);
    const uint32_t qb = kv::engine::kv_quant_block(D);
    const bool q8 = type == GgmlType::Q8_0;
    const uint32_t row_words = q8 ? (D + 3) / 4 : (D + 7) / 8;
    const float d = half_at(page + size_t(rows) * row_words * 4 + (size_t(r) * (D / qb) + e / qb) * 2);
    const uint8_t* vals = page + size_t(r) * row_words * 4;
    if (q8) return float(int8_t(vals[e])) * d;
    return float(int((vals[e / 2] >> (4 * (e % 2))) & 15) - 8) * d;
}

// Every cached position's K and V of a saved session image, as floats:
// k[layer][pos * n_head_kv * head_dim + h * head_dim + e] (v likewise). Returns false for an
// image this reader does not understand.
struct SavedKv {
    uint32_t n_tokens = 0;
    std::vector<std::vector<float>> k, v;
};
inline bool read_saved_kv(const std::vector<uint8_t>& img, uint32_t n_layer, uint32_t n_head_kv,
                          uint32_t head_dim, uint32_t n_vocab, SavedKv* out) {
    auto u32 = [&](size_t off) {
        uint32_t x = 0;
        if (off + 4 <= img.size()) std::memcpy(&x, img.data() + off, 4);
        return x;
    };
    if (img.size() < 72 || std::memcmp(img.data(), "KVSESS\0\1", 8) != 0 || u32(8) != 1) return false;
    const uint32_t header = u32(12);
    // After magic, version, header bytes: 6 u32 + 2 u64 of model fingerprint, then kv type,
    // page size, n_tokens.
    const auto type = static_cast<kv::model::GgmlType>(u32(56));
    const uint32_t ps = u32(60), n = u32(64);
    size_t off = header + size_t(n) * 4;
    const uint32_t has_logits = u32(off);
    off += 4 + (has_logits ? size_t(n_vocab) * 4 : 0);
    const uint64_t pb = kv::engine::kv_page_bytes(type, n_head_kv, ps, head_dim);
    const uint32_t pages = (n + ps - 1) / ps;
    if (off + pages * pb * 2 * n_layer + 8 != img.size()) return false;
    const size_t kd = size_t(n_head_kv) * head_dim;
    out->n_tokens = n;
    out->k.assign(n_layer, std::vector<float>(size_t(n) * kd));
    out->v.assign(n_layer, std::vector<float>(size_t(n) * kd));
    for (uint32_t p = 0; p < n; ++p)
        for (uint32_t l = 0; l < n_layer; ++l)
            for (int kvsel = 0; kvsel < 2; ++kvsel) {
                const uint8_t* page = img.data() + off + ((size_t(p / ps) * n_layer + l) * 2 + kvsel) * pb;
                float* dst = (kvsel ? out->v : out->k)[l].data() + p * kd;
                for (uint32_t h = 0; h < n_head_kv; ++h)
                    for (uint32_t e = 0; e < head_dim; ++e)
                        dst[h * head_dim + e] = kv_page_value(type, n_head_kv, ps, head_dim, page, h, p % ps, e);
            }
    return true;
}

}  // namespace kvtest
