package dev.kvulkan;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Turns token pieces (byte strings) into text as they arrive: a UTF-8 character split across
 * pieces is held back until its last byte comes. Malformed bytes become U+FFFD.
 */
final class Utf8Stream {
    private byte[] pending = new byte[0];

    /** The text completed by `piece`. */
    String feed(byte[] piece) {
        byte[] all = Arrays.copyOf(pending, pending.length + piece.length);
        System.arraycopy(piece, 0, all, pending.length, piece.length);
        int cut = completeLength(all);
        pending = Arrays.copyOfRange(all, cut, all.length);
        return new String(all, 0, cut, StandardCharsets.UTF_8);
    }

    /** Whatever is still held back (an incomplete character at the end), as text. */
    String finish() {
        String s = new String(pending, StandardCharsets.UTF_8);
        pending = new byte[0];
        return s;
    }

    /** The length of the longest prefix of `b` that does not end inside a UTF-8 character. */
    static int completeLength(byte[] b) {
        int n = b.length;
        for (int back = 1; back <= Math.min(4, n); back++) {
            int c = b[n - back] & 0xFF;
            if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
            int need = c >= 0xF8 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            return need > back ? n - back : n;
        }
        return n;  // only continuation bytes: malformed, let the decoder replace them
    }
}
