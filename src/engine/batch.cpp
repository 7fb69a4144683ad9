#include "engine/batch.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <string>

#include "engine/runtime.h"
#include "engine/session_ops.h"

kv_model::kv_model() = default;
kv_model::~kv_model() = default;

namespace kv::engine {

using namespace detail;

PassScratch BatchScratch::view() {
    PassScratch sc;
    sc.ids = &ids;
    sc.x = &x;
    sc.h = &h;
    sc.q = &q;
    sc.attn = &attn;
    sc.k = &k;
    sc.v = &v;
    sc.gate = &gate;
    sc.up = &up;
    sc.logits = &logits;
    sc.cs = cs.get();
    sc.rows = rows;
    sc.logit_rows = logit_rows;
    return sc;
}

namespace {

// Rows and logits rows a pass of this model may have (one binding holds each activation).
uint32_t max_pass_rows(const kv_model& m) {
    const auto& c = m.config();
    uint64_t range = m.runtime->device->max_storage_buffer_range();
    uint64_t widest = std::max<uint64_t>({c.n_embd, c.q_dim(), c.n_ff}) * 4;
    return uint32_t(std::min<uint64_t>(BatchScratch::kMaxRows, std::max<uint64_t>(1, range / widest)));
}
uint32_t max_pass_logit_rows(const kv_model& m) {
    uint64_t range = m.runtime->device->max_storage_buffer_range();
    return uint32_t(std::min<uint64_t>(max_pass_rows(m), std::max<uint64_t>(1, range / (uint64_t(m.config().n_vocab) * 4))));
}

// The model's batch scratch with room for `rows` rows and `logit_rows` logits rows.
BatchScratch& batch_scratch(kv_model& m, uint32_t rows, uint32_t logit_rows) {
    auto& b = m.batch_scratch;
    if (b && b->rows >= rows && b->logit_rows >= logit_rows) return *b;
    const auto& c = m.config();
    // Grow in steps, so a batch that gains a session does not reallocate every time.
    auto round = [](uint32_t n) { return n <= 16 ? 16u : n <= 64 ? 64u : n <= 256 ? 256u : 512u; };
    uint32_t R = std::min(std::max(rows, round(rows)), max_pass_rows(m));
    uint32_t LR = std::min(std::max(logit_rows, round(logit_rows)), max_pass_logit_rows(m));
    R = std::max({R, rows, b ? b->rows : 0u});
    LR = std::max({LR, logit_rows, b ? b->logit_rows : 0u});
    b.reset();  // the old buffers go first (device memory)
    auto nb = std::make_unique<BatchScratch>();
    vk::Allocator* al = m.runtime->allocator.get();
    auto dev = [&](uint64_t floats) { return vk::Buffer(al, floats * 4, vk::MemoryUse::Device); };
    nb->ids = vk::Buffer(al, uint64_t(R) * 4, vk::MemoryUse::Upload);
    nb->x = dev(uint64_t(R) * c.n_embd);
    nb->h = dev(std::max<uint64_t>(uint64_t(R) * c.n_embd, c.n_vocab));
    nb->q = dev(uint64_t(R) * c.q_dim());
    nb->attn = dev(uint64_t(R) * c.q_dim());
    nb->k = dev(uint64_t(R) * c.kv_dim());
    nb->v = dev(uint64_t(R) * c.kv_dim());
    nb->gate = dev(uint64_t(R) * c.n_ff);
    nb->up = dev(uint64_t(R) * c.n_ff);
    nb->logits = dev(uint64_t(LR) * c.n_vocab);
    // It binds the sessions' buffers, which may be destroyed between batches: no set reuse.
    nb->cs = std::make_unique<vk::CommandStream>(*m.runtime->device,
                                                 m.gpu_budget ? std::max(4u, GpuBudget::slots(c.n_layer)) : 4u);
    nb->rows = R;
    nb->logit_rows = LR;
    b = std::move(nb);
    return *b;
}

// One item while it is prepared, run and finished.
struct Work {
    BatchItem* item = nullptr;
    kv_session* s = nullptr;
    uint32_t old_past = 0;
    LogitsState before{};
    std::optional<std::mt19937_64> rng_before;  // decode items that sampled on the host
    std::unique_ptr<PendingCopies> pending;
    uint32_t pos0 = 0, rows = 0;  // rows [pos0, pos0 + rows) of s->tokens run in the pass
    uint32_t prefix_hit = 0;
    uint32_t pass = 0;
    Clock::time_point t0;
};

// Undoes what prepare() did to the item's session.
void undo(Work& w) {
    rollback(*w.s, w.old_past, w.before);
    if (w.rng_before) w.s->sampler->set_rng(*w.rng_before);
    w.s->prefix_hit_tokens -= w.prefix_hit;
    w.prefix_hit = 0;
}

// Samples (decode) or takes the tokens (token items), reserves pages. Returns false when the item
// needs no pass (end of generation). Throws the item's own errors, with its session unchanged.
bool prepare(Work& w, uint32_t rows_left) {
    BatchItem& it = *w.item;
    kv_session& s = *w.s;
    const uint32_t nv = s.model->config().n_vocab;
    w.old_past = s.n_past;
    w.before = logits_state(s);
    w.t0 = Clock::now();
    if (!it.tokens) {
        if (!s.has_logits) fail(KV_ERR_BAD_STATE, "no logits yet: call kv_prefill first");
        if (s.n_past >= max_positions(s))
            fail(KV_ERR_CONTEXT_FULL, "the context is full (%u of %u positions)", s.n_past, max_positions(s));
        int32_t tok;
        if (s.sampler->gpu_greedy() && s.next_token_valid) {
            tok = s.next_token;
        } else {
            std::vector<float> l(nv);
            copy_logits(s, l.data());
            w.rng_before = s.sampler->rng();
            tok = s.sampler->sample(l.data(), nv, s.tokens);
        }
        it.token = tok;
        if (s.model->tokenizer->is_eog(tok)) {
            it.status = KV_END_OF_GENERATION;
            return false;
        }
        s.tokens.push_back(tok);
        w.pos0 = s.n_past;
        w.rows = 1;
    } else {
        if (it.n_tokens == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_tokens is 0");
        if (uint64_t(s.n_past) + it.n_tokens > max_positions(s))
            fail(KV_ERR_CONTEXT_FULL, "%u tokens do not fit: %u of %u positions are used", it.n_tokens, s.n_past,
                 max_positions(s));
        if (it.logits) {
            if (it.logits_capacity < uint64_t(it.n_tokens) * nv)
                fail(KV_ERR_INVALID_ARGUMENT, "logits capacity %llu floats is below %u tokens x %u vocab",
                     (unsigned long long)it.logits_capacity, it.n_tokens, nv);
            if (it.n_tokens > std::min(s.max_logit_rows, s.n_batch))
                fail(KV_ERR_INVALID_ARGUMENT,
                     "an item that wants logits evaluates at most %u tokens in one pass (this one has %u)",
                     std::min(s.max_logit_rows, s.n_batch), it.n_tokens);
        }
        check_tokens(s, it.tokens, it.n_tokens);
        uint32_t take = std::min({it.n_tokens, s.n_batch, rows_left});
        if (it.logits && take < it.n_tokens) take = 0;  // a verify runs whole, in a later pass
        if (take == 0) return false;
        s.tokens.insert(s.tokens.end(), it.tokens, it.tokens + take);
        w.pos0 = s.n_past;
        if (s.n_past == 0 && !it.logits) {
            // Prefix sharing, as kv_prefill: whole cached pages of the same leading tokens.
            const uint32_t from = match_prefix(s);
            w.pos0 = from;
            w.prefix_hit = from;
        }
        w.rows = take - (w.pos0 - w.old_past);  // >= 1: match_prefix leaves a token uncovered
    }
    w.pending = std::make_unique<PendingCopies>();
    reserve_pages(s, w.rows, w.pending.get());
    return true;
}

// The status and message of the exception being handled.
kv_status current_error(std::string* message) {
    try {
        throw;
    } catch (const Error& e) {
        *message = e.what();
        return e.status();
    } catch (const std::bad_alloc&) {
        *message = "out of host memory";
        return KV_ERR_OUT_OF_HOST_MEMORY;
    } catch (const std::exception& e) {
        *message = std::string("internal error: ") + e.what();
        return KV_ERR_INTERNAL;
    }
}

// One item through the single-session verbs (no-cache sessions, unbindable rows).
void run_alone(BatchItem& it) {
    kv_session& s = *it.session;
    try {
        if (!it.tokens) {
            it.status = decode_step(s, &it.token);
            it.n_done = it.status == KV_OK ? 1 : 0;
        } else {
            prefill(s, it.tokens, it.n_tokens, it.logits);
            it.n_done = it.n_tokens;
            it.status = KV_OK;
        }
    } catch (...) {
        it.status = current_error(&it.message);
    }
}

}  // namespace

void check_batch(const std::vector<BatchItem>& items) {
    if (items.empty()) fail(KV_ERR_INVALID_ARGUMENT, "the batch is empty");
    const kv_model* model = nullptr;
    std::set<const kv_session*> seen;
    for (size_t i = 0; i < items.size(); ++i) {
        const kv_session* s = items[i].session;
        if (!s) fail(KV_ERR_INVALID_ARGUMENT, "session %zu of the batch is NULL", i);
        if (!seen.insert(s).second) fail(KV_ERR_INVALID_ARGUMENT, "session %zu appears twice in the batch", i);
        if (model && s->model != model)
            fail(KV_ERR_INVALID_ARGUMENT, "session %zu belongs to another model than session 0: a batch is one model's", i);
        model = s->model;
    }
    if (model->runtime->device->lost())
        fail(KV_ERR_DEVICE_LOST, "the device was lost; destroy the sessions, model and runtime and recreate them");
}

uint32_t eval_batch(std::vector<BatchItem>& items) {
    check_batch(items);
    kv_model* model = items[0].session->model;
    for (auto& it : items) {
        it.status = KV_OK;
        it.n_done = 0;
        it.token = -1;
    }
    const bool bindable = rows_bindable(*model);
    std::lock_guard<std::mutex> batch_lock(model->batch_mutex);

    // Place the items in passes, preparing each (its own errors become its status).
    const uint32_t max_rows = max_pass_rows(*model), max_logit_rows = max_pass_logit_rows(*model);
    std::vector<Work> work;
    work.reserve(items.size());
    std::vector<uint32_t> pass_rows{0}, pass_logit_rows{0};
    for (auto& it : items) {
        if (!bindable || (it.session->flags & KV_SESSION_NO_CACHE)) continue;  // run alone, below
        // Decode items first fill passes in order; a token item takes what the current pass has left.
        uint32_t p = uint32_t(pass_rows.size() - 1);
        const uint32_t want_logit_rows = it.logits ? it.n_tokens : 1;
        if (pass_rows[p] + 1 > max_rows || pass_logit_rows[p] + want_logit_rows > max_logit_rows) {
            pass_rows.push_back(0);
            pass_logit_rows.push_back(0);
            ++p;
        }
        Work w;
        w.item = &it;
        w.s = it.session;
        w.pass = p;
        try {
            if (!prepare(w, max_rows - pass_rows[p])) continue;
        } catch (...) {
            undo(w);
            it.status = current_error(&it.message);
            continue;
        }
        pass_rows[p] += w.rows;
        pass_logit_rows[p] += it.logits ? w.rows : 1;
        work.push_back(std::move(w));
    }

    // Run the passes; a session of a single-segment pass uses its own scratch.
    uint32_t passes = 0;
    for (uint32_t p = 0; p < pass_rows.size(); ++p) {
        std::vector<Segment> segs;
        std::vector<Work*> ws;
        for (auto& w : work)
            if (w.pass == p) {
                Segment g;
                g.session = w.s;
                g.pos0 = w.pos0;
                g.n_tokens = w.rows;
                g.mode = w.item->logits ? LogitsMode::All : LogitsMode::Last;
                g.host_logits = w.item->logits || !w.s->sampler->gpu_greedy();
                g.copies = &w.pending->copies;
                g.window_copies = &w.pending->window_copies;
                segs.push_back(g);
                ws.push_back(&w);
            }
        if (segs.empty()) continue;
        BatchScratch* shared = segs.size() > 1 ? &batch_scratch(*model, pass_rows[p], pass_logit_rows[p]) : nullptr;
        PassScratch sc = shared ? shared->view() : own_scratch(*segs[0].session);
        const uint64_t submitted = sc.cs->submissions();
        try {
            run_pass(*model, sc, segs);
            ++passes;
        } catch (...) {
            // This pass and every later one: undone, with the error as their status. Copy-on-write
            // copies that never reached the GPU run on their own first (see redo_copies).
            std::string message;
            const kv_status st = current_error(&message);
            const bool lost = model->runtime->device->lost();
            for (auto& w : work)
                if (w.pass >= p) {
                    const bool copies_ran = w.pass == p && sc.cs->submissions() != submitted;
                    if (!lost && !copies_ran && !w.pending->empty()) redo_copies(*w.s, *w.pending);
                    undo(w);
                    w.item->status = st;
                    w.item->message = message;
                    w.item->n_done = 0;
                }
            throw;
        }
        for (Work* w : ws) {
            kv_session& s = *w->s;
            BatchItem& it = *w->item;
            commit_tokens(s, w->pos0, w->rows);
            release_window_pages(s);  // each session is in one pass only: its call ends here
            const double ms = ms_since(w->t0);
            if (!it.tokens) {
                s.sampler->accept(it.token, w->pos0);  // the grammar, if any, moves past it
                it.n_done = 1;
                s.tokens_decoded += 1;
                s.last_decode_ms = ms;
                s.total_decode_ms += ms;
            } else {
                it.n_done = s.n_past - w->old_past;
                s.tokens_prefilled += it.n_done;
                s.last_prefill_ms = ms;
                s.total_prefill_ms += ms;
                s.last_prefill_tokens = it.n_done;
                if (it.logits) {
                    const uint32_t V = s.model->config().n_vocab;
                    s.readback.invalidate(0, uint64_t(w->rows) * V * 4);
                    std::memcpy(it.logits, s.readback.mapped(), uint64_t(w->rows) * V * 4);
                }
            }
        }
    }
    for (auto& it : items)
        if (!bindable || (it.session->flags & KV_SESSION_NO_CACHE)) run_alone(it);
    return passes;
}

}  // namespace kv::engine
