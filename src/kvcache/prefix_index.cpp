#include "kvcache/prefix_index.h"

#include <cstring>

#include "common/error.h"

namespace kv::kvcache {

namespace {
// Odd multipliers with well-spread bits (golden ratio and two 64-bit primes).
constexpr uint64_t kMulA = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kMulB = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kMulC = 0x165667B19E3779F9ull;
}  // namespace

uint64_t mix64(uint64_t x) {
    // Each step (xor with a right shift, multiply by an odd constant) is invertible, so the
    // whole function is a bijection; the shifts feed high bits back down between multiplies.
    x ^= x >> 32;
    x *= kMulA;
    x ^= x >> 29;
    x *= kMulB;
    x ^= x >> 32;
    x *= kMulC;
    x ^= x >> 29;
    return x;
}

uint64_t chain_hash(uint64_t parent_hash, const kv_token* tokens, size_t n) {
    uint64_t h = mix64(parent_hash ^ kMulC);
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t v = uint64_t(uint32_t(tokens[i])) | (uint64_t(uint32_t(tokens[i + 1])) << 32);
        h = mix64(h ^ (v * kMulA)) + kMulB;  // injective in v for a fixed h
    }
    if (i < n) h = mix64(h ^ ((uint64_t(uint32_t(tokens[i])) | (0xA5ull << 32)) * kMulA)) + kMulB;
    return mix64(h ^ (uint64_t(n) * kMulB));
}

PrefixIndex::PrefixIndex(uint32_t n_pages, uint32_t page_size, const kv_token* tokens,
                         PrefixHashFn hash)
    : page_size_(page_size), tokens_(tokens), hash_(hash ? hash : &chain_hash), entries_(n_pages) {
    KV_CHECK(page_size > 0 && (tokens != nullptr || n_pages == 0));
    buckets_.reserve(n_pages);
}

bool PrefixIndex::live(PrefixKey key) const {
    if (key.is_root()) return true;
    if (!key.valid() || key.page >= entries_.size()) return false;
    return entries_[key.page].serial == key.serial;
}

PrefixKey PrefixIndex::key_of(PageId page) const {
    KV_CHECK(page < entries_.size() && entries_[page].serial != 0);
    return PrefixKey{page, entries_[page].serial};
}

bool PrefixIndex::same_content(const Entry& e, PageId page, PrefixKey parent, uint64_t parent_hash,
                               const kv_token* tokens) const {
    return e.parent == parent && e.parent_hash == parent_hash &&
           std::memcmp(tokens_ + size_t(page) * page_size_, tokens,
                       sizeof(kv_token) * page_size_) == 0;
}

std::optional<PageId> PrefixIndex::find(PrefixKey parent, uint64_t parent_hash, uint64_t hash,
                                        const kv_token* tokens) const {
    if (!live(parent)) return std::nullopt;
    auto it = buckets_.find(hash);
    if (it == buckets_.end()) return std::nullopt;
    for (PageId p = it->second; p != kNoPage; p = entries_[p].next) {
        if (same_content(entries_[p], p, parent, parent_hash, tokens)) return p;
    }
    return std::nullopt;
}

PrefixKey PrefixIndex::insert(PageId page, PrefixKey parent, uint64_t parent_hash, uint64_t hash) {
    KV_CHECK(page < entries_.size() && entries_[page].serial == 0);
    const kv_token* tokens = tokens_ + size_t(page) * page_size_;
    KV_CHECK(hash_(parent_hash, tokens, page_size_) == hash);
    if (!live(parent)) return PrefixKey::none();
    auto [it, inserted] = buckets_.try_emplace(hash, page);
    if (!inserted) {
        for (PageId p = it->second; p != kNoPage; p = entries_[p].next) {
            if (same_content(entries_[p], p, parent, parent_hash, tokens)) return key_of(p);
        }
        // Push at the chain head.
        entries_[it->second].prev = page;
        entries_[page].next = it->second;
        it->second = page;
    } else {
        entries_[page].next = kNoPage;
    }
    Entry& e = entries_[page];
    e.prev = kNoPage;
    e.serial = next_serial_++;
    e.hash = hash;
    e.parent_hash = parent_hash;
    e.parent = parent;
    ++n_registered_;
    return PrefixKey{page, e.serial};
}

void PrefixIndex::erase(PageId page) {
    KV_CHECK(page < entries_.size() && entries_[page].serial != 0);
    Entry& e = entries_[page];
    if (e.prev != kNoPage) {
        entries_[e.prev].next = e.next;
    } else {
        auto it = buckets_.find(e.hash);
        KV_CHECK(it != buckets_.end() && it->second == page);
        if (e.next == kNoPage) {
            buckets_.erase(it);
        } else {
            it->second = e.next;
        }
    }
    if (e.next != kNoPage) entries_[e.next].prev = e.prev;
    e = Entry{};
    --n_registered_;
}

void PrefixIndex::check_invariants() const {
    size_t n = 0;
    for (const auto& [hash, head] : buckets_) {
        KV_CHECK(head < entries_.size() && entries_[head].prev == kNoPage);
        PageId prev = kNoPage;
        for (PageId p = head; p != kNoPage; p = entries_[p].next) {
            const Entry& e = entries_[p];
            KV_CHECK(e.serial != 0 && e.hash == hash && e.prev == prev);
            KV_CHECK(hash_(e.parent_hash, tokens_ + size_t(p) * page_size_, page_size_) == hash);
            // One entry per (parent, tokens).
            for (PageId q = e.next; q != kNoPage; q = entries_[q].next) {
                KV_CHECK(!same_content(entries_[q], q, e.parent, e.parent_hash,
                                       tokens_ + size_t(p) * page_size_));
            }
            prev = p;
            ++n;
            KV_CHECK(n <= n_registered_);
        }
    }
    KV_CHECK(n == n_registered_);
    size_t registered = 0;
    for (const Entry& e : entries_) registered += e.serial != 0;
    KV_CHECK(registered == n_registered_);
}

}  // namespace kv::kvcache
