// Status codes, the exception that carries them, and UTF-8 helpers for the idiomatic layer.
using System;
using System.Runtime.InteropServices;
using System.Text;
using Kvulkan.Interop;

namespace Kvulkan
{
    /// <summary>kv_status: 0 success, positive non-error outcomes, negative errors (kvulkan.h).</summary>
    public enum KvStatus
    {
        Ok = 0,
        Incomplete = 1,
        EndOfGeneration = 2,
        /// <summary>KV_NOT_READY: a ticket's work still runs (since 0.2.0).</summary>
        NotReady = 3,
        /// <summary>KV_CANCELLED: kv_session_cancel stopped a prefill (since 0.2.0).</summary>
        Cancelled = 4,
        InvalidArgument = -1,
        IO = -2,
        BadModel = -3,
        Unsupported = -4,
        OutOfHostMemory = -5,
        OutOfDeviceMemory = -6,
        ContextFull = -7,
        DeviceLost = -8,
        NoDevice = -9,
        Internal = -10,
        BadState = -11,
        BadToken = -12,
        /// <summary>KV_ERR_BUSY: the session is in use by another call or a ticket (since 0.2.0).</summary>
        Busy = -13,
    }

    /// <summary>A kv_* call returned an error. <see cref="Status"/> is its kv_status,
    /// <see cref="NativeMessage"/> the library's kv_last_error_message() for that call, and
    /// <see cref="Exception.Message"/> reads "KV_ERR_IO: cannot open ...".</summary>
    public class KvException : Exception
    {
        public KvException(KvStatus status, string nativeMessage)
            : base(Format(status, nativeMessage))
        {
            Status = status;
            NativeMessage = nativeMessage ?? "";
        }

        public KvStatus Status { get; private set; }
        public string NativeMessage { get; private set; }

        /// <summary>The C name of the status, e.g. "KV_ERR_IO" (from kv_status_string).</summary>
        public string StatusName { get { return Library.StatusName(Status); } }

        static string Format(KvStatus status, string message)
        {
            string name = Library.StatusName(status);
            return string.IsNullOrEmpty(message) ? name : name + ": " + message;
        }
    }

    internal static class Check
    {
        /// <summary>Throws KvException for a negative status (reading the calling thread's
        /// kv_last_error_message at once); returns a non-negative one.</summary>
        public static KvStatus Status(int status)
        {
            if (status < 0)
                throw new KvException((KvStatus)status, Utf8.FromNative(Native.kv_last_error_message()));
            return (KvStatus)status;
        }
    }

    internal static class Utf8
    {
        // Invalid bytes become U+FFFD; no BOM.
        static readonly UTF8Encoding Replacing = new UTF8Encoding(false, false);

        /// <summary>A NUL-terminated UTF-8 C string the library owns, as a string ("" for NULL).</summary>
        public static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero)
                return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0)
                n++;
            var bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Replacing.GetString(bytes);
        }

        /// <summary>A fixed char[] field of a struct, up to its first NUL.</summary>
        public static string FromFixed(byte[] field)
        {
            if (field == null)
                return "";
            int n = Array.IndexOf(field, (byte)0);
            return Replacing.GetString(field, 0, n < 0 ? field.Length : n);
        }

        /// <summary>text as NUL-terminated UTF-8 for a const char* parameter.</summary>
        public static byte[] ToNative(string text)
        {
            if (text == null)
                throw new ArgumentNullException("text");
            var bytes = new byte[Replacing.GetByteCount(text) + 1];
            Replacing.GetBytes(text, 0, text.Length, bytes, 0);
            return bytes;
        }
    }
}
