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
 *    accepts a larger struct as long as the fields it does not know are zero. A NULL desc
 *    pointer means the *_INIT defaults, in every function that takes one (kv_model_load then
 *    fails because the defaults name no file).
 *  - Output structs (kv_*_info, kv_*_stats, kv_bandwidth_result) also begin with `struct_size`,
 *    set by the caller: the library writes only that many bytes, so a caller built against an
 *    older header gets the fields it knows and nothing past them. Arrays of them (see
 *    kv_enumerate_devices) are stepped through by the caller's struct_size.
 */
/*
 * ABI policy (enforced by the test suite against a baseline of the 0.1.0 library):
 *  - A binary built against any 0.x header >= 0.1.0 runs against any newer 0.x library.
 *  - Never removed, renamed, reordered, resized or repurposed: exported functions, their
 *    parameters, struct fields, enum and status values, flag bits, macros' meaning.
 *  - What may change: new functions; new fields at the end of a struct that starts with
 *    struct_size (their zero value keeps the old behaviour); new enum values, status codes and
 *    flag bits; wider inputs accepted where an older library returned an error.
 *  - A changed meaning gets a new function with a _v2 suffix (kv_foo_v2); the old one keeps its
 *    old meaning. A removal waits for a major version and a new soname.
 *  - Each struct's first published size is frozen inside the library: a caller's struct smaller
 *    than it is rejected with KV_ERR_INVALID_ARGUMENT, never read past its end.
 *  - Every *_destroy(NULL) is a no-op. Objects must be destroyed after the objects created from
 *    them (sessions before their model, models before their runtime).
 *  - No exception, exit() or abort() ever crosses this ABI.
 *  - No Vulkan type appears here: adopted Vulkan handles travel as void* / uint64_t.
 *
 * Threading: functions on different objects may run concurrently unless a function says
 * otherwise. Functions on the same kv_runtime are internally synchronized. A session serves one
 * call at a time: since 0.2.0 a second call on a session in use (another thread's, or a ticket in
 * flight) returns KV_ERR_BUSY and changes nothing (see "Non-blocking work and cancellation").
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
#define KV_VERSION_MINOR 2
#define KV_VERSION_PATCH 0
#define KV_MAKE_VERSION(major, minor, patch) \
    ((((uint32_t)(major)) << 22) | (((uint32_t)(minor)) << 12) | ((uint32_t)(patch)))
#define KV_VERSION KV_MAKE_VERSION(KV_VERSION_MAJOR, KV_VERSION_MINOR, KV_VERSION_PATCH)
#define KV_VERSION_GET_MAJOR(v) ((uint32_t)(v) >> 22)
#define KV_VERSION_GET_MINOR(v) (((uint32_t)(v) >> 12) & 0x3FFu)
#define KV_VERSION_GET_PATCH(v) ((uint32_t)(v)&0xFFFu)

/* The version of the library actually loaded (compare with KV_VERSION of your header). */
KV_API uint32_t kv_version(void);
/* The same as a static string, e.g. "0.2.0". Never NULL; owned by the library. */
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
    KV_NOT_READY = 3,          /* (since 0.2.0) a ticket's work is still running */
    KV_CANCELLED = 4,          /* (since 0.2.0) kv_session_cancel stopped a prefill: the session
                                  keeps the tokens done so far (see kv_session_cancel) */

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
    KV_ERR_BUSY = -13,                  /* (since 0.2.0) the session is in use by another call:
                                           another thread's, or a ticket in flight */

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
    KV_FEATURE_SHADER_INT64 = 1u << 11,
    /* Since 0.2.0: */
    KV_FEATURE_TIMELINE_SEMAPHORE = 1u << 12,  /* Vulkan 1.2 timelineSemaphore or VK_KHR_timeline_semaphore */
    KV_FEATURE_GLOBAL_PRIORITY = 1u << 13      /* VK_KHR_global_priority or VK_EXT_global_priority */
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
    /* Since 0.2.0: the runtime's queue and scheduling, as granted (see "GPU scheduling beside a
     * renderer"). Filled by kv_runtime_get_info; 0 from kv_enumerate_devices. */
    uint32_t queue_family;              /* family of the queue kvulkan submits to */
    uint32_t queue_flags;               /* KV_QUEUE_* bits */
    float queue_priority;               /* its VkDeviceQueueCreateInfo priority (0: adopted, unknown) */
    uint32_t global_priority;           /* KV_GLOBAL_PRIORITY_* granted (0: none requested, or refused) */
    uint32_t gpu_budget_us;             /* per-submission GPU budget in effect (0: off) */
    uint32_t reserved1;
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
    /* Most device memory (bytes) the runtime may hold for weights, KV caches and scratch; 0: no
     * limit beyond the device's. Reaching it fails the call with KV_ERR_OUT_OF_DEVICE_MEMORY, as
     * running out of real memory would. A game sets it to leave room for its own resources. */
    uint64_t memory_budget;
    /* Since 0.2.0: a file that keeps compiled pipelines across runs (NULL or "": none; the path
     * is copied). kv_runtime_create reads it into the device's VkPipelineCache, so pipelines the
     * driver compiled in an earlier run are taken from it instead of being compiled again (the
     * first token comes sooner; on phones, seconds sooner). kv_runtime_destroy writes the cache
     * back, atomically (a temporary file in the same directory, then renamed over the path), and
     * only when its content changed. A missing file is the normal first run. A file that is
     * corrupt (bad magic, size or checksum), from another kvulkan version, or whose Vulkan header
     * (VkPipelineCacheHeaderVersionOne) names another vendor, device or pipelineCacheUUID (a driver
     * update) is ignored with a message to the log callback, and replaced at destroy. Failing to
     * read or write the file never fails a call: it is logged (KV_LOG_WARNING). What a warm cache
     * saves depends on the driver: lavapipe (Mesa's CPU device) keeps nothing in VkPipelineCache
     * (its own shader disk cache, MESA_SHADER_CACHE_DIR, plays that role), GPU drivers keep the
     * compiled code. Several runtimes on one path: the last one destroyed wins (each write is
     * whole). */
    const char* pipeline_cache_path;
    /* Since 0.2.0, see "GPU scheduling beside a renderer" at the end of this header: */
    uint32_t vk_timeline_semaphore; /* adopted device: 1 if the host enabled timelineSemaphore */
    uint32_t gpu_budget_us;         /* GPU time per submission, microseconds (0: no budget) */
    float queue_priority;           /* own device: queue priority in (0, 1] (0: 1.0) */
    uint32_t global_priority;       /* own device: KV_GLOBAL_PRIORITY_* request (0: none) */
} kv_runtime_desc;

#define KV_RUNTIME_DESC_INIT                                                               \
    {                                                                                      \
        (uint32_t)sizeof(kv_runtime_desc), 0u, -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
            0u, 0u, 0u, NULL, 0u, 0u, 0.0f, 0u                                             \
    }

/* Lists the Vulkan devices kvulkan can use. `infos` may be NULL to query the count. On input
 * *count is the capacity of `infos`; on output, the
 * number written, or the number available when `infos` is NULL. Returns KV_INCOMPLETE when the
 * array was too small (the first *count entries are written). The array is stepped through by
 * infos[0].struct_size (set it to sizeof(kv_device_info) of your header): element i starts
 * i x infos[0].struct_size bytes after infos[0], and every element's struct_size must equal
 * that of infos[0]. `desc` may be NULL; its flags (validation) and log callback are used for
 * the temporary instance. Thread-safe. */
KV_API kv_status kv_enumerate_devices(const kv_runtime_desc* desc, kv_device_info* infos,
                                      uint32_t* count);

/* Creates a runtime: instance, device and compute queue (or adopts the host's), memory pools and
 * pipeline cache. On success *out_runtime owns them; destroy with kv_runtime_destroy. `desc` may
 * be NULL (the KV_RUNTIME_DESC_INIT defaults; NULL was rejected before 0.2.0).
 * Errors: KV_ERR_INVALID_ARGUMENT (a NULL out_runtime, a bad struct_size, device_index out of range,
 * incomplete adoption handles), KV_ERR_NO_DEVICE (no Vulkan device, or none matches device_name or
 * KV_DEVICE), KV_ERR_UNSUPPORTED (Vulkan < 1.1, no compute queue, missing validation layer),
 * KV_ERR_OUT_OF_HOST_MEMORY, KV_ERR_DEVICE_LOST. */
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
 * size that defeats caches, bounded by device limits; smaller requests are rounded up to 4096
 * bytes and sizes to a multiple of 16; result->bytes is the size used), best of `iterations`
 * (0: 10) timed with GPU timestamps. Thread-safe with respect to other runtime calls. */
KV_API kv_status kv_runtime_measure_bandwidth(kv_runtime* runtime, uint64_t bytes,
                                              uint32_t iterations, kv_bandwidth_result* result);


/* ---------------------------------------------------------------------------------------------
 * Models (since 0.1.0)
 *
 * A kv_model is a GGUF file's architecture, tokenizer and weights. With a runtime, every weight
 * tensor is uploaded to the device in its file format (shaders dequantize as they read), streamed
 * through bounded staging memory. Without a runtime (runtime == NULL) the file is parsed and
 * validated only: info and tokenization work, sessions do not (KV_ERR_BAD_STATE).
 * ------------------------------------------------------------------------------------------- */
typedef struct kv_model kv_model;
typedef int32_t kv_token;

/* How to load a model. Initialize with KV_MODEL_DESC_INIT. Exactly one of `path` or `data`. */
/* Model flags (bits of kv_model_desc.flags). */
enum {
    /* Load the vocabulary and tokenizer alone (since 0.2.0): no architecture, hyper-parameter or
     * weight tensor is read or checked, so a GGUF of any architecture whose tokenizer kvulkan
     * supports (including vocab-only files) loads. Tokenization, detokenization and the special
     * tokens work; kv_model_get_info fills `architecture`, `name`, `n_vocab` and `file_size` and
     * leaves the rest 0; sessions fail with KV_ERR_BAD_STATE. The runtime may be NULL (and is not
     * used when given). A library older than 0.2.0 rejects the flag (KV_ERR_INVALID_ARGUMENT). */
    KV_MODEL_VOCAB_ONLY = 1u << 0
};

typedef struct kv_model_desc {
    uint32_t struct_size;
    uint32_t flags;        /* KV_MODEL_* bits (0 in 0.1.0) */
    const char* path;      /* GGUF file, memory-mapped; borrowed for the call */
    const void* data;      /* or: a GGUF file in memory (e.g. an Android asset) */
    uint64_t size;         /* bytes at `data` */
    uint32_t copy_data;    /* nonzero: kvulkan copies `data`; zero: `data` must outlive the model */
    /* The KV cache is paged: fixed-size pages of tokens in device pools shared by all sessions of
     * the model (one pool per cache type, created with the first session of that type). */
    uint32_t kv_page_size;   /* tokens per page (0: 16); 1..1024 */
    uint32_t kv_pool_tokens; /* capacity of each pool in tokens (0: max(16384, the first session's
                                n_ctx), within what the device can bind) */
    uint32_t reserved;
    /* Since 0.2.0: host memory for the KV pages of sessions moved off the device (see
     * kv_session_offload). 0: the pool never offloads by itself (a full pool fails the call with
     * KV_ERR_OUT_OF_DEVICE_MEMORY, as in 0.1) and kv_session_offload has no limit. Else, when a
     * pass finds its pool full, the least recently used idle sessions of that pool (not in use by
     * any call, no sliding window) are offloaded, oldest first, while their pages fit this many
     * bytes of host memory in all; kv_session_offload fails with KV_ERR_OUT_OF_HOST_MEMORY beyond
     * it. */
    uint64_t host_offload_bytes;
} kv_model_desc;

#define KV_MODEL_DESC_INIT { (uint32_t)sizeof(kv_model_desc), 0u, NULL, NULL, 0u, 0u, 0u, 0u, 0u, 0u }

/* Loads, validates and (with a runtime) uploads a model. Errors: KV_ERR_INVALID_ARGUMENT,
 * KV_ERR_IO (cannot open/map), KV_ERR_BAD_MODEL (malformed or inconsistent file; the message
 * names the key, tensor or offset), KV_ERR_UNSUPPORTED (architecture or weight type; named),
 * KV_ERR_OUT_OF_DEVICE_MEMORY (nothing is leaked), KV_ERR_DEVICE_LOST. The model must be
 * destroyed before its runtime. A model may be used by several threads at once (sessions). */
KV_API kv_status kv_model_load(kv_runtime* runtime, const kv_model_desc* desc, kv_model** out_model);

/* Releases the model (its device memory and file mapping). NULL is a no-op. Every session of the
 * model must be destroyed first. */
KV_API void kv_model_destroy(kv_model* model);

typedef struct kv_model_info {
    uint32_t struct_size;
    uint32_t on_device;            /* 1 when the weights were uploaded (loaded with a runtime) */
    char architecture[32];         /* "llama", "qwen2" */
    char name[KV_MAX_NAME];        /* general.name, may be empty */
    char weight_types[KV_MAX_NAME];/* e.g. "q4_k: 14 tensors, ...; f32: 5 tensors, ..." (truncated) */
    uint64_t n_params;             /* parameters (tied embedding counted once) */
    uint64_t weight_bytes;         /* bytes of the weights as stored */
    uint64_t file_size;            /* bytes of the GGUF file */
    uint64_t device_bytes;         /* device memory held by the weights (0 without a runtime) */
    uint32_t n_vocab;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t n_ff;
    uint32_t n_ctx_train;          /* context length the model was trained with */
    uint32_t rope_neox;            /* 1: NeoX rope pairing, 0: normal */
    float rope_freq_base;
    uint32_t tied_output;          /* 1: logits use the token embedding */
    uint32_t reserved;
} kv_model_info;

/* Fills *info (set info->struct_size first). Thread-safe. */
KV_API kv_status kv_model_get_info(const kv_model* model, kv_model_info* info);

/* Special tokens: the id, or -1 when the model has none. */
KV_API kv_token kv_model_token_bos(const kv_model* model);
KV_API kv_token kv_model_token_eos(const kv_model* model);
/* 1 when `token` ends generation (EOS, EOT, EOM, ...), else 0 (also for invalid arguments). */
KV_API int kv_token_is_eog(const kv_model* model, kv_token token);

/* Tokenizer flags. */
enum {
    KV_TOKENIZE_ADD_SPECIAL = 1u << 0,   /* add BOS (and EOS) as the model's metadata asks */
    KV_TOKENIZE_PARSE_SPECIAL = 1u << 1  /* text of control tokens (e.g. "<|im_start|>") maps to them */
};

/* Text (UTF-8, `len` bytes; `len` may be (size_t)-1 for NUL-terminated) to token ids. On input
 * *n_tokens is the capacity of `tokens` (which may be NULL with capacity 0); on output the number
 * of tokens of the text. Returns KV_INCOMPLETE (writing nothing) if the capacity is too small.
 * Thread-safe. */
KV_API kv_status kv_tokenize(const kv_model* model, const char* text, size_t len, uint32_t flags,
                             kv_token* tokens, uint32_t* n_tokens);

/* Token ids to text bytes (not NUL-terminated). On input *len is the capacity of `text` (which may
 * be NULL with capacity 0); on output the byte count. KV_INCOMPLETE when the capacity is too
 * small (nothing written). KV_ERR_BAD_TOKEN for an id outside the vocabulary. The leading space a
 * SentencePiece tokenizer adds is removed. Thread-safe. */
KV_API kv_status kv_detokenize(const kv_model* model, const kv_token* tokens, uint32_t n_tokens,
                               char* text, size_t* len);

/* One token's bytes, for streaming (control tokens give ""); same buffer protocol as
 * kv_detokenize. Concatenated pieces may differ from kv_detokenize only in the leading space. */
KV_API kv_status kv_token_to_piece(const kv_model* model, kv_token token, char* text, size_t* len);

/* ---------------------------------------------------------------------------------------------
 * Sessions (since 0.1.0)
 *
 * A kv_session is one sequence: its KV cache (per layer, K and V of every processed position,
 * written once and read by every later step), its position, its sampler and its last logits.
 * Threading: one thread at a time per session; different sessions of one model may be used from
 * different threads concurrently.
 * ------------------------------------------------------------------------------------------- */
typedef struct kv_session kv_session;

typedef enum kv_cache_type {
    KV_CACHE_F16 = 0, /* default: half the memory of F32, ~1e-3 relative logits error */
    KV_CACHE_F32 = 1,
    /* Quantized pages (head_dim a multiple of 32, or 2, 4, 8, 16: one scale per row then). */
    KV_CACHE_Q8_0 = 2, /* 8-bit values + an fp16 scale per 32: about half of F16's memory */
    KV_CACHE_Q4_0 = 3, /* 4-bit values + an fp16 scale per 32: about a quarter */
    KV_CACHE_TYPE_FORCE32 = 0x7FFFFFFF
} kv_cache_type;

/* One entry of kv_sampler_desc.logit_bias (since 0.2.0): `bias` is added to the token's logit
 * before any other step; -INFINITY bans the token. */
typedef struct kv_logit_bias {
    kv_token token;
    float bias;
} kv_logit_bias;

/* Sampling. Initialize with KV_SAMPLER_DESC_INIT (greedy). Applied in this order: logit bias and
 * banned tokens (since 0.2.0), the session's grammar (kv_session_set_grammar, since 0.2.0),
 * repetition penalty over the last `repeat_last_n` tokens, top-k, temperature, softmax, min-p,
 * top-p, draw. */
typedef struct kv_sampler_desc {
    uint32_t struct_size;
    float temperature;     /* <= 0: greedy (argmax; computed on the GPU when no penalty applies) */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off; > 1 discourages repeats (llama.cpp semantics) */
    uint32_t repeat_last_n;/* tokens looked back for the penalty (0: 64) */
    uint32_t reserved;
    uint64_t seed;         /* same seed + same inputs = same tokens */
    /* Since 0.2.0 (zero: none). Both arrays are copied by the call that takes the desc; every token
     * must be in the vocabulary and every bias finite or -INFINITY (else KV_ERR_INVALID_ARGUMENT).
     * A session with either samples on the host (greedy included). */
    const kv_logit_bias* logit_bias;  /* n_logit_bias entries; a token listed twice gets both */
    uint32_t n_logit_bias;
    uint32_t n_banned_tokens;
    const kv_token* banned_tokens;    /* n_banned_tokens tokens that are never sampled */
} kv_sampler_desc;

#define KV_SAMPLER_DESC_INIT \
    { (uint32_t)sizeof(kv_sampler_desc), 0.0f, 0, 1.0f, 0.0f, 1.0f, 64u, 0u, 0u, NULL, 0u, 0u, NULL }

/* Session flags. */
enum {
    /* The baseline the KV cache exists to beat: every step recomputes the whole sequence from its
     * first token (same results, quadratic work). For measurement. */
    KV_SESSION_NO_CACHE = 1u << 0
};

typedef struct kv_session_desc {
    uint32_t struct_size;
    uint32_t flags;                  /* KV_SESSION_* */
    uint32_t n_ctx;                  /* capacity in tokens (0: min(model context, 4096)); rounded up
                                        to a whole number of KV pages */
    kv_cache_type cache_type;
    uint32_t n_batch;                /* most tokens per prefill pass (0: 512); bounds scratch memory */
    uint32_t reserved;
    const kv_sampler_desc* sampler;  /* NULL: greedy; copied */
    /* Sliding window: each token attends to the last `window` tokens (itself included) plus the
     * first `sinks` tokens ("attention sinks"); pages wholly outside both are returned to the pool,
     * so endless generation runs in bounded memory and never hits KV_ERR_CONTEXT_FULL (n_ctx then
     * caps nothing). 0: full attention. A model whose metadata declares a sliding window applies
     * its own per layer in any case. */
    uint32_t window;
    uint32_t sinks;
} kv_session_desc;

#define KV_SESSION_DESC_INIT { (uint32_t)sizeof(kv_session_desc), 0u, 0u, KV_CACHE_F16, 0u, 0u, NULL, 0u, 0u }

/* Creates a session of a model loaded with a runtime. `desc` may be NULL (KV_SESSION_DESC_INIT).
 * Allocates the session's scratch memory (activations and logits, sized by n_batch and n_vocab)
 * and, on first use of its cache type, the model's KV page pool of that type. The session's KV
 * pages come from that pool on demand, one page per kv_page_size positions as tokens are added
 * (2 x layers x kv_heads x head_dim x page_size x bytes-per-element each, plus scales when
 * quantized), and go back to it on truncate, reset, window release and destroy; pages shared with
 * other sessions (prefix hits, forks) are not copied until written.
 * Errors: KV_ERR_INVALID_ARGUMENT, KV_ERR_BAD_STATE (model without a runtime, or loaded
 * vocab-only), KV_ERR_OUT_OF_DEVICE_MEMORY, KV_ERR_UNSUPPORTED (n_ctx or a pool larger than the
 * device can bind). */
KV_API kv_status kv_session_create(kv_model* model, const kv_session_desc* desc, kv_session** out_session);

/* Releases the session. NULL is a no-op. */
KV_API void kv_session_destroy(kv_session* session);

/* Appends `n_tokens` tokens (the prompt, or what follows earlier calls) in batched passes of up to
 * n_batch tokens, writing their K/V into the cache, and leaves the logits of the last one.
 * Errors leave the session unchanged: KV_ERR_CONTEXT_FULL (more tokens than the remaining
 * capacity), KV_ERR_BAD_TOKEN (an id outside the vocabulary), KV_ERR_INVALID_ARGUMENT,
 * KV_ERR_DEVICE_LOST, KV_ERR_OUT_OF_DEVICE_MEMORY. */
KV_API kv_status kv_prefill(kv_session* session, const kv_token* tokens, uint32_t n_tokens);

/* Samples the next token from the current logits (greedy: argmax on the GPU, only the id comes
 * back), appends it (its K/V enter the cache) and computes the logits that follow, in one forward
 * pass: its commands are submitted in a few parts (so the host records later layers while the
 * GPU runs earlier ones) and the call waits once, for the last. Returns KV_END_OF_GENERATION with *out_token set when the sampled token ends
 * generation; it is then not appended. KV_ERR_BAD_STATE before any prefill; KV_ERR_CONTEXT_FULL
 * at capacity; both leave the session unchanged. */
KV_API kv_status kv_decode_step(kv_session* session, kv_token* out_token);

/* Back to an empty sequence; keeps the allocations and the sampler (its random state restarts
 * from the seed). */
KV_API kv_status kv_session_reset(kv_session* session);

/* Copies the current logits (after the last processed token; n_vocab floats) into `logits`, whose
 * capacity is `capacity` floats. KV_ERR_BAD_STATE before any token; KV_ERR_INVALID_ARGUMENT when
 * the capacity is below n_vocab. */
KV_API kv_status kv_session_logits(kv_session* session, float* logits, uint32_t capacity);

/* The lower-level call for evaluation and speculative decoding: appends `n_tokens` given tokens
 * like kv_prefill and writes the logits of EVERY one of them (n_tokens x n_vocab floats, row-major)
 * into `logits` (capacity in floats; NULL to skip). Same errors as kv_prefill. */
KV_API kv_status kv_session_eval(kv_session* session, const kv_token* tokens, uint32_t n_tokens,
                                 float* logits, uint64_t capacity);

/* Replaces the sampler (copied). NULL: greedy (KV_SAMPLER_DESC_INIT; NULL was rejected before
 * 0.2.0). KV_ERR_INVALID_ARGUMENT for a bad struct_size or out-of-range value. */
KV_API kv_status kv_session_set_sampler(kv_session* session, const kv_sampler_desc* sampler);

typedef struct kv_session_stats {
    uint32_t struct_size;
    uint32_t n_tokens;           /* positions in the cache now */
    uint32_t n_ctx;              /* capacity in tokens */
    uint32_t page_size;          /* tokens per KV page */
    uint64_t kv_bytes;           /* device bytes of the KV cache (K and V, all layers) */
    uint64_t kv_bytes_per_token; /* 2 x layers x kv_heads x head_dim x bytes-per-element */
    uint64_t tokens_prefilled;   /* since creation or reset */
    uint64_t tokens_decoded;
    double last_prefill_ms;      /* wall time of the last kv_prefill / kv_session_eval */
    uint32_t last_prefill_tokens;
    uint32_t reserved;
    double last_decode_ms;       /* wall time of the last kv_decode_step */
    double total_prefill_ms;
    double total_decode_ms;
    uint64_t scratch_bytes;      /* device bytes of activations/logits scratch */
    uint32_t pages;              /* KV pages this session holds (shared ones included) */
    uint32_t shared_pages;       /* ... of which other sessions hold too (prefix hits, forks) */
    uint64_t prefix_hit_tokens;  /* prompt tokens reused from cached pages instead of computed */
    /* Since 0.2.0: */
    uint64_t forward_passes;     /* forward passes this session took part in (a batch pass counts
                                    once for each of its sessions) since creation or reset */
    uint64_t pages_offloaded;    /* pages moved to host memory (kv_session_offload or the pool's
                                    LRU offload), since creation */
    uint64_t pages_restored;     /* ... and brought back, since creation */
    uint32_t offloaded;          /* 1 while its pages are in host memory (`pages` is then 0) */
    uint32_t reserved1;          /* zero */
    uint64_t submissions;        /* GPU submissions (vkQueueSubmit) of those passes, since creation
                                    or reset; see kv_runtime_desc.gpu_budget_us */
    uint32_t last_pass_submissions; /* ... of the last pass it took part in */
    uint32_t reserved2;          /* zero */
    /* Since 0.2.0, layer groups. A model with both sliding-window and global layers (gemma2,
     * gemma3) keeps its windowed layers' K/V in pages of their own, which the session releases
     * once they hold only positions more than 32 before those layers' window, at the end of each
     * call that adds tokens (kv_prefill, kv_decode_step, ...): memory for those layers stays flat
     * however long the sequence grows. `pages` and `shared_pages` above then count the global
     * layers' pages, kv_bytes both groups' (kv_model_get_cache_stats describes the global
     * layers' pool; the windowed layers' pool has as many pages). Such sessions cannot be saved,
     * loaded or offloaded yet (KV_ERR_UNSUPPORTED); fork, prefix sharing and truncate work (a
     * truncate of up to 32 tokens always; a deeper one whose recomputed token would need released
     * positions is KV_ERR_INVALID_ARGUMENT, the session unchanged). */
    uint32_t window_layer_pages;  /* pages the windowed layers hold now (0: no such group) */
    uint32_t window_layers;       /* layers in that group (0: the model has none) */
    uint64_t window_layer_pages_released; /* pages the windowed layers released, since creation or reset */
    uint64_t pages_released;      /* pages of the other layers (every layer without groups) released by the
                                     session's own window (kv_session_desc.window), since creation or reset */
} kv_session_stats;

/* Thread-safe with respect to other sessions; on a session in use by another call it returns
 * KV_ERR_BUSY (since 0.2.0). */
KV_API kv_status kv_session_get_stats(const kv_session* session, kv_session_stats* stats);

/* A new session sharing all of `session`'s KV pages (copy-on-write: the first write into a shared
 * page copies it), with the same tokens, logits, settings and sampler state. Both continue
 * independently. Errors: KV_ERR_OUT_OF_DEVICE_MEMORY (the child's scratch memory). */
KV_API kv_status kv_session_fork(kv_session* session, kv_session** out_child);

/* Drops the tokens after the first `n_tokens` (editing, rejected speculative tokens), returning
 * their pages, and recomputes the logits after token n_tokens - 1 (so decoding can go on at once;
 * n_tokens == 0 is kv_session_reset). KV_ERR_INVALID_ARGUMENT when n_tokens exceeds the tokens
 * held. */
KV_API kv_status kv_session_truncate(kv_session* session, uint32_t n_tokens);

/* Saved sessions: a mobile app suspended by the OS resumes its conversation without recomputing
 * it. The image holds the tokens, the KV pages, the current logits, the settings and the sampler
 * state, in a versioned format with a checksum; restoring gives the same logits and the same next
 * tokens as the original session. A truncated or corrupted image, or one from another model, is
 * rejected (KV_ERR_BAD_MODEL names what is wrong; KV_ERR_UNSUPPORTED for a newer format).
 *
 * kv_session_save: on input *size is the capacity of `buffer` (NULL with capacity 0 to query); on
 * output the image's size. KV_INCOMPLETE (nothing written) when the capacity is too small. */
KV_API kv_status kv_session_save(kv_session* session, void* buffer, size_t* size);
KV_API kv_status kv_session_save_file(kv_session* session, const char* path);
/* Creates a session of `model` from an image made by kv_session_save. */
KV_API kv_status kv_session_load(kv_model* model, const void* data, size_t size, kv_session** out_session);
KV_API kv_status kv_session_load_file(kv_model* model, const char* path, kv_session** out_session);

/* ---- Many sessions in one pass (since 0.2.0) ------------------------------------------------
 *
 * Decode reads every weight once per step, whatever the number of rows it serves, so sessions of
 * one model advanced together in ONE forward pass cost little more than one. The rows of a pass:
 * a decode step is one row for its session, a speculative verify k rows of one session, a prefill
 * chunk many; matmuls run once over all rows, attention per session over its own KV pages (its
 * prefix sharing, forks, window and cache type stay as they are). kv_decode_step, kv_prefill and
 * kv_session_eval are the same path with one session.
 *
 * Rules for both calls below:
 *  - every session belongs to the same model (sessions of different cache types may be mixed);
 *    a NULL session, the same session twice, or sessions of two models reject the whole call with
 *    KV_ERR_INVALID_ARGUMENT and change nothing;
 *  - each session's outcome is its own status: one reaching its context limit, end of generation
 *    or the end of its KV pool does not stop the others, and a session whose status is an error
 *    is left as it was;
 *  - a pass holds at most 512 rows (fewer where the device's storage-buffer range is smaller):
 *    more decode sessions than that run in several passes, each still exactly one step;
 *  - the call blocks until the passes are done. The sessions must not be used by other threads
 *    during it (as for every call on a session); batches of different models may run
 *    concurrently; batches of one model take turns (they share the model's batch activations);
 *  - the return value is KV_OK when every session has its status, or the error of a pass that
 *    failed (KV_ERR_DEVICE_LOST, KV_ERR_OUT_OF_DEVICE_MEMORY, ...): the sessions of that pass and
 *    of later passes have it as their status and are as they were; earlier passes stand;
 *  - kv_last_error_message() describes the first session whose status is an error.
 * On a device whose storage-buffer offset alignment does not divide the model's per-row sizes
 * (unusual head sizes) and for KV_SESSION_NO_CACHE sessions, the sessions run one by one, with the
 * same results. */

/* One decode step for each of `n_sessions` sessions in one pass: each samples its next token from
 * its current logits with its own sampler, appends it and computes the logits that follow, as
 * kv_decode_step does. out_tokens[i] and out_status[i] (arrays of n_sessions, both required) get
 * session i's token and status: KV_OK, KV_END_OF_GENERATION (token set, not appended),
 * KV_ERR_BAD_STATE (no prefill yet), KV_ERR_CONTEXT_FULL, KV_ERR_OUT_OF_DEVICE_MEMORY (no page for
 * the new token), or a pass's error. Greedy tokens equal those of kv_decode_step on each session
 * alone; logits agree within fp32 rounding (matmuls over several rows sum in another order). */
KV_API kv_status kv_decode_batch(kv_session* const* sessions, uint32_t n_sessions, kv_token* out_tokens,
                                 kv_status* out_status);

/* One item of kv_batch_eval. Initialize with KV_BATCH_ITEM_INIT; items of one call all carry the
 * caller's sizeof(kv_batch_item) in struct_size (the array is stepped by it). */
typedef struct kv_batch_item {
    uint32_t struct_size;
    uint32_t n_tokens;       /* tokens to feed (0 with tokens == NULL: one decode step) */
    kv_session* session;
    const kv_token* tokens;  /* NULL: decode (sample and append one token, as kv_decode_batch);
                                else feed these n_tokens given tokens (prefill, or a verify) */
    float* logits;           /* token items: NULL, or the logits of EVERY fed token, n_tokens x
                                n_vocab floats (a speculative verify; see kv_session_eval) */
    uint64_t logits_capacity; /* floats at `logits` */
    /* Results: */
    kv_token token;          /* decode items: the sampled token (also with KV_END_OF_GENERATION) */
    uint32_t n_done;         /* tokens that entered the cache in this call (prefix-cache hits
                                included); a token item may get fewer than n_tokens: call again
                                with the rest */
    kv_status status;        /* this item's outcome (see the rules above) */
    uint32_t reserved;       /* zero */
} kv_batch_item;

#define KV_BATCH_ITEM_INIT { (uint32_t)sizeof(kv_batch_item), 0u, NULL, NULL, NULL, 0u, -1, 0u, KV_OK, 0u }

/* The general form: any mix of decode items and token items in one pass (or as few as the row
 * limit allows). Chunk policy for token items: each is placed whole in one pass, after the
 * decode items before it, with min(n_tokens, its session's n_batch, rows left in the pass) rows,
 * so a long new prompt joins a decode batch one chunk per call instead of stalling it; n_done
 * says how far it got (the prompt's remaining tokens go in the next call). An item with `logits`
 * runs all its tokens in one pass or not at all in this call (n_done 0, status KV_OK), and may
 * have at most its session's n_batch tokens. Its logits are written only when its status is
 * KV_OK. The session's logits afterwards are those of its last fed token, as after kv_prefill. */
KV_API kv_status kv_batch_eval(kv_batch_item* items, uint32_t n_items);

/* One step of greedy speculative decoding (since 0.2.0): a draft proposes up to `draft_n` tokens,
 * the session evaluates them with its own next token in ONE forward pass and keeps those its own
 * greedy choice agrees with. The tokens appended go to out_tokens (*n_out of them, at least one,
 * at most draft_n + 1; `capacity` must be >= draft_n + 1); the session then stands as after as
 * many kv_decode_step calls, and the tokens are those kv_decode_step would give (a multi-row pass
 * rounds differently in fp32, so an exact tie between two tokens could go the other way).
 * `draft`: NULL drafts by prompt lookup (the tokens that followed the latest earlier occurrence of
 * the sequence's last 3, 2 or 1 tokens: no second model; no occurrence means a plain step), or a
 * session of a smaller model with the same vocabulary, which this call keeps in step (it truncates
 * and feeds it as needed; do not use it for anything else meanwhile). *n_drafted (may be NULL)
 * gets the number of draft tokens verified: (*n_out - 1) / *n_drafted is the acceptance rate.
 * Returns KV_END_OF_GENERATION when an end-of-generation token was chosen: it is the last of the
 * *n_out tokens and is not appended. The session's sampler must be greedy (temperature 0; its
 * repetition penalty applies): else KV_ERR_UNSUPPORTED. Other errors as kv_decode_step; they
 * leave the session unchanged. Not with KV_SESSION_NO_CACHE (KV_ERR_UNSUPPORTED). Threading: as any
 * call on `session` (and on `draft`). */
KV_API kv_status kv_decode_speculative(kv_session* session, kv_session* draft, uint32_t draft_n, kv_token* out_tokens,
                                       uint32_t capacity, uint32_t* n_out, uint32_t* n_drafted);

/* Moves the session's KV pages to host memory (since 0.2.0), freeing its device pages for other
 * sessions (shared pages stay while another session holds them): for a conversation the app
 * knows is paused. The next call that needs the cache (prefill, decode, eval, a batch, fork,
 * truncate, save) brings them back first, into free pages; tokens, logits and sampler state never
 * leave, so the session continues exactly as if it had stayed. A no-op when already offloaded or
 * empty. Errors: KV_ERR_UNSUPPORTED for a sliding-window or KV_SESSION_NO_CACHE session,
 * KV_ERR_OUT_OF_HOST_MEMORY beyond kv_model_desc.host_offload_bytes, KV_ERR_BUSY; on error the
 * session is unchanged. A restore that finds no free pages (even after offloading others) fails
 * that call with KV_ERR_OUT_OF_DEVICE_MEMORY and the session stays offloaded. */
KV_API kv_status kv_session_offload(kv_session* session);

/* ---- Non-blocking work and cancellation (since 0.2.0) ----------------------------------------
 *
 * For callers that must not block (a game's frame loop, an app's UI thread): kv_submit_* checks
 * its arguments, takes its sessions, copies what it needs and returns at once with a ticket; the
 * work runs on kvulkan's own worker thread (one per runtime, started by the first submit; tickets
 * of one runtime run one after another in submission order) and gives the same results as the
 * blocking call. Nothing the caller passed is read after the submit returns.
 *
 * One call at a time per session: while a call runs on a session, or from a submit until its
 * ticket completes, every other call on that session (from any thread) fails with KV_ERR_BUSY and
 * changes nothing; so do kv_session_get_stats and kv_session_logits. The exceptions are
 * kv_session_cancel (any time, any thread) and kv_session_destroy, which waits for the ticket in
 * flight. The batch calls give a busy session KV_ERR_BUSY as its own status and run the others.
 *
 * A ticket is owned by the caller: destroy it with kv_ticket_destroy, which waits for its work
 * if still running (a session's ticket must be destroyed before the session's runtime). Tickets
 * may be waited for, polled and destroyed from any thread. */
typedef struct kv_ticket kv_ticket;

/* Called on kvulkan's worker thread when a ticket completes, after its sessions are free. The
 * callback may read results, submit more work and destroy tickets (one still running, or its
 * own, is freed when its work and callback are done); it should return quickly: the worker runs
 * nothing else meanwhile, so waiting there for a ticket still running fails with
 * KV_ERR_BAD_STATE. `status` is what kv_ticket_wait returns. */
typedef void (*kv_ticket_callback)(kv_ticket* ticket, kv_status status, void* user);

/* kv_prefill without waiting. `tokens` is copied. `callback` may be NULL. Errors of the submit
 * itself (NULL arguments, n_tokens 0, KV_ERR_BUSY, KV_ERR_DEVICE_LOST) are returned at once and
 * give no ticket; the prefill's own errors are the ticket's status. */
KV_API kv_status kv_submit_prefill(kv_session* session, const kv_token* tokens, uint32_t n_tokens,
                                   kv_ticket_callback callback, void* user, kv_ticket** out_ticket);
/* kv_decode_step without waiting: the ticket has one result (the token and its status). */
KV_API kv_status kv_submit_decode(kv_session* session, kv_ticket_callback callback, void* user,
                                  kv_ticket** out_ticket);
/* kv_decode_batch without waiting: the ticket has n_sessions results, in order; `sessions` is
 * copied. The rules of kv_decode_batch apply (a session in use gets KV_ERR_BUSY as its status). */
KV_API kv_status kv_submit_decode_batch(kv_session* const* sessions, uint32_t n_sessions,
                                        kv_ticket_callback callback, void* user, kv_ticket** out_ticket);

/* Waits up to timeout_ns (0: just look; UINT64_MAX: no limit) for the ticket. Returns
 * KV_NOT_READY while its work runs, else the work's status (as the blocking call would have
 * returned it; kv_last_error_message() then gives its message). Any number of times. */
KV_API kv_status kv_ticket_wait(kv_ticket* ticket, uint64_t timeout_ns);
/* kv_ticket_wait(ticket, 0). */
KV_API kv_status kv_ticket_poll(kv_ticket* ticket);
/* A completed ticket's per-session results: *n_out (1 for a decode, n_sessions for a batch, 0
 * for a prefill) tokens and statuses, as kv_decode_step / kv_decode_batch give them (-1 where no
 * token was sampled). KV_NOT_READY while running; KV_INCOMPLETE (with *n_out set) when capacity
 * is smaller. */
KV_API kv_status kv_ticket_results(kv_ticket* ticket, kv_token* out_tokens, kv_status* out_status,
                                   uint32_t capacity, uint32_t* n_out);
/* Waits for the ticket's work if it still runs, then frees it. NULL is a no-op. */
KV_API void kv_ticket_destroy(kv_ticket* ticket);

/* Asks the prefill running on `session` (kv_prefill on another thread, or a submitted one) to
 * stop at a chunk boundary: the chunk (n_batch tokens) that starts after the request is its last
 * (at least one chunk runs). It then
 * returns KV_CANCELLED (the ticket's status), and the session holds the tokens of the chunks done
 * - kv_session_get_stats' n_tokens and last_prefill_tokens say how many - with the logits after
 * the last of them: it is consistent and usable; kv_prefill with the rest of the prompt continues
 * exactly as an uncancelled prefill would have. No effect on other calls, nor when nothing runs
 * (a request is cleared when the next call starts). Thread-safe; never blocks. */
KV_API kv_status kv_session_cancel(kv_session* session);

/* The model's KV page pool of one cache type. */
typedef struct kv_cache_stats {
    uint32_t struct_size;
    uint32_t page_size;          /* tokens per page */
    uint32_t pages_total;        /* pool capacity (0: no session of this type was created yet) */
    uint32_t pages_in_use;       /* held by sessions */
    uint32_t pages_cached;       /* held by nobody, kept for prefix reuse, evicted when needed (LRU) */
    uint32_t pages_free;
    uint64_t page_bytes;         /* device bytes of one page across all layers, K and V */
    uint64_t device_bytes;       /* device bytes of the whole pool */
    uint64_t prefix_lookups;     /* pages looked up for prefix reuse */
    uint64_t prefix_hits;        /* ... and found */
    uint64_t evictions;          /* cached pages dropped to make room */
    /* Since 0.2.0: */
    uint64_t pages_offloaded;    /* pages of sessions moved to host memory (explicit and LRU) */
    uint64_t pages_restored;     /* ... and brought back */
    uint64_t offloaded_bytes;    /* host bytes held now by offloaded sessions of this pool */
} kv_cache_stats;

/* Thread-safe. */
KV_API kv_status kv_model_get_cache_stats(kv_model* model, kv_cache_type type, kv_cache_stats* stats);

/* ---------------------------------------------------------------------------------------------
 * Streaming generation with stop strings (since 0.2.0)
 *
 * kv_generate runs kv_decode_step in a loop and hands the text to a callback as it is produced,
 * so an application writes no detokenization or stop-string logic:
 *  - each piece is UTF-8 text that ends on a character boundary: a character whose bytes are
 *    split across tokens is held back until it is complete. Bytes that can never become a valid
 *    character (a model may emit any byte) are passed on as they are, not held or replaced;
 *  - stop strings are matched on the text, across token boundaries. Text that could still be the
 *    start of a stop string is held back until the next tokens rule it out; the stop string and
 *    everything after it are never passed on. The first occurrence to end in the text wins (the
 *    longest, if several end at the same byte);
 *  - concatenated, the pieces are exactly the bytes of kv_token_to_piece of the generated tokens
 *    (a SentencePiece model's word-leading spaces included), cut before the stop string when one
 *    was found; when generation ends otherwise (max_tokens, end of generation, full context, an
 *    error), the text held back is passed on before the call returns. After the callback asked to
 *    stop, nothing more is passed on.
 * The session: every token sampled is appended as by kv_decode_step, including the tokens that
 * make up a stop string (truncate with kv_session_truncate to drop them); an end-of-generation
 * token is not appended (as kv_decode_step). The session then stands as after that many
 * kv_decode_step calls: its logits are those after the last appended token, and a later
 * kv_generate or kv_decode_step continues from there (held text of an earlier call is not
 * carried over).
 * ------------------------------------------------------------------------------------------- */

/* Receives one piece of generated text: `len` bytes at `text` (not NUL-terminated; valid only
 * during the call; len > 0). Return 0 to go on, non-zero to stop generating (stop_reason
 * KV_GENERATE_STOP_CALLBACK). Called on the thread that called kv_generate; it must not call
 * functions on the generating session. */
typedef int (*kv_piece_fn)(void* user_data, const char* text, size_t len);

/* How kv_generate ended (kv_generate_result.stop_reason). */
typedef enum kv_generate_stop {
    KV_GENERATE_STOP_MAX_TOKENS = 0,         /* max_tokens tokens were appended */
    KV_GENERATE_STOP_END_OF_GENERATION = 1,  /* the model sampled an end-of-generation token */
    KV_GENERATE_STOP_STRING = 2,             /* a stop string was found (stop_string says which) */
    KV_GENERATE_STOP_CALLBACK = 3,           /* on_piece returned non-zero */
    KV_GENERATE_STOP_CONTEXT_FULL = 4,       /* the session has no room for another token */
    KV_GENERATE_STOP_ERROR = 5,              /* a step failed: the call returns its error */
    KV_GENERATE_STOP_FORCE32 = 0x7FFFFFFF
} kv_generate_stop;

/* What to generate. Initialize with KV_GENERATE_DESC_INIT. */
typedef struct kv_generate_desc {
    uint32_t struct_size;
    uint32_t max_tokens;               /* most tokens to append; 0: no limit (until another stop) */
    const char* const* stop_strings;   /* n_stop_strings NUL-terminated, non-empty UTF-8 (or any
                                          bytes) strings; borrowed for the call; may be NULL when
                                          n_stop_strings is 0 */
    uint32_t n_stop_strings;
    uint32_t reserved;                 /* zero */
    kv_piece_fn on_piece;              /* NULL: no streaming (the text is not delivered) */
    void* user_data;                   /* passed to on_piece */
} kv_generate_desc;

#define KV_GENERATE_DESC_INIT { (uint32_t)sizeof(kv_generate_desc), 0u, NULL, 0u, 0u, NULL, NULL }

/* The outcome of kv_generate. Set struct_size (sizeof(kv_generate_result)) before the call. */
typedef struct kv_generate_result {
    uint32_t struct_size;
    uint32_t n_tokens;             /* tokens this call appended to the session */
    kv_generate_stop stop_reason;
    int32_t stop_string;           /* index into stop_strings of the stop string found, else -1 */
    kv_token last_token;           /* the last token sampled (for KV_GENERATE_STOP_END_OF_GENERATION,
                                      the end-of-generation token, not appended); -1 if none */
    uint32_t reserved;
    uint64_t n_bytes;              /* bytes passed to on_piece */
} kv_generate_result;

/* Generates up to desc->max_tokens tokens on a session whose logits are ready (after a prefill
 * or an earlier step), streaming their text to desc->on_piece (see above). `desc` may be NULL
 * (KV_GENERATE_DESC_INIT: until end of generation or a full context, no callback); `result` may
 * be NULL. Returns KV_OK whenever generation ended for one of the reasons of kv_generate_stop
 * other than KV_GENERATE_STOP_ERROR (a full context included: the session is intact, the text so
 * far was delivered); *result says which, and is filled on errors too (unlike other out-
 * parameters), counting the tokens appended before the failure. Errors: KV_ERR_INVALID_ARGUMENT
 * (a NULL session, a bad struct_size, stop_strings NULL with a count, a NULL or empty stop string,
 * reserved not zero; nothing is generated), and those of kv_decode_step (KV_ERR_BAD_STATE before
 * any prefill, KV_ERR_OUT_OF_DEVICE_MEMORY, KV_ERR_DEVICE_LOST, ...), which leave the tokens
 * appended before the failing step in the session. Threading: as kv_decode_step (one thread at a
 * time per session); the callback runs on the calling thread. */
KV_API kv_status kv_generate(kv_session* session, const kv_generate_desc* desc, kv_generate_result* result);

/* ---------------------------------------------------------------------------------------------
 * Chat templates (since 0.2.0)
 *
 * A conversation rendered into the prompt text a model was trained on, by the model's own
 * tokenizer.chat_template (a Jinja2 template in its GGUF metadata), as Hugging Face transformers
 * renders it: the template sees `messages` (a list of {"role", "content"}),
 * `add_generation_prompt`, `bos_token` and `eos_token` (the vocabulary texts of the model's BOS
 * and EOS; undefined when the model has none), `tools` and `documents` (none), `enable_thinking`
 * (only with KV_CHAT_NO_THINKING) and the functions raise_exception() and strftime_now() (local
 * time). The engine implements the subset of Jinja that chat templates use (for loops,
 * if/elif/else, set, namespace(), filters such as trim and tojson, tests, string methods;
 * whitespace control with transformers' trim_blocks and lstrip_blocks). A template it cannot
 * render exactly is an error that names the construct and its line and column, never a prompt
 * that is almost right.
 *
 * The text holds every special token the template writes (BOS included, for templates that write
 * bos_token): tokenize it with KV_TOKENIZE_PARSE_SPECIAL and without KV_TOKENIZE_ADD_SPECIAL.
 * ------------------------------------------------------------------------------------------- */

/* One message of a conversation. Arrays of it are stepped by messages[0].struct_size (set every
 * element's struct_size to sizeof(kv_chat_message), e.g. with KV_CHAT_MESSAGE_INIT). */
typedef struct kv_chat_message {
    uint32_t struct_size;
    uint32_t reserved;        /* zero */
    const char* role;         /* "system", "user", "assistant", "tool", ... (NUL-terminated UTF-8) */
    const char* content;      /* NUL-terminated UTF-8 */
} kv_chat_message;

#define KV_CHAT_MESSAGE_INIT { (uint32_t)sizeof(kv_chat_message), 0u, NULL, NULL }

/* Chat flags (bits of the `flags` argument below). */
enum {
    /* add_generation_prompt = true: end with the opening of an assistant turn, for the model to
     * write its reply next. */
    KV_CHAT_ADD_ASSISTANT_PROMPT = 1u << 0,
    /* enable_thinking = false: templates with a reasoning switch (Qwen3 style) ask the model to
     * answer without thinking first. Without it, enable_thinking is undefined (the template's
     * default). Templates without the switch ignore it. */
    KV_CHAT_NO_THINKING = 1u << 1
};

/* Renders `n_messages` messages with the model's tokenizer.chat_template. On input *len is the
 * capacity of `text` (which may be NULL with capacity 0); on output the byte count of the text
 * (not NUL-terminated). Returns KV_INCOMPLETE (writing nothing) if the capacity is too small
 * (ask again with *len bytes; a template that writes the date could change at midnight between
 * the two calls). Errors: KV_ERR_UNSUPPORTED (the model has no chat template - render one of
 * your own with kv_chat_format_template - or its template uses a Jinja construct kvulkan does not
 * implement, named in the message), KV_ERR_BAD_MODEL (the model's template is malformed; the
 * message says where), KV_ERR_INVALID_ARGUMENT (NULL pointers, a bad struct_size, unknown flags,
 * or messages the template rejects: the message quotes the template's raise_exception text,
 * e.g. "Conversation roles must alternate user/assistant/..."). Thread-safe. */
KV_API kv_status kv_chat_format(const kv_model* model, const kv_chat_message* messages, uint32_t n_messages,
                                uint32_t flags, char* text, size_t* len);

/* The same with a template of the caller's (NUL-terminated Jinja source), for a model without
 * one or one the caller prefers. `model` may be NULL: bos_token and eos_token are then undefined
 * (print as ""). A malformed template is KV_ERR_INVALID_ARGUMENT naming the construct, line and
 * column. Thread-safe. */
KV_API kv_status kv_chat_format_template(const kv_model* model, const char* chat_template,
                                         const kv_chat_message* messages, uint32_t n_messages, uint32_t flags,
                                         char* text, size_t* len);

/* The model's tokenizer.chat_template source (not NUL-terminated): *len in/out as for
 * kv_detokenize; KV_INCOMPLETE when the capacity is too small. A model without one gives KV_OK
 * with *len = 0. Thread-safe. */
KV_API kv_status kv_model_get_chat_template(const kv_model* model, char* text, size_t* len);

/* ---------------------------------------------------------------------------------------------
 * Constrained sampling and embeddings (since 0.2.0)
 * ------------------------------------------------------------------------------------------- */

/* Attaches a grammar to the session's sampler: from the next sampled token on, only tokens whose
 * text (the bytes kv_token_to_piece gives) keeps the generated text a prefix of a string of the
 * grammar can be sampled, and end-of-generation tokens only where the grammar may end (so a
 * finished match samples nothing but an EOG token: kv_decode_step returns KV_END_OF_GENERATION).
 * It applies wherever the session samples: kv_decode_step, kv_decode_batch and kv_batch_eval
 * decode items; tokens given to kv_prefill / kv_session_eval are not matched against it.
 * The grammar is GBNF (llama.cpp's notation), UTF-8:
 *     name ::= alternatives          a rule (it may span lines; the next "name ::=" ends it)
 *     a b | c                        sequence, alternation;  ( ... ) group
 *     "text"  [a-z0-9_]  [^"\\]  .   literal, character class (ranges, ^ negation), any character
 *     x*  x+  x?  x{m}  x{m,}  x{m,n} repetition (m, n <= 1000);  # comment to the end of the line
 *     escapes \n \r \t \\ \" \' \[ \] \- \xHH \uHHHH \UHHHHHHHH
 * Matching is on Unicode code points; a token may end inside a UTF-8 sequence. `root_rule` (NULL:
 * "root") names the start rule. Left-recursive rules are rejected. `gbnf` NULL removes the grammar.
 * The grammar is copied and kept by the session: kv_session_reset restarts it, kv_session_truncate
 * forgets what it matched past the new length, kv_session_fork gives the child a copy of its state,
 * kv_session_set_sampler keeps it. kv_decode_speculative and kv_session_save reject a session with
 * a grammar (KV_ERR_UNSUPPORTED). A step at which the grammar allows no token of the vocabulary
 * fails with KV_ERR_BAD_STATE, leaving the session unchanged.
 * Cost: the first grammar of a model builds a trie of its token texts (once per model). Greedy and
 * plain-temperature sampling check the drawn token only (the full mask only when it does not fit:
 * the distribution is exactly the masked one); with top-k, top-p or min-p every step masks all.
 * Errors: KV_ERR_INVALID_ARGUMENT with the line and column of a syntax error, an undefined rule,
 * a rule defined twice, left recursion or a missing root rule; the session is then unchanged. */
KV_API kv_status kv_session_set_grammar(kv_session* session, const char* gbnf, const char* root_rule);

/* Translates a JSON Schema (UTF-8 JSON text, `len` bytes or (size_t)-1 for NUL-terminated) into
 * GBNF for kv_session_set_grammar (root rule "root"); output that matches it is JSON that the
 * schema accepts, after optional leading whitespace. Supported: "type" (object, array, string,
 * number, integer, boolean, null, or a list of them), "properties" and "required" (properties are
 * written in the schema's order; an absent "additionalProperties" or false allows no others),
 * "items", "minItems"/"maxItems", "minLength"/"maxLength", "enum", "const", "anyOf"/"oneOf", and
 * annotations (title, description, default, examples, $schema, $id, $comment), which are ignored.
 * An empty schema {} (or true) is any JSON value. Other keywords ($ref, pattern, format, allOf,
 * minimum, ...) fail with KV_ERR_UNSUPPORTED naming the keyword and where it is; malformed JSON
 * or a malformed schema fails with KV_ERR_INVALID_ARGUMENT and the byte offset or path.
 * Buffer protocol: on input *size is the capacity of `gbnf` in bytes (NULL with 0 to query); on
 * output the bytes the text needs, its terminating NUL included. KV_INCOMPLETE (nothing written)
 * when the capacity is too small. Thread-safe. */
KV_API kv_status kv_json_schema_to_grammar(const char* schema_json, size_t len, char* gbnf, size_t* size);

/* Pooling and normalization of kv_session_embeddings (flag bits). */
enum {
    KV_EMBED_LAST = 0,             /* the last token's hidden state (the default) */
    KV_EMBED_MEAN = 1u << 0,       /* the mean over the n_tokens tokens */
    KV_EMBED_NORMALIZE = 1u << 1   /* scaled to unit L2 norm */
};

/* Embeddings: the model's final hidden state (after the output norm, the vector the output head
 * reads; n_embd floats, see kv_model_info) of `tokens`, evaluated after the tokens the session
 * holds (usually none: a fresh or reset session), pooled per `flags` (KV_EMBED_* bits) into
 * `out` (capacity in floats, at least n_embd). The session is left as it was: its tokens, KV cache
 * and logits do not change (the tokens' K/V are written to pages that are given back before the
 * call returns). No logits are computed. Errors: KV_ERR_INVALID_ARGUMENT (NULL pointers, n_tokens
 * 0, unknown flags, capacity below n_embd), KV_ERR_BAD_TOKEN, KV_ERR_CONTEXT_FULL (the tokens do
 * not fit after the session's), KV_ERR_UNSUPPORTED (a sliding-window session that holds tokens),
 * KV_ERR_OUT_OF_DEVICE_MEMORY, KV_ERR_DEVICE_LOST. Threading: as any call on `session`. */
KV_API kv_status kv_session_embeddings(kv_session* session, const kv_token* tokens, uint32_t n_tokens,
                                       uint32_t flags, float* out, uint32_t capacity);

/* ---- Sharing the runtime's queue with the host (since 0.2.0) --------------------------------
 *
 * kvulkan submits to its VkQueue from whichever thread runs its work (the caller of a blocking
 * call, or the worker thread of kv_submit_*), under a lock of its own. A host that submits to the
 * same VkQueue - the adopted vk_queue, e.g. on a device whose compute family has a single queue -
 * must not do so while kvulkan does (Vulkan requires queue access to be externally synchronized):
 * it makes its queue calls (vkQueueSubmit, vkQueueWaitIdle, ...) inside `fn`, which
 * kv_runtime_use_queue calls on the calling thread, with the VkQueue (as void*) and `user`, while
 * holding that lock. kvulkan holds the lock only around its own vkQueueSubmit calls, never while
 * waiting for the GPU, so this waits at most for one submission of kvulkan's to be made.
 * `fn` must return quickly and must not call kvulkan (a kvulkan call that submits would wait for
 * the lock `fn` holds). Thread-safe. Errors: KV_ERR_INVALID_ARGUMENT (NULL runtime or fn). */
typedef void (*kv_queue_fn)(void* vk_queue, void* user);
KV_API kv_status kv_runtime_use_queue(kv_runtime* runtime, kv_queue_fn fn, void* user);

/* ---- GPU scheduling beside a renderer (since 0.2.0) ------------------------------------------
 *
 * Ordering without a CPU wait. On a device with timeline semaphores (KV_FEATURE_TIMELINE_SEMAPHORE;
 * on an adopted device only when the host created it with the timelineSemaphore feature enabled
 * and says so in kv_runtime_desc.vk_timeline_semaphore), the runtime owns one timeline VkSemaphore
 * that every submission of kvulkan's signals, with values increasing by one per submission in
 * queue order. The host's GPU work that must come after kvulkan's waits for it on the GPU:
 *   1. host work first: the host's submission signals its own timeline semaphore S with value v;
 *      kv_runtime_wait_semaphore(rt, S, v) makes every later kvulkan submission wait for it on the
 *      GPU (the host's thread does not wait; kvulkan's thread may still submit at once);
 *   2. kvulkan's work: any call, blocking or kv_submit_*;
 *   3. host work after it: when the call has returned (or its ticket completed: kv_ticket_poll),
 *      kv_runtime_timeline_semaphore gives the value w of kvulkan's last submission, which covers
 *      all of that call's work; the host's submission waits for kvulkan's semaphore to reach w.
 * A semaphore wait makes the writes before its signal available and visible to the waiting
 * batch: no further barrier is needed between kvulkan's and the host's work.
 * Queue-sharing rules: kvulkan submits (vkQueueSubmit, one batch per submission; never
 * vkQueueWaitIdle or vkQueuePresentKHR) from the thread that runs its work - the caller of a
 * blocking call, or the worker thread of kv_submit_* - at any time while such a call or ticket
 * runs, and never otherwise. On an adopted queue the host makes its own queue calls inside
 * kv_runtime_use_queue's callback (or, single-threaded, only when no kvulkan call or ticket runs).
 * kvulkan waits on its own fences, never on the host's semaphores from the CPU, and never calls
 * vkDeviceWaitIdle except in kv_runtime_destroy (which therefore also waits for the host's work).
 *
 * GPU time budget (kv_runtime_desc.gpu_budget_us = B > 0): a step (a prefill chunk, a decode step,
 * a batched pass) is submitted in several batches, each expected to take at most B microseconds of
 * GPU time, so work the host submits to the same queue (a frame) waits at most about B behind
 * kvulkan's. The cost of each layer is measured with timestamp queries on earlier steps of the
 * same row count (or scaled from the nearest measured one); a step with no estimate yet is split
 * every layer. The finest split is one layer (and the output head): a layer that alone takes more
 * than B is one submission. Splitting costs a little (a submission each, and recording no longer
 * hides behind execution as well); results are bit-identical to an unsplit step. kv_session_stats'
 * submissions fields count them. Without timestamps (KV_FEATURE_TIMESTAMPS) the budget is ignored
 * with a log message and kv_device_info.gpu_budget_us reads 0.
 *
 * Priority (only when kvulkan creates the device; an adopted queue keeps the host's): queue_priority
 * is the VkDeviceQueueCreateInfo priority (relative to other queues of the same device), and
 * global_priority requests a system-wide priority where the driver offers VK_KHR_global_priority or
 * VK_EXT_global_priority (KV_FEATURE_GLOBAL_PRIORITY). A request the driver does not offer or
 * refuses (above MEDIUM usually needs privileges) is dropped with a log message: it never fails
 * kv_runtime_create. kv_device_info (kv_runtime_get_info) reports what was granted. kvulkan
 * prefers a queue family with compute and no graphics (KV_QUEUE_DEDICATED_COMPUTE), where the
 * device has one, so its work can run beside the renderer's graphics queue. */

/* Values of kv_runtime_desc.global_priority and kv_device_info.global_priority (those of
 * VkQueueGlobalPriorityKHR). */
enum {
    KV_GLOBAL_PRIORITY_NONE = 0,
    KV_GLOBAL_PRIORITY_LOW = 128,
    KV_GLOBAL_PRIORITY_MEDIUM = 256,
    KV_GLOBAL_PRIORITY_HIGH = 512,
    KV_GLOBAL_PRIORITY_REALTIME = 1024
};

/* Bits of kv_device_info.queue_flags. */
enum {
    KV_QUEUE_DEDICATED_COMPUTE = 1u << 0,  /* the family has compute and no graphics */
    KV_QUEUE_ADOPTED = 1u << 1,            /* the host's queue (kv_runtime_desc.vk_queue) */
    KV_QUEUE_TIMELINE_SEMAPHORE = 1u << 2  /* kv_runtime_timeline_semaphore is available */
};

/* The runtime's timeline semaphore (a VkSemaphore: a non-dispatchable handle, 64 bits
 * everywhere) and the value its last submission so far signals (0: none yet); either pointer may
 * be NULL. The semaphore is owned by the runtime and
 * lives until kv_runtime_destroy; the host only waits on it (never signals it). Thread-safe.
 * Errors: KV_ERR_INVALID_ARGUMENT (NULL runtime), KV_ERR_UNSUPPORTED (no timeline semaphores: the
 * device lacks them, or an adopted device without kv_runtime_desc.vk_timeline_semaphore). */
KV_API kv_status kv_runtime_timeline_semaphore(kv_runtime* runtime, uint64_t* vk_semaphore, uint64_t* last_value);

/* Every submission kvulkan makes after this call waits, on the GPU, until the host's timeline
 * VkSemaphore `vk_semaphore` (its handle as uint64_t; created on the same VkDevice, of
 * VK_SEMAPHORE_TYPE_TIMELINE) reaches `value`; the host must eventually signal it, or kvulkan's calls never complete. Waits stay in
 * force: a later call with a higher value raises it (a lower one changes nothing); `value` 0 forgets
 * the semaphore (kvulkan's submissions already made may still wait on it: destroy it only after
 * the value kv_runtime_timeline_semaphore then reports has been reached). Up to 16 semaphores.
 * Thread-safe. Errors: KV_ERR_INVALID_ARGUMENT (NULL runtime, VK_NULL_HANDLE semaphore, 16
 * already registered), KV_ERR_UNSUPPORTED (as kv_runtime_timeline_semaphore). */
KV_API kv_status kv_runtime_wait_semaphore(kv_runtime* runtime, uint64_t vk_semaphore, uint64_t value);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVULKAN_H */
