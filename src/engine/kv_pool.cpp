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

namespace {

// Checks that a pool of n_pages pages fits the device before anything is allocated (the host
// bookkeeping of a huge request is itself gigabytes): one layer's K (or V) buffer within one
// binding (KV_ERR_UNSUPPORTED), all layers' K and V within the largest device-local heap
// (KV_ERR_OUT_OF_DEVICE_MEMORY). Returns n_pages.
uint32_t checked_pages(const kv_model& m, model::GgmlType type, uint32_t page_size, uint32_t n_pages,
                       uint32_t n_layers) {
    const auto& cfg = m.config();
    const vk::Device& dev = *m.runtime->device;
    const uint64_t page_bytes = kv_page_bytes(type, cfg.n_head_kv, page_size, cfg.head_dim);
    const uint64_t range = dev.max_storage_buffer_range();  // a uint32_t limit
    if (n_pages && page_bytes > range / n_pages)
        fail(KV_ERR_UNSUPPORTED,
             "a KV page pool of %u pages x %u tokens needs %.4g bytes per layer for K, more than the device can "
             "bind (%llu): lower kv_model_desc.kv_pool_tokens or the sessions' n_ctx",
             n_pages, page_size, double(page_bytes) * n_pages, (unsigned long long)range);
    const uint64_t layer_bytes = page_bytes * n_pages;  // <= range
    const uint64_t heap = dev.largest_device_local_heap();
    const uint64_t total = layer_bytes * 2 * n_layers;  // <= 2^32 x 2^32
    if (heap && total > heap)
        fail(KV_ERR_OUT_OF_DEVICE_MEMORY,
             "a KV page pool of %u pages x %u tokens needs %llu bytes of device memory (K and V of %u layers), more "
             "than the device's largest heap (%llu): lower kv_model_desc.kv_pool_tokens or the sessions' n_ctx",
             n_pages, page_size, (unsigned long long)total, n_layers, (unsigned long long)heap);
    return n_pages;
}

}  // namespace

KvPool::KvPool(kv_model& m, model::GgmlType type, uint32_t page_size, uint32_t n_pages,
               const std::vector<uint32_t>& layers)
    : pages(checked_pages(m, type, page_size, n_pages, uint32_t(layers.size())), page_size),
      type_(type),
      page_size_(page_size),
      n_pages_(n_pages),
      layers_(layers) {
    const auto& cfg = m.config();
    KV_CHECK(!layers.empty());
    kv_runtime& rt = *m.runtime;
    page_bytes_ = kv_page_bytes(type, cfg.n_head_kv, page_size, cfg.head_dim);
    const uint64_t layer_bytes = page_bytes_ * n_pages;
    slot_.assign(cfg.n_layer, -1);
    for (uint32_t l : layers) {
        KV_CHECK(l < cfg.n_layer && slot_[l] < 0);
        slot_[l] = int32_t(k_.size());
        k_.emplace_back(rt.allocator.get(), layer_bytes, vk::MemoryUse::Device);
        v_.emplace_back(rt.allocator.get(), layer_bytes, vk::MemoryUse::Device);
    }
}

size_t KvPool::slot(uint32_t layer) const {
    KV_CHECK(holds(layer));
    return size_t(slot_[layer]);
}

std::vector<uint32_t> layer_group(const model::ModelConfig& cfg, bool windowed) {
    std::vector<uint32_t> out;
    const bool two = has_window_group(cfg);
    for (uint32_t l = 0; l < cfg.n_layer; ++l) {
        const bool w = two && cfg.sliding_window[l] != 0;
        if (w == windowed) out.push_back(l);
    }
    return out;
}

bool has_window_group(const model::ModelConfig& cfg) {
    if (cfg.sliding_window.size() != cfg.n_layer) return false;
    bool windowed = false, global = false;
    for (uint32_t w : cfg.sliding_window) (w ? windowed : global) = true;
    return windowed && global;
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
