/*
 * kvulkan_jni.c — the JNI layer of the Java binding: one native method of dev.kvulkan.Native per
 * exported kv_* function of include/kvulkan/kvulkan.h (the only header used here), registered by
 * name in the table NATIVES at the end of this file.
 *
 * Conventions (documented for users in dev/kvulkan/Native.java):
 *  - Handles travel as jlong (0 is NULL). The library checks them; a NULL handle gives
 *    KV_ERR_INVALID_ARGUMENT, never a crash.
 *  - Out-parameters are one-element arrays (long[] for handles and sizes, int[] for tokens and
 *    counts). A capacity is the length of the Java array it describes (a NULL array: capacity 0).
 *  - Structs are Java objects whose fields have the C names in camelCase (struct_size is set
 *    here, never by Java). Desc objects are read, info/stats objects are written field by field.
 *  - Strings cross as real UTF-8 through byte[] and java.nio.charset.StandardCharsets.UTF_8 (JNI's
 *    NewStringUTF/GetStringUTFChars speak "modified UTF-8", which differs for NUL and for
 *    characters outside the BMP). A Java string holding U+0000 is refused (C would cut it there).
 *  - Misuse of this layer itself (a NULL out-array, a non-direct ByteBuffer) throws a Java
 *    exception (NullPointerException, IllegalArgumentException); library errors are statuses.
 *  - A runtime's log listener is held by a global reference from kv_runtime_create until
 *    kv_runtime_destroy has returned (the library may log until then), and is called from any
 *    thread: threads the JVM does not know are attached for the call and detached after it.
 *  - A submit's TicketCallback is held by a global reference until the library has called it
 *    (exactly once per ticket, on its worker thread, attached the same way); see "non-blocking
 *    work" below.
 *
 * Adding a kv_* function: declare it in Native.java with the C name, write j_<name> below, add
 * its line to NATIVES. The ctest bindings/java_* check both lists against the library's exports.
 */
#include <jni.h>
#include <kvulkan/kvulkan.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PKG "dev/kvulkan/"
#define TO_PTR(T, j) ((T*)(intptr_t)(j))
#define TO_J(p) ((jlong)(intptr_t)(p))

static JavaVM* g_vm;
static jclass g_native_class;   /* dev.kvulkan.Native: monitor of the log-context list */
static jclass g_string_class;
static jobject g_utf8;          /* StandardCharsets.UTF_8 */
static jmethodID g_string_from_bytes;  /* String(byte[], Charset) */
static jmethodID g_string_get_bytes;   /* String.getBytes(Charset) */
static jmethodID g_on_log;             /* LogListener.onLog(int, String) */
static jclass g_device_info_class;
static jmethodID g_device_info_init;
static jclass g_memory_heap_class;
static jmethodID g_memory_heap_init;
static jmethodID g_buffer_position;
static jmethodID g_buffer_limit;

/* ---- exceptions and strings ---------------------------------------------------------------- */

static void throw_named(JNIEnv* env, const char* cls, const char* msg) {
    if ((*env)->ExceptionCheck(env)) return;
    jclass c = (*env)->FindClass(env, cls);
    if (c) (*env)->ThrowNew(env, c, msg);
}

static int pending(JNIEnv* env) { return (*env)->ExceptionCheck(env) == JNI_TRUE; }

/* A Java String of `n` UTF-8 bytes (malformed bytes become U+FFFD). NULL with an exception. */
static jstring utf8_string(JNIEnv* env, const char* s, size_t n) {
    jbyteArray b = (*env)->NewByteArray(env, (jsize)n);
    if (!b) return NULL;
    (*env)->SetByteArrayRegion(env, b, 0, (jsize)n, (const jbyte*)s);
    jstring r = (jstring)(*env)->NewObject(env, g_string_class, g_string_from_bytes, b, g_utf8);
    (*env)->DeleteLocalRef(env, b);
    return r;
}

/* A char array field of a C struct (NUL-terminated within `cap` bytes) as a Java String. */
static jstring cstring(JNIEnv* env, const char* s, size_t cap) {
    size_t n = 0;
    while (n < cap && s[n]) n++;
    return utf8_string(env, s, n);
}

/* A malloc'd NUL-terminated UTF-8 copy of `s`; NULL for a NULL string (*ok stays 1). On failure
 * *ok = 0 with an exception pending. */
static char* utf8_dup(JNIEnv* env, jstring s, int* ok) {
    *ok = 1;
    if (!s) return NULL;
    jbyteArray b = (jbyteArray)(*env)->CallObjectMethod(env, s, g_string_get_bytes, g_utf8);
    if (!b) {
        *ok = 0;
        return NULL;
    }
    jsize n = (*env)->GetArrayLength(env, b);
    char* out = (char*)malloc((size_t)n + 1);
    if (!out) {
        (*env)->DeleteLocalRef(env, b);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: string copy");
        *ok = 0;
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, b, 0, n, (jbyte*)out);
    out[n] = 0;
    (*env)->DeleteLocalRef(env, b);
    if (memchr(out, 0, (size_t)n)) {
        free(out);
        throw_named(env, "java/lang/IllegalArgumentException",
                    "a string passed to kvulkan contains U+0000 (C would cut it there)");
        *ok = 0;
        return NULL;
    }
    return out;
}

/* ---- out-parameters and arrays --------------------------------------------------------------- */

/* 1 when `a` is a non-NULL array of at least one element, else an exception. */
static int out_ok(JNIEnv* env, jarray a, const char* what) {
    if (!a) {
        throw_named(env, "java/lang/NullPointerException", what);
        return 0;
    }
    if ((*env)->GetArrayLength(env, a) < 1) {
        throw_named(env, "java/lang/IllegalArgumentException", what);
        return 0;
    }
    return 1;
}

static void put_long(JNIEnv* env, jlongArray a, jlong v) { (*env)->SetLongArrayRegion(env, a, 0, 1, &v); }
static void put_int(JNIEnv* env, jintArray a, jint v) { (*env)->SetIntArrayRegion(env, a, 0, 1, &v); }

/* A malloc'd copy of an int[] (NULL array: NULL, *n = 0). 0 with an exception on failure. */
static int copy_ints(JNIEnv* env, jintArray a, kv_token** out, uint32_t* n) {
    *out = NULL;
    *n = 0;
    if (!a) return 1;
    jsize len = (*env)->GetArrayLength(env, a);
    if (len == 0) return 1;
    *out = (kv_token*)malloc(sizeof(kv_token) * (size_t)len);
    if (!*out) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: token copy");
        return 0;
    }
    (*env)->GetIntArrayRegion(env, a, 0, len, (jint*)*out);
    *n = (uint32_t)len;
    return 1;
}

/* ---- struct fields by name ------------------------------------------------------------------- */

static jfieldID field(JNIEnv* env, jobject o, const char* name, const char* sig) {
    if (pending(env)) return NULL;
    jclass c = (*env)->GetObjectClass(env, o);
    jfieldID f = (*env)->GetFieldID(env, c, name, sig);
    (*env)->DeleteLocalRef(env, c);
    return f;
}

static void set_i(JNIEnv* env, jobject o, const char* name, uint32_t v) {
    jfieldID f = field(env, o, name, "I");
    if (f) (*env)->SetIntField(env, o, f, (jint)v);
}
static void set_j(JNIEnv* env, jobject o, const char* name, uint64_t v) {
    jfieldID f = field(env, o, name, "J");
    if (f) (*env)->SetLongField(env, o, f, (jlong)v);
}
static void set_f(JNIEnv* env, jobject o, const char* name, float v) {
    jfieldID f = field(env, o, name, "F");
    if (f) (*env)->SetFloatField(env, o, f, v);
}
static void set_d(JNIEnv* env, jobject o, const char* name, double v) {
    jfieldID f = field(env, o, name, "D");
    if (f) (*env)->SetDoubleField(env, o, f, v);
}
static void set_z(JNIEnv* env, jobject o, const char* name, int v) {
    jfieldID f = field(env, o, name, "Z");
    if (f) (*env)->SetBooleanField(env, o, f, v ? JNI_TRUE : JNI_FALSE);
}
static void set_o(JNIEnv* env, jobject o, const char* name, const char* sig, jobject v) {
    jfieldID f = field(env, o, name, sig);
    if (f) (*env)->SetObjectField(env, o, f, v);
}
static void set_s(JNIEnv* env, jobject o, const char* name, const char* s, size_t cap) {
    if (pending(env)) return;
    jstring js = cstring(env, s, cap);
    if (js) set_o(env, o, name, "Ljava/lang/String;", js);
    (*env)->DeleteLocalRef(env, js);
}

static jint get_i(JNIEnv* env, jobject o, const char* name) {
    jfieldID f = field(env, o, name, "I");
    return f ? (*env)->GetIntField(env, o, f) : 0;
}
static jlong get_j(JNIEnv* env, jobject o, const char* name) {
    jfieldID f = field(env, o, name, "J");
    return f ? (*env)->GetLongField(env, o, f) : 0;
}
static jfloat get_f(JNIEnv* env, jobject o, const char* name) {
    jfieldID f = field(env, o, name, "F");
    return f ? (*env)->GetFloatField(env, o, f) : 0.0f;
}
static jboolean get_z(JNIEnv* env, jobject o, const char* name) {
    jfieldID f = field(env, o, name, "Z");
    return f ? (*env)->GetBooleanField(env, o, f) : JNI_FALSE;
}
static jobject get_o(JNIEnv* env, jobject o, const char* name, const char* sig) {
    jfieldID f = field(env, o, name, sig);
    return f ? (*env)->GetObjectField(env, o, f) : NULL;
}

static int null_arg(JNIEnv* env, jobject o, const char* what) {
    if (o) return 0;
    throw_named(env, "java/lang/NullPointerException", what);
    return 1;
}

/* ---- log listeners ----------------------------------------------------------------------------
 * One context per runtime (or per kv_enumerate_devices call) with a log listener. Runtime contexts
 * are kept in a list, guarded by the monitor of dev.kvulkan.Native, and freed by
 * kv_runtime_destroy after the library's destroy returned. */

typedef struct log_ctx {
    jobject listener;  /* global reference */
    kv_runtime* runtime;
    struct log_ctx* next;
} log_ctx;

static log_ctx* g_log_contexts;

static void log_thunk(void* user_data, kv_log_level level, const char* message) {
    log_ctx* ctx = (log_ctx*)user_data;
    JNIEnv* env = NULL;
    int attached = 0;
    jint r = (*g_vm)->GetEnv(g_vm, (void**)&env, JNI_VERSION_1_8);
    if (r == JNI_EDETACHED) {
        if ((*g_vm)->AttachCurrentThreadAsDaemon(g_vm, (void**)&env, NULL) != JNI_OK) return;
        attached = 1;
    } else if (r != JNI_OK) {
        return;
    }
    /* Java code may not run with an exception pending: set it aside and restore it after. */
    jthrowable saved = (*env)->ExceptionOccurred(env);
    if (saved) (*env)->ExceptionClear(env);
    if ((*env)->PushLocalFrame(env, 8) == 0) {
        jstring text = utf8_string(env, message ? message : "", message ? strlen(message) : 0);
        if (text) (*env)->CallVoidMethod(env, ctx->listener, g_on_log, (jint)level, text);
        if (pending(env)) {  /* a listener's exception never unwinds into the library */
            (*env)->ExceptionDescribe(env);
            (*env)->ExceptionClear(env);
        }
        (*env)->PopLocalFrame(env, NULL);
    } else {
        (*env)->ExceptionClear(env);
    }
    if (saved) {
        (*env)->Throw(env, saved);
        (*env)->DeleteLocalRef(env, saved);
    }
    if (attached) (*g_vm)->DetachCurrentThread(g_vm);
}

static log_ctx* log_ctx_new(JNIEnv* env, jobject listener) {
    log_ctx* ctx = (log_ctx*)calloc(1, sizeof(log_ctx));
    if (!ctx) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: log context");
        return NULL;
    }
    ctx->listener = (*env)->NewGlobalRef(env, listener);
    if (!ctx->listener) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

static void log_ctx_free(JNIEnv* env, log_ctx* ctx) {
    if (!ctx) return;
    (*env)->DeleteGlobalRef(env, ctx->listener);
    free(ctx);
}

/* ---- descs ---------------------------------------------------------------------------------- */

typedef struct runtime_desc_buf {
    kv_runtime_desc desc;
    char* device_name;
    char* pipeline_cache_path;
    log_ctx* log;
} runtime_desc_buf;

static void runtime_desc_free(JNIEnv* env, runtime_desc_buf* b) {
    free(b->device_name);
    free(b->pipeline_cache_path);
    log_ctx_free(env, b->log);
    b->device_name = NULL;
    b->pipeline_cache_path = NULL;
    b->log = NULL;
}

/* Reads a dev.kvulkan.RuntimeDesc (NULL: the defaults). 0 with an exception on failure. */
static int read_runtime_desc(JNIEnv* env, jobject jd, runtime_desc_buf* b) {
    kv_runtime_desc init = KV_RUNTIME_DESC_INIT;
    b->desc = init;
    b->device_name = NULL;
    b->pipeline_cache_path = NULL;
    b->log = NULL;
    if (!jd) return 1;
    kv_runtime_desc* d = &b->desc;
    d->flags = (uint32_t)get_i(env, jd, "flags");
    d->device_index = get_i(env, jd, "deviceIndex");
    d->vk_instance = TO_PTR(void, get_j(env, jd, "vkInstance"));
    d->vk_physical_device = TO_PTR(void, get_j(env, jd, "vkPhysicalDevice"));
    d->vk_device = TO_PTR(void, get_j(env, jd, "vkDevice"));
    d->vk_queue = TO_PTR(void, get_j(env, jd, "vkQueue"));
    d->vk_queue_family = (uint32_t)get_i(env, jd, "vkQueueFamily");
    d->vk_api_version = (uint32_t)get_i(env, jd, "vkApiVersion");
    d->memory_budget = (uint64_t)get_j(env, jd, "memoryBudget");
    d->vk_timeline_semaphore = get_z(env, jd, "vkTimelineSemaphore") ? 1u : 0u;
    d->gpu_budget_us = (uint32_t)get_i(env, jd, "gpuBudgetUs");
    d->queue_priority = get_f(env, jd, "queuePriority");
    d->global_priority = (uint32_t)get_i(env, jd, "globalPriority");
    jstring name = (jstring)get_o(env, jd, "deviceName", "Ljava/lang/String;");
    jstring cache_path = (jstring)get_o(env, jd, "pipelineCachePath", "Ljava/lang/String;");
    jobject listener = get_o(env, jd, "logListener", "L" PKG "LogListener;");
    if (pending(env)) return 0;
    int ok = 1;
    b->device_name = utf8_dup(env, name, &ok);
    if (!ok) return 0;
    d->device_name = b->device_name;
    b->pipeline_cache_path = utf8_dup(env, cache_path, &ok);
    if (!ok) {
        runtime_desc_free(env, b);
        return 0;
    }
    d->pipeline_cache_path = b->pipeline_cache_path;
    if (listener) {
        b->log = log_ctx_new(env, listener);
        if (!b->log) {
            runtime_desc_free(env, b);
            return 0;
        }
        d->log_callback = log_thunk;
        d->log_user_data = b->log;
    }
    return 1;
}

/* A kv_sampler_desc with its logit-bias and banned-token arrays (malloc'd; freed by
 * sampler_desc_free, after the call that copies them). */
typedef struct sampler_buf {
    kv_sampler_desc desc;
    kv_logit_bias* bias;
    kv_token* banned;
} sampler_buf;

static void sampler_desc_free(sampler_buf* b) {
    free(b->bias);
    free(b->banned);
    b->bias = NULL;
    b->banned = NULL;
}

/* Reads a dev.kvulkan.SamplerDesc. 0 with an exception on failure (nothing to free then). */
static int read_sampler_desc(JNIEnv* env, jobject js, sampler_buf* b) {
    kv_sampler_desc init = KV_SAMPLER_DESC_INIT;
    b->desc = init;
    b->bias = NULL;
    b->banned = NULL;
    kv_sampler_desc* s = &b->desc;
    s->temperature = get_f(env, js, "temperature");
    s->top_k = get_i(env, js, "topK");
    s->top_p = get_f(env, js, "topP");
    s->min_p = get_f(env, js, "minP");
    s->repeat_penalty = get_f(env, js, "repeatPenalty");
    s->repeat_last_n = (uint32_t)get_i(env, js, "repeatLastN");
    s->seed = (uint64_t)get_j(env, js, "seed");
    jobjectArray bias = (jobjectArray)get_o(env, js, "logitBias", "[L" PKG "LogitBias;");
    jintArray banned = (jintArray)get_o(env, js, "bannedTokens", "[I");
    if (pending(env)) return 0;
    if (!copy_ints(env, banned, &b->banned, &s->n_banned_tokens)) return 0;
    s->banned_tokens = b->banned;
    jsize nb = bias ? (*env)->GetArrayLength(env, bias) : 0;
    if (nb > 0) {
        b->bias = (kv_logit_bias*)malloc(sizeof(kv_logit_bias) * (size_t)nb);
        if (!b->bias) {
            sampler_desc_free(b);
            throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: logit bias");
            return 0;
        }
        for (jsize i = 0; i < nb; i++) {
            jobject e = (*env)->GetObjectArrayElement(env, bias, i);
            if (!e) {
                sampler_desc_free(b);
                throw_named(env, "java/lang/NullPointerException", "SamplerDesc.logitBias has a null element");
                return 0;
            }
            b->bias[i].token = get_i(env, e, "token");
            b->bias[i].bias = get_f(env, e, "bias");
            (*env)->DeleteLocalRef(env, e);
        }
        s->logit_bias = b->bias;
        s->n_logit_bias = (uint32_t)nb;
    }
    if (pending(env)) {
        sampler_desc_free(b);
        return 0;
    }
    return 1;
}

/* ---- fillers for output structs -------------------------------------------------------------- */

static void fill_device_info(JNIEnv* env, jobject o, const kv_device_info* c) {
    set_i(env, o, "index", c->index);
    set_s(env, o, "deviceName", c->device_name, sizeof c->device_name);
    set_s(env, o, "driverName", c->driver_name, sizeof c->driver_name);
    set_s(env, o, "driverInfo", c->driver_info, sizeof c->driver_info);
    set_i(env, o, "deviceType", (uint32_t)c->device_type);
    set_i(env, o, "vendorId", c->vendor_id);
    set_i(env, o, "deviceId", c->device_id);
    set_i(env, o, "apiVersion", c->api_version);
    set_i(env, o, "driverVersion", c->driver_version);
    set_i(env, o, "features", c->features);
    set_i(env, o, "subgroupSize", c->subgroup_size);
    set_i(env, o, "subgroupSizeMin", c->subgroup_size_min);
    set_i(env, o, "subgroupSizeMax", c->subgroup_size_max);
    set_i(env, o, "subgroupOps", c->subgroup_ops);
    set_j(env, o, "maxStorageBufferRange", c->max_storage_buffer_range);
    set_j(env, o, "maxAllocationSize", c->max_allocation_size);
    set_i(env, o, "maxSharedMemory", c->max_shared_memory);
    set_i(env, o, "maxWorkgroupInvocations", c->max_workgroup_invocations);
    set_i(env, o, "maxWorkgroupCountX", c->max_workgroup_count_x);
    set_f(env, o, "timestampPeriodNs", c->timestamp_period_ns);
    set_i(env, o, "queueFamily", c->queue_family);
    set_i(env, o, "queueFlags", c->queue_flags);
    set_f(env, o, "queuePriority", c->queue_priority);
    set_i(env, o, "globalPriority", c->global_priority);
    set_i(env, o, "gpuBudgetUs", c->gpu_budget_us);
    if (pending(env)) return;
    uint32_t n = c->memory_heap_count < KV_MAX_MEMORY_HEAPS ? c->memory_heap_count : KV_MAX_MEMORY_HEAPS;
    jobjectArray heaps = (*env)->NewObjectArray(env, (jsize)n, g_memory_heap_class, NULL);
    if (!heaps) return;
    for (uint32_t i = 0; i < n && !pending(env); i++) {
        const kv_memory_heap_info* h = &c->memory_heaps[i];
        jobject jh = (*env)->NewObject(env, g_memory_heap_class, g_memory_heap_init, (jlong)h->size,
                                       (jlong)h->budget, (jlong)h->usage,
                                       h->device_local ? JNI_TRUE : JNI_FALSE);
        if (!jh) break;
        (*env)->SetObjectArrayElement(env, heaps, (jsize)i, jh);
        (*env)->DeleteLocalRef(env, jh);
    }
    set_o(env, o, "memoryHeaps", "[L" PKG "DeviceInfo$MemoryHeap;", heaps);
    (*env)->DeleteLocalRef(env, heaps);
}

/* ---- versions and statuses ------------------------------------------------------------------- */

static jint JNICALL j_kv_version(JNIEnv* env, jclass cls) {
    (void)env;
    (void)cls;
    return (jint)kv_version();
}

static jstring JNICALL j_kv_version_string(JNIEnv* env, jclass cls) {
    (void)cls;
    const char* s = kv_version_string();
    return utf8_string(env, s, strlen(s));
}

static jstring JNICALL j_kv_status_string(JNIEnv* env, jclass cls, jint status) {
    (void)cls;
    const char* s = kv_status_string((kv_status)status);
    return utf8_string(env, s, strlen(s));
}

static jstring JNICALL j_kv_last_error_message(JNIEnv* env, jclass cls) {
    (void)cls;
    const char* s = kv_last_error_message();
    return utf8_string(env, s, strlen(s));
}

/* ---- devices and runtime --------------------------------------------------------------------- */

static jint JNICALL j_kv_enumerate_devices(JNIEnv* env, jclass cls, jobject jdesc, jobjectArray infos,
                                           jintArray count) {
    (void)cls;
    if (!out_ok(env, count, "kv_enumerate_devices: count must be an int[1]")) return 0;
    runtime_desc_buf b;
    if (!read_runtime_desc(env, jdesc, &b)) return 0;
    jint st;
    if (!infos) {
        uint32_t n = 0;
        st = kv_enumerate_devices(&b.desc, NULL, &n);
        put_int(env, count, (jint)n);
    } else {
        uint32_t cap = (uint32_t)(*env)->GetArrayLength(env, infos);
        kv_device_info* c = (kv_device_info*)calloc(cap ? cap : 1, sizeof(kv_device_info));
        if (!c) {
            runtime_desc_free(env, &b);
            throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: device infos");
            return 0;
        }
        for (uint32_t i = 0; i < cap; i++) c[i].struct_size = (uint32_t)sizeof(kv_device_info);
        uint32_t n = cap;
        st = kv_enumerate_devices(&b.desc, cap ? c : NULL, &n);
        if (st >= 0 && cap) {
            for (uint32_t i = 0; i < n && i < cap && !pending(env); i++) {
                jobject o = (*env)->GetObjectArrayElement(env, infos, (jsize)i);
                if (!o && !pending(env)) {
                    o = (*env)->NewObject(env, g_device_info_class, g_device_info_init);
                    if (o) (*env)->SetObjectArrayElement(env, infos, (jsize)i, o);
                }
                if (o) fill_device_info(env, o, &c[i]);
                (*env)->DeleteLocalRef(env, o);
            }
        }
        if (!pending(env)) put_int(env, count, (jint)n);
        free(c);
    }
    runtime_desc_free(env, &b);
    return st;
}

static jint JNICALL j_kv_runtime_create(JNIEnv* env, jclass cls, jobject jdesc, jlongArray out) {
    if (!out_ok(env, out, "kv_runtime_create: out must be a long[1]")) return 0;
    runtime_desc_buf b;
    if (!read_runtime_desc(env, jdesc, &b)) return 0;
    kv_runtime* rt = NULL;
    kv_status st = kv_runtime_create(&b.desc, &rt);
    free(b.device_name);
    if (st < 0 || !rt) {
        log_ctx_free(env, b.log);
        return st;
    }
    if (b.log) {
        b.log->runtime = rt;
        (*env)->MonitorEnter(env, cls);
        b.log->next = g_log_contexts;
        g_log_contexts = b.log;
        (*env)->MonitorExit(env, cls);
    }
    put_long(env, out, TO_J(rt));
    return st;
}

static void JNICALL j_kv_runtime_destroy(JNIEnv* env, jclass cls, jlong runtime) {
    kv_runtime* rt = TO_PTR(kv_runtime, runtime);
    kv_runtime_destroy(rt);  /* may still log: the context is freed after */
    if (!rt) return;
    log_ctx* found = NULL;
    (*env)->MonitorEnter(env, cls);
    for (log_ctx** p = &g_log_contexts; *p; p = &(*p)->next) {
        if ((*p)->runtime == rt) {
            found = *p;
            *p = found->next;
            break;
        }
    }
    (*env)->MonitorExit(env, cls);
    log_ctx_free(env, found);
}

static jint JNICALL j_kv_runtime_get_info(JNIEnv* env, jclass cls, jlong runtime, jobject info) {
    (void)cls;
    if (null_arg(env, info, "kv_runtime_get_info: info")) return 0;
    kv_device_info c;
    memset(&c, 0, sizeof c);
    c.struct_size = (uint32_t)sizeof c;
    kv_status st = kv_runtime_get_info(TO_PTR(const kv_runtime, runtime), &c);
    if (st >= 0) fill_device_info(env, info, &c);
    return st;
}

static jlong JNICALL j_kv_runtime_validation_message_count(JNIEnv* env, jclass cls, jlong runtime) {
    (void)env;
    (void)cls;
    return (jlong)kv_runtime_validation_message_count(TO_PTR(const kv_runtime, runtime));
}

static jint JNICALL j_kv_runtime_measure_bandwidth(JNIEnv* env, jclass cls, jlong runtime, jlong bytes,
                                                   jint iterations, jobject result) {
    (void)cls;
    if (null_arg(env, result, "kv_runtime_measure_bandwidth: result")) return 0;
    kv_bandwidth_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = (uint32_t)sizeof r;
    kv_status st = kv_runtime_measure_bandwidth(TO_PTR(kv_runtime, runtime), (uint64_t)bytes,
                                                (uint32_t)iterations, &r);
    if (st >= 0) {
        set_j(env, result, "bytes", r.bytes);
        set_d(env, result, "readGbps", r.read_gbps);
        set_d(env, result, "copyGbps", r.copy_gbps);
        set_d(env, result, "writeGbps", r.write_gbps);
    }
    return st;
}

/* ---- models ----------------------------------------------------------------------------------- */

static jint JNICALL j_kv_model_load(JNIEnv* env, jclass cls, jlong runtime, jobject jdesc, jlongArray out) {
    (void)cls;
    if (!out_ok(env, out, "kv_model_load: out must be a long[1]")) return 0;
    kv_model_desc d = KV_MODEL_DESC_INIT;
    char* path = NULL;
    if (jdesc) {
        d.flags = (uint32_t)get_i(env, jdesc, "flags");
        d.copy_data = get_z(env, jdesc, "copyData") ? 1u : 0u;
        d.kv_page_size = (uint32_t)get_i(env, jdesc, "kvPageSize");
        d.kv_pool_tokens = (uint32_t)get_i(env, jdesc, "kvPoolTokens");
        d.host_offload_bytes = (uint64_t)get_j(env, jdesc, "hostOffloadBytes");
        jstring jpath = (jstring)get_o(env, jdesc, "path", "Ljava/lang/String;");
        jobject data = get_o(env, jdesc, "data", "Ljava/nio/ByteBuffer;");
        if (pending(env)) return 0;
        if (data) {
            char* base = (char*)(*env)->GetDirectBufferAddress(env, data);
            if (!base) {
                throw_named(env, "java/lang/IllegalArgumentException",
                            "kv_model_load: ModelDesc.data must be a direct ByteBuffer");
                return 0;
            }
            jint pos = (*env)->CallIntMethod(env, data, g_buffer_position);
            jint lim = (*env)->CallIntMethod(env, data, g_buffer_limit);
            if (pending(env)) return 0;
            d.data = base + pos;
            d.size = (uint64_t)(lim - pos);
        }
        int ok = 1;
        path = utf8_dup(env, jpath, &ok);
        if (!ok) return 0;
        d.path = path;
    }
    kv_model* m = NULL;
    kv_status st = kv_model_load(TO_PTR(kv_runtime, runtime), &d, &m);
    free(path);
    if (st >= 0) put_long(env, out, TO_J(m));
    return st;
}

static void JNICALL j_kv_model_destroy(JNIEnv* env, jclass cls, jlong model) {
    (void)env;
    (void)cls;
    kv_model_destroy(TO_PTR(kv_model, model));
}

static jint JNICALL j_kv_model_get_info(JNIEnv* env, jclass cls, jlong model, jobject o) {
    (void)cls;
    if (null_arg(env, o, "kv_model_get_info: info")) return 0;
    kv_model_info c;
    memset(&c, 0, sizeof c);
    c.struct_size = (uint32_t)sizeof c;
    kv_status st = kv_model_get_info(TO_PTR(const kv_model, model), &c);
    if (st < 0) return st;
    set_i(env, o, "onDevice", c.on_device);
    set_s(env, o, "architecture", c.architecture, sizeof c.architecture);
    set_s(env, o, "name", c.name, sizeof c.name);
    set_s(env, o, "weightTypes", c.weight_types, sizeof c.weight_types);
    set_j(env, o, "nParams", c.n_params);
    set_j(env, o, "weightBytes", c.weight_bytes);
    set_j(env, o, "fileSize", c.file_size);
    set_j(env, o, "deviceBytes", c.device_bytes);
    set_i(env, o, "nVocab", c.n_vocab);
    set_i(env, o, "nEmbd", c.n_embd);
    set_i(env, o, "nLayer", c.n_layer);
    set_i(env, o, "nHead", c.n_head);
    set_i(env, o, "nHeadKv", c.n_head_kv);
    set_i(env, o, "headDim", c.head_dim);
    set_i(env, o, "nFf", c.n_ff);
    set_i(env, o, "nCtxTrain", c.n_ctx_train);
    set_i(env, o, "ropeNeox", c.rope_neox);
    set_f(env, o, "ropeFreqBase", c.rope_freq_base);
    set_i(env, o, "tiedOutput", c.tied_output);
    return st;
}

static jint JNICALL j_kv_model_token_bos(JNIEnv* env, jclass cls, jlong model) {
    (void)env;
    (void)cls;
    return kv_model_token_bos(TO_PTR(const kv_model, model));
}

static jint JNICALL j_kv_model_token_eos(JNIEnv* env, jclass cls, jlong model) {
    (void)env;
    (void)cls;
    return kv_model_token_eos(TO_PTR(const kv_model, model));
}

static jint JNICALL j_kv_token_is_eog(JNIEnv* env, jclass cls, jlong model, jint token) {
    (void)env;
    (void)cls;
    return kv_token_is_eog(TO_PTR(const kv_model, model), (kv_token)token);
}

static jint JNICALL j_kv_tokenize(JNIEnv* env, jclass cls, jlong model, jbyteArray text, jint flags,
                                  jintArray tokens, jintArray n_tokens) {
    (void)cls;
    if (null_arg(env, text, "kv_tokenize: text")) return 0;
    if (!out_ok(env, n_tokens, "kv_tokenize: nTokens must be an int[1]")) return 0;
    jsize len = (*env)->GetArrayLength(env, text);
    char* t = (char*)malloc((size_t)len + 1);
    uint32_t cap = tokens ? (uint32_t)(*env)->GetArrayLength(env, tokens) : 0;
    kv_token* out = (kv_token*)malloc(sizeof(kv_token) * (cap ? cap : 1));
    if (!t || !out) {
        free(t);
        free(out);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: tokenize");
        return 0;
    }
    (*env)->GetByteArrayRegion(env, text, 0, len, (jbyte*)t);
    uint32_t n = cap;
    kv_status st = kv_tokenize(TO_PTR(const kv_model, model), t, (size_t)len, (uint32_t)flags,
                               cap ? out : NULL, &n);
    if (st == KV_OK && cap) (*env)->SetIntArrayRegion(env, tokens, 0, (jsize)n, (const jint*)out);
    if (st >= 0) put_int(env, n_tokens, (jint)n);
    free(t);
    free(out);
    return st;
}

/* The byte-buffer protocol of kv_detokenize and kv_token_to_piece: capacity = text.length. */
static jint bytes_out(JNIEnv* env, kv_status st, const char* buf, size_t n, jbyteArray text, jlongArray len) {
    if (st == KV_OK && text) (*env)->SetByteArrayRegion(env, text, 0, (jsize)n, (const jbyte*)buf);
    if (st >= 0) put_long(env, len, (jlong)n);
    return st;
}

static jint JNICALL j_kv_detokenize(JNIEnv* env, jclass cls, jlong model, jintArray tokens, jbyteArray text,
                                    jlongArray len) {
    (void)cls;
    if (!out_ok(env, len, "kv_detokenize: len must be a long[1]")) return 0;
    kv_token* toks;
    uint32_t n_tok;
    if (!copy_ints(env, tokens, &toks, &n_tok)) return 0;
    size_t cap = text ? (size_t)(*env)->GetArrayLength(env, text) : 0;
    char* buf = (char*)malloc(cap ? cap : 1);
    if (!buf) {
        free(toks);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: detokenize");
        return 0;
    }
    size_t n = cap;
    kv_status st = kv_detokenize(TO_PTR(const kv_model, model), toks, n_tok, cap ? buf : NULL, &n);
    jint r = bytes_out(env, st, buf, n, text, len);
    free(buf);
    free(toks);
    return r;
}

static jint JNICALL j_kv_token_to_piece(JNIEnv* env, jclass cls, jlong model, jint token, jbyteArray text,
                                        jlongArray len) {
    (void)cls;
    if (!out_ok(env, len, "kv_token_to_piece: len must be a long[1]")) return 0;
    char small[256];
    size_t cap = text ? (size_t)(*env)->GetArrayLength(env, text) : 0;
    char* buf = cap <= sizeof small ? small : (char*)malloc(cap);
    if (!buf) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: token_to_piece");
        return 0;
    }
    size_t n = cap;
    kv_status st = kv_token_to_piece(TO_PTR(const kv_model, model), (kv_token)token, cap ? buf : NULL, &n);
    jint r = bytes_out(env, st, buf, n, text, len);
    if (buf != small) free(buf);
    return r;
}

static jint JNICALL j_kv_model_get_cache_stats(JNIEnv* env, jclass cls, jlong model, jint type, jobject o) {
    (void)cls;
    if (null_arg(env, o, "kv_model_get_cache_stats: stats")) return 0;
    kv_cache_stats c;
    memset(&c, 0, sizeof c);
    c.struct_size = (uint32_t)sizeof c;
    kv_status st = kv_model_get_cache_stats(TO_PTR(kv_model, model), (kv_cache_type)type, &c);
    if (st < 0) return st;
    set_i(env, o, "pageSize", c.page_size);
    set_i(env, o, "pagesTotal", c.pages_total);
    set_i(env, o, "pagesInUse", c.pages_in_use);
    set_i(env, o, "pagesCached", c.pages_cached);
    set_i(env, o, "pagesFree", c.pages_free);
    set_j(env, o, "pageBytes", c.page_bytes);
    set_j(env, o, "deviceBytes", c.device_bytes);
    set_j(env, o, "prefixLookups", c.prefix_lookups);
    set_j(env, o, "prefixHits", c.prefix_hits);
    set_j(env, o, "evictions", c.evictions);
    set_j(env, o, "pagesOffloaded", c.pages_offloaded);
    set_j(env, o, "pagesRestored", c.pages_restored);
    set_j(env, o, "offloadedBytes", c.offloaded_bytes);
    return st;
}

/* ---- sessions --------------------------------------------------------------------------------- */

static jint JNICALL j_kv_session_create(JNIEnv* env, jclass cls, jlong model, jobject jdesc, jlongArray out) {
    (void)cls;
    if (!out_ok(env, out, "kv_session_create: out must be a long[1]")) return 0;
    kv_session_desc d = KV_SESSION_DESC_INIT;
    sampler_buf sampler = {0};
    if (jdesc) {
        d.flags = (uint32_t)get_i(env, jdesc, "flags");
        d.n_ctx = (uint32_t)get_i(env, jdesc, "nCtx");
        d.cache_type = (kv_cache_type)get_i(env, jdesc, "cacheType");
        d.n_batch = (uint32_t)get_i(env, jdesc, "nBatch");
        d.window = (uint32_t)get_i(env, jdesc, "window");
        d.sinks = (uint32_t)get_i(env, jdesc, "sinks");
        jobject js = get_o(env, jdesc, "sampler", "L" PKG "SamplerDesc;");
        if (pending(env)) return 0;
        if (js) {
            if (!read_sampler_desc(env, js, &sampler)) return 0;
            d.sampler = &sampler.desc;
        }
    }
    kv_session* s = NULL;
    kv_status st = kv_session_create(TO_PTR(kv_model, model), &d, &s);
    sampler_desc_free(&sampler);
    if (st >= 0) put_long(env, out, TO_J(s));
    return st;
}

static void JNICALL j_kv_session_destroy(JNIEnv* env, jclass cls, jlong session) {
    (void)env;
    (void)cls;
    kv_session_destroy(TO_PTR(kv_session, session));
}

static jint JNICALL j_kv_prefill(JNIEnv* env, jclass cls, jlong session, jintArray tokens) {
    (void)cls;
    kv_token* toks;
    uint32_t n;
    if (!copy_ints(env, tokens, &toks, &n)) return 0;
    kv_status st = kv_prefill(TO_PTR(kv_session, session), toks, n);
    free(toks);
    return st;
}

static jint JNICALL j_kv_decode_step(JNIEnv* env, jclass cls, jlong session, jintArray out_token) {
    (void)cls;
    if (!out_ok(env, out_token, "kv_decode_step: outToken must be an int[1]")) return 0;
    kv_token t = -1;
    kv_status st = kv_decode_step(TO_PTR(kv_session, session), &t);
    if (st >= 0) put_int(env, out_token, t);
    return st;
}

static jint JNICALL j_kv_session_reset(JNIEnv* env, jclass cls, jlong session) {
    (void)env;
    (void)cls;
    return kv_session_reset(TO_PTR(kv_session, session));
}

static jint JNICALL j_kv_session_logits(JNIEnv* env, jclass cls, jlong session, jfloatArray logits) {
    (void)cls;
    if (null_arg(env, logits, "kv_session_logits: logits")) return 0;
    jsize cap = (*env)->GetArrayLength(env, logits);
    float* buf = (float*)malloc(sizeof(float) * (size_t)(cap ? cap : 1));
    if (!buf) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: logits");
        return 0;
    }
    kv_status st = kv_session_logits(TO_PTR(kv_session, session), buf, (uint32_t)cap);
    if (st >= 0) (*env)->SetFloatArrayRegion(env, logits, 0, cap, buf);
    free(buf);
    return st;
}

static jint JNICALL j_kv_session_eval(JNIEnv* env, jclass cls, jlong session, jintArray tokens,
                                      jfloatArray logits) {
    (void)cls;
    kv_token* toks;
    uint32_t n;
    if (!copy_ints(env, tokens, &toks, &n)) return 0;
    jsize cap = logits ? (*env)->GetArrayLength(env, logits) : 0;
    float* buf = NULL;
    if (logits) {
        buf = (float*)malloc(sizeof(float) * (size_t)(cap ? cap : 1));
        if (!buf) {
            free(toks);
            throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: eval logits");
            return 0;
        }
    }
    kv_status st = kv_session_eval(TO_PTR(kv_session, session), toks, n, buf, (uint64_t)cap);
    if (st >= 0 && logits) (*env)->SetFloatArrayRegion(env, logits, 0, cap, buf);
    free(buf);
    free(toks);
    return st;
}

static jint JNICALL j_kv_session_set_sampler(JNIEnv* env, jclass cls, jlong session, jobject js) {
    (void)cls;
    sampler_buf s = {0};
    if (js && !read_sampler_desc(env, js, &s)) return 0;
    kv_status st = kv_session_set_sampler(TO_PTR(kv_session, session), js ? &s.desc : NULL);
    sampler_desc_free(&s);
    return st;
}

static jint JNICALL j_kv_session_get_stats(JNIEnv* env, jclass cls, jlong session, jobject o) {
    (void)cls;
    if (null_arg(env, o, "kv_session_get_stats: stats")) return 0;
    kv_session_stats c;
    memset(&c, 0, sizeof c);
    c.struct_size = (uint32_t)sizeof c;
    kv_status st = kv_session_get_stats(TO_PTR(const kv_session, session), &c);
    if (st < 0) return st;
    set_i(env, o, "nTokens", c.n_tokens);
    set_i(env, o, "nCtx", c.n_ctx);
    set_i(env, o, "pageSize", c.page_size);
    set_j(env, o, "kvBytes", c.kv_bytes);
    set_j(env, o, "kvBytesPerToken", c.kv_bytes_per_token);
    set_j(env, o, "tokensPrefilled", c.tokens_prefilled);
    set_j(env, o, "tokensDecoded", c.tokens_decoded);
    set_d(env, o, "lastPrefillMs", c.last_prefill_ms);
    set_i(env, o, "lastPrefillTokens", c.last_prefill_tokens);
    set_d(env, o, "lastDecodeMs", c.last_decode_ms);
    set_d(env, o, "totalPrefillMs", c.total_prefill_ms);
    set_d(env, o, "totalDecodeMs", c.total_decode_ms);
    set_j(env, o, "scratchBytes", c.scratch_bytes);
    set_i(env, o, "pages", c.pages);
    set_i(env, o, "sharedPages", c.shared_pages);
    set_j(env, o, "prefixHitTokens", c.prefix_hit_tokens);
    set_j(env, o, "forwardPasses", c.forward_passes);
    set_j(env, o, "pagesOffloaded", c.pages_offloaded);
    set_j(env, o, "pagesRestored", c.pages_restored);
    set_z(env, o, "offloaded", (int)c.offloaded);
    set_j(env, o, "submissions", c.submissions);
    set_i(env, o, "lastPassSubmissions", c.last_pass_submissions);
    set_i(env, o, "windowLayerPages", c.window_layer_pages);
    set_i(env, o, "windowLayers", c.window_layers);
    set_j(env, o, "windowLayerPagesReleased", c.window_layer_pages_released);
    set_j(env, o, "pagesReleased", c.pages_released);
    return st;
}

static jint JNICALL j_kv_session_fork(JNIEnv* env, jclass cls, jlong session, jlongArray out) {
    (void)cls;
    if (!out_ok(env, out, "kv_session_fork: out must be a long[1]")) return 0;
    kv_session* child = NULL;
    kv_status st = kv_session_fork(TO_PTR(kv_session, session), &child);
    if (st >= 0) put_long(env, out, TO_J(child));
    return st;
}

static jint JNICALL j_kv_session_truncate(JNIEnv* env, jclass cls, jlong session, jint n_tokens) {
    (void)env;
    (void)cls;
    return kv_session_truncate(TO_PTR(kv_session, session), (uint32_t)n_tokens);
}

static jint JNICALL j_kv_session_save(JNIEnv* env, jclass cls, jlong session, jbyteArray buffer,
                                      jlongArray size) {
    (void)cls;
    if (!out_ok(env, size, "kv_session_save: size must be a long[1]")) return 0;
    size_t cap = buffer ? (size_t)(*env)->GetArrayLength(env, buffer) : 0;
    void* buf = NULL;
    if (cap) {
        buf = malloc(cap);
        if (!buf) {
            throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: session image");
            return 0;
        }
    }
    size_t n = cap;
    kv_status st = kv_session_save(TO_PTR(kv_session, session), buf, &n);
    if (st == KV_OK && cap) (*env)->SetByteArrayRegion(env, buffer, 0, (jsize)n, (const jbyte*)buf);
    if (st >= 0) put_long(env, size, (jlong)n);
    free(buf);
    return st;
}

static jint JNICALL j_kv_session_save_file(JNIEnv* env, jclass cls, jlong session, jstring jpath) {
    (void)cls;
    int ok = 1;
    char* path = utf8_dup(env, jpath, &ok);
    if (!ok) return 0;
    kv_status st = kv_session_save_file(TO_PTR(kv_session, session), path);
    free(path);
    return st;
}

static jint JNICALL j_kv_session_load(JNIEnv* env, jclass cls, jlong model, jbyteArray data, jlongArray out) {
    (void)cls;
    if (!out_ok(env, out, "kv_session_load: out must be a long[1]")) return 0;
    jsize n = data ? (*env)->GetArrayLength(env, data) : 0;
    jbyte* bytes = data ? (*env)->GetByteArrayElements(env, data, NULL) : NULL;
    if (data && !bytes) return 0;
    kv_session* s = NULL;
    kv_status st = kv_session_load(TO_PTR(kv_model, model), bytes, (size_t)n, &s);
    if (bytes) (*env)->ReleaseByteArrayElements(env, data, bytes, JNI_ABORT);
    if (st >= 0) put_long(env, out, TO_J(s));
    return st;
}

static jint JNICALL j_kv_session_load_file(JNIEnv* env, jclass cls, jlong model, jstring jpath,
                                           jlongArray out) {
    (void)cls;
    if (!out_ok(env, out, "kv_session_load_file: out must be a long[1]")) return 0;
    int ok = 1;
    char* path = utf8_dup(env, jpath, &ok);
    if (!ok) return 0;
    kv_session* s = NULL;
    kv_status st = kv_session_load_file(TO_PTR(kv_model, model), path, &s);
    free(path);
    if (st >= 0) put_long(env, out, TO_J(s));
    return st;
}

/* ---- many sessions in one pass ------------------------------------------------------------- */

static jint JNICALL j_kv_decode_batch(JNIEnv* env, jclass cls, jlongArray sessions, jintArray out_tokens,
                                      jintArray out_status) {
    (void)cls;
    if (null_arg(env, sessions, "kv_decode_batch: sessions")) return 0;
    jsize n = (*env)->GetArrayLength(env, sessions);
    if (!out_tokens || !out_status || (*env)->GetArrayLength(env, out_tokens) < n ||
        (*env)->GetArrayLength(env, out_status) < n) {
        throw_named(env, "java/lang/IllegalArgumentException",
                    "kv_decode_batch: outTokens and outStatus need sessions.length elements");
        return 0;
    }
    size_t k = (size_t)(n ? n : 1);
    jlong* handles = (jlong*)malloc(sizeof(jlong) * k);
    kv_session** ss = (kv_session**)malloc(sizeof(kv_session*) * k);
    kv_token* toks = (kv_token*)malloc(sizeof(kv_token) * k);
    kv_status* sts = (kv_status*)malloc(sizeof(kv_status) * k);
    jint r = 0;
    if (!handles || !ss || !toks || !sts) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: decode_batch");
    } else {
        (*env)->GetLongArrayRegion(env, sessions, 0, n, handles);
        for (jsize i = 0; i < n; i++) ss[i] = TO_PTR(kv_session, handles[i]);
        r = kv_decode_batch(ss, (uint32_t)n, toks, sts);
        (*env)->SetIntArrayRegion(env, out_tokens, 0, n, (const jint*)toks);
        (*env)->SetIntArrayRegion(env, out_status, 0, n, (const jint*)sts);
    }
    free(handles);
    free(ss);
    free(toks);
    free(sts);
    return r;
}

static const kv_token k_no_tokens = 0;

static jint JNICALL j_kv_batch_eval(JNIEnv* env, jclass cls, jobjectArray items) {
    (void)cls;
    if (null_arg(env, items, "kv_batch_eval: items")) return 0;
    jsize n = (*env)->GetArrayLength(env, items);
    kv_batch_item* c = (kv_batch_item*)calloc((size_t)(n ? n : 1), sizeof(kv_batch_item));
    if (!c) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: batch items");
        return 0;
    }
    const kv_batch_item init = KV_BATCH_ITEM_INIT;
    jint r = 0;
    jsize ready = 0;
    for (; ready < n; ready++) {
        jobject o = (*env)->GetObjectArrayElement(env, items, ready);
        if (null_arg(env, o, "kv_batch_eval: an item is null")) break;
        kv_batch_item* it = &c[ready];
        *it = init;
        it->session = TO_PTR(kv_session, get_j(env, o, "session"));
        jintArray toks = (jintArray)get_o(env, o, "tokens", "[I");
        jfloatArray logits = (jfloatArray)get_o(env, o, "logits", "[F");
        if (pending(env)) break;
        kv_token* t = NULL;
        if (toks && !copy_ints(env, toks, &t, &it->n_tokens)) break;
        it->tokens = toks ? (t ? t : &k_no_tokens) : NULL;  /* an empty array stays non-NULL */
        if (logits) {
            jsize cap = (*env)->GetArrayLength(env, logits);
            it->logits = (float*)malloc(sizeof(float) * (size_t)(cap ? cap : 1));
            it->logits_capacity = (uint64_t)cap;
            if (!it->logits) {
                throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: batch logits");
                ready++;
                break;
            }
        }
        (*env)->DeleteLocalRef(env, toks);
        (*env)->DeleteLocalRef(env, logits);
        (*env)->DeleteLocalRef(env, o);
    }
    if (ready == n && !pending(env)) {
        r = kv_batch_eval(c, (uint32_t)n);
        for (jsize i = 0; i < n && !pending(env); i++) {
            jobject o = (*env)->GetObjectArrayElement(env, items, i);
            set_i(env, o, "token", (uint32_t)c[i].token);
            set_i(env, o, "nDone", c[i].n_done);
            set_i(env, o, "status", (uint32_t)c[i].status);
            if (c[i].logits && c[i].status == KV_OK) {
                jfloatArray logits = (jfloatArray)get_o(env, o, "logits", "[F");
                if (logits)
                    (*env)->SetFloatArrayRegion(env, logits, 0, (jsize)c[i].logits_capacity, c[i].logits);
                (*env)->DeleteLocalRef(env, logits);
            }
            (*env)->DeleteLocalRef(env, o);
        }
    }
    for (jsize i = 0; i < ready && i < n; i++) {
        if (c[i].tokens != &k_no_tokens) free((void*)c[i].tokens);
        free(c[i].logits);
    }
    free(c);
    return r;
}

static jint JNICALL j_kv_decode_speculative(JNIEnv* env, jclass cls, jlong session, jlong draft, jint draft_n,
                                            jintArray out_tokens, jintArray n_out, jintArray n_drafted) {
    (void)cls;
    if (null_arg(env, out_tokens, "kv_decode_speculative: outTokens")) return 0;
    if (!out_ok(env, n_out, "kv_decode_speculative: nOut must be an int[1]")) return 0;
    jsize cap = (*env)->GetArrayLength(env, out_tokens);
    kv_token* toks = (kv_token*)malloc(sizeof(kv_token) * (size_t)(cap ? cap : 1));
    if (!toks) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: speculative tokens");
        return 0;
    }
    uint32_t out_n = 0, drafted = 0;
    kv_status st = kv_decode_speculative(TO_PTR(kv_session, session), TO_PTR(kv_session, draft),
                                         (uint32_t)draft_n, toks, (uint32_t)cap, &out_n, &drafted);
    if (st >= 0) {
        (*env)->SetIntArrayRegion(env, out_tokens, 0, (jsize)out_n, (const jint*)toks);
        put_int(env, n_out, (jint)out_n);
        if (n_drafted && (*env)->GetArrayLength(env, n_drafted) > 0) put_int(env, n_drafted, (jint)drafted);
    }
    free(toks);
    return st;
}

/* ---- non-blocking work (kv_submit_*, tickets) and cancellation ------------------------------
 * A submit's optional dev.kvulkan.Native.TicketCallback is held by a global reference in a
 * ticket_ctx given to the library as `user`. The library calls ticket_thunk exactly once per
 * ticket, on its worker thread (attached to the JVM for the call, detached after), and the thunk
 * frees the context after the callback returned; a failed submit (no ticket, no call) frees it at
 * once. kv_ticket_destroy waits for the callback, so nothing here outlives a destroyed ticket. */

typedef struct ticket_ctx {
    jobject callback; /* global reference */
} ticket_ctx;

static jmethodID g_on_ticket; /* Native.TicketCallback.onComplete(long, int) */

static void ticket_thunk(kv_ticket* ticket, kv_status status, void* user) {
    ticket_ctx* ctx = (ticket_ctx*)user;
    JNIEnv* env = NULL;
    int attached = 0;
    jint r = (*g_vm)->GetEnv(g_vm, (void**)&env, JNI_VERSION_1_8);
    if (r == JNI_EDETACHED) {
        if ((*g_vm)->AttachCurrentThreadAsDaemon(g_vm, (void**)&env, NULL) != JNI_OK) return; /* ctx leaks */
        attached = 1;
    } else if (r != JNI_OK) {
        return;
    }
    jthrowable saved = (*env)->ExceptionOccurred(env);
    if (saved) (*env)->ExceptionClear(env);
    (*env)->CallVoidMethod(env, ctx->callback, g_on_ticket, TO_J(ticket), (jint)status);
    if (pending(env)) { /* a callback's exception never unwinds into the library */
        (*env)->ExceptionDescribe(env);
        (*env)->ExceptionClear(env);
    }
    (*env)->DeleteGlobalRef(env, ctx->callback);
    free(ctx);
    if (saved) {
        (*env)->Throw(env, saved);
        (*env)->DeleteLocalRef(env, saved);
    }
    if (attached) (*g_vm)->DetachCurrentThread(g_vm);
}

/* A context for `callback` (NULL: none, *ok stays 1). On failure *ok = 0 with an exception. */
static ticket_ctx* ticket_ctx_new(JNIEnv* env, jobject callback, int* ok) {
    *ok = 1;
    if (!callback) return NULL;
    ticket_ctx* ctx = (ticket_ctx*)calloc(1, sizeof(ticket_ctx));
    if (!ctx) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: ticket context");
        *ok = 0;
        return NULL;
    }
    ctx->callback = (*env)->NewGlobalRef(env, callback);
    if (!ctx->callback) {
        free(ctx);
        *ok = 0;
        return NULL;
    }
    return ctx;
}

/* After a submit: on failure the library will never call back, so the context goes now. */
static jint ticket_submitted(JNIEnv* env, kv_status st, ticket_ctx* ctx, kv_ticket* t, jlongArray out_ticket) {
    if (st < 0) {
        if (ctx) {
            (*env)->DeleteGlobalRef(env, ctx->callback);
            free(ctx);
        }
        return st;
    }
    put_long(env, out_ticket, TO_J(t));
    return st;
}

static jint JNICALL j_kv_submit_prefill(JNIEnv* env, jclass cls, jlong session, jintArray tokens, jobject callback,
                                        jlongArray out_ticket) {
    (void)cls;
    if (!out_ok(env, out_ticket, "kv_submit_prefill: outTicket must be a long[1]")) return 0;
    kv_token* toks;
    uint32_t n;
    if (!copy_ints(env, tokens, &toks, &n)) return 0;
    int ok;
    ticket_ctx* ctx = ticket_ctx_new(env, callback, &ok);
    if (!ok) {
        free(toks);
        return 0;
    }
    static const kv_token k_none = 0;
    kv_ticket* t = NULL;
    /* A NULL or empty array: tokens NULL, so that the library reports it (an empty one: n 0). */
    kv_status st = kv_submit_prefill(TO_PTR(kv_session, session), toks ? toks : (tokens ? &k_none : NULL), n,
                                     ctx ? ticket_thunk : NULL, ctx, &t);
    free(toks);
    return ticket_submitted(env, st, ctx, t, out_ticket);
}

static jint JNICALL j_kv_submit_decode(JNIEnv* env, jclass cls, jlong session, jobject callback,
                                       jlongArray out_ticket) {
    (void)cls;
    if (!out_ok(env, out_ticket, "kv_submit_decode: outTicket must be a long[1]")) return 0;
    int ok;
    ticket_ctx* ctx = ticket_ctx_new(env, callback, &ok);
    if (!ok) return 0;
    kv_ticket* t = NULL;
    kv_status st = kv_submit_decode(TO_PTR(kv_session, session), ctx ? ticket_thunk : NULL, ctx, &t);
    return ticket_submitted(env, st, ctx, t, out_ticket);
}

static jint JNICALL j_kv_submit_decode_batch(JNIEnv* env, jclass cls, jlongArray sessions, jobject callback,
                                             jlongArray out_ticket) {
    (void)cls;
    if (null_arg(env, sessions, "kv_submit_decode_batch: sessions")) return 0;
    if (!out_ok(env, out_ticket, "kv_submit_decode_batch: outTicket must be a long[1]")) return 0;
    jsize n = (*env)->GetArrayLength(env, sessions);
    size_t k = (size_t)(n ? n : 1);
    jlong* handles = (jlong*)malloc(sizeof(jlong) * k);
    kv_session** ss = (kv_session**)malloc(sizeof(kv_session*) * k);
    if (!handles || !ss) {
        free(handles);
        free(ss);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: submit_decode_batch");
        return 0;
    }
    (*env)->GetLongArrayRegion(env, sessions, 0, n, handles);
    for (jsize i = 0; i < n; i++) ss[i] = TO_PTR(kv_session, handles[i]);
    int ok;
    ticket_ctx* ctx = ticket_ctx_new(env, callback, &ok);
    jint r = 0;
    if (ok) {
        kv_ticket* t = NULL;
        kv_status st = kv_submit_decode_batch(ss, (uint32_t)n, ctx ? ticket_thunk : NULL, ctx, &t);
        r = ticket_submitted(env, st, ctx, t, out_ticket);
    }
    free(handles);
    free(ss);
    return r;
}

static jint JNICALL j_kv_ticket_wait(JNIEnv* env, jclass cls, jlong ticket, jlong timeout_ns) {
    (void)env;
    (void)cls;
    return kv_ticket_wait(TO_PTR(kv_ticket, ticket), (uint64_t)timeout_ns);
}

static jint JNICALL j_kv_ticket_poll(JNIEnv* env, jclass cls, jlong ticket) {
    (void)env;
    (void)cls;
    return kv_ticket_poll(TO_PTR(kv_ticket, ticket));
}

static jint JNICALL j_kv_ticket_results(JNIEnv* env, jclass cls, jlong ticket, jintArray out_tokens,
                                        jintArray out_status, jintArray n_out) {
    (void)cls;
    if (!out_ok(env, n_out, "kv_ticket_results: nOut must be an int[1]")) return 0;
    jsize cap_t = out_tokens ? (*env)->GetArrayLength(env, out_tokens) : 0;
    jsize cap_s = out_status ? (*env)->GetArrayLength(env, out_status) : 0;
    if (cap_t != cap_s) {
        throw_named(env, "java/lang/IllegalArgumentException",
                    "kv_ticket_results: outTokens and outStatus must have the same length");
        return 0;
    }
    size_t k = (size_t)(cap_t ? cap_t : 1);
    kv_token* toks = (kv_token*)malloc(sizeof(kv_token) * k);
    kv_status* sts = (kv_status*)malloc(sizeof(kv_status) * k);
    if (!toks || !sts) {
        free(toks);
        free(sts);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: ticket results");
        return 0;
    }
    uint32_t n = 0;
    kv_status st = kv_ticket_results(TO_PTR(kv_ticket, ticket), cap_t ? toks : NULL, cap_t ? sts : NULL,
                                     (uint32_t)cap_t, &n);
    if (st >= 0 && st != KV_NOT_READY) put_int(env, n_out, (jint)n);
    if (st == KV_OK && n > 0) {
        (*env)->SetIntArrayRegion(env, out_tokens, 0, (jsize)n, (const jint*)toks);
        (*env)->SetIntArrayRegion(env, out_status, 0, (jsize)n, (const jint*)sts);
    }
    free(toks);
    free(sts);
    return st;
}

static void JNICALL j_kv_ticket_destroy(JNIEnv* env, jclass cls, jlong ticket) {
    (void)env;
    (void)cls;
    kv_ticket_destroy(TO_PTR(kv_ticket, ticket));
}

static jint JNICALL j_kv_session_cancel(JNIEnv* env, jclass cls, jlong session) {
    (void)env;
    (void)cls;
    return kv_session_cancel(TO_PTR(kv_session, session));
}

/* ---- KV offload, generation, chat templates, grammars, embeddings, the queue (since 0.2.0) ----- */

static jint JNICALL j_kv_session_offload(JNIEnv* env, jclass cls, jlong session) {
    (void)env;
    (void)cls;
    return kv_session_offload(TO_PTR(kv_session, session));
}

/* An array of malloc'd NUL-terminated UTF-8 copies of a String[] (NULL array: NULL, *n = 0). */
static void strings_free(char** v, uint32_t n) {
    if (!v) return;
    for (uint32_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int strings_dup(JNIEnv* env, jobjectArray a, char*** out, uint32_t* n) {
    *out = NULL;
    *n = 0;
    if (!a) return 1;
    jsize len = (*env)->GetArrayLength(env, a);
    if (len == 0) return 1;
    char** v = (char**)calloc((size_t)len, sizeof(char*));
    if (!v) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: strings");
        return 0;
    }
    for (jsize i = 0; i < len; i++) {
        jstring e = (jstring)(*env)->GetObjectArrayElement(env, a, i);
        int ok = 1;
        v[i] = utf8_dup(env, e, &ok);
        (*env)->DeleteLocalRef(env, e);
        if (!ok) {
            strings_free(v, (uint32_t)len);
            return 0;
        }
    }
    *out = v;
    *n = (uint32_t)len;
    return 1;
}

/* kv_generate's on_piece: a call of Native.PieceCallback.onPiece on the calling thread. An
 * exception stops generation and stays pending for the caller. */
typedef struct piece_ctx {
    JNIEnv* env;
    jobject callback;
    jmethodID on_piece;
} piece_ctx;

static int piece_thunk(void* user, const char* text, size_t len) {
    piece_ctx* ctx = (piece_ctx*)user;
    JNIEnv* env = ctx->env;
    if (pending(env)) return 1;
    jbyteArray b = (*env)->NewByteArray(env, (jsize)len);
    if (!b) return 1;
    (*env)->SetByteArrayRegion(env, b, 0, (jsize)len, (const jbyte*)text);
    jint r = (*env)->CallIntMethod(env, ctx->callback, ctx->on_piece, b);
    (*env)->DeleteLocalRef(env, b);
    return pending(env) ? 1 : (int)r;
}

static jint JNICALL j_kv_generate(JNIEnv* env, jclass cls, jlong session, jobject jdesc, jobject jresult) {
    (void)cls;
    kv_generate_desc d = KV_GENERATE_DESC_INIT;
    char** stops = NULL;
    uint32_t n_stops = 0;
    piece_ctx ctx = {env, NULL, NULL};
    if (jdesc) {
        d.max_tokens = (uint32_t)get_i(env, jdesc, "maxTokens");
        jobjectArray js = (jobjectArray)get_o(env, jdesc, "stopStrings", "[Ljava/lang/String;");
        jobject cb = get_o(env, jdesc, "onPiece", "L" PKG "Native$PieceCallback;");
        if (pending(env)) return 0;
        if (cb) {
            jclass c = (*env)->GetObjectClass(env, cb);
            ctx.on_piece = (*env)->GetMethodID(env, c, "onPiece", "([B)I");
            (*env)->DeleteLocalRef(env, c);
            if (!ctx.on_piece) return 0;
            ctx.callback = cb;
            d.on_piece = piece_thunk;
            d.user_data = &ctx;
        }
        if (!strings_dup(env, js, &stops, &n_stops)) return 0;
        d.stop_strings = (const char* const*)stops;
        d.n_stop_strings = n_stops;
    }
    kv_generate_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = (uint32_t)sizeof r;
    kv_status st = kv_generate(TO_PTR(kv_session, session), &d, &r);
    strings_free(stops, n_stops);
    if (jresult && !pending(env)) {
        set_i(env, jresult, "nTokens", r.n_tokens);
        set_i(env, jresult, "stopReason", (uint32_t)r.stop_reason);
        set_i(env, jresult, "stopString", (uint32_t)r.stop_string);
        set_i(env, jresult, "lastToken", (uint32_t)r.last_token);
        set_j(env, jresult, "nBytes", r.n_bytes);
    }
    return st;
}

/* kv_chat_message copies of a ChatMessage[] (roles and contents malloc'd). */
typedef struct chat_buf {
    kv_chat_message* msgs;
    uint32_t n;
} chat_buf;

static void chat_free(chat_buf* b) {
    for (uint32_t i = 0; i < b->n; i++) {
        free((char*)b->msgs[i].role);
        free((char*)b->msgs[i].content);
    }
    free(b->msgs);
    b->msgs = NULL;
    b->n = 0;
}

static int chat_read(JNIEnv* env, jobjectArray a, chat_buf* b) {
    b->msgs = NULL;
    b->n = 0;
    if (!a) return 1;
    jsize len = (*env)->GetArrayLength(env, a);
    if (len == 0) return 1;
    b->msgs = (kv_chat_message*)calloc((size_t)len, sizeof(kv_chat_message));
    if (!b->msgs) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: chat messages");
        return 0;
    }
    b->n = (uint32_t)len;
    for (jsize i = 0; i < len; i++) {
        kv_chat_message* m = &b->msgs[i];
        m->struct_size = (uint32_t)sizeof *m;
        jobject e = (*env)->GetObjectArrayElement(env, a, i);
        if (!e) {
            chat_free(b);
            throw_named(env, "java/lang/NullPointerException", "a ChatMessage is null");
            return 0;
        }
        jstring role = (jstring)get_o(env, e, "role", "Ljava/lang/String;");
        jstring content = (jstring)get_o(env, e, "content", "Ljava/lang/String;");
        (*env)->DeleteLocalRef(env, e);
        int ok = !pending(env);
        if (ok) m->role = utf8_dup(env, role, &ok);
        if (ok) m->content = utf8_dup(env, content, &ok);
        (*env)->DeleteLocalRef(env, role);
        (*env)->DeleteLocalRef(env, content);
        if (!ok) {
            chat_free(b);
            return 0;
        }
    }
    return 1;
}

/* Shared by both chat calls: template NULL is kv_chat_format. */
static jint chat_format(JNIEnv* env, jlong model, jstring jtemplate, int with_template, jobjectArray messages,
                        jint flags, jbyteArray text, jlongArray len) {
    if (!out_ok(env, len, "kv_chat_format: len must be a long[1]")) return 0;
    int ok = 1;
    char* tmpl = utf8_dup(env, jtemplate, &ok);
    if (!ok) return 0;
    chat_buf b;
    if (!chat_read(env, messages, &b)) {
        free(tmpl);
        return 0;
    }
    size_t cap = text ? (size_t)(*env)->GetArrayLength(env, text) : 0;
    char* buf = (char*)malloc(cap ? cap : 1);
    if (!buf) {
        chat_free(&b);
        free(tmpl);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: chat text");
        return 0;
    }
    size_t n = cap;
    kv_status st = with_template
        ? kv_chat_format_template(TO_PTR(const kv_model, model), tmpl, b.msgs, b.n, (uint32_t)flags,
                                  cap ? buf : NULL, &n)
        : kv_chat_format(TO_PTR(const kv_model, model), b.msgs, b.n, (uint32_t)flags, cap ? buf : NULL, &n);
    jint r = bytes_out(env, st, buf, n, text, len);
    free(buf);
    chat_free(&b);
    free(tmpl);
    return r;
}

static jint JNICALL j_kv_chat_format(JNIEnv* env, jclass cls, jlong model, jobjectArray messages, jint flags,
                                     jbyteArray text, jlongArray len) {
    (void)cls;
    return chat_format(env, model, NULL, 0, messages, flags, text, len);
}

static jint JNICALL j_kv_chat_format_template(JNIEnv* env, jclass cls, jlong model, jstring chat_template,
                                              jobjectArray messages, jint flags, jbyteArray text, jlongArray len) {
    (void)cls;
    return chat_format(env, model, chat_template, 1, messages, flags, text, len);
}

static jint JNICALL j_kv_model_get_chat_template(JNIEnv* env, jclass cls, jlong model, jbyteArray text,
                                                 jlongArray len) {
    (void)cls;
    if (!out_ok(env, len, "kv_model_get_chat_template: len must be a long[1]")) return 0;
    size_t cap = text ? (size_t)(*env)->GetArrayLength(env, text) : 0;
    char* buf = (char*)malloc(cap ? cap : 1);
    if (!buf) {
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: chat template");
        return 0;
    }
    size_t n = cap;
    kv_status st = kv_model_get_chat_template(TO_PTR(const kv_model, model), cap ? buf : NULL, &n);
    jint r = bytes_out(env, st, buf, n, text, len);
    free(buf);
    return r;
}

static jint JNICALL j_kv_session_set_grammar(JNIEnv* env, jclass cls, jlong session, jstring jgbnf,
                                             jstring jroot) {
    (void)cls;
    int ok = 1;
    char* gbnf = utf8_dup(env, jgbnf, &ok);
    if (!ok) return 0;
    char* root = utf8_dup(env, jroot, &ok);
    if (!ok) {
        free(gbnf);
        return 0;
    }
    kv_status st = kv_session_set_grammar(TO_PTR(kv_session, session), gbnf, root);
    free(root);
    free(gbnf);
    return st;
}

static jint JNICALL j_kv_json_schema_to_grammar(JNIEnv* env, jclass cls, jbyteArray schema, jbyteArray gbnf,
                                                jlongArray size) {
    (void)cls;
    if (!out_ok(env, size, "kv_json_schema_to_grammar: size must be a long[1]")) return 0;
    if (null_arg(env, schema, "kv_json_schema_to_grammar: schemaJson")) return 0;
    jsize slen = (*env)->GetArrayLength(env, schema);
    size_t cap = gbnf ? (size_t)(*env)->GetArrayLength(env, gbnf) : 0;
    char* in = (char*)malloc((size_t)slen + 1);
    char* buf = (char*)malloc(cap ? cap : 1);
    if (!in || !buf) {
        free(in);
        free(buf);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: json schema");
        return 0;
    }
    (*env)->GetByteArrayRegion(env, schema, 0, slen, (jbyte*)in);
    size_t n = cap;
    kv_status st = kv_json_schema_to_grammar(in, (size_t)slen, cap ? buf : NULL, &n);
    jint r = bytes_out(env, st, buf, n, gbnf, size);
    free(buf);
    free(in);
    return r;
}

static jint JNICALL j_kv_session_embeddings(JNIEnv* env, jclass cls, jlong session, jintArray tokens, jint flags,
                                            jfloatArray out) {
    (void)cls;
    if (null_arg(env, out, "kv_session_embeddings: out")) return 0;
    kv_token* toks;
    uint32_t n;
    if (!copy_ints(env, tokens, &toks, &n)) return 0;
    jsize cap = (*env)->GetArrayLength(env, out);
    float* buf = (float*)malloc(sizeof(float) * (size_t)(cap ? cap : 1));
    if (!buf) {
        free(toks);
        throw_named(env, "java/lang/OutOfMemoryError", "kvulkan JNI: embeddings");
        return 0;
    }
    kv_status st = kv_session_embeddings(TO_PTR(kv_session, session), toks, n, (uint32_t)flags, buf, (uint32_t)cap);
    if (st >= 0) (*env)->SetFloatArrayRegion(env, out, 0, cap, buf);
    free(buf);
    free(toks);
    return st;
}

/* kv_runtime_use_queue's fn: Native.QueueCallback.onQueue on the calling thread. */
typedef struct queue_ctx {
    JNIEnv* env;
    jobject callback;
    jmethodID on_queue;
} queue_ctx;

static void queue_thunk(void* vk_queue, void* user) {
    queue_ctx* ctx = (queue_ctx*)user;
    (*ctx->env)->CallVoidMethod(ctx->env, ctx->callback, ctx->on_queue, TO_J(vk_queue));
    /* an exception stays pending and is thrown when kv_runtime_use_queue returns */
}

static jint JNICALL j_kv_runtime_use_queue(JNIEnv* env, jclass cls, jlong runtime, jobject fn) {
    (void)cls;
    if (!fn) return kv_runtime_use_queue(TO_PTR(kv_runtime, runtime), NULL, NULL);
    queue_ctx ctx = {env, fn, NULL};
    jclass c = (*env)->GetObjectClass(env, fn);
    ctx.on_queue = (*env)->GetMethodID(env, c, "onQueue", "(J)V");
    (*env)->DeleteLocalRef(env, c);
    if (!ctx.on_queue) return 0;
    return kv_runtime_use_queue(TO_PTR(kv_runtime, runtime), queue_thunk, &ctx);
}

static jint JNICALL j_kv_runtime_timeline_semaphore(JNIEnv* env, jclass cls, jlong runtime, jlongArray out) {
    (void)cls;
    if (!out_ok(env, out, "kv_runtime_timeline_semaphore: out must be a long[2]")) return 0;
    if ((*env)->GetArrayLength(env, out) < 2) {
        throw_named(env, "java/lang/IllegalArgumentException", "kv_runtime_timeline_semaphore: out must be a long[2]");
        return 0;
    }
    uint64_t sem = 0, value = 0;
    kv_status st = kv_runtime_timeline_semaphore(TO_PTR(kv_runtime, runtime), &sem, &value);
    if (st >= 0) {
        jlong v[2] = {(jlong)sem, (jlong)value};
        (*env)->SetLongArrayRegion(env, out, 0, 2, v);
    }
    return st;
}

static jint JNICALL j_kv_runtime_wait_semaphore(JNIEnv* env, jclass cls, jlong runtime, jlong sem, jlong value) {
    (void)env;
    (void)cls;
    return kv_runtime_wait_semaphore(TO_PTR(kv_runtime, runtime), (uint64_t)sem, (uint64_t)value);
}

/* ---- registration ------------------------------------------------------------------------------
 * One line per exported kv_* function: {C name, JNI signature of the Native.java method, body}.
 * RegisterNatives fails (and the class fails to load) when a line does not match Native.java. */

#define DESC "L" PKG "RuntimeDesc;"
#define NATIVE(name, sig) {(char*)#name, (char*)sig, (void*)j_##name}

static const JNINativeMethod NATIVES[] = {
    NATIVE(kv_version, "()I"),
    NATIVE(kv_version_string, "()Ljava/lang/String;"),
    NATIVE(kv_status_string, "(I)Ljava/lang/String;"),
    NATIVE(kv_last_error_message, "()Ljava/lang/String;"),
    NATIVE(kv_enumerate_devices, "(" DESC "[L" PKG "DeviceInfo;[I)I"),
    NATIVE(kv_runtime_create, "(" DESC "[J)I"),
    NATIVE(kv_runtime_destroy, "(J)V"),
    NATIVE(kv_runtime_get_info, "(JL" PKG "DeviceInfo;)I"),
    NATIVE(kv_runtime_validation_message_count, "(J)J"),
    NATIVE(kv_runtime_measure_bandwidth, "(JJIL" PKG "BandwidthResult;)I"),
    NATIVE(kv_model_load, "(JL" PKG "ModelDesc;[J)I"),
    NATIVE(kv_model_destroy, "(J)V"),
    NATIVE(kv_model_get_info, "(JL" PKG "ModelInfo;)I"),
    NATIVE(kv_model_token_bos, "(J)I"),
    NATIVE(kv_model_token_eos, "(J)I"),
    NATIVE(kv_token_is_eog, "(JI)I"),
    NATIVE(kv_tokenize, "(J[BI[I[I)I"),
    NATIVE(kv_detokenize, "(J[I[B[J)I"),
    NATIVE(kv_token_to_piece, "(JI[B[J)I"),
    NATIVE(kv_model_get_cache_stats, "(JIL" PKG "CacheStats;)I"),
    NATIVE(kv_session_create, "(JL" PKG "SessionDesc;[J)I"),
    NATIVE(kv_session_destroy, "(J)V"),
    NATIVE(kv_prefill, "(J[I)I"),
    NATIVE(kv_decode_step, "(J[I)I"),
    NATIVE(kv_session_reset, "(J)I"),
    NATIVE(kv_session_logits, "(J[F)I"),
    NATIVE(kv_session_eval, "(J[I[F)I"),
    NATIVE(kv_session_set_sampler, "(JL" PKG "SamplerDesc;)I"),
    NATIVE(kv_session_get_stats, "(JL" PKG "SessionStats;)I"),
    NATIVE(kv_session_fork, "(J[J)I"),
    NATIVE(kv_session_truncate, "(JI)I"),
    NATIVE(kv_session_save, "(J[B[J)I"),
    NATIVE(kv_session_save_file, "(JLjava/lang/String;)I"),
    NATIVE(kv_session_load, "(J[B[J)I"),
    NATIVE(kv_session_load_file, "(JLjava/lang/String;[J)I"),
    NATIVE(kv_decode_batch, "([J[I[I)I"),
    NATIVE(kv_batch_eval, "([L" PKG "BatchItem;)I"),
    NATIVE(kv_decode_speculative, "(JJI[I[I[I)I"),
    NATIVE(kv_submit_prefill, "(J[IL" PKG "Native$TicketCallback;[J)I"),
    NATIVE(kv_submit_decode, "(JL" PKG "Native$TicketCallback;[J)I"),
    NATIVE(kv_submit_decode_batch, "([JL" PKG "Native$TicketCallback;[J)I"),
    NATIVE(kv_ticket_wait, "(JJ)I"),
    NATIVE(kv_ticket_poll, "(J)I"),
    NATIVE(kv_ticket_results, "(J[I[I[I)I"),
    NATIVE(kv_ticket_destroy, "(J)V"),
    NATIVE(kv_session_cancel, "(J)I"),
    NATIVE(kv_session_offload, "(J)I"),
    NATIVE(kv_generate, "(JL" PKG "GenerateDesc;L" PKG "GenerateResult;)I"),
    NATIVE(kv_chat_format, "(J[L" PKG "ChatMessage;I[B[J)I"),
    NATIVE(kv_chat_format_template, "(JLjava/lang/String;[L" PKG "ChatMessage;I[B[J)I"),
    NATIVE(kv_model_get_chat_template, "(J[B[J)I"),
    NATIVE(kv_session_set_grammar, "(JLjava/lang/String;Ljava/lang/String;)I"),
    NATIVE(kv_json_schema_to_grammar, "([B[B[J)I"),
    NATIVE(kv_session_embeddings, "(J[II[F)I"),
    NATIVE(kv_runtime_use_queue, "(JL" PKG "Native$QueueCallback;)I"),
    NATIVE(kv_runtime_timeline_semaphore, "(J[J)I"),
    NATIVE(kv_runtime_wait_semaphore, "(JJJ)I"),
};

static jclass global_class(JNIEnv* env, const char* name) {
    jclass local = (*env)->FindClass(env, name);
    if (!local) return NULL;
    jclass g = (jclass)(*env)->NewGlobalRef(env, local);
    (*env)->DeleteLocalRef(env, local);
    return g;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM* vm, void* reserved) {
    (void)reserved;
    JNIEnv* env = NULL;
    if ((*vm)->GetEnv(vm, (void**)&env, JNI_VERSION_1_8) != JNI_OK) return JNI_ERR;
    g_vm = vm;
    g_native_class = global_class(env, PKG "Native");
    g_string_class = global_class(env, "java/lang/String");
    jclass charsets = (*env)->FindClass(env, "java/nio/charset/StandardCharsets");
    jclass log_listener = (*env)->FindClass(env, PKG "LogListener");
    jclass buffer = (*env)->FindClass(env, "java/nio/Buffer");
    jclass ticket_callback = (*env)->FindClass(env, PKG "Native$TicketCallback");
    g_device_info_class = global_class(env, PKG "DeviceInfo");
    g_memory_heap_class = global_class(env, PKG "DeviceInfo$MemoryHeap");
    if (!g_native_class || !g_string_class || !charsets || !log_listener || !buffer || !ticket_callback ||
        !g_device_info_class || !g_memory_heap_class)
        return JNI_ERR;
    jfieldID utf8 = (*env)->GetStaticFieldID(env, charsets, "UTF_8", "Ljava/nio/charset/Charset;");
    if (!utf8) return JNI_ERR;
    jobject cs = (*env)->GetStaticObjectField(env, charsets, utf8);
    g_utf8 = cs ? (*env)->NewGlobalRef(env, cs) : NULL;
    g_string_from_bytes = (*env)->GetMethodID(env, g_string_class, "<init>", "([BLjava/nio/charset/Charset;)V");
    g_string_get_bytes = (*env)->GetMethodID(env, g_string_class, "getBytes", "(Ljava/nio/charset/Charset;)[B");
    g_on_log = (*env)->GetMethodID(env, log_listener, "onLog", "(ILjava/lang/String;)V");
    g_device_info_init = (*env)->GetMethodID(env, g_device_info_class, "<init>", "()V");
    g_memory_heap_init = (*env)->GetMethodID(env, g_memory_heap_class, "<init>", "(JJJZ)V");
    g_buffer_position = (*env)->GetMethodID(env, buffer, "position", "()I");
    g_buffer_limit = (*env)->GetMethodID(env, buffer, "limit", "()I");
    g_on_ticket = (*env)->GetMethodID(env, ticket_callback, "onComplete", "(JI)V");
    if (!g_utf8 || !g_string_from_bytes || !g_string_get_bytes || !g_on_log || !g_device_info_init ||
        !g_memory_heap_init || !g_buffer_position || !g_buffer_limit || !g_on_ticket)
        return JNI_ERR;
    if ((*env)->RegisterNatives(env, g_native_class, NATIVES, (jint)(sizeof NATIVES / sizeof NATIVES[0])) != 0)
        return JNI_ERR;
    return JNI_VERSION_1_8;
}
