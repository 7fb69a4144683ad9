package dev.kvulkan;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Assumptions;

/**
 * The shared test data: KV_SHARED_DIR (set by ctest), else the system property kvulkan.shared.dir,
 * else ../shared of the working directory's repository. Absent data aborts the test with
 * "SKIPPED: why" on stdout (ctest then reports the test as skipped, never as passed).
 */
final class TestData {
    private TestData() {}

    static Path shared() {
        String env = System.getenv("KV_SHARED_DIR");
        if (env != null && !env.isEmpty()) return Paths.get(env);
        String prop = System.getProperty("kvulkan.shared.dir");
        if (prop != null && !prop.isEmpty()) return Paths.get(prop);
        return Paths.get("..", "shared").toAbsolutePath().normalize();
    }

    static Path need(Path p) {
        if (!Files.exists(p)) {
            String why = "SKIPPED: test data not found: " + p + " (set KV_SHARED_DIR to the shared/ directory)";
            System.out.println(why);
            Assumptions.abort(why);
        }
        return p;
    }

    static Path stories() {
        return need(shared().resolve("models/stories260K/stories260K.gguf"));
    }

    /** ../shared/reference/stories260K.once-upon-a-time.json: llama.cpp's greedy run of the model. */
    static final class Reference {
        final int[] promptIds;
        final int[] generatedIds;
        final byte[] generatedText;

        Reference(String json) {
            promptIds = ints(json, "prompt_ids");
            generatedIds = ints(json, "generated_ids");
            Matcher m = Pattern.compile("\"generated_text_hex\"\\s*:\\s*\"([0-9a-fA-F]*)\"").matcher(json);
            if (!m.find()) throw new IllegalStateException("no generated_text_hex in the reference");
            String hex = m.group(1);
            generatedText = new byte[hex.length() / 2];
            for (int i = 0; i < generatedText.length; i++) {
                generatedText[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
            }
        }

        private static int[] ints(String json, String key) {
            Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*\\[([^\\]]*)\\]").matcher(json);
            if (!m.find()) throw new IllegalStateException("no " + key + " in the reference");
            String[] parts = m.group(1).split(",");
            int[] out = new int[parts.length];
            for (int i = 0; i < parts.length; i++) out[i] = Integer.parseInt(parts[i].trim());
            return out;
        }
    }

    static Reference storiesReference() {
        Path p = need(shared().resolve("reference/stories260K.once-upon-a-time.json"));
        try {
            return new Reference(new String(Files.readAllBytes(p), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
