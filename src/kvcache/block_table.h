// BlockTable: one sequence's view of the paged KV cache - logical page i holds positions
// [i * page_size, (i + 1) * page_size) - plus the tokens' prefix-hash chain. No Vulkan: every
// mutator returns what the engine must do on the GPU (which pages to copy) and the engine uploads
// page_ids() before the next attention dispatch.
//
// Protocol for writing K/V (prefill of n tokens, or decode with n = 1):
//   1. reserve(n, &copies)  - makes positions [n_tokens, n_tokens + n) writable; on kOk the engine
//                             first performs `copies` (device page copies, in order), then
//   2. writes K/V of those positions into page_ids()[pos / page_size], slot pos % page_size,
//   3. commit(tokens, n)    - records the tokens; full pages enter the prefix index.
// On kOutOfPages nothing changed (table and pool exactly as before).
//
// Invariants (check_invariants() verifies them):
//   - n_tokens <= writable_end <= page_ids().size() * page_size.
//   - This table owns exactly one pool reference per non-hole entry of page_ids().
//   - Pages overlapping the writable range [n_tokens, writable_end) have ref 1 and are not in
//     the prefix index: nobody else can see a write into them.
//   - Pages at index >= ceil(n_tokens / page_size) exist only as reserved capacity (same rule).
//   - A full page i (i < n_tokens / page_size) has its chained hash in page_hash(i); its key
//     names the registered page with the same content and parent (ours or an identical page
//     another sequence registered first - ours then stays unregistered, no dedupe/swap), or
//     none() when its parent chain is no longer in the index.
//   - Holes (kNoPage) only cover positions released by release_outside_window(); the page
//     holding position n_tokens - 1 is never a hole.
//
// Copy-on-write: the page holding position n_tokens (when partially filled) may be shared
// (ref > 1 after fork() or a prefix hit) or registered (full, then truncated into). reserve()
// then either copies it to a fresh page (shared: the original keeps its content and its index
// entry for the other holders) or, when we are its only holder, unregisters it and writes in
// place. A full page is never written again, so fork() and prefix hits share full pages forever.
//
// Ownership: the PagePool must outlive every BlockTable made from it. Destruction, clear() and
// reassignment return every page. Movable, not copyable (fork() is the explicit copy).
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <vector>

#include "kvcache/page_pool.h"

namespace kv::kvcache {

// A device copy the engine must perform before writing: positions [0, n_tokens) of page src
// to the same slots of page dst (copying the whole page is also correct).
struct PageCopy {
    PageId src = kNoPage;
    PageId dst = kNoPage;
    uint32_t n_tokens = 0;
};

enum class ReserveStatus { kOk, kOutOfPages };

class BlockTable {
public:
    // root_hash: the chained hash of the empty prefix (the parent of page 0). Sequences whose
    // pages hold different K/V for the same tokens (a LongRoPE model's sessions rotate keys with
    // the long or the short factor table by their context size) use different roots: they never
    // share pages through the prefix index. fork() keeps the root.
    explicit BlockTable(PagePool& pool, uint64_t root_hash = kRootHash);
    ~BlockTable();
    BlockTable(BlockTable&& other) noexcept;
    BlockTable& operator=(BlockTable&& other) noexcept;
    BlockTable(const BlockTable&) = delete;
    BlockTable& operator=(const BlockTable&) = delete;

    // Makes [n_tokens, n_tokens + n_new) writable: allocates missing pages and resolves a shared
    // or registered partial page (copy-on-write; a copy is appended to *copies, which may be
    // null only when the caller knows no copy can occur). All or nothing: on kOutOfPages neither
    // the table nor the pool changed. A larger earlier reservation is kept.
    [[nodiscard]] ReserveStatus reserve(uint32_t n_new, std::vector<PageCopy>* copies);
    // Pages reserve(n_new) would take from the pool now (new pages + a copy-on-write page):
    // reserve succeeds iff pool().can_allocate(pages_needed(n_new)). For schedulers that plan
    // preemption before trying.
    uint32_t pages_needed(uint32_t n_new) const;
    // Records tokens for positions [n_tokens, n_tokens + n) and advances n_tokens. Precondition:
    // n_tokens + n <= writable_end() (reserve() first; fork/truncate end the reservation).
    void commit(const kv_token* tokens, uint32_t n);
    void commit(const std::vector<kv_token>& tokens) {
        commit(tokens.data(), uint32_t(tokens.size()));
    }

    // For an empty table: takes references to the indexed pages (cached, or in use by other
    // sessions) holding the longest prefix of `tokens` in whole pages, leaving at least one token
    // uncovered (the engine still computes the last prompt token's logits). Returns the tokens
    // covered (a multiple of page_size); n_tokens becomes that. The engine then reserves/prefills
    // tokens[covered, n).
    uint32_t match_prefix(const kv_token* tokens, uint32_t n);
    uint32_t match_prefix(const std::vector<kv_token>& tokens) {
        return match_prefix(tokens.data(), uint32_t(tokens.size()));
    }

    // A new table sharing every page holding [0, n_tokens) (ref++ each). Reserved capacity
    // beyond stays ours. Both tables' next write into a shared partial page copies it; if
    // n_tokens is not page-aligned this table's reservation ends (reserve again).
    BlockTable fork();

    // Drops positions [n, n_tokens). Pages wholly beyond (index >= ceil(n / page_size)) are
    // released (last first); a kept partial page keeps its content and index entry until the
    // next reserve() decides copy vs unregister. Ends the reservation. Precondition:
    // n <= n_tokens and, if n > 0, position n - 1 is resident (not released by the window).
    void truncate(uint32_t n);

    // Sliding window with attention sinks: releases every page wholly inside
    // [sinks, n_tokens - window) - i.e. outside the window [n_tokens - window, n_tokens) and
    // holding none of the first `sinks` positions - leaving kNoPage holes so logical indices stay
    // put. Returns the number of pages released. Amortized O(1) per released page when called
    // with the same `sinks` every step. Precondition: window >= 1.
    uint32_t release_outside_window(uint32_t window, uint32_t sinks);

    // Releases every page (last first); the table is empty and reusable.
    void clear();

    // ---- accessors for the engine ------------------------------------------------------------
    PagePool& pool() const { return *pool_; }
    uint32_t page_size() const { return page_size_; }
    uint32_t n_tokens() const { return n_tokens_; }
    uint32_t writable_end() const { return writable_end_; }
    // Logical page ids (holes = kNoPage), ready to upload as the uint32 block table.
    const std::vector<PageId>& page_ids() const { return pages_; }
    // The page holding `pos` (kNoPage once released). Precondition: pos < n_logical_pages() *
    // page_size (reserved capacity included).
    PageId page_at(uint32_t pos) const;
    bool resident(uint32_t pos) const { return page_at(pos) != kNoPage; }
    uint32_t n_logical_pages() const { return uint32_t(pages_.size()); }
    uint32_t pages_used() const { return pages_used_; }  // non-hole pages (references held)
    // Chained hash of full page i (i < n_tokens / page_size).
    uint64_t page_hash(uint32_t i) const;

    // O(pages) self-check of the invariants above (KV_CHECK).
    void check_invariants() const;

private:
    struct Chain {
        uint64_t hash = 0;                  // valid for full pages
        PrefixKey key = PrefixKey::none();  // see the invariants
    };
    struct ReservePlan {
        bool needed = false;      // false: [n_tokens, n_tokens + n_new) is already writable
        bool copy = false;        // the first writable page is shared: copy-on-write
        bool unregister = false;  // ... or ours but registered: unregister, write in place
        uint32_t n_pages = 0;     // logical pages needed in total
        uint32_t n_alloc = 0;     // new pages to append
        uint64_t end = 0;         // n_tokens + n_new
    };
    ReservePlan plan(uint32_t n_new) const;
    void release_page(uint32_t index);  // unref + hole
    void release_from(uint32_t index);  // pages [index, end), last first; shrinks the vectors
    uint64_t parent_hash(uint32_t i) const { return i == 0 ? root_hash_ : chain_[i - 1].hash; }
    PrefixKey parent_key(uint32_t i) const {
        return i == 0 ? PrefixKey::root() : chain_[i - 1].key;
    }

    PagePool* pool_;
    uint32_t page_size_;
    uint32_t n_tokens_ = 0;
    uint32_t writable_end_ = 0;
    uint32_t pages_used_ = 0;
    std::vector<PageId> pages_;  // [logical page] -> page id or kNoPage
    std::vector<Chain> chain_;   // parallel to pages_
    // release_outside_window: pages [sink_pages, window_scan_) are known released or sinks.
    uint32_t window_scan_ = 0;
    uint32_t window_sinks_ = 0;
    uint64_t root_hash_ = kRootHash;
};

}  // namespace kv::kvcache
