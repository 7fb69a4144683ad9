package dev.kvulkan;

import java.nio.ByteBuffer;

/**
 * kv_model_desc: how to load a {@link Model}. Exactly one of {@link #path} or {@link #data}. A new
 * object holds the KV_MODEL_DESC_INIT defaults.
 */
public final class ModelDesc {
    /** KV_MODEL_* bits (KV_MODEL_VOCAB_ONLY). */
    public int flags = 0;
    /** A GGUF file (memory-mapped). */
    public String path = null;
    /**
     * Or: a GGUF file in memory, between the buffer's position and limit. Must be a direct
     * ByteBuffer. With {@link #copyData} false the library reads it in place for the model's whole
     * life (the {@link Model} keeps a reference to it).
     */
    public ByteBuffer data = null;
    public boolean copyData = false;
    /** Tokens per KV page (0: 16). */
    public int kvPageSize = 0;
    /** Capacity of each KV pool in tokens (0: the library's choice). */
    public int kvPoolTokens = 0;
    /** Since 0.2.0: host bytes for the KV pages of offloaded sessions (0: no LRU offload, no limit). */
    public long hostOffloadBytes = 0;

    public ModelDesc path(String p) {
        path = p;
        return this;
    }

    public ModelDesc vocabOnly(boolean on) {
        flags = on ? (flags | Native.KV_MODEL_VOCAB_ONLY) : (flags & ~Native.KV_MODEL_VOCAB_ONLY);
        return this;
    }

    public ModelDesc kvPageSize(int tokens) {
        kvPageSize = tokens;
        return this;
    }

    public ModelDesc kvPoolTokens(int tokens) {
        kvPoolTokens = tokens;
        return this;
    }

    public ModelDesc hostOffloadBytes(long bytes) {
        hostOffloadBytes = bytes;
        return this;
    }
}
