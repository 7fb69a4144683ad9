// RAII wrappers over the public API's models and sessions for the C-API tests, failing the
// test case with the status and message of any call that does not return KV_OK.
#pragma once

#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <string>
#include <vector>

namespace kvtest {

inline void ok(kv_status s) { REQUIRE_MESSAGE(s == KV_OK, kv_status_string(s) << ": " << kv_last_error_message()); }

struct Model {
    kv_model* m = nullptr;
    uint32_t n_vocab = 0;
    Model(kv_runtime* rt, const std::string& path, uint32_t pool_tokens = 0, uint32_t page_size = 0,
          uint64_t host_offload_bytes = 0) {
        kv_model_desc d = KV_MODEL_DESC_INIT;
        d.path = path.c_str();
        d.kv_pool_tokens = pool_tokens;
        d.kv_page_size = page_size;
        d.host_offload_bytes = host_offload_bytes;
        ok(kv_model_load(rt, &d, &m));
        kv_model_info info{};
        info.struct_size = sizeof info;
        ok(kv_model_get_info(m, &info));
        n_vocab = info.n_vocab;
    }
    ~Model() { kv_model_destroy(m); }
    kv_cache_stats cache(kv_cache_type t = KV_CACHE_F32) const {
        kv_cache_stats s{};
        s.struct_size = sizeof s;
        ok(kv_model_get_cache_stats(m, t, &s));
        return s;
    }
};

struct Session {
    kv_session* s = nullptr;
    const Model* model;
    Session(const Model& m, kv_cache_type t = KV_CACHE_F32) : model(&m) {
        kv_session_desc d = KV_SESSION_DESC_INIT;
        d.cache_type = t;
        d.n_ctx = 512;
        ok(kv_session_create(m.m, &d, &s));
    }
    explicit Session(kv_session* adopt, const Model& m) : s(adopt), model(&m) {}
    ~Session() { kv_session_destroy(s); }
    std::vector<float> logits() const {
        std::vector<float> l(model->n_vocab);
        ok(kv_session_logits(s, l.data(), model->n_vocab));
        return l;
    }
    kv_session_stats stats() const {
        kv_session_stats st{};
        st.struct_size = sizeof st;
        ok(kv_session_get_stats(s, &st));
        return st;
    }
    void prefill(const std::vector<kv_token>& t) { ok(kv_prefill(s, t.data(), uint32_t(t.size()))); }
    std::vector<kv_token> greedy(int n) {
        std::vector<kv_token> out;
        for (int i = 0; i < n; ++i) {
            kv_token t;
            kv_status st = kv_decode_step(s, &t);
            REQUIRE((st == KV_OK || st == KV_END_OF_GENERATION));
            if (st != KV_OK) break;
            out.push_back(t);
        }
        return out;
    }
};

}  // namespace kvtest
