// PagePool: bookkeeping for a fixed set of KV pages (ids [0, capacity)); no Vulkan. The engine
// owns the device memory ([n_pages][n_head_kv][page_size][head_dim] per layer) and follows the
// decisions made here: which page id to write, which page to copy where.
//
// Every page is in exactly one state:
//   kFree     ref 0, no tokens worth keeping, on the free list          (id < limit)
//   kCached   ref 0, a full page registered in the prefix index, on the LRU list (id < limit)
//   kInUse    ref > 0: held by block tables (each holder owns one reference); may be registered
//   kRetired  ref 0, id >= limit: outside the page budget, on no list, never handed out
// Hence free + cached + in_use + retired == capacity, and the prefix index holds no references.
// Both lists are intrusive doubly-linked lists threaded through the page array: push, pop and
// removal from the middle (a prefix hit pulling a cached page back out) are O(1).
//
// Budget (set_limit): only ids [0, limit) are handed out, and at most `limit` pages are in use at
// once. Shrinking evicts cached pages and drops free pages with ids >= limit at once; in-use pages
// there are unregistered from the index and retire when their last reference goes (the engine may
// shrink its buffers once pages_in_use_beyond_limit() is 0). Growing returns retired pages to the
// free list.
//
// allocate() prefers a free page, else evicts the least recently released cached page (dropping
// it from the index), else reports "out of pages" (std::nullopt) - an expected outcome. A broken
// precondition (unref of a free page, ...) is a bug: KV_CHECK throws kv::Error(KV_ERR_INTERNAL)
// before anything is modified.
//
// The pool also keeps a shadow of the tokens each page holds ([capacity][page_size]), written
// through write_tokens() by the page's only holder; the prefix index compares lookups against it.
//
// Not thread-safe: one owner (the engine's scheduler) serializes all calls.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "kvcache/prefix_index.h"

namespace kv::kvcache {

enum class PageState : uint8_t { kFree, kCached, kInUse, kRetired };

struct PoolStats {
    uint32_t capacity = 0;
    uint32_t limit = 0;
    uint32_t in_use = 0;      // ref > 0
    uint32_t cached = 0;      // ref 0, registered, on the LRU list
    uint32_t free = 0;        // on the free list
    uint32_t retired = 0;     // ref 0, id >= limit
    uint32_t registered = 0;  // pages in the prefix index (cached + in-use registered ones)
    uint64_t allocations = 0;
    uint64_t evictions = 0;  // cached pages dropped (to allocate, or by set_limit)
    uint64_t lookups = 0;    // prefix lookups
    uint64_t hits = 0;       // prefix lookups that returned a page
};

class PagePool {
public:
    // capacity: pages in the device pool; page_size: tokens per page (> 0).
    // hash: the prefix page hash (nullptr: chain_hash); tests pass a weak one to force collisions.
    PagePool(uint32_t capacity, uint32_t page_size, PrefixHashFn hash = nullptr);
    PagePool(const PagePool&) = delete;
    PagePool& operator=(const PagePool&) = delete;

    uint32_t capacity() const { return capacity_; }
    uint32_t page_size() const { return page_size_; }
    uint32_t limit() const { return limit_; }

    // ---- allocation and references ------------------------------------------------------
    // A page with ref 1, unregistered (its token shadow is stale). nullopt: out of pages.
    std::optional<PageId> allocate();
    // True when `n` allocate() calls in a row would all succeed (nothing is changed).
    bool can_allocate(uint32_t n) const { return n <= available(); }
    // Pages allocate() could hand out now: free + cached, within the limit.
    uint32_t available() const { return in_use_ >= limit_ ? 0 : limit_ - in_use_; }
    // Another holder of an in-use page. Precondition: ref > 0.
    void ref(PageId page);
    // Drops one reference. At 0 the page becomes cached (registered, id < limit), free, or
    // retired (id >= limit; unregistered first). Precondition: ref > 0.
    void unref(PageId page);
    uint32_t ref_count(PageId page) const;
    PageState state(PageId page) const;

    // ---- budget -------------------------------------------------------------------------
    // Usable ids become [0, limit), limit <= capacity. O(|limit - old limit|).
    void set_limit(uint32_t limit);
    uint32_t pages_in_use_beyond_limit() const { return in_use_beyond_limit_; }

    // ---- token shadow -------------------------------------------------------------------
    const kv_token* tokens(PageId page) const;
    // Writes tokens [offset, offset + n) of `page`. Precondition: ref == 1 and unregistered
    // (only an exclusively held, mutable page may change).
    void write_tokens(PageId page, uint32_t offset, const kv_token* tokens, uint32_t n);
    // Copies tokens [0, n) of `src` into `dst` (the shadow of a copy-on-write page copy).
    // Precondition: dst is exclusively held and unregistered, src is in use.
    void copy_tokens(PageId src, PageId dst, uint32_t n);

    // ---- prefix index -------------------------------------------------------------------
    uint64_t hash_page(uint64_t parent_hash, const kv_token* tokens) const {
        return index_.hash_page(parent_hash, tokens);
    }
    // Registers a full page (tokens already written, in use, id < limit) as the child of
    // `parent`; see PrefixIndex::insert for the returned key. A page beyond the limit is not
    // registered (none() is returned).
    PrefixKey register_page(PageId page, PrefixKey parent, uint64_t parent_hash, uint64_t hash);
    // Unregisters an in-use page before it is modified in place. Precondition: registered.
    void unregister_page(PageId page);
    bool registered(PageId page) const;
    bool key_live(PrefixKey key) const { return index_.live(key); }
    // The cached or in-use page holding `tokens` after `parent`, with a reference taken for the
    // caller (a cached page leaves the LRU list). Counts a lookup, and a hit when found.
    std::optional<PageId> lookup(PrefixKey parent, uint64_t parent_hash, uint64_t hash,
                                 const kv_token* tokens);
    PrefixKey key_of(PageId page) const { return index_.key_of(page); }

    // ---- introspection ------------------------------------------------------------------
    PoolStats stats() const;
    // Cached pages from least to most recently released (the eviction order). O(cached).
    std::vector<PageId> lru_order() const;
    // O(capacity) self-check of every invariant above (lists, counts, states, index).
    void check_invariants() const;

private:
    struct Page {
        uint32_t ref = 0;
        PageId prev = kNoPage, next = kNoPage;  // free list or LRU list links
        PageState state = PageState::kFree;
    };
    struct List {
        PageId head = kNoPage, tail = kNoPage;
        uint32_t size = 0;
    };
    void push_back(List& list, PageId page);
    void remove(List& list, PageId page);
    void check_list(const List& list, PageState state) const;
    void check_page(PageId page) const;
    // Drops a cached page: off the LRU list, out of the index.
    void evict(PageId page);

    uint32_t capacity_;
    uint32_t page_size_;
    uint32_t limit_;
    std::vector<Page> pages_;
    std::vector<kv_token> tokens_;  // [capacity][page_size]
    PrefixIndex index_;
    List free_, lru_;  // lru_: head = least recently released
    uint32_t in_use_ = 0, retired_ = 0, in_use_beyond_limit_ = 0;
    uint64_t allocations_ = 0, evictions_ = 0, lookups_ = 0, hits_ = 0;
};

}  // namespace kv::kvcache
