package dev.kvulkan;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * A kv_model: a GGUF file's architecture, tokenizer and weights. Thread-safe (sessions of one model
 * may run on different threads). Loaded with a runtime, the weights are on its device; with
 * {@code runtime == null} the file is only parsed (info and tokenization work, sessions fail with
 * KV_ERR_BAD_STATE).
 */
public final class Model extends NativeObject {
    private final Runtime runtime;  // keeps the runtime's wrapper reachable while the model is

    /** Loads the GGUF file at `path`. */
    public Model(Runtime runtime, String path) {
        this(runtime, new ModelDesc().path(path));
    }

    /** Loads a model as `desc` says. */
    public Model(Runtime runtime, ModelDesc desc) {
        this(runtime, Loaded.load(runtime, desc));
    }

    private Model(Runtime runtime, Loaded l) {
        super("model", l.model, Native::kv_model_destroy, runtime == null ? null : runtime.handle, l.keepAlive);
        this.runtime = runtime;
    }

    /** A model from a GGUF file's bytes (copied by the library). */
    public static Model fromBytes(Runtime runtime, byte[] gguf) {
        ModelDesc d = new ModelDesc();
        d.data = ByteBuffer.allocateDirect(gguf.length).put(gguf).flip();
        d.copyData = true;
        return new Model(runtime, d);
    }

    private static final class Loaded {
        long model;
        Object keepAlive;

        static Loaded load(Runtime runtime, ModelDesc desc) {
            if (desc == null) throw new NullPointerException("desc");
            if (desc.path != null && desc.path.indexOf('\0') >= 0) {
                throw new KvException(Native.KV_ERR_INVALID_ARGUMENT, "the model path contains U+0000");
            }
            // The model holds one use of its runtime for its whole life (released on destroy).
            long rt = runtime == null ? 0 : runtime.handle.acquire();
            long[] out = new long[1];
            boolean ok = false;
            try {
                KvException.check(Native.kv_model_load(rt, desc, out));
                ok = true;
            } finally {
                if (!ok && runtime != null) runtime.handle.release();
            }
            Loaded l = new Loaded();
            l.model = out[0];
            l.keepAlive = desc.copyData ? null : desc.data;
            return l;
        }
    }

    /** The runtime this model was loaded with (null for a parse-only model). */
    public Runtime runtime() {
        return runtime;
    }

    /** kv_model_get_info. */
    public ModelInfo info() {
        long h = handle.acquire();
        try {
            ModelInfo info = new ModelInfo();
            KvException.check(Native.kv_model_get_info(h, info));
            return info;
        } finally {
            handle.release();
        }
    }

    public int nVocab() {
        return info().nVocab;
    }

    /** n_vocab for a child's buffers: works after close() while a session keeps the model alive. */
    int nVocabInternal() {
        long h = handle.borrow();
        try {
            ModelInfo info = new ModelInfo();
            KvException.check(Native.kv_model_get_info(h, info));
            return info.nVocab;
        } finally {
            handle.release();
        }
    }

    /** The BOS token, or -1 when the model has none. */
    public int bos() {
        long h = handle.acquire();
        try {
            return Native.kv_model_token_bos(h);
        } finally {
            handle.release();
        }
    }

    /** The EOS token, or -1 when the model has none. */
    public int eos() {
        long h = handle.acquire();
        try {
            return Native.kv_model_token_eos(h);
        } finally {
            handle.release();
        }
    }

    /** True when `token` ends generation (EOS, EOT, ...). */
    public boolean isEog(int token) {
        long h = handle.acquire();
        try {
            return Native.kv_token_is_eog(h, token) != 0;
        } finally {
            handle.release();
        }
    }

    /** Tokens of `text`, with BOS (and EOS) as the model's metadata asks. */
    public int[] tokenize(String text) {
        return tokenize(text, true, false);
    }

    /** Tokens of `text`. parseSpecial: text of control tokens (e.g. "<|im_start|>") maps to them. */
    public int[] tokenize(String text, boolean addSpecial, boolean parseSpecial) {
        int flags = (addSpecial ? Native.KV_TOKENIZE_ADD_SPECIAL : 0)
                | (parseSpecial ? Native.KV_TOKENIZE_PARSE_SPECIAL : 0);
        return tokenize(text.getBytes(StandardCharsets.UTF_8), flags);
    }

    /** Tokens of UTF-8 bytes with KV_TOKENIZE_* flags. */
    public int[] tokenize(byte[] utf8, int flags) {
        long h = handle.acquire();
        try {
            int[] n = new int[1];
            int[] tokens = new int[utf8.length + 8];  // byte-level tokenizers: at most one per byte
            while (true) {
                int st = KvException.check(Native.kv_tokenize(h, utf8, flags, tokens, n));
                if (st != Native.KV_INCOMPLETE) return n[0] == tokens.length ? tokens : Arrays.copyOf(tokens, n[0]);
                tokens = new int[n[0]];
            }
        } finally {
            handle.release();
        }
    }

    /** The bytes of `tokens` (kv_detokenize; the leading space a SentencePiece tokenizer adds is removed). */
    public byte[] detokenizeBytes(int[] tokens) {
        long h = handle.acquire();
        try {
            long[] len = new long[1];
            byte[] buf = new byte[tokens.length * 8 + 16];
            while (true) {
                int st = KvException.check(Native.kv_detokenize(h, tokens, buf, len));
                if (st != Native.KV_INCOMPLETE) return Arrays.copyOf(buf, (int) len[0]);
                buf = new byte[Math.toIntExact(len[0])];
            }
        } finally {
            handle.release();
        }
    }

    /** The text of `tokens` (malformed UTF-8 becomes U+FFFD). */
    public String detokenize(int[] tokens) {
        return new String(detokenizeBytes(tokens), StandardCharsets.UTF_8);
    }

    /** One token's bytes, for streaming (control tokens give none); see {@link Session#generate}. */
    public byte[] tokenToPiece(int token) {
        long h = handle.borrow();  // also used by a session's generate() after the model's close()
        try {
            return piece(h, token);
        } finally {
            handle.release();
        }
    }

    private static byte[] piece(long h, int token) {
        long[] len = new long[1];
        byte[] buf = new byte[64];
        while (true) {
            int st = KvException.check(Native.kv_token_to_piece(h, token, buf, len));
            if (st != Native.KV_INCOMPLETE) return Arrays.copyOf(buf, (int) len[0]);
            buf = new byte[Math.toIntExact(len[0])];
        }
    }

    /** kv_model_get_cache_stats: the KV page pool of one cache type (Native.KV_CACHE_*). */
    public CacheStats cacheStats(int cacheType) {
        long h = handle.acquire();
        try {
            CacheStats s = new CacheStats();
            KvException.check(Native.kv_model_get_cache_stats(h, cacheType, s));
            return s;
        } finally {
            handle.release();
        }
    }

    /** A new session with the defaults (greedy, F16 cache). */
    public Session newSession() {
        return new Session(this, null);
    }

    public Session newSession(SessionDesc desc) {
        return new Session(this, desc);
    }

    /** A session restored from an image made by {@link Session#save()}. */
    public Session loadSession(byte[] image) {
        long h = handle.acquire();  // kept by the new session on success
        boolean ok = false;
        try {
            long[] out = new long[1];
            KvException.check(Native.kv_session_load(h, image, out));
            Session s = new Session(this, out[0]);
            ok = true;
            return s;
        } finally {
            if (!ok) handle.release();
        }
    }

    /** A session restored from a file made by {@link Session#saveFile(String)}. */
    public Session loadSessionFile(String path) {
        long h = handle.acquire();
        boolean ok = false;
        try {
            long[] out = new long[1];
            KvException.check(Native.kv_session_load_file(h, path, out));
            Session s = new Session(this, out[0]);
            ok = true;
            return s;
        } finally {
            if (!ok) handle.release();
        }
    }

    // ---- chat templates (since 0.2.0) ----

    /**
     * kv_chat_format: `messages` rendered with the model's tokenizer.chat_template (flags:
     * Native.KV_CHAT_*). Tokenize the text with parseSpecial and without addSpecial.
     */
    public String chatFormat(ChatMessage[] messages, int flags) {
        return chatFormat(null, messages, flags);
    }

    /** kv_chat_format_template: the same with a template of the caller's (null: the model's). */
    public String chatFormat(String chatTemplate, ChatMessage[] messages, int flags) {
        long h = handle.acquire();
        try {
            return renderChat(h, chatTemplate, messages, flags);
        } finally {
            handle.release();
        }
    }

    static String renderChat(long model, String chatTemplate, ChatMessage[] messages, int flags) {
        long[] len = new long[1];
        byte[] buf = new byte[1024];
        while (true) {
            int st = KvException.check(chatTemplate == null
                    ? Native.kv_chat_format(model, messages, flags, buf, len)
                    : Native.kv_chat_format_template(model, chatTemplate, messages, flags, buf, len));
            if (st != Native.KV_INCOMPLETE) return new String(buf, 0, (int) len[0], StandardCharsets.UTF_8);
            buf = new byte[Math.toIntExact(len[0])];
        }
    }

    /** kv_model_get_chat_template: the model's tokenizer.chat_template source ("" when it has none). */
    public String chatTemplate() {
        long h = handle.acquire();
        try {
            long[] len = new long[1];
            KvException.check(Native.kv_model_get_chat_template(h, null, len));
            while (true) {
                byte[] buf = new byte[Math.toIntExact(len[0])];
                int st = KvException.check(Native.kv_model_get_chat_template(h, buf, len));
                if (st != Native.KV_INCOMPLETE) return new String(buf, 0, (int) len[0], StandardCharsets.UTF_8);
            }
        } finally {
            handle.release();
        }
    }
}
