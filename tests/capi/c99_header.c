/* Compiles the public header as C99 (this file is built with the C compiler) and exercises it
 * from C: every struct, macro and function of the header must be usable from plain C. */
#include <kvulkan/kvulkan.h>
#include <string.h>

int kv_c99_header_check(void) {
    kv_runtime_desc desc = KV_RUNTIME_DESC_INIT;
    kv_device_info info;
    kv_bandwidth_result bw;
    uint32_t count = 0;
    memset(&info, 0, sizeof info);
    memset(&bw, 0, sizeof bw);
    if (desc.struct_size != sizeof(kv_runtime_desc) || desc.device_index != -1) return 1;
    if (KV_VERSION_GET_MAJOR(kv_version()) != KV_VERSION_MAJOR) return 2;
    if (kv_status_string(KV_ERR_IO) == NULL) return 3;
    if (kv_enumerate_devices(NULL, NULL, NULL) != KV_ERR_INVALID_ARGUMENT) return 4;
    if (strlen(kv_last_error_message()) == 0) return 5;
    (void)count;
    kv_runtime_destroy(NULL);
    return 0;
}
