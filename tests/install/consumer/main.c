/* An out-of-tree program built against an installed kvulkan (tests/install/check_install.sh builds
 * it through find_package and through pkg-config). It checks that the header and the library it
 * found agree and that the library works: statuses, the error text, the device list. */
#include <kvulkan/kvulkan.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (kv_version() != KV_VERSION) {
        fprintf(stderr, "header %u.%u.%u, library %s\n", KV_VERSION_MAJOR, KV_VERSION_MINOR, KV_VERSION_PATCH,
                kv_version_string());
        return 1;
    }
    if (kv_enumerate_devices(NULL, NULL, NULL) != KV_ERR_INVALID_ARGUMENT || strlen(kv_last_error_message()) == 0) {
        fprintf(stderr, "argument checks do not work\n");
        return 1;
    }
    uint32_t n = 0;
    kv_status st = kv_enumerate_devices(NULL, NULL, &n);
    if (st != KV_OK) {
        fprintf(stderr, "kv_enumerate_devices: %s: %s\n", kv_status_string(st), kv_last_error_message());
        return 1;
    }
    printf("kvulkan %s: %u device(s)\n", kv_version_string(), n);
    return 0;
}
