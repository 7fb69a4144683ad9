// A C call's exclusive use of its sessions. A session is taken (kv_session::busy) for the length
// of a call, or from a kv_submit_* until its ticket completes; a second call meanwhile fails with
// KV_ERR_BUSY and touches nothing, so two threads on one session by mistake get a status, never a
// race. Taking a session also clears its cancel request: kv_session_cancel stops the work of the
// call (or ticket) it finds running, not a later one.
#pragma once

#include <kvulkan/kvulkan.h>

#include <vector>

#include "engine/batch.h"
#include "engine/session.h"

namespace kv::api {

// What a call needs of its session: its KV pages on the device (an offloaded session is brought
// back first, engine/offload.h), or only its host-side state (statistics, logits, reset).
enum class Need { Cache, State };

// Takes `s` (throws KV_ERR_INVALID_ARGUMENT for NULL, KV_ERR_BUSY when in use, KV_ERR_DEVICE_LOST,
// or a restore's error; the session is not taken then).
kv_session& take_session(kv_session* s, const char* what = "session", Need need = Need::Cache);
void give_back(kv_session* s) noexcept;

class SessionUse {
public:
    explicit SessionUse(kv_session* s, const char* what = "session", Need need = Need::Cache)
        : s_(&take_session(s, what, need)) {}
    ~SessionUse() {
        if (s_) give_back(s_);
    }
    SessionUse(const SessionUse&) = delete;
    SessionUse& operator=(const SessionUse&) = delete;
    kv_session& operator*() const { return *s_; }
    // Hands the session over (a ticket gives it back when its work is done).
    kv_session* release() {
        kv_session* s = s_;
        s_ = nullptr;
        return s;
    }

private:
    kv_session* s_;
};

// A checked batch (engine::check_batch) whose sessions are taken where free: an item whose session
// is in use gets KV_ERR_BUSY as its status and stays out of the passes; the others run. Offloaded
// sessions are brought back by run() (one that cannot be gets the restore's error as its status).
class BatchUse {
public:
    explicit BatchUse(std::vector<engine::BatchItem> items);
    ~BatchUse();
    BatchUse(const BatchUse&) = delete;
    BatchUse& operator=(const BatchUse&) = delete;
    // Runs the taken items (engine::eval_batch; a pass's error throws, the items carry it too).
    void run();
    void give_back_all() noexcept;
    const std::vector<engine::BatchItem>& items() const { return items_; }

private:
    std::vector<engine::BatchItem> items_;
    std::vector<bool> taken_;
};

}  // namespace kv::api
