// PagePool: allocation, references, LRU eviction of cached pages, the page limit (budget).
#include <doctest/doctest.h>

#include <vector>

#include "common/error.h"
#include "kvcache/page_pool.h"

using namespace kv::kvcache;

namespace {

// Fills `page` (held alone) with tokens base, base + 1, ... and registers it after `parent`.
PrefixKey fill_and_register(PagePool& pool, PageId page, kv_token base,
                            PrefixKey parent = PrefixKey::root(),
                            uint64_t parent_hash = kRootHash) {
    std::vector<kv_token> t(pool.page_size());
    for (uint32_t i = 0; i < t.size(); ++i) t[i] = base + kv_token(i);
    pool.write_tokens(page, 0, t.data(), uint32_t(t.size()));
    return pool.register_page(page, parent, parent_hash, pool.hash_page(parent_hash, t.data()));
}

std::vector<kv_token> page_tokens(uint32_t page_size, kv_token base) {
    std::vector<kv_token> t(page_size);
    for (uint32_t i = 0; i < page_size; ++i) t[i] = base + kv_token(i);
    return t;
}

bool throws_internal(void (*f)(PagePool&), PagePool& pool) {
    try {
        f(pool);
    } catch (const kv::Error& e) {
        return e.status() == KV_ERR_INTERNAL;
    }
    return false;
}

}  // namespace

TEST_CASE("page pool: allocate until out of pages, release, counters") {
    PagePool pool(4, 16);
    pool.check_invariants();
    CHECK(pool.stats().free == 4);
    std::vector<PageId> got;
    for (int i = 0; i < 4; ++i) {
        auto p = pool.allocate();
        REQUIRE(p);
        CHECK(pool.ref_count(*p) == 1);
        CHECK(pool.state(*p) == PageState::kInUse);
        got.push_back(*p);
    }
    CHECK(got == std::vector<PageId>{0, 1, 2, 3});  // a fresh pool hands out ids in order
    CHECK_FALSE(pool.allocate());                   // expected outcome, not an exception
    CHECK_FALSE(pool.can_allocate(1));
    CHECK(pool.stats().in_use == 4);
    CHECK(pool.stats().free == 0);

    pool.ref(got[1]);
    CHECK(pool.ref_count(got[1]) == 2);
    pool.unref(got[1]);
    CHECK(pool.ref_count(got[1]) == 1);
    pool.unref(got[1]);
    CHECK(pool.state(got[1]) == PageState::kFree);
    CHECK(pool.stats().free == 1);
    CHECK(pool.can_allocate(1));
    CHECK_FALSE(pool.can_allocate(2));
    auto again = pool.allocate();
    REQUIRE(again);
    CHECK(*again == got[1]);
    pool.check_invariants();
    for (PageId p : got) pool.unref(p);
    CHECK(pool.stats().free == 4);
    CHECK(pool.stats().allocations == 5);
    pool.check_invariants();
}

TEST_CASE("page pool: broken preconditions throw KV_ERR_INTERNAL and change nothing") {
    PagePool pool(2, 4);
    CHECK(throws_internal([](PagePool& p) { p.unref(0); }, pool));  // free page
    CHECK(throws_internal([](PagePool& p) { p.ref(1); }, pool));    // ref of a free page
    CHECK(throws_internal([](PagePool& p) { p.ref(7); }, pool));    // out of range
    CHECK(throws_internal([](PagePool& p) { p.set_limit(3); }, pool));
    auto a = pool.allocate();
    REQUIRE(a);
    pool.ref(*a);
    // A shared page is read-only.
    kv_token t[4] = {1, 2, 3, 4};
    try {
        pool.write_tokens(*a, 0, t, 4);
        FAIL("write into a shared page accepted");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_INTERNAL);
    }
    CHECK(pool.ref_count(*a) == 2);
    pool.check_invariants();
    pool.unref(*a);
    pool.unref(*a);
    pool.check_invariants();
}

TEST_CASE("page pool: cached pages are evicted least recently released first, free pages first") {
    const uint32_t ps = 4;
    PagePool pool(4, ps);
    PageId p[4];
    for (auto& x : p) x = *pool.allocate();
    // Three registered (cacheable) pages and one plain page.
    fill_and_register(pool, p[0], 100);
    fill_and_register(pool, p[1], 200);
    fill_and_register(pool, p[2], 300);
    CHECK(pool.stats().registered == 3);
    // Release in the order 1, 0, 3 (plain), 2.
    pool.unref(p[1]);
    pool.unref(p[0]);
    pool.unref(p[3]);
    pool.unref(p[2]);
    auto s = pool.stats();
    CHECK(s.cached == 3);
    CHECK(s.free == 1);
    CHECK(pool.lru_order() == std::vector<PageId>{p[1], p[0], p[2]});
    pool.check_invariants();

    // A hit pulls a cached page out of the middle of the LRU list (O(1) removal).
    auto t0 = page_tokens(ps, 100);
    auto hit =
        pool.lookup(PrefixKey::root(), kRootHash, pool.hash_page(kRootHash, t0.data()), t0.data());
    REQUIRE(hit);
    CHECK(*hit == p[0]);
    CHECK(pool.ref_count(p[0]) == 1);
    CHECK(pool.lru_order() == std::vector<PageId>{p[1], p[2]});
    CHECK(pool.stats().hits == 1);

    // The free page goes first, then cached pages in LRU order, each dropped from the index.
    CHECK(*pool.allocate() == p[3]);
    CHECK(pool.stats().evictions == 0);
    CHECK(*pool.allocate() == p[1]);
    CHECK(pool.stats().evictions == 1);
    CHECK_FALSE(pool.registered(p[1]));
    auto t1 = page_tokens(ps, 200);
    CHECK_FALSE(
        pool.lookup(PrefixKey::root(), kRootHash, pool.hash_page(kRootHash, t1.data()), t1.data()));
    CHECK(*pool.allocate() == p[2]);
    CHECK(pool.stats().evictions == 2);
    CHECK_FALSE(pool.allocate());  // everything in use now
    CHECK(pool.stats().in_use == 4);
    CHECK(pool.stats().registered == 1);  // p[0], in use
    pool.check_invariants();
}

TEST_CASE("page pool: a page released while shared stays in use until its last reference") {
    PagePool pool(2, 2);
    PageId a = *pool.allocate();
    fill_and_register(pool, a, 5);
    pool.ref(a);
    pool.unref(a);
    CHECK(pool.state(a) == PageState::kInUse);
    pool.unref(a);
    CHECK(pool.state(a) == PageState::kCached);
    CHECK(pool.stats().cached == 1);
    // Allocation prefers the free page, so the cached one survives.
    PageId b = *pool.allocate();
    CHECK(b != a);
    CHECK(pool.state(a) == PageState::kCached);
    pool.unref(b);
    pool.check_invariants();
}

TEST_CASE("page pool: set_limit shrinks and grows the usable pages") {
    PagePool pool(8, 2);
    std::vector<PageId> p;
    for (int i = 0; i < 6; ++i) p.push_back(*pool.allocate());  // ids 0..5
    fill_and_register(pool, p[1], 10);
    fill_and_register(pool, p[5], 50);
    fill_and_register(pool, p[4], 40);
    pool.unref(p[1]);  // cached, id 1
    pool.unref(p[4]);  // cached, id 4 (will be beyond the limit)
    // ids 6, 7 free; 0, 2, 3, 5 in use; 1, 4 cached.
    pool.set_limit(4);
    auto s = pool.stats();
    CHECK(s.limit == 4);
    CHECK(s.retired == 3);  // 4 (evicted), 6, 7
    CHECK(s.cached == 1);   // id 1 survives
    CHECK(s.evictions == 1);
    CHECK(s.in_use == 4);
    CHECK(pool.pages_in_use_beyond_limit() == 1);  // id 5
    CHECK_FALSE(pool.registered(p[5]));            // no new sharing of a page being drained
    CHECK(s.free + s.cached + s.in_use + s.retired == 8);
    pool.check_invariants();
    // 4 pages in use >= limit 4: out of pages although page 1 is cached.
    CHECK_FALSE(pool.allocate());
    pool.unref(p[5]);  // drained: retires instead of becoming free
    CHECK(pool.state(p[5]) == PageState::kRetired);
    CHECK(pool.pages_in_use_beyond_limit() == 0);
    // Now one slot: the cached page 1 is evicted (nothing free below the limit).
    auto q = pool.allocate();
    REQUIRE(q);
    CHECK(*q == 1);
    CHECK_FALSE(pool.allocate());
    pool.check_invariants();

    // Ids >= limit are never handed out.
    pool.unref(p[0]);
    for (int i = 0; i < 3; ++i) {
        auto r = pool.allocate();
        if (!r) break;
        CHECK(*r < 4);
        pool.unref(*r);
    }
    pool.set_limit(8);
    s = pool.stats();
    CHECK(s.retired == 0);
    CHECK(s.free + s.cached + s.in_use == 8);
    std::vector<PageId> more;
    while (auto r = pool.allocate()) more.push_back(*r);
    CHECK(pool.stats().in_use == 8);
    pool.check_invariants();
    pool.set_limit(0);
    CHECK(pool.pages_in_use_beyond_limit() == 8);
    CHECK_FALSE(pool.allocate());
    for (PageId x : more) pool.unref(x);
    pool.unref(*q);
    pool.unref(p[2]);
    pool.unref(p[3]);
    CHECK(pool.stats().retired == 8);
    pool.set_limit(8);
    CHECK(pool.stats().free == 8);
    pool.check_invariants();
}
