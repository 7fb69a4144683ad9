package dev.kvulkan;

/** kv_generate_desc: what {@link Native#kv_generate} generates (since 0.2.0). */
public final class GenerateDesc {
    /** Most tokens to append; 0: no limit (until another stop). */
    public int maxTokens = 0;
    /** Non-empty stop strings (UTF-8), or null. */
    public String[] stopStrings = null;
    /** Receives the text as it is produced, or null (the text is not delivered). */
    public Native.PieceCallback onPiece = null;

    public GenerateDesc maxTokens(int n) {
        maxTokens = n;
        return this;
    }

    public GenerateDesc stopStrings(String... s) {
        stopStrings = s;
        return this;
    }

    public GenerateDesc onPiece(Native.PieceCallback cb) {
        onPiece = cb;
        return this;
    }
}
