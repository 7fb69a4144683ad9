package dev.kvulkan;

/**
 * Receives the tokens of {@link Session#generate(int, TokenListener)} one by one, as they are
 * decoded. {@code text} is the token's piece as UTF-8 text; a character whose bytes span several
 * tokens arrives whole with the token that completes it (the tokens before give ""). Return false
 * to stop generating.
 */
@FunctionalInterface
public interface TokenListener {
    boolean onToken(int token, String text);
}
