package dev.kvulkan;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * A kv_session: one sequence with its KV cache, position, sampler and last logits. One thread at a
 * time per session; sessions of one model may run on different threads.
 */
public final class Session extends NativeObject {
    /** What {@link #decodeStep()} returns at end of generation (token ids are never negative). */
    public static final int END_OF_GENERATION = -1;

    private final Model model;  // keeps the model's wrapper reachable while the session is
    private int eogToken = -1;

    /** A session with the defaults (greedy sampling, F16 KV cache). */
    public Session(Model model) {
        this(model, (SessionDesc) null);
    }

    /** A session made from `desc` (null: KV_SESSION_DESC_INIT). */
    public Session(Model model, SessionDesc desc) {
        this(model, create(model, desc));
    }

    /** Adopts a session handle; the caller has acquired `model.handle` once for it. */
    Session(Model model, long session) {
        super("session", session, Native::kv_session_destroy, model.handle, null);
        this.model = model;
    }

    private static long create(Model model, SessionDesc desc) {
        long m = model.handle.acquire();  // kept by the session on success
        boolean ok = false;
        try {
            long[] out = new long[1];
            KvException.check(Native.kv_session_create(m, desc, out));
            ok = true;
            return out[0];
        } finally {
            if (!ok) model.handle.release();
        }
    }

    public Model model() {
        return model;
    }

    /**
     * Appends `tokens` (the prompt, or what follows) in batched passes; the logits of the last
     * remain. Returns {@link Native#KV_OK}, or {@link Native#KV_CANCELLED} when {@link #cancel()}
     * (from another thread) stopped it at a chunk boundary: the session then holds the chunks done.
     */
    public int prefill(int[] tokens) {
        long h = handle.acquire();
        try {
            return KvException.check(Native.kv_prefill(h, tokens));
        } finally {
            handle.release();
        }
    }

    /**
     * kv_decode_step: samples the next token, appends it and computes the logits that follow.
     * Returns the token, or {@link #END_OF_GENERATION} when the sampled token ends generation: it
     * is then not appended, and {@link #eogToken()} gives it.
     */
    public int decodeStep() {
        long h = handle.acquire();
        try {
            int[] t = new int[1];
            int st = KvException.check(Native.kv_decode_step(h, t));
            if (st == Native.KV_END_OF_GENERATION) {
                eogToken = t[0];
                return END_OF_GENERATION;
            }
            eogToken = -1;
            return t[0];
        } finally {
            handle.release();
        }
    }

    /** The end-of-generation token the last {@link #decodeStep()} sampled, or -1. */
    public int eogToken() {
        return eogToken;
    }

    /** Generates up to `maxTokens` tokens (fewer at end of generation); returns them. */
    public int[] generate(int maxTokens) {
        return generate(maxTokens, null);
    }

    /**
     * Generates up to `maxTokens` tokens with {@link #decodeStep()}, giving each to `listener`
     * (may be null) with its text as soon as it is decoded; stops early at end of generation or
     * when the listener returns false. Returns the tokens appended.
     */
    public int[] generate(int maxTokens, TokenListener listener) {
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens < 0");
        int[] out = new int[Math.min(maxTokens, 4096)];
        int n = 0;
        Utf8Stream text = new Utf8Stream();
        while (n < maxTokens) {
            int t = decodeStep();
            if (t == END_OF_GENERATION) break;
            if (n == out.length) out = Arrays.copyOf(out, Math.min(maxTokens, out.length * 2));
            out[n++] = t;
            if (listener != null && !listener.onToken(t, text.feed(model.tokenToPiece(t)))) break;
        }
        return Arrays.copyOf(out, n);
    }

    /** Generates up to `maxTokens` tokens and returns their text (as concatenated pieces). */
    public String generateText(int maxTokens) {
        StringBuilder sb = new StringBuilder();
        Utf8Stream text = new Utf8Stream();
        for (int t : generate(maxTokens)) sb.append(text.feed(model.tokenToPiece(t)));
        return sb.append(text.finish()).toString();
    }

    /** Back to an empty sequence (keeps allocations and the sampler settings). */
    public void reset() {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_reset(h));
        } finally {
            handle.release();
        }
    }

    /** The current logits (n_vocab floats). */
    public float[] logits() {
        float[] out = new float[model.nVocabInternal()];
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_logits(h, out));
            return out;
        } finally {
            handle.release();
        }
    }

    /** kv_session_eval: appends `tokens` and returns the logits of every one (tokens.length x n_vocab, row-major). */
    public float[] eval(int[] tokens) {
        float[] out = new float[Math.multiplyExact(tokens.length, model.nVocabInternal())];
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_eval(h, tokens, out));
            return out;
        } finally {
            handle.release();
        }
    }

    /** Replaces the sampler (null: greedy). */
    public void setSampler(SamplerDesc sampler) {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_set_sampler(h, sampler));
        } finally {
            handle.release();
        }
    }

    /** kv_session_get_stats. */
    public SessionStats stats() {
        long h = handle.acquire();
        try {
            SessionStats s = new SessionStats();
            KvException.check(Native.kv_session_get_stats(h, s));
            return s;
        } finally {
            handle.release();
        }
    }

    /** Tokens in the cache now. */
    public int nTokens() {
        return stats().nTokens;
    }

    /** A new session sharing this one's KV pages copy-on-write, with the same tokens, logits and sampler. */
    public Session fork() {
        long h = handle.acquire();
        model.handle.borrow();  // kept by the child on success
        boolean ok = false;
        try {
            long[] out = new long[1];
            KvException.check(Native.kv_session_fork(h, out));
            Session child = new Session(model, out[0]);
            ok = true;
            return child;
        } finally {
            if (!ok) model.handle.release();
            handle.release();
        }
    }

    /** Keeps the first `nTokens` tokens and recomputes the logits after them (0: reset). */
    public void truncate(int nTokens) {
        if (nTokens < 0) throw new KvException(Native.KV_ERR_INVALID_ARGUMENT, "nTokens < 0");
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_truncate(h, nTokens));
        } finally {
            handle.release();
        }
    }

    /** The session's image (tokens, KV pages, logits, settings, sampler state); see {@link Model#loadSession}. */
    public byte[] save() {
        long h = handle.acquire();
        try {
            long[] size = new long[1];
            KvException.check(Native.kv_session_save(h, null, size));
            while (true) {
                byte[] buf = new byte[Math.toIntExact(size[0])];
                int st = KvException.check(Native.kv_session_save(h, buf, size));
                if (st != Native.KV_INCOMPLETE) return size[0] == buf.length ? buf : Arrays.copyOf(buf, (int) size[0]);
            }
        } finally {
            handle.release();
        }
    }

    /** Writes the session's image to a file; see {@link Model#loadSessionFile}. */
    public void saveFile(String path) {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_save_file(h, path));
        } finally {
            handle.release();
        }
    }

    /**
     * kv_decode_speculative: one greedy speculative step with up to `draftN` drafted tokens, from
     * `draft` (a session of a smaller model with the same vocabulary, kept in step by this call)
     * or, with null, from prompt lookup. Returns the tokens appended (at end of generation the
     * end token is not appended and {@link #eogToken()} gives it).
     */
    public int[] decodeSpeculative(Session draft, int draftN) {
        if (draftN < 0) throw new KvException(Native.KV_ERR_INVALID_ARGUMENT, "draftN < 0");
        long h = handle.acquire();
        long d = 0;
        try {
            if (draft != null) d = draft.handle.acquire();
            int[] out = new int[draftN + 1];
            int[] nOut = new int[1];
            int st = KvException.check(Native.kv_decode_speculative(h, d, draftN, out, nOut, null));
            int n = nOut[0];
            eogToken = -1;
            if (st == Native.KV_END_OF_GENERATION && n > 0) {
                eogToken = out[n - 1];
                n--;
            }
            return Arrays.copyOf(out, n);
        } finally {
            if (d != 0) draft.handle.release();
            handle.release();
        }
    }

    /**
     * kv_decode_batch: one decode step for each session, in one forward pass. Returns the tokens;
     * statuses[i] (an array of sessions.length, or null) gets session i's kv_status (KV_OK,
     * KV_END_OF_GENERATION with the token set but not appended, or an error). With statuses null,
     * the first session's error is thrown.
     */
    public static int[] decodeBatch(Session[] sessions, int[] statuses) {
        long[] handles = new long[sessions.length];
        int acquired = 0;
        try {
            for (; acquired < sessions.length; acquired++) handles[acquired] = sessions[acquired].handle.acquire();
            int[] tokens = new int[sessions.length];
            int[] st = statuses != null ? statuses : new int[sessions.length];
            KvException.check(Native.kv_decode_batch(handles, tokens, st));
            if (statuses == null) {
                for (int s : st) {
                    if (s < 0) throw new KvException(s, Native.kv_last_error_message());
                }
            }
            return tokens;
        } finally {
            for (int i = 0; i < acquired; i++) sessions[i].handle.release();
        }
    }

    // ---- non-blocking work and cancellation ----

    /**
     * kv_submit_prefill: {@link #prefill} on kvulkan's worker thread; returns at once. `tokens`
     * is copied. Throws {@link KvException} for a bad argument or with {@link Native#KV_ERR_BUSY}
     * when the session is in use (a ticket of it still runs); the prefill's own errors are the
     * ticket's status.
     */
    public Ticket submitPrefill(int[] tokens) {
        return submitPrefill(tokens, null);
    }

    /** {@link #submitPrefill(int[])}, telling `listener` (may be null) on the worker thread when done. */
    public Ticket submitPrefill(int[] tokens, TicketListener listener) {
        return Ticket.submit(new Session[] {this}, listener, (s, cb, out) -> Native.kv_submit_prefill(s[0], tokens, cb, out));
    }

    /** kv_submit_decode: {@link #decodeStep()} on the worker thread; {@link Ticket#token()} gives its token. */
    public Ticket submitDecode() {
        return submitDecode(null);
    }

    /** {@link #submitDecode()}, telling `listener` (may be null) on the worker thread when done. */
    public Ticket submitDecode(TicketListener listener) {
        return Ticket.submit(new Session[] {this}, listener, (s, cb, out) -> Native.kv_submit_decode(s[0], cb, out));
    }

    /**
     * kv_submit_decode_batch: {@link #decodeBatch} on the worker thread. The ticket's
     * {@link Ticket#tokens()} and {@link Ticket#statuses()} hold one entry per session; a session
     * in use gets KV_ERR_BUSY as its own status.
     */
    public static Ticket submitDecodeBatch(Session... sessions) {
        return submitDecodeBatch(sessions, null);
    }

    /** {@link #submitDecodeBatch(Session...)}, telling `listener` (may be null) on the worker thread when done. */
    public static Ticket submitDecodeBatch(Session[] sessions, TicketListener listener) {
        return Ticket.submit(sessions.clone(), listener, (s, cb, out) -> Native.kv_submit_decode_batch(s, cb, out));
    }

    /**
     * kv_session_cancel: asks the prefill running on this session (submitted, or {@link #prefill}
     * on another thread) to stop at its next chunk boundary; it then ends with
     * {@link Native#KV_CANCELLED} ({@link #prefill} returns normally) and the session keeps the
     * chunks done, usable. No effect when nothing runs. Any thread; never blocks.
     */
    public void cancel() {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_cancel(h));
        } finally {
            handle.release();
        }
    }

    // ---- since 0.2.0 ----

    /**
     * kv_session_offload: moves this session's KV pages to host memory (for a paused
     * conversation); the next call that needs them brings them back and continues exactly as if
     * they had stayed. A no-op when already offloaded or empty.
     */
    public void offload() {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_offload(h));
        } finally {
            handle.release();
        }
    }

    /** kv_generate: generates per `desc` (null: until end of generation or a full context). */
    public GenerateResult generate(GenerateDesc desc) {
        GenerateResult r = new GenerateResult();
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_generate(h, desc, r));
            return r;
        } finally {
            handle.release();
        }
    }

    /**
     * Generates up to `maxTokens` tokens (0: no limit) with kv_generate and returns their text, cut
     * before the first of `stopStrings` found (the tokens of the stop string stay in the session).
     */
    public String generateText(int maxTokens, String... stopStrings) {
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens < 0");
        ByteArrayOutputStream text = new ByteArrayOutputStream();
        generate(new GenerateDesc().maxTokens(maxTokens).stopStrings(stopStrings).onPiece(piece -> {
            text.write(piece, 0, piece.length);
            return 0;
        }));
        return new String(text.toByteArray(), StandardCharsets.UTF_8);
    }

    /**
     * kv_session_set_grammar: from the next sampled token on, only text of the GBNF grammar `gbnf`
     * (root rule "root") can be generated; null removes the grammar.
     */
    public void setGrammar(String gbnf) {
        setGrammar(gbnf, null);
    }

    public void setGrammar(String gbnf, String rootRule) {
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_set_grammar(h, gbnf, rootRule));
        } finally {
            handle.release();
        }
    }

    /**
     * kv_session_embeddings: the final hidden state (n_embd floats) of `tokens` after this
     * session's tokens, pooled per `flags` (Native.KV_EMBED_*); the session does not change.
     */
    public float[] embeddings(int[] tokens, int flags) {
        float[] out = new float[model.info().nEmbd];
        long h = handle.acquire();
        try {
            KvException.check(Native.kv_session_embeddings(h, tokens, flags, out));
            return out;
        } finally {
            handle.release();
        }
    }
}
