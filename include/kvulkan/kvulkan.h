/*
 * kvulkan.h — the public C ABI of kvulkan, an embeddable transformer-inference SDK on Vulkan.
 *
 * This header is the specification: a function, struct or constant that is not declared here is
 * not API. Rules that hold for every declaration below:
 *
 *  - Every fallible function returns kv_status: KV_OK (0) on success, a positive value for a
 *    non-error outcome, a negative value for an error. Results come back through out-parameters,
 *    which are left untouched on error unless the function says otherwise.
 *  - After an error, kv_last_error_message() returns a human-readable text naming the problem.
 *    It is thread-local: each thread sees the message of its own last failing call.
 *  - Create-info ("desc") structs are passed by pointer, begin with `struct_size` (set it with the
 *    matching *_INIT macro), and only ever grow at the end. A library older than your header
 *    accepts a larger struct as long as the fields it does not know are zero.
 *  - Every *_destroy(NULL) is a no-op. Objects must be destroyed after the objects created from
 *    them (sessions before their model, models before their runtime).
 *  - No exception, exit() or abort() ever crosses this ABI.
 *  - No Vulkan type appears here: adopted Vulkan handles travel as void* / uint64_t.
 *
 * Threading: functions on different objects may run concurrently unless a function says
 * otherwise. Functions on the same kv_runtime are internally synchronized.
 *
 * Version history: every declaration says since which version it exists.
 */
#ifndef KVULKAN_H
#define KVULKAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Export macro: only kv_* symbols leave the shared library (built with -fvisibility=hidden).
 * Define KV_STATIC when linking the static library on Windows.
 * ------------------------------------------------------------------------------------------- */
#if defined(_WIN32) && !defined(KV_STATIC)
#  ifdef KV_BUILDING_LIBRARY
#    define KV_API __declspec(dllexport)
#  else
#    define KV_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define KV_API __attribute__((visibility("default")))
#else
#  define KV_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Versioning (since 0.1.0)
 * ------------------------------------------------------------------------------------------- */
#define KV_VERSION_MAJOR 0
#define KV_VERSION_MINOR 1
#define KV_VERSION_PATCH 0
#define KV_MAKE_VERSION(major, minor, patch) \
    ((((uint32_t)(major)) << 22) | (((uint32_t)(minor)) << 12) | ((uint32_t)(patch)))
#define KV_VERSION KV_MAKE_VERSION(KV_VERSION_MAJOR, KV_VERSION_MINOR, KV_VERSION_PATCH)
#define KV_VERSION_GET_MAJOR(v) ((uint32_t)(v) >> 22)
#define KV_VERSION_GET_MINOR(v) (((uint32_t)(v) >> 12) & 0x3FFu)
#define KV_VERSION_GET_PATCH(v) ((uint32_t)(v)&0xFFFu)

/* The version of the library actually loaded (compare with KV_VERSION of your header). */
KV_API uint32_t kv_version(void);
/* The same as a static string, e.g. "0.1.0". Never NULL; owned by the library. */
KV_API const char* kv_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes (since 0.1.0). Values are fixed forever; new codes are only appended.
 * ------------------------------------------------------------------------------------------- */
typedef int32_t kv_status;

enum {
    KV_OK = 0,
    /* Positive: non-error outcomes. */
    KV_INCOMPLETE = 1,         /* an output array was too small; the count says how many exist */
    KV_END_OF_GENERATION = 2,  /* the sampled token ends generation (EOS/EOT) */

    /* Negative: errors. */
    KV_ERR_INVALID_ARGUMENT = -1,       /* NULL pointer, bad struct_size, out-of-range value */
    KV_ERR_IO = -2,                     /* a file could not be opened, read or written */
    KV_ERR_BAD_MODEL = -3,              /* a model file is malformed or inconsistent */
    KV_ERR_UNSUPPORTED = -4,            /* valid, but not supported by this build or device */
    KV_ERR_OUT_OF_HOST_MEMORY = -5,     /* a host allocation failed */
    KV_ERR_OUT_OF_DEVICE_MEMORY = -6,   /* a device allocation failed or a budget was hit */
    KV_ERR_CONTEXT_FULL = -7,           /* the session has no room for more tokens */
    KV_ERR_DEVICE_LOST = -8,            /* the Vulkan device was lost; the runtime is unusable */
    KV_ERR_NO_DEVICE = -9,              /* no usable Vulkan device (or none matched the choice) */
    KV_ERR_INTERNAL = -10,              /* a broken invariant inside kvulkan: please report it */
    KV_ERR_BAD_STATE = -11,             /* the call is not valid in the object's current state */
    KV_ERR_BAD_TOKEN = -12,             /* a token id outside the model's vocabulary */

    KV_STATUS_FORCE32 = 0x7FFFFFFF
};

/* A static English name and description of a status, e.g. "KV_ERR_IO: I/O error".
 * Never NULL (unknown codes give "unknown status"). Thread-safe. */
KV_API const char* kv_status_string(kv_status status);

/* The message of the calling thread's last failed kv_* call ("" if none). The pointer stays
 * valid until the next kv_* call on the same thread. Thread-safe (thread-local). */
KV_API const char* kv_last_error_message(void);

/* ---------------------------------------------------------------------------------------------
 * Logging (since 0.1.0)
 * ------------------------------------------------------------------------------------------- */
typedef enum kv_log_level {
    KV_LOG_DEBUG = 0,
    KV_LOG_INFO = 1,
    KV_LOG_WARNING = 2,
    KV_LOG_ERROR = 3,
    /* A message from the Vulkan validation layers (warnings and errors). A test treats any
     * message of this level as a failure. */
    KV_LOG_VALIDATION = 4,
    KV_LOG_LEVEL_FORCE32 = 0x7FFFFFFF
} kv_log_level;

/* Called from any thread that runs kvulkan work (possibly concurrently: make it thread-safe).
 * `message` is valid only during the call. Without a callback, warnings and errors go to stderr. */
typedef void (*kv_log_fn)(void* user_data, kv_log_level level, const char* message);

/* ---------------------------------------------------------------------------------------------
 * Devices and runtime (since 0.1.0)
 * ------------------------------------------------------------------------------------------- */
typedef struct kv_runtime kv_runtime;

typedef enum kv_device_type {
    KV_DEVICE_TYPE_OTHER = 0,
    KV_DEVICE_TYPE_INTEGRATED_GPU = 1,
    KV_DEVICE_TYPE_DISCRETE_GPU = 2,
    KV_DEVICE_TYPE_VIRTUAL_GPU = 3,
    KV_DEVICE_TYPE_CPU = 4, /* same values as VkPhysicalDeviceType */
    KV_DEVICE_TYPE_FORCE32 = 0x7FFFFFFF
} kv_device_type;

/* Optional device features, reported as bits of kv_device_info.features. */
enum {
    KV_FEATURE_SHADER_FLOAT16 = 1u << 0,       /* fp16 arithmetic in shaders */
    KV_FEATURE_STORAGE_16BIT = 1u << 1,        /* 16-bit values in storage buffers */
    KV_FEATURE_STORAGE_8BIT = 1u << 2,         /* 8-bit values in storage buffers */
    KV_FEATURE_SHADER_INT8 = 1u << 3,          /* int8 arithmetic in shaders */
    KV_FEATURE_INTEGER_DOT_PRODUCT = 1u << 4,  /* VK_KHR_shader_integer_dot_product */
    KV_FEATURE_COOPMAT_NV = 1u << 5,           /* VK_NV_cooperative_matrix */
    KV_FEATURE_COOPMAT_KHR = 1u << 6,          /* VK_KHR_cooperative_matrix */
    KV_FEATURE_MEMORY_BUDGET = 1u << 7,        /* VK_EXT_memory_budget: heap budgets are live */
    KV_FEATURE_SUBGROUP_SIZE_CONTROL = 1u << 8,
    KV_FEATURE_TIMESTAMPS = 1u << 9,           /* compute-queue timestamps */
    KV_FEATURE_UNIFIED_MEMORY = 1u << 10,      /* device-local memory is host-visible */
    KV_FEATURE_SHADER_INT64 = 1u << 11
};

/* Subgroup operations (bits of kv_device_info.subgroup_ops; same values as VkSubgroupFeatureFlags). */
enum {
    KV_SUBGROUP_BASIC = 1u << 0,
    KV_SUBGROUP_VOTE = 1u << 1,
    KV_SUBGROUP_ARITHMETIC = 1u << 2,
    KV_SUBGROUP_BALLOT = 1u << 3,
    KV_SUBGROUP_SHUFFLE = 1u << 4,
    KV_SUBGROUP_SHUFFLE_RELATIVE = 1u << 5,
    KV_SUBGROUP_CLUSTERED = 1u << 6,
    KV_SUBGROUP_QUAD = 1u << 7
};

#define KV_MAX_NAME 256
#define KV_MAX_MEMORY_HEAPS 16

typedef struct kv_memory_heap_info {
    uint64_t size;          /* bytes */
    uint64_t budget;        /* bytes this process may use (== size without VK_EXT_memory_budget) */
    uint64_t usage;         /* bytes this process uses now (0 without VK_EXT_memory_budget) */
    uint32_t device_local;  /* 1 if the heap is device-local */
    uint32_t reserved;
} kv_memory_heap_info;

/* What a device is and can do. Filled by kv_enumerate_devices() and kv_runtime_get_info(). */
typedef struct kv_device_info {
    uint32_t struct_size;           /* set by the caller: sizeof(kv_device_info) */
    uint32_t index;                 /* position in kv_enumerate_devices() order */
    char device_name[KV_MAX_NAME];
    char driver_name[KV_MAX_NAME];
    char driver_info[KV_MAX_NAME];
    kv_device_type device_type;
    uint32_t vendor_id;
    uint32_t device_id;
    uint32_t api_version;           /* Vulkan version the device supports (VK_MAKE_API_VERSION) */
    uint32_t driver_version;        /* vendor-encoded */
    uint32_t features;              /* KV_FEATURE_* bits */
    uint32_t subgroup_size;         /* default subgroup size */
    uint32_t subgroup_size_min;     /* == subgroup_size without subgroup size control */
    uint32_t subgroup_size_max;
    uint32_t subgroup_ops;          /* KV_SUBGROUP_* bits supported in compute shaders */
    uint64_t max_storage_buffer_range;  /* largest storage-buffer binding, bytes */
    uint64_t max_allocation_size;       /* largest single device allocation, bytes */
    uint32_t max_shared_memory;         /* compute shared memory per workgroup, bytes */
    uint32_t max_workgroup_invocations;
    uint32_t max_workgroup_count_x;
    uint32_t memory_heap_count;
    kv_memory_heap_info memory_heaps[KV_MAX_MEMORY_HEAPS];
    float timestamp_period_ns;          /* nanoseconds per timestamp tick (0: no timestamps) */
    uint32_t reserved0;
} kv_device_info;

/* Runtime flags (bits of kv_runtime_desc.flags). */
enum {
    /* Enable the Khronos validation layer; its messages go to the log callback with
     * KV_LOG_VALIDATION. Also enabled by the environment variable KV_VALIDATION=1. Fails with
     * KV_ERR_UNSUPPORTED if the layer is not installed. Ignored for an adopted instance. */
    KV_RUNTIME_VALIDATION = 1u << 0,
    /* Ignore KV_DEVICE / KV_VALIDATION environment variables. */
    KV_RUNTIME_IGNORE_ENVIRONMENT = 1u << 1
};

/* How to create a runtime. Initialize with KV_RUNTIME_DESC_INIT. */
typedef struct kv_runtime_desc {
    uint32_t struct_size;
    uint32_t flags;             /* KV_RUNTIME_* bits */
    /* Device choice. device_index >= 0 picks that entry of kv_enumerate_devices(); else a
     * non-NULL device_name picks the first device whose name contains it (case-insensitive);
     * else the environment variable KV_DEVICE (an index or a name substring); else the best by
     * type: discrete > integrated > virtual > CPU > other. */
    int32_t device_index;
    const char* device_name;    /* borrowed for the duration of kv_runtime_create */
    kv_log_fn log_callback;     /* optional; must stay callable until kv_runtime_destroy returns */
    void* log_user_data;
    /* Adoption of the host application's Vulkan objects (a game engine sharing its GPU). When
     * vk_device is non-NULL, all of vk_instance (VkInstance), vk_physical_device
     * (VkPhysicalDevice), vk_device (VkDevice) and vk_queue (VkQueue, of family vk_queue_family,
     * supporting compute) must be set. They are borrowed: kvulkan never destroys them, and they
     * must outlive the runtime. The device must have been created with Vulkan 1.1 or newer; the
     * features kvulkan uses are those the host enabled. kvulkan synchronizes its own use of the
     * queue; if the host submits to the same queue from other threads, the host must serialize
     * those submissions with kvulkan's calls. */
    void* vk_instance;
    void* vk_physical_device;
    void* vk_device;
    void* vk_queue;
    uint32_t vk_queue_family;
    uint32_t vk_api_version;    /* the apiVersion the host's instance was created with (0: 1.1) */
} kv_runtime_desc;

#define KV_RUNTIME_DESC_INIT                                                               \
    {                                                                                      \
        (uint32_t)sizeof(kv_runtime_desc), 0u, -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
            0u, 0u                                                                         \
    }

/* Lists the Vulkan devices kvulkan can use. `infos` may be NULL to query the count. On input
 * *count is the capacity of `infos` (each element's struct_size must be set); on output, the
 * number written, or the number available when `infos` is NULL. Returns KV_INCOMPLETE when the
 * array was too small (the first *count entries are written). `desc` may be NULL; its flags
 * (validation) and log callback are used for the temporary instance. Thread-safe. */
KV_API kv_status kv_enumerate_devices(const kv_runtime_desc* desc, kv_device_info* infos,
                                      uint32_t* count);

/* Creates a runtime: instance, device and compute queue (or adopts the host's), memory pools and
 * pipeline cache. On success *out_runtime owns them; destroy with kv_runtime_destroy.
 * Errors: KV_ERR_INVALID_ARGUMENT, KV_ERR_NO_DEVICE, KV_ERR_UNSUPPORTED (Vulkan < 1.1, no
 * compute queue, missing validation layer), KV_ERR_OUT_OF_HOST_MEMORY, KV_ERR_DEVICE_LOST. */
KV_API kv_status kv_runtime_create(const kv_runtime_desc* desc, kv_runtime** out_runtime);

/* Waits for the runtime's GPU work and releases everything it owns (adopted Vulkan objects are
 * left alone). NULL is a no-op. Every model and session of the runtime must be destroyed first. */
KV_API void kv_runtime_destroy(kv_runtime* runtime);

/* Fills *info (set info->struct_size first) for the runtime's device; heap usage and budget are
 * read now. Thread-safe. */
KV_API kv_status kv_runtime_get_info(const kv_runtime* runtime, kv_device_info* info);

/* Number of validation-layer messages (warnings and errors) this runtime has received so far.
 * 0 when validation is off. Thread-safe. Since 0.1.0. */
KV_API uint64_t kv_runtime_validation_message_count(const kv_runtime* runtime);

/* ---------------------------------------------------------------------------------------------
 * Bandwidth probe (since 0.1.0): the floor every decode figure is held against.
 * ------------------------------------------------------------------------------------------- */
typedef struct kv_bandwidth_result {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t bytes;             /* buffer size used */
    double read_gbps;           /* GB/s (1e9 bytes/s) read by a compute shader */
    double copy_gbps;           /* GB/s (read + write bytes) of a compute-shader copy */
    double write_gbps;          /* GB/s written by a compute shader */
} kv_bandwidth_result;

/* Measures device-memory bandwidth with compute shaders on a buffer of `bytes` bytes (0: pick a
 * size that defeats caches, bounded by device limits), best of `iterations` (0: 10) timed with
 * GPU timestamps. Thread-safe with respect to other runtime calls. */
KV_API kv_status kv_runtime_measure_bandwidth(kv_runtime* runtime, uint64_t bytes,
                                              uint32_t iterations, kv_bandwidth_result* result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVULKAN_H */
