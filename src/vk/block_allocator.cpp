#include "vk/block_allocator.h"

#include <iterator>

#include "common/error.h"

namespace kv::vk {

BlockAllocator::BlockAllocator(uint64_t size) : size_(size) {
    KV_CHECK(size > 0);
    free_[0] = size;
}

bool BlockAllocator::allocate(uint64_t size, uint64_t alignment, uint64_t* offset) {
    KV_CHECK(size > 0 && alignment > 0 && (alignment & (alignment - 1)) == 0);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        uint64_t start = it->first, len = it->second;
        uint64_t aligned = (start + alignment - 1) & ~(alignment - 1);
        if (aligned < start || aligned - start > len || len - (aligned - start) < size) continue;
        uint64_t end = aligned + size, range_end = start + len;
        free_.erase(it);
        if (aligned > start) free_[start] = aligned - start;  // head padding stays free
        if (range_end > end) free_[end] = range_end - end;
        used_ += size;
        *offset = aligned;
        return true;
    }
    return false;
}

void BlockAllocator::free(uint64_t offset, uint64_t size) {
    KV_CHECK(size > 0 && offset + size <= size_ && used_ >= size);
    auto next = free_.lower_bound(offset);
    KV_CHECK(next == free_.end() || next->first >= offset + size);  // no overlap (double free)
    if (next != free_.begin()) {
        auto prev = std::prev(next);
        KV_CHECK(prev->first + prev->second <= offset);
    }
    uint64_t start = offset, len = size;
    if (next != free_.end() && next->first == offset + size) {  // merge right
        len += next->second;
        next = free_.erase(next);
    }
    if (next != free_.begin()) {  // merge left
        auto prev = std::prev(next);
        if (prev->first + prev->second == offset) {
            start = prev->first;
            len += prev->second;
            free_.erase(prev);
        }
    }
    free_[start] = len;
    used_ -= size;
}

uint64_t BlockAllocator::largest_free() const {
    uint64_t m = 0;
    for (auto& [o, s] : free_) m = s > m ? s : m;
    return m;
}

}  // namespace kv::vk
