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

    /** kv_chat_format_template without a model (bos_token and eos_token undefined). */
    public static String chatFormat(String chatTemplate, ChatMessage[] messages, int flags) {
        if (chatTemplate == null) throw new NullPointerException("chatTemplate");
        return Model.renderChat(0, chatTemplate, messages, flags);
    }

    /** kv_json_schema_to_grammar: GBNF (root rule "root") for {@link Session#setGrammar} from a JSON Schema. */
    public static String jsonSchemaToGrammar(String schemaJson) {
        byte[] schema = schemaJson.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        long[] size = new long[1];
        KvException.check(Native.kv_json_schema_to_grammar(schema, null, size));
        while (true) {
            byte[] buf = new byte[Math.toIntExact(size[0])];
            int st = KvException.check(Native.kv_json_schema_to_grammar(schema, buf, size));
            if (st != Native.KV_INCOMPLETE) {
                int n = (int) size[0];
                if (n > 0 && buf[n - 1] == 0) n--;  // the terminating NUL
                return new String(buf, 0, n, java.nio.charset.StandardCharsets.UTF_8);
            }
        }
    }
}
