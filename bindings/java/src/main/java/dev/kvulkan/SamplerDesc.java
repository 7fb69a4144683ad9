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
}
