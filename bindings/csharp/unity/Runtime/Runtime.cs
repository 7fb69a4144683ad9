// Library-wide calls, devices and the runtime (kv_runtime: Vulkan instance, device and queue).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
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
        /// <summary>kv_chat_format_template without a model (bos_token and eos_token undefined).</summary>
        public static string ChatFormat(string chatTemplate, ChatMessage[] messages, ChatFlags flags = ChatFlags.None)
        {
            if (chatTemplate == null)
                throw new ArgumentNullException("chatTemplate");
            return Model.RenderChat(IntPtr.Zero, chatTemplate, messages, flags);
        }

        /// <summary>kv_json_schema_to_grammar: GBNF (root rule "root") for Session.SetGrammar.</summary>
        public static string JsonSchemaToGrammar(string schemaJson)
        {
            if (schemaJson == null)
                throw new ArgumentNullException("schemaJson");
            byte[] schema = Encoding.UTF8.GetBytes(schemaJson);
            var size = UIntPtr.Zero;
            Check.Status(Native.kv_json_schema_to_grammar(schema, (UIntPtr)schema.Length, null, ref size));
            while (true)
            {
                var buf = new byte[(int)size];
                if (Check.Status(Native.kv_json_schema_to_grammar(schema, (UIntPtr)schema.Length, buf, ref size))
                    != KvStatus.Incomplete)
                {
                    int n = (int)size;
                    if (n > 0 && buf[n - 1] == 0)
                        n--;  // the terminating NUL
                    return Encoding.UTF8.GetString(buf, 0, n);
                }
            }
        }

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
        /// <summary>Since 0.2.0, the runtime's queue as granted (Runtime.Info only; 0 when enumerated):
        /// its family, KV_QUEUE_* bits, priority, KV_GLOBAL_PRIORITY_* value and GPU budget in effect.</summary>
        public readonly uint QueueFamily, QueueFlags, GlobalPriority, GpuBudgetUs;
        public readonly float QueuePriority;

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
            QueueFamily = d.queue_family;
            QueueFlags = d.queue_flags;
            QueuePriority = d.queue_priority;
            GlobalPriority = d.global_priority;
            GpuBudgetUs = d.gpu_budget_us;
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
        /// <summary>Since 0.2.0: a file that keeps the compiled pipelines between runs (null: none).</summary>
        public string PipelineCachePath;
        /// <summary>Since 0.2.0 (GPU scheduling beside a renderer, see kvulkan.h): GPU time per
        /// submission in microseconds (0: no budget); for a device kvulkan creates, the queue
        /// priority in (0, 1] (0: 1.0) and a KV_GLOBAL_PRIORITY_* value (0: none).</summary>
        public uint GpuBudgetUs;
        public float QueuePriority;
        public uint GlobalPriority;
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
            desc.gpu_budget_us = options.GpuBudgetUs;
            desc.queue_priority = options.QueuePriority;
            desc.global_priority = options.GlobalPriority;
            var handle = new RuntimeHandle();
            GCHandle name = default(GCHandle), cachePath = default(GCHandle);
            try
            {
                if (options.PipelineCachePath != null)
                {
                    cachePath = GCHandle.Alloc(Utf8.ToNative(options.PipelineCachePath), GCHandleType.Pinned);
                    desc.pipeline_cache_path = cachePath.AddrOfPinnedObject();
                }
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
                if (cachePath.IsAllocated)
                    cachePath.Free();
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

        /// <summary>kv_runtime_use_queue (since 0.2.0): runs fn(vkQueue) on this thread while
        /// kvulkan does not submit to its VkQueue, for an engine submitting to the same queue. fn
        /// must return quickly and must not call kvulkan; an exception it throws is rethrown here.</summary>
        public void UseQueue(Action<IntPtr> fn)
        {
            if (fn == null)
                throw new ArgumentNullException("fn");
            var call = new QueueCall { Fn = fn };
            GCHandle target = GCHandle.Alloc(call);
            try
            {
                using (var rt = new Lease(Handle, "Runtime"))
                    Check.Status(Native.kv_runtime_use_queue(rt.Ptr, QueueThunk, GCHandle.ToIntPtr(target)));
            }
            finally
            {
                target.Free();
            }
            if (call.Error != null)
                throw call.Error;
        }

        sealed class QueueCall
        {
            public Action<IntPtr> Fn;
            public Exception Error;
        }

        static readonly Native.kv_queue_fn QueueThunk = OnQueue;  // kept alive for the process

        [MonoPInvokeCallback(typeof(Native.kv_queue_fn))]
        static void OnQueue(IntPtr vkQueue, IntPtr user)
        {
            var call = (QueueCall)GCHandle.FromIntPtr(user).Target;
            try
            {
                call.Fn(vkQueue);
            }
            catch (Exception e)
            {
                call.Error = e;  // never unwinds into the library
            }
        }

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
