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
}
