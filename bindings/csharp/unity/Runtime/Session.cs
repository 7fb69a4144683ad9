// Sessions (kv_session): one sequence with its KV cache, position, sampler and logits.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using Kvulkan.Interop;

namespace Kvulkan
{
    /// <summary>kv_sampler_desc. The defaults are greedy (argmax).</summary>
    public sealed class Sampler
    {
        /// <summary>&lt;= 0: greedy.</summary>
        public float Temperature;
        /// <summary>&lt;= 0: off.</summary>
        public int TopK;
        /// <summary>&gt;= 1: off.</summary>
        public float TopP = 1.0f;
        /// <summary>&lt;= 0: off.</summary>
        public float MinP;
        /// <summary>1: off.</summary>
        public float RepeatPenalty = 1.0f;
        /// <summary>Tokens looked back for the penalty (0: 64).</summary>
        public uint RepeatLastN = 64;
        public ulong Seed;
        /// <summary>Since 0.2.0: added to these tokens' logits before any other step
        /// (float.NegativeInfinity bans the token); null: none.</summary>
        public IDictionary<int, float> LogitBias;
        /// <summary>Since 0.2.0: tokens that are never sampled; null: none.</summary>
        public int[] BannedTokens;

        internal kv_sampler_desc ToNative()
        {
            var d = kv_sampler_desc.Init();
            d.temperature = Temperature;
            d.top_k = TopK;
            d.top_p = TopP;
            d.min_p = MinP;
            d.repeat_penalty = RepeatPenalty;
            d.repeat_last_n = RepeatLastN;
            d.seed = Seed;
            return d;
        }

        /// <summary>A copy of the sampler in unmanaged memory (free with Marshal.FreeHGlobal);
        /// IntPtr.Zero for null (greedy).</summary>
        internal static IntPtr Alloc(Sampler sampler)
        {
            if (sampler == null)
                return IntPtr.Zero;
            var d = sampler.ToNative();
            // One block: the desc, then its logit-bias entries, then its banned tokens.
            int descSize = Marshal.SizeOf(typeof(kv_sampler_desc));
            int nBias = sampler.LogitBias == null ? 0 : sampler.LogitBias.Count;
            int nBanned = sampler.BannedTokens == null ? 0 : sampler.BannedTokens.Length;
            IntPtr p = Marshal.AllocHGlobal(descSize + nBias * 8 + nBanned * 4);
            IntPtr bias = p + descSize, banned = p + descSize + nBias * 8;
            if (nBias > 0)
            {
                int i = 0;
                foreach (var kv in sampler.LogitBias)
                {
                    Marshal.WriteInt32(bias, i * 8, kv.Key);
                    Marshal.WriteInt32(bias, i * 8 + 4, BitConverter.ToInt32(BitConverter.GetBytes(kv.Value), 0));
                    i++;
                }
                d.logit_bias = bias;
                d.n_logit_bias = (uint)nBias;
            }
            if (nBanned > 0)
            {
                Marshal.Copy(sampler.BannedTokens, 0, banned, nBanned);
                d.banned_tokens = banned;
                d.n_banned_tokens = (uint)nBanned;
            }
            Marshal.StructureToPtr(d, p, false);
            return p;
        }
    }

    /// <summary>Options of kv_session_create (kv_session_desc).</summary>
    public sealed class SessionOptions
    {
        /// <summary>Capacity in tokens (0: min(model context, 4096)).</summary>
        public uint NCtx;
        public CacheType CacheType = CacheType.F16;
        /// <summary>Most tokens per prefill pass (0: 512).</summary>
        public uint NBatch;
        /// <summary>Recompute the whole sequence every step (KV_SESSION_NO_CACHE), for measurement.</summary>
        public bool NoCache;
        /// <summary>null: greedy.</summary>
        public Sampler Sampler;
        /// <summary>Sliding window in tokens (0: full attention) and attention sinks.</summary>
        public uint Window, Sinks;
    }

    /// <summary>kv_session_stats.</summary>
    public sealed class SessionStats
    {
        public uint NTokens, NCtx, PageSize, LastPrefillTokens, Pages, SharedPages;
        public ulong KvBytes, KvBytesPerToken, TokensPrefilled, TokensDecoded, ScratchBytes, PrefixHitTokens, ForwardPasses;
        public double LastPrefillMs, LastDecodeMs, TotalPrefillMs, TotalDecodeMs;
        /// <summary>Since 0.2.0: pages moved to host memory and brought back, since creation.</summary>
        public ulong PagesOffloaded, PagesRestored;
        /// <summary>Since 0.2.0: true while the session's pages are in host memory (Pages is then 0).</summary>
        public bool Offloaded;
    }

    /// <summary>How Session.GenerateUntil ended (kv_generate_stop).</summary>
    public enum GenerateStop { MaxTokens = 0, EndOfGeneration = 1, StopString = 2, Callback = 3, ContextFull = 4, Error = 5 }

    /// <summary>The outcome of Session.GenerateUntil (kv_generate_result) and its text.</summary>
    public sealed class GenerateResult
    {
        /// <summary>The text passed on (cut before the stop string), malformed UTF-8 as U+FFFD.</summary>
        public string Text;
        public int NTokens;
        public GenerateStop StopReason;
        /// <summary>Index of the stop string found, else -1.</summary>
        public int StopString;
        /// <summary>The last token sampled (the end-of-generation token when that ended it), -1 if none.</summary>
        public int LastToken;
        public ulong NBytes;
    }

    /// <summary>Pooling of Session.Embeddings (KV_EMBED_*).</summary>
    [Flags]
    public enum EmbedFlags : uint { Last = 0, Mean = 1, Normalize = 2 }

    /// <summary>One item of Session.BatchEval (kv_batch_item).</summary>
    public sealed class BatchItem
    {
        /// <summary>The session this item advances.</summary>
        public Session Session;
        /// <summary>null: one decode step (sample and append a token); else tokens to feed.</summary>
        public int[] Tokens;
        /// <summary>Token items: return the logits of every fed token (Tokens.Length x n_vocab).</summary>
        public bool WantLogits;
        /// <summary>Result of a decode item: the sampled token (also at EndOfGeneration).</summary>
        public int Token;
        /// <summary>Result: tokens that entered the cache in this call.</summary>
        public int NDone;
        /// <summary>Result: this item's status (Ok, EndOfGeneration, or its own error).</summary>
        public KvStatus Status;
        /// <summary>Result of a token item with WantLogits and status Ok; else null.</summary>
        public float[] Logits;
    }

    /// <summary>A session of a model. Not thread-safe: one thread at a time per session (the C
    /// rule); different sessions may run on different threads. Failed calls leave the session as
    /// it was (a KvException with Status ContextFull after Prefill changes nothing).</summary>
    public sealed class Session : IDisposable
    {
        /// <summary>The native kv_session, for calls through Kvulkan.Interop.Native.</summary>
        public readonly SessionHandle Handle;
        public readonly Model Model;

        /// <summary>After a DecodeStep that ended generation: the end-of-generation token (not
        /// appended); null otherwise.</summary>
        public int? EogToken { get; private set; }

        Session(Model model, SessionHandle handle)
        {
            Model = model;
            Handle = handle;
        }

        internal static Session Create(Model model, SessionOptions options)
        {
            options = options ?? new SessionOptions();
            var desc = kv_session_desc.Init();
            desc.n_ctx = options.NCtx;
            desc.cache_type = (int)options.CacheType;
            desc.n_batch = options.NBatch;
            desc.window = options.Window;
            desc.sinks = options.Sinks;
            if (options.NoCache)
                desc.flags |= Native.KV_SESSION_NO_CACHE;
            IntPtr sampler = Sampler.Alloc(options.Sampler);
            var handle = new SessionHandle();
            var m = new Lease(model.Handle, "Model");
            try
            {
                desc.sampler = sampler;
                IntPtr native;
                Check.Status(Native.kv_session_create(m.Ptr, ref desc, out native));
                handle.Adopt(native, ref m);
            }
            finally
            {
                m.Dispose();
                if (sampler != IntPtr.Zero)
                    Marshal.FreeHGlobal(sampler);
            }
            return new Session(model, handle);
        }

        internal static Session Load(Model model, byte[] image)
        {
            if (image == null)
                throw new ArgumentNullException("image");
            var handle = new SessionHandle();
            var m = new Lease(model.Handle, "Model");
            try
            {
                IntPtr native;
                Check.Status(Native.kv_session_load(m.Ptr, image, new UIntPtr((ulong)image.LongLength), out native));
                handle.Adopt(native, ref m);
            }
            finally
            {
                m.Dispose();
            }
            return new Session(model, handle);
        }

        internal static Session LoadFile(Model model, string path)
        {
            byte[] p = Utf8.ToNative(path);
            var handle = new SessionHandle();
            var m = new Lease(model.Handle, "Model");
            try
            {
                IntPtr native;
                Check.Status(Native.kv_session_load_file(m.Ptr, p, out native));
                handle.Adopt(native, ref m);
            }
            finally
            {
                m.Dispose();
            }
            return new Session(model, handle);
        }

        internal Lease Use() { return new Lease(Handle, "Session"); }

        /// <summary>kv_prefill: appends the tokens (the prompt) in batched passes. Returns Ok, or
        /// Cancelled when Cancel() (from another thread) stopped it at a chunk boundary: the session
        /// then holds the chunks done.</summary>
        public KvStatus Prefill(int[] tokens)
        {
            if (tokens == null)
                throw new ArgumentNullException("tokens");
            KvStatus status;
            using (var s = Use())
                status = Check.Status(Native.kv_prefill(s.Ptr, tokens, (uint)tokens.Length));
            EogToken = null;
            return status;
        }

        /// <summary>kv_decode_step: samples the next token and appends it. Returns false when the
        /// sampled token ends generation: it is then in `token` (and EogToken) and not appended.</summary>
        public bool DecodeStep(out int token)
        {
            KvStatus status;
            using (var s = Use())
                status = Check.Status(Native.kv_decode_step(s.Ptr, out token));
            if (status == KvStatus.EndOfGeneration)
            {
                EogToken = token;
                return false;
            }
            EogToken = null;
            return true;
        }

        /// <summary>Decode steps as a stream of token ids: stops at end of generation (the EOG
        /// token is not yielded; see EogToken) or after maxTokens. Steps run as the sequence is
        /// enumerated; an error (ContextFull, ...) is thrown from MoveNext, the tokens yielded
        /// before it staying in the session.</summary>
        public IEnumerable<int> Generate(int maxTokens)
        {
            if (maxTokens < 0)
                throw new ArgumentOutOfRangeException("maxTokens");
            return GenerateIterator(maxTokens);
        }

        IEnumerable<int> GenerateIterator(int maxTokens)
        {
            for (int i = 0; i < maxTokens; i++)
            {
                int token;
                if (!DecodeStep(out token))
                    yield break;
                yield return token;
            }
        }

        /// <summary>Generate() as text: each token's piece (kv_token_to_piece) through a UTF-8
        /// decoder that keeps state across tokens, so a character split over two tokens comes out
        /// whole. Pieces that complete no character yield nothing.</summary>
        public IEnumerable<string> GenerateText(int maxTokens)
        {
            if (maxTokens < 0)
                throw new ArgumentOutOfRangeException("maxTokens");
            return GenerateTextIterator(maxTokens);
        }

        IEnumerable<string> GenerateTextIterator(int maxTokens)
        {
            Decoder decoder = new UTF8Encoding(false, false).GetDecoder();
            var chars = new char[64];
            foreach (int token in GenerateIterator(maxTokens))
            {
                byte[] piece;
                // The session's handle holds a reference on the model's native object, so this
                // works after Model.Dispose() too (Model methods would throw).
                using (var s = Use())
                    piece = Model.PieceOf(Model.Handle.DangerousGetHandle(), token);
                string text = Decode(decoder, piece, false, ref chars);
                if (text.Length > 0)
                    yield return text;
            }
            string tail = Decode(decoder, new byte[0], true, ref chars);
            if (tail.Length > 0)
                yield return tail;
        }

        static string Decode(Decoder decoder, byte[] bytes, bool flush, ref char[] chars)
        {
            int need = decoder.GetCharCount(bytes, 0, bytes.Length, flush);
            if (need > chars.Length)
                chars = new char[need];
            int n = decoder.GetChars(bytes, 0, bytes.Length, chars, 0, flush);
            return new string(chars, 0, n);
        }

        /// <summary>kv_session_reset: back to an empty sequence.</summary>
        public void Reset()
        {
            using (var s = Use())
                Check.Status(Native.kv_session_reset(s.Ptr));
            EogToken = null;
        }

        /// <summary>kv_session_logits: the n_vocab logits after the last processed token.</summary>
        public float[] Logits()
        {
            var logits = new float[Model.NVocab];
            using (var s = Use())
                Check.Status(Native.kv_session_logits(s.Ptr, logits, (uint)logits.Length));
            return logits;
        }

        /// <summary>kv_session_eval: appends the tokens and returns the logits of every one of them
        /// (tokens.Length x n_vocab, row-major), or null with wantLogits false.</summary>
        public float[] Eval(int[] tokens, bool wantLogits = true)
        {
            if (tokens == null)
                throw new ArgumentNullException("tokens");
            float[] logits = wantLogits ? new float[(long)tokens.Length * Model.NVocab] : null;
            using (var s = Use())
                Check.Status(Native.kv_session_eval(s.Ptr, tokens, (uint)tokens.Length, logits,
                                                    logits == null ? 0ul : (ulong)logits.LongLength));
            EogToken = null;
            return logits;
        }

        /// <summary>kv_session_set_sampler (null: greedy).</summary>
        public void SetSampler(Sampler sampler)
        {
            IntPtr p = Sampler.Alloc(sampler);
            try
            {
                using (var s = Use())
                    Check.Status(Native.kv_session_set_sampler(s.Ptr, p));
            }
            finally
            {
                if (p != IntPtr.Zero)
                    Marshal.FreeHGlobal(p);
            }
        }

        /// <summary>kv_session_get_stats.</summary>
        public SessionStats Stats()
        {
            var t = new kv_session_stats();
            t.struct_size = (uint)Marshal.SizeOf(typeof(kv_session_stats));
            using (var s = Use())
                Check.Status(Native.kv_session_get_stats(s.Ptr, ref t));
            return new SessionStats
            {
                NTokens = t.n_tokens, NCtx = t.n_ctx, PageSize = t.page_size, KvBytes = t.kv_bytes,
                KvBytesPerToken = t.kv_bytes_per_token, TokensPrefilled = t.tokens_prefilled,
                TokensDecoded = t.tokens_decoded, LastPrefillMs = t.last_prefill_ms,
                LastPrefillTokens = t.last_prefill_tokens, LastDecodeMs = t.last_decode_ms,
                TotalPrefillMs = t.total_prefill_ms, TotalDecodeMs = t.total_decode_ms,
                ScratchBytes = t.scratch_bytes, Pages = t.pages, SharedPages = t.shared_pages,
                PrefixHitTokens = t.prefix_hit_tokens, ForwardPasses = t.forward_passes,
                PagesOffloaded = t.pages_offloaded, PagesRestored = t.pages_restored, Offloaded = t.offloaded != 0,
            };
        }

        /// <summary>Tokens in the cache now.</summary>
        public int NTokens { get { return (int)Stats().NTokens; } }

        /// <summary>kv_session_fork: a new session sharing this one's KV pages (copy-on-write),
        /// with the same tokens, logits, settings and sampler state. Dispose both.</summary>
        public Session Fork()
        {
            var handle = new SessionHandle();
            // The child depends on the model, not on this session: it holds the model's handle.
            var m = new Lease(Model.Handle, "Model");
            try
            {
                using (var s = Use())
                {
                    IntPtr native;
                    Check.Status(Native.kv_session_fork(s.Ptr, out native));
                    handle.Adopt(native, ref m);
                }
            }
            finally
            {
                m.Dispose();
            }
            return new Session(Model, handle);
        }

        /// <summary>kv_session_truncate: keeps the first nTokens tokens and recomputes the logits
        /// after the last of them.</summary>
        public void Truncate(int nTokens)
        {
            if (nTokens < 0)
                throw new ArgumentOutOfRangeException("nTokens");
            using (var s = Use())
                Check.Status(Native.kv_session_truncate(s.Ptr, (uint)nTokens));
            EogToken = null;
        }

        /// <summary>kv_session_save: the session's image (tokens, KV pages, logits, settings,
        /// sampler state), for Model.LoadSession.</summary>
        public byte[] Save()
        {
            using (var s = Use())
            {
                var size = UIntPtr.Zero;
                var status = Check.Status(Native.kv_session_save(s.Ptr, null, ref size));
                if (status != KvStatus.Incomplete && size == UIntPtr.Zero)
                    return new byte[0];
                var image = new byte[(long)size.ToUInt64()];
                Check.Status(Native.kv_session_save(s.Ptr, image, ref size));
                if ((long)size.ToUInt64() != image.LongLength)
                    throw new KvException(KvStatus.Internal, "kv_session_save wrote " + size + " bytes, announced " + image.LongLength);
                return image;
            }
        }

        /// <summary>kv_session_save_file.</summary>
        public void SaveFile(string path)
        {
            byte[] p = Utf8.ToNative(path);
            using (var s = Use())
                Check.Status(Native.kv_session_save_file(s.Ptr, p));
        }

        /// <summary>kv_decode_batch: one decode step for each session, in one forward pass. Fills
        /// tokens[i] and statuses[i] per session (Ok, EndOfGeneration, or that session's error,
        /// which leaves it unchanged); throws only for an error of the whole call.</summary>
        public static void DecodeBatch(Session[] sessions, int[] tokens, KvStatus[] statuses)
        {
            if (sessions == null || tokens == null || statuses == null)
                throw new ArgumentNullException(sessions == null ? "sessions" : tokens == null ? "tokens" : "statuses");
            int n = sessions.Length;
            if (tokens.Length < n || statuses.Length < n)
                throw new ArgumentException("tokens and statuses need one element per session");
            var leases = new Lease[n];
            var ptrs = new IntPtr[n];
            var status = new int[n];
            try
            {
                for (int i = 0; i < n; i++)
                {
                    if (sessions[i] == null)
                        throw new ArgumentNullException("sessions", "sessions[" + i + "] is null");
                    leases[i] = sessions[i].Use();
                    ptrs[i] = leases[i].Ptr;
                }
                Check.Status(Native.kv_decode_batch(ptrs, (uint)n, tokens, status));
            }
            finally
            {
                for (int i = 0; i < n; i++)
                    leases[i].Dispose();
            }
            for (int i = 0; i < n; i++)
            {
                statuses[i] = (KvStatus)status[i];
                sessions[i].EogToken = statuses[i] == KvStatus.EndOfGeneration ? tokens[i] : (int?)null;
            }
        }

        /// <summary>kv_batch_eval: any mix of decode items (Tokens null) and token items (prefill
        /// chunks, verifies) of one model's sessions in as few forward passes as the row limit
        /// allows. Fills each item's Token, NDone, Status and (with WantLogits) Logits; throws only
        /// for an error of the whole call. A token item may get NDone below its token count:
        /// call again with the rest (see kvulkan.h).</summary>
        public static void BatchEval(BatchItem[] items)
        {
            if (items == null)
                throw new ArgumentNullException("items");
            int n = items.Length;
            var leases = new Lease[n];
            var pins = new List<GCHandle>();
            var native = new kv_batch_item[n];
            GCHandle array = default(GCHandle);
            try
            {
                for (int i = 0; i < n; i++)
                {
                    BatchItem item = items[i];
                    if (item == null || item.Session == null)
                        throw new ArgumentNullException("items", "items[" + i + "] or its Session is null");
                    leases[i] = item.Session.Use();
                    native[i] = kv_batch_item.Init();
                    native[i].session = leases[i].Ptr;
                    item.Logits = null;
                    if (item.Tokens != null)
                    {
                        native[i].n_tokens = (uint)item.Tokens.Length;
                        var t = GCHandle.Alloc(item.Tokens, GCHandleType.Pinned);
                        pins.Add(t);
                        native[i].tokens = t.AddrOfPinnedObject();
                        if (item.WantLogits)
                        {
                            item.Logits = new float[(long)item.Tokens.Length * item.Session.Model.NVocab];
                            var l = GCHandle.Alloc(item.Logits, GCHandleType.Pinned);
                            pins.Add(l);
                            native[i].logits = l.AddrOfPinnedObject();
                            native[i].logits_capacity = (ulong)item.Logits.LongLength;
                        }
                    }
                }
                array = GCHandle.Alloc(native, GCHandleType.Pinned);
                Check.Status(Native.kv_batch_eval(array.AddrOfPinnedObject(), (uint)n));
            }
            finally
            {
                if (array.IsAllocated)
                    array.Free();
                foreach (var p in pins)
                    p.Free();
                for (int i = 0; i < n; i++)
                    leases[i].Dispose();
            }
            for (int i = 0; i < n; i++)
            {
                BatchItem item = items[i];
                item.Token = native[i].token;
                item.NDone = (int)native[i].n_done;
                item.Status = (KvStatus)native[i].status;
                if (item.Status != KvStatus.Ok)
                    item.Logits = null;
                if (item.Tokens == null)
                    item.Session.EogToken = item.Status == KvStatus.EndOfGeneration ? item.Token : (int?)null;
            }
        }

        /// <summary>kv_decode_speculative: one greedy speculative step (draft null: prompt lookup;
        /// else a session of a smaller model with the same vocabulary). Returns the tokens
        /// appended (at least one); endOfGeneration true when the last of them ended generation
        /// (it is not appended; also in EogToken). drafted: draft tokens verified.</summary>
        public int[] DecodeSpeculative(Session draft, int draftN, out bool endOfGeneration, out int drafted)
        {
            if (draftN < 0)
                throw new ArgumentOutOfRangeException("draftN");
            var buffer = new int[draftN + 1];
            uint nOut, nDrafted;
            KvStatus status;
            var d = new Lease(draft == null ? null : draft.Handle, "Session");
            try
            {
                using (var s = Use())
                    status = Check.Status(Native.kv_decode_speculative(s.Ptr, d.Ptr, (uint)draftN, buffer,
                                                                        (uint)buffer.Length, out nOut, out nDrafted));
            }
            finally
            {
                d.Dispose();
            }
            var result = new int[nOut];
            Array.Copy(buffer, result, (int)nOut);
            endOfGeneration = status == KvStatus.EndOfGeneration;
            EogToken = endOfGeneration && nOut > 0 ? result[nOut - 1] : (int?)null;
            drafted = (int)nDrafted;
            return result;
        }

        // ---- non-blocking work and cancellation (since 0.2.0) ----------------------------------

        /// <summary>kv_submit_prefill: Prefill on kvulkan's worker thread; returns at once (the
        /// tokens are copied). Throws KvException for a bad argument, or with KvStatus.Busy while
        /// the session is in use (a ticket of it still runs); the prefill's own errors are the
        /// ticket's status. `onComplete` (may be null) runs on the worker thread when it is done:
        /// it should return quickly and must not Wait for a ticket still running.</summary>
        public Ticket SubmitPrefill(int[] tokens, Action<Ticket, KvStatus> onComplete = null)
        {
            if (tokens == null)
                throw new ArgumentNullException("tokens");
            return Ticket.Submit(new[] { this }, onComplete,
                                 (IntPtr[] s, IntPtr cb, IntPtr user, out IntPtr t) =>
                                     Native.kv_submit_prefill(s[0], tokens, (uint)tokens.Length, cb, user, out t));
        }

        /// <summary>kv_submit_decode: DecodeStep on the worker thread; Ticket.GetToken gives its
        /// token (EogToken of this object is not updated).</summary>
        public Ticket SubmitDecode(Action<Ticket, KvStatus> onComplete = null)
        {
            return Ticket.Submit(new[] { this }, onComplete,
                                 (IntPtr[] s, IntPtr cb, IntPtr user, out IntPtr t) =>
                                     Native.kv_submit_decode(s[0], cb, user, out t));
        }

        /// <summary>kv_submit_decode_batch: DecodeBatch on the worker thread; Ticket.Results gives a
        /// token and status per session (a session in use gets Busy as its own status).</summary>
        public static Ticket SubmitDecodeBatch(Session[] sessions, Action<Ticket, KvStatus> onComplete = null)
        {
            if (sessions == null)
                throw new ArgumentNullException("sessions");
            return Ticket.Submit((Session[])sessions.Clone(), onComplete,
                                 (IntPtr[] s, IntPtr cb, IntPtr user, out IntPtr t) =>
                                     Native.kv_submit_decode_batch(s, (uint)s.Length, cb, user, out t));
        }

        /// <summary>kv_session_cancel: asks the prefill running on this session (submitted, or
        /// Prefill on another thread) to stop at its next chunk boundary; it then ends with
        /// KvStatus.Cancelled and the session keeps the chunks done, usable. No effect when nothing
        /// runs. Any thread; never blocks.</summary>
        public void Cancel()
        {
            using (var s = Use())
                Check.Status(Native.kv_session_cancel(s.Ptr));
        }

        public bool IsDisposed { get { return Handle.IsDisposed; } }

        public void Dispose() { Handle.Dispose(); }
    
        // ---- since 0.2.0 -------------------------------------------------------------------------

        /// <summary>kv_session_offload: moves the session's KV pages to host memory (a paused
        /// conversation); the next call that needs them brings them back, and the session continues
        /// exactly as if they had stayed. A no-op when already offloaded or empty.</summary>
        public void Offload()
        {
            using (var s = Use())
                Check.Status(Native.kv_session_offload(s.Ptr));
        }

        /// <summary>kv_generate: up to maxTokens tokens (0: no limit), their text cut before the
        /// first of stopStrings found (the stop string's tokens stay in the session). onPiece (may be
        /// null) gets each piece of UTF-8 as it is produced; returning false stops. An exception it
        /// throws stops generation and is rethrown here.</summary>
        public GenerateResult GenerateUntil(int maxTokens, string[] stopStrings = null, Func<byte[], bool> onPiece = null)
        {
            if (maxTokens < 0)
                throw new ArgumentOutOfRangeException("maxTokens");
            int nStops = stopStrings == null ? 0 : stopStrings.Length;
            var pins = new List<GCHandle>();
            var sink = new PieceSink { Callback = onPiece };
            GCHandle target = GCHandle.Alloc(sink);
            try
            {
                var ptrs = new IntPtr[nStops];
                for (int i = 0; i < nStops; i++)
                {
                    var h = GCHandle.Alloc(Utf8.ToNative(stopStrings[i]), GCHandleType.Pinned);
                    pins.Add(h);
                    ptrs[i] = h.AddrOfPinnedObject();
                }
                var array = GCHandle.Alloc(ptrs, GCHandleType.Pinned);
                pins.Add(array);
                var desc = kv_generate_desc.Init();
                desc.max_tokens = (uint)maxTokens;
                desc.stop_strings = nStops == 0 ? IntPtr.Zero : array.AddrOfPinnedObject();
                desc.n_stop_strings = (uint)nStops;
                desc.on_piece = PieceThunkPointer;
                desc.user_data = GCHandle.ToIntPtr(target);
                var r = kv_generate_result.Create();
                int st;
                using (var s = Use())
                    st = Native.kv_generate(s.Ptr, ref desc, ref r);
                if (sink.Error != null)
                    throw sink.Error;
                Check.Status(st);
                EogToken = null;
                return new GenerateResult
                {
                    Text = Encoding.UTF8.GetString(sink.Text.ToArray()), NTokens = (int)r.n_tokens,
                    StopReason = (GenerateStop)r.stop_reason, StopString = r.stop_string, LastToken = r.last_token,
                    NBytes = r.n_bytes,
                };
            }
            finally
            {
                foreach (var h in pins)
                    h.Free();
                target.Free();
            }
        }

        sealed class PieceSink
        {
            public readonly System.IO.MemoryStream Text = new System.IO.MemoryStream();
            public Func<byte[], bool> Callback;
            public Exception Error;
        }

        static readonly kv_piece_fn PieceThunk = OnPiece;  // kept alive for the process
        static readonly IntPtr PieceThunkPointer = Marshal.GetFunctionPointerForDelegate(PieceThunk);

        [MonoPInvokeCallback(typeof(kv_piece_fn))]
        static int OnPiece(IntPtr user, IntPtr text, UIntPtr len)
        {
            var sink = (PieceSink)GCHandle.FromIntPtr(user).Target;
            try
            {
                var bytes = new byte[(int)len];
                Marshal.Copy(text, bytes, 0, bytes.Length);
                sink.Text.Write(bytes, 0, bytes.Length);
                return sink.Callback == null || sink.Callback(bytes) ? 0 : 1;
            }
            catch (Exception e)
            {
                sink.Error = e;  // never unwinds into the library
                return 1;
            }
        }

        /// <summary>kv_session_set_grammar: from the next sampled token on, only text of the GBNF
        /// grammar can be generated (rootRule null: "root"); gbnf null removes the grammar.</summary>
        public void SetGrammar(string gbnf, string rootRule = null)
        {
            using (var s = Use())
                Check.Status(Native.kv_session_set_grammar(s.Ptr, gbnf == null ? null : Utf8.ToNative(gbnf),
                                                           rootRule == null ? null : Utf8.ToNative(rootRule)));
        }

        /// <summary>kv_session_embeddings: the final hidden state (n_embd floats) of tokens after
        /// the session's own, pooled per flags; the session does not change.</summary>
        public float[] Embeddings(int[] tokens, EmbedFlags flags = EmbedFlags.Last)
        {
            if (tokens == null)
                throw new ArgumentNullException("tokens");
            var output = new float[Model.Info().NEmbd];
            using (var s = Use())
                Check.Status(Native.kv_session_embeddings(s.Ptr, tokens, (uint)tokens.Length, (uint)flags, output,
                                                          (uint)output.Length));
            return output;
        }
    }
}
