// SafeHandles for kv_runtime, kv_model and kv_session.
//
// Lifetime rule of the C ABI: sessions are destroyed before their model, models before their
// runtime. A child handle holds a reference count on its parent's SafeHandle (DangerousAddRef)
// from creation until its own native object is destroyed, so the parent's destroy function runs
// only after the last child's, whatever the order of Dispose() calls or finalizers. Disposing a
// parent with children alive closes it for the caller (ObjectDisposedException on later use) and
// destroys the native object when the last child goes.
using System;
using System.Runtime.InteropServices;
using Kvulkan.Interop;

namespace Kvulkan
{
    public abstract class KvHandle : SafeHandle
    {
        SafeHandle _parent;  // holds one DangerousAddRef, released after our destroy

        protected KvHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>Dispose() was called. SafeHandle.IsClosed may stay false while children hold
        /// references (Mono), so the bindings check this flag before every use.</summary>
        public bool IsDisposed { get { return _disposed != 0; } }

        int _disposed;

        protected override void Dispose(bool disposing)
        {
            System.Threading.Interlocked.Exchange(ref _disposed, 1);
            base.Dispose(disposing);
        }

        /// <summary>Takes ownership of a native object just created, and of the parent's lease
        /// (the reference taken for the create call), which is kept until ReleaseHandle.</summary>
        internal void Adopt(IntPtr native, ref Lease parentLease)
        {
            _parent = parentLease.TakeOwnership();
            SetHandle(native);
        }

        protected abstract void Destroy(IntPtr native);

        protected override bool ReleaseHandle()
        {
            Destroy(handle);
            if (_parent != null)
                _parent.DangerousRelease();
            return true;
        }
    }

    public sealed class RuntimeHandle : KvHandle
    {
        internal GCHandle LogTarget;  // the managed log callback, freed after kv_runtime_destroy

        protected override void Destroy(IntPtr native)
        {
            Native.kv_runtime_destroy(native);
            if (LogTarget.IsAllocated)
                LogTarget.Free();
        }
    }

    public sealed class ModelHandle : KvHandle
    {
        internal GCHandle PinnedData;  // model bytes loaded without a copy (FromBytes, copy: false)

        protected override void Destroy(IntPtr native)
        {
            Native.kv_model_destroy(native);
            if (PinnedData.IsAllocated)
                PinnedData.Free();
        }
    }

    public sealed class SessionHandle : KvHandle
    {
        protected override void Destroy(IntPtr native) { Native.kv_session_destroy(native); }
    }

    /// <summary>A reference on a handle for the duration of a native call: the object cannot be
    /// destroyed (by Dispose on another thread or by a finalizer) while the call runs. A
    /// default Lease stands for "no handle" (IntPtr.Zero). Use with `using`.</summary>
    internal struct Lease : IDisposable
    {
        SafeHandle _handle;
        public readonly IntPtr Ptr;

        public Lease(SafeHandle handle, string what)
        {
            _handle = null;
            Ptr = IntPtr.Zero;
            if (handle == null)
                return;
            var kv = handle as KvHandle;
            if (handle.IsClosed || (kv != null && kv.IsDisposed))
                throw new ObjectDisposedException(what);
            bool added = false;
            handle.DangerousAddRef(ref added);  // throws ObjectDisposedException if closed meanwhile
            _handle = handle;
            Ptr = handle.DangerousGetHandle();
        }

        /// <summary>The reference now belongs to the caller (a child handle keeps it).</summary>
        public SafeHandle TakeOwnership()
        {
            var h = _handle;
            _handle = null;
            return h;
        }

        public void Dispose()
        {
            if (_handle != null)
            {
                _handle.DangerousRelease();
                _handle = null;
            }
        }
    }
}
