#include "engine/attention.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "engine/kernel_util.h"

namespace kv::engine {

namespace {

using model::GgmlType;

constexpr uint64_t kF32 = 4;

uint32_t div_up(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }

// Largest power of two <= want that the device accepts as a 1D workgroup.
uint32_t fit_workgroup(const vk::Device& device, uint32_t want) {
    const VkPhysicalDeviceLimits& l = device.limits();
    const uint32_t cap = std::min(l.maxComputeWorkGroupInvocations, l.maxComputeWorkGroupSize[0]);
    return floor_pow2(std::max(1u, std::min(want, cap)));
}

void need_bytes(const vk::BufferRange& r, uint64_t bytes, const char* kernel, const char* what) {
    fit_range(r, bytes, kernel, what);
}

bool kv_quantized(GgmlType t) { return t == GgmlType::Q8_0 || t == GgmlType::Q4_0; }

// Shader-name suffix of a KV page type.
const char* kv_suffix(GgmlType t) {
    switch (t) {
        case GgmlType::F16: return "f16";
        case GgmlType::Q8_0: return "q8_0";
        case GgmlType::Q4_0: return "q4_0";
        default: return "f32";
    }
}

void grid(const vk::Device& device, uint64_t groups, uint32_t* gx, uint32_t* gy) {
    dispatch_grid(device, groups, gx, gy);
}

struct RopePush {
    uint32_t n_tokens, n_heads, head_dim, n_rot, pos0, neox;
    float freq_scale, r_hi, r_lo, mscale;
};

struct KvWritePush {
    uint32_t n_tokens, pos0, n_head_kv, head_dim, page_size, sink_pages, ring_pages;
};

struct AttnPush {
    uint32_t n_tokens, pos0, n_head, n_head_kv, page_size, window, n_split, keys_per_split;
    float scale;
    uint32_t sinks, sink_pages, ring_pages;
    float softcap;
};

struct ReducePush {
    uint32_t n_out, n_split, head_dim, dl;
};

constexpr uint32_t kDecodeMaxRows = 8;
constexpr uint32_t kDecodeDefaultRows = 4;
constexpr uint32_t kDecodeDefaultWg = 64;  // attention.h: AttentionOptions::decode_workgroup
constexpr uint32_t kReduceWg = 256;
constexpr uint32_t kReduceBatch = 8;  // NB of attn_reduce.comp

uint32_t ceil_pow2(uint32_t v) {
    uint32_t p = 1;
    while (p < v) p *= 2;
    return p;
}

// Shared memory (bytes) of the kernels, as declared in the shaders (decode: q rows, scores,
// reduction buffer, and one row base per invocation: two words for quantized pools).
uint64_t decode_shared(uint32_t wg, uint32_t d, uint32_t r, bool quant) {
    return (uint64_t(r) * d + 2ull * r * wg + (quant ? 2ull : 1ull) * wg) * 4;
}
uint64_t tile_shared(uint32_t d, uint32_t br, uint32_t bc) {
    return (uint64_t(br) * d + uint64_t(bc) * (d + 4) + uint64_t(br) * bc + 3ull * br) * 4;
}

}  // namespace

AttentionKernels::AttentionKernels(vk::Device& device, vk::PipelineCache& pipelines,
                                   const AttentionOptions& options)
    : device_(device), pipelines_(pipelines), options_(options) {
    subgroup_ops_ = options.subgroup_ops && has_subgroup_arithmetic(device);
    if (options_.max_splits == 0) options_.max_splits = 1;
    if (options_.min_keys_per_split == 0) options_.min_keys_per_split = 1;
    if (options_.allocator && options_.scratch_bytes > 0) {
        const uint64_t bytes =
            std::min<uint64_t>(options_.scratch_bytes, device.max_storage_buffer_range());
        scratch_ = vk::Buffer(options_.allocator, bytes, vk::MemoryUse::Device);
    }
}

vk::Pipeline& AttentionKernels::pipeline(const std::string& name, uint32_t bindings,
                                         uint32_t push_bytes, std::vector<uint32_t> spec) const {
    vk::PipelineDesc d;
    d.shader = name;
    d.bindings = bindings;
    d.push_constant_bytes = push_bytes;
    d.spec = std::move(spec);
    return pipelines_.get(d);
}

uint32_t kv_quant_block(uint32_t head_dim) { return std::min(32u, head_dim); }

uint64_t kv_page_bytes(GgmlType type, uint32_t n_head_kv, uint32_t page_size,
                       uint32_t head_dim) {
    const uint64_t rows = uint64_t(n_head_kv) * page_size;
    switch (type) {
        case GgmlType::F32: return rows * head_dim * 4;
        case GgmlType::F16:
            if (head_dim % 2 != 0)
                fail(KV_ERR_UNSUPPORTED, "F16 KV pages need an even head_dim, not %u", head_dim);
            return rows * head_dim * 2;
        case GgmlType::Q8_0:
        case GgmlType::Q4_0: {
            // Blocks of 32 values, or one block per row of 2, 4, 8 or 16 (Q4_0: an even block).
            const bool small = head_dim == 2 || head_dim == 4 || head_dim == 8 || head_dim == 16;
            if (head_dim == 0 || (head_dim % 32 != 0 && !small))
                fail(KV_ERR_UNSUPPORTED,
                     "%s KV pages need head_dim %% 32 == 0 or head_dim 2, 4, 8 or 16, not %u",
                     type == GgmlType::Q8_0 ? "q8_0" : "q4_0", head_dim);
            const uint32_t qb = kv_quant_block(head_dim);
            // Value words per row: whole words (only head_dim < 4 (Q8_0) / < 8 (Q4_0) pads).
            const uint64_t words = type == GgmlType::Q8_0 ? (head_dim + 3) / 4 : (head_dim + 7) / 8;
            const uint64_t bytes = rows * (4 * words + 2 * (head_dim / qb));
            return (bytes + 15) / 16 * 16;
        }
        default: {
            const model::TypeTraits* t = model::type_traits(type);
            fail(KV_ERR_UNSUPPORTED, "KV cache type %s is not supported", t ? t->name : "unknown");
        }
    }
}

// ---- rope --------------------------------------------------------------------------------------

void AttentionKernels::rope(vk::CommandStream& cs, const vk::BufferRange& x,
                            const vk::BufferRange& freq_factors, const RopeParams& p) const {
    if (p.n_tokens == 0 || p.n_heads == 0 || p.head_dim == 0)
        fail(KV_ERR_INVALID_ARGUMENT, "rope: empty shape");
    if (p.n_rot == 0 || p.n_rot % 2 != 0 || p.n_rot > p.head_dim)
        fail(KV_ERR_INVALID_ARGUMENT, "rope: n_rot %u must be even, nonzero and <= head_dim %u",
             p.n_rot, p.head_dim);
    if (uint64_t(p.pos0) + p.n_tokens > (1u << 24))
        fail(KV_ERR_UNSUPPORTED, "rope: positions beyond 2^24 are not supported");
    if (!(p.freq_base > 0.f) || !(p.freq_scale > 0.f))
        fail(KV_ERR_INVALID_ARGUMENT, "rope: freq_base and freq_scale must be positive");
    need_bytes(x, uint64_t(p.n_tokens) * p.n_heads * p.head_dim * kF32, "rope", "x");
    const bool ff = freq_factors.buffer != VK_NULL_HANDLE;
    if (ff) need_bytes(freq_factors, uint64_t(p.n_rot / 2) * kF32, "rope", "freq_factors");

    // r = base^(-2/n_rot) as a float pair (the shader raises it to the i-th power).
    const double r = std::pow(double(p.freq_base), -2.0 / double(p.n_rot));
    const float r_hi = static_cast<float>(r);
    const float r_lo = static_cast<float>(r - double(r_hi));
    RopePush pc{p.n_tokens,       p.n_heads,    p.head_dim, p.n_rot, p.pos0,
                p.neox ? 1u : 0u, p.freq_scale, r_hi,       r_lo, p.mscale};
    const uint32_t wg = fit_workgroup(device_, 256);
    vk::Pipeline& pl = pipeline(ff ? "rope_f32_ff" : "rope_f32", ff ? 2 : 1, sizeof(pc), {wg});
    uint32_t gx, gy;
    grid(device_, div_up(uint64_t(p.n_tokens) * p.n_heads * (p.n_rot / 2), wg), &gx, &gy);
    if (ff)
        cs.dispatch(pl, {x, freq_factors}, &pc, sizeof(pc), gx, gy);
    else
        cs.dispatch(pl, {x}, &pc, sizeof(pc), gx, gy);
}

// ---- KV cache ----------------------------------------------------------------------------------

void AttentionKernels::check(const AttentionParams& p, const char* what) const {
    if (p.n_tokens == 0 || p.n_head == 0 || p.n_head_kv == 0 || p.head_dim == 0 || p.page_size == 0)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: empty shape", what);
    if (p.n_head % p.n_head_kv != 0)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: %u heads are not a multiple of %u KV heads", what,
             p.n_head, p.n_head_kv);
    if (p.head_dim % 2 != 0)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: head_dim %u is odd", what, p.head_dim);
    kv_page_bytes(p.kv_type, p.n_head_kv, p.page_size, p.head_dim);  // type and head_dim
    if (p.ring_pages != 0 && uint64_t(p.sink_pages) + p.ring_pages > 0xFFFFFFFFull)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: %u sink pages + %u ring pages overflow", what,
             p.sink_pages, p.ring_pages);
    if (uint64_t(p.pos0) + p.n_tokens > 0xFFFFFFFFull)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: positions overflow", what);
}

static void check_pools(const AttentionParams& p, const vk::BufferRange& k_pool,
                        const vk::BufferRange& v_pool, const vk::BufferRange& block_table,
                        const char* what) {
    const uint64_t page_bytes = kv_page_bytes(p.kv_type, p.n_head_kv, p.page_size, p.head_dim);
    need_bytes(k_pool, page_bytes, what, "k_pool");
    need_bytes(v_pool, page_bytes, what, "v_pool");
    uint64_t slots = (uint64_t(p.pos0) + p.n_tokens + p.page_size - 1) / p.page_size;
    if (p.ring_pages != 0 && slots > p.sink_pages)
        slots = std::min<uint64_t>(slots, uint64_t(p.sink_pages) + p.ring_pages);
    need_bytes(block_table, slots * 4, what, "block_table");
}

void AttentionKernels::kv_write(vk::CommandStream& cs, const vk::BufferRange& k,
                                const vk::BufferRange& v, const vk::BufferRange& k_pool,
                                const vk::BufferRange& v_pool, const vk::BufferRange& block_table,
                                const AttentionParams& p) const {
    // kv_write ignores n_head.
    AttentionParams pk = p;
    pk.n_head = p.n_head_kv;
    check(pk, "kv_write");
    const uint64_t row_bytes = uint64_t(p.n_tokens) * p.n_head_kv * p.head_dim * kF32;
    need_bytes(k, row_bytes, "kv_write", "k");
    need_bytes(v, row_bytes, "kv_write", "v");
    check_pools(p, k_pool, v_pool, block_table, "kv_write");
    KvWritePush pc{p.n_tokens,  p.pos0,       p.n_head_kv, p.head_dim,
                   p.page_size, p.sink_pages, p.ring_pages};
    const uint32_t wg = fit_workgroup(device_, kv_quantized(p.kv_type) ? 64 : 256);
    vk::Pipeline& pl =
        pipeline(std::string("kv_write_") + kv_suffix(p.kv_type), 5, sizeof(pc), {wg});
    // One invocation per pair of elements, or per quantization block.
    const uint32_t per_inv = kv_quantized(p.kv_type) ? kv_quant_block(p.head_dim) : 2;
    uint32_t gx, gy;
    grid(device_, div_up(uint64_t(p.n_tokens) * p.n_head_kv * (p.head_dim / per_inv), wg), &gx,
         &gy);
    cs.dispatch(pl, {k, v, k_pool, v_pool, block_table}, &pc, sizeof(pc), gx, gy);
}

// ---- attention ---------------------------------------------------------------------------------

AttentionKernels::Plan AttentionKernels::plan(const AttentionParams& p,
                                              uint64_t scratch_bytes) const {
    check(p, "attention");
    const VkPhysicalDeviceLimits& lim = device_.limits();
    uint64_t shared_cap = lim.maxComputeSharedMemorySize;
    if (options_.max_shared_bytes != 0)
        shared_cap = std::min<uint64_t>(shared_cap, options_.max_shared_bytes);
    const uint32_t d = p.head_dim;
    const uint32_t G = p.n_head / p.n_head_kv;
    const uint64_t n_rows = uint64_t(p.n_tokens) * G;  // per KV head

    Plan pl;
    pl.tiled = options_.tile_min_rows != 0 && n_rows >= options_.tile_min_rows && d % 4 == 0;
    if (pl.tiled) {
        pl.workgroup = fit_workgroup(device_, 128);
        // Rows: up to 32 (at most 32 accumulators per invocation) or options_.tile_rows; keys
        // per tile up to 32; both shrunk to the shared memory (16 KiB on some phones).
        uint32_t br = options_.tile_rows ? floor_pow2(options_.tile_rows) : 32;
        if (!options_.tile_rows) {
            // Long prompts: 64 rows (64 accumulators per invocation at head_dim 128) halve the
            // K/V traffic of 32 (measured on an H200: 2048-token prompt 10.2 -> 11.9 TFLOP/s).
            if (n_rows >= 512) br = 64;
            while (br > 1 && uint64_t(br) * d > 64ull * pl.workgroup) br /= 2;
            while (br > 32 && n_rows < 512) br /= 2;
            while (br > 8 && br / 2 >= n_rows) br /= 2;
        }
        uint32_t bc = options_.tile_keys ? floor_pow2(options_.tile_keys) : 32;
        bc = std::max(4u, std::min(bc, pl.workgroup));
        while (tile_shared(d, br, bc) > shared_cap && bc > 8) bc /= 2;
        while (tile_shared(d, br, bc) > shared_cap && br > 1) br /= 2;
        while (tile_shared(d, br, bc) > shared_cap && bc > 4) bc /= 2;
        if (tile_shared(d, br, bc) > shared_cap || d / 4 > pl.workgroup || bc > pl.workgroup)
            pl.tiled = false;
        pl.rows = br;
        pl.tile_keys = bc;
    }
    if (!pl.tiled) {
        const bool quant = kv_quantized(p.kv_type);
        uint32_t wg = fit_workgroup(
            device_, options_.decode_workgroup ? options_.decode_workgroup : kDecodeDefaultWg);
        const uint32_t max_rows = options_.decode_rows
                                      ? std::min(options_.decode_rows, kDecodeMaxRows)
                                      : kDecodeDefaultRows;
        uint32_t r = static_cast<uint32_t>(std::min<uint64_t>(max_rows, n_rows));
        while (decode_shared(wg, d, r, quant) > shared_cap && wg > 32) wg /= 2;
        while (decode_shared(wg, d, r, quant) > shared_cap && r > 1) --r;
        while (decode_shared(wg, d, r, quant) > shared_cap && wg > 1) wg /= 2;
        if (decode_shared(wg, d, r, quant) > shared_cap)
            fail(KV_ERR_UNSUPPORTED,
                 "attention: head_dim %u needs more shared memory than the "
                 "device's %llu bytes",
                 d, static_cast<unsigned long long>(shared_cap));
        pl.workgroup = wg;
        pl.rows = r;
        pl.tile_keys = wg;
    }

    // Split-KV: more workgroups over the keys when the (row block x KV head) grid is small.
    // n_keys bounds the keys one row block reads (its virtual key range, attn_decode.comp):
    // with a window, sinks + window + n_tokens - 1 at most (forced splits keep the whole
    // context, so tests get several splits even under a tiny window).
    uint64_t n_keys = uint64_t(p.pos0) + p.n_tokens;
    if (p.window != 0 && options_.force_splits == 0)
        n_keys = std::min<uint64_t>(n_keys, uint64_t(p.sinks) + p.window + p.n_tokens - 1);
    const uint64_t blocks = div_up(n_rows, pl.rows) * uint64_t(p.n_head_kv);
    const uint64_t n_out = uint64_t(p.n_tokens) * p.n_head;
    const uint64_t per_split = n_out * (uint64_t(d) + 2) * kF32;
    uint64_t splits = 1;
    if (options_.force_splits > 0) {
        splits = options_.force_splits;
    } else if (options_.max_splits > 1) {
        uint32_t min_keys = options_.min_keys_per_split;
        if (device_.properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU)
            min_keys = std::max(min_keys, options_.cpu_min_keys_per_split);
        splits = std::max<uint64_t>(1, div_up(options_.target_workgroups, blocks));
        splits = std::min<uint64_t>(splits, options_.max_splits);
        splits = std::min<uint64_t>(splits, n_keys / min_keys);
    }
    splits = std::min<uint64_t>(splits, scratch_bytes / per_split);
    splits = std::min<uint64_t>(splits, n_keys);
    splits = std::min<uint64_t>(splits, lim.maxComputeWorkGroupCount[2]);
    if (splits < 2) splits = 1;
    // Keys per split: a whole number of tiles; recount the splits that are then needed.
    uint64_t kps = div_up(n_keys, splits);
    if (splits > 1) {
        // Whole tiles per split where that costs little (large splits).
        if (kps >= 4ull * pl.tile_keys) kps = uint64_t(div_up(kps, pl.tile_keys)) * pl.tile_keys;
        splits = div_up(n_keys, kps);
        if (splits < 2) {
            splits = 1;
            kps = n_keys;
        }
    }
    pl.splits = static_cast<uint32_t>(splits);
    pl.keys_per_split = static_cast<uint32_t>(std::min<uint64_t>(kps, 0xFFFFFFFFull));
    return pl;
}

uint64_t AttentionKernels::scratch_bytes(const AttentionParams& p) const {
    const Plan pl = plan(p, ~0ull);
    if (pl.splits < 2) return 0;
    return uint64_t(pl.splits) * p.n_tokens * p.n_head * (uint64_t(p.head_dim) + 2) * kF32;
}

void AttentionKernels::attention(vk::CommandStream& cs, const vk::BufferRange& q,
                                 const vk::BufferRange& k_pool, const vk::BufferRange& v_pool,
                                 const vk::BufferRange& block_table, const vk::BufferRange& out,
                                 const AttentionParams& p) const {
    vk::BufferRange scratch{};
    if (scratch_.valid()) scratch = vk::whole(scratch_);
    attention(cs, q, k_pool, v_pool, block_table, out, p, scratch);
}

void AttentionKernels::attention(vk::CommandStream& cs, const vk::BufferRange& q,
                                 const vk::BufferRange& k_pool, const vk::BufferRange& v_pool,
                                 const vk::BufferRange& block_table, const vk::BufferRange& out,
                                 const AttentionParams& p, const vk::BufferRange& scratch) const {
    check(p, "attention");
    const uint64_t act_bytes = uint64_t(p.n_tokens) * p.n_head * p.head_dim * kF32;
    need_bytes(q, act_bytes, "attention", "q");
    need_bytes(out, act_bytes, "attention", "out");
    check_pools(p, k_pool, v_pool, block_table, "attention");
    const Plan pl = plan(p, scratch.buffer != VK_NULL_HANDLE ? scratch.size : 0);

    const VkPhysicalDeviceLimits& lim = device_.limits();
    const uint32_t G = p.n_head / p.n_head_kv;
    const uint64_t blocks = div_up(uint64_t(p.n_tokens) * G, pl.rows);
    if (blocks > lim.maxComputeWorkGroupCount[0] || p.n_head_kv > lim.maxComputeWorkGroupCount[1])
        fail(KV_ERR_UNSUPPORTED, "attention: %u tokens x %u heads exceed the device's grid",
             p.n_tokens, p.n_head);

    const bool f16 = p.kv_type == GgmlType::F16;
    const bool quant = kv_quantized(p.kv_type);
    AttnPush pc{p.n_tokens, p.pos0,    p.n_head,          p.n_head_kv, p.page_size,
                p.window,   pl.splits, pl.keys_per_split, p.scale,     p.sinks,
                p.sink_pages, p.ring_pages, p.softcap};
    // Spec constant WINDOWED: 0 compiles the plain causal kernels (no window, sinks or ring).
    const uint32_t windowed = p.window != 0 || p.ring_pages != 0 ? 1 : 0;
    std::string name;
    std::vector<uint32_t> spec;
    if (pl.tiled) {
        name = std::string("attn_tile_") + kv_suffix(p.kv_type);
        if (!quant && k_pool.offset % 16 == 0 && v_pool.offset % 16 == 0 &&
            options_.vector_loads)
            name += "_v";
        spec = {pl.workgroup, p.head_dim, pl.rows, pl.tile_keys, windowed};
    } else {
        name = std::string("attn_decode_") + kv_suffix(p.kv_type);
        // 16-byte loads: whole units per row and 16-byte aligned bindings (not quantized pools:
        // their units are 8 elements of one or two words).
        const bool vec = !quant && p.head_dim % (f16 ? 8 : 4) == 0 &&
                         k_pool.offset % 16 == 0 && v_pool.offset % 16 == 0 &&
                         options_.vector_loads;
        if (vec) name += "_v";
        if (quant && p.head_dim < 8) name += "_s";  // units of 2 elements (attn_decode.comp)
        if (subgroup_ops_) name += "_sg";
        spec = {pl.workgroup, p.head_dim, pl.rows, windowed};
    }
    vk::Pipeline& attn = pipeline(name, 5, sizeof(pc), std::move(spec));
    const uint32_t n_out = p.n_tokens * p.n_head;
    const uint64_t used = uint64_t(pl.splits) * n_out * (uint64_t(p.head_dim) + 2) * kF32;
    const vk::BufferRange dst =
        pl.splits > 1 ? vk::BufferRange{scratch.buffer, scratch.offset, used} : out;
    cs.dispatch(attn, {q, k_pool, v_pool, block_table, dst}, &pc, sizeof(pc),
                static_cast<uint32_t>(blocks), p.n_head_kv, pl.splits);
    if (pl.splits > 1) {
        cs.barrier();
        // attn_reduce: wg = dl element lanes x wg / dl split lanes. Fewer element lanes (more
        // workgroups per row, each over dl elements) until every split lane has at most one
        // batch of loads per chunk of wg splits, down to 8 lanes (32-byte runs of a partial).
        // dl is a push constant: the split count changes as a context grows, and a pipeline
        // per value would compile in the middle of generation.
        const uint32_t wg = fit_workgroup(device_, kReduceWg);
        uint32_t dl = std::min(wg, ceil_pow2(p.head_dim));
        const uint32_t chunk = std::min(wg, pl.splits);
        while (dl > 8 && uint64_t(wg / dl) * kReduceBatch < chunk) dl /= 2;
        ReducePush rp{n_out, pl.splits, p.head_dim, dl};
        vk::Pipeline& red = pipeline("attn_reduce", 2, sizeof(rp), {wg});
        uint32_t gx, gy;
        grid(device_, uint64_t(n_out) * div_up(p.head_dim, dl), &gx, &gy);
        cs.dispatch(red, {dst, out}, &rp, sizeof(rp), gx, gy);
    }
}

// ---- argmax ------------------------------------------------------------------------------------

void AttentionKernels::argmax(vk::CommandStream& cs, const vk::BufferRange& x,
                              const vk::BufferRange& out, uint32_t n) const {
    if (n == 0) fail(KV_ERR_INVALID_ARGUMENT, "argmax: empty row");
    need_bytes(x, uint64_t(n) * kF32, "argmax", "x");
    need_bytes(out, 4, "argmax", "out");
    uint32_t wg = fit_workgroup(device_, 256);
    while (wg > 1 && uint64_t(wg) * 8 > device_.limits().maxComputeSharedMemorySize) wg /= 2;
    vk::Pipeline& pl = pipeline("argmax", 2, 4, {wg});
    cs.dispatch(pl, {x, out}, &n, 4, 1);
}

}  // namespace kv::engine
