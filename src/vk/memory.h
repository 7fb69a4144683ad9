// Device memory: large VkDeviceMemory blocks sub-allocated into buffers.
//
// Invariants:
//  - No allocation exceeds VkPhysicalDeviceMaintenance3Properties::maxMemoryAllocationSize, and
//    no descriptor binding exceeds maxStorageBufferRange: a tensor larger than that is a
//    SplitBuffer of several buffers (see below).
//  - Exhaustion throws kv::Error(KV_ERR_OUT_OF_DEVICE_MEMORY) naming the request; nothing leaks.
//  - Uploads go through a bounded staging buffer, or straight through a mapping when the buffer's
//    memory is host-visible (integrated and mobile GPUs, ReBAR).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vk/block_allocator.h"
#include "vk/device.h"

namespace kv::vk {

enum class MemoryUse {
    Device,    // device-local; host-visible if the device offers such memory (UMA / ReBAR)
    Upload,    // host-visible, coherent: staging for uploads
    Readback,  // host-visible, cached if available: results read by the host
};

class Allocator;

// One sub-allocation: a block, an offset and a size.
struct Allocation {
    uint32_t memory_type = 0;
    uint32_t block = 0;  // index into the allocator's blocks of that type
    uint64_t offset = 0;
    uint64_t size = 0;
    bool dedicated = false;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    void* mapped = nullptr;  // host pointer at `offset`, if host-visible
};

// A VkBuffer bound to a sub-allocation. Move-only; frees itself. The VkBuffer's size is `size`
// rounded up to a multiple of 16 bytes, so a binding may cover the last partial 16-byte word
// (shaders read byte-packed weights as uint[] / uvec4[]); size() is the requested size.
class Buffer {
public:
    Buffer() = default;
    Buffer(Allocator* allocator, uint64_t size, MemoryUse use);
    ~Buffer();
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    VkBuffer handle() const { return buffer_; }
    uint64_t size() const { return size_; }
    void* mapped() const { return alloc_.mapped; }
    bool host_visible() const { return alloc_.mapped != nullptr; }
    bool valid() const { return buffer_ != VK_NULL_HANDLE; }
    // Makes host writes visible / device writes readable for non-coherent memory.
    void flush(uint64_t offset, uint64_t size) const;
    void invalidate(uint64_t offset, uint64_t size) const;
    void reset();

private:
    Allocator* allocator_ = nullptr;
    VkBuffer buffer_ = VK_NULL_HANDLE;
    uint64_t size_ = 0;
    Allocation alloc_{};
    bool coherent_ = true;
};

// A view of a buffer for one descriptor binding: offset and size within it. `size` never exceeds
// maxStorageBufferRange (checked when bound).
struct BufferRange {
    VkBuffer buffer = VK_NULL_HANDLE;
    uint64_t offset = 0;
    uint64_t size = 0;
};
inline BufferRange whole(const Buffer& b) { return {b.handle(), 0, b.size()}; }

// A logical tensor of `size` bytes stored as consecutive chunks, each at most
// maxStorageBufferRange and a multiple of `granularity` bytes (a row, or a quantization block
// row), so a kernel can process each chunk as an independent binding.
class SplitBuffer {
public:
    SplitBuffer() = default;
    // `max_chunk_bytes` (0: no extra limit) caps the chunk size below the device's limits: tests
    // use it to exercise the several-chunk path on small tensors.
    SplitBuffer(Allocator* allocator, uint64_t size, uint64_t granularity, MemoryUse use,
                uint64_t max_chunk_bytes = 0);

    uint64_t size() const { return size_; }
    size_t chunk_count() const { return chunks_.size(); }
    const Buffer& chunk(size_t i) const { return chunks_[i]; }
    uint64_t chunk_offset(size_t i) const { return offsets_[i]; }  // logical byte offset
    uint64_t granularity() const { return granularity_; }

private:
    std::vector<Buffer> chunks_;
    std::vector<uint64_t> offsets_;
    uint64_t size_ = 0;
    uint64_t granularity_ = 1;
};

struct AllocatorStats {
    uint64_t block_bytes = 0;      // device memory held in blocks (and dedicated allocations)
    uint64_t used_bytes = 0;       // bytes handed out
    uint32_t block_count = 0;
    uint32_t allocation_count = 0;
};

class Allocator {
public:
    // `block_size` 0: min(256 MiB, maxMemoryAllocationSize, heap size / 4).
    explicit Allocator(Device& device, uint64_t block_size = 0);
    ~Allocator();
    Allocator(const Allocator&) = delete;
    Allocator& operator=(const Allocator&) = delete;

    Device& device() const { return device_; }
    // Allocates memory for `req`; throws KV_ERR_OUT_OF_DEVICE_MEMORY when nothing fits.
    Allocation allocate(const VkMemoryRequirements& req, MemoryUse use, const char* what);
    void free(const Allocation& a);
    AllocatorStats stats() const;
    bool coherent(uint32_t memory_type) const;
    // Byte limit on device-local memory held by this allocator (0 = none). Exceeding it fails
    // with KV_ERR_OUT_OF_DEVICE_MEMORY as a real exhaustion would: used to test that path.
    void set_limit(uint64_t bytes) { limit_ = bytes; }

private:
    struct Block {
        VkDeviceMemory memory = VK_NULL_HANDLE;
        void* mapped = nullptr;
        std::unique_ptr<BlockAllocator> ranges;  // null for a dedicated allocation
    };
    int find_memory_type(uint32_t type_bits, MemoryUse use) const;
    // `injected`: a fault (vk/fault_injection.h) reported instead of calling vkAllocateMemory.
    VkDeviceMemory allocate_memory(uint32_t type, uint64_t size, void** mapped, VkResult injected = VK_SUCCESS);

    Device& device_;
    uint64_t block_size_;
    uint64_t limit_ = 0;
    uint64_t held_ = 0;
    mutable std::mutex mutex_;
    std::vector<std::vector<Block>> blocks_;  // [memory type][block]
    uint32_t allocation_count_ = 0;
    uint64_t used_ = 0;
};

}  // namespace kv::vk
