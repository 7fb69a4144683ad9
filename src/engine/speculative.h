// Speculative decoding, greedy (kv_decode_speculative): a cheap draft proposes the next k tokens,
// the session evaluates them in ONE pass (k + 1 rows, every row's logits), and keeps the longest
// prefix its own greedy choice agrees with, plus its next token. Output is token for token what
// kv_decode_step would give (within the fp32 rounding of a multi-row pass; see the test).
//
// Draft sources:
//   - prompt lookup (n-gram): the latest earlier occurrence of the last 3 (else 2, else 1) tokens
//     of the sequence proposes the tokens that followed it; free, no second model. Repetitive text
//     (code, quotes, summaries of the prompt) accepts often; nothing found means a plain step.
//   - a draft session of a smaller model with the same vocabulary: kept in step with the session
//     (its tokens are brought to the session's by truncate + prefill), then decoding k greedily.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <vector>

struct kv_session;

namespace kv::engine {

// Up to `k` tokens that followed the latest earlier occurrence of the last n tokens of `seq`
// (n = 3, 2, 1, longest first). Empty when none occurs.
std::vector<int32_t> ngram_draft(const std::vector<int32_t>& seq, uint32_t k);

// One speculative step (see above). `out` gets the tokens appended (at least one); with
// KV_END_OF_GENERATION its last entry is the end-of-generation token, not appended. `drafted`
// gets the number of draft tokens verified. Throws like decode_step; KV_ERR_UNSUPPORTED for a
// sampler that is not greedy.
kv_status decode_speculative(kv_session& s, kv_session* draft, uint32_t draft_n, std::vector<int32_t>& out,
                             uint32_t* drafted);

}  // namespace kv::engine
