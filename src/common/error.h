// Internal error type. Inside the engine, failures throw kv::Error; the C API layer (src/capi/)
// catches every exception at the ABI boundary and turns it into a kv_status plus the thread-local
// message. Nothing below src/capi/ may assume a caller checks return codes.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace kv {

class Error : public std::runtime_error {
public:
    Error(kv_status status, std::string message)
        : std::runtime_error(std::move(message)), status_(status) {}
    kv_status status() const { return status_; }

private:
    kv_status status_;
};

// printf-style message formatting for errors.
std::string format(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

[[noreturn]] void fail(kv_status status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// A broken invariant: a bug in kvulkan, reported as KV_ERR_INTERNAL with its location.
#define KV_CHECK(cond)                                                                     \
    do {                                                                                   \
        if (!(cond))                                                                       \
            ::kv::fail(KV_ERR_INTERNAL, "internal check failed: %s (%s:%d)", #cond, __FILE__, \
                       __LINE__);                                                          \
    } while (0)

}  // namespace kv
