#include "kvcache/page_pool.h"

#include <algorithm>

#include "common/error.h"

namespace kv::kvcache {

PagePool::PagePool(uint32_t capacity, uint32_t page_size, PrefixHashFn hash)
    : capacity_(capacity),
      page_size_(page_size),
      limit_(capacity),
      pages_(capacity),
      tokens_(size_t(capacity) * page_size, kv_token(-1)),
      index_(capacity, page_size, tokens_.data(), hash) {
    KV_CHECK(page_size > 0 && capacity < kNoPage);
    for (PageId p = 0; p < capacity; ++p) push_back(free_, p);
}

// ---- intrusive lists ----------------------------------------------------------------------

void PagePool::push_back(List& list, PageId page) {
    Page& pg = pages_[page];
    pg.prev = list.tail;
    pg.next = kNoPage;
    if (list.tail != kNoPage) {
        pages_[list.tail].next = page;
    } else {
        list.head = page;
    }
    list.tail = page;
    ++list.size;
}

void PagePool::remove(List& list, PageId page) {
    Page& pg = pages_[page];
    if (pg.prev != kNoPage) {
        pages_[pg.prev].next = pg.next;
    } else {
        list.head = pg.next;
    }
    if (pg.next != kNoPage) {
        pages_[pg.next].prev = pg.prev;
    } else {
        list.tail = pg.prev;
    }
    pg.prev = pg.next = kNoPage;
    --list.size;
}

void PagePool::check_page(PageId page) const { KV_CHECK(page < capacity_); }

// ---- allocation and references ------------------------------------------------------------

void PagePool::evict(PageId page) {
    KV_CHECK(pages_[page].state == PageState::kCached);
    remove(lru_, page);
    index_.erase(page);
    pages_[page].state = PageState::kFree;
    ++evictions_;
}

std::optional<PageId> PagePool::allocate() {
    if (in_use_ >= limit_) return std::nullopt;
    PageId page;
    if (free_.head != kNoPage) {
        page = free_.head;
        remove(free_, page);
    } else {
        // in_use < limit and every id < limit is free, cached or in use: a cached page exists.
        KV_CHECK(lru_.head != kNoPage);
        page = lru_.head;
        evict(page);
    }
    Page& pg = pages_[page];
    KV_CHECK(pg.ref == 0 && page < limit_);
    pg.ref = 1;
    pg.state = PageState::kInUse;
    ++in_use_;
    ++allocations_;
    return page;
}

void PagePool::ref(PageId page) {
    check_page(page);
    Page& pg = pages_[page];
    KV_CHECK(pg.state == PageState::kInUse && pg.ref > 0 && pg.ref < UINT32_MAX);
    ++pg.ref;
}

void PagePool::unref(PageId page) {
    check_page(page);
    Page& pg = pages_[page];
    KV_CHECK(pg.state == PageState::kInUse && pg.ref > 0);
    if (--pg.ref > 0) return;
    --in_use_;
    if (page >= limit_) {
        if (index_.registered(page)) index_.erase(page);  // (set_limit unregisters; defensive)
        pg.state = PageState::kRetired;
        ++retired_;
        --in_use_beyond_limit_;
    } else if (index_.registered(page)) {
        pg.state = PageState::kCached;
        push_back(lru_, page);  // most recently released at the tail
    } else {
        pg.state = PageState::kFree;
        push_back(free_, page);
    }
}

uint32_t PagePool::ref_count(PageId page) const {
    check_page(page);
    return pages_[page].ref;
}

PageState PagePool::state(PageId page) const {
    check_page(page);
    return pages_[page].state;
}

// ---- budget -------------------------------------------------------------------------------

void PagePool::set_limit(uint32_t limit) {
    KV_CHECK(limit <= capacity_);
    if (limit < limit_) {
        for (PageId p = limit; p < limit_; ++p) {
            Page& pg = pages_[p];
            switch (pg.state) {
                case PageState::kCached:
                    remove(lru_, p);
                    index_.erase(p);
                    ++evictions_;
                    pg.state = PageState::kRetired;
                    ++retired_;
                    break;
                case PageState::kFree:
                    remove(free_, p);
                    pg.state = PageState::kRetired;
                    ++retired_;
                    break;
                case PageState::kInUse:
                    if (index_.registered(p)) index_.erase(p);
                    ++in_use_beyond_limit_;
                    break;
                case PageState::kRetired:
                    KV_CHECK(false);
            }
        }
    } else {
        for (PageId p = limit_; p < limit; ++p) {
            Page& pg = pages_[p];
            if (pg.state == PageState::kRetired) {
                pg.state = PageState::kFree;
                --retired_;
                push_back(free_, p);
            } else {
                KV_CHECK(pg.state == PageState::kInUse);
                --in_use_beyond_limit_;
            }
        }
    }
    limit_ = limit;
}

// ---- token shadow -------------------------------------------------------------------------

const kv_token* PagePool::tokens(PageId page) const {
    check_page(page);
    return tokens_.data() + size_t(page) * page_size_;
}

void PagePool::write_tokens(PageId page, uint32_t offset, const kv_token* tokens, uint32_t n) {
    check_page(page);
    KV_CHECK(offset <= page_size_ && n <= page_size_ - offset);
    KV_CHECK(pages_[page].ref == 1 && !index_.registered(page));
    std::copy(tokens, tokens + n, tokens_.begin() + size_t(page) * page_size_ + offset);
}

void PagePool::copy_tokens(PageId src, PageId dst, uint32_t n) {
    check_page(src);
    check_page(dst);
    KV_CHECK(n <= page_size_ && src != dst);
    KV_CHECK(pages_[src].ref > 0 && pages_[dst].ref == 1 && !index_.registered(dst));
    auto from = tokens_.begin() + size_t(src) * page_size_;
    std::copy(from, from + n, tokens_.begin() + size_t(dst) * page_size_);
}

// ---- prefix index -------------------------------------------------------------------------

PrefixKey PagePool::register_page(PageId page, PrefixKey parent, uint64_t parent_hash,
                                  uint64_t hash) {
    check_page(page);
    KV_CHECK(pages_[page].state == PageState::kInUse && !index_.registered(page));
    if (page >= limit_) return PrefixKey::none();
    return index_.insert(page, parent, parent_hash, hash);
}

void PagePool::unregister_page(PageId page) {
    check_page(page);
    KV_CHECK(pages_[page].state == PageState::kInUse && index_.registered(page));
    index_.erase(page);
}

bool PagePool::registered(PageId page) const {
    check_page(page);
    return index_.registered(page);
}

std::optional<PageId> PagePool::lookup(PrefixKey parent, uint64_t parent_hash, uint64_t hash,
                                       const kv_token* tokens) {
    ++lookups_;
    std::optional<PageId> found = index_.find(parent, parent_hash, hash, tokens);
    if (!found) return std::nullopt;
    PageId page = *found;
    Page& pg = pages_[page];
    if (pg.state == PageState::kCached) {
        // Reviving a cached page needs a budget slot like an allocation would.
        if (in_use_ >= limit_) return std::nullopt;
        remove(lru_, page);
        pg.state = PageState::kInUse;
        pg.ref = 1;
        ++in_use_;
    } else {
        KV_CHECK(pg.state == PageState::kInUse);
        ++pg.ref;
    }
    ++hits_;
    return page;
}

// ---- introspection ------------------------------------------------------------------------

PoolStats PagePool::stats() const {
    PoolStats s;
    s.capacity = capacity_;
    s.limit = limit_;
    s.in_use = in_use_;
    s.cached = lru_.size;
    s.free = free_.size;
    s.retired = retired_;
    s.registered = uint32_t(index_.size());
    s.allocations = allocations_;
    s.evictions = evictions_;
    s.lookups = lookups_;
    s.hits = hits_;
    return s;
}

std::vector<PageId> PagePool::lru_order() const {
    std::vector<PageId> out;
    out.reserve(lru_.size);
    for (PageId p = lru_.head; p != kNoPage; p = pages_[p].next) out.push_back(p);
    return out;
}

void PagePool::check_list(const List& list, PageState state) const {
    uint32_t n = 0;
    PageId prev = kNoPage;
    for (PageId p = list.head; p != kNoPage; p = pages_[p].next) {
        KV_CHECK(p < capacity_ && pages_[p].state == state && pages_[p].prev == prev);
        prev = p;
        KV_CHECK(++n <= list.size);
    }
    KV_CHECK(n == list.size && list.tail == prev);
}

void PagePool::check_invariants() const {
    check_list(free_, PageState::kFree);
    check_list(lru_, PageState::kCached);
    uint32_t counts[4] = {0, 0, 0, 0}, beyond = 0;
    for (PageId p = 0; p < capacity_; ++p) {
        const Page& pg = pages_[p];
        ++counts[int(pg.state)];
        switch (pg.state) {
            case PageState::kFree:
                KV_CHECK(pg.ref == 0 && p < limit_ && !index_.registered(p));
                break;
            case PageState::kCached:
                KV_CHECK(pg.ref == 0 && p < limit_ && index_.registered(p));
                break;
            case PageState::kInUse:
                KV_CHECK(pg.ref > 0);
                if (p >= limit_) {
                    ++beyond;
                    KV_CHECK(!index_.registered(p));
                }
                break;
            case PageState::kRetired:
                KV_CHECK(pg.ref == 0 && p >= limit_ && !index_.registered(p));
                KV_CHECK(pg.prev == kNoPage && pg.next == kNoPage);
                break;
        }
    }
    KV_CHECK(counts[int(PageState::kFree)] == free_.size);
    KV_CHECK(counts[int(PageState::kCached)] == lru_.size);
    KV_CHECK(counts[int(PageState::kInUse)] == in_use_);
    KV_CHECK(counts[int(PageState::kRetired)] == retired_);
    KV_CHECK(beyond == in_use_beyond_limit_);
    KV_CHECK(free_.size + lru_.size + in_use_ + retired_ == capacity_);
    index_.check_invariants();
}

}  // namespace kv::kvcache
