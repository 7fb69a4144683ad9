package dev.kvulkan;

/** Library-wide calls: versions, status names, devices. */
public final class Kvulkan {
    private Kvulkan() {}

    /** kv_version(): the loaded library's packed version (major << 22 | minor << 12 | patch). */
    public static int version() {
        return Native.kv_version();
    }

    /** kv_version_string(), e.g. "0.2.0". */
    public static String versionString() {
        return Native.kv_version_string();
    }

    /** kv_status_string(): e.g. "KV_ERR_IO: I/O error". */
    public static String statusString(int status) {
        return Native.kv_status_string(status);
    }

    /** kv_last_error_message(): the calling thread's last failure message ("" if none). Every
     *  failing call of this binding already puts it into the KvException it throws. */
    public static String lastErrorMessage() {
        return Native.kv_last_error_message();
    }

    /** kv_enumerate_devices() with the default desc: the Vulkan devices kvulkan can use. */
    public static DeviceInfo[] enumerateDevices() {
        return enumerateDevices(null);
    }

    /** kv_enumerate_devices(): `desc` (may be null) gives the flags and log listener used. */
    public static DeviceInfo[] enumerateDevices(RuntimeDesc desc) {
        int[] count = new int[1];
        for (int attempt = 0; attempt < 8; attempt++) {  // devices may come and go between calls
            KvException.check(Native.kv_enumerate_devices(desc, null, count));
            DeviceInfo[] infos = new DeviceInfo[count[0]];
            if (infos.length == 0) return infos;
            int st = KvException.check(Native.kv_enumerate_devices(desc, infos, count));
            if (st != Native.KV_INCOMPLETE) {
                return count[0] == infos.length ? infos : java.util.Arrays.copyOf(infos, count[0]);
            }
        }
        throw new KvException(Native.KV_ERR_INTERNAL, "the device list kept changing during enumeration");
    }
}
