// Non-blocking work (kv_submit_*, kv_ticket) and its completion callbacks.
//
// A submitted call runs on kvulkan's worker thread and gives the blocking call's results. The
// ticket's SafeHandle holds a reference on each of its sessions' handles (so on their model and
// runtime) until kv_ticket_destroy has returned, as the C rule "destroy a session's ticket before
// its runtime" needs. A completion callback goes through one static [MonoPInvokeCallback] thunk
// (IL2CPP needs a static method); the managed target travels as a GCHandle in `user`, which the
// thunk frees after the callback: the library calls it exactly once per ticket, and
// kv_ticket_destroy waits for it.
using System;
using System.Runtime.InteropServices;
using Kvulkan.Interop;

namespace Kvulkan
{
    public sealed class TicketHandle : KvHandle
    {
        internal SafeHandle[] Sessions;  // one DangerousAddRef each, released after kv_ticket_destroy

        protected override void Destroy(IntPtr native)
        {
            Native.kv_ticket_destroy(native);  // waits for the work and its callback
            if (Sessions == null)
                return;
            foreach (var s in Sessions)
                s.DangerousRelease();
        }
    }

    /// <summary>A kv_ticket: work submitted by Session.SubmitPrefill, SubmitDecode or
    /// SubmitDecodeBatch. While it runs, its sessions are in use: every other call on them throws
    /// KvException with KvStatus.Busy (Session.Cancel excepted). Poll it from a frame loop, Wait
    /// for it, or pass a callback to the submit. Dispose() (kv_ticket_destroy) waits for the work
    /// if it still runs. Any thread may poll, wait for and dispose a ticket.</summary>
    public sealed class Ticket : IDisposable
    {
        /// <summary>The native kv_ticket, for calls through Kvulkan.Interop.Native.</summary>
        public readonly TicketHandle Handle;

        Ticket(TicketHandle handle) { Handle = handle; }

        internal delegate int SubmitFn(IntPtr[] sessions, IntPtr callback, IntPtr user, out IntPtr ticket);

        sealed class Pending
        {
            public readonly Action<Ticket, KvStatus> Callback;
            public Ticket Ticket;  // set by the submitter, under the lock on this object
            public Pending(Action<Ticket, KvStatus> callback) { Callback = callback; }
        }

        internal static Ticket Submit(Session[] sessions, Action<Ticket, KvStatus> onComplete, SubmitFn submit)
        {
            int n = sessions.Length;
            var leases = new Lease[n];
            var ptrs = new IntPtr[n];
            try
            {
                for (int i = 0; i < n; i++)
                {
                    if (sessions[i] == null)
                        throw new ArgumentNullException("sessions", "sessions[" + i + "] is null");
                    leases[i] = sessions[i].Use();
                    ptrs[i] = leases[i].Ptr;
                }
                // Everything that can fail is allocated before the submit: after it, nothing may.
                var handle = new TicketHandle();
                var ticket = new Ticket(handle);
                var owned = new SafeHandle[n];
                Pending pending = onComplete == null ? null : new Pending(onComplete);
                GCHandle user = pending == null ? default(GCHandle) : GCHandle.Alloc(pending);
                lock ((object)pending ?? ticket)  // the callback waits here until the Ticket is complete
                {
                    IntPtr native;
                    int st = submit(ptrs, pending == null ? IntPtr.Zero : ThunkPointer,
                                    pending == null ? IntPtr.Zero : GCHandle.ToIntPtr(user), out native);
                    if (st < 0)
                    {
                        string message = Utf8.FromNative(Native.kv_last_error_message());
                        if (user.IsAllocated)
                            user.Free();  // no ticket: the library never calls back
                        throw new KvException((KvStatus)st, message);
                    }
                    for (int i = 0; i < n; i++)
                        owned[i] = leases[i].TakeOwnership();
                    handle.Sessions = owned;
                    var none = default(Lease);
                    handle.Adopt(native, ref none);
                    if (pending != null)
                        pending.Ticket = ticket;
                    return ticket;
                }
            }
            finally
            {
                for (int i = 0; i < n; i++)
                    leases[i].Dispose();  // no-op for the references the ticket took
            }
        }

        Lease Use() { return new Lease(Handle, "Ticket"); }

        /// <summary>kv_ticket_poll: NotReady while the work runs, else its status (Ok, Cancelled
        /// for a cancelled prefill, EndOfGeneration for a decode that sampled an end token).
        /// Throws KvException when the work failed. Never blocks.</summary>
        public KvStatus Poll() { return Wait(0UL); }

        /// <summary>True once the work is complete, whatever its status. Never blocks or throws KvException.</summary>
        public bool IsDone
        {
            get
            {
                using (var t = Use())
                    return Native.kv_ticket_poll(t.Ptr) != (int)KvStatus.NotReady;
            }
        }

        /// <summary>Waits for the work without limit; returns its status as Poll does.</summary>
        public KvStatus Wait() { return Wait(ulong.MaxValue); }

        /// <summary>Waits up to `timeout`; NotReady if the work still runs, else as Poll.</summary>
        public KvStatus Wait(TimeSpan timeout)
        {
            if (timeout < TimeSpan.Zero)
                throw new ArgumentOutOfRangeException("timeout");
            return Wait((ulong)timeout.Ticks * 100UL);
        }

        /// <summary>kv_ticket_wait: 0 looks, ulong.MaxValue waits without limit.</summary>
        public KvStatus Wait(ulong timeoutNs)
        {
            using (var t = Use())
                return Check.Status(Native.kv_ticket_wait(t.Ptr, timeoutNs));
        }

        /// <summary>kv_ticket_results of a completed ticket: one token and status for a decode, one
        /// per session for a batch (-1 where no token was sampled; a busy session has Busy), none
        /// for a prefill. InvalidOperationException while the work runs.</summary>
        public void Results(out int[] tokens, out KvStatus[] statuses)
        {
            using (var t = Use())
            {
                uint n;
                var st = Check.Status(Native.kv_ticket_results(t.Ptr, null, null, 0, out n));
                if (st == KvStatus.NotReady)
                    throw new InvalidOperationException("the ticket's work is still running");
                tokens = new int[n];
                var raw = new int[n];
                if (n > 0)
                    Check.Status(Native.kv_ticket_results(t.Ptr, tokens, raw, n, out n));
                statuses = new KvStatus[raw.Length];
                for (int i = 0; i < raw.Length; i++)
                    statuses[i] = (KvStatus)raw[i];
            }
        }

        /// <summary>The result of a completed SubmitDecode, as Session.DecodeStep gives it: false at
        /// end of generation (the end token is in `token`, not appended). Throws KvException when
        /// the step failed, InvalidOperationException while it runs or for a prefill.</summary>
        public bool GetToken(out int token)
        {
            int[] tokens;
            KvStatus[] statuses;
            Results(out tokens, out statuses);
            if (tokens.Length == 0)
                throw new InvalidOperationException("this ticket has no token (a prefill)");
            if (statuses[0] < 0)
                throw new KvException(statuses[0], Library.StatusString(statuses[0]));
            token = tokens[0];
            return statuses[0] != KvStatus.EndOfGeneration;
        }

        public bool IsDisposed { get { return Handle.IsDisposed; } }

        /// <summary>kv_ticket_destroy: waits for the work (and its callback) if it still runs.
        /// Allowed inside the ticket's own callback (it is then freed when the callback returns).</summary>
        public void Dispose() { Handle.Dispose(); }

        // ---- the completion callback: one static thunk, the managed target travels as user ------
        static readonly kv_ticket_callback Thunk = OnComplete;  // kept alive for the process
        static readonly IntPtr ThunkPointer = Marshal.GetFunctionPointerForDelegate(Thunk);

        [MonoPInvokeCallback(typeof(kv_ticket_callback))]
        static void OnComplete(IntPtr ticket, int status, IntPtr user)
        {
            GCHandle target = GCHandle.FromIntPtr(user);
            try
            {
                var pending = (Pending)target.Target;
                Ticket t;
                lock (pending)
                    t = pending.Ticket;
                if (t != null)
                    pending.Callback(t, (KvStatus)status);
            }
            catch (Exception)
            {
                // Never let an exception unwind into the library.
            }
            finally
            {
                target.Free();
            }
        }
    }
}
