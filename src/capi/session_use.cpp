#include "capi/session_use.h"

#include "common/error.h"
#include "engine/offload.h"
#include "engine/runtime.h"

namespace kv::api {

kv_session& take_session(kv_session* s, const char* what, Need need) {
    if (!s) fail(KV_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    bool expected = false;
    if (!s->busy.compare_exchange_strong(expected, true, std::memory_order_acquire))
        fail(KV_ERR_BUSY, "the %s is in use by another call (another thread, or a ticket in flight): one call at a "
             "time per session", what);
    s->cancel.store(false, std::memory_order_relaxed);
    if (s->model->runtime->device->lost()) {
        give_back(s);
        fail(KV_ERR_DEVICE_LOST, "the device was lost; destroy the sessions, model and runtime and recreate them");
    }
    if (need == Need::Cache && s->offloaded) {
        try {
            engine::restore(*s);
        } catch (...) {
            give_back(s);
            throw;
        }
    }
    return *s;
}

void give_back(kv_session* s) noexcept { s->busy.store(false, std::memory_order_release); }

BatchUse::BatchUse(std::vector<engine::BatchItem> items) : items_(std::move(items)), taken_(items_.size(), false) {
    for (size_t i = 0; i < items_.size(); ++i) {
        bool expected = false;
        if (items_[i].session->busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
            items_[i].session->cancel.store(false, std::memory_order_relaxed);
            taken_[i] = true;
        } else {
            items_[i].status = KV_ERR_BUSY;
            items_[i].message = "the session is in use by another call (another thread, or a ticket in flight)";
        }
    }
}

BatchUse::~BatchUse() { give_back_all(); }

void BatchUse::give_back_all() noexcept {
    for (size_t i = 0; i < items_.size(); ++i)
        if (taken_[i]) {
            give_back(items_[i].session);
            taken_[i] = false;
        }
}

void BatchUse::run() {
    std::vector<engine::BatchItem> work;
    std::vector<size_t> where;
    for (size_t i = 0; i < items_.size(); ++i)
        if (taken_[i] && items_[i].session->offloaded) {
            try {
                engine::restore(*items_[i].session);
            } catch (const Error& e) {
                items_[i].status = e.status();
                items_[i].message = e.what();
            }
        }
    for (size_t i = 0; i < items_.size(); ++i)
        if (taken_[i] && !items_[i].session->offloaded) {
            work.push_back(items_[i]);
            where.push_back(i);
        }
    if (work.empty()) return;
    auto copy_back = [&] {
        for (size_t j = 0; j < work.size(); ++j) items_[where[j]] = work[j];
    };
    try {
        engine::eval_batch(work);
    } catch (...) {
        copy_back();
        throw;
    }
    copy_back();
}

}  // namespace kv::api
