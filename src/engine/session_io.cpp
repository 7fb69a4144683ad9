// Saved sessions (kv_session_save / kv_session_load).
//
// Image format, version 1, little-endian:
//   header   "KVSESS\0\1" magic, u32 version, u32 header bytes (this header, for forward skips)
//   model    u32 arch, n_layer, n_head_kv, head_dim, n_vocab, n_embd; u64 n_params, weight_bytes
//   session  u32 kv type (ggml id), page size, n_tokens, flags, n_ctx, n_batch,
//            kv_sampler_desc (as in the header, struct_size first; its pointers zero, its counts
//            set), u32 rng-state bytes + text, then (since 0.2.0, when the counts are not zero)
//            {i32 token, f32 bias}[n_logit_bias] and i32[n_banned_tokens]
//   tokens   i32[n_tokens]
//   logits   u32 present, f32[n_vocab] when present
//   pages    for logical page i < ceil(n_tokens / page_size): for each layer, K page then V page
//            (KvPool::page_bytes() each, the pool's byte layout)
//   trailer  u64 checksum (FNV-1a 64 of every byte before it)
// The model fingerprint makes an image of another model (or layout) fail to load with a message.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <fstream>

#include "engine/runtime.h"
#include "engine/session.h"
#include "engine/session_ops.h"

namespace kv::engine {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'S', 'E', 'S', 'S', 0, 1};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const uint8_t* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

struct Writer {
    std::vector<uint8_t>& out;
    void bytes(const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        out.insert(out.end(), b, b + n);
    }
    void u32(uint32_t v) { bytes(&v, 4); }
    void u64(uint64_t v) { bytes(&v, 8); }
};

struct Reader {
    const uint8_t* p;
    size_t n, off = 0;
    const uint8_t* take(size_t k, const char* what) {
        if (k > n - off) fail(KV_ERR_BAD_MODEL, "saved session truncated: %s at byte %zu needs %zu bytes, %zu remain",
                              what, off, k, n - off);
        const uint8_t* r = p + off;
        off += k;
        return r;
    }
    uint32_t u32(const char* what) {
        uint32_t v;
        std::memcpy(&v, take(4, what), 4);
        return v;
    }
    uint64_t u64(const char* what) {
        uint64_t v;
        std::memcpy(&v, take(8, what), 8);
        return v;
    }
};

// The sampler record is a kv_sampler_desc as the saving library laid it out, struct_size first:
// an image from a library whose struct was shorter or longer reads like a caller's desc would
// (missing fields zero; unknown fields must be zero).
kv_sampler_desc read_sampler_record(Reader& r) {
    constexpr size_t kFirstSize = offsetof(kv_sampler_desc, seed) + sizeof(uint64_t);  // 0.1.0's
    const uint8_t* head = r.take(4, "sampler");
    uint32_t size;
    std::memcpy(&size, head, 4);
    if (size < kFirstSize || size > 4096) fail(KV_ERR_BAD_MODEL, "saved session: bad sampler record (%u bytes)", size);
    const uint8_t* rest = r.take(size - 4, "sampler");
    for (size_t i = sizeof(kv_sampler_desc); i < size; ++i)
        if (rest[i - 4])
            fail(KV_ERR_UNSUPPORTED, "saved session: its sampler uses settings this kvulkan version does not know");
    kv_sampler_desc sd;
    std::memset(&sd, 0, sizeof sd);
    std::memcpy(reinterpret_cast<uint8_t*>(&sd) + 4, rest, std::min<size_t>(size, sizeof sd) - 4);
    sd.struct_size = sizeof sd;
    return sd;
}

struct Fingerprint {
    uint32_t v[6];
    uint64_t params, bytes;
};

Fingerprint fingerprint(const kv_model& m) {
    const auto& c = m.config();
    return {{uint32_t(c.arch), c.n_layer, c.n_head_kv, c.head_dim, c.n_vocab, c.n_embd}, c.n_params, c.weight_bytes};
}

uint32_t logical_pages(const kv_session& s) { return (s.n_past + s.page_size - 1) / s.page_size; }

}  // namespace

namespace detail {

// Moves whole pages between the pool and host memory in bounded chunks (one submission per chunk).
// `host` holds, for each page in `ids`, every layer's K page then V page.
void transfer_pages(kv_session& s, const std::vector<kvcache::PageId>& ids, uint8_t* host, bool to_device) {
    const KvPool& pool = *s.pool;
    const uint32_t L = s.model->config().n_layer;
    const uint64_t pb = pool.page_bytes();
    const uint64_t per_page = pb * 2 * L;
    if (ids.empty()) return;
    uint64_t chunk_pages = std::max<uint64_t>(1, (16ull << 20) / per_page);
    vk::Buffer stage(s.model->runtime->allocator.get(), std::min<uint64_t>(chunk_pages, ids.size()) * per_page,
                     to_device ? vk::MemoryUse::Upload : vk::MemoryUse::Readback);
    vk::CommandStream& cs = *s.cs;
    for (size_t first = 0; first < ids.size(); first += chunk_pages) {
        size_t n = std::min<size_t>(chunk_pages, ids.size() - first);
        if (to_device) {
            std::memcpy(stage.mapped(), host + first * per_page, n * per_page);
            stage.flush(0, n * per_page);
        }
        cs.begin();
        for (size_t i = 0; i < n; ++i)
            for (uint32_t l = 0; l < L; ++l)
                for (int kvsel = 0; kvsel < 2; ++kvsel) {
                    const vk::Buffer& b = kvsel ? pool.v(l) : pool.k(l);
                    vk::BufferRange dev{b.handle(), uint64_t(ids[first + i]) * pb, pb};
                    vk::BufferRange st{stage.handle(), (i * 2 * L + l * 2 + kvsel) * pb, pb};
                    if (to_device) cs.copy(st, dev);
                    else cs.copy(dev, st);
                }
        if (to_device) cs.barrier();
        else cs.host_barrier();
        cs.submit_and_wait();
        if (!to_device) {
            stage.invalidate(0, n * per_page);
            std::memcpy(host + first * per_page, stage.mapped(), n * per_page);
        }
    }
}

}  // namespace detail

using detail::transfer_pages;

size_t saved_size(const kv_session& s) {
    if (s.window_table)
        fail(KV_ERR_UNSUPPORTED,
             "a session of a model with sliding-window and global layers (%s: its windowed layers' pages are a "
             "group of their own) cannot be saved yet",
             s.model->architecture.c_str());
    const auto& c = s.model->config();
    size_t header = 8 + 4 + 4 + 6 * 4 + 16 + 6 * 4 + sizeof(kv_sampler_desc) + 4 + s.sampler->rng_state().size() +
                    s.sampler->logit_bias().size() * 8 + s.sampler->banned().size() * 4;
    size_t logits = 4 + (s.has_logits ? size_t(c.n_vocab) * 4 : 0);
    size_t pages = size_t(logical_pages(s)) * s.pool->page_bytes() * 2 * c.n_layer;
    return header + size_t(s.n_past) * 4 + logits + pages + 8;
}

std::vector<uint8_t> save(kv_session& s) {
    saved_size(s);  // refuses what cannot be saved
    if (s.flags & KV_SESSION_NO_CACHE)
        fail(KV_ERR_UNSUPPORTED, "a no-cache session has no cache to save");
    if (s.sampler->grammar())
        fail(KV_ERR_UNSUPPORTED, "a session with a grammar cannot be saved yet (remove it with kv_session_set_grammar(session, NULL, NULL) first)");
    std::vector<kvcache::PageId> ids;
    {
        std::lock_guard<std::mutex> lock(s.pool->mutex);
        const auto& all = s.table->page_ids();
        uint32_t n = logical_pages(s);
        KV_CHECK(all.size() >= n);
        for (uint32_t i = 0; i < n; ++i) {
            if (all[i] == kvcache::kNoPage)
                fail(KV_ERR_UNSUPPORTED, "a session whose window released pages cannot be saved yet");
            ids.push_back(all[i]);
        }
    }
    std::vector<uint8_t> out;
    out.reserve(saved_size(s));
    Writer w{out};
    w.bytes(kMagic, 8);
    w.u32(kVersion);
    w.u32(0);  // header bytes, patched below
    Fingerprint f = fingerprint(*s.model);
    for (uint32_t v : f.v) w.u32(v);
    w.u64(f.params);
    w.u64(f.bytes);
    w.u32(static_cast<uint32_t>(s.kv_type));
    w.u32(s.page_size);
    w.u32(s.n_past);
    w.u32(s.flags);
    w.u32(s.n_ctx);
    w.u32(s.n_batch);
    kv_sampler_desc sd = s.sampler->desc();
    w.bytes(&sd, sizeof sd);
    std::string rng = s.sampler->rng_state();
    w.u32(static_cast<uint32_t>(rng.size()));
    w.bytes(rng.data(), rng.size());
    // The arrays the record's counts announce (a library before 0.2.0 rejects the nonzero counts).
    for (const kv_logit_bias& b : s.sampler->logit_bias()) {
        w.bytes(&b.token, 4);
        w.bytes(&b.bias, 4);
    }
    w.bytes(s.sampler->banned().data(), s.sampler->banned().size() * 4);
    uint32_t header_bytes = static_cast<uint32_t>(out.size());
    std::memcpy(out.data() + 12, &header_bytes, 4);
    w.bytes(s.tokens.data(), s.tokens.size() * 4);
    w.u32(s.has_logits ? 1 : 0);
    if (s.has_logits) {
        std::vector<float> l(s.model->config().n_vocab);
        copy_logits(s, l.data());
        w.bytes(l.data(), l.size() * 4);
    }
    size_t at = out.size();
    out.resize(at + ids.size() * s.pool->page_bytes() * 2 * s.model->config().n_layer);
    transfer_pages(s, ids, out.data() + at, false);
    w.u64(fnv1a(out.data(), out.size()));
    KV_CHECK(out.size() == saved_size(s));
    return out;
}

std::unique_ptr<kv_session> load(kv_model& m, const uint8_t* data, size_t size) {
    if (!data || size == 0) fail(KV_ERR_INVALID_ARGUMENT, "no saved-session data");
    if (size < 8 + 4 + 4 + 8 || std::memcmp(data, kMagic, 6) != 0)
        fail(KV_ERR_BAD_MODEL, "not a kvulkan saved session (bad magic)");
    Reader r{data, size};
    r.take(8, "magic");
    uint32_t version = r.u32("version");
    if (version > kVersion)
        fail(KV_ERR_UNSUPPORTED, "saved session format version %u is newer than this library's %u", version, kVersion);
    if (version == 0) fail(KV_ERR_BAD_MODEL, "saved session format version 0 is invalid");
    uint64_t want = 0;
    std::memcpy(&want, data + size - 8, 8);
    if (fnv1a(data, size - 8) != want) fail(KV_ERR_BAD_MODEL, "saved session checksum mismatch: the data is corrupted or truncated");
    r.n = size - 8;  // the checksum is not content
    uint32_t header_bytes = r.u32("header size");
    Fingerprint f = fingerprint(m), g{};
    for (uint32_t& v : g.v) v = r.u32("model fingerprint");
    g.params = r.u64("model fingerprint");
    g.bytes = r.u64("model fingerprint");
    if (std::memcmp(f.v, g.v, sizeof f.v) != 0 || f.params != g.params || f.bytes != g.bytes)
        fail(KV_ERR_BAD_MODEL,
             "the saved session belongs to another model (%u layers, %u KV heads, head dim %u, vocab %u, %llu "
             "params; this model: %u, %u, %u, %u, %llu)",
             g.v[1], g.v[2], g.v[3], g.v[4], (unsigned long long)g.params, f.v[1], f.v[2], f.v[3], f.v[4],
             (unsigned long long)f.params);
    uint32_t type = r.u32("kv type"), page_size = r.u32("page size"), n_tokens = r.u32("token count");
    uint32_t flags = r.u32("flags"), n_ctx = r.u32("n_ctx"), n_batch = r.u32("n_batch");
    kv_sampler_desc sd = read_sampler_record(r);
    uint32_t rng_len = r.u32("sampler state");
    std::string rng(reinterpret_cast<const char*>(r.take(rng_len, "sampler state")), rng_len);
    if (sd.logit_bias || sd.banned_tokens) fail(KV_ERR_BAD_MODEL, "saved session: the sampler record holds pointers");
    if (uint64_t(sd.n_logit_bias) * 8 + uint64_t(sd.n_banned_tokens) * 4 > r.n - r.off)
        fail(KV_ERR_BAD_MODEL, "saved session truncated: %u logit biases and %u banned tokens announced", sd.n_logit_bias,
             sd.n_banned_tokens);
    std::vector<kv_logit_bias> bias(sd.n_logit_bias);
    for (kv_logit_bias& b : bias) {
        std::memcpy(&b.token, r.take(4, "logit bias"), 4);
        std::memcpy(&b.bias, r.take(4, "logit bias"), 4);
    }
    std::vector<kv_token> banned(sd.n_banned_tokens);
    if (!banned.empty()) std::memcpy(banned.data(), r.take(banned.size() * 4, "banned tokens"), banned.size() * 4);
    sd.logit_bias = bias.empty() ? nullptr : bias.data();
    sd.banned_tokens = banned.empty() ? nullptr : banned.data();
    if (r.off > header_bytes) fail(KV_ERR_BAD_MODEL, "saved session: header size %u is too small", header_bytes);
    r.take(header_bytes - r.off, "header");  // fields a later minor version may add
    if (page_size != m.kv_page_size)
        fail(KV_ERR_BAD_MODEL, "the saved session uses %u-token KV pages; this model was loaded with %u", page_size,
             m.kv_page_size);
    if (n_tokens > n_ctx) fail(KV_ERR_BAD_MODEL, "saved session: %u tokens exceed its n_ctx %u", n_tokens, n_ctx);

    kv_session_desc d = KV_SESSION_DESC_INIT;
    d.flags = flags;
    d.n_ctx = n_ctx;
    d.n_batch = n_batch;
    if (type == uint32_t(model::GgmlType::F16)) d.cache_type = KV_CACHE_F16;
    else if (type == uint32_t(model::GgmlType::F32)) d.cache_type = KV_CACHE_F32;
    else fail(KV_ERR_BAD_MODEL, "saved session: unknown KV type %u", type);
    try {  // the image is bad, not the caller's argument
        check_sampler(sd);
    } catch (const Error& e) {
        fail(KV_ERR_BAD_MODEL, "saved session: bad sampler record: %s", e.what());
    }
    try {
        if (!Sampler(sd, m.config().n_vocab).set_rng_state(rng)) fail(KV_ERR_BAD_MODEL, "saved session: bad sampler state");
    } catch (const Error& e) {
        fail(KV_ERR_BAD_MODEL, "saved session: bad sampler record: %s", e.what());
    }

    // The whole image is checked before any device work (tests/fuzz/fuzz_session.cpp fuzzes
    // everything above create_session with a model loaded without a runtime). Sizes are checked
    // against the bytes present before anything of that size is allocated.
    const uint8_t* token_bytes = r.take(size_t(n_tokens) * 4, "tokens");
    std::vector<int32_t> tokens(n_tokens);
    if (n_tokens) std::memcpy(tokens.data(), token_bytes, size_t(n_tokens) * 4);  // data() may be NULL
    for (uint32_t i = 0; i < n_tokens; ++i)
        if (tokens[i] < 0 || uint32_t(tokens[i]) >= m.config().n_vocab)
            fail(KV_ERR_BAD_MODEL, "saved session: token %u is %d, outside the vocabulary", i, tokens[i]);
    uint32_t has_logits = r.u32("logits flag");
    std::vector<float> logits;
    if (has_logits) {
        const uint8_t* logit_bytes = r.take(size_t(m.config().n_vocab) * 4, "logits");
        logits.resize(m.config().n_vocab);
        std::memcpy(logits.data(), logit_bytes, logits.size() * 4);
    }
    const auto& cfg = m.config();
    const uint32_t n_pages = uint32_t((uint64_t(n_tokens) + page_size - 1) / page_size);
    // Every layer's K and V page of one logical page, as the pool lays it out (KvPool::page_bytes).
    const uint64_t per_page =
        kv_page_bytes(model::GgmlType(type), cfg.n_head_kv, page_size, cfg.head_dim) * 2 * cfg.n_layer;
    if (n_pages > (r.n - r.off) / per_page)
        fail(KV_ERR_BAD_MODEL, "saved session truncated: %u KV pages of %llu bytes, %zu bytes remain", n_pages,
             (unsigned long long)per_page, r.n - r.off);
    const size_t page_data = size_t(n_pages * per_page);
    const uint8_t* pages = r.take(page_data, "KV pages");
    if (r.off != r.n) fail(KV_ERR_BAD_MODEL, "saved session: %zu unexpected bytes after the KV pages", r.n - r.off);

    if (has_window_group(cfg))  // no image of such a session is ever written (saved_size)
        fail(KV_ERR_UNSUPPORTED,
             "sessions of a model with sliding-window and global layers (%s) cannot be loaded yet",
             m.architecture.c_str());
    auto s = create_session(m, d, sd);
    if (!s->sampler->set_rng_state(rng)) fail(KV_ERR_BAD_MODEL, "saved session: bad sampler state");
    KV_CHECK(per_page == s->pool->page_bytes() * 2 * cfg.n_layer);

    // Take pages, fill them, then record the tokens (full pages enter the prefix index).
    std::vector<kvcache::PageId> ids;
    {
        std::lock_guard<std::mutex> lock(s->pool->mutex);
        std::vector<kvcache::PageCopy> copies;
        if (n_tokens && s->table->reserve(n_tokens, &copies) != kvcache::ReserveStatus::kOk)
            fail(KV_ERR_OUT_OF_DEVICE_MEMORY, "the KV page pool has no room for the saved session's %u pages", n_pages);
        KV_CHECK(copies.empty());
        ids.assign(s->table->page_ids().begin(), s->table->page_ids().begin() + n_pages);
    }
    std::vector<uint8_t> buf(pages, pages + page_data);
    transfer_pages(*s, ids, buf.data(), true);
    {
        std::lock_guard<std::mutex> lock(s->pool->mutex);
        s->table->commit(tokens.data(), n_tokens);
        const auto& table = s->table->page_ids();
        std::memcpy(s->block_table.mapped(), table.data(), table.size() * 4);
        s->block_table.flush(0, table.size() * 4);
    }
    s->tokens = std::move(tokens);
    s->n_past = n_tokens;
    if (has_logits) {
        s->transfer->upload(s->logits, 0, logits.data(), logits.size() * 4);
        s->host_logits = std::move(logits);
        s->has_logits = s->host_logits_valid = true;
        s->logits_row = 0;
        s->next_token_valid = false;  // greedy then takes the argmax of the host copy: the same token
    }
    return s;
}

}  // namespace kv::engine
