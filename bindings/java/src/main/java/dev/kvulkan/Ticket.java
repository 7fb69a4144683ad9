package dev.kvulkan;

/**
 * A kv_ticket: work submitted to kvulkan's worker thread by {@link Session#submitPrefill},
 * {@link Session#submitDecode} or {@link Session#submitDecodeBatch}. The call ran (or runs) as
 * the blocking one would, with the same results; meanwhile its sessions are in use and every other
 * call on them throws {@link KvException} with {@link Native#KV_ERR_BUSY} ({@link Session#cancel()}
 * excepted).
 *
 * <p>Poll it from a frame loop ({@link #poll()}, {@link #isDone()}), wait for it
 * ({@link #await()}), or give the submit a {@link TicketListener}. {@link #close()}
 * (kv_ticket_destroy) waits for the work if it still runs. A ticket keeps its sessions (and so
 * their model and runtime) alive natively until it is closed. Thread-safe: any thread may poll,
 * wait for and close a ticket.
 */
public final class Ticket extends NativeObject {
    /** No time limit for {@link #await(long)}. */
    public static final long FOREVER = -1L;  // UINT64_MAX

    /** Calls the submit with the sessions' handles, the callback (or null) and the out-ticket. */
    interface Submit {
        int run(long[] sessions, Native.TicketCallback callback, long[] outTicket);
    }

    /** The listener's side: it reaches the Ticket object once the submitting thread has made it. */
    private static final class Pending implements Native.TicketCallback {
        private final TicketListener listener;
        private Ticket ticket;

        Pending(TicketListener listener) {
            this.listener = listener;
        }

        @Override
        public void onComplete(long handle, int status) {
            Ticket t;
            synchronized (this) {  // held by the submitter until the Ticket exists
                t = ticket;
            }
            if (t != null) listener.onComplete(t, status);
        }
    }

    private Ticket(long value, NativeObject.Handle[] sessions) {
        super("ticket", value, v -> {
            Native.kv_ticket_destroy(v);  // waits for the work and its callback
            for (NativeObject.Handle s : sessions) s.release();
        }, null, null);
    }

    static Ticket submit(Session[] sessions, TicketListener listener, Submit submit) {
        int n = sessions.length;
        NativeObject.Handle[] held = new NativeObject.Handle[n];
        long[] raw = new long[n];
        int acquired = 0;
        boolean ok = false;
        Pending pending = listener == null ? null : new Pending(listener);
        Object lock = pending != null ? pending : new Object();
        try {
            for (; acquired < n; acquired++) {
                raw[acquired] = sessions[acquired].handle.acquire();  // released when the ticket is closed
                held[acquired] = sessions[acquired].handle;
            }
            synchronized (lock) {
                long[] out = new long[1];
                KvException.check(submit.run(raw, pending, out));
                Ticket t = new Ticket(out[0], held);
                ok = true;
                if (pending != null) pending.ticket = t;
                return t;
            }
        } finally {
            if (!ok) {
                for (int i = 0; i < acquired; i++) held[i].release();
            }
        }
    }

    /**
     * kv_ticket_poll: {@link Native#KV_NOT_READY} while the work runs, else its status
     * ({@link Native#KV_OK}, {@link Native#KV_CANCELLED} for a cancelled prefill,
     * {@link Native#KV_END_OF_GENERATION} for a decode that sampled an end token). Throws
     * {@link KvException} when the work failed. Never blocks.
     */
    public int poll() {
        return await(0);
    }

    /** True once the work is complete (whatever its status). Never blocks, never throws KvException. */
    public boolean isDone() {
        long h = handle.acquire();
        try {
            return Native.kv_ticket_poll(h) != Native.KV_NOT_READY;
        } finally {
            handle.release();
        }
    }

    /** Waits for the work without limit; returns its status as {@link #poll()} does (never KV_NOT_READY). */
    public int await() {
        return await(FOREVER);
    }

    /**
     * kv_ticket_wait: waits up to `timeoutNanos` (0: just look; {@link #FOREVER}: no limit);
     * returns {@link Native#KV_NOT_READY} if the work still runs, else as {@link #poll()}.
     */
    public int await(long timeoutNanos) {
        if (timeoutNanos < 0 && timeoutNanos != FOREVER) throw new IllegalArgumentException("timeoutNanos < 0");
        long h = handle.acquire();
        try {
            return KvException.check(Native.kv_ticket_wait(h, timeoutNanos));
        } finally {
            handle.release();
        }
    }

    private int[][] results() {
        long h = handle.acquire();
        try {
            int[] n = new int[1];
            int st = KvException.check(Native.kv_ticket_results(h, null, null, n));
            if (st == Native.KV_NOT_READY) throw new IllegalStateException("the ticket's work is still running");
            int[] tokens = new int[n[0]];
            int[] statuses = new int[n[0]];
            if (n[0] > 0) KvException.check(Native.kv_ticket_results(h, tokens, statuses, n));
            return new int[][] {tokens, statuses};
        } finally {
            handle.release();
        }
    }

    /**
     * The tokens of a completed decode (one) or batch (one per session, in order; -1 where none
     * was sampled); empty for a prefill. IllegalStateException while the work runs.
     */
    public int[] tokens() {
        return results()[0];
    }

    /** The kv_status of each session's step, as {@link #tokens()} (a batch gives a busy session KV_ERR_BUSY). */
    public int[] statuses() {
        return results()[1];
    }

    /**
     * The token of a completed {@link Session#submitDecode()}, as {@link Session#decodeStep()}
     * returns it: the token, or {@link Session#END_OF_GENERATION}; throws {@link KvException} when
     * the step failed and IllegalStateException while it runs or for a ticket without a result.
     */
    public int token() {
        int[][] r = results();
        if (r[0].length == 0) throw new IllegalStateException("this ticket has no token (a prefill)");
        int st = r[1][0];
        if (st < 0) throw new KvException(st, Native.kv_status_string(st));
        return st == Native.KV_END_OF_GENERATION ? Session.END_OF_GENERATION : r[0][0];
    }
}
