#include "common/log.h"

#include <cstdio>

namespace kv {

void Logger::log(kv_log_level level, const std::string& message) const {
    if (callback) {
        callback(user_data, level, message.c_str());
        return;
    }
    if (level >= KV_LOG_WARNING) {
        static const char* names[] = {"debug", "info", "warning", "error", "validation"};
        std::fprintf(stderr, "kvulkan %s: %s\n", names[level <= KV_LOG_VALIDATION ? level : 3],
                     message.c_str());
    }
}

}  // namespace kv
