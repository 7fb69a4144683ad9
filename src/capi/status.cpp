// Status names, the thread-local error message, and version queries.
#include "capi/api.h"

namespace kv::api {

static thread_local std::string t_last_error;

void set_error(kv_status, const std::string& message) { t_last_error = message; }
void clear_error() { t_last_error.clear(); }
const char* last_error() { return t_last_error.c_str(); }

}  // namespace kv::api

extern "C" {

KV_API uint32_t kv_version(void) { return KV_VERSION; }

KV_API const char* kv_version_string(void) {
#define KV_STR2(x) #x
#define KV_STR(x) KV_STR2(x)
    return KV_STR(KV_VERSION_MAJOR) "." KV_STR(KV_VERSION_MINOR) "." KV_STR(KV_VERSION_PATCH);
}

KV_API const char* kv_status_string(kv_status s) {
    switch (s) {
        case KV_OK: return "KV_OK: success";
        case KV_INCOMPLETE: return "KV_INCOMPLETE: output array too small, results truncated";
        case KV_END_OF_GENERATION: return "KV_END_OF_GENERATION: an end-of-generation token was produced";
        case KV_NOT_READY: return "KV_NOT_READY: the ticket's work is still running";
        case KV_CANCELLED: return "KV_CANCELLED: cancelled; the session keeps the tokens done so far";
        case KV_ERR_INVALID_ARGUMENT: return "KV_ERR_INVALID_ARGUMENT: invalid argument";
        case KV_ERR_IO: return "KV_ERR_IO: I/O error";
        case KV_ERR_BAD_MODEL: return "KV_ERR_BAD_MODEL: malformed or inconsistent model file";
        case KV_ERR_UNSUPPORTED: return "KV_ERR_UNSUPPORTED: not supported";
        case KV_ERR_OUT_OF_HOST_MEMORY: return "KV_ERR_OUT_OF_HOST_MEMORY: out of host memory";
        case KV_ERR_OUT_OF_DEVICE_MEMORY: return "KV_ERR_OUT_OF_DEVICE_MEMORY: out of device memory";
        case KV_ERR_CONTEXT_FULL: return "KV_ERR_CONTEXT_FULL: the session's context is full";
        case KV_ERR_DEVICE_LOST: return "KV_ERR_DEVICE_LOST: the device was lost";
        case KV_ERR_NO_DEVICE: return "KV_ERR_NO_DEVICE: no usable Vulkan device";
        case KV_ERR_INTERNAL: return "KV_ERR_INTERNAL: internal error";
        case KV_ERR_BAD_STATE: return "KV_ERR_BAD_STATE: call not valid in the current state";
        case KV_ERR_BAD_TOKEN: return "KV_ERR_BAD_TOKEN: token id out of the vocabulary";
        case KV_ERR_BUSY: return "KV_ERR_BUSY: the session is in use by another call or a ticket in flight";
        default: return "unknown status";
    }
}

KV_API const char* kv_last_error_message(void) { return kv::api::last_error(); }

}  // extern "C"
