// The session verbs' shared steps (session.cpp), used by the single-session verbs and by the
// batched ones (batch.cpp): capacity and token checks, page reservation with copy-on-write,
// the logits state a failed call restores, rollback. Internal to the engine.
#pragma once

#include <chrono>
#include <mutex>
#include <vector>

#include "engine/forward.h"
#include "engine/kv_pool.h"
#include "engine/session.h"

namespace kv::engine::detail {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0);

// The session's own scratch as a pass's activations (its single-session passes).
PassScratch own_scratch(kv_session& s);

// Positions a session may reach: n_ctx, or (windowed) as far as 32-bit positions go.
uint32_t max_positions(const kv_session& s);
// Throws KV_ERR_BAD_TOKEN for an id outside the vocabulary.
void check_tokens(const kv_session& s, const int32_t* ids, uint32_t n);

// The copy-on-write copies of one pass, with a reference held on each source page until they
// are known to have run: the table already points at the copies, so a pass that fails before its
// first part reached the GPU redoes them (the sources' other holders may have let go by then).
// window_*: the same for the session's windowed layer group, if it has one.
struct PendingCopies {
    KvPool* pool = nullptr;
    std::vector<kvcache::PageCopy> copies;
    KvPool* window_pool = nullptr;
    std::vector<kvcache::PageCopy> window_copies;
    PendingCopies() = default;
    PendingCopies(const PendingCopies&) = delete;
    PendingCopies& operator=(const PendingCopies&) = delete;
    bool empty() const { return copies.empty() && window_copies.empty(); }
    ~PendingCopies() {
        if (!copies.empty()) {
            std::lock_guard<std::mutex> lock(pool->mutex);
            for (const auto& c : copies) pool->pages.unref(c.src);
        }
        if (!window_copies.empty()) {
            std::lock_guard<std::mutex> lock(window_pool->mutex);
            for (const auto& c : window_copies) window_pool->pages.unref(c.src);
        }
    }
};

// Makes positions [n_tokens, n_tokens + T) of the table writable and publishes the block table.
// Throws KV_ERR_OUT_OF_DEVICE_MEMORY when the pool cannot give the pages (nothing reserved).
void reserve_pages(kv_session& s, uint32_t T, PendingCopies* pending);
// After a pass failed before its copy-on-write copies reached the GPU: runs them on their own.
void redo_copies(kv_session& s, const PendingCopies& pending);
// One single-session pass of `seg` (its pos0, n_tokens and outputs; session and copies are set
// here) over s.tokens: pages reserved, the pass run (copy-on-write copies redone if it never
// reached the GPU), the tokens committed.
void run_own_pass(kv_session& s, Segment seg);
// After a pass over tokens [p, p + T) of s.tokens completed: the tables take them, pages that
// left the session's window go back, n_past = p + T.
void commit_tokens(kv_session& s, uint32_t p, uint32_t T);
// At the end of a call that appended tokens (never inside one: its rollback needs the pages it
// began with): the windowed layer group lets go of the pages wholly before its window, less
// kWindowSlack positions (a truncate of up to that many tokens always works). No-op without a
// group or while hold_window_pages.
constexpr uint32_t kWindowSlack = 32;
void release_window_pages(kv_session& s);
// Prefix sharing for an empty session (s.tokens set, n_past 0): takes the cached pages of the
// longest prefix both layer groups hold, sets n_past and counts the hit. Returns n_past.
uint32_t match_prefix(kv_session& s);
// Drops cached positions [n, n_past).
void truncate_cache(kv_session& s, uint32_t n);
// Cuts both layer groups' tables to n positions (n_past untouched). Precondition as
// BlockTable::truncate: position n - 1 resident in each.
void truncate_tables(kv_session& s, uint32_t n);
// Writes the table's page ids where the shaders read them. Caller holds the pool mutex.
void publish_block_table(kv_session& s);
// The same for the windowed layer group's table. Caller holds the window pool's mutex.
void publish_window_block_table(kv_session& s);
// Copies whole pages (every layer's K then V page, for each id) between the pool and `host`
// (session_io.cpp), through the session's command stream.
void transfer_pages(kv_session& s, const std::vector<kvcache::PageId>& ids, uint8_t* host, bool to_device);

// What a call that fails must give back: the logits state from before it.
struct LogitsState {
    bool has_logits, host_logits_valid, next_token_valid;
    uint32_t logits_row;
    int32_t next_token;
    uint64_t logits_passes;
};
LogitsState logits_state(const kv_session& s);
// After a failed call: back to the first `n_past` positions; the logits from before come back
// when no pass of the call wrote them (see session.cpp).
void rollback(kv_session& s, uint32_t n_past, const LogitsState& before);

}  // namespace kv::engine::detail
