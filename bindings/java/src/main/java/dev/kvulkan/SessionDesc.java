package dev.kvulkan;

/** kv_session_desc: how to create a {@link Session}. A new object is KV_SESSION_DESC_INIT. */
public final class SessionDesc {
    /** KV_SESSION_* bits. */
    public int flags = 0;
    /** Capacity in tokens (0: min(model context, 4096)). */
    public int nCtx = 0;
    /** Native.KV_CACHE_F16 (default), KV_CACHE_F32, KV_CACHE_Q8_0 or KV_CACHE_Q4_0. */
    public int cacheType = Native.KV_CACHE_F16;
    /** Most tokens per prefill pass (0: 512). */
    public int nBatch = 0;
    /** null: greedy. Copied at creation. */
    public SamplerDesc sampler = null;
    /** Sliding window in tokens (0: full attention) and attention sinks. */
    public int window = 0;
    public int sinks = 0;

    public SessionDesc nCtx(int tokens) {
        nCtx = tokens;
        return this;
    }

    public SessionDesc cacheType(int type) {
        cacheType = type;
        return this;
    }

    public SessionDesc nBatch(int tokens) {
        nBatch = tokens;
        return this;
    }

    public SessionDesc sampler(SamplerDesc s) {
        sampler = s;
        return this;
    }

    public SessionDesc window(int tokens, int sinkTokens) {
        window = tokens;
        sinks = sinkTokens;
        return this;
    }

    public SessionDesc flags(int f) {
        flags = f;
        return this;
    }
}
