package dev.kvulkan;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The Java binding against stories260K on the default device (lavapipe in CI) with the validation
 * layer on: every test compares with tokens computed another way (llama.cpp's reference run in
 * ../shared/reference, or the C API called through the low-level layer step by step). After all
 * tests: no validation message, and every native object destroyed.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class KvulkanTest {
    static final int STREAM = 32;

    Runtime runtime;
    Model model;
    TestData.Reference ref;
    final List<String> logs = Collections.synchronizedList(new ArrayList<>());
    final List<String> validationLogs = Collections.synchronizedList(new ArrayList<>());

    @BeforeAll
    void open() {
        Path stories = TestData.stories();
        ref = TestData.storiesReference();
        RuntimeDesc d = new RuntimeDesc().validation(true).logListener((level, message) -> {
            logs.add(level + " " + message);
            if (level == Native.KV_LOG_VALIDATION) validationLogs.add(message);
        });
        runtime = new Runtime(d);
        model = runtime.loadModel(stories.toString());
    }

    @AfterAll
    void close() {
        if (runtime == null) return;
        assertEquals(0, runtime.validationMessageCount(), () -> "validation messages: " + validationLogs);
        assertTrue(validationLogs.isEmpty(), () -> "validation messages: " + validationLogs);
        model.close();
        runtime.close();
        assertTrue(runtime.isClosed());
        assertThrows(IllegalStateException.class, runtime::handle);
    }

    /** The reference's first n generated tokens. */
    int[] refTokens(int from, int to) {
        return Arrays.copyOfRange(ref.generatedIds, from, to);
    }

    /** n greedy tokens through the low-level layer: kv_decode_step in a plain loop. */
    static int[] cGreedy(long session, int n) {
        int[] out = new int[n];
        int[] t = new int[1];
        for (int i = 0; i < n; i++) {
            assertEquals(Native.KV_OK, Native.kv_decode_step(session, t), Native::kv_last_error_message);
            out[i] = t[0];
        }
        return out;
    }

    @Test
    void versionsAndStatusNames() {
        int v = Kvulkan.version();
        assertEquals(Native.HEADER_VERSION_MAJOR, v >>> 22);
        assertEquals((v >>> 22) + "." + ((v >>> 12) & 0x3FF) + "." + (v & 0xFFF), Kvulkan.versionString());
        assertTrue(Kvulkan.statusString(Native.KV_ERR_IO).startsWith("KV_ERR_IO"), Kvulkan.statusString(-2));
        assertEquals("KV_ERR_BAD_TOKEN", KvException.statusName(Native.KV_ERR_BAD_TOKEN));
    }

    @Test
    void runtimeDevicesAndLogListener() {
        DeviceInfo info = runtime.info();
        assertFalse(info.deviceName.isEmpty());
        assertTrue(info.memoryHeaps.length > 0);
        assertTrue(info.subgroupSize > 0);
        DeviceInfo[] all = Kvulkan.enumerateDevices();
        assertTrue(all.length >= 1);
        assertTrue(Arrays.stream(all).anyMatch(d -> d.deviceName.equals(info.deviceName)), info::toString);
        // The runtime logged which device it chose, through the Java listener.
        assertTrue(logs.stream().anyMatch(l -> l.startsWith(Native.KV_LOG_INFO + " ") && l.contains(info.deviceName)),
                () -> "log lines: " + logs);
        BandwidthResult bw = runtime.measureBandwidth(1 << 16, 1);
        assertTrue(bw.bytes >= 1 << 16 && bw.readGbps > 0 && bw.copyGbps > 0 && bw.writeGbps > 0);
    }

    @Test
    void schedulingRequestsAreReportedBack() {
        RuntimeDesc d = new RuntimeDesc().gpuBudgetUs(500);
        d.queuePriority = 0.5f;
        d.globalPriority = 512;  // KV_GLOBAL_PRIORITY_HIGH: dropped where the driver lacks it
        try (Runtime rt = new Runtime(d)) {
            DeviceInfo info = rt.info();
            assertEquals(0.5f, info.queuePriority);
            assertTrue(info.globalPriority == 0 || info.globalPriority == 512);
            boolean timestamps = (info.features & (1 << 9)) != 0;  // KV_FEATURE_TIMESTAMPS
            assertEquals(timestamps ? 500 : 0, info.gpuBudgetUs);
            if ((info.features & (1 << 12)) != 0) {  // KV_FEATURE_TIMELINE_SEMAPHORE
                long[] before = rt.timelineSemaphore();
                assertTrue(before[0] != 0);
                rt.measureBandwidth(1 << 16, 1);
                assertTrue(rt.timelineSemaphore()[1] > before[1]);
            }
        }
    }

    @Test
    void modelInfoAndTokenizer() {
        ModelInfo info = model.info();
        assertEquals("llama", info.architecture);
        assertEquals(512, info.nVocab);
        assertEquals(1, info.onDevice);
        assertTrue(info.nParams > 200_000 && info.nLayer > 0 && info.headDim > 0, info::toString);
        assertEquals(1, model.bos());
        assertTrue(model.isEog(model.eos()));
        assertFalse(model.isEog(ref.generatedIds[0]));

        int[] tokens = model.tokenize("Once upon a time");
        assertArrayEquals(ref.promptIds, tokens);
        assertArrayEquals(Arrays.copyOfRange(ref.promptIds, 1, ref.promptIds.length),
                model.tokenize("Once upon a time", false, false));
        assertEquals("Once upon a time", model.detokenize(tokens));
        // Text beyond ASCII, outside the BMP included, survives the trip (JNI's modified UTF-8 would not).
        String text = "naïve café 😀 ok";
        assertEquals(text, model.detokenize(model.tokenize(text, false, false)));
        assertEquals(0, model.tokenize("", false, false).length);
    }

    @Test
    void prefillAndStream32TokensEqualTheCApiGreedyTokens() {
        int[] prompt = model.tokenize("Once upon a time");
        // Tokens computed another way: the C API's kv_decode_step in a plain loop (low level) ...
        long[] out = new long[1];
        assertEquals(Native.KV_OK, Native.kv_session_create(model.handle(), null, out));
        int[] cTokens;
        try {
            assertEquals(Native.KV_OK, Native.kv_prefill(out[0], prompt));
            cTokens = cGreedy(out[0], STREAM);
        } finally {
            Native.kv_session_destroy(out[0]);
        }
        // ... and llama.cpp's greedy run of the same model (../shared/reference).
        assertArrayEquals(refTokens(0, STREAM), cTokens);

        try (Session s = model.newSession(new SessionDesc().nCtx(256))) {
            s.prefill(prompt);
            assertEquals(prompt.length, s.nTokens());
            List<Integer> streamed = new ArrayList<>();
            StringBuilder text = new StringBuilder();
            int[] got = s.generate(STREAM, (token, piece) -> {
                streamed.add(token);
                text.append(piece);
                return true;
            });
            assertArrayEquals(cTokens, got);
            assertArrayEquals(cTokens, streamed.stream().mapToInt(Integer::intValue).toArray());
            String want = new String(ref.generatedText, StandardCharsets.UTF_8);
            assertTrue(want.startsWith(text.toString()) && text.length() > 60, () -> "streamed text: " + text);
            assertEquals(prompt.length + STREAM, s.nTokens());
            SessionStats st = s.stats();
            assertEquals(STREAM, st.tokensDecoded);
            assertEquals(prompt.length, st.tokensPrefilled);
            assertTrue(st.kvBytes > 0 && st.pages > 0);
            // Every pass was submitted at least once; llama layers form one group.
            assertTrue(st.submissions >= st.forwardPasses && st.lastPassSubmissions >= 1, () -> "" + st.submissions);
            assertEquals(0, st.windowLayers);

            // The listener stops generation by returning false.
            int[] few = s.generate(100, (token, piece) -> false);
            assertArrayEquals(refTokens(STREAM, STREAM + 1), few);
        }
    }

    @Test
    void badPathGivesKvExceptionWithStatusAndMessage() throws IOException {
        String missing = "/nonexistent/dir/stories-ü-😀.gguf";
        KvException e = assertThrows(KvException.class, () -> new Model(runtime, missing));
        assertEquals(Native.KV_ERR_IO, e.status());
        assertEquals("KV_ERR_IO", e.statusName());
        assertTrue(e.libraryMessage().contains(missing), e::getMessage);  // the path came back intact
        assertTrue(e.getMessage().startsWith("KV_ERR_IO: "), e::getMessage);

        Path junk = Files.createTempFile("kvulkan-junk", ".gguf");
        try {
            Files.write(junk, "this is not a GGUF file at all".getBytes(StandardCharsets.UTF_8));
            KvException bad = assertThrows(KvException.class, () -> new Model(runtime, junk.toString()));
            assertEquals(Native.KV_ERR_BAD_MODEL, bad.status());
            assertFalse(bad.libraryMessage().isEmpty());
        } finally {
            Files.delete(junk);
        }
        assertThrows(KvException.class, () -> new Model(runtime, "a\0b"));
    }

    @Test
    void modelFromNonAsciiPathAndFromBytes() throws IOException {
        Path dir = Files.createTempDirectory("kvulkan-java");
        Path copy = dir.resolve("stories-ü-😀.gguf");
        try {
            Files.copy(TestData.stories(), copy);
            try (Model m = new Model(null, copy.toString())) {  // parse-only: no runtime
                assertArrayEquals(ref.promptIds, m.tokenize("Once upon a time"));
                assertEquals(0, m.info().onDevice);
                KvException e = assertThrows(KvException.class, m::newSession);
                assertEquals(Native.KV_ERR_BAD_STATE, e.status());
            }
            try (Model m = Model.fromBytes(runtime, Files.readAllBytes(copy)); Session s = m.newSession()) {
                s.prefill(ref.promptIds);
                assertArrayEquals(refTokens(0, 4), s.generate(4));
            }
            // A direct buffer read in place (copyData false): the Model keeps it alive.
            ModelDesc d = new ModelDesc();
            byte[] bytes = Files.readAllBytes(copy);
            d.data = ByteBuffer.allocateDirect(bytes.length).put(bytes).flip();
            try (Model m = new Model(null, d)) {
                assertEquals(512, m.nVocab());
            }
        } finally {
            Files.deleteIfExists(copy);
            Files.delete(dir);
        }
    }

    @Test
    void forkTruncateSaveAndLoad() throws IOException {
        int[] prompt = ref.promptIds;
        try (Session s = model.newSession(new SessionDesc().nCtx(128))) {
            s.prefill(prompt);
            assertArrayEquals(refTokens(0, 8), s.generate(8));

            // Fork: the child shares the pages and continues exactly as the parent does.
            try (Session child = s.fork()) {
                assertEquals(prompt.length + 8, child.nTokens());
                assertArrayEquals(refTokens(8, 16), child.generate(8));
                assertArrayEquals(refTokens(8, 16), s.generate(8));
            }

            // Truncate back to prompt + 4 tokens: decoding goes on from there.
            s.truncate(prompt.length + 4);
            assertEquals(prompt.length + 4, s.nTokens());
            assertArrayEquals(refTokens(4, 12), s.generate(8));
            assertThrows(KvException.class, () -> s.truncate(10_000));

            // Save, continue, restore: the restored session gives the same next tokens.
            byte[] image = s.save();
            assertTrue(image.length > 0);
            int[] after = s.generate(8);
            assertArrayEquals(refTokens(12, 20), after);
            try (Session restored = model.loadSession(image)) {
                assertEquals(prompt.length + 12, restored.nTokens());
                assertArrayEquals(after, restored.generate(8));
            }
            Path dir = Files.createTempDirectory("kvulkan-java");
            Path file = dir.resolve("session-é.kvs");
            try {
                s.truncate(prompt.length + 12);
                s.saveFile(file.toString());
                assertTrue(Files.size(file) > 0);
                try (Session restored = model.loadSessionFile(file.toString())) {
                    assertArrayEquals(after, restored.generate(8));
                }
            } finally {
                Files.deleteIfExists(file);
                Files.delete(dir);
            }
            byte[] corrupt = Arrays.copyOf(image, image.length / 2);
            KvException e = assertThrows(KvException.class, () -> model.loadSession(corrupt));
            assertEquals(Native.KV_ERR_BAD_MODEL, e.status());
        }
    }

    @Test
    void errorsLeaveTheSessionUsable() {
        try (Session s = model.newSession(new SessionDesc().nCtx(64))) {
            KvException e = assertThrows(KvException.class, s::decodeStep);
            assertEquals(Native.KV_ERR_BAD_STATE, e.status());
            e = assertThrows(KvException.class, () -> s.prefill(new int[] {1, 100_000}));
            assertEquals(Native.KV_ERR_BAD_TOKEN, e.status());
            assertTrue(e.libraryMessage().contains("100000"), e::getMessage);
            assertEquals(0, s.nTokens());
            s.prefill(ref.promptIds);
            assertArrayEquals(refTokens(0, 2), s.generate(2));
            KvException full = assertThrows(KvException.class, () -> s.prefill(new int[100]));
            assertEquals(Native.KV_ERR_CONTEXT_FULL, full.status());
        }
    }

    @Test
    void closeIsIdempotentAndClosedObjectsThrow() {
        Model m = runtime.loadModel(TestData.stories().toString());
        Session s = m.newSession();
        Session other = m.newSession();
        other.close();
        other.close();
        assertTrue(other.isClosed());
        assertThrows(IllegalStateException.class, () -> other.prefill(ref.promptIds));
        assertThrows(IllegalStateException.class, other::fork);
        // Closing the model first defers its native destroy: the open session keeps working.
        m.close();
        m.close();
        assertThrows(IllegalStateException.class, () -> m.tokenize("x"));
        assertThrows(IllegalStateException.class, m::newSession);
        s.prefill(ref.promptIds);
        assertArrayEquals(refTokens(0, 4), s.generate(4, (t, p) -> true));
        assertEquals(512, s.logits().length);
        s.close();
        assertThrows(IllegalStateException.class, s::decodeStep);
        assertThrows(IllegalStateException.class, s::handle);
    }

    @Test
    void logitsEvalAndSampler() {
        try (Session a = model.newSession(); Session b = model.newSession()) {
            float[] rows = a.eval(ref.promptIds);
            assertEquals(ref.promptIds.length * 512, rows.length);
            float[] last = Arrays.copyOfRange(rows, rows.length - 512, rows.length);
            assertArrayEquals(last, a.logits());
            int argmax = 0;
            for (int i = 1; i < 512; i++) if (last[i] > last[argmax]) argmax = i;
            assertEquals(ref.generatedIds[0], argmax);
            // A seeded sampler is deterministic: two sessions draw the same tokens.
            SamplerDesc hot = new SamplerDesc().temperature(1.5f).topK(40).seed(1234);
            a.setSampler(hot);
            b.eval(ref.promptIds);
            b.setSampler(hot);
            int[] ta = a.generate(12);
            assertArrayEquals(ta, b.generate(12));
            a.setSampler(null);  // greedy again
            a.truncate(ref.promptIds.length);
            assertArrayEquals(refTokens(0, 3), a.generate(3));
        }
        try (Session s = model.newSession(new SessionDesc().sampler(new SamplerDesc().temperature(0.9f).seed(7)))) {
            s.prefill(ref.promptIds);
            assertEquals(6, s.generate(6).length);
        }
    }

    @Test
    void batchesAndSpeculative() {
        try (Session a = model.newSession(); Session b = model.newSession(); Session c = model.newSession()) {
            a.prefill(ref.promptIds);
            b.prefill(ref.promptIds);
            int[] st = new int[2];
            assertArrayEquals(refTokens(0, 1), Arrays.copyOf(Session.decodeBatch(new Session[] {a, b}, st), 1));
            assertArrayEquals(new int[] {Native.KV_OK, Native.KV_OK}, st);
            assertEquals(a.nTokens(), b.nTokens());
            // c was never prefilled: its own status, the others go on.
            int[] st3 = new int[3];
            int[] t3 = Session.decodeBatch(new Session[] {a, b, c}, st3);
            assertEquals(ref.generatedIds[1], t3[0]);
            assertEquals(ref.generatedIds[1], t3[1]);
            assertEquals(Native.KV_ERR_BAD_STATE, st3[2]);
            KvException e = assertThrows(KvException.class, () -> Session.decodeBatch(new Session[] {c}, null));
            assertEquals(Native.KV_ERR_BAD_STATE, e.status());

            // kv_batch_eval: a decode item for a, a token item (the prompt) for c.
            BatchItem decode = new BatchItem(a.handle(), null, null);
            BatchItem feed = new BatchItem(c.handle(), ref.promptIds, new float[ref.promptIds.length * 512]);
            assertEquals(Native.KV_OK, Native.kv_batch_eval(new BatchItem[] {decode, feed}));
            assertEquals(Native.KV_OK, decode.status);
            assertEquals(ref.generatedIds[2], decode.token);
            assertEquals(Native.KV_OK, feed.status);
            assertEquals(ref.promptIds.length, feed.nDone);
            assertNotEquals(0.0f, feed.logits[feed.logits.length - 1]);
            assertArrayEquals(refTokens(0, 2), c.generate(2));

            // Speculative decoding by prompt lookup gives plain greedy tokens.
            List<Integer> spec = new ArrayList<>();
            while (spec.size() < 16) for (int t : b.decodeSpeculative(null, 4)) spec.add(t);
            int[] got = spec.stream().mapToInt(Integer::intValue).limit(16).toArray();
            assertArrayEquals(refTokens(2, 18), got);
        }
        CacheStats cs = model.cacheStats(Native.KV_CACHE_F16);
        assertTrue(cs.pagesTotal > 0 && cs.pageSize > 0 && cs.pageBytes > 0);
    }

    @Test
    void sessionsOnSeveralThreads() throws Exception {
        int nThreads = 3;
        List<Thread> threads = new ArrayList<>();
        List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
        List<int[]> results = Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < nThreads; i++) {
            Thread t = new Thread(() -> {
                try (Session s = model.newSession(new SessionDesc().nCtx(64))) {
                    s.prefill(ref.promptIds);
                    results.add(s.generate(16));
                } catch (Throwable e) {
                    errors.add(e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) t.join();
        assertTrue(errors.isEmpty(), () -> "errors: " + errors);
        assertEquals(nThreads, results.size());
        for (int[] r : results) assertArrayEquals(refTokens(0, 16), r);
    }

    @Test
    void closeRacingWithCallsOnAnotherThread() throws Exception {
        // A parse-only model used on one thread while another closes it: each call either works
        // or throws IllegalStateException; the native destroy waits for the call in progress.
        for (int round = 0; round < 20; round++) {
            Model m = new Model(null, TestData.stories().toString());
            List<Throwable> unexpected = Collections.synchronizedList(new ArrayList<>());
            Thread user = new Thread(() -> {
                try {
                    while (true) assertArrayEquals(ref.promptIds, m.tokenize("Once upon a time"));
                } catch (IllegalStateException closed) {
                    // expected once close() has run
                } catch (Throwable e) {
                    unexpected.add(e);
                }
            });
            user.start();
            Thread.sleep(1);
            m.close();
            user.join();
            assertTrue(unexpected.isEmpty(), () -> "unexpected: " + unexpected);
            assertThrows(IllegalStateException.class, m::info);
        }
    }

    @Test
    void lowLevelMisuseIsAnExceptionOrAStatusNeverACrash() {
        // NULL handles: the library's own argument checks.
        assertEquals(Native.KV_ERR_INVALID_ARGUMENT, Native.kv_prefill(0, ref.promptIds));
        assertFalse(Native.kv_last_error_message().isEmpty());
        assertEquals(Native.KV_ERR_INVALID_ARGUMENT, Native.kv_decode_step(0, new int[1]));
        assertEquals(Native.KV_ERR_INVALID_ARGUMENT, Native.kv_model_get_info(0, new ModelInfo()));
        Native.kv_session_destroy(0);
        Native.kv_runtime_destroy(0);
        // Misuse of the JNI layer itself: Java exceptions.
        long m = model.handle();
        assertThrows(NullPointerException.class, () -> Native.kv_decode_step(0, null));
        assertThrows(IllegalArgumentException.class, () -> Native.kv_decode_step(0, new int[0]));
        assertThrows(NullPointerException.class, () -> Native.kv_model_get_info(m, null));
        assertThrows(NullPointerException.class, () -> Native.kv_tokenize(m, null, 0, null, new int[1]));
        assertThrows(IllegalArgumentException.class, () -> Native.kv_decode_batch(new long[2], new int[1], new int[2]));
        ModelDesc heap = new ModelDesc();
        heap.data = ByteBuffer.wrap(new byte[16]);
        assertThrows(IllegalArgumentException.class, () -> new Model(null, heap));
        // The KV_INCOMPLETE protocol through arrays: a too small array gets nothing, the count comes back.
        int[] n = new int[1];
        assertEquals(Native.KV_INCOMPLETE, Native.kv_tokenize(m, "Once upon a time".getBytes(StandardCharsets.UTF_8),
                Native.KV_TOKENIZE_ADD_SPECIAL, new int[2], n));
        assertEquals(ref.promptIds.length, n[0]);
        long[] len = new long[1];
        assertEquals(Native.KV_INCOMPLETE, Native.kv_detokenize(m, ref.promptIds, new byte[3], len));
        assertEquals("Once upon a time".length(), len[0]);
    }

    // ---- non-blocking work: tickets give the blocking calls' tokens, a session with work in
    // flight throws KV_ERR_BUSY (made deterministic by a listener holding the worker), a cancelled
    // prefill ends KV_CANCELLED and the session continues like an uncancelled one.

    /** Polls as a frame loop would, never blocking on the ticket. */
    static int pollUntilDone(Ticket t) throws InterruptedException {
        for (;;) {
            int st = t.poll();
            if (st != Native.KV_NOT_READY) return st;
            Thread.sleep(0, 200_000);
        }
    }

    @Test
    void submittedPrefillAndDecodeGiveTheBlockingTokens() throws InterruptedException {
        final int n = 16;
        try (Session a = model.newSession(new SessionDesc().nCtx(256)); Session b = model.newSession(new SessionDesc().nCtx(256))) {
            a.prefill(ref.promptIds);
            int[] want = a.generate(n);
            assertArrayEquals(Arrays.copyOf(ref.generatedIds, n), want);

            try (Ticket t = b.submitPrefill(ref.promptIds.clone())) {
                assertEquals(Native.KV_OK, t.await());
                assertEquals(Native.KV_OK, t.poll());
                assertEquals(0, t.tokens().length);
                assertThrows(IllegalStateException.class, t::token);
            }
            int[] got = new int[n];
            for (int i = 0; i < n; i++) {
                try (Ticket t = b.submitDecode()) {
                    assertEquals(Native.KV_OK, pollUntilDone(t));
                    assertArrayEquals(new int[] {Native.KV_OK}, t.statuses());
                    got[i] = t.token();
                    assertEquals(got[i], t.tokens()[0]);
                }
            }
            assertArrayEquals(want, got);
            assertEquals(a.nTokens(), b.nTokens());

            // A batch ticket equals decodeBatch on forks of the same sessions.
            try (Session c = a.fork(); Session d = b.fork()) {
                int[] st = new int[2];
                int[] wantBatch = Session.decodeBatch(new Session[] {a, b}, st);
                try (Ticket t = Session.submitDecodeBatch(c, d)) {
                    assertEquals(Native.KV_OK, t.await(TimeUnit.SECONDS.toNanos(60)));
                    assertArrayEquals(wantBatch, t.tokens());
                    assertArrayEquals(st, t.statuses());
                }
            }
        }
    }

    @Test
    void busySessionThrowsAndListenersRunOnTheWorker() throws Exception {
        try (Session x = model.newSession(new SessionDesc().nCtx(256)); Session y = model.newSession(new SessionDesc().nCtx(256));
             Session want = model.newSession(new SessionDesc().nCtx(256))) {
            x.prefill(ref.promptIds);
            y.prefill(ref.promptIds);
            want.prefill(ref.promptIds);
            int wantToken = want.decodeStep();

            // Ticket a's listener holds the worker, so ticket b (queued behind it) keeps y in use.
            CountDownLatch entered = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            AtomicReference<Thread> listenerThread = new AtomicReference<>();
            AtomicInteger listenerToken = new AtomicInteger(-2);
            AtomicInteger listenerStatus = new AtomicInteger(-99);
            AtomicReference<Throwable> inner = new AtomicReference<>();
            AtomicReference<Ticket> seen = new AtomicReference<>();
            Ticket a = x.submitDecode((t, status) -> {
                listenerThread.set(Thread.currentThread());
                seen.set(t);
                listenerStatus.set(status);
                listenerToken.set(t.token());  // results are readable in the listener
                entered.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            Ticket b = y.submitDecode();
            assertTrue(entered.await(60, TimeUnit.SECONDS));
            assertNotSame(Thread.currentThread(), listenerThread.get());
            assertSame(a, seen.get());
            assertEquals(Native.KV_OK, listenerStatus.get());
            assertEquals(wantToken, listenerToken.get());
            assertEquals(Native.KV_OK, a.poll());
            x.stats();  // x is free again while its listener runs

            assertEquals(Native.KV_NOT_READY, b.poll());
            assertFalse(b.isDone());
            KvException e = assertThrows(KvException.class, y::decodeStep);
            assertEquals(Native.KV_ERR_BUSY, e.status());
            assertEquals("KV_ERR_BUSY", e.statusName());
            assertEquals(Native.KV_ERR_BUSY, assertThrows(KvException.class, y::submitDecode).status());
            assertEquals(Native.KV_ERR_BUSY, assertThrows(KvException.class, y::stats).status());
            assertEquals(Native.KV_ERR_BUSY,
                    assertThrows(KvException.class, () -> y.submitPrefill(new int[] {1})).status());
            // A batch gives the busy session its own status and runs the free one.
            int[] st = new int[2];
            Session.decodeBatch(new Session[] {x, y}, st);
            assertArrayEquals(new int[] {Native.KV_OK, Native.KV_ERR_BUSY}, st);
            // Waiting with a timeout: still not ready.
            assertEquals(Native.KV_NOT_READY, b.await(TimeUnit.MILLISECONDS.toNanos(5)));

            release.countDown();
            assertEquals(Native.KV_OK, b.await());
            assertEquals(wantToken, b.token());
            a.close();
            b.close();
            assertTrue(a.isClosed());
            assertThrows(IllegalStateException.class, a::poll);
            a.close();  // idempotent
            // y took exactly one step (the refused calls changed nothing).
            assertEquals(ref.promptIds.length + 1, y.nTokens());
            assertEquals(want.decodeStep(), y.decodeStep());

            // The work's own error is the ticket's status; a submit's error throws and gives no ticket.
            try (Session fresh = model.newSession(); Ticket t = fresh.submitDecode()) {
                KvException err = assertThrows(KvException.class, t::await);
                assertEquals(Native.KV_ERR_BAD_STATE, err.status());
                assertEquals(Native.KV_ERR_INVALID_ARGUMENT,
                        assertThrows(KvException.class, () -> fresh.submitPrefill(new int[0])).status());
            }
            assertThrows(NullPointerException.class, () -> Native.kv_submit_decode(0, null, null));
            assertEquals(Native.KV_ERR_INVALID_ARGUMENT, Native.kv_submit_decode(0, null, new long[1]));
            assertEquals(Native.KV_ERR_INVALID_ARGUMENT, Native.kv_ticket_poll(0));

            // A listener may close its own ticket; a closed session's native object waits for its tickets.
            CountDownLatch closedInListener = new CountDownLatch(1);
            x.submitDecode((t, status) -> {
                t.close();
                closedInListener.countDown();
            });
            assertTrue(closedInListener.await(60, TimeUnit.SECONDS));
            Session s = model.newSession();
            Ticket p = s.submitPrefill(ref.promptIds);
            s.close();
            assertEquals(Native.KV_OK, p.await());
            p.close();
        }
    }

    @Test
    void cancelledPrefillStopsAtAChunkAndTheSessionContinues() throws InterruptedException {
        // A prompt of 4 chunks of 16: the reference prompt's tokens, repeated.
        final int len = 64;
        final int nBatch = 16;
        int[] prompt = new int[len];
        prompt[0] = ref.promptIds[0];
        for (int i = 1; i < len; i++) prompt[i] = ref.promptIds[1 + (i - 1) % (ref.promptIds.length - 1)];
        SessionDesc desc = new SessionDesc().nCtx(128).nBatch(nBatch);
        // The uncancelled run on a model of its own: no page of it is shared with the runs below.
        try (Model other = runtime.loadModel(TestData.stories().toString());
             Session whole = other.newSession(desc); Session s = model.newSession(desc);
             Session holder = model.newSession(desc)) {
            assertEquals(Native.KV_OK, whole.prefill(prompt));
            float[] wantLogits = whole.logits();
            int[] want = whole.generate(4);

            // A listener holds the worker, so the prefill queued behind it starts with the cancel
            // request already made: it stops after its first chunk, deterministically.
            holder.prefill(new int[] {ref.promptIds[0]});
            CountDownLatch release = new CountDownLatch(1);
            int st;
            try (Ticket hold = holder.submitDecode((t, status) -> {
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
                 Ticket t = s.submitPrefill(prompt)) {
                s.cancel();
                release.countDown();
                st = t.await();
                assertEquals(Native.KV_OK, hold.await());
            }
            assertEquals(Native.KV_CANCELLED, st);
            SessionStats ss = s.stats();
            assertEquals(nBatch, ss.nTokens);
            assertEquals(nBatch, ss.lastPrefillTokens);
            assertEquals(Native.KV_OK, s.prefill(Arrays.copyOfRange(prompt, ss.nTokens, len)));
            assertArrayEquals(wantLogits, s.logits());
            assertArrayEquals(want, s.generate(4));
            // A cancel with nothing running is a no-op: the next call is not affected.
            s.reset();
            s.cancel();
            assertEquals(Native.KV_OK, s.prefill(prompt));
            assertEquals(len, s.nTokens());
        }
    }

    @Test
    void utf8StreamHoldsBackSplitCharacters() {
        Utf8Stream u = new Utf8Stream();
        byte[] emoji = "😀".getBytes(StandardCharsets.UTF_8);
        assertEquals("a", u.feed(new byte[] {'a', emoji[0]}));
        assertEquals("", u.feed(new byte[] {emoji[1], emoji[2]}));
        assertEquals("😀b", u.feed(new byte[] {emoji[3], 'b'}));
        assertEquals("", u.feed(new byte[] {(byte) 0xC3}));
        assertEquals("\uFFFD", u.finish());
    }

    // ---- since 0.2.0: offload, kv_generate, chat templates, grammars, logit bias, embeddings ----

    /** The text of `tokens` as kv_generate passes it on: the concatenated kv_token_to_piece bytes. */
    String pieces(int[] tokens) {
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        for (int t : tokens) b.writeBytes(model.tokenToPiece(t));
        return new String(b.toByteArray(), StandardCharsets.UTF_8);
    }

    @Test
    void offloadedSessionContinuesWithTheSameTokens() {
        try (Session s = model.newSession(new SessionDesc().nCtx(256))) {
            s.prefill(ref.promptIds);
            assertArrayEquals(refTokens(0, 4), s.generate(4));
            s.offload();
            SessionStats off = s.stats();
            assertTrue(off.offloaded);
            assertEquals(0, off.pages);
            assertTrue(off.pagesOffloaded > 0);
            CacheStats pool = model.cacheStats(Native.KV_CACHE_F16);
            assertTrue(pool.pagesOffloaded >= off.pagesOffloaded && pool.offloadedBytes > 0, () -> "" + pool.offloadedBytes);
            s.offload();  // a no-op when already offloaded
            assertArrayEquals(refTokens(4, 12), s.generate(8));
            SessionStats back = s.stats();
            assertFalse(back.offloaded);
            assertEquals(off.pagesOffloaded, back.pagesRestored);
            assertTrue(back.pages > 0);
        }
    }

    @Test
    void generateTextStreamsPiecesAndStopsAtAStopString() {
        String all = pieces(refTokens(0, 24));
        try (Session s = model.newSession(new SessionDesc().nCtx(256))) {
            s.prefill(ref.promptIds);
            List<byte[]> got = new ArrayList<>();
            GenerateResult r = s.generate(new GenerateDesc().maxTokens(24).onPiece(p -> {
                got.add(p);
                return 0;
            }));
            assertEquals(Native.KV_GENERATE_STOP_MAX_TOKENS, r.stopReason);
            assertEquals(24, r.nTokens);
            assertEquals(ref.generatedIds[23], r.lastToken);
            assertTrue(got.size() > 1);
            java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
            got.forEach(b::writeBytes);
            assertEquals(all, new String(b.toByteArray(), StandardCharsets.UTF_8));
            assertEquals(b.size(), r.nBytes);

            // A stop string from the middle of that text: the text before its first occurrence.
            String stop = all.substring(30, 36);
            s.truncate(ref.promptIds.length);
            assertEquals(all.substring(0, all.indexOf(stop)), s.generateText(24, "never in this story", stop));
            s.truncate(ref.promptIds.length);
            GenerateResult r2 = s.generate(new GenerateDesc().maxTokens(24).stopStrings("zzzz", stop));
            assertEquals(Native.KV_GENERATE_STOP_STRING, r2.stopReason);
            assertEquals(1, r2.stopString);
            assertTrue(r2.nTokens < 24);
            // A bad desc is a KvException, not a crash.
            KvException e = assertThrows(KvException.class, () -> s.generateText(4, ""));
            assertEquals(Native.KV_ERR_INVALID_ARGUMENT, e.status());
        }
    }

    @Test
    void chatFormatWithAnExplicitTemplate() {
        String tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>\n{% endfor %}"
                + "{% if add_generation_prompt %}<assistant>{% endif %}";
        ChatMessage[] msgs = {new ChatMessage("system", " Be brief. "), new ChatMessage("user", "Café? 😀")};
        String want = "<system>Be brief.</system>\n<user>Café? 😀</user>\n";
        assertEquals(want + "<assistant>", model.chatFormat(tmpl, msgs, Native.KV_CHAT_ADD_ASSISTANT_PROMPT));
        assertEquals(want, Kvulkan.chatFormat(tmpl, msgs, 0));
        // Longer than the first buffer: the KV_INCOMPLETE retry.
        String big = "x".repeat(5000);
        assertEquals("<user>" + big + "</user>\n", Kvulkan.chatFormat(tmpl, new ChatMessage[] {new ChatMessage("user", big)}, 0));
        KvException bad = assertThrows(KvException.class, () -> Kvulkan.chatFormat("{% for %}", msgs, 0));
        assertEquals(Native.KV_ERR_INVALID_ARGUMENT, bad.status());
        // stories260K has no template of its own.
        assertEquals("", model.chatTemplate());
        KvException none = assertThrows(KvException.class, () -> model.chatFormat(msgs, 0));
        assertEquals(Native.KV_ERR_UNSUPPORTED, none.status());
    }

    @Test
    void grammarAndJsonSchemaConstrainTheOutput() {
        try (Session s = model.newSession(new SessionDesc().nCtx(256))) {
            s.prefill(ref.promptIds);
            s.setGrammar("root ::= [a-e]+");
            String text = s.generateText(6);
            assertTrue(text.matches("[a-e]+"), text);
            assertFalse(pieces(refTokens(0, 6)).matches("[a-e]+"));  // unconstrained it would differ

            String gbnf = Kvulkan.jsonSchemaToGrammar("{\"type\": \"boolean\"}");
            assertTrue(gbnf.contains("root ::="), gbnf);
            s.truncate(ref.promptIds.length);
            s.setGrammar(gbnf);
            GenerateResult r = new GenerateResult();
            StringBuilder sb = new StringBuilder();
            KvException.check(Native.kv_generate(s.handle(), new GenerateDesc().maxTokens(40).onPiece(p -> {
                sb.append(new String(p, StandardCharsets.UTF_8));
                return 0;
            }), r));
            assertEquals(Native.KV_GENERATE_STOP_END_OF_GENERATION, r.stopReason, sb::toString);
            assertTrue(sb.toString().strip().equals("true") || sb.toString().strip().equals("false"), sb::toString);

            KvException e = assertThrows(KvException.class, () -> s.setGrammar("root ::= undefined_rule"));
            assertEquals(Native.KV_ERR_INVALID_ARGUMENT, e.status());
            s.setGrammar(null);  // removed: greedy again
            s.truncate(ref.promptIds.length);
            assertArrayEquals(refTokens(0, 3), s.generate(3));
        }
    }

    @Test
    void logitBiasAndBannedTokensSteerTheSampler() {
        int first = ref.generatedIds[0];
        try (Session s = model.newSession(new SessionDesc().nCtx(128)
                .sampler(new SamplerDesc().bannedTokens(first)))) {
            s.prefill(ref.promptIds);
            assertNotEquals(first, s.decodeStep());
            s.truncate(ref.promptIds.length);
            s.setSampler(new SamplerDesc().logitBias(new LogitBias(77, 1000.0f)));
            assertEquals(77, s.decodeStep());
        }
    }

    @Test
    void embeddingsAreNEmbdFloatsAndLeaveTheSessionAlone() {
        int nEmbd = model.info().nEmbd;
        try (Session s = model.newSession(new SessionDesc().nCtx(64))) {
            float[] e = s.embeddings(ref.promptIds, Native.KV_EMBED_MEAN | Native.KV_EMBED_NORMALIZE);
            assertEquals(nEmbd, e.length);
            double norm = 0;
            for (float v : e) norm += (double) v * v;
            assertEquals(1.0, Math.sqrt(norm), 1e-3);
            assertArrayEquals(e, s.embeddings(ref.promptIds, Native.KV_EMBED_MEAN | Native.KV_EMBED_NORMALIZE));
            assertFalse(Arrays.equals(e, s.embeddings(ref.promptIds, Native.KV_EMBED_NORMALIZE)));  // last != mean
            assertEquals(0, s.nTokens());
            s.prefill(ref.promptIds);
            assertArrayEquals(refTokens(0, 2), s.generate(2));
        }
    }

    @Test
    void useQueueRunsTheCallbackWithTheRuntimesQueue() {
        long[] seen = new long[1];
        runtime.useQueue(q -> seen[0] = q);
        assertNotEquals(0L, seen[0]);
        assertThrows(IllegalStateException.class, () -> runtime.useQueue(q -> {
            throw new IllegalStateException("thrown in the callback");
        }));
    }
}
