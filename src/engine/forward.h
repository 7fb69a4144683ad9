// The forward pass over a ragged batch of rows: one row per token, rows grouped in segments of
// consecutive tokens of one session. A single session's prefill chunk is one segment of many rows,
// a decode batch is one single-row segment per session, a speculative verify is a segment of k
// rows with every row's logits; kv_prefill, kv_decode_step, kv_session_eval and kv_decode_batch
// all run through run_pass().
//
// What is shared and what is per row:
//   - embedding, RMS norms and every matmul run once over all rows of the pass: each weight is read
//     once per pass, however many sessions it serves (decode is bound by reading weights);
//   - RoPE, the KV write and attention run per segment, over that segment's rows (bound as
//     sub-ranges of the pass's activations), with its session's block table, positions, window and
//     sinks and its session's split-KV scratch; segments of one stage are not separated by
//     barriers (they touch disjoint memory: each session's own pages after copy-on-write);
//   - the output head runs once over the rows whose logits are wanted (a segment's last row, or
//     all of its rows), and each segment's logits rows end in its session's `logits` buffer, where
//     its GPU argmax and host copy are made as for a single session.
// Every session of a pass belongs to the pass's model, uses the same cache type (one pool per
// layer is bound per segment, so mixed types would work, but callers group by type) and appears
// in one segment only. Row offsets must be bindable: see rows_bindable().
#pragma once

#include <vector>

#include "engine/model.h"
#include "kvcache/block_table.h"
#include "vk/command.h"
#include "vk/memory.h"

struct kv_session;

namespace kv::engine {

enum class LogitsMode { None, Last, All };

// The activations of one pass, f32, [rows][width] (widths as named), and the stream it records
// into. A session's own scratch (its single-session passes) or a model's batch scratch.
struct PassScratch {
    vk::Buffer* ids = nullptr;  // host-visible uint32 [rows]
    vk::Buffer *x = nullptr, *h = nullptr;       // [rows][n_embd] (h: also >= n_vocab floats)
    vk::Buffer *q = nullptr, *attn = nullptr;    // [rows][q_dim]
    vk::Buffer *k = nullptr, *v = nullptr;       // [rows][kv_dim]
    vk::Buffer *gate = nullptr, *up = nullptr;   // [rows][n_ff]
    vk::Buffer* logits = nullptr;                // [logit_rows][n_vocab]
    vk::CommandStream* cs = nullptr;
    uint32_t rows = 0, logit_rows = 0;
};

struct Segment {
    kv_session* session = nullptr;
    uint32_t pos0 = 0;      // the segment's tokens are session->tokens[pos0, pos0 + n_tokens)
    uint32_t n_tokens = 0;  // rows
    LogitsMode mode = LogitsMode::None;
    bool host_logits = false;  // copy the logits rows to the session's readback
    const std::vector<kvcache::PageCopy>* copies = nullptr;  // copy-on-write, before any write
    const std::vector<kvcache::PageCopy>* window_copies = nullptr;  // ... of the windowed layer group
    // Embeddings (a single-segment pass with mode None): leave the final hidden state of every
    // row, rms_norm(X) with the output norm (the output head's input), in the scratch's h rows.
    bool hidden = false;
};

// Whether rows of this model starting at any row index can be bound as sub-ranges (the
// device's minStorageBufferOffsetAlignment divides q_dim x 4 and kv_dim x 4 bytes). Only a pass
// of several segments needs it; otherwise callers run the sessions one by one.
bool rows_bindable(const kv_model& model);

// Records and runs the pass (in a few submissions, waited on together), writing K/V of every
// segment's positions into its session's cache (pages reserved and block tables published by
// the caller). Afterwards each segment with logits has them in its session's `logits` (rows from
// 0, or for a single-session pass on the session's own scratch, where they were computed), and
// the session's logits state (has_logits, next_token, host_logits) is refreshed. On an exception,
// every segment's session whose logits buffer may have been written has logits_passes bumped.
void run_pass(kv_model& model, PassScratch& scratch, std::vector<Segment>& segments);

}  // namespace kv::engine
