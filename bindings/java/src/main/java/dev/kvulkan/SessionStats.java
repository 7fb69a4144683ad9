package dev.kvulkan;

/** kv_session_stats (written by the library). */
public final class SessionStats {
    public int nTokens;
    public int nCtx;
    public int pageSize;
    public long kvBytes;
    public long kvBytesPerToken;
    public long tokensPrefilled;
    public long tokensDecoded;
    public double lastPrefillMs;
    public int lastPrefillTokens;
    public double lastDecodeMs;
    public double totalPrefillMs;
    public double totalDecodeMs;
    public long scratchBytes;
    public int pages;
    public int sharedPages;
    public long prefixHitTokens;
    public long forwardPasses;
    /** Since 0.2.0: pages moved to host memory, and brought back, since creation. */
    public long pagesOffloaded;
    public long pagesRestored;
    /** Since 0.2.0: true while its pages are in host memory ({@link #pages} is then 0). */
    public boolean offloaded;
}
