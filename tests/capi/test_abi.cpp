// Regression tests for the struct-size rules of the ABI (the header's preamble): callers built
// against another header version than the library's. The whole-program check against the 0.1.0
// header is tests/abi/ (abidiff baseline and a C program built against the frozen header).
#include <doctest/doctest.h>
#include <kvulkan/kvulkan.h>

#include <cstring>
#include <string>
#include <vector>

#include "capi/abi_v1.h"
#include "capi/capi_objects.h"
#include "common/runtime_fixture.h"

namespace {

std::string last_error() { return kv_last_error_message(); }

// The smallest real model of ../shared.
std::string small_model() { return kvtest::shared_dir() + "/models/stories260K/stories260K.gguf"; }

}  // namespace

TEST_CASE("abi: the first published struct sizes are frozen at 0.1.0's") {
    // The library's least accepted struct_size of each struct is the end of its 0.1.0 fields,
    // whatever fields are appended later (abi_v1.h; the LP64 literals are static_asserts there).
    CHECK(kv::api::kRuntimeDescV1 <= sizeof(kv_runtime_desc));
    CHECK(kv::api::kDeviceInfoV1 <= sizeof(kv_device_info));
    CHECK(kv::api::kSamplerDescV1 <= sizeof(kv_sampler_desc));
    CHECK(kv::api::kSessionDescV1 <= sizeof(kv_session_desc));
    // One byte short of 0.1.0's size is refused, 0.1.0's size is accepted.
    kv_runtime_desc d = KV_RUNTIME_DESC_INIT;
    d.flags = KV_RUNTIME_IGNORE_ENVIRONMENT;
    d.struct_size = uint32_t(kv::api::kRuntimeDescV1 - 1);
    kv_runtime* rt = nullptr;
    CHECK(kv_runtime_create(&d, &rt) == KV_ERR_INVALID_ARGUMENT);
    CHECK(last_error().find("struct_size") != std::string::npos);
    CHECK(rt == nullptr);
    d.struct_size = uint32_t(kv::api::kRuntimeDescV1);
    REQUIRE(kv_runtime_create(&d, &rt) == KV_OK);
    kv_runtime_destroy(rt);
}

TEST_CASE("abi: kv_enumerate_devices steps through the caller's array by the caller's struct_size") {
    // A caller built against a newer header, whose kv_device_info is longer than the library's.
    struct NewerInfo {
        kv_device_info info;
        uint64_t future[5];
    };
    uint32_t n = 0;
    REQUIRE(kv_enumerate_devices(nullptr, nullptr, &n) == KV_OK);
    REQUIRE(n >= 1);
    std::vector<NewerInfo> infos(n + 1);  // one spare element the library must not touch
    std::memset(infos.data(), 0xAB, infos.size() * sizeof(NewerInfo));
    for (auto& e : infos) e.info.struct_size = sizeof(NewerInfo);
    uint32_t got = n;
    REQUIRE(kv_enumerate_devices(nullptr, &infos[0].info, &got) == KV_OK);
    REQUIRE(got == n);
    for (uint32_t i = 0; i < n; ++i) {
        CHECK(infos[i].info.struct_size == sizeof(NewerInfo));  // kept
        CHECK(infos[i].info.index == i);
        CHECK(std::strlen(infos[i].info.device_name) > 0);
        CHECK(infos[i].info.max_storage_buffer_range > 0);
        for (uint64_t f : infos[i].future) CHECK(f == 0xABABABABABABABABull);  // past the library's struct
    }
    CHECK(infos[n].info.index == 0xABABABABu);  // the spare element is untouched

    // Elements whose struct_size disagree with the first are refused before anything is written.
    if (n >= 2) {
        infos[1].info.struct_size = sizeof(kv_device_info);
        infos[0].info.index = 77;
        got = n;
        CHECK(kv_enumerate_devices(nullptr, &infos[0].info, &got) == KV_ERR_INVALID_ARGUMENT);
        CHECK(last_error().find("infos[1].struct_size") != std::string::npos);
        CHECK(infos[0].info.index == 77);
    }
    kv_device_info tiny{};
    tiny.struct_size = uint32_t(kv::api::kDeviceInfoV1 - 1);
    got = 1;
    CHECK(kv_enumerate_devices(nullptr, &tiny, &got) == KV_ERR_INVALID_ARGUMENT);
}

TEST_CASE("abi: a NULL desc means the *_INIT defaults in every create") {
    kv_runtime* rt = nullptr;
    REQUIRE(kv_runtime_create(nullptr, &rt) == KV_OK);  // rejected before 0.2.0
    kv_device_info info{};
    info.struct_size = sizeof info;
    CHECK(kv_runtime_get_info(rt, &info) == KV_OK);
    kv_runtime_destroy(rt);

    uint32_t n = 0;
    CHECK(kv_enumerate_devices(nullptr, nullptr, &n) == KV_OK);

    kv_model* m = nullptr;  // the defaults name no file: an argument error that says so
    CHECK(kv_model_load(nullptr, nullptr, &m) == KV_ERR_INVALID_ARGUMENT);
    CHECK(last_error().find("path") != std::string::npos);
    CHECK(m == nullptr);

    if (!kvtest::require_shared()) return;
    kvtest::Runtime r;
    kvtest::Model model(r, small_model());
    kv_session* s = nullptr;
    REQUIRE(kv_session_create(model.m, nullptr, &s) == KV_OK);
    kvtest::Session session(s, model);
    kv_token bos = kv_model_token_bos(model.m);
    REQUIRE(kv_prefill(s, &bos, 1) == KV_OK);
    kv_token greedy = -1, again = -1;
    REQUIRE(kv_decode_step(s, &greedy) >= 0);
    REQUIRE(kv_session_reset(s) == KV_OK);
    kv_sampler_desc hot = KV_SAMPLER_DESC_INIT;
    hot.temperature = 1.5f;
    REQUIRE(kv_session_set_sampler(s, &hot) == KV_OK);
    REQUIRE(kv_session_set_sampler(s, nullptr) == KV_OK);  // back to greedy (rejected before 0.2.0)
    REQUIRE(kv_prefill(s, &bos, 1) == KV_OK);
    REQUIRE(kv_decode_step(s, &again) >= 0);
    CHECK(again == greedy);
}

TEST_CASE("abi: kv_sampler_desc is read through its struct_size in create and set_sampler") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime r;
    kvtest::Model model(r, small_model());
    // A newer header's sampler: longer, with a field this library does not know.
    struct NewerSampler {
        kv_sampler_desc d;
        float future_knob;
        uint32_t pad;
    } newer;
    std::memset(&newer, 0, sizeof newer);
    newer.d = KV_SAMPLER_DESC_INIT;
    newer.d.struct_size = sizeof newer;
    newer.d.temperature = 0.7f;
    newer.d.seed = 42;
    kv_session_desc sd = KV_SESSION_DESC_INIT;
    sd.n_ctx = 64;
    sd.sampler = &newer.d;
    kv_session* s = nullptr;

    newer.future_knob = 0.5f;  // set: this library cannot honour it
    CHECK(kv_session_create(model.m, &sd, &s) == KV_ERR_UNSUPPORTED);
    CHECK(last_error().find("sampler") != std::string::npos);
    CHECK(s == nullptr);

    newer.future_knob = 0;  // zero: the old behaviour, accepted
    REQUIRE(kv_session_create(model.m, &sd, &s) == KV_OK);
    kvtest::Session session(s, model);
    CHECK(kv_session_set_sampler(s, &newer.d) == KV_OK);
    newer.future_knob = 0.5f;
    CHECK(kv_session_set_sampler(s, &newer.d) == KV_ERR_UNSUPPORTED);

    kv_sampler_desc old = KV_SAMPLER_DESC_INIT;
    old.struct_size = uint32_t(kv::api::kSamplerDescV1 - 1);  // shorter than 0.1.0's
    CHECK(kv_session_set_sampler(s, &old) == KV_ERR_INVALID_ARGUMENT);
    CHECK(last_error().find("sampler->struct_size") != std::string::npos);
    sd.sampler = &old;
    kv_session* s2 = nullptr;
    CHECK(kv_session_create(model.m, &sd, &s2) == KV_ERR_INVALID_ARGUMENT);
    CHECK(s2 == nullptr);
}
