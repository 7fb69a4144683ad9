// Test helpers for the KV-cache bookkeeping: a simulated device pool that follows the block
// table's decisions exactly as the engine would (copies first, then writes into page_ids()), so a
// table's view of its tokens can be compared with what its pages really hold.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "kvcache/block_table.h"
#include "kvcache/page_pool.h"

namespace kvsim {

using kv::kvcache::BlockTable;
using kv::kvcache::kNoPage;
using kv::kvcache::PageCopy;
using kv::kvcache::PageId;
using kv::kvcache::PagePool;
using kv::kvcache::PageState;
using kv::kvcache::ReserveStatus;

// Everything reserve() must leave untouched when it reports out of pages.
struct Snapshot {
    std::vector<PageId> pages;
    uint32_t n_tokens = 0, writable_end = 0, pages_used = 0;
    std::vector<uint32_t> refs;
    std::vector<PageState> states;
    std::vector<bool> registered;
    std::vector<PageId> lru;
    uint64_t allocations = 0, evictions = 0;

    static Snapshot take(const BlockTable& t) {
        Snapshot s;
        const PagePool& pool = t.pool();
        s.pages = t.page_ids();
        s.n_tokens = t.n_tokens();
        s.writable_end = t.writable_end();
        s.pages_used = t.pages_used();
        for (PageId p = 0; p < pool.capacity(); ++p) {
            s.refs.push_back(pool.ref_count(p));
            s.states.push_back(pool.state(p));
            s.registered.push_back(pool.registered(p));
        }
        s.lru = pool.lru_order();
        s.allocations = pool.stats().allocations;
        s.evictions = pool.stats().evictions;
        return s;
    }
    bool operator==(const Snapshot& o) const {
        return pages == o.pages && n_tokens == o.n_tokens && writable_end == o.writable_end &&
               pages_used == o.pages_used && refs == o.refs && states == o.states &&
               registered == o.registered && lru == o.lru && allocations == o.allocations &&
               evictions == o.evictions;
    }
};

// The simulated device: [capacity][page_size] token slots standing in for K/V.
struct Device {
    explicit Device(const PagePool& pool)
        : page_size(pool.page_size()), mem(size_t(pool.capacity()) * pool.page_size(), -1) {}

    uint32_t page_size;
    std::vector<kv_token> mem;
    uint64_t copies_done = 0;

    kv_token& slot(PageId page, uint32_t i) { return mem[size_t(page) * page_size + i]; }

    void apply(const std::vector<PageCopy>& copies) {
        for (const PageCopy& c : copies) {
            REQUIRE(c.src != c.dst);
            REQUIRE(c.n_tokens <= page_size);
            for (uint32_t i = 0; i < c.n_tokens; ++i) slot(c.dst, i) = slot(c.src, i);
            ++copies_done;
        }
    }

    // The engine's append: reserve, copy, write, commit. On out of pages checks that nothing
    // changed and returns false.
    bool append(BlockTable& t, const kv_token* tokens, uint32_t n,
                std::vector<PageCopy>* copies_out = nullptr) {
        Snapshot before = Snapshot::take(t);
        std::vector<PageCopy> copies;
        if (t.reserve(n, &copies) != ReserveStatus::kOk) {
            CHECK(copies.empty());
            CHECK(Snapshot::take(t) == before);
            return false;
        }
        apply(copies);
        if (copies_out) *copies_out = copies;
        const uint32_t n0 = t.n_tokens();
        for (uint32_t i = 0; i < n; ++i) {
            const uint32_t pos = n0 + i;
            const PageId page = t.page_at(pos);
            REQUIRE(page != kNoPage);
            // The engine writes only into pages no one else can see.
            REQUIRE(t.pool().ref_count(page) == 1);
            REQUIRE_FALSE(t.pool().registered(page));
            slot(page, pos % page_size) = tokens[i];
        }
        t.commit(tokens, n);
        return true;
    }
    bool append(BlockTable& t, const std::vector<kv_token>& tokens,
                std::vector<PageCopy>* copies_out = nullptr) {
        return append(t, tokens.data(), uint32_t(tokens.size()), copies_out);
    }

    // The table's view of positions [0, n_tokens) equals `expected` at every resident position.
    bool view_matches(const BlockTable& t, const std::vector<kv_token>& expected) {
        if (expected.size() != t.n_tokens()) return false;
        for (uint32_t pos = 0; pos < t.n_tokens(); ++pos) {
            const PageId page = t.page_at(pos);
            if (page == kNoPage) continue;
            if (slot(page, pos % page_size) != expected[pos]) return false;
        }
        return true;
    }
};

inline std::vector<kv_token> iota_tokens(uint32_t n, kv_token base) {
    std::vector<kv_token> t(n);
    for (uint32_t i = 0; i < n; ++i) t[i] = base + kv_token(i);
    return t;
}

}  // namespace kvsim
