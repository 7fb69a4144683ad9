// kv_session: one sequence on the GPU — its KV cache, scratch activations, sampler and logits —
// and the forward pass that records a whole chunk of tokens into one command-buffer submission.
//
// KV cache: pages of the model's pool of this session's cache type (engine/kv_pool.h), listed in a
// kvcache::BlockTable whose page ids the attention shaders read from `block_table`. A session holds
// pages only for the tokens it has (plus the page being filled); full pages are shared with other
// sessions that hold the same prefix, and with forks (copy-on-write). n_ctx caps the positions.
//
// A model with sliding-window and global layers (two layer groups, engine/kv_pool.h): `table` and
// `pool` are the global layers', `window_table` on `window_pool` the windowed layers'. Both hold
// the same positions, but the windowed one lets go of every page wholly before the last
// `group_window` positions at the end of each call that appends tokens (release_window_pages), so
// the windowed layers' memory stays flat however long the sequence grows. A failed call's
// rollback never reaches below the positions it began with, which are all still resident.
#pragma once

#include <kvulkan/kvulkan.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/sampler.h"
#include "vk/command.h"

namespace kv::engine {
// KV_PROFILE=1: GPU timestamps after each kernel group of the forward pass, summed per group and
// printed to stderr when the session is destroyed (a developer tool; off by default).
class Profile {
public:
    static constexpr uint32_t kSlots = 2048;
    void begin(vk::CommandStream& cs);
    void mark(vk::CommandStream& cs, const char* label);
    void submitted(double record_ms) { record_ms_ += record_ms; }
    void collect(const vk::CommandStream& cs, uint32_t n_tokens);
    ~Profile();

private:
    std::vector<const char*> labels_;
    using Totals = std::vector<std::pair<std::string, double>>;  // label -> ns, in first-seen order
    static void add(Totals& t, const char* label, double ns);
    static void print(const Totals& t, double total_ms, const char* title);
    Totals totals_, decode_totals_;  // every pass / single-token (decode) passes only
    double record_ms_ = 0, gpu_ms_ = 0;
    uint64_t passes_ = 0, tokens_ = 0, single_token_passes_ = 0;
    double single_token_gpu_ms_ = 0;
};
}  // namespace kv::engine

struct kv_session {
    kv_model* model = nullptr;
    uint32_t flags = 0;
    uint32_t n_ctx = 0;      // capacity in tokens (multiple of page_size)
    uint32_t page_size = 16;
    uint32_t n_batch = 512;  // most tokens per forward pass
    // Sliding window (0: off) with attention sinks; the block table is then a ring of
    // sink_pages + ring_pages slots (see AttentionParams) and positions are not capped by n_ctx.
    uint32_t window = 0, sinks = 0, sink_pages = 0, ring_pages = 0;
    uint32_t max_logit_rows = 1;  // rows of the logits scratch (kv_session_eval chunks by it)
    kv::model::GgmlType kv_type = kv::model::GgmlType::F16;
    kv_session_desc desc{};  // as created (fork makes its child from it)
    std::unique_ptr<kv::engine::Sampler> sampler;

    // Device state.
    kv::engine::KvPool* pool = nullptr;           // the model's pool of kv_type
    std::unique_ptr<kv::kvcache::BlockTable> table;  // guarded by pool->mutex
    kv::vk::Buffer block_table;                  // host-visible uint32 [n_ctx / page_size]
    // The windowed layer group (null without one): its pool, table (guarded by
    // window_pool->mutex; never locked while pool->mutex is held, nor the other way round), block
    // table buffer (as block_table, holes = kvcache::kNoPage), the largest window of its layers,
    // and the pages it released since creation or reset.
    kv::engine::KvPool* window_pool = nullptr;
    std::unique_ptr<kv::kvcache::BlockTable> window_table;
    kv::vk::Buffer window_block_table;
    uint32_t group_window = 0;
    uint64_t window_pages_released = 0;
    uint64_t pages_released = 0;  // by the session's own window (desc.window), since creation or reset
    // speculative decoding keeps the windowed pages of its verify pass until it has cut the
    // rejected tokens (release_window_pages does nothing while set).
    bool hold_window_pages = false;
    kv::vk::Buffer ids;                          // host-visible uint32 [n_batch]
    kv::vk::Buffer x, h, q, k, v, attn, gate, up, logits, argmax_out;
    kv::vk::Buffer attn_scratch;                 // split-KV partials of long-context decode
    kv::vk::Buffer readback;                     // host-visible: [max_logit_rows][n_vocab] f32 + token
    std::unique_ptr<kv::vk::CommandStream> cs;
    std::unique_ptr<kv::engine::Profile> profile;  // KV_PROFILE=1 only
    std::unique_ptr<kv::vk::Uploader> transfer;

    // Sequence state.
    uint32_t n_past = 0;
    std::vector<int32_t> tokens;     // every token in the cache, in order
    bool has_logits = false;         // logits of the last position are in `logits` (row logits_row)
    uint32_t logits_row = 0;
    bool host_logits_valid = false;  // ... and in host_logits
    std::vector<float> host_logits;
    bool next_token_valid = false;   // GPU argmax of the current logits
    int32_t next_token = 0;
    // Passes whose logits-writing part reached the GPU: unchanged across a failed call means the
    // logits from before it are intact (the call restores them; see rollback in session.cpp).
    uint64_t logits_passes = 0;
    uint64_t forward_passes = 0;  // passes this session took part in (kv_session_stats)
    uint64_t submissions = 0;     // vkQueueSubmit calls of those passes (kv_session_stats)
    uint32_t last_pass_submissions = 0;

    // Concurrency (capi/session_use.h): a call, or a ticket in flight, holds the session while it
    // runs (a second one gets KV_ERR_BUSY); kv_session_cancel asks a running prefill to stop.
    mutable std::atomic<bool> busy{false};
    std::atomic<bool> cancel{false};

    // Offload (engine/offload.h): while `offloaded`, the cache's pages live in host_pages (every
    // logical page: each layer's K then V) and the block table is empty. Guarded by pool->mutex
    // with `last_use`, the pool clock when the session last reserved pages (LRU order).
    bool offloaded = false;
    std::vector<uint8_t> host_pages;
    uint64_t last_use = 0;
    uint64_t pages_offloaded = 0, pages_restored = 0;

    // Statistics.
    uint64_t tokens_prefilled = 0, tokens_decoded = 0, prefix_hit_tokens = 0;
    double last_prefill_ms = 0, last_decode_ms = 0, total_prefill_ms = 0, total_decode_ms = 0;
    uint32_t last_prefill_tokens = 0;
    uint64_t scratch_bytes = 0;

    uint64_t kv_bytes_per_token() const;
    uint64_t kv_bytes() const;  // device bytes of the pages this session holds (shared ones too), both groups

    ~kv_session();
};

namespace kv::engine {

// `desc.sampler` is ignored: `sampler` is the caller's, already read through its struct_size.
std::unique_ptr<kv_session> create_session(kv_model& model, const kv_session_desc& desc,
                                           const kv_sampler_desc& sampler);
// KV_CACHE_* to the page element type (KV_ERR_INVALID_ARGUMENT for an unknown value). Takes the
// raw 32 bits of a caller's kv_cache_type: the caller's field or argument may hold any value, and
// loading one outside the enumerators as a kv_cache_type is undefined (read it with memcpy).
model::GgmlType cache_type(int32_t type);

// kv_prefill / kv_session_eval: appends tokens; `logits` (n x n_vocab, may be null) receives every
// position's logits when given. Returns KV_OK, or KV_CANCELLED when kv_session_cancel stopped a
// prefill (no `logits`) at a chunk boundary: the session then holds the chunks done, with the
// logits of the last of them.
kv_status prefill(kv_session& s, const int32_t* ids, uint32_t n, float* all_logits);
// kv_decode_step. Returns KV_OK or KV_END_OF_GENERATION.
kv_status decode_step(kv_session& s, int32_t* out_token);
void reset(kv_session& s);
void copy_logits(kv_session& s, float* out);
std::unique_ptr<kv_session> fork(kv_session& parent);
void truncate(kv_session& s, uint32_t n);

// kv_session_set_grammar (session_grammar.cpp): gbnf NULL removes the grammar.
void set_grammar(kv_session& s, const char* gbnf, const char* root);
// kv_session_embeddings (embeddings.cpp): the final hidden state of `ids` evaluated after the
// session's tokens, pooled per KV_EMBED_* flags, into out[0, n_embd); the session is left as it was.
void embeddings(kv_session& s, const int32_t* ids, uint32_t n, uint32_t flags, float* out);

// Saved sessions (session_io.cpp).
size_t saved_size(const kv_session& s);
std::vector<uint8_t> save(kv_session& s);
std::unique_ptr<kv_session> load(kv_model& model, const uint8_t* data, size_t size);

}  // namespace kv::engine
