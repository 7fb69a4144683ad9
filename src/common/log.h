// Log sink owned by a runtime (no process globals). Thread-safe.
#pragma once

#include <kvulkan/kvulkan.h>

#include <string>

namespace kv {

struct Logger {
    kv_log_fn callback = nullptr;
    void* user_data = nullptr;

    void log(kv_log_level level, const std::string& message) const;
    void debug(const std::string& m) const { log(KV_LOG_DEBUG, m); }
    void info(const std::string& m) const { log(KV_LOG_INFO, m); }
    void warn(const std::string& m) const { log(KV_LOG_WARNING, m); }
    void error(const std::string& m) const { log(KV_LOG_ERROR, m); }
};

}  // namespace kv
