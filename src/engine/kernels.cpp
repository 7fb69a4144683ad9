#include "engine/kernels.h"

#include "engine/kernel_util.h"

#include <algorithm>

namespace kv::engine {

namespace {

using model::GgmlType;

constexpr uint64_t kF32 = 4;

// Largest power of two <= want that the device accepts as a 1D workgroup.
uint32_t fit_workgroup(const vk::Device& device, uint32_t want) {
    const VkPhysicalDeviceLimits& l = device.limits();
    uint32_t cap = std::min(l.maxComputeWorkGroupInvocations, l.maxComputeWorkGroupSize[0]);
    // Shared memory: the reductions keep one float per invocation and row.
    cap = std::min(cap, l.maxComputeSharedMemorySize / 16);
    return floor_pow2(std::max(1u, std::min(want, cap)));
}

struct RowPush {
    uint32_t n_cols;
    uint32_t n_rows;
    float f;  // eps (rms_norm) or scale (softmax)
};

struct BinaryPush {
    uint32_t n;
    uint32_t nb;
};

struct UnaryPush {
    uint32_t n;
    float f;
};

struct MatvecPush {
    uint32_t cols;
    uint32_t rows;
    uint32_t y_row0;
    uint32_t x_stride;
    uint32_t y_stride;
};

}  // namespace

Kernels::Kernels(vk::Device& device, vk::PipelineCache& pipelines, const KernelOptions& options)
    : device_(device), pipelines_(pipelines) {
    subgroup_ops_ = options.subgroup_ops && has_subgroup_arithmetic(device);
    // CPU devices (lavapipe) run a workgroup on one thread and pay for every barrier by
    // switching between invocation batches, so kernels with reductions get narrow workgroups
    // there (measured on lavapipe, Mesa 22.3, 256 rows x 4096: softmax 6 ms at 8 invocations,
    // 40 ms at 256; rms_norm 4.7 ms against 8.1 ms).
    const bool cpu = device.properties().deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    eltwise_wg_ = fit_workgroup(device, 256);
    if (options.row_workgroup != 0 && !is_pow2(options.row_workgroup))
        fail(KV_ERR_INVALID_ARGUMENT, "row workgroup %u is not a power of two",
             options.row_workgroup);
    row_wg_ = fit_workgroup(device, options.row_workgroup ? options.row_workgroup : cpu ? 8 : 256);
    if (options.matvec_workgroup != 0 && !is_pow2(options.matvec_workgroup))
        fail(KV_ERR_INVALID_ARGUMENT, "matvec workgroup %u is not a power of two",
             options.matvec_workgroup);
    // Default matvec shape. GPUs: 128 invocations stream each row in coalesced 16-byte loads,
    // 2 rows per workgroup share the x loads. On CPU devices see above: 16 x 8 rows measured
    // ~4.4 GB/s on lavapipe against ~0.3 GB/s for 128 x 2.
    matvec_rows_ = options.matvec_rows ? options.matvec_rows : cpu ? 8 : 2;
    if (matvec_rows_ > 8)
        fail(KV_ERR_INVALID_ARGUMENT, "matvec rows per workgroup %u > 8", matvec_rows_);
    matvec_wg_ = fit_workgroup(device, options.matvec_workgroup ? options.matvec_workgroup
                                       : cpu                    ? 16
                                                                : 128);
    // Shared memory of the reduction: matvec_rows floats per invocation.
    while (matvec_wg_ > 1 &&
           uint64_t(matvec_wg_) * matvec_rows_ * 4 > device.limits().maxComputeSharedMemorySize)
        matvec_wg_ /= 2;
}

vk::Pipeline& Kernels::pipeline(const std::string& name, bool reduces, uint32_t bindings,
                                uint32_t push_bytes, std::vector<uint32_t> spec) const {
    vk::PipelineDesc d;
    d.shader = reduces && subgroup_ops_ ? name + "_sg" : name;
    d.bindings = bindings;
    d.push_constant_bytes = push_bytes;
    d.spec = std::move(spec);
    return pipelines_.get(d);
}

void Kernels::grid(uint64_t groups, uint32_t* gx, uint32_t* gy) const { dispatch_grid(device_, groups, gx, gy); }

void Kernels::rms_norm(vk::CommandStream& cs, const vk::BufferRange& x,
                       const vk::BufferRange& weight, const vk::BufferRange& out, uint32_t n_cols,
                       uint32_t n_rows, float eps) const {
    if (n_cols == 0 || n_rows == 0) fail(KV_ERR_INVALID_ARGUMENT, "rms_norm: empty shape");
    const uint64_t bytes = uint64_t(n_cols) * n_rows * kF32;
    const vk::BufferRange bx = fit_range(x, bytes, "rms_norm", "x");
    const vk::BufferRange bw = fit_range(weight, uint64_t(n_cols) * kF32, "rms_norm", "weight");
    const vk::BufferRange bo = fit_range(out, bytes, "rms_norm", "out");
    vk::Pipeline& p = pipeline("rms_norm_f32", true, 3, sizeof(RowPush), {row_wg_});
    RowPush pc{n_cols, n_rows, eps};
    uint32_t gx, gy;
    grid(n_rows, &gx, &gy);
    cs.dispatch(p, {bx, bw, bo}, &pc, sizeof(pc), gx, gy);
}

void Kernels::binary(vk::CommandStream& cs, const char* shader, const vk::BufferRange& a,
                     const vk::BufferRange& b, const vk::BufferRange& out, uint32_t n,
                     uint32_t nb) const {
    if (n == 0) fail(KV_ERR_INVALID_ARGUMENT, "%s: empty shape", shader);
    if (nb == 0) nb = n;
    if (n % nb != 0)
        fail(KV_ERR_INVALID_ARGUMENT, "%s: broadcast length %u does not divide %u", shader, nb, n);
    const vk::BufferRange ba = fit_range(a, uint64_t(n) * kF32, shader, "a");
    const vk::BufferRange bb = fit_range(b, uint64_t(nb) * kF32, shader, "b");
    const vk::BufferRange bo = fit_range(out, uint64_t(n) * kF32, shader, "out");
    vk::Pipeline& p = pipeline(shader, false, 3, sizeof(BinaryPush), {eltwise_wg_});
    BinaryPush pc{n, nb};
    uint32_t gx, gy;
    grid((uint64_t(n) + eltwise_wg_ - 1) / eltwise_wg_, &gx, &gy);
    cs.dispatch(p, {ba, bb, bo}, &pc, sizeof(pc), gx, gy);
}

void Kernels::add(vk::CommandStream& cs, const vk::BufferRange& a, const vk::BufferRange& b,
                  const vk::BufferRange& out, uint32_t n, uint32_t nb) const {
    binary(cs, "add_f32", a, b, out, n, nb);
}

void Kernels::mul(vk::CommandStream& cs, const vk::BufferRange& a, const vk::BufferRange& b,
                  const vk::BufferRange& out, uint32_t n, uint32_t nb) const {
    binary(cs, "mul_f32", a, b, out, n, nb);
}

void Kernels::silu_mul(vk::CommandStream& cs, const vk::BufferRange& gate,
                       const vk::BufferRange& up, const vk::BufferRange& out, uint32_t n) const {
    binary(cs, "silu_mul_f32", gate, up, out, n, n);
}

void Kernels::gelu_mul(vk::CommandStream& cs, const vk::BufferRange& gate,
                       const vk::BufferRange& up, const vk::BufferRange& out, uint32_t n) const {
    binary(cs, "gelu_mul_f32", gate, up, out, n, n);
}

void Kernels::unary(vk::CommandStream& cs, const char* shader, const vk::BufferRange& x,
                    const vk::BufferRange& out, uint32_t n, float f) const {
    if (n == 0) fail(KV_ERR_INVALID_ARGUMENT, "%s: empty shape", shader);
    const vk::BufferRange bx = fit_range(x, uint64_t(n) * kF32, shader, "x");
    const vk::BufferRange bo = fit_range(out, uint64_t(n) * kF32, shader, "out");
    vk::Pipeline& p = pipeline(shader, false, 2, sizeof(UnaryPush), {eltwise_wg_});
    UnaryPush pc{n, f};
    uint32_t gx, gy;
    grid((uint64_t(n) + eltwise_wg_ - 1) / eltwise_wg_, &gx, &gy);
    cs.dispatch(p, {bx, bo}, &pc, sizeof(pc), gx, gy);
}

void Kernels::scale(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out,
                    uint32_t n, float f) const {
    unary(cs, "scale_f32", x, out, n, f);
}

void Kernels::softcap(vk::CommandStream& cs, const vk::BufferRange& x, const vk::BufferRange& out,
                      uint32_t n, float cap) const {
    if (!(cap > 0)) fail(KV_ERR_INVALID_ARGUMENT, "softcap: cap %g must be positive", double(cap));
    unary(cs, "softcap_f32", x, out, n, cap);
}

void Kernels::softmax_rows(vk::CommandStream& cs, const vk::BufferRange& x,
                           const vk::BufferRange& out, uint32_t n_cols, uint32_t n_rows,
                           float scale) const {
    if (n_cols == 0 || n_rows == 0) fail(KV_ERR_INVALID_ARGUMENT, "softmax_rows: empty shape");
    const uint64_t bytes = uint64_t(n_cols) * n_rows * kF32;
    const vk::BufferRange bx = fit_range(x, bytes, "softmax_rows", "x");
    const vk::BufferRange bo = fit_range(out, bytes, "softmax_rows", "out");
    vk::Pipeline& p = pipeline("softmax_f32", true, 2, sizeof(RowPush), {row_wg_});
    RowPush pc{n_cols, n_rows, scale};
    uint32_t gx, gy;
    grid(n_rows, &gx, &gy);
    cs.dispatch(p, {bx, bo}, &pc, sizeof(pc), gx, gy);
}

std::string Kernels::matvec_variant(GgmlType type, uint32_t cols) const {
    switch (type) {
        case GgmlType::F32:
            return cols % 4 == 0 ? "matvec_f32_v4" : "matvec_f32";
        case GgmlType::F16:
            if (cols % 8 == 0) return "matvec_f16_v8";
            if (cols % 2 == 0) return "matvec_f16";
            fail(KV_ERR_UNSUPPORTED, "matvec: F16 weights need an even row length (got %u)", cols);
        default: {
            const model::TypeTraits* t = model::type_traits(type);
            fail(KV_ERR_UNSUPPORTED, "matvec: weight type %s is not supported yet",
                 t ? t->name : "unknown");
        }
    }
}

void Kernels::matvec_chunk(vk::CommandStream& cs, const vk::BufferRange& W, GgmlType type,
                           uint32_t row0, uint32_t chunk_rows, uint32_t rows, uint32_t cols,
                           const vk::BufferRange& x, const vk::BufferRange& y,
                           uint32_t n_vecs) const {
    std::string name = matvec_variant(type, cols);
    const bool vec = name.back() == '4' || name.back() == '8';
    // The vector variants read 16-byte words: keep them to 16-byte aligned bindings (the device's
    // minStorageBufferOffsetAlignment may be as small as 4).
    if (vec && ((W.offset % 16) != 0 || (x.offset % 16) != 0)) {
        name = type == GgmlType::F32 ? "matvec_f32" : "matvec_f16";
    }
    vk::Pipeline& p = pipeline(name, true, 3, sizeof(MatvecPush), {matvec_wg_, matvec_rows_});
    MatvecPush pc{cols, chunk_rows, row0, cols, rows};
    uint32_t gx, gy;
    grid((uint64_t(chunk_rows) + matvec_rows_ - 1) / matvec_rows_, &gx, &gy);
    cs.dispatch(p, {W, x, y}, &pc, sizeof(pc), gx, gy, n_vecs);
}

static uint64_t matvec_row_bytes(GgmlType type, uint32_t cols) {
    return type == GgmlType::F16 ? uint64_t(cols) * 2 : uint64_t(cols) * 4;
}

void Kernels::matvec(vk::CommandStream& cs, const vk::BufferRange& W, GgmlType type, uint32_t rows,
                     uint32_t cols, const vk::BufferRange& x, const vk::BufferRange& y,
                     uint32_t n_vecs) const {
    if (rows == 0 || cols == 0 || n_vecs == 0) fail(KV_ERR_INVALID_ARGUMENT, "matvec: empty shape");
    matvec_variant(type, cols);  // throws for unsupported types / shapes
    if (n_vecs > device_.limits().maxComputeWorkGroupCount[2])
        fail(KV_ERR_UNSUPPORTED, "matvec: %u vectors exceed the device's grid", n_vecs);
    const vk::BufferRange bw = fit_range(W, matvec_row_bytes(type, cols) * rows, "matvec", "W");
    const vk::BufferRange bx = fit_range(x, uint64_t(cols) * n_vecs * kF32, "matvec", "x");
    const vk::BufferRange by = fit_range(y, uint64_t(rows) * n_vecs * kF32, "matvec", "y");
    matvec_chunk(cs, bw, type, 0, rows, rows, cols, bx, by, n_vecs);
}

void Kernels::matvec(vk::CommandStream& cs, const vk::SplitBuffer& W, GgmlType type, uint32_t rows,
                     uint32_t cols, const vk::BufferRange& x, const vk::BufferRange& y,
                     uint32_t n_vecs) const {
    if (rows == 0 || cols == 0 || n_vecs == 0) fail(KV_ERR_INVALID_ARGUMENT, "matvec: empty shape");
    matvec_variant(type, cols);
    if (n_vecs > device_.limits().maxComputeWorkGroupCount[2])
        fail(KV_ERR_UNSUPPORTED, "matvec: %u vectors exceed the device's grid", n_vecs);
    const uint64_t rb = matvec_row_bytes(type, cols);
    const std::vector<RowChunk> cks = row_chunks(W, rb, rows, cols, "matvec");
    const vk::BufferRange bx = fit_range(x, uint64_t(cols) * n_vecs * kF32, "matvec", "x");
    const vk::BufferRange by = fit_range(y, uint64_t(rows) * n_vecs * kF32, "matvec", "y");
    for (const RowChunk& c : cks)
        matvec_chunk(cs, {c.buffer, 0, c.rows * rb}, type, c.row0, c.rows, rows, cols, bx, by, n_vecs);
}

}  // namespace kv::engine
