// Architecture configs from GGUF metadata: the real fixtures parse to their documented shapes,
// and broken models (built with GgufWriter) fail with the right status and a precise message.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/helpers.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "reference/tiny_model.h"

using kv::model::GgmlType;

namespace {

kv::model::ModelDesc describe(const kvtest::TinySpec& spec) {
    std::vector<uint8_t> bytes = kvtest::build_tiny_model(spec);
    auto f = kv::model::GgufFile::from_memory(bytes.data(), bytes.size(), true);
    kv::model::ModelDesc d = kv::model::describe_model(*f);
    d.tensors = {};  // pointers into f, which dies here
    return d;
}

// Expects describe_model to fail with `status` and a message containing every `parts`.
void expect_error(const kvtest::TinySpec& spec, kv_status status, std::vector<std::string> parts) {
    std::vector<uint8_t> bytes = kvtest::build_tiny_model(spec);
    auto f = kv::model::GgufFile::from_memory(bytes.data(), bytes.size(), false);
    try {
        kv::model::describe_model(*f);
        FAIL("no error; expected status " << status);
    } catch (const kv::Error& e) {
        INFO("message: " << std::string(e.what()));
        CHECK(e.status() == status);
        for (const std::string& p : parts)
            CHECK_MESSAGE(std::string(e.what()).find(p) != std::string::npos,
                          "missing '" << p << "'");
    }
}

// The first ggml type kvulkan knows but cannot dequantize, with a small block.
GgmlType unsupported_type() {
    for (uint32_t id = 0; id < 64; ++id) {
        const kv::model::TypeTraits* t = kv::model::type_traits(id);
        if (t && !t->supported && t->block_size <= 32) return static_cast<GgmlType>(id);
    }
    return GgmlType::F32;
}

}  // namespace

TEST_CASE("arch: a valid tiny llama parses, with counts and summary") {
    kvtest::TinySpec s;
    kv::model::ModelDesc d = describe(s);
    const kv::model::ModelConfig& c = d.config;
    CHECK(c.arch == kv::model::Arch::Llama);
    CHECK(c.name == "tiny-llama");
    CHECK(c.n_vocab == 64);
    CHECK(c.n_embd == 32);
    CHECK(c.n_layer == 2);
    CHECK(c.n_head == 4);
    CHECK(c.n_head_kv == 2);
    CHECK(c.head_dim == 8);
    CHECK(c.n_gqa() == 2);
    CHECK(c.n_rot == 8);
    CHECK(c.n_ff == 48);
    CHECK(c.n_ctx_train == 256);
    CHECK(c.rope_type == kv::model::RopeType::Norm);
    CHECK(!c.tied_output);
    CHECK(!c.has_qkv_bias);
    CHECK(!c.has_rope_freqs);
    CHECK(c.sliding_window == std::vector<uint32_t>{0, 0});
    // embd + out + final norm + 2 x (2 norms + q, k, v, o + 3 ffn)
    const uint64_t per_layer = 2 * 32 + 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 48;
    CHECK(c.n_params == 2 * 64 * 32 + 32 + 2 * per_layer);
    CHECK(c.weight_bytes == c.n_params * 4);
    REQUIRE(c.weight_types.size() == 1);
    CHECK(c.weight_types[0].type == GgmlType::F32);
    CHECK(c.weight_types_summary().find("f32: 21 tensors") != std::string::npos);
    CHECK(c.summary().find("llama, 2 layers") != std::string::npos);
}

TEST_CASE("arch: tied output, biases, rope factors, sliding window, MQA, qwen2") {
    kvtest::TinySpec s;
    s.tied = true;
    s.qkv_bias = true;
    s.rope_freqs = true;
    s.n_rot = 4;  // partial rotation
    s.sliding_window = 16;
    s.n_head_kv = 1;
    std::vector<uint8_t> bytes = kvtest::build_tiny_model(s);
    auto f = kv::model::GgufFile::from_memory(bytes.data(), bytes.size(), false);
    kv::model::ModelDesc d = kv::model::describe_model(*f);
    CHECK(d.config.tied_output);
    CHECK(d.tensors.output == d.tensors.token_embd);
    CHECK(d.config.has_qkv_bias);
    CHECK(d.tensors.layers[1].bk == f->find_tensor("blk.1.attn_k.bias"));
    CHECK(d.config.has_rope_freqs);
    CHECK(d.tensors.rope_freqs->ne[0] == 2);
    CHECK(d.config.n_rot == 4);
    CHECK(d.config.n_gqa() == 4);
    CHECK(d.config.sliding_window == std::vector<uint32_t>{16, 16});
    CHECK(d.config.n_params ==
          64 * 32 + 32 + 2 + 2 * (2 * 32 + 2 * 32 * 32 + 2 * 32 * 8 + 32 + 2 * 8 + 3 * 32 * 48));

    kvtest::TinySpec q;
    q.arch = "qwen2";
    q.rope_base = 1e6f;
    kv::model::ModelDesc dq = describe(q);
    CHECK(dq.config.arch == kv::model::Arch::Qwen2);
    CHECK(dq.config.rope_type == kv::model::RopeType::Neox);
    CHECK(dq.config.has_qkv_bias);
    CHECK(dq.config.rope_freq_base == 1e6f);

    kvtest::TinySpec mixed;
    mixed.type = GgmlType::Q8_0;
    mixed.n_ff = 64;  // rows must be whole Q8_0 blocks
    kv::model::ModelDesc dm = describe(mixed);
    REQUIRE(dm.config.weight_types.size() == 2);
    CHECK(dm.config.weight_types[0].type == GgmlType::Q8_0);  // most elements first
    CHECK(dm.config.weight_types[1].type == GgmlType::F32);
}

TEST_CASE("arch: unknown architecture -> KV_ERR_UNSUPPORTED naming it") {
    kvtest::TinySpec s;
    s.arch = "mamba";
    expect_error(s, KV_ERR_UNSUPPORTED, {"mamba"});
    kvtest::TinySpec none;
    none.omit_keys = {"general.architecture"};
    expect_error(none, KV_ERR_BAD_MODEL, {"general.architecture"});
}

TEST_CASE("arch: missing tensors -> KV_ERR_BAD_MODEL naming them") {
    for (std::string drop : {"blk.1.attn_v.weight", "output_norm.weight", "token_embd.weight",
                             "blk.0.ffn_down.weight"}) {
        kvtest::TinySpec s;
        s.edit = [drop](std::string& name, std::vector<uint64_t>&, GgmlType&) {
            return name != drop;
        };
        expect_error(s, KV_ERR_BAD_MODEL, {"missing tensor", drop});
    }
    kvtest::TinySpec q;  // qwen2 requires Q/K/V biases
    q.arch = "qwen2";
    q.edit = [](std::string& name, std::vector<uint64_t>&, GgmlType&) {
        return name != "blk.0.attn_k.bias";
    };
    expect_error(q, KV_ERR_BAD_MODEL, {"blk.0.attn_k.bias"});
    kvtest::TinySpec partial;  // llama: biases are optional, but Q/K/V together
    partial.qkv_bias = true;
    partial.edit = [](std::string& name, std::vector<uint64_t>&, GgmlType&) {
        return name != "blk.1.attn_v.bias";
    };
    expect_error(partial, KV_ERR_BAD_MODEL, {"block 1", "attn_v.bias"});
}

TEST_CASE("arch: wrong shapes -> KV_ERR_BAD_MODEL with expected and actual shapes") {
    kvtest::TinySpec s;
    s.edit = [](std::string& name, std::vector<uint64_t>& ne, GgmlType&) {
        if (name == "blk.1.ffn_down.weight") ne = {32, 48};  // transposed
        return true;
    };
    expect_error(s, KV_ERR_BAD_MODEL, {"blk.1.ffn_down.weight", "[32, 48]", "expected [48, 32]"});

    kvtest::TinySpec k;
    k.edit = [](std::string& name, std::vector<uint64_t>& ne, GgmlType&) {
        if (name == "blk.0.attn_k.weight") ne = {32, 32};  // as if n_head_kv == n_head
        return true;
    };
    expect_error(k, KV_ERR_BAD_MODEL, {"blk.0.attn_k.weight", "expected [32, 16]"});

    kvtest::TinySpec out;
    out.edit = [](std::string& name, std::vector<uint64_t>& ne, GgmlType&) {
        if (name == "output.weight") ne = {32, 63};  // vocab differs from token_embd
        return true;
    };
    expect_error(out, KV_ERR_BAD_MODEL, {"output.weight", "expected [32, 64]"});

    kvtest::TinySpec norm;
    norm.edit = [](std::string& name, std::vector<uint64_t>& ne, GgmlType&) {
        if (name == "blk.0.attn_norm.weight") ne = {32, 2};
        return true;
    };
    expect_error(norm, KV_ERR_BAD_MODEL, {"blk.0.attn_norm.weight", "expected [32]"});

    kvtest::TinySpec vocab;
    vocab.u32_overrides = {{"llama.vocab_size", 65}};
    expect_error(vocab, KV_ERR_BAD_MODEL, {"llama.vocab_size", "65", "64"});
}

TEST_CASE("arch: head counts that do not divide -> KV_ERR_BAD_MODEL") {
    kvtest::TinySpec kvh;
    kvh.u32_overrides = {{"llama.attention.head_count_kv", 3}};
    expect_error(kvh, KV_ERR_BAD_MODEL, {"llama.attention.head_count = 4", "head_count_kv = 3"});

    kvtest::TinySpec embd;
    embd.n_head = 5;  // 32 / 5
    embd.n_head_kv = 5;
    expect_error(embd, KV_ERR_BAD_MODEL, {"embedding_length = 32", "head_count = 5"});

    kvtest::TinySpec rot;
    rot.n_rot = 9;
    expect_error(rot, KV_ERR_BAD_MODEL, {"rope.dimension_count = 9"});

    kvtest::TinySpec missing;
    missing.omit_keys = {"llama.block_count"};
    expect_error(missing, KV_ERR_BAD_MODEL, {"llama.block_count"});

    kvtest::TinySpec zero;
    zero.u32_overrides = {{"llama.attention.head_count", 0}};
    expect_error(zero, KV_ERR_BAD_MODEL, {"llama.attention.head_count"});

    kvtest::TinySpec layers;  // metadata says 3 blocks, the file has 2
    layers.u32_overrides = {{"llama.block_count", 3}};
    expect_error(layers, KV_ERR_BAD_MODEL, {"missing tensor", "blk.2."});
}

TEST_CASE("arch: unsupported weight type -> KV_ERR_UNSUPPORTED naming tensor and type") {
    const GgmlType bad = unsupported_type();
    if (bad == GgmlType::F32) {
        MESSAGE("SKIPPED: every known ggml type with a block <= 32 is supported");
        return;
    }
    kvtest::TinySpec s;
    s.edit = [bad](std::string& name, std::vector<uint64_t>&, GgmlType& type) {
        if (name == "blk.1.attn_q.weight") type = bad;
        return true;
    };
    expect_error(s, KV_ERR_UNSUPPORTED, {"blk.1.attn_q.weight", kv::model::type_traits(bad)->name});
}

TEST_CASE("arch: rope scaling and MoE -> KV_ERR_UNSUPPORTED, YaRN's keys checked") {
    kvtest::TinySpec moe;
    moe.u32_overrides = {{"llama.expert_count", 8}};
    expect_error(moe, KV_ERR_UNSUPPORTED, {"llama.expert_count"});

    kvtest::TinySpec unknown;
    unknown.string_keys = {{"llama.rope.scaling.type", "dynamic"}};
    unknown.f32_keys = {{"llama.rope.scaling.factor", 4.f}};
    expect_error(unknown, KV_ERR_UNSUPPORTED, {"dynamic"});

    // YaRN: factor and original context required (named), attention factor 0.1 ln(factor) + 1
    // unless given, per-pair factors from 1 (extrapolated) to the factor (interpolated).
    kvtest::TinySpec yarn;
    yarn.string_keys = {{"llama.rope.scaling.type", "yarn"}};
    yarn.f32_keys = {{"llama.rope.scaling.factor", 4.f}};
    expect_error(yarn, KV_ERR_BAD_MODEL, {"llama.rope.scaling.original_context_length"});
    yarn.u32_overrides = {{"llama.rope.scaling.original_context_length", 4096}};
    kv::model::ModelConfig c = describe(yarn).config;
    CHECK(c.rope_yarn);
    CHECK(c.rope_freq_scale == 1.f);
    CHECK(c.n_ctx_orig == 4096);
    CHECK(c.rope_mscale == doctest::Approx(0.1 * std::log(4.0) + 1.0));
    REQUIRE(c.yarn_factors.size() == 4);  // head_dim 8
    // Correction range [floor(d(32)), ceil(d(1))] = [floor(1.31), ceil(2.81)] = [1, 3]: pairs 0 and
    // 1 keep their frequency, pair 3 is divided by the factor, pair 2 is halfway (1 / (0.5 / 4 + 0.5)).
    CHECK(c.yarn_factors[0] == doctest::Approx(1.0));
    CHECK(c.yarn_factors[1] == doctest::Approx(1.0));
    CHECK(c.yarn_factors[2] == doctest::Approx(1.6));
    CHECK(c.yarn_factors[3] == doctest::Approx(4.0));
    yarn.f32_keys["llama.rope.scaling.attn_factor"] = 1.5f;
    CHECK(describe(yarn).config.rope_mscale == 1.5f);
    yarn.f32_keys["llama.rope.scaling.attn_factor"] = std::nanf("");
    expect_error(yarn, KV_ERR_BAD_MODEL, {"llama.rope.scaling.attn_factor"});
    kvtest::TinySpec no_factor = yarn;
    no_factor.f32_keys = {};
    expect_error(no_factor, KV_ERR_BAD_MODEL, {"llama.rope.scaling.factor"});

    kvtest::TinySpec linear;  // linear scaling is supported: angles are multiplied by 1/factor
    linear.string_keys = {{"llama.rope.scaling.type", "linear"}};
    linear.f32_keys = {{"llama.rope.scaling.factor", 4.f}};
    CHECK(describe(linear).config.rope_freq_scale == 0.25f);
}

TEST_CASE("arch: non-finite float hyper-parameters -> KV_ERR_BAD_MODEL naming the key") {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
    for (float bad : {inf, -inf, nan}) {
        INFO("value " << bad);
        kvtest::TinySpec base;  // +inf used to load and generate
        base.rope_base = bad;
        expect_error(base, KV_ERR_BAD_MODEL, {"llama.rope.freq_base"});

        kvtest::TinySpec eps;
        eps.rms_eps = bad;
        expect_error(eps, KV_ERR_BAD_MODEL, {"llama.attention.layer_norm_rms_epsilon"});

        for (const char* key : {"llama.rope.scaling.factor", "llama.rope.scale_linear"}) {
            kvtest::TinySpec factor;  // +inf used to load, then every prefill failed
            factor.string_keys = {{"llama.rope.scaling.type", "linear"}};
            factor.f32_keys = {{key, bad}};
            expect_error(factor, KV_ERR_BAD_MODEL, {key});
        }
    }
    kvtest::TinySpec tiny;  // 1 / factor overflows a float
    tiny.string_keys = {{"llama.rope.scaling.type", "linear"}};
    tiny.f32_keys = {{"llama.rope.scaling.factor", 1e-40f}};
    expect_error(tiny, KV_ERR_BAD_MODEL, {"llama.rope.scaling.factor", "too small"});

    // A float64 key beyond float range: finite as a double, infinite as the f32 the kernels take.
    std::vector<uint8_t> bytes = kvtest::build_tiny_model(kvtest::TinySpec{});
    auto f = kv::model::GgufFile::from_memory(bytes.data(), bytes.size(), false);
    kv::model::GgufWriter w;
    for (const auto& kv : f->metadata()) w.set_value(kv.first, kv.second);
    kv::model::GgufValue big;
    big.type = kv::model::GgufType::FLOAT64;
    big.f = 1e300;
    w.set_value("llama.rope.freq_base", big);
    for (const auto& t : f->tensors())
        w.add_tensor(t.name, t.type, std::vector<uint64_t>(t.ne, t.ne + t.n_dims), f->tensor_data(t),
                     static_cast<size_t>(t.bytes));
    std::vector<uint8_t> out = w.to_bytes();
    auto g = kv::model::GgufFile::from_memory(out.data(), out.size(), false);
    try {
        kv::model::describe_model(*g);
        FAIL("a float64 freq_base of 1e300 was accepted");
    } catch (const kv::Error& e) {
        CHECK(e.status() == KV_ERR_BAD_MODEL);
        CHECK(std::string(e.what()).find("llama.rope.freq_base") != std::string::npos);
    }
}

TEST_CASE("arch: a huge block_count fails on the missing block before per-layer state is allocated") {
    // Found by fuzz_gguf's model checks: 2^31 - 1 blocks allocated ~9 GB of per-layer bookkeeping
    // before the first missing tensor was noticed.
    kvtest::TinySpec s;
    s.u32_overrides = {{"llama.block_count", 0x7FFFFFFF}};
    expect_error(s, KV_ERR_BAD_MODEL, {"missing tensor", "blk.2147483646.", "llama.block_count"});
}

TEST_CASE("arch: the shared fixtures and stories260K") {
    if (!kvtest::require_shared()) return;
    const std::string m = kvtest::shared_dir() + "/models/";
    {
        auto f = kv::model::GgufFile::open(m + "fixtures/llama-gqa.q4_k_m.gguf");
        const kv::model::ModelConfig c = kv::model::describe_model(*f).config;
        CHECK(c.arch == kv::model::Arch::Llama);
        CHECK(c.n_embd == 256);
        CHECK(c.n_layer == 2);
        CHECK(c.n_head == 8);
        CHECK(c.n_head_kv == 2);
        CHECK(c.head_dim == 32);
        CHECK(c.n_ff == 512);
        CHECK(c.n_vocab == 1024);
        CHECK(c.rope_freq_base == 10000.f);
        CHECK(!c.tied_output);
        bool q4k = false, q6k = false;
        for (const auto& u : c.weight_types) {
            q4k |= u.type == GgmlType::Q4_K;
            q6k |= u.type == GgmlType::Q6_K;
        }
        CHECK(q4k);
        CHECK(q6k);
        // 2 x 1024 x 256 embeddings/output + 256 final norm + 2 layers
        CHECK(c.n_params ==
              2 * 1024 * 256 + 256 + 2 * (2 * 256 + 256 * 256 * 2 + 2 * 256 * 64 + 3 * 256 * 512));
        MESSAGE("llama-gqa.q4_k_m: " << c.summary() << " | " << c.weight_types_summary());
    }
    {
        auto f = kv::model::GgufFile::open(m + "fixtures/qwen2-bias.q8_0.gguf");
        const kv::model::ModelConfig c = kv::model::describe_model(*f).config;
        CHECK(c.arch == kv::model::Arch::Qwen2);
        CHECK(c.rope_type == kv::model::RopeType::Neox);
        CHECK(c.has_qkv_bias);
        CHECK(c.n_vocab == 50257);
        CHECK(c.head_dim == 16);
        CHECK(c.rope_freq_base == 1e6f);
        CHECK(c.rms_eps == doctest::Approx(1e-6));
    }
    {
        auto f = kv::model::GgufFile::open(m + "stories260K/stories260K.gguf");
        const kv::model::ModelConfig c = kv::model::describe_model(*f).config;
        CHECK(c.n_layer == 5);
        CHECK(c.n_head == 8);
        CHECK(c.n_head_kv == 4);
        CHECK(c.n_ff == 172);
        CHECK(c.n_vocab == 512);
        CHECK(c.n_ctx_train == 128);
        CHECK(c.n_rot == 8);
    }
    {
        auto f = kv::model::GgufFile::open(m + "llama-2-tiny-random/llama-2-tiny-random.gguf");
        const kv::model::ModelConfig c = kv::model::describe_model(*f).config;
        CHECK(c.n_vocab == 32000);
        CHECK(c.n_embd == 8);
        CHECK(c.head_dim == 4);
        CHECK(c.n_rot == 4);
        CHECK(c.weight_types[0].type == GgmlType::F16);
    }
}

TEST_CASE("arch: qwen3, gemma2 and gemma3 features, and their keys named when missing or not finite") {
    using kv::model::Arch;
    kvtest::TinySpec q3;
    q3.arch = "qwen3";
    kv::model::ModelConfig c = describe(q3).config;
    CHECK(c.arch == Arch::Qwen3);
    CHECK(c.rope_type == kv::model::RopeType::Neox);
    CHECK(c.has_qk_norm);
    CHECK_FALSE(c.has_post_norms);
    CHECK(c.attention_scale() == doctest::Approx(1.0 / std::sqrt(8.0)));
    q3.edit = [](std::string& name, std::vector<uint64_t>&, GgmlType&) { return name != "blk.1.attn_k_norm.weight"; };
    expect_error(q3, KV_ERR_BAD_MODEL, {"blk.1.attn_k_norm.weight"});

    kvtest::TinySpec g2;
    g2.arch = "gemma2";
    g2.n_layer = 4;
    g2.sliding_window = 8;
    g2.f32_keys = {{"gemma2.attn_logit_softcapping", 50.f}, {"gemma2.final_logit_softcapping", 30.f}};
    c = describe(g2).config;
    CHECK(c.arch == Arch::Gemma2);
    CHECK(c.sliding_window == std::vector<uint32_t>{8, 0, 8, 0});  // even layers windowed
    CHECK(c.embd_scale == doctest::Approx(std::sqrt(32.0)));
    CHECK(c.attn_softcap == 50.f);
    CHECK(c.final_softcap == 30.f);
    CHECK(c.ffn_act == kv::model::FfnAct::GeluTanh);
    CHECK(c.has_post_norms);
    CHECK_FALSE(c.has_qk_norm);
    CHECK(c.attention_scale() == doctest::Approx(1.0 / std::sqrt(8.0)));  // head_dim (not the 27B shape)
    for (const char* key : {"gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping"}) {
        kvtest::TinySpec missing = g2;
        missing.f32_keys.erase(key);
        expect_error(missing, KV_ERR_BAD_MODEL, {"missing", key});
        for (float bad : {std::numeric_limits<float>::infinity(), std::nanf(""), -1.f}) {
            kvtest::TinySpec b = g2;
            b.f32_keys[key] = bad;
            expect_error(b, KV_ERR_BAD_MODEL, {key});
        }
    }
    kvtest::TinySpec no_window = g2;
    no_window.sliding_window = 0;
    expect_error(no_window, KV_ERR_BAD_MODEL, {"gemma2.attention.sliding_window"});
    kvtest::TinySpec no_post = g2;
    no_post.edit = [](std::string& name, std::vector<uint64_t>&, GgmlType&) { return name != "blk.2.post_ffw_norm.weight"; };
    expect_error(no_post, KV_ERR_BAD_MODEL, {"blk.2.post_ffw_norm.weight"});

    kvtest::TinySpec g3;
    g3.arch = "gemma3";
    g3.n_layer = 7;
    g3.sliding_window = 8;
    g3.rope_base = 1e6f;
    g3.string_keys = {{"gemma3.rope.scaling.type", "linear"}};
    g3.f32_keys = {{"gemma3.rope.scaling.factor", 4.f}};
    c = describe(g3).config;
    CHECK(c.arch == Arch::Gemma3);
    CHECK(c.sliding_window == std::vector<uint32_t>{8, 8, 8, 8, 8, 0, 8});  // every sixth layer global
    CHECK(c.has_qk_norm);
    CHECK(c.has_post_norms);
    CHECK(c.attn_softcap == 0.f);
    CHECK(c.final_softcap == 0.f);
    CHECK(c.rope_base(0) == 10000.f);  // windowed: the local base, unscaled
    CHECK(c.rope_scale(0) == 1.f);
    CHECK(c.rope_base(5) == 1e6f);  // global: the file's base and scaling
    CHECK(c.rope_scale(5) == 0.25f);
    kvtest::TinySpec g3_nan = g3;
    g3_nan.f32_keys["gemma3.final_logit_softcapping"] = std::nanf("");
    expect_error(g3_nan, KV_ERR_BAD_MODEL, {"gemma3.final_logit_softcapping"});
    g3.sliding_window = 0;
    expect_error(g3, KV_ERR_BAD_MODEL, {"gemma3.attention.sliding_window"});
}

TEST_CASE("arch: phi3 with fused QKV and gate/up tensors, or separate ones") {
    kvtest::TinySpec p3;  // n_embd 32, 4 heads of 8, 2 KV heads: QKV rows 32 + 16 + 16
    p3.arch = "phi3";
    p3.sliding_window = 24;
    p3.edit = [](std::string& name, std::vector<uint64_t>& ne, GgmlType&) {
        auto ends = [&](const char* s) { return name.size() > std::strlen(s) && name.compare(name.size() - std::strlen(s), std::string::npos, s) == 0; };
        if (ends("attn_k.weight") || ends("attn_v.weight") || ends("ffn_gate.weight")) return false;
        if (ends("attn_q.weight")) {
            name.replace(name.size() - std::strlen("attn_q.weight"), std::string::npos, "attn_qkv.weight");
            ne = {32, 64};
        }
        if (ends("ffn_up.weight")) ne = {32, 96};
        return true;
    };
    kv::model::ModelDesc d = describe(p3);
    CHECK(d.config.arch == kv::model::Arch::Phi3);
    CHECK(d.config.rope_type == kv::model::RopeType::Neox);
    CHECK(d.config.fused_gate_up);
    CHECK(d.config.sliding_window == std::vector<uint32_t>{24, 24});  // declared: every layer
    kvtest::TinySpec bad = p3;
    bad.edit = [edit = p3.edit](std::string& name, std::vector<uint64_t>& ne, GgmlType& t) {
        if (!edit(name, ne, t)) return false;
        if (name == "blk.1.attn_qkv.weight") ne = {32, 48};
        return true;
    };
    expect_error(bad, KV_ERR_BAD_MODEL, {"blk.1.attn_qkv.weight", "[32, 48]", "[32, 64]"});
    kvtest::TinySpec separate;  // phi3 files with separate tensors load too
    separate.arch = "phi3";
    CHECK_FALSE(describe(separate).config.fused_gate_up);
}
