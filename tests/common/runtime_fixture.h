// A kv_runtime (public C API) on the default device (KV_DEVICE may override) with validation on
// when the layer is installed. Validation messages are collected; the destructor fails the test if
// any arrived. Header-only: only tests that link the whole library include it.
#pragma once

#include <kvulkan/kvulkan.h>

#include <mutex>
#include <string>
#include <vector>

#include "common/helpers.h"

namespace kvtest {

class Runtime {
public:
    explicit Runtime(uint32_t extra_flags = 0) {
        kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
        validation_ = validation_layer_available();
        if (validation_) desc.flags |= KV_RUNTIME_VALIDATION;
        else MESSAGE("validation layer not installed: running without it");
        desc.flags |= extra_flags;
        desc.log_callback = &Runtime::on_log;
        desc.log_user_data = this;
        kv_status s = kv_runtime_create(&desc, &rt_);
        REQUIRE_MESSAGE(s == KV_OK, "kv_runtime_create: " << kv_status_string(s) << ": " << kv_last_error_message());
    }
    ~Runtime() {
        kv_runtime_destroy(rt_);
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& m : validation_messages_) FAIL_CHECK("validation message: " << m);
    }
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    kv_runtime* get() const { return rt_; }
    operator kv_runtime*() const { return rt_; }
    bool validation() const { return validation_; }
    std::vector<std::string> messages() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return validation_messages_;
    }

private:
    static void on_log(void* user, kv_log_level level, const char* msg) {
        auto* self = static_cast<Runtime*>(user);
        if (level == KV_LOG_VALIDATION) {
            std::lock_guard<std::mutex> lock(self->mutex_);
            self->validation_messages_.push_back(msg);
        }
    }
    kv_runtime* rt_ = nullptr;
    bool validation_ = false;
    mutable std::mutex mutex_;
    std::vector<std::string> validation_messages_;
};

}  // namespace kvtest
