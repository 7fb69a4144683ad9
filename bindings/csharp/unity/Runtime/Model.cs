// Models (kv_model): a GGUF file's architecture, tokenizer and weights.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using Kvulkan.Interop;

namespace Kvulkan
{
    public enum CacheType { F16 = 0, F32 = 1, Q8_0 = 2, Q4_0 = 3 }

    /// <summary>Options of kv_model_load (kv_model_desc).</summary>
    public sealed class ModelOptions
    {
        /// <summary>Tokens per KV page (0: 16).</summary>
        public uint KvPageSize;
        /// <summary>Capacity of each KV page pool in tokens (0: the library's choice).</summary>
        public uint KvPoolTokens;
        /// <summary>Load the tokenizer alone (KV_MODEL_VOCAB_ONLY): no sessions.</summary>
        public bool VocabOnly;
        /// <summary>Since 0.2.0: host bytes for the KV pages of offloaded sessions (0: no LRU
        /// offload, no limit on Session.Offload).</summary>
        public ulong HostOffloadBytes;
    }

    /// <summary>One message of a conversation (kv_chat_message).</summary>
    public sealed class ChatMessage
    {
        /// <summary>"system", "user", "assistant", "tool", ...</summary>
        public string Role;
        public string Content;
        public ChatMessage(string role, string content) { Role = role; Content = content; }
    }

    /// <summary>Flags of Model.ChatFormat (KV_CHAT_*).</summary>
    [Flags]
    public enum ChatFlags : uint { None = 0, AddAssistantPrompt = 1, NoThinking = 2 }

    /// <summary>kv_model_info, with its strings decoded.</summary>
    public sealed class ModelInfo
    {
        public bool OnDevice;
        public string Architecture, Name, WeightTypes;
        public ulong NParams, WeightBytes, FileSize, DeviceBytes;
        public uint NVocab, NEmbd, NLayer, NHead, NHeadKv, HeadDim, NFf, NCtxTrain;
        public bool RopeNeox, TiedOutput;
        public float RopeFreqBase;
    }

    /// <summary>kv_cache_stats: one KV page pool of a model.</summary>
    public sealed class CacheStats
    {
        public uint PageSize, PagesTotal, PagesInUse, PagesCached, PagesFree;
        public ulong PageBytes, DeviceBytes, PrefixLookups, PrefixHits, Evictions;
        /// <summary>Since 0.2.0: pages of sessions moved to host memory and brought back, and the
        /// host bytes offloaded sessions hold now.</summary>
        public ulong PagesOffloaded, PagesRestored, OffloadedBytes;
    }

    /// <summary>A loaded model (kv_model). Thread-safe except Dispose; dispose it after its
    /// sessions (or not: a model disposed first lives on until its last session is disposed).</summary>
    public sealed class Model : IDisposable
    {
        /// <summary>The native kv_model, for calls through Kvulkan.Interop.Native.</summary>
        public readonly ModelHandle Handle;
        /// <summary>The runtime (null for a model loaded without one: tokenizer only).</summary>
        public readonly Runtime Runtime;
        readonly uint _nVocab;

        /// <summary>kv_model_load of a GGUF file (memory-mapped). runtime null: parse and
        /// tokenize only.</summary>
        public Model(Runtime runtime, string path, ModelOptions options = null)
        {
            if (path == null)
                throw new ArgumentNullException("path");
            var pinned = GCHandle.Alloc(Utf8.ToNative(path), GCHandleType.Pinned);
            try
            {
                var desc = Desc(options);
                desc.path = pinned.AddrOfPinnedObject();
                Handle = Load(runtime, ref desc, default(GCHandle));
            }
            finally
            {
                pinned.Free();
            }
            Runtime = runtime;
            _nVocab = Info().NVocab;
        }

        Model(Runtime runtime, byte[] data, bool copy, ModelOptions options)
        {
            var pinned = GCHandle.Alloc(data, GCHandleType.Pinned);
            var desc = Desc(options);
            desc.data = pinned.AddrOfPinnedObject();
            desc.size = (ulong)data.LongLength;
            desc.copy_data = copy ? 1u : 0u;
            try
            {
                Handle = Load(runtime, ref desc, copy ? default(GCHandle) : pinned);
            }
            finally
            {
                if (copy || Handle == null)
                    pinned.Free();
            }
            Runtime = runtime;
            _nVocab = Info().NVocab;
        }

        /// <summary>kv_model_load of a GGUF file in memory (e.g. a Unity TextAsset's bytes).
        /// copy false: the array stays pinned until the model is destroyed instead of copied.</summary>
        public static Model FromBytes(Runtime runtime, byte[] data, bool copy = true, ModelOptions options = null)
        {
            if (data == null)
                throw new ArgumentNullException("data");
            return new Model(runtime, data, copy, options);
        }

        static kv_model_desc Desc(ModelOptions options)
        {
            var desc = kv_model_desc.Init();
            if (options != null)
            {
                desc.kv_page_size = options.KvPageSize;
                desc.kv_pool_tokens = options.KvPoolTokens;
                desc.host_offload_bytes = options.HostOffloadBytes;
                if (options.VocabOnly)
                    desc.flags |= Native.KV_MODEL_VOCAB_ONLY;
            }
            return desc;
        }

        static ModelHandle Load(Runtime runtime, ref kv_model_desc desc, GCHandle pinnedData)
        {
            var handle = new ModelHandle();
            var rt = new Lease(runtime == null ? null : runtime.Handle, "Runtime");
            try
            {
                IntPtr native;
                Check.Status(Native.kv_model_load(rt.Ptr, ref desc, out native));
                handle.PinnedData = pinnedData;
                handle.Adopt(native, ref rt);
            }
            finally
            {
                rt.Dispose();
            }
            return handle;
        }

        internal uint NVocab { get { return _nVocab; } }

        public ModelInfo Info()
        {
            var i = kv_model_info.Create();
            using (var m = new Lease(Handle, "Model"))
                Check.Status(Native.kv_model_get_info(m.Ptr, ref i));
            return new ModelInfo
            {
                OnDevice = i.on_device != 0,
                Architecture = Utf8.FromFixed(i.architecture),
                Name = Utf8.FromFixed(i.name),
                WeightTypes = Utf8.FromFixed(i.weight_types),
                NParams = i.n_params, WeightBytes = i.weight_bytes, FileSize = i.file_size, DeviceBytes = i.device_bytes,
                NVocab = i.n_vocab, NEmbd = i.n_embd, NLayer = i.n_layer, NHead = i.n_head, NHeadKv = i.n_head_kv,
                HeadDim = i.head_dim, NFf = i.n_ff, NCtxTrain = i.n_ctx_train, RopeNeox = i.rope_neox != 0,
                RopeFreqBase = i.rope_freq_base, TiedOutput = i.tied_output != 0,
            };
        }

        /// <summary>The BOS token, or null when the model has none.</summary>
        public int? Bos
        {
            get
            {
                using (var m = new Lease(Handle, "Model"))
                {
                    int t = Native.kv_model_token_bos(m.Ptr);
                    return t < 0 ? (int?)null : t;
                }
            }
        }

        /// <summary>The EOS token, or null when the model has none.</summary>
        public int? Eos
        {
            get
            {
                using (var m = new Lease(Handle, "Model"))
                {
                    int t = Native.kv_model_token_eos(m.Ptr);
                    return t < 0 ? (int?)null : t;
                }
            }
        }

        /// <summary>kv_token_is_eog: whether the token ends generation (EOS, EOT, ...).</summary>
        public bool IsEog(int token)
        {
            using (var m = new Lease(Handle, "Model"))
                return Native.kv_token_is_eog(m.Ptr, token) != 0;
        }

        /// <summary>kv_tokenize: text to token ids (addSpecial: BOS/EOS as the model asks;
        /// parseSpecial: control-token text maps to control tokens).</summary>
        public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = false)
        {
            byte[] bytes = Utf8.ToNative(text);
            var len = new UIntPtr((uint)(bytes.Length - 1));
            uint flags = (addSpecial ? Native.KV_TOKENIZE_ADD_SPECIAL : 0u) | (parseSpecial ? Native.KV_TOKENIZE_PARSE_SPECIAL : 0u);
            using (var m = new Lease(Handle, "Model"))
            {
                uint n = 0;
                Check.Status(Native.kv_tokenize(m.Ptr, bytes, len, flags, null, ref n));
                var tokens = new int[n];
                if (n > 0)
                    Check.Status(Native.kv_tokenize(m.Ptr, bytes, len, flags, tokens, ref n));
                return tokens;
            }
        }

        /// <summary>kv_detokenize as UTF-8 bytes (may split a character at the ends).</summary>
        public byte[] DetokenizeBytes(int[] tokens)
        {
            if (tokens == null)
                throw new ArgumentNullException("tokens");
            using (var m = new Lease(Handle, "Model"))
            {
                var len = UIntPtr.Zero;
                var status = Check.Status(Native.kv_detokenize(m.Ptr, tokens, (uint)tokens.Length, null, ref len));
                var text = new byte[(int)len.ToUInt64()];
                if (status == KvStatus.Incomplete || text.Length > 0)
                    Check.Status(Native.kv_detokenize(m.Ptr, tokens, (uint)tokens.Length, text, ref len));
                return text;
            }
        }

        /// <summary>kv_detokenize: token ids to text (invalid UTF-8 becomes U+FFFD).</summary>
        public string Detokenize(int[] tokens) { return Encoding.UTF8.GetString(DetokenizeBytes(tokens)); }

        /// <summary>kv_token_to_piece: one token's bytes, for streaming ("" for control tokens).</summary>
        public byte[] TokenToPiece(int token)
        {
            using (var m = new Lease(Handle, "Model"))
                return PieceOf(m.Ptr, token);
        }

        /// <summary>kv_token_to_piece on a native model the caller keeps alive.</summary>
        internal static byte[] PieceOf(IntPtr model, int token)
        {
            var len = UIntPtr.Zero;
            Check.Status(Native.kv_token_to_piece(model, token, null, ref len));
            var piece = new byte[(int)len.ToUInt64()];
            if (piece.Length > 0)
                Check.Status(Native.kv_token_to_piece(model, token, piece, ref len));
            return piece;
        }

        /// <summary>kv_model_get_cache_stats: the KV page pool of one cache type.</summary>
        public CacheStats GetCacheStats(CacheType type = CacheType.F16)
        {
            var s = new kv_cache_stats();
            s.struct_size = (uint)Marshal.SizeOf(typeof(kv_cache_stats));
            using (var m = new Lease(Handle, "Model"))
                Check.Status(Native.kv_model_get_cache_stats(m.Ptr, (int)type, ref s));
            return new CacheStats
            {
                PageSize = s.page_size, PagesTotal = s.pages_total, PagesInUse = s.pages_in_use,
                PagesCached = s.pages_cached, PagesFree = s.pages_free, PageBytes = s.page_bytes,
                DeviceBytes = s.device_bytes, PrefixLookups = s.prefix_lookups, PrefixHits = s.prefix_hits,
                Evictions = s.evictions, PagesOffloaded = s.pages_offloaded, PagesRestored = s.pages_restored,
                OffloadedBytes = s.offloaded_bytes,
            };
        }

        /// <summary>kv_session_create: a new session (sequence) of this model.</summary>
        public Session CreateSession(SessionOptions options = null) { return Session.Create(this, options); }

        /// <summary>kv_session_load: a session restored from an image made by Session.Save().</summary>
        public Session LoadSession(byte[] image) { return Session.Load(this, image); }

        /// <summary>kv_session_load_file: a session restored from a file made by Session.SaveFile().</summary>
        public Session LoadSessionFile(string path) { return Session.LoadFile(this, path); }

        public bool IsDisposed { get { return Handle.IsDisposed; } }

        public void Dispose() { Handle.Dispose(); }
    
        // ---- chat templates (since 0.2.0) --------------------------------------------------------

        /// <summary>kv_chat_format: the messages rendered with the model's tokenizer.chat_template
        /// (KvException Unsupported when it has none). Tokenize the text with parseSpecial and
        /// without addSpecial.</summary>
        public string ChatFormat(ChatMessage[] messages, ChatFlags flags = ChatFlags.None)
        {
            using (var m = new Lease(Handle, "Model"))
                return RenderChat(m.Ptr, null, messages, flags);
        }

        /// <summary>kv_chat_format_template: the same with a template of the caller's.</summary>
        public string ChatFormat(string chatTemplate, ChatMessage[] messages, ChatFlags flags = ChatFlags.None)
        {
            if (chatTemplate == null)
                throw new ArgumentNullException("chatTemplate");
            using (var m = new Lease(Handle, "Model"))
                return RenderChat(m.Ptr, chatTemplate, messages, flags);
        }

        /// <summary>kv_model_get_chat_template: the model's template source ("" when it has none).</summary>
        public string ChatTemplate
        {
            get
            {
                using (var m = new Lease(Handle, "Model"))
                {
                    var len = UIntPtr.Zero;
                    Check.Status(Native.kv_model_get_chat_template(m.Ptr, null, ref len));
                    while (true)
                    {
                        var buf = new byte[(int)len];
                        if (Check.Status(Native.kv_model_get_chat_template(m.Ptr, buf, ref len)) != KvStatus.Incomplete)
                            return Encoding.UTF8.GetString(buf, 0, (int)len);
                    }
                }
            }
        }

        /// <summary>chatTemplate null: kv_chat_format on model; else kv_chat_format_template (model may be zero).</summary>
        internal static string RenderChat(IntPtr model, string chatTemplate, ChatMessage[] messages, ChatFlags flags)
        {
            if (messages == null)
                throw new ArgumentNullException("messages");
            var pins = new List<GCHandle>();
            try
            {
                var native = new kv_chat_message[messages.Length];
                for (int i = 0; i < messages.Length; i++)
                {
                    if (messages[i] == null)
                        throw new ArgumentNullException("messages", "message " + i + " is null");
                    native[i].struct_size = (uint)Marshal.SizeOf(typeof(kv_chat_message));
                    native[i].role = Pin(pins, messages[i].Role);
                    native[i].content = Pin(pins, messages[i].Content);
                }
                var array = GCHandle.Alloc(native, GCHandleType.Pinned);
                pins.Add(array);
                byte[] tmpl = chatTemplate == null ? null : Utf8.ToNative(chatTemplate);
                var buf = new byte[1024];
                while (true)
                {
                    var len = (UIntPtr)buf.Length;
                    int st = chatTemplate == null
                        ? Native.kv_chat_format(model, array.AddrOfPinnedObject(), (uint)native.Length, (uint)flags, buf, ref len)
                        : Native.kv_chat_format_template(model, tmpl, array.AddrOfPinnedObject(), (uint)native.Length,
                                                         (uint)flags, buf, ref len);
                    if (Check.Status(st) != KvStatus.Incomplete)
                        return Encoding.UTF8.GetString(buf, 0, (int)len);
                    buf = new byte[(int)len];
                }
            }
            finally
            {
                foreach (var h in pins)
                    h.Free();
            }
        }

        static IntPtr Pin(List<GCHandle> pins, string text)
        {
            if (text == null)
                return IntPtr.Zero;  // the library rejects it with a message
            var h = GCHandle.Alloc(Utf8.ToNative(text), GCHandleType.Pinned);
            pins.Add(h);
            return h.AddrOfPinnedObject();
        }
    }
}
