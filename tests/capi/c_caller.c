/* What a C caller may pass and C++ cannot form without undefined behaviour: an enum argument
 * outside its enumerators (C converts any int to an enum type). The library must reject it
 * without ever loading it as the enum (tests/capi/test_session.cpp). */
#include <kvulkan/kvulkan.h>

kv_status kv_c_model_get_cache_stats(kv_model* model, int32_t type, kv_cache_stats* stats) {
    return kv_model_get_cache_stats(model, (kv_cache_type)type, stats);
}
