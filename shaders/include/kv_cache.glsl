// Paged KV-cache addressing (see src/engine/attention.h, kv_page_bytes).
//
//   F32/F16 pools: [n_pages][n_head_kv][page_size][D] elements (F32, or F16 stored as packed
//   pairs in uint32 words: element e is half (e & 1) of word e >> 1; D is even).
//   Q8_0/Q4_0 pools (D % 32 == 0, or D in {2, 4, 8, 16}), uint32 words, per page of
//   RP = n_head_kv * page_size rows (row in page = kvh * page_size + slot): RP rows of values
//   (Q8_0: D int8, 4 per word, low byte first; Q4_0: D nibbles, 8 per word, low nibble first;
//   a row is a whole number of words: only D < 4 (Q8_0) / D < 8 (Q4_0) pads), then RP rows of
//   D / QB fp16 scales (packed halves, low half first), QB = kv_qblock(D) values per scale; the
//   page is padded to a multiple of 16 bytes.
//   Block table: uint32 page ids; position p is in logical page lp = p / page_size, slot
//   p % page_size; lp uses block-table entry kv_slot(lp) (ring mapping, identity when
//   ring_pages == 0).
//
// Before including, declare a buffer with the member `uint block_table[]`. Row indices fit in
// 32 bits because a pool binding is at most maxStorageBufferRange (< 4 GiB) bytes.
#ifndef KV_KV_CACHE_GLSL
#define KV_KV_CACHE_GLSL

// Block-table entry of logical page lp: sink pages keep theirs, the rest share a ring.
uint kv_slot(uint lp, uint sink_pages, uint ring_pages) {
    return ring_pages == 0 || lp < sink_pages ? lp : sink_pages + (lp - sink_pages) % ring_pages;
}

// Pool page holding position `pos`.
uint kv_page(uint pos, uint page_size, uint sink_pages, uint ring_pages) {
    return block_table[kv_slot(pos / page_size, sink_pages, ring_pages)];
}

// Index of the D-element row holding position `pos` of KV head `kvh` (F32/F16 pools: its first
// element is at kv_row(...) * D).
uint kv_row(uint pos, uint kvh, uint page_size, uint n_head_kv, uint sink_pages,
            uint ring_pages) {
    const uint page = kv_page(pos, page_size, sink_pages, ring_pages);
    return (page * n_head_kv + kvh) * page_size + pos % page_size;
}

// Values per quantization block (one fp16 scale) of a quantized row of D values: 32 (ggml's
// block), or the whole row when D < 32 (then D divides 32).
uint kv_qblock(uint D) { return min(32u, D); }

// Quantized pools: uvec2(first value word, first scale half) of the row holding position `pos`
// of KV head `kvh`. vw: value words per row ((D + 3) / 4 for Q8_0, (D + 7) / 8 for Q4_0).
uvec2 kv_qrow(uint pos, uint kvh, uint page_size, uint n_head_kv, uint sink_pages,
              uint ring_pages, uint D, uint vw) {
    const uint page = kv_page(pos, page_size, sink_pages, ring_pages);
    const uint rp = n_head_kv * page_size;   // rows per page
    const uint nb = D / kv_qblock(D);        // scales per row
    const uint sw = (rp * nb + 1) / 2;       // scale words per page
    const uint pw = (rp * vw + sw + 3) & ~3u;  // page words (16-byte multiple)
    const uint r = kvh * page_size + pos % page_size;
    const uint base = page * pw;
    return uvec2(base + r * vw, 2 * (base + rp * vw) + r * nb);
}

// Scale half h (a kv_qrow(...).y + block index) of a quantized pool, as float.
#define KV_SCALE(pool, h) unpackHalf2x16(pool[(h) >> 1])[(h) & 1]

#endif  // KV_KV_CACHE_GLSL
