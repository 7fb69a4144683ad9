package dev.kvulkan;

/** kv_logit_bias: {@code bias} is added to {@code token}'s logit; -Infinity bans it (since 0.2.0). */
public final class LogitBias {
    public int token;
    public float bias;

    public LogitBias() {}

    public LogitBias(int token, float bias) {
        this.token = token;
        this.bias = bias;
    }
}
