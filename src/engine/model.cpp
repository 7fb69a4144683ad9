#include "engine/model.h"

#include "engine/runtime.h"

#include <algorithm>

namespace kv::engine {

namespace {

using model::GgmlType;
using model::GgufTensorInfo;

// Uploads a tensor in its file format (rows = every dim past the first). Host memory stays
// bounded: the data is read from the mapping and streamed through the uploader's staging buffer.
DeviceTensor upload_tensor(kv_runtime& rt, vk::Uploader& up, const model::GgufFile& file, const GgufTensorInfo& t) {
    DeviceTensor d;
    d.type = t.type;
    d.cols = static_cast<uint32_t>(t.ne[0]);
    d.rows = static_cast<uint32_t>(t.ne[1] * t.ne[2] * t.ne[3]);
    uint64_t row = model::row_bytes(t.type, t.ne[0]);
    d.data = vk::SplitBuffer(rt.allocator.get(), t.bytes, row, vk::MemoryUse::Device);
    const uint8_t* src = file.tensor_data(t);
    for (size_t i = 0; i < d.data.chunk_count(); ++i)
        up.upload(d.data.chunk(i), 0, src + d.data.chunk_offset(i), d.data.chunk(i).size());
    return d;
}

// Rows [row0, row0 + n_rows) of a matrix (ne[1] rows of ne[0]), in its file format: one part of a
// fused tensor (phi3's QKV and gate/up), which the engine runs as separate matrices.
DeviceTensor upload_rows(kv_runtime& rt, vk::Uploader& up, const model::GgufFile& file, const GgufTensorInfo& t,
                         uint32_t row0, uint32_t n_rows) {
    KV_CHECK(t.n_dims == 2 && uint64_t(row0) + n_rows <= t.ne[1]);
    DeviceTensor d;
    d.type = t.type;
    d.cols = static_cast<uint32_t>(t.ne[0]);
    d.rows = n_rows;
    const uint64_t row = model::row_bytes(t.type, t.ne[0]);
    d.data = vk::SplitBuffer(rt.allocator.get(), row * n_rows, row, vk::MemoryUse::Device);
    const uint8_t* src = file.tensor_data(t) + row * row0;
    for (size_t i = 0; i < d.data.chunk_count(); ++i)
        up.upload(d.data.chunk(i), 0, src + d.data.chunk_offset(i), d.data.chunk(i).size());
    return d;
}

DeviceTensor upload_floats(kv_runtime& rt, vk::Uploader& up, const std::vector<float>& v) {
    DeviceTensor d;
    d.type = GgmlType::F32;
    d.cols = static_cast<uint32_t>(v.size());
    d.rows = 1;
    d.data = vk::SplitBuffer(rt.allocator.get(), v.size() * 4, v.size() * 4, vk::MemoryUse::Device);
    up.upload(d.data.chunk(0), 0, v.data(), v.size() * 4);
    return d;
}

// Small 1-D tensors (norm weights, biases, rope factors) go to the device as f32, whatever their
// file type: the kernels that read them take f32.
DeviceTensor upload_f32(kv_runtime& rt, vk::Uploader& up, const model::GgufFile& file, const GgufTensorInfo& t) {
    std::vector<float> v(t.elements());
    model::dequantize_row(t.type, file.tensor_data(t), v.data(), static_cast<int64_t>(v.size()));
    return upload_floats(rt, up, v);
}

}  // namespace

std::unique_ptr<kv_model> load_model(kv_runtime* rt, const kv_model_desc& d) {
    if ((d.path != nullptr) == (d.data != nullptr))
        fail(KV_ERR_INVALID_ARGUMENT, "exactly one of desc->path and desc->data must be set");
    if (d.kv_page_size > 1024) fail(KV_ERR_INVALID_ARGUMENT, "kv_page_size %u is over 1024", d.kv_page_size);
    auto m = std::make_unique<kv_model>();
    m->vocab_only = (d.flags & KV_MODEL_VOCAB_ONLY) != 0;
    if (m->vocab_only) rt = nullptr;  // not used: nothing goes to a device
    m->runtime = rt;
    m->kv_page_size = d.kv_page_size ? d.kv_page_size : 16;
    m->kv_pool_tokens = d.kv_pool_tokens;
    m->host_offload_bytes = d.host_offload_bytes;
    if (d.path) {
        m->file = model::GgufFile::open(d.path);
    } else {
        if (d.size == 0) fail(KV_ERR_INVALID_ARGUMENT, "desc->size is 0");
        m->file = model::GgufFile::from_memory(d.data, static_cast<size_t>(d.size), d.copy_data != 0);
    }
    m->architecture = std::string(m->file->get_string("general.architecture").value_or(""));
    if (m->vocab_only) {
        m->tokenizer = std::make_unique<model::Tokenizer>(*m->file);
        m->desc.config.name = std::string(m->file->get_string("general.name").value_or(""));
        m->desc.config.n_vocab = static_cast<uint32_t>(m->tokenizer->vocab_size());
        return m;
    }
    if (m->file->tensors().empty())
        fail(KV_ERR_BAD_MODEL,
             "the file has no tensors (a vocab-only GGUF?): load it with KV_MODEL_VOCAB_ONLY to use its tokenizer");
    m->desc = model::describe_model(*m->file);
    m->tokenizer = std::make_unique<model::Tokenizer>(*m->file);
    const auto& cfg = m->desc.config;
    if (m->tokenizer->vocab_size() != cfg.n_vocab)
        fail(KV_ERR_BAD_MODEL, "the tokenizer has %zu tokens but token_embd.weight has %u rows",
             m->tokenizer->vocab_size(), cfg.n_vocab);
    if (!rt) return m;
    if (rt->device->lost())
        fail(KV_ERR_DEVICE_LOST, "the device was lost; destroy the runtime and recreate it");

    std::lock_guard<std::mutex> lock(rt->mutex);
    const auto& T = m->desc.tensors;
    auto& W = m->weights;
    vk::Uploader up(*rt->allocator);
    W.token_embd = upload_tensor(*rt, up, *m->file, *T.token_embd);
    W.output_norm = upload_f32(*rt, up, *m->file, *T.output_norm);
    if (!cfg.tied_output && T.output && T.output != T.token_embd) W.output = upload_tensor(*rt, up, *m->file, *T.output);
    if (T.rope_freqs) W.rope_freqs = upload_f32(*rt, up, *m->file, *T.rope_freqs);
    if (T.rope_factors_short) W.rope_factors_short = upload_f32(*rt, up, *m->file, *T.rope_factors_short);
    if (T.rope_factors_long) W.rope_factors_long = upload_f32(*rt, up, *m->file, *T.rope_factors_long);
    if (cfg.rope_yarn) W.rope_yarn = upload_floats(*rt, up, cfg.yarn_factors);
    for (const auto& lt : T.layers) {
        DeviceLayer L;
        L.attn_norm = upload_f32(*rt, up, *m->file, *lt.attn_norm);
        if (lt.wqkv) {  // fused: rows of Q, then K, then V
            L.wq = upload_rows(*rt, up, *m->file, *lt.wqkv, 0, cfg.q_dim());
            L.wk = upload_rows(*rt, up, *m->file, *lt.wqkv, cfg.q_dim(), cfg.kv_dim());
            L.wv = upload_rows(*rt, up, *m->file, *lt.wqkv, cfg.q_dim() + cfg.kv_dim(), cfg.kv_dim());
        } else {
            L.wq = upload_tensor(*rt, up, *m->file, *lt.wq);
            L.wk = upload_tensor(*rt, up, *m->file, *lt.wk);
            L.wv = upload_tensor(*rt, up, *m->file, *lt.wv);
        }
        L.wo = upload_tensor(*rt, up, *m->file, *lt.wo);
        if (lt.bq) L.bq = upload_f32(*rt, up, *m->file, *lt.bq);
        if (lt.bk) L.bk = upload_f32(*rt, up, *m->file, *lt.bk);
        if (lt.bv) L.bv = upload_f32(*rt, up, *m->file, *lt.bv);
        if (lt.bo) L.bo = upload_f32(*rt, up, *m->file, *lt.bo);
        L.ffn_norm = upload_f32(*rt, up, *m->file, *lt.ffn_norm);
        if (cfg.fused_gate_up) {  // rows of the gate, then of up
            L.ffn_gate = upload_rows(*rt, up, *m->file, *lt.ffn_up, 0, cfg.n_ff);
            L.ffn_up = upload_rows(*rt, up, *m->file, *lt.ffn_up, cfg.n_ff, cfg.n_ff);
        } else {
            L.ffn_gate = upload_tensor(*rt, up, *m->file, *lt.ffn_gate);
            L.ffn_up = upload_tensor(*rt, up, *m->file, *lt.ffn_up);
        }
        L.ffn_down = upload_tensor(*rt, up, *m->file, *lt.ffn_down);
        if (lt.attn_q_norm) L.attn_q_norm = upload_f32(*rt, up, *m->file, *lt.attn_q_norm);
        if (lt.attn_k_norm) L.attn_k_norm = upload_f32(*rt, up, *m->file, *lt.attn_k_norm);
        if (lt.post_attn_norm) L.post_attn_norm = upload_f32(*rt, up, *m->file, *lt.post_attn_norm);
        if (lt.post_ffn_norm) L.post_ffn_norm = upload_f32(*rt, up, *m->file, *lt.post_ffn_norm);
        W.layers.push_back(std::move(L));
    }
    auto add = [&](const DeviceTensor& t) {
        for (size_t i = 0; i < t.data.chunk_count(); ++i) W.bytes += t.data.chunk(i).size();
    };
    add(W.token_embd), add(W.output_norm), add(W.output), add(W.rope_freqs);
    add(W.rope_factors_short), add(W.rope_factors_long), add(W.rope_yarn);
    for (auto& L : W.layers)
        for (auto* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.bo, &L.ffn_norm,
                        &L.ffn_gate, &L.ffn_up, &L.ffn_down, &L.attn_q_norm, &L.attn_k_norm, &L.post_attn_norm,
                        &L.post_ffn_norm})
            add(*t);
    m->kernels = std::make_unique<Kernels>(*rt->device, *rt->pipelines);
    m->weight_kernels = std::make_unique<WeightKernels>(*rt->device, *rt->pipelines, *m->kernels);
    m->attention = std::make_unique<AttentionKernels>(*rt->device, *rt->pipelines);
    if (rt->gpu_budget_us) m->gpu_budget = std::make_unique<GpuBudget>(rt->gpu_budget_us, m->config().n_layer);
    return m;
}

void require_weights_on_device(const kv_model& m) {
    if (m.vocab_only)
        fail(KV_ERR_BAD_STATE,
             "the model was loaded vocab-only (KV_MODEL_VOCAB_ONLY): it has no weights to run sessions");
    if (!m.runtime)
        fail(KV_ERR_BAD_STATE,
             "the model was loaded without a runtime (parse-only): it cannot run sessions");
}

namespace {

KvPool& group_pool(kv_model& m, model::GgmlType type, uint32_t min_tokens, bool windowed) {
    std::lock_guard<std::mutex> lock(m.pools_mutex);
    auto& pools = windowed ? m.kv_window_pools : m.kv_pools;
    auto it = pools.find(type);
    if (it != pools.end()) return *it->second;
    const uint32_t ps = m.kv_page_size;
    uint64_t tokens = m.kv_pool_tokens ? m.kv_pool_tokens : std::max<uint32_t>(16384, min_tokens);
    if (!m.kv_pool_tokens) {
        // The default fits one binding per layer (an explicit size that does not is an error).
        uint64_t per_token = kv_row_bytes(type, m.config().head_dim) * m.config().n_head_kv;
        uint64_t fit = m.runtime->device->max_storage_buffer_range() / per_token / ps * ps;
        tokens = std::max<uint64_t>(std::min<uint64_t>(tokens, fit), min_tokens);
    }
    uint32_t pages = static_cast<uint32_t>((tokens + ps - 1) / ps);
    auto pool = std::make_unique<KvPool>(m, type, ps, pages, layer_group(m.config(), windowed));
    KvPool& ref = *pool;
    pools.emplace(type, std::move(pool));
    return ref;
}

}  // namespace

KvPool& kv_pool(kv_model& m, model::GgmlType type, uint32_t min_tokens) {
    return group_pool(m, type, min_tokens, false);
}

KvPool* kv_window_pool(kv_model& m, model::GgmlType type, uint32_t min_tokens) {
    if (!has_window_group(m.config())) return nullptr;
    return &group_pool(m, type, min_tokens, true);
}

}  // namespace kv::engine
