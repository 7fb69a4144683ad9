// The model-level KV page pool of one cache type and one layer group: per layer of the group a K
// and a V device buffer of [n_pages][n_head_kv][page_size][head_dim] elements, shared by every
// session of the model, and the bookkeeping (src/kvcache/: reference counts, free/LRU lists,
// prefix index) that decides which page each session writes. Sessions hold kvcache::BlockTables
// on `pages`.
//
// Layer groups: a model whose layers all attend to the whole context (or all to one sliding
// window) has one group, every layer. A model with both sliding-window and global layers (gemma2,
// gemma3) has two pools per cache type: the global layers' (kv_pool) and the windowed layers'
// (kv_window_pool). A session holds a block table on each; the windowed one releases the pages
// that left the layers' window as the sequence moves on, the global one keeps every position.
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
#include "model/arch.h"
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
    // `layers`: the model layers this pool stores, ascending (k(l) and v(l) take a model layer).
    KvPool(kv_model& model, model::GgmlType type, uint32_t page_size, uint32_t n_pages,
           const std::vector<uint32_t>& layers);

    model::GgmlType type() const { return type_; }
    uint32_t page_size() const { return page_size_; }
    uint32_t n_pages() const { return n_pages_; }
    // Bytes of one page in one layer's K (or V) buffer.
    uint64_t page_bytes() const { return page_bytes_; }
    // Bytes of one page across all layers of the group, K and V.
    uint64_t page_bytes_all_layers() const { return page_bytes_ * 2 * k_.size(); }
    uint64_t device_bytes() const { return page_bytes_all_layers() * n_pages_; }
    // The group's layers; k(l), v(l): model layer l's buffers (l must be one of them).
    const std::vector<uint32_t>& layers() const { return layers_; }
    bool holds(uint32_t layer) const { return layer < slot_.size() && slot_[layer] >= 0; }
    const vk::Buffer& k(uint32_t layer) const { return k_[slot(layer)]; }
    const vk::Buffer& v(uint32_t layer) const { return v_[slot(layer)]; }

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
    size_t slot(uint32_t layer) const;
    model::GgmlType type_;
    uint32_t page_size_;
    uint32_t n_pages_;
    uint64_t page_bytes_;
    std::vector<uint32_t> layers_;
    std::vector<int32_t> slot_;  // [model layer] -> index into k_/v_, or -1
    std::vector<vk::Buffer> k_, v_;
};

// The model layers of each group: windowed == false gives the global layers (every layer for a
// model with one group), true the sliding-window layers of a two-group model (else empty).
std::vector<uint32_t> layer_group(const model::ModelConfig& cfg, bool windowed);
// Whether the model has both sliding-window and global layers (two layer groups).
bool has_window_group(const model::ModelConfig& cfg);

// Bytes of one row of head_dim values (one position of one KV head) in a page of `type`, scales
// included: F32 4 x head_dim, F16 2 x, Q8_0 34/32 x, Q4_0 18/32 x (for head_dim >= 32).
uint64_t kv_row_bytes(model::GgmlType type, uint32_t head_dim);

}  // namespace kv::engine
