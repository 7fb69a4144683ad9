#include "vk/memory.h"

#include <algorithm>

namespace kv::vk {

// ---- Allocator ---------------------------------------------------------------------------------

Allocator::Allocator(Device& device, uint64_t block_size) : device_(device) {
    const auto& mp = device.memory_properties();
    uint64_t largest_heap = 0;
    for (uint32_t h = 0; h < mp.memoryHeapCount; ++h)
        if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            largest_heap = std::max<uint64_t>(largest_heap, mp.memoryHeaps[h].size);
    if (block_size == 0) {
        block_size = 256ull << 20;
        if (largest_heap) block_size = std::min<uint64_t>(block_size, largest_heap / 4);
    }
    block_size_ = std::min<uint64_t>(block_size, device.max_allocation_size());
    block_size_ = std::max<uint64_t>(block_size_, 1ull << 20);
    blocks_.resize(mp.memoryTypeCount);
}

Allocator::~Allocator() {
    for (auto& type_blocks : blocks_)
        for (auto& b : type_blocks)
            if (b.memory) vkFreeMemory(device_.handle(), b.memory, nullptr);
}

bool Allocator::coherent(uint32_t memory_type) const {
    return device_.memory_properties().memoryTypes[memory_type].propertyFlags &
           VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
}

int Allocator::find_memory_type(uint32_t type_bits, MemoryUse use) const {
    const auto& mp = device_.memory_properties();
    // Preference lists: first match wins.
    std::vector<std::pair<VkMemoryPropertyFlags, VkMemoryPropertyFlags>> prefs;  // (required, avoided)
    const auto DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
               HC = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, CA = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    switch (use) {
        case MemoryUse::Device:
            // Unified memory (integrated/mobile): device-local and mappable, for direct uploads.
            // On discrete GPUs the small host-visible BAR heap is not used for bulk data.
            if (device_.properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                device_.properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU)
                prefs.push_back({DL | HV | HC, 0});
            prefs.push_back({DL, 0});
            prefs.push_back({0, 0});
            break;
        case MemoryUse::Upload:
            prefs.push_back({HV | HC, DL});
            prefs.push_back({HV | HC, 0});
            prefs.push_back({HV, 0});
            break;
        case MemoryUse::Readback:
            prefs.push_back({HV | CA, 0});
            prefs.push_back({HV | HC, 0});
            prefs.push_back({HV, 0});
            break;
    }
    for (auto [req, avoid] : prefs)
        for (uint32_t t = 0; t < mp.memoryTypeCount; ++t) {
            auto fl = mp.memoryTypes[t].propertyFlags;
            if ((type_bits & (1u << t)) && (fl & req) == req && !(fl & avoid)) return static_cast<int>(t);
        }
    return -1;
}

VkDeviceMemory Allocator::allocate_memory(uint32_t type, uint64_t size, void** mapped, VkResult injected) {
    if (limit_ && held_ + size > limit_)
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
             "device memory limit reached: %llu bytes held, %llu more requested, limit %llu",
             (unsigned long long)held_, (unsigned long long)size, (unsigned long long)limit_);
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = size;
    ai.memoryTypeIndex = type;
    VkDeviceMemory mem = VK_NULL_HANDLE;
    VkResult r = injected != VK_SUCCESS ? injected : vkAllocateMemory(device_.handle(), &ai, nullptr, &mem);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY, "vkAllocateMemory of %llu bytes (memory type %u) failed: %s%s",
             (unsigned long long)size, type, result_name(r), injected != VK_SUCCESS ? " (injected fault)" : "");
    if (r != VK_SUCCESS) throw_vk(r, "vkAllocateMemory");
    *mapped = nullptr;
    if (device_.memory_properties().memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
        r = vkMapMemory(device_.handle(), mem, 0, VK_WHOLE_SIZE, 0, mapped);
        if (r != VK_SUCCESS) {
            vkFreeMemory(device_.handle(), mem, nullptr);
            throw_vk(r, "vkMapMemory");
        }
    }
    held_ += size;
    return mem;
}

Allocation Allocator::allocate(const VkMemoryRequirements& req, MemoryUse use, const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    int t = find_memory_type(req.memoryTypeBits, use);
    if (t < 0) fail(KV_ERR_UNSUPPORTED, "no suitable memory type for %s", what);
    uint32_t type = static_cast<uint32_t>(t);
    if (req.size > device_.max_allocation_size())
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
             "%s needs %llu bytes in one allocation, more than the device's maxMemoryAllocationSize %llu",
             what, (unsigned long long)req.size, (unsigned long long)device_.max_allocation_size());

    // An injected fault fails this request as if it needed a new block and none could be had.
    if (VkResult injected = device_.faults().check(FaultPoint::Allocation); injected != VK_SUCCESS) {
        void* unused = nullptr;
        allocate_memory(type, req.size, &unused, injected);  // throws: it reports `injected`
    }

    Allocation a;
    a.memory_type = type;
    a.size = req.size;
    auto& list = blocks_[type];
    // Large requests get their own allocation; blocks serve the rest.
    if (req.size > block_size_ / 2) {
        Block b;
        void* mapped = nullptr;
        b.memory = allocate_memory(type, req.size, &mapped);
        b.mapped = mapped;
        list.push_back(std::move(b));
        a.block = static_cast<uint32_t>(list.size() - 1);
        a.dedicated = true;
        a.memory = list.back().memory;
        a.mapped = mapped;
        ++allocation_count_;
        used_ += req.size;
        return a;
    }
    uint64_t align = std::max<uint64_t>(req.alignment, 16);
    // Also respect nonCoherentAtomSize for host-visible memory so flush ranges never overlap.
    if (!coherent(type)) align = std::max<uint64_t>(align, device_.limits().nonCoherentAtomSize);
    for (uint32_t i = 0; i < list.size(); ++i) {
        Block& b = list[i];
        uint64_t off;
        if (b.ranges && b.ranges->allocate(req.size, align, &off)) {
            a.block = i;
            a.offset = off;
            a.memory = b.memory;
            a.mapped = b.mapped ? static_cast<char*>(b.mapped) + off : nullptr;
            ++allocation_count_;
            used_ += req.size;
            return a;
        }
    }
    // A new block; under a byte limit it shrinks to what remains (but at least this request).
    uint64_t bs = block_size_;
    if (limit_) {
        uint64_t room = limit_ > held_ ? limit_ - held_ : 0;
        if (room < bs) bs = std::max<uint64_t>(room, req.size + align);
    }
    Block nb;
    void* mapped = nullptr;
    nb.memory = allocate_memory(type, bs, &mapped);
    nb.mapped = mapped;
    nb.ranges = std::make_unique<BlockAllocator>(bs);
    uint64_t off = 0;
    KV_CHECK(nb.ranges->allocate(req.size, align, &off));
    // Reuse an emptied slot (a freed dedicated allocation) before growing the list.
    uint32_t index = static_cast<uint32_t>(list.size());
    for (uint32_t i = 0; i < list.size(); ++i)
        if (!list[i].memory) {
            index = i;
            break;
        }
    if (index == list.size()) list.push_back(std::move(nb));
    else list[index] = std::move(nb);
    a.block = index;
    a.offset = off;
    a.memory = list[index].memory;
    a.mapped = mapped ? static_cast<char*>(mapped) + off : nullptr;
    ++allocation_count_;
    used_ += req.size;
    return a;
}

void Allocator::free(const Allocation& a) {
    if (!a.memory) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto& list = blocks_[a.memory_type];
    KV_CHECK(a.block < list.size());
    Block& b = list[a.block];
    KV_CHECK(b.memory == a.memory);
    --allocation_count_;
    used_ -= a.size;
    if (a.dedicated) {
        vkFreeMemory(device_.handle(), b.memory, nullptr);
        held_ -= a.size;
        b = Block{};
        return;
    }
    b.ranges->free(a.offset, a.size);
    // Keep one empty block per type as a cache; release further empty ones.
    if (b.ranges->empty()) {
        size_t empties = 0;
        for (auto& o : list)
            if (o.ranges && o.ranges->empty()) ++empties;
        if (empties > 1) {
            held_ -= b.ranges->size();
            vkFreeMemory(device_.handle(), b.memory, nullptr);
            b = Block{};
        }
    }
}

AllocatorStats Allocator::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    AllocatorStats s;
    for (auto& list : blocks_)
        for (auto& b : list)
            if (b.memory) ++s.block_count;
    s.block_bytes = held_;
    s.used_bytes = used_;
    s.allocation_count = allocation_count_;
    return s;
}

// ---- Buffer ------------------------------------------------------------------------------------

Buffer::Buffer(Allocator* allocator, uint64_t size, MemoryUse use) : allocator_(allocator), size_(size) {
    KV_CHECK(size > 0);
    VkDevice dev = allocator->device().handle();
    VkBufferCreateInfo ci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    ci.size = (size + 15) & ~uint64_t(15);  // whole 16-byte words (see memory.h)
    ci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    ci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkResult r = vkCreateBuffer(dev, &ci, nullptr, &buffer_);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY, "vkCreateBuffer of %llu bytes failed: %s",
             (unsigned long long)size, result_name(r));
    if (r != VK_SUCCESS) throw_vk(r, "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev, buffer_, &req);
    try {
        alloc_ = allocator->allocate(req, use, "a buffer");
        coherent_ = allocator->coherent(alloc_.memory_type);
        KV_VK(vkBindBufferMemory(dev, buffer_, alloc_.memory, alloc_.offset));
    } catch (...) {
        if (alloc_.memory) allocator->free(alloc_);
        vkDestroyBuffer(dev, buffer_, nullptr);
        buffer_ = VK_NULL_HANDLE;
        throw;
    }
}

Buffer::~Buffer() { reset(); }

void Buffer::reset() {
    if (buffer_) {
        vkDestroyBuffer(allocator_->device().handle(), buffer_, nullptr);
        allocator_->free(alloc_);
    }
    buffer_ = VK_NULL_HANDLE;
    alloc_ = Allocation{};
    size_ = 0;
}

Buffer::Buffer(Buffer&& o) noexcept
    : allocator_(o.allocator_), buffer_(o.buffer_), size_(o.size_), alloc_(o.alloc_), coherent_(o.coherent_) {
    o.buffer_ = VK_NULL_HANDLE;
    o.alloc_ = Allocation{};
    o.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        reset();
        allocator_ = o.allocator_;
        buffer_ = o.buffer_;
        size_ = o.size_;
        alloc_ = o.alloc_;
        coherent_ = o.coherent_;
        o.buffer_ = VK_NULL_HANDLE;
        o.alloc_ = Allocation{};
        o.size_ = 0;
    }
    return *this;
}

static VkMappedMemoryRange atom_range(const Device& dev, const Allocation& a, uint64_t offset, uint64_t size) {
    uint64_t atom = dev.limits().nonCoherentAtomSize;
    uint64_t begin = a.offset + offset, end = begin + size;
    begin = begin / atom * atom;
    end = (end + atom - 1) / atom * atom;
    VkMappedMemoryRange r{VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE};
    r.memory = a.memory;
    r.offset = begin;
    r.size = end - begin;
    return r;
}

void Buffer::flush(uint64_t offset, uint64_t size) const {
    if (coherent_ || !alloc_.mapped) return;
    auto r = atom_range(allocator_->device(), alloc_, offset, size);
    KV_VK(vkFlushMappedMemoryRanges(allocator_->device().handle(), 1, &r));
}

void Buffer::invalidate(uint64_t offset, uint64_t size) const {
    if (coherent_ || !alloc_.mapped) return;
    auto r = atom_range(allocator_->device(), alloc_, offset, size);
    KV_VK(vkInvalidateMappedMemoryRanges(allocator_->device().handle(), 1, &r));
}

// ---- SplitBuffer -------------------------------------------------------------------------------

SplitBuffer::SplitBuffer(Allocator* allocator, uint64_t size, uint64_t granularity, MemoryUse use,
                         uint64_t max_chunk_bytes)
    : size_(size), granularity_(granularity) {
    KV_CHECK(size > 0 && granularity > 0 && size % granularity == 0);
    const Device& dev = allocator->device();
    uint64_t limit = std::min<uint64_t>(dev.max_storage_buffer_range(), dev.max_allocation_size());
    if (max_chunk_bytes != 0) limit = std::min(limit, max_chunk_bytes);
    // A binding of a chunk may be rounded up to whole 16-byte words (see Buffer): keep that
    // within the range limit too.
    if (limit >= 16) limit &= ~uint64_t(15);
    // Chunks are whole units of `granularity`, and start on 16-byte offsets within their buffer.
    uint64_t units_per_chunk = limit / granularity;
    if (units_per_chunk == 0)
        fail(KV_ERR_UNSUPPORTED, "one row of %llu bytes exceeds the device's storage-buffer range %llu",
             (unsigned long long)granularity, (unsigned long long)limit);
    uint64_t chunk_bytes = units_per_chunk * granularity;
    for (uint64_t off = 0; off < size; off += chunk_bytes) {
        uint64_t n = std::min<uint64_t>(chunk_bytes, size - off);
        chunks_.emplace_back(allocator, n, use);
        offsets_.push_back(off);
    }
}

}  // namespace kv::vk
