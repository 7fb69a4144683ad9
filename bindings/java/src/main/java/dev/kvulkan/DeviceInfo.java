package dev.kvulkan;

/** kv_device_info: what a device is and can do (written by the library; uint32 fields are raw bits). */
public final class DeviceInfo {
    /** kv_memory_heap_info. */
    public static final class MemoryHeap {
        public final long size;
        public final long budget;
        public final long usage;
        public final boolean deviceLocal;

        public MemoryHeap(long size, long budget, long usage, boolean deviceLocal) {
            this.size = size;
            this.budget = budget;
            this.usage = usage;
            this.deviceLocal = deviceLocal;
        }
    }

    public int index;
    public String deviceName = "";
    public String driverName = "";
    public String driverInfo = "";
    /** Native.KV_DEVICE_TYPE_*. */
    public int deviceType;
    public int vendorId;
    public int deviceId;
    public int apiVersion;
    public int driverVersion;
    /** KV_FEATURE_* bits. */
    public int features;
    public int subgroupSize;
    public int subgroupSizeMin;
    public int subgroupSizeMax;
    public int subgroupOps;
    public long maxStorageBufferRange;
    public long maxAllocationSize;
    public int maxSharedMemory;
    public int maxWorkgroupInvocations;
    public int maxWorkgroupCountX;
    public MemoryHeap[] memoryHeaps = new MemoryHeap[0];
    public float timestampPeriodNs;
    /** Since 0.2.0, the runtime's queue as granted ({@link Runtime} info only; 0 when enumerated). */
    public int queueFamily;
    /** KV_QUEUE_* bits. */
    public int queueFlags;
    public float queuePriority;
    /** KV_GLOBAL_PRIORITY_* value granted (0: none). */
    public int globalPriority;
    /** The per-submission GPU budget in effect (0: off). */
    public int gpuBudgetUs;

    @Override
    public String toString() {
        return "DeviceInfo{" + index + ": " + deviceName + " (" + driverName + ")}";
    }
}
