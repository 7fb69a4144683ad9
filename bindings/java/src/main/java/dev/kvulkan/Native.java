package dev.kvulkan;

/**
 * The low-level layer: one static native method per exported function of
 * {@code include/kvulkan/kvulkan.h}, named exactly as in C, plus the header's constants. The
 * idiomatic classes ({@link Runtime}, {@link Model}, {@link Session}) are built on it; use it
 * directly only for what they do not offer. Nothing here checks lifetimes: a destroyed handle
 * passed again is undefined behaviour, exactly as in C.
 *
 * <p>Mapping rules (the JNI side is {@code bindings/java/src/main/c/kvulkan_jni.c}):
 * <ul>
 *   <li>Handles ({@code kv_runtime*}, {@code kv_model*}, {@code kv_session*}, {@code kv_ticket*})
 *       are {@code long}; 0 is NULL.</li>
 *   <li>A C callback with its {@code void* user} is one Java interface object (null: NULL), e.g.
 *       {@link TicketCallback}; the JNI layer holds it by a global reference while the library
 *       may call it, and attaches the calling thread to the JVM.</li>
 *   <li>Out-parameters are one-element arrays: {@code long[]} for handles and byte sizes,
 *       {@code int[]} for tokens and counts.</li>
 *   <li>A C pointer plus count or capacity is one Java array: its length is the count or the
 *       capacity ({@code null}: NULL with 0). {@code kv_tokenize}'s {@code nTokens} and the byte
 *       {@code len}/{@code size} out-values are therefore outputs only.</li>
 *   <li>uint32 values are {@code int} and uint64 values {@code long}, bit for bit (use
 *       {@link Integer#toUnsignedLong} where a value may exceed 2^31 - 1).</li>
 *   <li>Structs are the classes of the same name in camelCase ({@link RuntimeDesc},
 *       {@link ModelInfo}, ...); {@code struct_size} is set by the JNI layer.</li>
 *   <li>Strings are converted as real UTF-8 (never JNI's modified UTF-8); text that may be any
 *       bytes ({@code kv_tokenize}, {@code kv_detokenize}, {@code kv_token_to_piece}) is
 *       {@code byte[]}.</li>
 *   <li>A misuse of this layer itself (a null out-array, a non-direct buffer) throws
 *       NullPointerException or IllegalArgumentException; library errors are returned statuses.</li>
 * </ul>
 *
 * <p>Adding a C function: declare it below with its C name (the ctest
 * {@code bindings/java_binds_every_exported_function} fails until every exported {@code kv_*}
 * function is declared here), implement it in kvulkan_jni.c and add it to that file's
 * {@code NATIVES} table (checked by {@code bindings/java_jni_registers_every_exported_function}).
 *
 * <p>The JNI library is found as {@code kvulkan_jni} on {@code java.library.path}, or at the
 * absolute path in the system property {@code kvulkan.jni.library}. It links libkvulkan.
 */
public final class Native {
    private Native() {}

    // ---- versions (the header this binding mirrors) ----
    public static final int HEADER_VERSION_MAJOR = 0;
    public static final int HEADER_VERSION_MINOR = 2;
    public static final int HEADER_VERSION_PATCH = 0;

    // ---- kv_status ----
    public static final int KV_OK = 0;
    public static final int KV_INCOMPLETE = 1;
    public static final int KV_END_OF_GENERATION = 2;
    public static final int KV_NOT_READY = 3;
    public static final int KV_CANCELLED = 4;
    public static final int KV_ERR_INVALID_ARGUMENT = -1;
    public static final int KV_ERR_IO = -2;
    public static final int KV_ERR_BAD_MODEL = -3;
    public static final int KV_ERR_UNSUPPORTED = -4;
    public static final int KV_ERR_OUT_OF_HOST_MEMORY = -5;
    public static final int KV_ERR_OUT_OF_DEVICE_MEMORY = -6;
    public static final int KV_ERR_CONTEXT_FULL = -7;
    public static final int KV_ERR_DEVICE_LOST = -8;
    public static final int KV_ERR_NO_DEVICE = -9;
    public static final int KV_ERR_INTERNAL = -10;
    public static final int KV_ERR_BAD_STATE = -11;
    public static final int KV_ERR_BAD_TOKEN = -12;
    public static final int KV_ERR_BUSY = -13;

    // ---- kv_log_level ----
    public static final int KV_LOG_DEBUG = 0;
    public static final int KV_LOG_INFO = 1;
    public static final int KV_LOG_WARNING = 2;
    public static final int KV_LOG_ERROR = 3;
    public static final int KV_LOG_VALIDATION = 4;

    // ---- kv_device_type ----
    public static final int KV_DEVICE_TYPE_OTHER = 0;
    public static final int KV_DEVICE_TYPE_INTEGRATED_GPU = 1;
    public static final int KV_DEVICE_TYPE_DISCRETE_GPU = 2;
    public static final int KV_DEVICE_TYPE_VIRTUAL_GPU = 3;
    public static final int KV_DEVICE_TYPE_CPU = 4;

    // ---- flags ----
    public static final int KV_RUNTIME_VALIDATION = 1;
    public static final int KV_RUNTIME_IGNORE_ENVIRONMENT = 1 << 1;
    public static final int KV_MODEL_VOCAB_ONLY = 1;
    public static final int KV_TOKENIZE_ADD_SPECIAL = 1;
    public static final int KV_TOKENIZE_PARSE_SPECIAL = 1 << 1;
    public static final int KV_SESSION_NO_CACHE = 1;

    // ---- kv_cache_type ----
    public static final int KV_CACHE_F16 = 0;
    public static final int KV_CACHE_F32 = 1;
    public static final int KV_CACHE_Q8_0 = 2;
    public static final int KV_CACHE_Q4_0 = 3;

    // ---- kv_generate_stop, chat and embedding flags (since 0.2.0) ----
    public static final int KV_GENERATE_STOP_MAX_TOKENS = 0;
    public static final int KV_GENERATE_STOP_END_OF_GENERATION = 1;
    public static final int KV_GENERATE_STOP_STRING = 2;
    public static final int KV_GENERATE_STOP_CALLBACK = 3;
    public static final int KV_GENERATE_STOP_CONTEXT_FULL = 4;
    public static final int KV_GENERATE_STOP_ERROR = 5;
    public static final int KV_CHAT_ADD_ASSISTANT_PROMPT = 1;
    public static final int KV_CHAT_NO_THINKING = 1 << 1;
    public static final int KV_EMBED_LAST = 0;
    public static final int KV_EMBED_MEAN = 1;
    public static final int KV_EMBED_NORMALIZE = 1 << 1;

    public static final int KV_MAX_NAME = 256;
    public static final int KV_MAX_MEMORY_HEAPS = 16;

    static {
        String path = System.getProperty("kvulkan.jni.library");
        if (path != null && !path.isEmpty()) {
            System.load(path);
        } else {
            System.loadLibrary("kvulkan_jni");
        }
        int major = kv_version() >>> 22;
        if (major != HEADER_VERSION_MAJOR) {
            throw new UnsatisfiedLinkError("libkvulkan " + kv_version_string()
                    + " does not match this binding's " + HEADER_VERSION_MAJOR + ".x header");
        }
    }

    // ---- versions and statuses ----
    public static native int kv_version();
    public static native String kv_version_string();
    public static native String kv_status_string(int status);
    public static native String kv_last_error_message();

    // ---- devices and runtime ----
    /** infos null: count[0] gets the number of devices; else capacity = infos.length (null
     *  elements are created) and count[0] the number written. */
    public static native int kv_enumerate_devices(RuntimeDesc desc, DeviceInfo[] infos, int[] count);
    public static native int kv_runtime_create(RuntimeDesc desc, long[] outRuntime);
    public static native void kv_runtime_destroy(long runtime);
    public static native int kv_runtime_get_info(long runtime, DeviceInfo info);
    public static native long kv_runtime_validation_message_count(long runtime);
    public static native int kv_runtime_measure_bandwidth(long runtime, long bytes, int iterations,
            BandwidthResult result);

    // ---- models ----
    public static native int kv_model_load(long runtime, ModelDesc desc, long[] outModel);
    public static native void kv_model_destroy(long model);
    public static native int kv_model_get_info(long model, ModelInfo info);
    public static native int kv_model_token_bos(long model);
    public static native int kv_model_token_eos(long model);
    public static native int kv_token_is_eog(long model, int token);
    /** text: UTF-8 bytes; capacity = tokens.length (null: 0); nTokens[0]: the token count. */
    public static native int kv_tokenize(long model, byte[] text, int flags, int[] tokens, int[] nTokens);
    /** capacity = text.length (null: 0); len[0]: the byte count. */
    public static native int kv_detokenize(long model, int[] tokens, byte[] text, long[] len);
    public static native int kv_token_to_piece(long model, int token, byte[] text, long[] len);
    public static native int kv_model_get_cache_stats(long model, int cacheType, CacheStats stats);

    // ---- sessions ----
    public static native int kv_session_create(long model, SessionDesc desc, long[] outSession);
    public static native void kv_session_destroy(long session);
    public static native int kv_prefill(long session, int[] tokens);
    public static native int kv_decode_step(long session, int[] outToken);
    public static native int kv_session_reset(long session);
    /** capacity = logits.length. */
    public static native int kv_session_logits(long session, float[] logits);
    /** logits: null, or n_tokens x n_vocab floats (capacity = logits.length). */
    public static native int kv_session_eval(long session, int[] tokens, float[] logits);
    public static native int kv_session_set_sampler(long session, SamplerDesc sampler);
    public static native int kv_session_get_stats(long session, SessionStats stats);
    public static native int kv_session_fork(long session, long[] outChild);
    public static native int kv_session_truncate(long session, int nTokens);
    /** capacity = buffer.length (null: 0, a size query); size[0]: the image's size. */
    public static native int kv_session_save(long session, byte[] buffer, long[] size);
    public static native int kv_session_save_file(long session, String path);
    public static native int kv_session_load(long model, byte[] data, long[] outSession);
    public static native int kv_session_load_file(long model, String path, long[] outSession);

    // ---- many sessions in one pass ----
    /** outTokens and outStatus need sessions.length elements. */
    public static native int kv_decode_batch(long[] sessions, int[] outTokens, int[] outStatus);
    public static native int kv_batch_eval(BatchItem[] items);
    /** capacity = outTokens.length; nDrafted may be null. */
    public static native int kv_decode_speculative(long session, long draft, int draftN, int[] outTokens,
            int[] nOut, int[] nDrafted);

    // ---- non-blocking work and cancellation ----
    /**
     * kv_ticket_callback with its {@code user} pointer: the object itself carries what the C user
     * pointer would. Called once per ticket on kvulkan's worker thread (attached to the JVM for the
     * call), with the ticket's handle and status; the rules of the C callback apply (return
     * quickly, never wait there for a ticket still running). An exception it throws is printed
     * and dropped. The JNI layer holds it until it has returned.
     */
    @FunctionalInterface
    public interface TicketCallback {
        void onComplete(long ticket, int status);
    }

    /** tokens: the prompt (copied); callback may be null; outTicket[0] gets the kv_ticket*. */
    public static native int kv_submit_prefill(long session, int[] tokens, TicketCallback callback, long[] outTicket);
    public static native int kv_submit_decode(long session, TicketCallback callback, long[] outTicket);
    public static native int kv_submit_decode_batch(long[] sessions, TicketCallback callback, long[] outTicket);
    /** timeoutNs: 0 looks, -1 (UINT64_MAX) waits without limit. */
    public static native int kv_ticket_wait(long ticket, long timeoutNs);
    public static native int kv_ticket_poll(long ticket);
    /** capacity = outTokens.length (outStatus the same length; both null: a count query); nOut[0]: the count. */
    public static native int kv_ticket_results(long ticket, int[] outTokens, int[] outStatus, int[] nOut);
    public static native void kv_ticket_destroy(long ticket);
    public static native int kv_session_cancel(long session);

    // ---- KV offload (since 0.2.0) ----
    public static native int kv_session_offload(long session);

    // ---- streaming generation with stop strings (since 0.2.0) ----
    /**
     * kv_piece_fn with its {@code user_data}: receives each piece of generated text as UTF-8 bytes
     * (a piece may hold bytes that are not valid UTF-8 when the model produced such). Return 0 to go
     * on, non-zero to stop. Called on the thread that called kv_generate; an exception it throws
     * stops generation and is rethrown when kv_generate returns.
     */
    @FunctionalInterface
    public interface PieceCallback {
        int onPiece(byte[] text);
    }

    /** desc may be null (the defaults); result may be null. */
    public static native int kv_generate(long session, GenerateDesc desc, GenerateResult result);

    // ---- chat templates (since 0.2.0) ----
    /** Byte protocol of kv_detokenize: capacity = text.length (null: 0); len[0]: the byte count. */
    public static native int kv_chat_format(long model, ChatMessage[] messages, int flags, byte[] text, long[] len);
    /** model may be 0. */
    public static native int kv_chat_format_template(long model, String chatTemplate, ChatMessage[] messages,
            int flags, byte[] text, long[] len);
    public static native int kv_model_get_chat_template(long model, byte[] text, long[] len);

    // ---- constrained sampling and embeddings (since 0.2.0) ----
    /** gbnf null removes the grammar; rootRule null: "root". */
    public static native int kv_session_set_grammar(long session, String gbnf, String rootRule);
    /** schemaJson: UTF-8 bytes; capacity = gbnf.length (null: 0); size[0]: the bytes needed, NUL included. */
    public static native int kv_json_schema_to_grammar(byte[] schemaJson, byte[] gbnf, long[] size);
    /** capacity = out.length (at least n_embd). */
    public static native int kv_session_embeddings(long session, int[] tokens, int flags, float[] out);

    // ---- sharing the runtime's queue with the host (since 0.2.0) ----
    /** kv_queue_fn with its {@code user}: called once, on the calling thread, with the VkQueue. */
    @FunctionalInterface
    public interface QueueCallback {
        void onQueue(long vkQueue);
    }

    public static native int kv_runtime_use_queue(long runtime, QueueCallback fn);

    // ---- GPU scheduling beside a renderer (since 0.2.0) ----
    /** out[0]: the runtime's timeline VkSemaphore, out[1]: its last signalled value (a long[2]). */
    public static native int kv_runtime_timeline_semaphore(long runtime, long[] out);

    public static native int kv_runtime_wait_semaphore(long runtime, long vkSemaphore, long value);
}
