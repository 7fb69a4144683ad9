package dev.kvulkan;

/**
 * kv_runtime_desc: how to create a {@link Runtime}. A new object holds the KV_RUNTIME_DESC_INIT
 * defaults; set fields directly or chain the setters. See kvulkan.h for every field's meaning.
 */
public final class RuntimeDesc {
    /** KV_RUNTIME_* bits. */
    public int flags = 0;
    /** An index into {@link Kvulkan#enumerateDevices()}, or -1: {@link #deviceName}, KV_DEVICE, the best. */
    public int deviceIndex = -1;
    /** A case-insensitive substring of the device name, or null. */
    public String deviceName = null;
    /** Receives the library's log lines (any thread); held until the runtime is destroyed. */
    public LogListener logListener = null;
    /** Adoption of the host application's Vulkan objects, as raw handles (0: none). */
    public long vkInstance = 0;
    public long vkPhysicalDevice = 0;
    public long vkDevice = 0;
    public long vkQueue = 0;
    public int vkQueueFamily = 0;
    public int vkApiVersion = 0;
    /** Most device bytes the runtime may hold (0: no limit). */
    public long memoryBudget = 0;
    /** Since 0.2.0: a file that keeps the compiled pipelines between runs, or null. */
    public String pipelineCachePath = null;
    /** Since 0.2.0 (GPU scheduling beside a renderer, see kvulkan.h): the adopted device has
     * timeline semaphores enabled. */
    public boolean vkTimelineSemaphore = false;
    /** GPU time per submission, microseconds (0: no budget). */
    public int gpuBudgetUs = 0;
    /** Own device only: queue priority in (0, 1] (0: 1.0). */
    public float queuePriority = 0f;
    /** Own device only: a KV_GLOBAL_PRIORITY_* value (0: none). */
    public int globalPriority = 0;

    /** Turns the Khronos validation layer on (KV_RUNTIME_VALIDATION) or off. */
    public RuntimeDesc validation(boolean on) {
        flags = on ? (flags | Native.KV_RUNTIME_VALIDATION) : (flags & ~Native.KV_RUNTIME_VALIDATION);
        return this;
    }

    /** Ignores the KV_DEVICE and KV_VALIDATION environment variables (KV_RUNTIME_IGNORE_ENVIRONMENT). */
    public RuntimeDesc ignoreEnvironment(boolean on) {
        flags = on ? (flags | Native.KV_RUNTIME_IGNORE_ENVIRONMENT)
                   : (flags & ~Native.KV_RUNTIME_IGNORE_ENVIRONMENT);
        return this;
    }

    public RuntimeDesc device(int index) {
        deviceIndex = index;
        return this;
    }

    public RuntimeDesc device(String nameSubstring) {
        deviceName = nameSubstring;
        return this;
    }

    public RuntimeDesc logListener(LogListener listener) {
        logListener = listener;
        return this;
    }

    public RuntimeDesc memoryBudget(long bytes) {
        memoryBudget = bytes;
        return this;
    }

    public RuntimeDesc gpuBudgetUs(int microseconds) {
        gpuBudgetUs = microseconds;
        return this;
    }

    public RuntimeDesc pipelineCachePath(String path) {
        pipelineCachePath = path;
        return this;
    }
}
