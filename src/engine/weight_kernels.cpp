#include "engine/weight_kernels.h"

#include "engine/kernel_util.h"

#include <algorithm>

namespace kv::engine {

namespace {

using model::GgmlType;

constexpr uint64_t kF32 = 4;

// Prefill tiles (shaders/mul_mat.comp): BM rows x BN tokens, BK columns per step, TM x TN
// outputs per invocation, (BM / TM) x (BN / TN) invocations.
struct Tile {
    uint32_t bm, bn, bk, tm, tn;
    uint32_t invocations() const { return (bm / tm) * (bn / tn); }
    uint64_t shared_bytes() const { return uint64_t(bk) * (bm + 1 + bn + 1) * 4; }
};
constexpr Tile kSmallTile64{64, 64, 32, 4, 4};
constexpr Tile kSmallTile32{64, 32, 32, 4, 4};
constexpr Tile kLargeTile{128, 128, 16, 8, 8};

struct MatvecPush {
    uint32_t cols, rows, y_row0, row_bytes, x_vec4;
    float eps;
    uint32_t y_stride;
};
constexpr uint32_t kMatvecMaxTokens = 8;  // NT of shaders/mul_mat_vec.comp
struct GetRowsPush {
    uint32_t cols, row0, rows, n_ids, row_bytes, groups_per_id;
};
struct MatmulPush {
    uint32_t cols, rows, y_row0, row_bytes, n_tokens, y_stride;
};

const model::TypeTraits& traits_of(GgmlType type, const char* kernel) {
    const model::TypeTraits* t = model::type_traits(type);
    if (!t || !WeightKernels::supported(type))
        fail(KV_ERR_UNSUPPORTED, "%s: weight type %s is not supported", kernel,
             t ? t->name : "unknown");
    return *t;
}

void check_cols(GgmlType type, uint32_t cols, const char* kernel) {
    const model::TypeTraits& t = traits_of(type, kernel);
    if (cols == 0 || cols % t.block_size != 0)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: %u columns are not a multiple of %s's block size %u",
             kernel, cols, t.name, t.block_size);
}

void need_bytes(const vk::BufferRange& r, uint64_t bytes, const char* kernel, const char* what) {
    fit_range(r, bytes, kernel, what);
}

// DQ_UPB of shaders/include/dequant.glsl: matvec load units per block of a quantized type.
uint32_t dequant_units_per_block(GgmlType t) {
    switch (t) {
        case GgmlType::Q8_0: return 2;
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q6_K: return 4;
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: return 8;
        default: return 1;
    }
}

bool is_float(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

}  // namespace

bool WeightKernels::supported(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::Q8_0:
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K:
            return true;
        default:
            return false;
    }
}

WeightKernels::WeightKernels(vk::Device& device, vk::PipelineCache& pipelines, const Kernels& basic,
                             const WeightKernelOptions& options)
    : device_(device), pipelines_(pipelines), basic_(basic), options_(options) {
    const VkPhysicalDeviceLimits& l = device.limits();
    const uint32_t max_inv =
        std::min(l.maxComputeWorkGroupInvocations, l.maxComputeWorkGroupSize[0]);
    if (options.matvec_workgroup != 0 && !is_pow2(options.matvec_workgroup))
        fail(KV_ERR_INVALID_ARGUMENT, "matvec workgroup %u is not a power of two",
             options.matvec_workgroup);
    // Defaults: GPUs: 128 invocations stream 4 rows (sharing the x loads), fewer rows and then
    // wider workgroups for small matrices (matvec_shape); CPU devices (lavapipe) pay per
    // invocation and barrier: narrow workgroups over 8 rows there.
    const bool cpu_dev = device.properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    mv_rows_ = options.matvec_rows ? options.matvec_rows : cpu_dev ? 8 : 4;
    if (mv_rows_ > 8) fail(KV_ERR_INVALID_ARGUMENT, "matvec rows per workgroup %u > 8", mv_rows_);
    mv_wg_ = floor_pow2(std::min(options.matvec_workgroup ? options.matvec_workgroup
                                 : cpu_dev                ? 16u
                                                          : 128u,
                                 max_inv));
    // The reduction keeps mv_rows_ + 1 floats per invocation in shared memory.
    while (mv_wg_ > 1 && uint64_t(mv_wg_) * (mv_rows_ + 1) * 4 > l.maxComputeSharedMemorySize)
        mv_wg_ /= 2;
    mv_fixed_ = cpu_dev || options.matvec_workgroup != 0 || options.matvec_rows != 0;
    if (options.matvec_max_tokens > kMatvecMaxTokens)
        fail(KV_ERR_INVALID_ARGUMENT, "matvec_max_tokens %u is not in 0..%u", options.matvec_max_tokens,
             kMatvecMaxTokens);
    mv_max_tokens_ = options.matvec_max_tokens ? options.matvec_max_tokens : cpu_dev ? 1 : kMatvecMaxTokens;
    mv_max_acc_ = cpu_dev ? 8 : 16;
    mv_max_wg_ = floor_pow2(std::min(256u, max_inv));
    while (mv_max_wg_ > mv_wg_ && uint64_t(mv_max_wg_) * 5 * 4 > l.maxComputeSharedMemorySize)
        mv_max_wg_ /= 2;
    gr_wg_ = floor_pow2(std::min(64u, max_inv));

    auto fits = [&](const Tile& t) {
        return t.shared_bytes() <= l.maxComputeSharedMemorySize && t.invocations() <= max_inv;
    };
    const uint32_t force = options.matmul_tile_tokens;
    if (force != 0 && force != 32 && force != 64 && force != 128)
        fail(KV_ERR_INVALID_ARGUMENT, "matmul tile of %u tokens (32, 64 or 128)", force);
    small_tile_ = force == 32 || !fits(kSmallTile64) ? 0 : 1;
    if (!fits(kSmallTile32)) fail(KV_ERR_UNSUPPORTED, "device too small for the matmul tile");
    // The large tile pays off on GPUs with enough tokens; CPU devices keep the small one.
    const bool cpu = device.properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    large_tile_ = fits(kLargeTile) && (force == 128 || (force == 0 && !cpu));
    large_min_tokens_ = force == 128 ? 2 : 96;
}

WeightKernels::MatvecShape WeightKernels::matvec_shape(GgmlType type, uint32_t rows,
                                                      uint32_t cols, uint32_t n_tokens) const {
    MatvecShape s = matvec_shape_one(type, rows, cols);
    if (n_tokens > 1) {
        s.rows = std::max(1u, std::min(s.rows, mv_max_acc_ / n_tokens));
        const uint64_t shared = device_.limits().maxComputeSharedMemorySize;
        while (s.workgroup > 1 && uint64_t(s.workgroup) * (s.rows * n_tokens + 1) * 4 > shared)
            s.workgroup /= 2;
    }
    return s;
}

WeightKernels::MatvecShape WeightKernels::matvec_shape_one(GgmlType type, uint32_t rows,
                                                          uint32_t cols) const {
    if (mv_fixed_) return {mv_wg_, mv_rows_};
    // Load units per row: 16-byte words of float rows, dequant.glsl's units of quantized ones.
    const model::TypeTraits& t = traits_of(type, "matmul");
    uint64_t units = std::max<uint64_t>(1, model::row_bytes(type, cols) / 16);
    if (!is_float(type)) units = uint64_t(cols) / t.block_size * dequant_units_per_block(type);
    MatvecShape s{mv_wg_, mv_rows_};
    auto invocations = [&] { return (uint64_t(rows) + s.rows - 1) / s.rows * s.workgroup; };
    while (invocations() < kMatvecInvocations && s.rows > 1) s.rows /= 2;
    while (invocations() < kMatvecInvocations && s.workgroup < mv_max_wg_ && 2ull * s.workgroup <= units)
        s.workgroup *= 2;
    return s;
}

void WeightKernels::grid(uint64_t groups, uint32_t* gx, uint32_t* gy) const { dispatch_grid(device_, groups, gx, gy); }

std::vector<WeightKernels::Chunk> WeightKernels::chunks(const vk::SplitBuffer& W, GgmlType type,
                                                        uint32_t rows, uint32_t cols,
                                                        const char* kernel) const {
    const uint64_t rb = model::row_bytes(type, cols);
    std::vector<Chunk> out;
    for (const RowChunk& c : row_chunks(W, rb, rows, cols, kernel)) {
        // Byte offsets inside the shaders are 32-bit.
        if (c.rows * rb > 0xFFFFFFF0ull)
            fail(KV_ERR_UNSUPPORTED, "%s: a chunk of W from row %u exceeds 4 GiB", kernel, c.row0);
        // Bind whole 16-byte words: Buffer pads its VkBuffer to a multiple of 16 bytes, and
        // SplitBuffer keeps chunks within the range limit rounded down to 16 bytes.
        const uint64_t bytes = (c.rows * rb + 15) & ~uint64_t(15);
        if (bytes > device_.max_storage_buffer_range())
            fail(KV_ERR_INVALID_ARGUMENT, "%s: a chunk of W from row %u exceeds maxStorageBufferRange",
                 kernel, c.row0);
        out.push_back({{c.buffer, 0, bytes}, c.row0, c.rows});
    }
    return out;
}

void WeightKernels::get_rows(vk::CommandStream& cs, const vk::SplitBuffer& W, GgmlType type,
                             uint32_t rows, uint32_t cols, const vk::BufferRange& ids,
                             uint32_t n_ids, const vk::BufferRange& out) const {
    if (rows == 0 || n_ids == 0) fail(KV_ERR_INVALID_ARGUMENT, "get_rows: empty shape");
    check_cols(type, cols, "get_rows");
    need_bytes(ids, uint64_t(n_ids) * 4, "get_rows", "ids");
    need_bytes(out, uint64_t(n_ids) * cols * kF32, "get_rows", "out");
    if (uint64_t(n_ids) * cols > 0xFFFFFFFFull)
        fail(KV_ERR_UNSUPPORTED, "get_rows: %u rows of %u exceed 32-bit indexing", n_ids, cols);
    const std::vector<Chunk> cks = chunks(W, type, rows, cols, "get_rows");
    const uint32_t rb = static_cast<uint32_t>(model::row_bytes(type, cols));
    const uint32_t tasks = is_float(type) ? cols : cols / 16;  // elements or 16-element sub-blocks
    const uint32_t gpi = (tasks + gr_wg_ - 1) / gr_wg_;
    vk::PipelineDesc d;
    d.shader = std::string("get_rows_") + model::type_traits(type)->name;
    d.bindings = 3;
    d.push_constant_bytes = sizeof(GetRowsPush);
    d.spec = {gr_wg_};
    vk::Pipeline& p = pipelines_.get(d);
    uint32_t gx, gy;
    grid(uint64_t(n_ids) * gpi, &gx, &gy);
    for (const Chunk& c : cks) {
        GetRowsPush pc{cols, c.row0, c.rows, n_ids, rb, gpi};
        cs.dispatch(p, {c.range, ids, out}, &pc, sizeof(pc), gx, gy);
    }
}

std::string WeightKernels::matmul_variant(GgmlType type, uint32_t cols, uint32_t n_tokens,
                                          bool fused) const {
    const std::string name = traits_of(type, "matmul").name;
    if (n_tokens > mv_max_tokens_) return "mul_mat_" + name;
    if (n_tokens == 1 && options_.float_matvec_via_basic && !fused &&
        (type == GgmlType::F32 || (type == GgmlType::F16 && cols % 2 == 0)))
        return basic_.matvec_variant(type, cols);
    std::string v = "mul_mat_vec_" + name;
    if (is_float(type) && model::row_bytes(type, cols) % 16 == 0) v += "_v";  // uvec4 rows
    return basic_.subgroup_ops() ? v + "_sg" : v;
}

void WeightKernels::matmul(vk::CommandStream& cs, const vk::SplitBuffer& W, GgmlType type,
                           uint32_t rows, uint32_t cols, const vk::BufferRange& x,
                           const vk::BufferRange& y, uint32_t n_tokens,
                           const MatmulFusion& fused) const {
    if (rows == 0 || n_tokens == 0) fail(KV_ERR_INVALID_ARGUMENT, "matmul: empty shape");
    check_cols(type, cols, "matmul");
    need_bytes(x, uint64_t(cols) * n_tokens * kF32, "matmul", "x");
    need_bytes(y, uint64_t(rows) * n_tokens * kF32, "matmul", "y");
    const bool glu = fused.glu_up.buffer != VK_NULL_HANDLE;
    if (glu) need_bytes(fused.glu_up, uint64_t(cols) * n_tokens * kF32, "matmul", "glu_up");
    const bool norm = fused.norm_weight.buffer != VK_NULL_HANDLE;
    if (norm) {
        if (glu) fail(KV_ERR_INVALID_ARGUMENT, "matmul: a fused norm and a fused GLU exclude each other");
        if (n_tokens != 1)
            fail(KV_ERR_INVALID_ARGUMENT, "matmul: a fused RMS norm is for decode (1 token), not %u", n_tokens);
        need_bytes(fused.norm_weight, uint64_t(cols) * kF32, "matmul", "norm_weight");
    }
    // Bindings 3 and 4 (up activations, norm weight) are always bound: x stands in for those
    // not used.
    const vk::BufferRange up = glu ? fused.glu_up : x;
    const vk::BufferRange nw = norm ? fused.norm_weight : x;
    if (uint64_t(cols) * n_tokens > 0xFFFFFFFFull || uint64_t(rows) * n_tokens > 0xFFFFFFFFull)
        fail(KV_ERR_UNSUPPORTED, "matmul: [%u][%u] x %u tokens exceeds 32-bit indexing", rows, cols,
             n_tokens);
    const std::string variant = matmul_variant(type, cols, n_tokens, fused.any());
    if (variant.rfind("matvec_", 0) == 0) {  // F32 / F16 decode: the basic kernel
        basic_.matvec(cs, W, type, rows, cols, x, y, 1);
        return;
    }
    const std::vector<Chunk> cks = chunks(W, type, rows, cols, "matmul");
    const uint32_t rb = static_cast<uint32_t>(model::row_bytes(type, cols));
    vk::PipelineDesc d;
    d.shader = variant;
    d.bindings = n_tokens <= mv_max_tokens_ ? 5 : 4;  // mul_mat_vec binds the norm weight too
    // The fused extras are specialization constants (a pipeline per combination in use).
    const uint32_t glu_flag = glu ? 1 : 0, acc_flag = fused.accumulate ? 1 : 0;
    if (n_tokens <= mv_max_tokens_) {
        const MatvecShape ms = matvec_shape(type, rows, cols, n_tokens);
        d.push_constant_bytes = sizeof(MatvecPush);
        d.spec = {ms.workgroup, ms.rows, glu_flag, norm ? 1u : 0u, acc_flag, n_tokens};
        vk::Pipeline& p = pipelines_.get(d);
        const uint32_t x_vec4 = x.offset % 16 == 0 && up.offset % 16 == 0 && nw.offset % 16 == 0 ? 1 : 0;
        for (const Chunk& c : cks) {
            MatvecPush pc{cols, c.rows, c.row0, rb, x_vec4, fused.norm_eps, rows};
            uint32_t gx, gy;
            grid((uint64_t(c.rows) + ms.rows - 1) / ms.rows, &gx, &gy);
            cs.dispatch(p, {c.range, x, y, up, nw}, &pc, sizeof(pc), gx, gy);
        }
        return;
    }
    const Tile& tile = large_tile_ && n_tokens >= large_min_tokens_ ? kLargeTile
                       : small_tile_ == 1                           ? kSmallTile64
                                                                    : kSmallTile32;
    const uint32_t token_tiles = (n_tokens + tile.bn - 1) / tile.bn;
    if (token_tiles > device_.limits().maxComputeWorkGroupCount[2])
        fail(KV_ERR_UNSUPPORTED, "matmul: %u tokens exceed the device's grid", n_tokens);
    d.push_constant_bytes = sizeof(MatmulPush);
    d.spec = {tile.invocations(), tile.bm, tile.bn, tile.bk, tile.tm, tile.tn, glu_flag, acc_flag};
    vk::Pipeline& p = pipelines_.get(d);
    for (const Chunk& c : cks) {
        MatmulPush pc{cols, c.rows, c.row0, rb, n_tokens, rows};
        uint32_t gx, gy;
        grid((uint64_t(c.rows) + tile.bm - 1) / tile.bm, &gx, &gy);
        cs.dispatch(p, {c.range, x, y, up}, &pc, sizeof(pc), gx, gy, token_tiles);
    }
}

}  // namespace kv::engine
