// The first published (0.1.0) size of every size-versioned struct: the least struct_size the
// library accepts, for input descs and output structs alike. Frozen: appending a field to a struct
// in kvulkan.h must not change these, or every binary built against 0.1 would be rejected.
//
// Each is the end of the struct's last 0.1.0 field. A field never moves (the header is
// append-only), so the expression stays fixed as the struct grows; it is also right on every ABI
// (a 0.1 caller's sizeof is this end plus its platform's tail padding, if any). On LP64 (x86_64,
// arm64) the values are pinned as literals below; tests/abi checks them against a compiled copy
// of the 0.1.0 header.
#pragma once

#include <kvulkan/kvulkan.h>

#include <cstddef>

#define KV_V1_END(T, last_field) (offsetof(T, last_field) + sizeof(((T*)nullptr)->last_field))

namespace kv::api {

constexpr size_t kRuntimeDescV1 = KV_V1_END(kv_runtime_desc, memory_budget);
constexpr size_t kDeviceInfoV1 = KV_V1_END(kv_device_info, reserved0);
constexpr size_t kBandwidthResultV1 = KV_V1_END(kv_bandwidth_result, write_gbps);
constexpr size_t kModelDescV1 = KV_V1_END(kv_model_desc, reserved);
constexpr size_t kModelInfoV1 = KV_V1_END(kv_model_info, reserved);
constexpr size_t kSamplerDescV1 = KV_V1_END(kv_sampler_desc, seed);
constexpr size_t kSessionDescV1 = KV_V1_END(kv_session_desc, sinks);
constexpr size_t kSessionStatsV1 = KV_V1_END(kv_session_stats, prefix_hit_tokens);
constexpr size_t kCacheStatsV1 = KV_V1_END(kv_cache_stats, evictions);

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
// sizeof() of the 0.1.0 structs on LP64. If one of these fails, a 0.1 field moved: undo that.
static_assert(kRuntimeDescV1 == 88 && kDeviceInfoV1 == 1368 && kBandwidthResultV1 == 40 &&
                  kModelDescV1 == 48 && kModelInfoV1 == 632 && kSamplerDescV1 == 40 &&
                  kSessionDescV1 == 40 && kSessionStatsV1 == 112 && kCacheStatsV1 == 64,
              "a field of a 0.1.0 struct moved: the ABI is append-only");
#endif

// Structs added after 0.1.0: their first published size, frozen the same way.
constexpr size_t kBatchItemV2 = KV_V1_END(kv_batch_item, reserved);  // 0.2.0
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
static_assert(kBatchItemV2 == 56, "a field of a 0.2.0 struct moved: the ABI is append-only");
#endif
constexpr size_t kGenerateDescV2 = KV_V1_END(kv_generate_desc, user_data);  // 0.2.0
constexpr size_t kGenerateResultV2 = KV_V1_END(kv_generate_result, n_bytes);  // 0.2.0
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
static_assert(kGenerateDescV2 == 40 && kGenerateResultV2 == 32, "a field of a 0.2.0 struct moved: the ABI is append-only");
#endif

}  // namespace kv::api
