// C API: non-blocking work (kv_submit_*, tickets) and cancellation. A submit checks its
// arguments, takes its sessions (KV_ERR_BUSY if one is in use), copies what it was given and
// queues the work on the runtime's worker thread (engine/worker.h); the blocking verbs run there.
// The ticket completes when they return: the sessions are given back first, then waiters wake,
// then the optional callback runs on the worker thread.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "capi/api.h"
#include "capi/session_use.h"
#include "engine/offload.h"
#include "engine/runtime.h"
#include "engine/session.h"

using namespace kv;

struct kv_ticket {
    std::mutex mutex;
    std::condition_variable cv;
    engine::Worker* worker = nullptr;
    kv_ticket_callback callback = nullptr;
    void* user = nullptr;
    bool complete = false;              // results readable, sessions given back
    bool finished = false;              // ... and the callback returned
    bool destroy_when_finished = false;  // kv_ticket_destroy was called on the worker thread
    kv_status status = KV_OK;
    std::string message;
    std::vector<kv_token> tokens;
    std::vector<kv_status> statuses;
};

namespace {

engine::Worker& worker_of(kv_runtime& rt) {
    std::lock_guard<std::mutex> lock(rt.worker_mutex);
    if (!rt.worker) rt.worker = std::make_unique<engine::Worker>();
    return *rt.worker;
}

// Runs on the worker: `work` fills the ticket's results and returns the status (its errors are
// caught like any C call's); `give_back` returns the sessions before anyone is told.
template <typename Work, typename GiveBack>
void complete(kv_ticket* t, Work&& work, GiveBack&& give_back) {
    kv_status st = api::guard([&] { return work(); });
    std::string msg = st < 0 ? api::last_error() : "";
    give_back();
    {
        std::lock_guard<std::mutex> lock(t->mutex);
        t->status = st;
        t->message = std::move(msg);
        t->complete = true;
        t->cv.notify_all();
    }
    if (t->callback) t->callback(t, st, t->user);
    bool destroy;
    {
        std::lock_guard<std::mutex> lock(t->mutex);
        t->finished = true;
        destroy = t->destroy_when_finished;
        t->cv.notify_all();  // under the lock: a destroyer may free t as soon as it is released
    }
    if (destroy) delete t;
}

kv_ticket* new_ticket(kv_runtime& rt, kv_ticket_callback callback, void* user) {
    auto t = std::make_unique<kv_ticket>();
    t->worker = &worker_of(rt);
    t->callback = callback;
    t->user = user;
    return t.release();
}

}  // namespace

extern "C" {

KV_API kv_status kv_submit_prefill(kv_session* session, const kv_token* tokens, uint32_t n_tokens,
                                   kv_ticket_callback callback, void* user, kv_ticket** out_ticket) {
    return api::guard([&] {
        if (!out_ticket) fail(KV_ERR_INVALID_ARGUMENT, "out_ticket is NULL");
        if (!tokens) fail(KV_ERR_INVALID_ARGUMENT, "tokens is NULL");
        if (n_tokens == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_tokens is 0");
        api::SessionUse use(session, "session", api::Need::State);  // an offloaded one comes back on the worker
        std::vector<int32_t> ids(tokens, tokens + n_tokens);  // the caller's array is not read later
        kv_ticket* t = new_ticket(*(*use).model->runtime, callback, user);
        kv_session* s = use.release();
        t->worker->post([t, s, ids = std::move(ids)] {
            complete(
                t,
                [&] {
                    engine::restore(*s);
                    return engine::prefill(*s, ids.data(), uint32_t(ids.size()), nullptr);
                },
                [&] { api::give_back(s); });
        });
        *out_ticket = t;
        return KV_OK;
    });
}

KV_API kv_status kv_submit_decode(kv_session* session, kv_ticket_callback callback, void* user,
                                  kv_ticket** out_ticket) {
    return api::guard([&] {
        if (!out_ticket) fail(KV_ERR_INVALID_ARGUMENT, "out_ticket is NULL");
        api::SessionUse use(session, "session", api::Need::State);  // an offloaded one comes back on the worker
        kv_ticket* t = new_ticket(*(*use).model->runtime, callback, user);
        kv_session* s = use.release();
        t->worker->post([t, s] {
            complete(
                t,
                [&] {
                    int32_t tok = -1;
                    engine::restore(*s);
                    kv_status st = engine::decode_step(*s, &tok);
                    t->tokens.assign(1, tok);
                    t->statuses.assign(1, st);
                    return st;
                },
                [&] { api::give_back(s); });
        });
        *out_ticket = t;
        return KV_OK;
    });
}

KV_API kv_status kv_submit_decode_batch(kv_session* const* sessions, uint32_t n_sessions,
                                        kv_ticket_callback callback, void* user, kv_ticket** out_ticket) {
    return api::guard([&] {
        if (!out_ticket) fail(KV_ERR_INVALID_ARGUMENT, "out_ticket is NULL");
        if (!sessions) fail(KV_ERR_INVALID_ARGUMENT, "sessions is NULL");
        if (n_sessions == 0) fail(KV_ERR_INVALID_ARGUMENT, "n_sessions is 0");
        std::vector<engine::BatchItem> items(n_sessions);
        for (uint32_t i = 0; i < n_sessions; ++i) items[i].session = sessions[i];
        engine::check_batch(items);
        kv_ticket* t = new_ticket(*sessions[0]->model->runtime, callback, user);
        auto use = std::make_shared<api::BatchUse>(std::move(items));
        t->worker->post([t, use] {
            complete(
                t,
                [&] {
                    kv_status rc = KV_OK;
                    try {
                        use->run();
                    } catch (const Error& e) {
                        rc = e.status();  // the items carry it too
                    }
                    for (const auto& it : use->items()) {
                        t->tokens.push_back(it.status == KV_OK || it.status == KV_END_OF_GENERATION ? it.token : -1);
                        t->statuses.push_back(it.status);
                    }
                    for (const auto& it : use->items())
                        if (it.status < 0) {
                            api::set_error(it.status, it.message);
                            break;
                        }
                    return rc;
                },
                [&] { use->give_back_all(); });
        });
        *out_ticket = t;
        return KV_OK;
    });
}

KV_API kv_status kv_ticket_wait(kv_ticket* ticket, uint64_t timeout_ns) {
    return api::guard([&]() -> kv_status {
        if (!ticket) fail(KV_ERR_INVALID_ARGUMENT, "ticket is NULL");
        std::unique_lock<std::mutex> lock(ticket->mutex);
        if (!ticket->complete && timeout_ns > 0) {
            if (ticket->worker->on_this_thread())
                fail(KV_ERR_BAD_STATE, "waiting for a ticket inside a completion callback would never end: poll "
                     "(timeout 0) there instead");
            auto done = [&] { return ticket->complete; };
            if (timeout_ns == UINT64_MAX) ticket->cv.wait(lock, done);
            else ticket->cv.wait_for(lock, std::chrono::nanoseconds(std::min<uint64_t>(timeout_ns, INT64_MAX / 2)), done);
        }
        if (!ticket->complete) return KV_NOT_READY;
        if (ticket->status < 0) api::set_error(ticket->status, ticket->message);
        return ticket->status;
    });
}

KV_API kv_status kv_ticket_poll(kv_ticket* ticket) { return kv_ticket_wait(ticket, 0); }

KV_API kv_status kv_ticket_results(kv_ticket* ticket, kv_token* out_tokens, kv_status* out_status, uint32_t capacity,
                                   uint32_t* n_out) {
    return api::guard([&]() -> kv_status {
        if (!ticket) fail(KV_ERR_INVALID_ARGUMENT, "ticket is NULL");
        if (!n_out) fail(KV_ERR_INVALID_ARGUMENT, "n_out is NULL");
        std::lock_guard<std::mutex> lock(ticket->mutex);
        if (!ticket->complete) return KV_NOT_READY;
        const uint32_t n = uint32_t(ticket->tokens.size());
        *n_out = n;
        if (capacity < n) return KV_INCOMPLETE;
        if (n && (!out_tokens || !out_status))
            fail(KV_ERR_INVALID_ARGUMENT, "out_tokens and out_status must hold %u entries", n);
        for (uint32_t i = 0; i < n; ++i) {
            out_tokens[i] = ticket->tokens[i];
            out_status[i] = ticket->statuses[i];
        }
        return KV_OK;
    });
}

KV_API void kv_ticket_destroy(kv_ticket* ticket) {
    if (!ticket) return;
    api::guard([&]() -> kv_status {
        {
            std::unique_lock<std::mutex> lock(ticket->mutex);
            if (!ticket->finished && ticket->worker->on_this_thread()) {
                // From a callback (its own ticket's, or another's): freed once its work is done.
                ticket->destroy_when_finished = true;
                return KV_OK;
            }
            ticket->cv.wait(lock, [&] { return ticket->finished; });
        }
        delete ticket;
        return KV_OK;
    });
}

KV_API kv_status kv_session_cancel(kv_session* session) {
    return api::guard([&] {
        if (!session) fail(KV_ERR_INVALID_ARGUMENT, "session is NULL");
        session->cancel.store(true, std::memory_order_relaxed);
        return KV_OK;
    });
}

}  // extern "C"
