#include "kvcache/block_table.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace kv::kvcache {

namespace {
uint32_t ceil_div(uint64_t a, uint32_t b) { return uint32_t((a + b - 1) / b); }
}  // namespace

BlockTable::BlockTable(PagePool& pool, uint64_t root_hash)
    : pool_(&pool), page_size_(pool.page_size()), root_hash_(root_hash) {}

BlockTable::~BlockTable() {
    if (pool_) {
        // Releasing pages cannot fail while the invariants hold; never throw from a destructor.
        try {
            clear();
        } catch (...) {
        }
    }
}

BlockTable::BlockTable(BlockTable&& o) noexcept
    : pool_(o.pool_),
      page_size_(o.page_size_),
      n_tokens_(std::exchange(o.n_tokens_, 0)),
      writable_end_(std::exchange(o.writable_end_, 0)),
      pages_used_(std::exchange(o.pages_used_, 0)),
      pages_(std::move(o.pages_)),
      chain_(std::move(o.chain_)),
      window_scan_(std::exchange(o.window_scan_, 0)),
      window_sinks_(std::exchange(o.window_sinks_, 0)),
      root_hash_(o.root_hash_) {
    o.pages_.clear();
    o.chain_.clear();
}

BlockTable& BlockTable::operator=(BlockTable&& o) noexcept {
    if (this == &o) return *this;
    try {
        clear();
    } catch (...) {
    }
    pool_ = o.pool_;
    page_size_ = o.page_size_;
    n_tokens_ = std::exchange(o.n_tokens_, 0);
    writable_end_ = std::exchange(o.writable_end_, 0);
    pages_used_ = std::exchange(o.pages_used_, 0);
    pages_ = std::move(o.pages_);
    chain_ = std::move(o.chain_);
    o.pages_.clear();
    o.chain_.clear();
    window_scan_ = std::exchange(o.window_scan_, 0);
    window_sinks_ = std::exchange(o.window_sinks_, 0);
    root_hash_ = o.root_hash_;
    return *this;
}

// ---- writing ------------------------------------------------------------------------------

BlockTable::ReservePlan BlockTable::plan(uint32_t n_new) const {
    KV_CHECK(n_new <= UINT32_MAX - n_tokens_);
    ReservePlan plan;
    plan.end = uint64_t(n_tokens_) + n_new;
    if (n_new == 0 || plan.end <= writable_end_) return plan;
    plan.needed = true;
    // Only the page holding position n_tokens can be shared or registered (see the header).
    const uint32_t first = n_tokens_ / page_size_;
    if (first < pages_.size()) {
        const PageId p = pages_[first];
        KV_CHECK(p != kNoPage);
        if (pool_->ref_count(p) > 1) {
            plan.copy = true;
        } else if (pool_->registered(p)) {
            plan.unregister = true;
        }
    }
    plan.n_pages = ceil_div(plan.end, page_size_);
    plan.n_alloc = plan.n_pages > pages_.size() ? plan.n_pages - uint32_t(pages_.size()) : 0;
    return plan;
}

uint32_t BlockTable::pages_needed(uint32_t n_new) const {
    const ReservePlan p = plan(n_new);
    return p.n_alloc + (p.copy ? 1 : 0);
}

ReserveStatus BlockTable::reserve(uint32_t n_new, std::vector<PageCopy>* copies) {
    const ReservePlan pl = plan(n_new);
    if (!pl.needed) return ReserveStatus::kOk;
    const bool copy = pl.copy, unregister = pl.unregister;
    const uint32_t first = n_tokens_ / page_size_, need = pl.n_pages, n_alloc = pl.n_alloc;
    const uint64_t end = pl.end;
    if (!pool_->can_allocate(n_alloc + (copy ? 1 : 0))) return ReserveStatus::kOutOfPages;

    // Everything that may throw (host allocations, argument checks) before the pool changes.
    KV_CHECK(!copy || copies != nullptr);
    pages_.reserve(need);
    chain_.reserve(need);
    if (copy && copies->size() == copies->capacity()) copies->reserve(2 * copies->size() + 1);

    if (copy) {
        const PageId src = pages_[first];
        const PageId dst = *pool_->allocate();
        const uint32_t valid = n_tokens_ % page_size_;
        pool_->copy_tokens(src, dst, valid);
        pool_->unref(src);  // others still hold it (ref was > 1); its index entry stays
        pages_[first] = dst;
        chain_[first] = Chain{};
        copies->push_back(PageCopy{src, dst, valid});
    } else if (unregister) {
        pool_->unregister_page(pages_[first]);  // ours alone: modified in place
        chain_[first] = Chain{};
    }
    for (uint32_t i = 0; i < n_alloc; ++i) {
        pages_.push_back(*pool_->allocate());
        chain_.push_back(Chain{});
        ++pages_used_;
    }
    writable_end_ = uint32_t(end);
    return ReserveStatus::kOk;
}

void BlockTable::commit(const kv_token* tokens, uint32_t n) {
    KV_CHECK(n <= writable_end_ - n_tokens_ && (tokens != nullptr || n == 0));
    while (n > 0) {
        const uint32_t i = n_tokens_ / page_size_, offset = n_tokens_ % page_size_;
        const uint32_t k = std::min(page_size_ - offset, n);
        const PageId page = pages_[i];
        pool_->write_tokens(page, offset, tokens, k);  // checks: ref 1, unregistered
        n_tokens_ += k;
        tokens += k;
        n -= k;
        if (offset + k == page_size_) {  // page i is full: hash it and offer it to the index
            Chain& c = chain_[i];
            c.hash = pool_->hash_page(parent_hash(i), pool_->tokens(page));
            const PrefixKey parent = parent_key(i);
            c.key = parent.valid() ? pool_->register_page(page, parent, parent_hash(i), c.hash)
                                   : PrefixKey::none();
        }
    }
}

// ---- sharing ------------------------------------------------------------------------------

uint32_t BlockTable::match_prefix(const kv_token* tokens, uint32_t n) {
    KV_CHECK(n_tokens_ == 0 && pages_.empty() && (tokens != nullptr || n == 0));
    if (n == 0) return 0;
    const uint32_t max_pages = (n - 1) / page_size_;  // whole pages, >= 1 token left over
    pages_.reserve(max_pages);
    chain_.reserve(max_pages);
    for (uint32_t i = 0; i < max_pages; ++i) {
        const PrefixKey parent = parent_key(i);
        if (!parent.valid()) break;
        const kv_token* t = tokens + size_t(i) * page_size_;
        const uint64_t hash = pool_->hash_page(parent_hash(i), t);
        std::optional<PageId> page = pool_->lookup(parent, parent_hash(i), hash, t);
        if (!page) break;
        pages_.push_back(*page);
        chain_.push_back(Chain{hash, pool_->key_of(*page)});
        ++pages_used_;
    }
    n_tokens_ = writable_end_ = uint32_t(pages_.size()) * page_size_;
    return n_tokens_;
}

BlockTable BlockTable::fork() {
    BlockTable child(*pool_, root_hash_);
    const uint32_t shared = ceil_div(n_tokens_, page_size_);
    child.pages_.assign(pages_.begin(), pages_.begin() + shared);
    child.chain_.assign(chain_.begin(), chain_.begin() + shared);
    for (PageId p : child.pages_) {
        if (p == kNoPage) continue;
        pool_->ref(p);
        ++child.pages_used_;
    }
    child.n_tokens_ = child.writable_end_ = n_tokens_;
    child.window_scan_ = std::min(window_scan_, shared);
    child.window_sinks_ = window_sinks_;
    if (n_tokens_ % page_size_ != 0) writable_end_ = n_tokens_;  // our partial page is shared now
    return child;
}

// ---- shrinking ----------------------------------------------------------------------------

void BlockTable::release_page(uint32_t index) {
    PageId& p = pages_[index];
    if (p == kNoPage) return;
    pool_->unref(p);
    p = kNoPage;
    --pages_used_;
}

void BlockTable::release_from(uint32_t index) {
    // Last page first: its children are useless without it, so the LRU evicts them earlier.
    for (uint32_t i = uint32_t(pages_.size()); i > index; --i) release_page(i - 1);
    if (index < pages_.size()) {
        pages_.resize(index);
        chain_.resize(index);
    }
}

void BlockTable::truncate(uint32_t n) {
    KV_CHECK(n <= n_tokens_);
    KV_CHECK(n == 0 || pages_[(n - 1) / page_size_] != kNoPage);
    const uint32_t keep = ceil_div(n, page_size_);
    release_from(keep);
    if (n % page_size_ != 0) chain_[n / page_size_] = Chain{};  // no longer full for us
    n_tokens_ = writable_end_ = n;
    window_scan_ = std::min(window_scan_, keep);
}

uint32_t BlockTable::release_outside_window(uint32_t window, uint32_t sinks) {
    KV_CHECK(window >= 1);
    const uint32_t sink_pages = ceil_div(sinks, page_size_);
    if (sinks != window_sinks_) {
        window_sinks_ = sinks;
        window_scan_ = 0;
    }
    if (n_tokens_ <= window) return 0;
    const uint64_t window_begin = n_tokens_ - window;  // release pages ending at or before it
    uint32_t i = std::max(window_scan_, sink_pages), released = 0;
    for (; uint64_t(i + 1) * page_size_ <= window_begin; ++i) {
        if (pages_[i] == kNoPage) continue;
        release_page(i);
        ++released;
    }
    window_scan_ = std::max(window_scan_, i);
    return released;
}

void BlockTable::clear() {
    release_from(0);
    n_tokens_ = writable_end_ = 0;
    window_scan_ = window_sinks_ = 0;
}

// ---- accessors ----------------------------------------------------------------------------

PageId BlockTable::page_at(uint32_t pos) const {
    KV_CHECK(pos / page_size_ < pages_.size());
    return pages_[pos / page_size_];
}

uint64_t BlockTable::page_hash(uint32_t i) const {
    KV_CHECK(i < n_tokens_ / page_size_);
    return chain_[i].hash;
}

void BlockTable::check_invariants() const {
    KV_CHECK(n_tokens_ <= writable_end_ &&
             uint64_t(writable_end_) <= uint64_t(pages_.size()) * page_size_);
    KV_CHECK(chain_.size() == pages_.size());
    uint32_t used = 0;
    for (PageId p : pages_) {
        if (p == kNoPage) continue;
        ++used;
        KV_CHECK(pool_->state(p) == PageState::kInUse && pool_->ref_count(p) >= 1);
    }
    KV_CHECK(used == pages_used_);
    if (n_tokens_ > 0) KV_CHECK(pages_[(n_tokens_ - 1) / page_size_] != kNoPage);
    // Writable range and reserved capacity: exclusive and unregistered.
    const uint32_t first_writable =
        writable_end_ > n_tokens_ ? n_tokens_ / page_size_ : ceil_div(n_tokens_, page_size_);
    for (uint32_t i = first_writable; i < pages_.size(); ++i) {
        KV_CHECK(pages_[i] != kNoPage && pool_->ref_count(pages_[i]) == 1 &&
                 !pool_->registered(pages_[i]));
    }
    // Full pages: the chained hash matches the content; a live key names identical content.
    const uint32_t full = n_tokens_ / page_size_;
    for (uint32_t i = 0; i < full; ++i) {
        const Chain& c = chain_[i];
        if (pages_[i] != kNoPage) {
            KV_CHECK(c.hash == pool_->hash_page(parent_hash(i), pool_->tokens(pages_[i])));
        }
        if (c.key.valid() && pool_->key_live(c.key)) {
            KV_CHECK(std::memcmp(pool_->tokens(c.key.page),
                                 pages_[i] != kNoPage ? pool_->tokens(pages_[i])
                                                      : pool_->tokens(c.key.page),
                                 sizeof(kv_token) * page_size_) == 0);
            KV_CHECK(pool_->hash_page(parent_hash(i), pool_->tokens(c.key.page)) == c.hash);
        }
    }
}

}  // namespace kv::kvcache
