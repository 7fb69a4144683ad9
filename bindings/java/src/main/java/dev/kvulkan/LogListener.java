package dev.kvulkan;

/**
 * Receives the library's log lines (kv_log_fn). Called from any thread that runs kvulkan work,
 * possibly concurrently: make it thread-safe. An exception it throws is printed and dropped (it
 * never unwinds into the library). {@code level} is Native.KV_LOG_* (KV_LOG_VALIDATION: a Vulkan
 * validation-layer message, which means a bug).
 */
@FunctionalInterface
public interface LogListener {
    void onLog(int level, String message);
}
