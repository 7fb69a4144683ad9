// Prefix index: the chained hash, matching whole pages, collisions that must not match,
// duplicates, eviction of cached prefixes, and N sessions sharing one prompt.
#include <doctest/doctest.h>

#include <bitset>
#include <random>
#include <unordered_set>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "kv_sim.h"

using namespace kv::kvcache;
using kvsim::Device;
using kvsim::iota_tokens;

namespace {
// Every page collides: only the stored tokens and the parent identity tell entries apart.
uint64_t constant_hash(uint64_t, const kv_token*, size_t) { return 42; }
// Ignores the parent: pages with equal tokens under different prefixes collide.
uint64_t tokens_only_hash(uint64_t, const kv_token* t, size_t n) {
    return chain_hash(kRootHash, t, n);
}
}  // namespace

TEST_CASE("prefix hash: deterministic, chained, order- and position-sensitive, well mixed") {
    std::vector<kv_token> a = {1, 2, 3, 4}, b = {2, 1, 3, 4}, c = {1, 2, 3, 5};
    CHECK(chain_hash(kRootHash, a.data(), 4) == chain_hash(kRootHash, a.data(), 4));
    CHECK(chain_hash(kRootHash, a.data(), 4) != chain_hash(kRootHash, b.data(), 4));
    CHECK(chain_hash(kRootHash, a.data(), 4) != chain_hash(kRootHash, c.data(), 4));
    CHECK(chain_hash(kRootHash, a.data(), 4) != chain_hash(kRootHash + 1, a.data(), 4));
    CHECK(chain_hash(kRootHash, a.data(), 3) != chain_hash(kRootHash, a.data(), 4));
    std::vector<kv_token> z3 = {0, 0, 0}, z4 = {0, 0, 0, 0};
    CHECK(chain_hash(kRootHash, z3.data(), 3) != chain_hash(kRootHash, z4.data(), 4));
    std::vector<kv_token> neg = {-1, 0}, pos = {0, -1};
    CHECK(chain_hash(0, neg.data(), 2) != chain_hash(0, pos.data(), 2));

    // No collisions among 200k single-token-difference pages; mix64 is a bijection on samples.
    std::unordered_set<uint64_t> seen;
    std::vector<kv_token> page(16, 7);
    for (int i = 0; i < 200000; ++i) {
        page[size_t(i % 16)] = i + 1000;  // each step a new page
        seen.insert(chain_hash(kRootHash, page.data(), page.size()));
    }
    CHECK(seen.size() == 200000);
    std::unordered_set<uint64_t> mixed;
    for (uint64_t x = 0; x < 100000; ++x) mixed.insert(mix64(x));
    CHECK(mixed.size() == 100000);

    // Avalanche: flipping one input bit flips about half of the output bits.
    std::mt19937_64 rng(kvtest::fresh_seed());
    double total = 0;
    const int trials = 4000;
    for (int i = 0; i < trials; ++i) {
        uint64_t x = rng();
        uint64_t y = x ^ (1ull << (i % 64));
        total += double(std::bitset<64>(mix64(x) ^ mix64(y)).count());
    }
    const double mean = total / trials;
    CHECK(mean > 30.0);
    CHECK(mean < 34.0);
}

TEST_CASE("prefix: match whole pages, leave the last token, stop at the first difference") {
    PagePool pool(16, 4);
    Device dev(pool);
    BlockTable a(pool);
    auto prompt = iota_tokens(10, 1);  // pages [1..4] [5..8] full, [9 10] partial
    REQUIRE(dev.append(a, prompt));
    CHECK(pool.stats().registered == 2);

    BlockTable b(pool);
    CHECK(b.match_prefix(prompt) == 8);
    CHECK(b.page_ids()[0] == a.page_ids()[0]);
    CHECK(b.page_ids()[1] == a.page_ids()[1]);
    CHECK(pool.ref_count(a.page_ids()[0]) == 2);
    CHECK(pool.stats().hits == 2);
    CHECK(b.page_hash(1) == a.page_hash(1));
    // b prefills the rest; its writes land in its own page.
    std::vector<kv_token> rest(prompt.begin() + 8, prompt.end());
    std::vector<PageCopy> copies;
    REQUIRE(dev.append(b, rest, &copies));
    CHECK(copies.empty());
    CHECK(dev.view_matches(b, prompt));

    // A prompt of exactly 8 tokens: only 4 covered, the last token must be computed.
    BlockTable c(pool);
    CHECK(c.match_prefix(iota_tokens(8, 1)) == 4);
    // Diverging in page 1.
    BlockTable d(pool);
    auto diverge = prompt;
    diverge[6] = 999;
    CHECK(d.match_prefix(diverge) == 4);
    // Diverging in page 0 / empty / shorter than a page.
    BlockTable e(pool), f(pool), g(pool);
    auto first = prompt;
    first[0] = 999;
    CHECK(e.match_prefix(first) == 0);
    CHECK(f.match_prefix(nullptr, 0) == 0);
    CHECK(g.match_prefix(iota_tokens(3, 1)) == 0);
    CHECK(e.n_logical_pages() == 0);
    // match_prefix on a non-empty table is a bug.
    bool threw = false;
    try {
        a.match_prefix(prompt);
    } catch (const kv::Error& err) {
        threw = err.status() == KV_ERR_INTERNAL;
    }
    CHECK(threw);
    pool.check_invariants();
}

TEST_CASE("prefix: hash collisions never return a page with other tokens or another parent") {
    for (PrefixHashFn fn : {&constant_hash, &tokens_only_hash}) {
        PagePool pool(32, 2, fn);
        Device dev(pool);
        // Prefixes [A X], [B Y], where X's tokens equal... see below.
        std::vector<kv_token> ax = {1, 1, 5, 5, 0};  // page A=[1 1], page X=[5 5]
        std::vector<kv_token> by = {2, 2, 6, 6, 0};  // page B=[2 2], page Y=[6 6]
        BlockTable s1(pool), s2(pool);
        REQUIRE(dev.append(s1, ax));
        REQUIRE(dev.append(s2, by));
        CHECK(pool.stats().registered == 4);
        pool.check_invariants();

        // [B X]: B matches, X exists only under A - must not match (same tokens, same page
        // hash with tokens_only_hash, all hashes equal with constant_hash).
        BlockTable q1(pool);
        CHECK(q1.match_prefix({2, 2, 5, 5, 0}) == 2);
        CHECK(q1.page_ids()[0] == s2.page_ids()[0]);
        // Other tokens in the same bucket never match.
        BlockTable q2(pool);
        CHECK(q2.match_prefix({3, 3, 5, 5, 0}) == 0);
        // The right ones still do.
        BlockTable q3(pool), q4(pool);
        CHECK(q3.match_prefix(ax) == 4);
        CHECK(q3.page_ids()[1] == s1.page_ids()[1]);
        CHECK(q4.match_prefix(by) == 4);
        CHECK(q4.page_ids()[1] == s2.page_ids()[1]);

        // [B X] written by a session is registered separately, then found.
        REQUIRE(dev.append(q1, {5, 5, 0}));
        CHECK(pool.stats().registered == 5);
        BlockTable q5(pool);
        CHECK(q5.match_prefix({2, 2, 5, 5, 9}) == 4);
        CHECK(q5.page_ids()[1] == q1.page_ids()[1]);
        CHECK(q5.page_ids()[1] != s1.page_ids()[1]);
        pool.check_invariants();
    }
}

TEST_CASE("prefix: an identical page registered twice stays unregistered and chains on") {
    PagePool pool(16, 4);
    Device dev(pool);
    BlockTable a(pool), b(pool);
    auto p = iota_tokens(9, 0);
    REQUIRE(dev.append(a, p));
    // b computes the same prompt without matching (e.g. both prefilled concurrently).
    REQUIRE(dev.append(b, std::vector<kv_token>(p.begin(), p.begin() + 4)));
    CHECK(pool.stats().registered == 2);  // a's pages only
    CHECK_FALSE(pool.registered(b.page_ids()[0]));
    // b continues with its own second page: registered as the child of a's first page.
    REQUIRE(dev.append(b, {100, 101, 102, 103, 7}));
    CHECK(pool.stats().registered == 3);
    BlockTable c(pool);
    CHECK(c.match_prefix({0, 1, 2, 3, 100, 101, 102, 103, 7}) == 8);
    CHECK(c.page_ids()[0] == a.page_ids()[0]);
    CHECK(c.page_ids()[1] == b.page_ids()[1]);
    a.check_invariants();
    b.check_invariants();
    c.check_invariants();
    pool.check_invariants();
}

TEST_CASE("prefix: released prompts stay cached until evicted, evicted parents orphan children") {
    PagePool pool(6, 2);
    Device dev(pool);
    auto prompt = iota_tokens(7, 10);  // 3 full pages + 1
    std::vector<PageId> a_pages;
    {
        BlockTable a(pool);
        REQUIRE(dev.append(a, prompt));
        a_pages = a.page_ids();
    }
    CHECK(pool.stats().cached == 3);
    CHECK(pool.stats().free == 3);
    // Released last page first: the first page is evicted last.
    auto lru = pool.lru_order();
    CHECK(lru == std::vector<PageId>{a_pages[2], a_pages[1], a_pages[0]});

    BlockTable b(pool);
    CHECK(b.match_prefix(prompt) == 6);
    CHECK(pool.stats().cached == 0);
    CHECK(pool.stats().in_use == 3);
    b.clear();
    CHECK(pool.stats().cached == 3);
    lru = pool.lru_order();

    // Four new pages: 3 free, then the least recently released cached page (the last page).
    BlockTable c(pool);
    REQUIRE(dev.append(c, iota_tokens(8, 500)));
    CHECK(pool.stats().evictions == 1);
    CHECK(pool.state(lru[0]) == PageState::kInUse);
    BlockTable d(pool);
    CHECK(d.match_prefix(prompt) == 4);  // pages 0, 1 still cached
    d.clear();
    // Evict the first page: the second (still cached) is unreachable without its parent.
    c.clear();
    BlockTable e(pool);
    REQUIRE(dev.append(e, iota_tokens(12, 900)));  // all 6 pages
    CHECK_FALSE(pool.allocate());
    e.truncate(0);
    BlockTable f(pool);
    CHECK(f.match_prefix(prompt) == 0);
    pool.check_invariants();
}

TEST_CASE("prefix: a re-registered parent does not revive its old children") {
    PagePool pool(8, 2);
    Device dev(pool);
    auto prompt = std::vector<kv_token>{1, 2, 3, 4, 0};
    BlockTable a(pool);
    REQUIRE(dev.append(a, prompt));
    const PageId p0 = a.page_ids()[0], p1 = a.page_ids()[1];
    // a truncates into page 0 and rewrites it with the same tokens: same content, new
    // registration. Page 1 (released to the cache) was registered under the old one.
    a.truncate(1);
    CHECK(pool.state(p1) == PageState::kCached);
    REQUIRE(dev.append(a, {2, 9}));
    CHECK(a.page_ids()[0] == p0);
    CHECK(pool.registered(p0));
    BlockTable b(pool);
    // [1 2] found; [3 4] is cached but belongs to a dead registration of its parent.
    CHECK(b.match_prefix(prompt) == 2);
    CHECK(pool.state(p1) == PageState::kCached);
    pool.check_invariants();
}

TEST_CASE("prefix: N sessions sharing a P-token prompt store P once plus their own tokens") {
    const uint32_t ps = 16, P = 100, N = 8, own = 40;
    PagePool pool(256, ps);
    Device dev(pool);
    auto prompt = iota_tokens(P, 1);
    std::vector<BlockTable> s;
    s.reserve(N);
    for (uint32_t i = 0; i < N; ++i) {
        s.emplace_back(pool);
        const uint32_t covered = s[i].match_prefix(prompt);
        CHECK(covered == (i == 0 ? 0 : (P - 1) / ps * ps));
        REQUIRE(dev.append(s[i], std::vector<kv_token>(prompt.begin() + covered, prompt.end())));
        REQUIRE(dev.append(s[i], iota_tokens(own, kv_token(10000 * (i + 1)))));
    }
    // Shared: the full prompt pages. Each session: its own pages for [shared_tokens, P + own).
    const uint32_t shared_pages = (P - 1) / ps;  // 6 (P = 100 is not page aligned)
    const uint32_t own_pages = (P + own + ps - 1) / ps - shared_pages;
    CHECK(pool.stats().in_use == shared_pages + N * own_pages);
    CHECK(pool.stats().hits == (N - 1) * shared_pages);
    for (uint32_t i = 0; i < N; ++i) {
        auto expect = prompt;
        auto mine = iota_tokens(own, kv_token(10000 * (i + 1)));
        expect.insert(expect.end(), mine.begin(), mine.end());
        CHECK(dev.view_matches(s[i], expect));
        for (uint32_t p = 0; p < shared_pages; ++p) CHECK(s[i].page_ids()[p] == s[0].page_ids()[p]);
    }
    // Forks of one prefilled session share the same way.
    std::vector<BlockTable> forks;
    for (uint32_t i = 0; i < N; ++i) forks.push_back(s[0].fork());
    CHECK(pool.stats().in_use == shared_pages + N * own_pages);
    s.clear();
    forks.clear();
    CHECK(pool.stats().in_use == 0);
    pool.check_invariants();
}

TEST_CASE("prefix: shrinking the limit unregisters in-use pages beyond it") {
    PagePool pool(8, 2);
    Device dev(pool);
    BlockTable a(pool);
    REQUIRE(dev.append(a, iota_tokens(9, 1)));  // ids 0..4, 4 registered
    pool.set_limit(2);
    CHECK(pool.registered(a.page_ids()[0]));
    CHECK_FALSE(pool.registered(a.page_ids()[2]));
    BlockTable b(pool);
    // b may share the pages still below the limit... but 5 pages are in use, over the limit
    // of 2: reviving is fine for in-use pages (no new memory).
    CHECK(b.match_prefix(iota_tokens(9, 1)) == 4);
    a.check_invariants();
    b.check_invariants();
    a.clear();
    b.clear();
    CHECK(pool.stats().retired == 6);
    CHECK(pool.stats().cached == 2);
    pool.set_limit(8);
    pool.check_invariants();
}

TEST_CASE("prefix: tables of different roots never share pages, forks keep the root") {
    PagePool pool(16, 4);
    Device dev(pool);
    const uint64_t other_root = mix64(kRootHash);
    BlockTable a(pool, other_root);
    auto prompt = iota_tokens(10, 1);
    REQUIRE(dev.append(a, prompt));
    CHECK(pool.stats().registered == 2);
    BlockTable plain(pool);  // the default root: the same tokens are another prefix
    CHECK(plain.match_prefix(prompt) == 0);
    BlockTable same(pool, other_root);
    CHECK(same.match_prefix(prompt) == 8);
    CHECK(same.page_ids()[0] == a.page_ids()[0]);
    CHECK(same.page_hash(0) != chain_hash(kRootHash, prompt.data(), 4));
    BlockTable child = a.fork();
    CHECK(child.page_hash(1) == a.page_hash(1));
    pool.check_invariants();
}
