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
    /** Since 0.2.0: GPU submissions of its passes since creation or reset, and of the last pass
     *  (see the runtime's GPU budget). */
    public long submissions;
    public int lastPassSubmissions;
    /** Since 0.2.0, models with sliding-window and global layers (gemma2/3): pages the windowed
     *  layers hold now, how many layers they are, and the pages they released; pages the other
     *  layers (every layer of other models) released by the session's window. */
    public int windowLayerPages;
    public int windowLayers;
    public long windowLayerPagesReleased;
    public long pagesReleased;
}
