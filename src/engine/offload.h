// Sessions beyond what the device holds: a session's KV pages move to host memory and come back
// when it runs again (kv_session_offload, and the pool's LRU offload of idle sessions when a pass
// finds the pool full, within kv_model_desc.host_offload_bytes). Exact: the bytes come back as
// they left, into whatever pages are free; tokens, logits and sampler state never move.
//
// Who may touch a session: offload() and restore() run on a session the caller holds (its busy
// flag: a C call, or the LRU, which takes an idle victim's flag before touching it). A session in
// any call is never chosen as a victim.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/session.h"
#include "kvcache/block_table.h"

namespace kv::engine {

// Moves the session's pages to host memory (no-op when offloaded or empty). Throws
// KV_ERR_UNSUPPORTED (window, no-cache) or KV_ERR_OUT_OF_HOST_MEMORY (budget); unchanged then.
void offload(kv_session& s);
// Brings an offloaded session's pages back (no-op otherwise); may offload idle sessions to make
// room. Throws KV_ERR_OUT_OF_DEVICE_MEMORY when the pool has no room; it stays offloaded then.
void restore(kv_session& s);
// Reserves T more positions of s's table (copy-on-write copies into `copies`, each source page
// referenced, the block table published), offloading idle sessions of the pool, least recently
// used first, while the pool is full and the budget allows. Returns false when the pool still has
// no room (nothing reserved). Stamps s's use for the LRU order.
bool reserve_with_offload(kv_session& s, uint32_t T, std::vector<kvcache::PageCopy>* copies);

// Pool registry (create_session / ~kv_session).
void register_session(kv_session& s);
void unregister_session(kv_session& s);

}  // namespace kv::engine
