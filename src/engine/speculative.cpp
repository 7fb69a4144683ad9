#include "engine/speculative.h"

#include <algorithm>
#include <cstring>

#include "engine/runtime.h"
#include "engine/session_ops.h"

namespace kv::engine {

using namespace detail;

std::vector<int32_t> ngram_draft(const std::vector<int32_t>& seq, uint32_t k) {
    const size_t n_seq = seq.size();
    for (size_t n = 3; n >= 1; --n) {
        if (n_seq < n + 1) continue;
        // The key is seq[n_seq - n, n_seq); look for it ending at e < n_seq - 1, latest first.
        for (size_t e = n_seq - 1; e-- > n - 1;) {
            if (!std::equal(seq.end() - long(n), seq.end(), seq.begin() + long(e + 1 - n))) continue;
            std::vector<int32_t> out;
            for (size_t i = e + 1; i < n_seq && out.size() < k; ++i) out.push_back(seq[i]);
            if (!out.empty()) return out;
        }
    }
    return {};
}

namespace {

// Brings `draft` to hold exactly `seq` (a truncate to the common prefix, then a prefill of the rest).
void sync_draft(kv_session& draft, const std::vector<int32_t>& seq) {
    size_t common = 0;
    while (common < draft.tokens.size() && common < seq.size() && draft.tokens[common] == seq[common]) ++common;
    // Keep at least one token to feed, so the draft has the logits after the whole sequence.
    if (common == seq.size()) --common;
    if (common < draft.tokens.size()) {
        if (common > 0) {
            try {
                truncate(draft, uint32_t(common));
            } catch (const Error& e) {
                // A windowed draft may no longer hold what the cut needs (it said so before changing
                // anything): it starts over.
                if (e.status() != KV_ERR_INVALID_ARGUMENT) throw;
                common = 0;
            }
        }
        if (common == 0) reset(draft);
    }
    prefill(draft, seq.data() + common, uint32_t(seq.size() - common), nullptr);
}

}  // namespace

kv_status decode_speculative(kv_session& s, kv_session* draft, uint32_t draft_n, std::vector<int32_t>& out,
                             uint32_t* drafted) {
    out.clear();
    if (drafted) *drafted = 0;
    const Clock::time_point t_start = Clock::now();
    if (!s.sampler->greedy())
        fail(KV_ERR_UNSUPPORTED, "speculative decoding is greedy only (temperature 0); use kv_decode_step to sample");
    if (s.sampler->grammar())
        fail(KV_ERR_UNSUPPORTED, "speculative decoding does not take a grammar; use kv_decode_step or kv_decode_batch");
    if (!s.has_logits) fail(KV_ERR_BAD_STATE, "no logits yet: call kv_prefill first");
    if (s.flags & KV_SESSION_NO_CACHE) fail(KV_ERR_UNSUPPORTED, "speculative decoding needs the KV cache (KV_SESSION_NO_CACHE is set)");
    const uint32_t max_rows = std::min(s.n_batch, s.max_logit_rows);
    if (draft_n == 0 || draft_n + 1 > max_rows)
        fail(KV_ERR_INVALID_ARGUMENT, "draft_n is %u: it must be in [1, %u] for this session", draft_n, max_rows - 1);
    if (draft) {
        if (draft == &s) fail(KV_ERR_INVALID_ARGUMENT, "the draft is the session itself");
        if (draft->model->config().n_vocab != s.model->config().n_vocab)
            fail(KV_ERR_INVALID_ARGUMENT, "the draft model's vocabulary (%u) is not the session's (%u)",
                 draft->model->config().n_vocab, s.model->config().n_vocab);
    }
    if (s.n_past >= max_positions(s))
        fail(KV_ERR_CONTEXT_FULL, "the context is full (%u of %u positions)", s.n_past, max_positions(s));
    const uint32_t V = s.model->config().n_vocab;

    // The session's own next token, as kv_decode_step would pick it.
    int32_t t0;
    if (s.sampler->gpu_greedy() && s.next_token_valid) {
        t0 = s.next_token;
    } else {
        std::vector<float> l(V);
        copy_logits(s, l.data());
        t0 = s.sampler->sample(l.data(), V, s.tokens);
    }
    if (s.model->tokenizer->is_eog(t0)) {
        out.push_back(t0);
        return KV_END_OF_GENERATION;
    }

    // Draft up to k tokens to follow t0.
    const uint32_t k = std::min<uint32_t>(draft_n, max_positions(s) - s.n_past - 1);
    std::vector<int32_t> seq = s.tokens;
    seq.push_back(t0);
    std::vector<int32_t> guess;
    if (k > 0) {
        if (!draft) {
            guess = ngram_draft(seq, k);
        } else {
            sync_draft(*draft, seq);
            for (uint32_t i = 0; i < k; ++i) {
                int32_t d;
                if (decode_step(*draft, &d) != KV_OK) break;
                guess.push_back(d);
            }
        }
    }
    if (drafted) *drafted = uint32_t(guess.size());

    // Verify t0 and the guesses in one pass, with every row's logits.
    std::vector<int32_t> feed{t0};
    feed.insert(feed.end(), guess.begin(), guess.end());
    std::vector<float> rows(feed.size() * size_t(V));
    const uint32_t old_past = s.n_past;
    const uint64_t prefilled = s.tokens_prefilled;
    const uint32_t last_prefill_tokens = s.last_prefill_tokens;
    const double last_prefill_ms = s.last_prefill_ms, total_prefill_ms = s.total_prefill_ms;
    // The windowed layer group keeps the verify pass's pages until the rejected tokens are cut
    // (their window reaches further back than the kept tokens').
    s.hold_window_pages = true;
    try {
        prefill(s, feed.data(), uint32_t(feed.size()), rows.data());
    } catch (...) {
        s.hold_window_pages = false;
        throw;
    }
    s.hold_window_pages = false;
    // That was decoding, not prefill, in the statistics.
    s.tokens_prefilled = prefilled;
    s.last_prefill_tokens = last_prefill_tokens;
    s.last_prefill_ms = last_prefill_ms;
    s.total_prefill_ms = total_prefill_ms;

    // Accept: t0, then each guess the session's own greedy choice after the previous one agrees
    // with. An agreed end-of-generation token ends it (reported, not kept).
    out.push_back(t0);
    std::vector<int32_t> history(s.tokens.begin(), s.tokens.begin() + old_past + 1);
    kv_status status = KV_OK;
    size_t kept = 1;  // tokens of `feed` that stay
    for (size_t i = 0; i < guess.size(); ++i) {
        const int32_t g = s.sampler->sample(rows.data() + i * V, V, history);
        if (g != guess[i]) break;
        out.push_back(g);
        if (s.model->tokenizer->is_eog(g)) {
            status = KV_END_OF_GENERATION;
            break;
        }
        history.push_back(g);
        ++kept;
    }
    if (kept < feed.size()) {
        // Drop the rejected guesses' positions; the logits after the last kept token are row
        // kept - 1 of the pass (on the GPU too: the session's logits buffer holds every row).
        truncate_cache(s, old_past + uint32_t(kept));
        s.tokens.resize(old_past + kept);
        s.logits_row = uint32_t(kept - 1);
        s.host_logits.assign(rows.begin() + long((kept - 1) * V), rows.begin() + long(kept * V));
        s.host_logits_valid = true;
        s.next_token_valid = false;
    }
    release_window_pages(s);
    s.tokens_decoded += kept;
    // Decode time, as for kv_decode_step: the draft, the verify pass and the acceptance.
    s.last_decode_ms = ms_since(t_start);
    s.total_decode_ms += s.last_decode_ms;
    return status;
}

}  // namespace kv::engine
