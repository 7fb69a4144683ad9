// A VkPipelineCache kept in a file across runs (kv_runtime_desc.pipeline_cache_path).
//
// File layout (host byte order; 32-byte header, then the payload):
//   [0, 8)    magic "KVPCACHE"
//   [8, 12)   format version (kPipelineCacheFormat)
//   [12, 16)  KV_VERSION of the library that wrote it (another version's file is not used: its
//             pipelines come from other shaders, and would only make the file grow)
//   [16, 24)  payload bytes (the file is exactly 32 + this)
//   [24, 32)  FNV-1a 64-bit hash of the payload (a torn or corrupted write is caught here, before
//             any byte reaches the driver, which need not survive garbage)
//   [32, ...) payload: vkGetPipelineCacheData of the device, beginning with the driver's
//             VkPipelineCacheHeaderVersionOne (header size, version, vendorID, deviceID,
//             pipelineCacheUUID), which must match the device that reads it.
// Errors never throw: an unusable file is reported through the logger and treated as absent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/log.h"
#include "vk/vk_common.h"

namespace kv::vk {

constexpr uint32_t kPipelineCacheFormat = 1;
constexpr size_t kPipelineCacheFileHeader = 32;

// "" when `payload` begins with a VkPipelineCacheHeaderVersionOne for the device described by
// `props`; else why not (e.g. "it was written for vendor 0x10de device 0x2684").
std::string pipeline_cache_payload_mismatch(const uint8_t* payload, size_t size, const VkPhysicalDeviceProperties& props);

// The payload of the file at `path` when it is intact and made for this library and device; else
// empty, with the reason logged (info for a missing file or a stale one, warning for a corrupt or
// unreadable one).
std::vector<uint8_t> read_pipeline_cache_file(const std::string& path, const VkPhysicalDeviceProperties& props,
                                              const Logger& log);

// The whole file for `payload` (header + payload), as write_pipeline_cache_file writes it.
std::vector<uint8_t> pipeline_cache_file_image(const std::vector<uint8_t>& payload);

// Writes the file atomically: a temporary file beside `path`, then renamed over it, so a reader
// sees the old file or the new one, never a mix. False (logged as a warning) on failure.
bool write_pipeline_cache_file(const std::string& path, const std::vector<uint8_t>& payload, const Logger& log);

}  // namespace kv::vk
