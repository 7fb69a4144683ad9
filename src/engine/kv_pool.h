// The model-level KV page pool of one cache type: per layer a K and a V device buffer of
// [n_pages][n_head_kv][page_size][head_dim] elements, shared by every session of the model, and
// the bookkeeping (src/kvcache/: reference counts, free/LRU lists, prefix index) that decides
// which page each session writes. Sessions hold kvcache::BlockTables on `pages`.
//
// Thread safety: sessions of one model may run on different threads; every use of `pages` and of
// a session's BlockTable goes through `mutex`. GPU work never races: a session only writes pages
// it holds alone (reference 1, unregistered) and only reads pages it holds a reference to.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kvcache/block_table.h"
#include "kvcache/page_pool.h"
#include "model/ggml_types.h"
#include "vk/command.h"
#include "vk/memory.h"

struct kv_model;

namespace kv::engine {

class KvPool {
public:
    // Allocates n_pages pages for every layer (throws KV_ERR_OUT_OF_DEVICE_MEMORY, or
    // KV_ERR_UNSUPPORTED when one layer's pool exceeds what the device can bind). Both limits are
    // checked before anything is allocated, the host bookkeeping (`pages`) included.
    KvPool(kv_model& model, model::GgmlType type, uint32_t page_size, uint32_t n_pages);

    model::GgmlType type() const { return type_; }
    uint32_t page_size() const { return page_size_; }
    uint32_t n_pages() const { return n_pages_; }
    // Bytes of one page in one layer's K (or V) buffer.
    uint64_t page_bytes() const { return page_bytes_; }
    // Bytes of one page across all layers, K and V.
    uint64_t page_bytes_all_layers() const { return page_bytes_ * 2 * k_.size(); }
    uint64_t device_bytes() const { return page_bytes_all_layers() * n_pages_; }
    const vk::Buffer& k(uint32_t layer) const { return k_[layer]; }
    const vk::Buffer& v(uint32_t layer) const { return v_[layer]; }

    // Records the device copies a BlockTable asked for (whole pages, every layer, K and V).
    void record_copies(vk::CommandStream& cs, const std::vector<kvcache::PageCopy>& copies) const;

    std::mutex mutex;
    kvcache::PagePool pages;

    // Offload (engine/offload.h), guarded by `mutex`: the pool's sessions (LRU candidates), a
    // use clock, and the host bytes of offloaded sessions against the model's budget.
    std::vector<kv_session*> sessions;
    uint64_t clock = 0;
    uint64_t offloaded_bytes = 0, pages_offloaded = 0, pages_restored = 0;

private:
    model::GgmlType type_;
    uint32_t page_size_;
    uint32_t n_pages_;
    uint64_t page_bytes_;
    std::vector<vk::Buffer> k_, v_;
};

// Bytes of one row of head_dim values (one position of one KV head) in a page of `type`, scales
// included: F32 4 x head_dim, F16 2 x, Q8_0 34/32 x, Q4_0 18/32 x (for head_dim >= 32).
uint64_t kv_row_bytes(model::GgmlType type, uint32_t head_dim);

}  // namespace kv::engine
