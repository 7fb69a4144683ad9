package dev.kvulkan;

/** kv_bandwidth_result (written by the library). */
public final class BandwidthResult {
    public long bytes;
    public double readGbps;
    public double copyGbps;
    public double writeGbps;
}
