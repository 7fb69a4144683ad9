// Randomized model check of the KV-cache bookkeeping: thousands of create / prefix-hit / prefill /
// decode / reserve-only / fork / truncate / window / reset / destroy / limit operations across
// many sequences on a small pool, with every invariant re-checked after every step against an
// independent shadow (each sequence's tokens, and a simulated device written only through the
// block tables' page ids and copy lists).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "common/helpers.h"
#include "kv_sim.h"

using namespace kv::kvcache;
using kvsim::Device;

namespace {

uint64_t constant_hash(uint64_t, const kv_token*, size_t) { return 7; }
uint64_t tiny_hash(uint64_t parent, const kv_token* t, size_t n) {
    return (parent * 31 + uint64_t(uint32_t(t[0])) + n) & 3;
}

struct Seq {
    explicit Seq(PagePool& pool) : table(pool) {}
    BlockTable table;
    std::vector<kv_token> tokens;    // shadow: what this sequence has committed
    uint32_t window = 0, sinks = 0;  // window 0: no sliding window
};

struct Totals {
    uint64_t steps = 0, out_of_pages = 0, copies = 0, hits = 0, evictions = 0, released = 0,
             forks = 0, truncates = 0, limit_changes = 0, shared_pages_seen = 0;
};

class Model {
public:
    Model(uint32_t seed, Totals& totals) : rng_(seed), totals_(totals) {
        const uint32_t sizes[] = {1, 2, 3, 4, 8};
        ps_ = sizes[pick(5)];
        capacity_ = 8 + pick(56);
        const PrefixHashFn fns[] = {nullptr, &constant_hash, &tiny_hash};
        hash_kind_ = pick(3);
        pool_ = std::make_unique<PagePool>(capacity_, ps_, fns[hash_kind_]);
        dev_ = std::make_unique<Device>(*pool_);
        vocab_ = 2 + pick(6);  // tiny vocabularies make natural prefix reuse and collisions
        for (auto& t : templates_) t = random_tokens(8 + pick(40));
    }

    void run(uint32_t steps) {
        for (uint32_t i = 0; i < steps; ++i) {
            step();
            ++totals_.steps;
            verify();
        }
        const PoolStats s = pool_->stats();
        totals_.hits += s.hits;
        totals_.evictions += s.evictions;
        totals_.copies += dev_->copies_done;
        seqs_.clear();  // destruction returns every page
        pool_->set_limit(capacity_);
        const PoolStats e = pool_->stats();
        CHECK(e.in_use == 0);
        CHECK(e.free + e.cached == capacity_);
        pool_->check_invariants();
    }

private:
    uint32_t pick(uint32_t n) { return uint32_t(rng_() % n); }
    bool chance(uint32_t percent) { return pick(100) < percent; }
    std::vector<kv_token> random_tokens(uint32_t n) {
        std::vector<kv_token> t(n);
        for (auto& x : t) x = kv_token(pick(vocab_));
        return t;
    }

    bool append(Seq& s, const std::vector<kv_token>& t) {
        if (!dev_->append(s.table, t)) {
            ++totals_.out_of_pages;
            // The engine would preempt someone; free room by dropping another sequence.
            if (chance(50) && seqs_.size() > 1) {
                const uint32_t victim = pick(uint32_t(seqs_.size()));
                if (seqs_[victim].get() != &s) seqs_.erase(seqs_.begin() + victim);
            }
            return false;
        }
        s.tokens.insert(s.tokens.end(), t.begin(), t.end());
        if (s.window) totals_.released += s.table.release_outside_window(s.window, s.sinks);
        return true;
    }

    void create() {
        seqs_.push_back(std::make_unique<Seq>(*pool_));
        Seq& s = *seqs_.back();
        if (chance(25)) {
            s.window = 1 + pick(12);
            s.sinks = pick(6);
        }
        std::vector<kv_token> prompt;
        if (chance(75)) {
            const auto& t = templates_[pick(kTemplates)];
            prompt.assign(t.begin(), t.begin() + 1 + pick(uint32_t(t.size())));
        }
        auto tail = random_tokens(pick(6));
        prompt.insert(prompt.end(), tail.begin(), tail.end());
        if (prompt.empty()) return;
        const uint32_t covered = s.table.match_prefix(prompt);
        CHECK(covered % ps_ == 0);
        CHECK(covered < prompt.size());
        s.tokens.assign(prompt.begin(), prompt.begin() + covered);
        append(s, std::vector<kv_token>(prompt.begin() + covered, prompt.end()));
    }

    Seq& any() { return *seqs_[pick(uint32_t(seqs_.size()))]; }

    void step() {
        const uint32_t op = pick(100);
        if (seqs_.empty() || (op < 12 && seqs_.size() < 12)) return create();
        Seq& s = any();
        if (op < 30) {  // prefill more
            append(s, random_tokens(1 + pick(3 * ps_)));
        } else if (op < 55) {  // decode
            append(s, random_tokens(1));
        } else if (op < 60) {  // reserve without commit (e.g. a failed or aborted pass)
            std::vector<PageCopy> copies;
            kvsim::Snapshot before = kvsim::Snapshot::take(s.table);
            const uint32_t n = 1 + pick(2 * ps_);
            const bool fits = pool_->can_allocate(s.table.pages_needed(n));
            const ReserveStatus st = s.table.reserve(n, &copies);
            CHECK(fits == (st == ReserveStatus::kOk));
            if (st == ReserveStatus::kOk) {
                dev_->apply(copies);
            } else {
                ++totals_.out_of_pages;
                CHECK(kvsim::Snapshot::take(s.table) == before);
            }
        } else if (op < 68) {  // fork
            if (seqs_.size() >= 12) seqs_.erase(seqs_.begin() + pick(uint32_t(seqs_.size())));
            if (seqs_.empty()) return;
            Seq& parent = any();
            auto child = std::make_unique<Seq>(*pool_);
            child->table = parent.table.fork();
            child->tokens = parent.tokens;
            child->window = parent.window;
            child->sinks = parent.sinks;
            seqs_.push_back(std::move(child));
            ++totals_.forks;
        } else if (op < 78) {  // truncate to a resident position
            uint32_t n = s.table.n_tokens() == 0 ? 0 : pick(s.table.n_tokens() + 1);
            if (n > 0 && !s.table.resident(n - 1)) n = 0;
            s.table.truncate(n);
            s.tokens.resize(n);
            ++totals_.truncates;
        } else if (op < 83) {  // reset
            s.table.clear();
            s.tokens.clear();
        } else if (op < 90) {  // destroy
            seqs_.erase(seqs_.begin() + pick(uint32_t(seqs_.size())));
        } else if (op < 93) {  // budget change
            pool_->set_limit(chance(50) ? capacity_ : capacity_ / 2 + pick(capacity_ / 2 + 1));
            ++totals_.limit_changes;
        } else {  // another session reusing a template prompt
            create();
        }
        // Keep sequences short enough that the pool can hold something.
        if (!seqs_.empty()) {
            Seq& t = any();
            if (t.tokens.size() > 6u * ps_ * 4 && !t.window) {
                t.table.clear();
                t.tokens.clear();
            }
        }
    }

    void verify() {
        PagePool& pool = *pool_;
        pool.check_invariants();
        const uint32_t cap = pool.capacity();
        std::vector<uint32_t> holders(cap, 0);
        // page -> (sequence, logical index) of each holder
        std::map<PageId, std::vector<std::pair<const Seq*, uint32_t>>> where;
        uint64_t table_refs = 0;
        for (const auto& sp : seqs_) {
            const Seq& s = *sp;
            s.table.check_invariants();
            REQUIRE(s.table.n_tokens() == s.tokens.size());
            REQUIRE(dev_->view_matches(s.table, s.tokens));
            const auto& ids = s.table.page_ids();
            for (uint32_t i = 0; i < ids.size(); ++i) {
                if (ids[i] == kNoPage) continue;
                REQUIRE(ids[i] < cap);
                ++holders[ids[i]];
                ++table_refs;
                where[ids[i]].push_back({&s, i});
            }
            if (s.table.n_tokens() > 0) CHECK(s.table.resident(s.table.n_tokens() - 1));
            for (uint32_t p = 0; p < std::min<size_t>(s.sinks, s.tokens.size()); ++p) {
                if (s.window) CHECK(s.table.resident(p));
            }
        }
        // Every reference is held by a table (the index holds none); no page is lost.
        uint64_t pool_refs = 0;
        uint32_t referenced = 0;
        for (PageId p = 0; p < cap; ++p) {
            REQUIRE(pool.ref_count(p) == holders[p]);
            pool_refs += pool.ref_count(p);
            if (holders[p] > 0) {
                ++referenced;
                REQUIRE(pool.state(p) == PageState::kInUse);  // never free and referenced
            } else {
                REQUIRE(pool.state(p) != PageState::kInUse);
            }
            // The index verifies lookups against the token shadow: it must be the real content.
            if (pool.registered(p)) {
                for (uint32_t i = 0; i < ps_; ++i) REQUIRE(pool.tokens(p)[i] == dev_->slot(p, i));
            }
        }
        REQUIRE(pool_refs == table_refs);
        const PoolStats st = pool.stats();
        REQUIRE(st.in_use == referenced);
        REQUIRE(st.free + st.cached + st.in_use + st.retired == cap);
        // Shared pages: same logical index in every holder, and identical tokens wherever the
        // holders' committed ranges overlap (only fork or a prefix hit can share a page).
        for (const auto& [page, hs] : where) {
            if (hs.size() < 2) continue;
            ++totals_.shared_pages_seen;
            const uint32_t idx = hs[0].second;
            const uint32_t p0 = idx * ps_;
            for (size_t k = 1; k < hs.size(); ++k) {
                REQUIRE(hs[k].second == idx);
                const auto& a = hs[0].first->tokens;
                const auto& b = hs[k].first->tokens;
                const size_t end = std::min({a.size(), b.size(), size_t(p0 + ps_)});
                for (size_t pos = p0; pos < end; ++pos) REQUIRE(a[pos] == b[pos]);
            }
        }
    }

    static constexpr uint32_t kTemplates = 4;
    std::mt19937 rng_;
    Totals& totals_;
    uint32_t ps_ = 0, capacity_ = 0, hash_kind_ = 0, vocab_ = 0;
    std::unique_ptr<PagePool> pool_;
    std::unique_ptr<Device> dev_;
    std::vector<std::unique_ptr<Seq>> seqs_;
    std::vector<kv_token> templates_[kTemplates];
};

}  // namespace

TEST_CASE("kv cache randomized: every invariant after every operation") {
    const uint32_t seed = kvtest::fresh_seed();
    // fresh_seed() returns KV_TEST_SEED + its call count (1 for this test alone under ctest).
    std::printf("kvcache randomized test: seed %u (reproduce: KV_TEST_SEED=%u under ctest)\n", seed,
                seed - 1);
    INFO("seed " << seed);
    Totals totals;
    std::mt19937 seeds(seed);
    for (int run = 0; run < 24; ++run) {
        const uint32_t run_seed = seeds();
        CAPTURE(run);
        CAPTURE(run_seed);
        Model(run_seed, totals).run(2000);
    }
    std::printf(
        "  %llu steps: %llu out-of-pages, %llu CoW copies, %llu prefix hits, %llu evictions, "
        "%llu window releases, %llu forks, %llu truncates, %llu limit changes\n",
        (unsigned long long)totals.steps, (unsigned long long)totals.out_of_pages,
        (unsigned long long)totals.copies, (unsigned long long)totals.hits,
        (unsigned long long)totals.evictions, (unsigned long long)totals.released,
        (unsigned long long)totals.forks, (unsigned long long)totals.truncates,
        (unsigned long long)totals.limit_changes);
    // The run exercised every path it claims to check.
    CHECK(totals.out_of_pages > 0);
    CHECK(totals.copies > 0);
    CHECK(totals.hits > 0);
    CHECK(totals.evictions > 0);
    CHECK(totals.released > 0);
    CHECK(totals.shared_pages_seen > 0);
}
