#include "engine/kv_pool.h"

#include "engine/attention.h"
#include "engine/model.h"
#include "engine/runtime.h"

namespace kv::engine {

uint64_t kv_row_bytes(model::GgmlType type, uint32_t head_dim) {
    // One page row's share of a 16-row page: exact for every layout (padding included) but the
    // tiny quantized heads whose rows are padded to whole words.
    return kv_page_bytes(type, 1, 16, head_dim) / 16;
}

KvPool::KvPool(kv_model& m, model::GgmlType type, uint32_t page_size, uint32_t n_pages)
    : pages(n_pages, page_size), type_(type), page_size_(page_size), n_pages_(n_pages) {
    const auto& cfg = m.config();
    kv_runtime& rt = *m.runtime;
    page_bytes_ = kv_page_bytes(type, cfg.n_head_kv, page_size, cfg.head_dim);
    uint64_t layer_bytes = page_bytes_ * n_pages;
    uint64_t range = rt.device->max_storage_buffer_range();
    if (layer_bytes > range)
        fail(KV_ERR_UNSUPPORTED,
             "a KV page pool of %u pages x %u tokens needs %llu bytes per layer for K, more than the device can "
             "bind (%llu): lower kv_model_desc.kv_pool_tokens or the sessions' n_ctx",
             n_pages, page_size, (unsigned long long)layer_bytes, (unsigned long long)range);
    for (uint32_t l = 0; l < cfg.n_layer; ++l) {
        k_.emplace_back(rt.allocator.get(), layer_bytes, vk::MemoryUse::Device);
        v_.emplace_back(rt.allocator.get(), layer_bytes, vk::MemoryUse::Device);
    }
}

void KvPool::record_copies(vk::CommandStream& cs, const std::vector<kvcache::PageCopy>& copies) const {
    for (const auto& c : copies)
        for (size_t l = 0; l < k_.size(); ++l) {
            cs.copy({k_[l].handle(), uint64_t(c.src) * page_bytes_, page_bytes_},
                    {k_[l].handle(), uint64_t(c.dst) * page_bytes_, page_bytes_});
            cs.copy({v_[l].handle(), uint64_t(c.src) * page_bytes_, page_bytes_},
                    {v_[l].handle(), uint64_t(c.dst) * page_bytes_, page_bytes_});
        }
    if (!copies.empty()) cs.barrier();
}

}  // namespace kv::engine
