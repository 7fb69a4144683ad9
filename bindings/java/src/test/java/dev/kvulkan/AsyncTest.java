package dev.kvulkan;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Non-blocking work through the Java binding: tickets give the blocking calls' tokens, a session
 * with work in flight throws KV_ERR_BUSY (made deterministic by a listener holding the worker), a
 * cancelled prefill ends KV_CANCELLED and the session continues like an uncancelled one.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AsyncTest {
    Runtime runtime;
    Model model;
    TestData.Reference ref;

    @BeforeAll
    void open() {
        String path = TestData.stories().toString();
        ref = TestData.storiesReference();
        runtime = new Runtime(new RuntimeDesc().validation(true));
        model = runtime.loadModel(path);
    }

    @AfterAll
    void close() {
        if (runtime == null) return;
        assertEquals(0, runtime.validationMessageCount());
        model.close();
        runtime.close();
    }

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
}
