package dev.kvulkan;

/** kv_generate_result: how {@link Native#kv_generate} ended (since 0.2.0). */
public final class GenerateResult {
    /** Tokens the call appended to the session. */
    public int nTokens;
    /** A Native.KV_GENERATE_STOP_* value. */
    public int stopReason;
    /** Index into the stop strings of the one found, else -1. */
    public int stopString = -1;
    /** The last token sampled (the end-of-generation token when that stopped it), -1 if none. */
    public int lastToken = -1;
    /** Bytes passed to the piece callback. */
    public long nBytes;
}
