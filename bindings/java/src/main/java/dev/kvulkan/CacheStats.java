package dev.kvulkan;

/** kv_cache_stats: a model's KV page pool of one cache type (written by the library). */
public final class CacheStats {
    public int pageSize;
    public int pagesTotal;
    public int pagesInUse;
    public int pagesCached;
    public int pagesFree;
    public long pageBytes;
    public long deviceBytes;
    public long prefixLookups;
    public long prefixHits;
    public long evictions;
    /** Since 0.2.0: pages of sessions moved to host memory (explicit and LRU), and brought back. */
    public long pagesOffloaded;
    public long pagesRestored;
    /** Since 0.2.0: host bytes held now by offloaded sessions of this pool. */
    public long offloadedBytes;
}
