package dev.kvulkan;

/**
 * A kvulkan call failed: {@link #status()} is the negative kv_status, {@link #libraryMessage()}
 * the library's kv_last_error_message() at the time (or this binding's own explanation).
 * Unchecked, so that Kotlin and Java code read the same.
 */
public class KvException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String libraryMessage;

    public KvException(int status, String libraryMessage) {
        super(statusName(status) + (libraryMessage == null || libraryMessage.isEmpty() ? "" : ": " + libraryMessage));
        this.status = status;
        this.libraryMessage = libraryMessage == null ? "" : libraryMessage;
    }

    /** The kv_status (Native.KV_ERR_*). */
    public int status() {
        return status;
    }

    /** The library's message for this failure. */
    public String libraryMessage() {
        return libraryMessage;
    }

    /** The C enumerator's name of {@link #status()}, e.g. "KV_ERR_IO". */
    public String statusName() {
        return statusName(status);
    }

    /** The C enumerator's name of a kv_status ("kv_status(N)" for a code newer than this binding). */
    public static String statusName(int status) {
        switch (status) {
            case Native.KV_OK: return "KV_OK";
            case Native.KV_INCOMPLETE: return "KV_INCOMPLETE";
            case Native.KV_END_OF_GENERATION: return "KV_END_OF_GENERATION";
            case Native.KV_NOT_READY: return "KV_NOT_READY";
            case Native.KV_CANCELLED: return "KV_CANCELLED";
            case Native.KV_ERR_INVALID_ARGUMENT: return "KV_ERR_INVALID_ARGUMENT";
            case Native.KV_ERR_IO: return "KV_ERR_IO";
            case Native.KV_ERR_BAD_MODEL: return "KV_ERR_BAD_MODEL";
            case Native.KV_ERR_UNSUPPORTED: return "KV_ERR_UNSUPPORTED";
            case Native.KV_ERR_OUT_OF_HOST_MEMORY: return "KV_ERR_OUT_OF_HOST_MEMORY";
            case Native.KV_ERR_OUT_OF_DEVICE_MEMORY: return "KV_ERR_OUT_OF_DEVICE_MEMORY";
            case Native.KV_ERR_CONTEXT_FULL: return "KV_ERR_CONTEXT_FULL";
            case Native.KV_ERR_DEVICE_LOST: return "KV_ERR_DEVICE_LOST";
            case Native.KV_ERR_NO_DEVICE: return "KV_ERR_NO_DEVICE";
            case Native.KV_ERR_INTERNAL: return "KV_ERR_INTERNAL";
            case Native.KV_ERR_BAD_STATE: return "KV_ERR_BAD_STATE";
            case Native.KV_ERR_BAD_TOKEN: return "KV_ERR_BAD_TOKEN";
            case Native.KV_ERR_BUSY: return "KV_ERR_BUSY";
            default: return "kv_status(" + status + ")";
        }
    }

    /** Returns a non-negative status; throws for a negative one with the calling thread's last
     *  error message. Call it right after the failing kv_* call, on the same thread. */
    static int check(int status) {
        if (status < 0) throw new KvException(status, Native.kv_last_error_message());
        return status;
    }
}
