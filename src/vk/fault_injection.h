// Fault injection: a test-only hook, not API (nothing here is exported; tests that link the static
// library reach it through the Device). Each Device owns one FaultInjector, so arming it on one
// runtime never touches another.
//
// Points: every Allocator::allocate() request (a device allocation), every vkQueueSubmit and every
// fence wait of a CommandStream. At each point the code asks check(point): VK_SUCCESS means go on;
// any other VkResult is what the Vulkan call reports instead, and the caller runs its ordinary
// error path with it (an allocation: VK_ERROR_OUT_OF_DEVICE_MEMORY, as if a new block could not be
// allocated; a submit: VK_ERROR_OUT_OF_DEVICE_MEMORY or VK_ERROR_DEVICE_LOST, the command buffer
// not run; a wait: VK_ERROR_DEVICE_LOST after the work really completed). Nothing in the engine
// knows whether a failure was injected.
//
// States: off (the default; check() is one relaxed atomic load), counting (every point counts its
// events from zero, nothing fails), armed (counting, and the n-th event at one point fails; the
// events after it pass). fired() says whether the armed failure happened.
//
// Thread safety: all members may be called from any thread; counts are exact when the events of
// one point come from one thread at a time (a test drives one operation at a time).
#pragma once

#include <atomic>
#include <cstdint>

#include "vk/vk_common.h"

namespace kv::vk {

enum class FaultPoint : uint32_t {
    Allocation = 0,  // Allocator::allocate: one device-memory request (a buffer, or a chunk of one)
    Submit = 1,      // CommandStream: one vkQueueSubmit (a part of a recording)
    Wait = 2,        // CommandStream: one fence wait (one submitted part)
};
constexpr uint32_t kFaultPointCount = 3;

class FaultInjector {
public:
    // Counting on, counters at zero, nothing armed.
    void count();
    // Counting on, counters at zero; the n-th (1-based) event at `point` from now reports
    // `result` (not VK_SUCCESS) instead of running.
    void arm(FaultPoint point, uint64_t n, VkResult result);
    // Off: nothing counts or fails. Counters and fired() keep their last values.
    void disarm();

    uint64_t events(FaultPoint point) const { return counts_[index(point)].load(); }
    bool fired() const { return fired_.load(); }

    // The hot-path check: VK_SUCCESS, or the result the call at `point` must report.
    VkResult check(FaultPoint point) {
        if (!active_.load(std::memory_order_relaxed)) return VK_SUCCESS;
        return check_slow(point);
    }

private:
    static uint32_t index(FaultPoint p) { return static_cast<uint32_t>(p); }
    VkResult check_slow(FaultPoint point);

    std::atomic<bool> active_{false};
    std::atomic<bool> fired_{false};
    std::atomic<uint32_t> armed_point_{0};
    std::atomic<uint64_t> armed_n_{0};  // 0: count only
    std::atomic<int32_t> armed_result_{VK_SUCCESS};
    std::atomic<uint64_t> counts_[kFaultPointCount] = {};
};

}  // namespace kv::vk
