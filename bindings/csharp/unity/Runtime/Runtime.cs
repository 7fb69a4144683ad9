// Library-wide calls, devices and the runtime (kv_runtime: Vulkan instance, device and queue).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Kvulkan.Interop;

namespace Kvulkan
{
    public enum LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3, Validation = 4 }

    public enum DeviceType { Other = 0, IntegratedGpu = 1, DiscreteGpu = 2, VirtualGpu = 3, Cpu = 4 }

    /// <summary>Calls that need no object: versions, status names, the thread's last error.</summary>
    public static class Library
    {
        /// <summary>The version of the header this binding mirrors (KV_VERSION).</summary>
        public static readonly Version HeaderVersion =
            new Version(Native.HEADER_VERSION_MAJOR, Native.HEADER_VERSION_MINOR, Native.HEADER_VERSION_PATCH);

        /// <summary>kv_version() of the library actually loaded.</summary>
        public static Version LoadedVersion
        {
            get
            {
                uint v = Native.kv_version();
                return new Version((int)(v >> 22), (int)((v >> 12) & 0x3FF), (int)(v & 0xFFF));
            }
        }

        /// <summary>kv_version_string(), e.g. "0.2.0".</summary>
        public static string VersionString { get { return Utf8.FromNative(Native.kv_version_string()); } }

        /// <summary>kv_status_string(): "KV_ERR_IO: I/O error".</summary>
        public static string StatusString(KvStatus status) { return Utf8.FromNative(Native.kv_status_string((int)status)); }

        /// <summary>The C name of a status ("KV_ERR_IO"): kv_status_string() up to its colon.</summary>
        public static string StatusName(KvStatus status)
        {
            string s = StatusString(status);
            int colon = s.IndexOf(':');
            return colon < 0 ? s : s.Substring(0, colon);
        }

        /// <summary>kv_last_error_message() of the calling thread ("" if none).</summary>
        public static string LastErrorMessage { get { return Utf8.FromNative(Native.kv_last_error_message()); } }

        /// <summary>kv_enumerate_devices(): the Vulkan devices kvulkan can use.</summary>
        public static IList<DeviceInfo> EnumerateDevices(bool validation = false)
        {
            var desc = kv_runtime_desc.Init();
            if (validation)
                desc.flags |= Native.KV_RUNTIME_VALIDATION;
            uint count = 0;
            Check.Status(Native.kv_enumerate_devices(ref desc, IntPtr.Zero, ref count));
            var result = new List<DeviceInfo>();
            if (count == 0)
                return result;
            int size = Marshal.SizeOf(typeof(kv_device_info));
            IntPtr buffer = Marshal.AllocHGlobal(size * (int)count);
            try
            {
                for (int i = 0; i < count; i++)  // zeroed elements, each with struct_size set
                    Marshal.StructureToPtr(kv_device_info.Create(), buffer + i * size, false);
                Check.Status(Native.kv_enumerate_devices(ref desc, buffer, ref count));
                for (int i = 0; i < count; i++)
                    result.Add(new DeviceInfo((kv_device_info)Marshal.PtrToStructure(buffer + i * size, typeof(kv_device_info))));
            }
            finally
            {
                Marshal.FreeHGlobal(buffer);
            }
            return result;
        }
    }

    public sealed class MemoryHeap
    {
        public ulong Size, Budget, Usage;
        public bool DeviceLocal;
    }

    /// <summary>kv_device_info, with its strings decoded.</summary>
    public sealed class DeviceInfo
    {
        public readonly uint Index;
        public readonly string DeviceName, DriverName, DriverInfo;
        public readonly DeviceType DeviceType;
        public readonly uint VendorId, DeviceId, ApiVersion, DriverVersion, Features;
        public readonly uint SubgroupSize, SubgroupSizeMin, SubgroupSizeMax, SubgroupOps;
        public readonly ulong MaxStorageBufferRange, MaxAllocationSize;
        public readonly uint MaxSharedMemory, MaxWorkgroupInvocations, MaxWorkgroupCountX;
        public readonly MemoryHeap[] MemoryHeaps;
        public readonly float TimestampPeriodNs;

        internal DeviceInfo(kv_device_info d)
        {
            Index = d.index;
            DeviceName = Utf8.FromFixed(d.device_name);
            DriverName = Utf8.FromFixed(d.driver_name);
            DriverInfo = Utf8.FromFixed(d.driver_info);
            DeviceType = (DeviceType)d.device_type;
            VendorId = d.vendor_id;
            DeviceId = d.device_id;
            ApiVersion = d.api_version;
            DriverVersion = d.driver_version;
            Features = d.features;
            SubgroupSize = d.subgroup_size;
            SubgroupSizeMin = d.subgroup_size_min;
            SubgroupSizeMax = d.subgroup_size_max;
            SubgroupOps = d.subgroup_ops;
            MaxStorageBufferRange = d.max_storage_buffer_range;
            MaxAllocationSize = d.max_allocation_size;
            MaxSharedMemory = d.max_shared_memory;
            MaxWorkgroupInvocations = d.max_workgroup_invocations;
            MaxWorkgroupCountX = d.max_workgroup_count_x;
            int n = (int)Math.Min(d.memory_heap_count, (uint)Native.KV_MAX_MEMORY_HEAPS);
            MemoryHeaps = new MemoryHeap[n];
            for (int i = 0; i < n; i++)
            {
                var h = d.memory_heaps[i];
                MemoryHeaps[i] = new MemoryHeap { Size = h.size, Budget = h.budget, Usage = h.usage, DeviceLocal = h.device_local != 0 };
            }
            TimestampPeriodNs = d.timestamp_period_ns;
        }

        public override string ToString() { return DeviceName + " (" + DeviceType + ", " + DriverName + ")"; }
    }

    public sealed class BandwidthResult
    {
        public ulong Bytes;
        public double ReadGBps, CopyGBps, WriteGBps;
    }

    /// <summary>Options of kv_runtime_create (kv_runtime_desc).</summary>
    public sealed class RuntimeOptions
    {
        /// <summary>An index into Library.EnumerateDevices(); -1: choose by DeviceName or the best.</summary>
        public int DeviceIndex = -1;
        /// <summary>Case-insensitive substring of the device name; null: the best device.</summary>
        public string DeviceName;
        /// <summary>Enable the Khronos validation layer (KvException Unsupported if not installed).</summary>
        public bool Validation;
        /// <summary>Ignore the KV_DEVICE and KV_VALIDATION environment variables.</summary>
        public bool IgnoreEnvironment;
        /// <summary>Most device memory the runtime may hold, bytes (0: no limit).</summary>
        public ulong MemoryBudget;
        /// <summary>Called from any kvulkan thread (make it thread-safe; do not call kvulkan from it).
        /// An exception it throws is swallowed: none may cross into native code.</summary>
        public Action<LogLevel, string> Log;
    }

    /// <summary>A kvulkan runtime (kv_runtime). Dispose it after its models (or not: a runtime
    /// disposed before its models lives on until the last of them is disposed).</summary>
    public sealed class Runtime : IDisposable
    {
        /// <summary>The native kv_runtime, for calls through Kvulkan.Interop.Native.</summary>
        public readonly RuntimeHandle Handle;

        public Runtime() : this(null) { }

        public Runtime(RuntimeOptions options)
        {
            options = options ?? new RuntimeOptions();
            var desc = kv_runtime_desc.Init();
            desc.device_index = options.DeviceIndex;
            if (options.Validation)
                desc.flags |= Native.KV_RUNTIME_VALIDATION;
            if (options.IgnoreEnvironment)
                desc.flags |= Native.KV_RUNTIME_IGNORE_ENVIRONMENT;
            desc.memory_budget = options.MemoryBudget;
            var handle = new RuntimeHandle();
            GCHandle name = default(GCHandle);
            try
            {
                if (options.DeviceName != null)
                {
                    name = GCHandle.Alloc(Utf8.ToNative(options.DeviceName), GCHandleType.Pinned);
                    desc.device_name = name.AddrOfPinnedObject();
                }
                if (options.Log != null)
                {
                    handle.LogTarget = GCHandle.Alloc(options.Log);
                    desc.log_callback = LogThunkPointer;
                    desc.log_user_data = GCHandle.ToIntPtr(handle.LogTarget);
                }
                IntPtr native;
                Check.Status(Native.kv_runtime_create(ref desc, out native));
                var none = default(Lease);
                handle.Adopt(native, ref none);
            }
            catch
            {
                if (handle.LogTarget.IsAllocated && handle.IsInvalid)
                    handle.LogTarget.Free();
                throw;
            }
            finally
            {
                if (name.IsAllocated)
                    name.Free();
            }
            Handle = handle;
        }

        /// <summary>kv_runtime_get_info(): the runtime's device (heap usage read now).</summary>
        public DeviceInfo GetInfo()
        {
            var info = kv_device_info.Create();
            using (var rt = new Lease(Handle, "Runtime"))
                Check.Status(Native.kv_runtime_get_info(rt.Ptr, ref info));
            return new DeviceInfo(info);
        }

        /// <summary>kv_runtime_validation_message_count(): validation messages received so far.</summary>
        public ulong ValidationMessageCount
        {
            get
            {
                using (var rt = new Lease(Handle, "Runtime"))
                    return Native.kv_runtime_validation_message_count(rt.Ptr);
            }
        }

        /// <summary>kv_runtime_measure_bandwidth() (0, 0: the library's defaults).</summary>
        public BandwidthResult MeasureBandwidth(ulong bytes = 0, uint iterations = 0)
        {
            var r = new kv_bandwidth_result();
            r.struct_size = (uint)Marshal.SizeOf(typeof(kv_bandwidth_result));
            using (var rt = new Lease(Handle, "Runtime"))
                Check.Status(Native.kv_runtime_measure_bandwidth(rt.Ptr, bytes, iterations, ref r));
            return new BandwidthResult { Bytes = r.bytes, ReadGBps = r.read_gbps, CopyGBps = r.copy_gbps, WriteGBps = r.write_gbps };
        }

        /// <summary>Loads a GGUF file onto this runtime's device (see Model).</summary>
        public Model LoadModel(string path, ModelOptions options = null) { return new Model(this, path, options); }

        public bool IsDisposed { get { return Handle.IsDisposed; } }

        public void Dispose() { Handle.Dispose(); }

        // ---- the log callback: one static thunk, the managed target travels as user_data --------
        static readonly kv_log_fn LogThunk = OnLog;  // kept alive for the process
        static readonly IntPtr LogThunkPointer = Marshal.GetFunctionPointerForDelegate(LogThunk);

        [MonoPInvokeCallback(typeof(kv_log_fn))]
        static void OnLog(IntPtr userData, int level, IntPtr message)
        {
            try
            {
                var target = GCHandle.FromIntPtr(userData).Target as Action<LogLevel, string>;
                if (target != null)
                    target((LogLevel)level, Utf8.FromNative(message));
            }
            catch (Exception)
            {
                // Never let an exception unwind into the library.
            }
        }
    }
}
