// Many sessions in one forward pass (kv_decode_batch, kv_batch_eval): the policy above run_pass()
// that decides which rows join a pass, and the per-session bookkeeping around it.
//
// A batch is a list of items, one per session (a session appears once; all belong to one model).
// An item either decodes (samples the session's next token from its current logits with its own
// sampler, and runs it) or feeds given tokens (a prefill chunk, or a speculative verify that wants
// every row's logits). Items are placed in passes in order: a pass holds at most
// BatchScratch::kMaxRows rows (fewer where the device's storage-buffer range is smaller); a token
// item gets min(its tokens, its session's n_batch, the rows left in the pass) rows - it is never
// split over two passes, so a long prompt advances by one chunk per call and a decode batch is
// not held up by it (n_done says how far it got). Most calls are one pass; a batch of more decode
// items than a pass holds runs several, each session still exactly one step.
//
// Errors: arguments that make the whole call meaningless (NULL item session, a session twice,
// sessions of different models, a lost device) throw before anything changes. An item's own
// failure (no logits yet, context full, bad token, no pages) is its status: its session is left as
// it was, the others go on. A pass that fails (device lost, out of device memory at submit) rolls
// back every session of that pass and of the passes after it (their statuses carry the error),
// keeps what earlier passes did, and throws.
//
// Where the device cannot bind rows at arbitrary offsets (rows_bindable() false: a head size the
// storage-buffer offset alignment does not divide), or a session has KV_SESSION_NO_CACHE, the
// items concerned run one by one through the single-session verbs, with the same results.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "vk/command.h"
#include "vk/memory.h"

namespace kv::engine {

struct BatchItem {
    kv_session* session = nullptr;
    const int32_t* tokens = nullptr;  // null: decode one sampled token
    uint32_t n_tokens = 0;
    float* logits = nullptr;  // token items: every row's logits, [n_tokens][n_vocab] (verify)
    uint64_t logits_capacity = 0;  // floats
    // Results.
    int32_t token = -1;  // decode items: the sampled token (also on KV_END_OF_GENERATION)
    uint32_t n_done = 0;  // tokens that went into the cache (decode: 1 on KV_OK)
    kv_status status = KV_OK;
    std::string message;  // why, when status is an error
};

// A model's activations for passes of several sessions (grown on demand), with its own command
// stream. Guarded by kv_model::batch_mutex.
struct BatchScratch {
    static constexpr uint32_t kMaxRows = 512;
    vk::Buffer ids, x, h, q, k, v, attn, gate, up, logits;
    std::unique_ptr<vk::CommandStream> cs;
    uint32_t rows = 0, logit_rows = 0;
    PassScratch view();
};

// Throws for a batch that cannot run at all (see above), changing nothing.
void check_batch(const std::vector<BatchItem>& items);
// Runs the items (see above; check_batch first). Returns the number of passes it ran.
uint32_t eval_batch(std::vector<BatchItem>& items);

}  // namespace kv::engine
