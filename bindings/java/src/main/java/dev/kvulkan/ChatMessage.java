package dev.kvulkan;

/** kv_chat_message: one message of a conversation (since 0.2.0). */
public final class ChatMessage {
    /** "system", "user", "assistant", "tool", ... */
    public String role;
    public String content;

    public ChatMessage() {}

    public ChatMessage(String role, String content) {
        this.role = role;
        this.content = content;
    }
}
