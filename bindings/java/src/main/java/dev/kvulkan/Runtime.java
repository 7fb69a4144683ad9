package dev.kvulkan;

/**
 * A kv_runtime: Vulkan instance, device, compute queue, memory pools and pipeline cache. Thread-safe.
 * Close it after its models (or let it be destroyed when its last model closes, see
 * {@link NativeObject}). Note: with {@code import dev.kvulkan.*} the name clashes with
 * java.lang.Runtime in Java; import {@code dev.kvulkan.Runtime} by name.
 */
public final class Runtime extends NativeObject {
    /** A runtime on the default device (KV_DEVICE, else the best by type). */
    public Runtime() {
        this(null);
    }

    /** A runtime made from `desc` (null: KV_RUNTIME_DESC_INIT). */
    public Runtime(RuntimeDesc desc) {
        super("runtime", create(desc), Native::kv_runtime_destroy, null, null);
    }

    private static long create(RuntimeDesc desc) {
        long[] out = new long[1];
        KvException.check(Native.kv_runtime_create(desc, out));
        return out[0];
    }

    /**
     * kv_runtime_timeline_semaphore (since 0.2.0): {VkSemaphore handle, value of the last submission
     * so far}. The host's GPU work waits on it to come after kvulkan's. Throws KV_ERR_UNSUPPORTED
     * without timeline semaphores.
     */
    public long[] timelineSemaphore() {
        long h = handle.acquire();
        try {
            long[] out = new long[2];
            KvException.check(Native.kv_runtime_timeline_semaphore(h, out));
            return out;
        } finally {
            handle.release();
        }
    }

    /** kv_runtime_wait_semaphore (since 0.2.0): later submissions wait on the GPU for the host's
     * timeline semaphore to reach `value` (0: forget it). */
    public void waitSemaphore(long vkSemaphore, long value) {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_runtime_wait_semaphore(h, vkSemaphore, value));
        } finally {
            handle.release();
        }
    }

    /** kv_runtime_get_info: the device, with heap usage and budget read now. */
    public DeviceInfo info() {
        long h = handle.acquire();
        try {
            DeviceInfo info = new DeviceInfo();
            KvException.check(Native.kv_runtime_get_info(h, info));
            return info;
        } finally {
            handle.release();
        }
    }

    /** Validation-layer messages received so far (0 when validation is off). */
    public long validationMessageCount() {
        long h = handle.acquire();
        try {
            return Native.kv_runtime_validation_message_count(h);
        } finally {
            handle.release();
        }
    }

    /** kv_runtime_measure_bandwidth: bytes 0 picks a size, iterations 0 means 10. */
    public BandwidthResult measureBandwidth(long bytes, int iterations) {
        long h = handle.acquire();
        try {
            BandwidthResult r = new BandwidthResult();
            KvException.check(Native.kv_runtime_measure_bandwidth(h, bytes, iterations, r));
            return r;
        } finally {
            handle.release();
        }
    }

    /** Loads a GGUF file onto this runtime's device. */
    public Model loadModel(String path) {
        return new Model(this, path);
    }

    public Model loadModel(ModelDesc desc) {
        return new Model(this, desc);
    }

    /**
     * kv_runtime_use_queue: runs `fn` on this thread with the runtime's VkQueue while kvulkan does
     * not submit to it (for a host that submits to the same queue).
     */
    public void useQueue(Native.QueueCallback fn) {
        if (fn == null) throw new NullPointerException("fn");
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_runtime_use_queue(h, fn));
        } finally {
            handle.release();
        }
    }
}
