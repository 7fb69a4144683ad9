// kv_session_embeddings: the final hidden state (rms_norm with the output norm: the output head's
// input) of tokens evaluated after the session's own, pooled, with the session left as it was.
//
// The tokens run through the model like a prefill (in passes of up to n_batch rows, their K/V
// written to pages reserved for them, so each attends to the session's tokens and to those before
// it), with no output head; each pass leaves its rows' hidden states in the session's h scratch
// (Segment::hidden), read back per pass. Then the cache is cut back to where it was and the
// logits state from before comes back (rollback: no pass of this call wrote the logits).
#include <cmath>
#include <cstring>

#include "engine/runtime.h"
#include "engine/session_ops.h"

namespace kv::engine {

using namespace detail;

void embeddings(kv_session& s, const int32_t* ids, uint32_t n, uint32_t flags, float* out) {
    if (n == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_tokens is 0");
    if (!ids) fail(KV_ERR_INVALID_ARGUMENT, "tokens is NULL");
    if (!out) fail(KV_ERR_INVALID_ARGUMENT, "out is NULL");
    if (flags & ~uint32_t(KV_EMBED_MEAN | KV_EMBED_NORMALIZE)) fail(KV_ERR_INVALID_ARGUMENT, "unknown embedding flags 0x%x", flags);
    if (s.window && s.n_past > 0)
        fail(KV_ERR_UNSUPPORTED,
             "embeddings after the tokens of a sliding-window session would release pages it still needs; reset it first");
    if (uint64_t(s.n_past) + n > max_positions(s))
        fail(KV_ERR_CONTEXT_FULL, "%u tokens do not fit: %u of %u positions are used", n, s.n_past, max_positions(s));
    check_tokens(s, ids, n);
    const uint32_t E = s.model->config().n_embd;
    const bool mean = flags & KV_EMBED_MEAN;
    std::vector<double> sum(E, 0.0);
    std::vector<float> rows;
    const uint32_t old_past = s.n_past;
    const LogitsState before = logits_state(s);
    s.tokens.insert(s.tokens.end(), ids, ids + n);
    const uint32_t total = uint32_t(s.tokens.size());
    try {
        for (uint32_t p = old_past; p < total;) {
            const uint32_t T = std::min(s.n_batch, total - p);
            Segment seg;
            seg.pos0 = p;
            seg.n_tokens = T;
            seg.mode = LogitsMode::None;
            seg.hidden = true;
            run_own_pass(s, seg);
            // Every row for the mean, the last row of the last pass otherwise.
            const uint32_t first = mean ? 0 : (p + T == total ? T - 1 : T);
            if (first < T) {
                rows.resize(size_t(T - first) * E);
                s.transfer->download(s.h, uint64_t(first) * E * 4, rows.data(), uint64_t(T - first) * E * 4);
                for (uint32_t r = 0; r < T - first; ++r)
                    for (uint32_t i = 0; i < E; ++i) sum[i] += double(rows[size_t(r) * E + i]);
            }
            p += T;
        }
    } catch (...) {
        rollback(s, old_past, before);
        throw;
    }
    rollback(s, old_past, before);  // the session as it was: its tokens, pages and logits
    const double scale = mean ? 1.0 / double(n) : 1.0;
    double norm2 = 0;
    for (uint32_t i = 0; i < E; ++i) norm2 += (sum[i] * scale) * (sum[i] * scale);
    const double k = (flags & KV_EMBED_NORMALIZE) && norm2 > 0 ? scale / std::sqrt(norm2) : scale;
    for (uint32_t i = 0; i < E; ++i) out[i] = float(sum[i] * k);
}

}  // namespace kv::engine
