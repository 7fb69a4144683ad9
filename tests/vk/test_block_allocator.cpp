#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "common/helpers.h"
#include "common/error.h"
#include "vk/block_allocator.h"

using kv::vk::BlockAllocator;

TEST_CASE("block allocator: aligned first fit, split and coalesce") {
    BlockAllocator a(1024);
    uint64_t o1, o2, o3;
    REQUIRE(a.allocate(100, 64, &o1));
    CHECK(o1 == 0);
    REQUIRE(a.allocate(10, 64, &o2));
    CHECK(o2 == 128);  // aligned past the first
    REQUIRE(a.allocate(200, 256, &o3));
    CHECK(o3 == 256);
    CHECK(a.used() == 310);
    a.free(o2, 10);
    a.free(o1, 100);
    // 0..256 is free again as one range (head padding merged back).
    uint64_t o4;
    REQUIRE(a.allocate(256, 1, &o4));
    CHECK(o4 == 0);
    a.free(o4, 256);
    a.free(o3, 200);
    CHECK(a.empty());
    CHECK(a.free_range_count() == 1);
    CHECK(a.largest_free() == 1024);
}

TEST_CASE("block allocator: exhaustion is a normal outcome") {
    BlockAllocator a(4096);
    uint64_t o;
    CHECK_FALSE(a.allocate(4097, 1, &o));
    REQUIRE(a.allocate(4096, 1, &o));
    CHECK_FALSE(a.allocate(1, 1, &o));
    a.free(0, 4096);
    CHECK(a.allocate(1, 4096, &o));
}

TEST_CASE("block allocator: double free and overlap are caught") {
    BlockAllocator a(1024);
    uint64_t o;
    REQUIRE(a.allocate(64, 16, &o));
    a.free(o, 64);
    CHECK_THROWS_AS(a.free(o, 64), kv::Error);
}

TEST_CASE("block allocator: randomized allocations never overlap and always coalesce") {
    uint32_t seed = kvtest::fresh_seed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const uint64_t size = 1 << 20;
    BlockAllocator a(size);
    struct R { uint64_t off, size; };
    std::vector<R> live;
    for (int step = 0; step < 20000; ++step) {
        if (live.empty() || rng() % 3) {
            uint64_t s = 1 + rng() % 8192;
            uint64_t al = 1ull << (rng() % 9);
            uint64_t off;
            if (a.allocate(s, al, &off)) {
                CHECK(off % al == 0);
                CHECK(off + s <= size);
                live.push_back({off, s});
            }
        } else {
            size_t i = rng() % live.size();
            a.free(live[i].off, live[i].size);
            live.erase(live.begin() + long(i));
        }
        if (step % 1000 == 0) {
            auto sorted = live;
            std::sort(sorted.begin(), sorted.end(), [](R x, R y) { return x.off < y.off; });
            uint64_t used = 0;
            for (size_t i = 0; i < sorted.size(); ++i) {
                used += sorted[i].size;
                if (i) REQUIRE(sorted[i - 1].off + sorted[i - 1].size <= sorted[i].off);
            }
            REQUIRE(used == a.used());
        }
    }
    for (auto& r : live) a.free(r.off, r.size);
    CHECK(a.empty());
    CHECK(a.free_range_count() == 1);
}
