// SPIR-V embedded at build time (cmake/Shaders.cmake generates the table).
#pragma once

#include <cstddef>

namespace kv::vk {

struct SpirvBlob {
    const char* name;           // variant name: shaders/<stem>.comp or a line of <stem>.variants
    const unsigned char* data;  // 4-byte aligned SPIR-V words
    size_t size;                // bytes
};

// The embedded shader named `name`, or nullptr.
const SpirvBlob* find_spirv(const char* name);

}  // namespace kv::vk
