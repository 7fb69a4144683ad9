package dev.kvulkan;

/** kv_batch_item, for {@link Native#kv_batch_eval}: inputs set by the caller, results by the call. */
public final class BatchItem {
    /** A kv_session handle ({@link Session#handle()}). */
    public long session;
    /** null: one decode step; else the tokens to feed (n_tokens = tokens.length). */
    public int[] tokens;
    /** null, or the logits of every fed token (n_tokens x n_vocab floats), written on KV_OK. */
    public float[] logits;
    // Results:
    /** Decode items: the sampled token. */
    public int token = -1;
    /** Tokens that entered the cache in this call. */
    public int nDone;
    /** This item's kv_status. */
    public int status;

    public BatchItem() {}

    public BatchItem(long session, int[] tokens, float[] logits) {
        this.session = session;
        this.tokens = tokens;
        this.logits = logits;
    }
}
