// Paged KV-cache addressing (see src/engine/attention.h).
//
//   K and V pools: [n_pages][n_head_kv][page_size][D] elements (F32, or F16 stored as packed
//   pairs in uint32 words: element e is half (e & 1) of word e >> 1; D is even).
//   Block table: uint32 page ids; position p lives in pool page block_table[p / page_size],
//   slot p % page_size.
//
// Before including, declare a buffer with the member `uint block_table[]`. Row indices fit in
// 32 bits because a pool binding is at most maxStorageBufferRange (< 4 GiB) bytes.
#ifndef KV_KV_CACHE_GLSL
#define KV_KV_CACHE_GLSL

// Index of the D-element row holding position `pos` of KV head `kvh` (its first element is at
// kv_row(...) * D).
uint kv_row(uint pos, uint kvh, uint page_size, uint n_head_kv) {
    const uint page = block_table[pos / page_size];
    return (page * n_head_kv + kvh) * page_size + pos % page_size;
}

#endif  // KV_KV_CACHE_GLSL
