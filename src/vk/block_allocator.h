// Offset allocator for one memory block: first-fit over an address-ordered free list, aligned
// allocations, coalescing on free. Pure bookkeeping (no Vulkan) so it is unit-tested on its own.
// Ranges are half-open [offset, offset + size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

namespace kv::vk {

class BlockAllocator {
public:
    explicit BlockAllocator(uint64_t size);

    // Returns true and sets *offset on success; false when no free range fits (not an error).
    // `alignment` must be a power of two; `size` > 0.
    bool allocate(uint64_t size, uint64_t alignment, uint64_t* offset);
    // Frees a range returned by allocate() (exact offset and size). Adjacent free ranges merge.
    void free(uint64_t offset, uint64_t size);

    uint64_t size() const { return size_; }
    uint64_t used() const { return used_; }
    uint64_t largest_free() const;
    size_t free_range_count() const { return free_.size(); }
    bool empty() const { return used_ == 0; }

private:
    uint64_t size_;
    uint64_t used_ = 0;
    std::map<uint64_t, uint64_t> free_;  // offset -> size, non-overlapping, never adjacent
};

}  // namespace kv::vk
