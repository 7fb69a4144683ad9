package dev.kvulkan;

/**
 * kv_sampler_desc. A new object is KV_SAMPLER_DESC_INIT: greedy (argmax on the GPU). Applied in
 * this order: repetition penalty over the last {@link #repeatLastN} tokens, top-k, temperature,
 * softmax, min-p, top-p, draw. {@code temperature <= 0} is greedy.
 */
public final class SamplerDesc {
    public float temperature = 0.0f;
    public int topK = 0;
    public float topP = 1.0f;
    public float minP = 0.0f;
    public float repeatPenalty = 1.0f;
    public int repeatLastN = 64;
    public long seed = 0;
    /** Since 0.2.0: added to the tokens' logits before any other step (-Infinity bans), or null. */
    public LogitBias[] logitBias = null;
    /** Since 0.2.0: tokens that are never sampled, or null. */
    public int[] bannedTokens = null;

    public SamplerDesc temperature(float t) {
        temperature = t;
        return this;
    }

    public SamplerDesc topK(int k) {
        topK = k;
        return this;
    }

    public SamplerDesc topP(float p) {
        topP = p;
        return this;
    }

    public SamplerDesc minP(float p) {
        minP = p;
        return this;
    }

    public SamplerDesc repeatPenalty(float penalty, int lastN) {
        repeatPenalty = penalty;
        repeatLastN = lastN;
        return this;
    }

    public SamplerDesc seed(long s) {
        seed = s;
        return this;
    }

    public SamplerDesc logitBias(LogitBias... bias) {
        logitBias = bias;
        return this;
    }

    public SamplerDesc bannedTokens(int... tokens) {
        bannedTokens = tokens;
        return this;
    }
}
