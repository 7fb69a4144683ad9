// The ABI boundary. Every exported function runs its body through kv::api::guard, which clears
// the thread's last error, catches every exception and maps it to a kv_status.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstring>
#include <new>
#include <string>

#include "common/error.h"

namespace kv::api {

void set_error(kv_status status, const std::string& message);
void clear_error();
const char* last_error();

template <typename F>
kv_status guard(F&& body) noexcept {
    try {
        clear_error();
        return body();
    } catch (const Error& e) {
        set_error(e.status(), e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_error(KV_ERR_OUT_OF_HOST_MEMORY, "out of host memory");
        return KV_ERR_OUT_OF_HOST_MEMORY;
    } catch (const std::exception& e) {
        set_error(KV_ERR_INTERNAL, std::string("internal error: ") + e.what());
        return KV_ERR_INTERNAL;
    } catch (...) {
        set_error(KV_ERR_INTERNAL, "internal error: unknown exception");
        return KV_ERR_INTERNAL;
    }
}

// Copies a caller's versioned struct into a zero-initialized local of the library's size.
// Rejects a struct smaller than `min_size` (the size of its first version) and a larger one whose
// unknown tail is not all zero (a newer header asking for something this library cannot do).
template <typename T>
T read_desc(const T* in, size_t min_size, const char* what) {
    if (!in) fail(KV_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    uint32_t size = in->struct_size;
    if (size < min_size)
        fail(KV_ERR_INVALID_ARGUMENT, "%s->struct_size is %u, expected at least %zu (use the *_INIT macro)",
             what, size, min_size);
    if (size > sizeof(T)) {
        const unsigned char* tail = reinterpret_cast<const unsigned char*>(in) + sizeof(T);
        for (size_t i = 0; i < size - sizeof(T); ++i)
            if (tail[i])
                fail(KV_ERR_UNSUPPORTED,
                     "%s->struct_size is %u, larger than this library's %zu, and sets fields this "
                     "version does not know",
                     what, size, sizeof(T));
    }
    T out;
    std::memset(&out, 0, sizeof out);
    std::memcpy(&out, in, size < sizeof(T) ? size : sizeof(T));
    out.struct_size = sizeof(T);
    return out;
}

// Checks an output struct's struct_size before writing `sizeof(T)` (or fewer) bytes into it.
template <typename T>
size_t out_size(const T* out, size_t min_size, const char* what) {
    if (!out) fail(KV_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    if (out->struct_size < min_size)
        fail(KV_ERR_INVALID_ARGUMENT, "%s->struct_size is %u, expected at least %zu", what,
             out->struct_size, min_size);
    return out->struct_size < sizeof(T) ? out->struct_size : sizeof(T);
}

}  // namespace kv::api
