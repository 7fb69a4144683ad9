package dev.kvulkan;

/**
 * Told when a submitted call ({@link Session#submitPrefill}, {@link Session#submitDecode},
 * {@link Session#submitDecodeBatch}) completes, with its {@link Ticket} and status (what
 * {@link Ticket#await()} would return, or the negative error status; nothing is thrown).
 *
 * <p>It runs on kvulkan's worker thread, after the ticket's sessions are free again; like the C
 * callback it should return quickly (the worker runs nothing else meanwhile). It may read the
 * ticket's results, submit more work and close tickets (its own included), but must not wait for
 * a ticket still running ({@link Ticket#await()} there throws KV_ERR_BAD_STATE) nor close a
 * runtime. An exception it throws is printed and dropped.
 */
@FunctionalInterface
public interface TicketListener {
    void onComplete(Ticket ticket, int status);
}
