// Prefix index: finds a cached KV page by the exact token prefix it holds.
//
// A full page i of a sequence is named by a 64-bit hash chained over (hash of page i-1, the
// page_size tokens of page i); page 0 chains from kRootHash. The hash only picks a bucket: an
// entry matches a lookup only when its stored tokens are equal AND its parent is the same
// registered page instance (PrefixKey: page id + a serial number unique per registration), so
// neither a collision of the page hash nor one of the parent's chained hash can ever return a
// page holding other tokens or a different prefix.
//
// Ownership: the index stores no references. It only knows which page ids are registered; the
// PagePool owns the pages, their reference counts and the token shadow the index compares
// against (pointer passed at construction, [n_pages][page_size] kv_tokens, outliving the index).
// At most one registered entry exists per (parent key, tokens): insert() of a duplicate returns
// the existing entry's key and leaves the new page unregistered.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

namespace kv::kvcache {

using PageId = uint32_t;
// "No page": a hole in a block table (released by the sliding window) and the list terminator.
constexpr PageId kNoPage = 0xFFFFFFFFu;

// The chained hash of the empty prefix (the parent of page 0).
constexpr uint64_t kRootHash = 0x6B7663616368655Full;  // "kvcache_"

// The hash function: (parent hash, page tokens) -> page hash. Replaceable (tests force
// collisions with a weak one); nullptr means chain_hash below.
using PrefixHashFn = uint64_t (*)(uint64_t parent_hash, const kv_token* tokens, size_t n);

// A 64-bit avalanche mixer (bijective: xor-shift / odd-multiply rounds).
uint64_t mix64(uint64_t x);
// The default page hash: folds the tokens two at a time into the parent hash through mix64.
uint64_t chain_hash(uint64_t parent_hash, const kv_token* tokens, size_t n);

// Identity of one registration of a page in the index. Serial numbers are never reused, so a key
// of a page that was since unregistered (evicted, modified, retired) is stale and matches nothing.
struct PrefixKey {
    PageId page = kNoPage;
    uint64_t serial = 0;  // 0: no key (page not represented in the index)

    static PrefixKey root() { return PrefixKey{kNoPage, kRootSerial}; }
    static PrefixKey none() { return PrefixKey{}; }
    bool is_root() const { return serial == kRootSerial; }
    bool valid() const { return serial != 0; }
    bool operator==(const PrefixKey& o) const { return page == o.page && serial == o.serial; }
    bool operator!=(const PrefixKey& o) const { return !(*this == o); }

    static constexpr uint64_t kRootSerial = 1;  // registrations start at 2
};

class PrefixIndex {
public:
    // tokens: the pool's token shadow, [n_pages][page_size].
    PrefixIndex(uint32_t n_pages, uint32_t page_size, const kv_token* tokens, PrefixHashFn hash);

    uint64_t hash_page(uint64_t parent_hash, const kv_token* tokens) const {
        return hash_(parent_hash, tokens, page_size_);
    }

    // True while `key` names a live registration (or is the root key).
    bool live(PrefixKey key) const;
    bool registered(PageId page) const { return entries_[page].serial != 0; }
    // The key of a registered page.
    PrefixKey key_of(PageId page) const;
    uint64_t hash_of(PageId page) const { return entries_[page].hash; }

    // Registers `page` (its tokens already in the shadow) as the child of `parent`.
    // Returns the key now representing (parent, tokens): the new registration, or the existing
    // identical entry (then `page` stays unregistered), or none() when `parent` is stale (a
    // child of a dead registration can never be reached by a lookup, so it is not stored).
    // Precondition: `page` is not registered.
    PrefixKey insert(PageId page, PrefixKey parent, uint64_t parent_hash, uint64_t hash);
    // Unregisters `page`. Precondition: it is registered. O(1).
    void erase(PageId page);
    // The registered page holding `tokens` (page_size of them) as the child of `parent`, if any.
    std::optional<PageId> find(PrefixKey parent, uint64_t parent_hash, uint64_t hash,
                               const kv_token* tokens) const;

    size_t size() const { return n_registered_; }
    // Walks every bucket chain; KV_CHECKs links, hashes and the one-entry-per-content rule.
    void check_invariants() const;

private:
    struct Entry {
        uint64_t serial = 0;  // 0: not registered
        uint64_t hash = 0;
        uint64_t parent_hash = 0;
        PrefixKey parent;
        PageId prev = kNoPage, next = kNoPage;  // bucket chain (all entries with equal hash)
    };
    bool same_content(const Entry& e, PageId page, PrefixKey parent, uint64_t parent_hash,
                      const kv_token* tokens) const;

    uint32_t page_size_;
    const kv_token* tokens_;
    PrefixHashFn hash_;
    std::vector<Entry> entries_;                    // [n_pages]
    std::unordered_map<uint64_t, PageId> buckets_;  // hash -> first page of its chain
    uint64_t next_serial_ = PrefixKey::kRootSerial + 1;
    size_t n_registered_ = 0;
};

}  // namespace kv::kvcache
