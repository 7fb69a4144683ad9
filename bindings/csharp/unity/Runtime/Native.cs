// P/Invoke mirror of include/kvulkan/kvulkan.h: constants, structs and every exported kv_* function.
//
// The one file to extend when the C ABI grows: add the struct (fields in header order, only ever
// appended) and the `public static extern` line (tests/bindings/check_binding_symbols.py matches
// `static extern ... kv_name(` lines of this file against the library's exports).
//
// Marshalling rules, chosen so that Mono, .NET and Unity (Mono and IL2CPP) agree:
//  - opaque handles travel as IntPtr (the idiomatic layer owns them through SafeHandles);
//  - strings go in as NUL-terminated UTF-8 byte[] and come back as IntPtr, decoded by Utf8.FromNative
//    (a `string` return would make the marshaller free a pointer the library owns);
//  - size_t is UIntPtr; kv_status and kv_token are int; enums are int;
//  - fixed char arrays are ByValArray byte[] (the structs holding them are copied in and out).
using System;
using System.Runtime.InteropServices;

namespace Kvulkan.Interop
{
    /// <summary>kv_log_fn: void (*)(void* user_data, kv_log_level level, const char* message).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void kv_log_fn(IntPtr userData, int level, IntPtr message);

    /// <summary>kv_ticket_callback: void (*)(kv_ticket* ticket, kv_status status, void* user) (since 0.2.0).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void kv_ticket_callback(IntPtr ticket, int status, IntPtr user);

    /// <summary>Marks a static method that native code calls back (IL2CPP needs it for reverse
    /// P/Invoke; Mono and .NET ignore it). IL2CPP matches the attribute by name.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }
        public Type DelegateType { get; private set; }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_memory_heap_info
    {
        public ulong size;
        public ulong budget;
        public ulong usage;
        public uint device_local;
        public uint reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_device_info
    {
        public uint struct_size;
        public uint index;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = Native.KV_MAX_NAME)] public byte[] device_name;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = Native.KV_MAX_NAME)] public byte[] driver_name;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = Native.KV_MAX_NAME)] public byte[] driver_info;
        public int device_type;
        public uint vendor_id;
        public uint device_id;
        public uint api_version;
        public uint driver_version;
        public uint features;
        public uint subgroup_size;
        public uint subgroup_size_min;
        public uint subgroup_size_max;
        public uint subgroup_ops;
        public ulong max_storage_buffer_range;
        public ulong max_allocation_size;
        public uint max_shared_memory;
        public uint max_workgroup_invocations;
        public uint max_workgroup_count_x;
        public uint memory_heap_count;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = Native.KV_MAX_MEMORY_HEAPS)] public kv_memory_heap_info[] memory_heaps;
        public float timestamp_period_ns;
        public uint reserved0;
        public uint queue_family;      // since 0.2.0: the runtime's queue and scheduling
        public uint queue_flags;       // KV_QUEUE_* bits
        public float queue_priority;
        public uint global_priority;   // KV_GLOBAL_PRIORITY_*
        public uint gpu_budget_us;
        public uint reserved1;

        /// <summary>Zeroed, with struct_size set and the arrays allocated (the marshaller needs them).</summary>
        public static kv_device_info Create()
        {
            var d = new kv_device_info();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_device_info));
            d.device_name = new byte[Native.KV_MAX_NAME];
            d.driver_name = new byte[Native.KV_MAX_NAME];
            d.driver_info = new byte[Native.KV_MAX_NAME];
            d.memory_heaps = new kv_memory_heap_info[Native.KV_MAX_MEMORY_HEAPS];
            return d;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_runtime_desc
    {
        public uint struct_size;
        public uint flags;
        public int device_index;
        public IntPtr device_name;   // const char*, borrowed for the call
        public IntPtr log_callback;  // kv_log_fn
        public IntPtr log_user_data;
        public IntPtr vk_instance;
        public IntPtr vk_physical_device;
        public IntPtr vk_device;
        public IntPtr vk_queue;
        public uint vk_queue_family;
        public uint vk_api_version;
        public ulong memory_budget;
        public IntPtr pipeline_cache_path;  // const char*, since 0.2.0
        public uint vk_timeline_semaphore;  // since 0.2.0: GPU scheduling beside a renderer
        public uint gpu_budget_us;
        public float queue_priority;
        public uint global_priority;

        /// <summary>KV_RUNTIME_DESC_INIT.</summary>
        public static kv_runtime_desc Init()
        {
            var d = new kv_runtime_desc();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_runtime_desc));
            d.device_index = -1;
            return d;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_bandwidth_result
    {
        public uint struct_size;
        public uint reserved;
        public ulong bytes;
        public double read_gbps;
        public double copy_gbps;
        public double write_gbps;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_model_desc
    {
        public uint struct_size;
        public uint flags;
        public IntPtr path;  // const char*, borrowed for the call
        public IntPtr data;
        public ulong size;
        public uint copy_data;
        public uint kv_page_size;
        public uint kv_pool_tokens;
        public uint reserved;
        public ulong host_offload_bytes;  // since 0.2.0

        /// <summary>KV_MODEL_DESC_INIT.</summary>
        public static kv_model_desc Init()
        {
            var d = new kv_model_desc();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_model_desc));
            return d;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_model_info
    {
        public uint struct_size;
        public uint on_device;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 32)] public byte[] architecture;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = Native.KV_MAX_NAME)] public byte[] name;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = Native.KV_MAX_NAME)] public byte[] weight_types;
        public ulong n_params;
        public ulong weight_bytes;
        public ulong file_size;
        public ulong device_bytes;
        public uint n_vocab;
        public uint n_embd;
        public uint n_layer;
        public uint n_head;
        public uint n_head_kv;
        public uint head_dim;
        public uint n_ff;
        public uint n_ctx_train;
        public uint rope_neox;
        public float rope_freq_base;
        public uint tied_output;
        public uint reserved;

        public static kv_model_info Create()
        {
            var d = new kv_model_info();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_model_info));
            d.architecture = new byte[32];
            d.name = new byte[Native.KV_MAX_NAME];
            d.weight_types = new byte[Native.KV_MAX_NAME];
            return d;
        }
    }

    /// <summary>One entry of kv_sampler_desc.logit_bias (since 0.2.0).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct kv_logit_bias
    {
        public int token;
        public float bias;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_sampler_desc
    {
        public uint struct_size;
        public float temperature;
        public int top_k;
        public float top_p;
        public float min_p;
        public float repeat_penalty;
        public uint repeat_last_n;
        public uint reserved;
        public ulong seed;
        public IntPtr logit_bias;     // const kv_logit_bias*, since 0.2.0; copied by the call
        public uint n_logit_bias;
        public uint n_banned_tokens;
        public IntPtr banned_tokens;  // const kv_token*, copied by the call

        /// <summary>KV_SAMPLER_DESC_INIT (greedy).</summary>
        public static kv_sampler_desc Init()
        {
            var d = new kv_sampler_desc();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_sampler_desc));
            d.top_p = 1.0f;
            d.repeat_penalty = 1.0f;
            d.repeat_last_n = 64;
            return d;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_session_desc
    {
        public uint struct_size;
        public uint flags;
        public uint n_ctx;
        public int cache_type;
        public uint n_batch;
        public uint reserved;
        public IntPtr sampler;  // const kv_sampler_desc*, copied by the call
        public uint window;
        public uint sinks;

        /// <summary>KV_SESSION_DESC_INIT.</summary>
        public static kv_session_desc Init()
        {
            var d = new kv_session_desc();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_session_desc));
            d.cache_type = Native.KV_CACHE_F16;
            return d;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_session_stats
    {
        public uint struct_size;
        public uint n_tokens;
        public uint n_ctx;
        public uint page_size;
        public ulong kv_bytes;
        public ulong kv_bytes_per_token;
        public ulong tokens_prefilled;
        public ulong tokens_decoded;
        public double last_prefill_ms;
        public uint last_prefill_tokens;
        public uint reserved;
        public double last_decode_ms;
        public double total_prefill_ms;
        public double total_decode_ms;
        public ulong scratch_bytes;
        public uint pages;
        public uint shared_pages;
        public ulong prefix_hit_tokens;
        public ulong forward_passes;  // since 0.2.0
        public ulong pages_offloaded;  // since 0.2.0
        public ulong pages_restored;
        public uint offloaded;
        public uint reserved1;
        public ulong submissions;            // since 0.2.0: GPU submissions of its passes
        public uint last_pass_submissions;
        public uint reserved2;
        public uint window_layer_pages;  // layer groups (gemma2, gemma3)
        public uint window_layers;
        public ulong window_layer_pages_released;
        public ulong pages_released;
    }

    /// <summary>One item of kv_batch_eval (since 0.2.0). Blittable: arrays of it are pinned.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct kv_batch_item
    {
        public uint struct_size;
        public uint n_tokens;
        public IntPtr session;
        public IntPtr tokens;  // const kv_token*
        public IntPtr logits;  // float*
        public ulong logits_capacity;
        public int token;
        public uint n_done;
        public int status;
        public uint reserved;

        /// <summary>KV_BATCH_ITEM_INIT.</summary>
        public static kv_batch_item Init()
        {
            var d = new kv_batch_item();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_batch_item));
            d.token = -1;
            return d;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct kv_cache_stats
    {
        public uint struct_size;
        public uint page_size;
        public uint pages_total;
        public uint pages_in_use;
        public uint pages_cached;
        public uint pages_free;
        public ulong page_bytes;
        public ulong device_bytes;
        public ulong prefix_lookups;
        public ulong prefix_hits;
        public ulong evictions;
        public ulong pages_offloaded;  // since 0.2.0
        public ulong pages_restored;
        public ulong offloaded_bytes;
    }

    /// <summary>kv_piece_fn: int (*)(void* user_data, const char* text, size_t len) (since 0.2.0).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate int kv_piece_fn(IntPtr userData, IntPtr text, UIntPtr len);

    /// <summary>kv_generate_desc (since 0.2.0).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct kv_generate_desc
    {
        public uint struct_size;
        public uint max_tokens;
        public IntPtr stop_strings;  // const char* const*, borrowed for the call
        public uint n_stop_strings;
        public uint reserved;
        public IntPtr on_piece;      // kv_piece_fn
        public IntPtr user_data;

        /// <summary>KV_GENERATE_DESC_INIT.</summary>
        public static kv_generate_desc Init()
        {
            var d = new kv_generate_desc();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_generate_desc));
            return d;
        }
    }

    /// <summary>kv_generate_result (since 0.2.0).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct kv_generate_result
    {
        public uint struct_size;
        public uint n_tokens;
        public int stop_reason;  // kv_generate_stop
        public int stop_string;
        public int last_token;
        public uint reserved;
        public ulong n_bytes;

        public static kv_generate_result Create()
        {
            var d = new kv_generate_result();
            d.struct_size = (uint)Marshal.SizeOf(typeof(kv_generate_result));
            return d;
        }
    }

    /// <summary>kv_chat_message (since 0.2.0). Blittable: arrays of it are pinned.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct kv_chat_message
    {
        public uint struct_size;
        public uint reserved;
        public IntPtr role;     // const char*
        public IntPtr content;  // const char*
    }

    /// <summary>The C functions, one to one. Handles are IntPtr; see the file comment.</summary>
    public static class Native
    {
        /// <summary>DllImport name: libkvulkan.so (Linux, Android), libkvulkan.dylib (macOS),
        /// kvulkan.dll (Windows). iOS links the library statically into the player, where
        /// IL2CPP resolves "__Internal".</summary>
#if UNITY_IOS && !UNITY_EDITOR
        public const string Library = "__Internal";
#else
        public const string Library = "kvulkan";
#endif

        public const int HEADER_VERSION_MAJOR = 0;
        public const int HEADER_VERSION_MINOR = 2;
        public const int HEADER_VERSION_PATCH = 0;

        public const int KV_MAX_NAME = 256;
        public const int KV_MAX_MEMORY_HEAPS = 16;

        public const uint KV_RUNTIME_VALIDATION = 1u << 0;
        public const uint KV_RUNTIME_IGNORE_ENVIRONMENT = 1u << 1;
        public const uint KV_MODEL_VOCAB_ONLY = 1u << 0;
        public const uint KV_TOKENIZE_ADD_SPECIAL = 1u << 0;
        public const uint KV_TOKENIZE_PARSE_SPECIAL = 1u << 1;
        public const uint KV_SESSION_NO_CACHE = 1u << 0;
        public const int KV_CACHE_F16 = 0;
        public const int KV_CACHE_F32 = 1;
        public const int KV_CACHE_Q8_0 = 2;
        public const int KV_CACHE_Q4_0 = 3;
        public const int KV_GENERATE_STOP_MAX_TOKENS = 0;
        public const int KV_GENERATE_STOP_END_OF_GENERATION = 1;
        public const int KV_GENERATE_STOP_STRING = 2;
        public const int KV_GENERATE_STOP_CALLBACK = 3;
        public const int KV_GENERATE_STOP_CONTEXT_FULL = 4;
        public const int KV_GENERATE_STOP_ERROR = 5;
        public const uint KV_CHAT_ADD_ASSISTANT_PROMPT = 1u << 0;
        public const uint KV_CHAT_NO_THINKING = 1u << 1;
        public const uint KV_EMBED_LAST = 0;
        public const uint KV_EMBED_MEAN = 1u << 0;
        public const uint KV_EMBED_NORMALIZE = 1u << 1;

        // ---- Versioning, status, errors (since 0.1.0) -------------------------------------------
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kv_version();
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kv_version_string();
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kv_status_string(int status);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kv_last_error_message();

        // ---- Devices and runtime (since 0.1.0) ----------------------------------------------------
        // infos: NULL, or an array of *count elements stepped by infos[0].struct_size.
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_enumerate_devices(ref kv_runtime_desc desc, IntPtr infos, ref uint count);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_runtime_create(ref kv_runtime_desc desc, out IntPtr runtime);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kv_runtime_destroy(IntPtr runtime);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_runtime_get_info(IntPtr runtime, ref kv_device_info info);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern ulong kv_runtime_validation_message_count(IntPtr runtime);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_runtime_measure_bandwidth(IntPtr runtime, ulong bytes, uint iterations,
                                                              ref kv_bandwidth_result result);
        /// <summary>kv_queue_fn: void (*)(void* vk_queue, void* user) (since 0.2.0).</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate void kv_queue_fn(IntPtr vkQueue, IntPtr user);
        // Runs fn(vk_queue, user) on this thread under kvulkan's queue lock (since 0.2.0): for an
        // engine submitting to the VkQueue it gave kvulkan. Keep the delegate alive for the call.
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_runtime_use_queue(IntPtr runtime, kv_queue_fn fn, IntPtr user);
        // The runtime's timeline VkSemaphore and its last signalled value; a host timeline
        // semaphore every later kvulkan submission waits for (since 0.2.0).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_runtime_timeline_semaphore(IntPtr runtime, out ulong vkSemaphore, out ulong lastValue);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_runtime_wait_semaphore(IntPtr runtime, ulong vkSemaphore, ulong value);

        // ---- Models and tokenizer (since 0.1.0) ---------------------------------------------------
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_model_load(IntPtr runtime, ref kv_model_desc desc, out IntPtr model);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kv_model_destroy(IntPtr model);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_model_get_info(IntPtr model, ref kv_model_info info);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_model_token_bos(IntPtr model);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_model_token_eos(IntPtr model);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_token_is_eog(IntPtr model, int token);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_tokenize(IntPtr model, byte[] text, UIntPtr len, uint flags,
                                             [Out] int[] tokens, ref uint n_tokens);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_detokenize(IntPtr model, int[] tokens, uint n_tokens,
                                               [Out] byte[] text, ref UIntPtr len);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_token_to_piece(IntPtr model, int token, [Out] byte[] text, ref UIntPtr len);

        // ---- Sessions (since 0.1.0) ---------------------------------------------------------------
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_create(IntPtr model, ref kv_session_desc desc, out IntPtr session);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kv_session_destroy(IntPtr session);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_prefill(IntPtr session, int[] tokens, uint n_tokens);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_decode_step(IntPtr session, out int token);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_reset(IntPtr session);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_logits(IntPtr session, [Out] float[] logits, uint capacity);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_eval(IntPtr session, int[] tokens, uint n_tokens,
                                                 [Out] float[] logits, ulong capacity);
        // sampler: a pointer to a kv_sampler_desc, or IntPtr.Zero for greedy.
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_set_sampler(IntPtr session, IntPtr sampler);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_get_stats(IntPtr session, ref kv_session_stats stats);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_fork(IntPtr session, out IntPtr child);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_truncate(IntPtr session, uint n_tokens);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_save(IntPtr session, [Out] byte[] buffer, ref UIntPtr size);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_save_file(IntPtr session, byte[] path);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_load(IntPtr model, byte[] data, UIntPtr size, out IntPtr session);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_load_file(IntPtr model, byte[] path, out IntPtr session);

        // ---- Many sessions in one pass (since 0.2.0) ----------------------------------------------
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_decode_batch(IntPtr[] sessions, uint n_sessions, [Out] int[] out_tokens,
                                                 [Out] int[] out_status);
        // items: a pinned array of kv_batch_item (the library writes token, n_done and status back).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_batch_eval(IntPtr items, uint n_items);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_decode_speculative(IntPtr session, IntPtr draft, uint draft_n,
                                                       [Out] int[] out_tokens, uint capacity, out uint n_out,
                                                       out uint n_drafted);

        // ---- KV page pools (since 0.1.0) ----------------------------------------------------------
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_model_get_cache_stats(IntPtr model, int cache_type, ref kv_cache_stats stats);

        // ---- Non-blocking work and cancellation (since 0.2.0) -------------------------------------
        // callback: a kv_ticket_callback function pointer or IntPtr.Zero; it runs on kvulkan's worker
        // thread (see Ticket.cs for the idiomatic layer's one static thunk).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_submit_prefill(IntPtr session, int[] tokens, uint n_tokens, IntPtr callback,
                                                   IntPtr user, out IntPtr ticket);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_submit_decode(IntPtr session, IntPtr callback, IntPtr user, out IntPtr ticket);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_submit_decode_batch(IntPtr[] sessions, uint n_sessions, IntPtr callback,
                                                        IntPtr user, out IntPtr ticket);
        // timeout_ns: 0 looks, ulong.MaxValue waits without limit.
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_ticket_wait(IntPtr ticket, ulong timeout_ns);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_ticket_poll(IntPtr ticket);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_ticket_results(IntPtr ticket, [Out] int[] out_tokens, [Out] int[] out_status,
                                                   uint capacity, out uint n_out);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kv_ticket_destroy(IntPtr ticket);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_cancel(IntPtr session);

        // ---- KV offload (since 0.2.0) -------------------------------------------------------------
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_offload(IntPtr session);

        // ---- Streaming generation with stop strings (since 0.2.0) ---------------------------------
        // on_piece runs on the calling thread (see Session.Generate for the static thunk).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_generate(IntPtr session, ref kv_generate_desc desc, ref kv_generate_result result);

        // ---- Chat templates (since 0.2.0) ---------------------------------------------------------
        // messages: a pinned kv_chat_message array; text/len: the kv_detokenize buffer protocol.
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_chat_format(IntPtr model, IntPtr messages, uint n_messages, uint flags,
                                                [Out] byte[] text, ref UIntPtr len);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_chat_format_template(IntPtr model, byte[] chat_template, IntPtr messages,
                                                         uint n_messages, uint flags, [Out] byte[] text, ref UIntPtr len);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_model_get_chat_template(IntPtr model, [Out] byte[] text, ref UIntPtr len);

        // ---- Constrained sampling and embeddings (since 0.2.0) ------------------------------------
        // gbnf null removes the grammar; root_rule null: "root" (NUL-terminated UTF-8).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_set_grammar(IntPtr session, byte[] gbnf, byte[] root_rule);
        // size: in the capacity of gbnf, out the bytes needed (NUL included).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_json_schema_to_grammar(byte[] schema_json, UIntPtr len, [Out] byte[] gbnf,
                                                           ref UIntPtr size);
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kv_session_embeddings(IntPtr session, int[] tokens, uint n_tokens, uint flags,
                                                       [Out] float[] output, uint capacity);
    }
}
