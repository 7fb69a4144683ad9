package dev.kvulkan;

import java.io.Closeable;
import java.lang.ref.Cleaner;
import java.util.function.LongConsumer;

/**
 * A native handle with its lifetime rules, shared by {@link Runtime}, {@link Model} and
 * {@link Session}:
 * <ul>
 *   <li>{@link #close()} is idempotent; any later call on the object throws IllegalStateException.</li>
 *   <li>Every child holds its parent (Session -> Model -> Runtime), so a parent's native object is
 *       never destroyed before its children's, as kvulkan.h requires. Closing a parent that still
 *       has open children closes it for the caller at once and destroys it natively when its last
 *       child is closed; the children keep working meanwhile.</li>
 *   <li>A call in progress counts like a child: a close() racing with it on another thread
 *       destroys the native object when the call returns, never under it.</li>
 *   <li>An object that becomes unreachable without close() is closed by a {@link Cleaner}.</li>
 * </ul>
 * It is a {@link Closeable} (an AutoCloseable whose close() throws no checked exception here) so
 * that Kotlin's {@code use {}} works with every Kotlin version (AutoCloseable.use needed the
 * kotlin-stdlib-jdk7 artifact before Kotlin 1.8.20).
 */
abstract class NativeObject implements Closeable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** The state the Cleaner acts on: it must not refer to the wrapper object. */
    static final class Handle implements Runnable {
        private final String kind;
        private final LongConsumer destroy;
        private final Handle parent;
        private long value;
        private Object keepAlive;  // memory the native object reads in place (a model's bytes)
        private int users;         // open children and calls in progress
        private boolean closed;

        Handle(String kind, long value, LongConsumer destroy, Handle parent, Object keepAlive) {
            this.kind = kind;
            this.value = value;
            this.destroy = destroy;
            this.parent = parent;
            this.keepAlive = keepAlive;
        }

        /** The handle, counted as in use until {@link #release()}; IllegalStateException once closed. */
        synchronized long acquire() {
            if (closed || value == 0) throw new IllegalStateException("the " + kind + " is closed");
            users++;
            return value;
        }

        /** Like acquire, also after close(): for a child's use of its parent (which it keeps alive). */
        synchronized long borrow() {
            if (value == 0) throw new IllegalStateException("the " + kind + " was destroyed");
            users++;
            return value;
        }

        void release() {
            boolean destroyNow;
            synchronized (this) {
                users--;
                destroyNow = closed && users == 0 && value != 0;
            }
            if (destroyNow) destroyNative();
        }

        synchronized boolean isClosed() {
            return closed;
        }

        @Override
        public void run() {
            synchronized (this) {
                if (closed) return;
                closed = true;
                if (users > 0) return;
            }
            destroyNative();
        }

        private void destroyNative() {
            long v;
            synchronized (this) {
                v = value;
                value = 0;
                keepAlive = null;
            }
            if (v == 0) return;
            destroy.accept(v);
            if (parent != null) parent.release();
        }
    }

    final Handle handle;
    private final Cleaner.Cleanable cleanable;

    /**
     * Takes ownership of `value`. `parent` must have been acquired once for this child by the
     * caller: that use is released when this object's native handle is destroyed.
     */
    NativeObject(String kind, long value, LongConsumer destroy, Handle parent, Object keepAlive) {
        this.handle = new Handle(kind, value, destroy, parent, keepAlive);
        this.cleanable = CLEANER.register(this, handle);
    }

    /** Releases the native object (see the class comment for parents with open children). Idempotent. */
    @Override
    public final void close() {
        cleanable.clean();
    }

    /** True once close() was called. */
    public final boolean isClosed() {
        return handle.isClosed();
    }

    /**
     * The raw C handle, for {@link Native} calls. It stays valid while this object is open and no
     * longer: do not keep it past close().
     */
    public final long handle() {
        long h = handle.acquire();
        handle.release();
        return h;
    }
}
