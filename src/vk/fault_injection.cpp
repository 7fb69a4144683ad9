#include "vk/fault_injection.h"

namespace kv::vk {

void FaultInjector::count() {
    active_.store(false);
    for (auto& c : counts_) c.store(0);
    armed_n_.store(0);
    fired_.store(false);
    active_.store(true);
}

void FaultInjector::arm(FaultPoint point, uint64_t n, VkResult result) {
    KV_CHECK(n > 0 && result != VK_SUCCESS);
    active_.store(false);
    for (auto& c : counts_) c.store(0);
    armed_point_.store(index(point));
    armed_result_.store(result);
    armed_n_.store(n);
    fired_.store(false);
    active_.store(true);
}

void FaultInjector::disarm() { active_.store(false); }

VkResult FaultInjector::check_slow(FaultPoint point) {
    uint64_t n = counts_[index(point)].fetch_add(1) + 1;
    if (armed_n_.load() != n || armed_point_.load() != index(point)) return VK_SUCCESS;
    fired_.store(true);
    return static_cast<VkResult>(armed_result_.load());
}

}  // namespace kv::vk
