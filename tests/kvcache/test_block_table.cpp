// BlockTable: reserve/commit across page boundaries, all-or-nothing out of pages, fork and
// copy-on-write, truncate, sliding window with sinks, clear/destroy/move.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "kv_sim.h"

using namespace kv::kvcache;
using kvsim::Device;
using kvsim::iota_tokens;
using kvsim::Snapshot;

namespace {
template <typename F>
bool throws_internal(F&& f) {
    try {
        f();
    } catch (const kv::Error& e) {
        return e.status() == KV_ERR_INTERNAL;
    }
    return false;
}
}  // namespace

TEST_CASE("block table: reserve and commit across page boundaries") {
    PagePool pool(8, 4);
    Device dev(pool);
    BlockTable t(pool);
    std::vector<PageCopy> copies;
    CHECK(t.reserve(0, &copies) == ReserveStatus::kOk);
    CHECK(t.n_logical_pages() == 0);

    REQUIRE(t.reserve(5, &copies) == ReserveStatus::kOk);  // positions [0, 5): pages 0, 1
    CHECK(copies.empty());
    CHECK(t.n_logical_pages() == 2);
    CHECK(t.writable_end() == 5);
    CHECK(t.n_tokens() == 0);
    auto tok = iota_tokens(9, 100);
    t.commit(tok.data(), 3);
    CHECK(t.n_tokens() == 3);
    CHECK(pool.stats().registered == 0);
    t.commit(tok.data() + 3, 2);  // crosses the boundary: page 0 is full and indexed
    CHECK(t.n_tokens() == 5);
    CHECK(pool.registered(t.page_ids()[0]));
    CHECK_FALSE(pool.registered(t.page_ids()[1]));
    CHECK(t.page_hash(0) == pool.hash_page(kRootHash, tok.data()));

    // Already-reserved capacity: no new page for [5, 8).
    REQUIRE(t.reserve(3, &copies) == ReserveStatus::kOk);
    CHECK(t.n_logical_pages() == 2);
    REQUIRE(t.reserve(4, &copies) == ReserveStatus::kOk);  // [5, 9) needs page 2
    CHECK(t.n_logical_pages() == 3);
    t.commit(tok.data() + 5, 4);
    CHECK(t.n_tokens() == 9);
    CHECK(pool.registered(t.page_ids()[1]));
    CHECK(t.page_hash(1) == pool.hash_page(t.page_hash(0), tok.data() + 4));
    CHECK(t.pages_used() == 3);
    CHECK(pool.stats().in_use == 3);
    t.check_invariants();

    // Commit beyond the reservation is a bug.
    kv_token x = 7;
    CHECK(throws_internal([&] { t.commit(&x, 4); }));
    CHECK(t.n_tokens() == 9);

    // The uploadable table.
    std::vector<uint32_t> upload(t.page_ids().begin(), t.page_ids().end());
    CHECK(upload.size() == 3);
    CHECK(upload[0] == t.page_at(0));
    CHECK(upload[2] == t.page_at(8));
    t.check_invariants();
    pool.check_invariants();
}

TEST_CASE("block table: page size 1 (every token fills a page)") {
    PagePool pool(6, 1);
    Device dev(pool);
    BlockTable t(pool);
    auto tok = iota_tokens(5, 1);
    REQUIRE(dev.append(t, tok));
    CHECK(t.pages_used() == 5);
    CHECK(pool.stats().registered == 5);
    BlockTable u(pool);
    CHECK(u.match_prefix(tok) == 4);  // leaves the last token to compute
    CHECK(pool.stats().in_use == 5);
    t.check_invariants();
    u.check_invariants();
}

TEST_CASE("block table: out of pages is all-or-nothing") {
    PagePool pool(3, 4);
    Device dev(pool);
    BlockTable a(pool), b(pool);
    REQUIRE(dev.append(a, iota_tokens(6, 0)));  // 2 pages
    // b needs 2 pages, 1 left: fails and changes nothing.
    Snapshot sb = Snapshot::take(b);
    std::vector<PageCopy> copies;
    CHECK(b.reserve(5, &copies) == ReserveStatus::kOutOfPages);
    CHECK(Snapshot::take(b) == sb);
    CHECK(b.n_logical_pages() == 0);
    // a growing by 7 needs 2 more: fails, table and pool as before.
    Snapshot sa = Snapshot::take(a);
    CHECK(a.reserve(7, &copies) == ReserveStatus::kOutOfPages);
    CHECK(Snapshot::take(a) == sa);
    CHECK(copies.empty());
    // By 6 fits exactly.
    REQUIRE(dev.append(a, iota_tokens(6, 6)));
    CHECK(pool.stats().in_use == 3);
    CHECK(dev.view_matches(a, iota_tokens(12, 0)));

    // Copy-on-write needs a page too: a fork whose partial page is shared cannot write.
    a.truncate(10);
    CHECK(pool.stats().in_use == 3);
    BlockTable c = a.fork();
    CHECK(pool.ref_count(a.page_ids()[2]) == 2);
    Snapshot sc = Snapshot::take(c);
    CHECK(c.reserve(1, &copies) == ReserveStatus::kOutOfPages);
    CHECK(Snapshot::take(c) == sc);
    Snapshot sa2 = Snapshot::take(a);
    CHECK(a.reserve(1, &copies) == ReserveStatus::kOutOfPages);
    CHECK(Snapshot::take(a) == sa2);
    // Once the fork is gone, a writes in place.
    c.clear();
    std::vector<PageCopy> got;
    REQUIRE(dev.append(a, {42}, &got));
    CHECK(got.empty());
    a.check_invariants();
    pool.check_invariants();
}

TEST_CASE("block table: fork shares pages and copies a shared partial page on write") {
    PagePool pool(16, 4);
    Device dev(pool);
    BlockTable parent(pool);
    auto prompt = iota_tokens(6, 10);  // page 0 full, page 1 holds 2
    REQUIRE(dev.append(parent, prompt));
    BlockTable child = parent.fork();
    CHECK(child.n_tokens() == 6);
    CHECK(child.page_ids() == parent.page_ids());
    CHECK(pool.ref_count(parent.page_ids()[0]) == 2);
    CHECK(pool.ref_count(parent.page_ids()[1]) == 2);
    CHECK(pool.stats().in_use == 2);
    // The parent's reservation ended (its partial page is shared now).
    CHECK(parent.writable_end() == 6);
    kv_token x = 1;
    CHECK(throws_internal([&] { parent.commit(&x, 1); }));

    // Child writes first: copies the partial page (2 valid tokens) into a fresh page.
    const PageId shared = parent.page_ids()[1];
    std::vector<PageCopy> copies;
    REQUIRE(dev.append(child, {500, 501, 502}, &copies));
    REQUIRE(copies.size() == 1);
    CHECK(copies[0].src == shared);
    CHECK(copies[0].dst == child.page_ids()[1]);
    CHECK(copies[0].n_tokens == 2);
    CHECK(child.page_ids()[0] == parent.page_ids()[0]);  // full pages stay shared
    CHECK(pool.ref_count(shared) == 1);
    // Parent is now the only holder: writes in place, no copy.
    REQUIRE(dev.append(parent, {900}, &copies));
    CHECK(copies.empty());
    CHECK(parent.page_ids()[1] == shared);

    auto pv = prompt, cv = prompt;
    pv.push_back(900);
    cv.insert(cv.end(), {500, 501, 502});
    CHECK(dev.view_matches(parent, pv));
    CHECK(dev.view_matches(child, cv));
    CHECK(pool.stats().in_use == 4);  // page 0 shared, page 1 x2, child's page 2
    parent.check_invariants();
    child.check_invariants();

    // Fork at a page boundary: no copy is ever needed.
    BlockTable p2(pool);
    REQUIRE(dev.append(p2, iota_tokens(8, 70)));
    REQUIRE(p2.reserve(3, &copies) == ReserveStatus::kOk);  // reserved page 2 stays p2's
    BlockTable c2 = p2.fork();
    CHECK(c2.n_logical_pages() == 2);
    CHECK(p2.writable_end() == 11);  // reservation kept: the reserved page is not shared
    REQUIRE(dev.append(c2, {1, 2}, &copies));
    CHECK(copies.empty());
    REQUIRE(dev.append(p2, {3, 4}, &copies));
    CHECK(copies.empty());
    CHECK(c2.page_ids()[2] != p2.page_ids()[2]);
    pool.check_invariants();
}

TEST_CASE("block table: truncate inside a page, then append") {
    PagePool pool(16, 4);
    Device dev(pool);
    BlockTable t(pool);
    auto tok = iota_tokens(12, 0);
    REQUIRE(dev.append(t, tok));
    REQUIRE(t.reserve(4, nullptr) == ReserveStatus::kOk);  // capacity page 3
    CHECK(t.n_logical_pages() == 4);
    CHECK(pool.stats().registered == 3);
    const PageId p1 = t.page_ids()[1];

    t.truncate(6);  // keeps pages 0, 1 (page 1 partially); releases 2 and the reserved 3
    CHECK(t.n_tokens() == 6);
    CHECK(t.n_logical_pages() == 2);
    CHECK(t.writable_end() == 6);
    CHECK(pool.stats().in_use == 2);
    CHECK(pool.stats().cached == 1);  // page 2 was full and indexed
    CHECK(pool.registered(p1));       // unchanged content: still indexed until modified
    t.check_invariants();

    // Only holder: the page leaves the index and is written in place (no copy).
    std::vector<PageCopy> copies;
    REQUIRE(dev.append(t, {77}, &copies));
    CHECK(copies.empty());
    CHECK(t.page_ids()[1] == p1);
    CHECK_FALSE(pool.registered(p1));
    auto expect = std::vector<kv_token>(tok.begin(), tok.begin() + 6);
    expect.push_back(77);
    CHECK(dev.view_matches(t, expect));
    // Refill page 1 with different tokens: it is indexed again under its new content.
    REQUIRE(dev.append(t, {78}));
    expect.push_back(78);
    CHECK(pool.registered(p1));
    CHECK(t.page_hash(1) == pool.hash_page(t.page_hash(0), expect.data() + 4));
    // The old page 1 content is no longer findable, the new one is.
    BlockTable q(pool);
    auto probe = expect;
    probe.push_back(0);
    CHECK(q.match_prefix(probe) == 8);
    BlockTable r(pool);
    auto old = tok;
    CHECK(r.match_prefix(old) == 4);
    q.clear();
    r.clear();

    // Truncate inside a full page that someone else shares: copy-on-write on the next append,
    // and the shared original keeps its content and index entry.
    BlockTable other(pool);
    CHECK(other.match_prefix(probe) == 8);
    CHECK(pool.ref_count(p1) == 2);
    t.truncate(5);
    REQUIRE(dev.append(t, {99}, &copies));
    REQUIRE(copies.size() == 1);
    CHECK(copies[0].src == p1);
    CHECK(copies[0].n_tokens == 1);
    CHECK(pool.registered(p1));
    CHECK(dev.view_matches(other, std::vector<kv_token>(expect.begin(), expect.begin() + 8)));
    auto expect2 = std::vector<kv_token>(tok.begin(), tok.begin() + 5);
    expect2.push_back(99);
    CHECK(dev.view_matches(t, expect2));

    // Truncate at a page boundary and to zero.
    t.truncate(4);
    CHECK(t.n_logical_pages() == 1);
    t.truncate(0);
    CHECK(t.n_logical_pages() == 0);
    CHECK(t.pages_used() == 0);
    CHECK(throws_internal([&] { t.truncate(1); }));  // beyond n_tokens
    REQUIRE(dev.append(t, {5, 6}));
    t.check_invariants();
    other.check_invariants();
    pool.check_invariants();
}

TEST_CASE("block table: sliding window with sinks keeps memory bounded") {
    const uint32_t ps = 4, window = 10, total = 400;
    for (uint32_t sinks : {0u, 4u, 5u}) {
        CAPTURE(sinks);
        const uint32_t sink_pages = (sinks + ps - 1) / ps;
        // Enough for the sinks, the window's pages and one being filled: far fewer than 100.
        const uint32_t need = sink_pages + (window + ps - 1) / ps + 2;
        PagePool pool(need, ps);
        Device dev(pool);
        BlockTable t(pool);
        std::vector<kv_token> all;
        uint32_t released_total = 0;
        for (uint32_t i = 0; i < total; ++i) {
            kv_token tok = kv_token(1000 + i);
            REQUIRE(dev.append(t, &tok, 1));
            all.push_back(tok);
            released_total += t.release_outside_window(window, sinks);
            const uint32_t n = t.n_tokens();
            // Bookkeeping: resident exactly when in a sink page, or not wholly before the window.
            for (uint32_t page = 0; page < t.n_logical_pages(); ++page) {
                const bool sink = page < sink_pages;
                const bool before_window = n > window && (page + 1) * ps <= n - window;
                CHECK((t.page_ids()[page] == kNoPage) == (!sink && before_window));
            }
            for (uint32_t p = 0; p < std::min(sinks, n); ++p) CHECK(t.resident(p));
            for (uint32_t p = n > window ? n - window : 0; p < n; ++p) CHECK(t.resident(p));
            CHECK(t.pages_used() <= need);
            REQUIRE(dev.view_matches(t, all));
            t.check_invariants();
        }
        CHECK(t.n_logical_pages() == total / ps);
        CHECK(released_total == t.n_logical_pages() - t.pages_used());
        CHECK(pool.stats().in_use == t.pages_used());
        CHECK(pool.stats().allocations >= total / ps);  // pages were recycled many times
        // Upload form: holes are the sentinel.
        CHECK(std::count(t.page_ids().begin(), t.page_ids().end(), 0xFFFFFFFFu) ==
              long(released_total));

        // Truncating into a released position is refused; within the window it works, and
        // released pages never come back.
        const uint32_t n = t.n_tokens();
        const auto hole = std::find(t.page_ids().begin(), t.page_ids().end(), kNoPage);
        REQUIRE(hole != t.page_ids().end());
        const uint32_t released_pos = uint32_t(hole - t.page_ids().begin()) * ps;
        CHECK_FALSE(t.resident(released_pos));
        CHECK(throws_internal([&] { t.truncate(released_pos + 1); }));
        CHECK(t.n_tokens() == n);
        t.truncate(n - 3);
        all.resize(n - 3);
        CHECK(dev.view_matches(t, all));
        CHECK(t.release_outside_window(window, sinks) == 0);
        REQUIRE(dev.append(t, {1, 2, 3, 4, 5}));
        t.check_invariants();
        pool.check_invariants();
        t.clear();
        CHECK(pool.stats().in_use == 0);
    }
}

TEST_CASE("block table: clear, destruction and moves return every page") {
    PagePool pool(8, 4);
    Device dev(pool);
    {
        BlockTable a(pool);
        REQUIRE(dev.append(a, iota_tokens(10, 0)));
        BlockTable b = a.fork();
        CHECK(pool.stats().in_use == 3);
        BlockTable c(std::move(b));
        CHECK(b.n_tokens() == 0);  // moved-from: empty
        CHECK(b.pages_used() == 0);
        CHECK(c.n_tokens() == 10);
        BlockTable d(pool);
        REQUIRE(dev.append(d, iota_tokens(3, 50)));
        CHECK(pool.stats().in_use == 4);
        d = std::move(c);  // d's own page is released
        CHECK(pool.stats().in_use == 3);
        CHECK(pool.ref_count(d.page_ids()[0]) == 2);
        a.clear();
        CHECK(a.n_tokens() == 0);
        CHECK(pool.stats().in_use == 3);  // d still holds them
        REQUIRE(dev.append(a, iota_tokens(2, 9)));
        pool.check_invariants();
    }
    auto s = pool.stats();
    CHECK(s.in_use == 0);
    CHECK(s.free + s.cached == 8);
    CHECK(s.cached == 2);  // the two full pages of the 10-token prompt stay cached
    pool.check_invariants();
}
