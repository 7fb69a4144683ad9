/* kv-abi-layout: prints the size of every public struct and the offset of every field, as the C
 * compiler lays them out ("struct field offset size" lines; "struct - 0 size" for the whole).
 * Language bindings compare their own layouts against it (bindings/python/tests). */
#include <kvulkan/kvulkan.h>
#include <stddef.h>
#include <stdio.h>

#define S(T) printf(#T " - 0 %zu\n", sizeof(T))
#define F(T, f) printf(#T " " #f " %zu %zu\n", offsetof(T, f), sizeof(((T*)0)->f))

int main(void) {
    S(kv_memory_heap_info); F(kv_memory_heap_info, size); F(kv_memory_heap_info, budget); F(kv_memory_heap_info, usage);
    F(kv_memory_heap_info, device_local); F(kv_memory_heap_info, reserved);
    S(kv_device_info); F(kv_device_info, struct_size); F(kv_device_info, index); F(kv_device_info, device_name);
    F(kv_device_info, driver_name); F(kv_device_info, driver_info); F(kv_device_info, device_type);
    F(kv_device_info, vendor_id); F(kv_device_info, device_id); F(kv_device_info, api_version);
    F(kv_device_info, driver_version); F(kv_device_info, features); F(kv_device_info, subgroup_size);
    F(kv_device_info, subgroup_size_min); F(kv_device_info, subgroup_size_max); F(kv_device_info, subgroup_ops);
    F(kv_device_info, max_storage_buffer_range); F(kv_device_info, max_allocation_size);
    F(kv_device_info, max_shared_memory); F(kv_device_info, max_workgroup_invocations);
    F(kv_device_info, max_workgroup_count_x); F(kv_device_info, memory_heap_count); F(kv_device_info, memory_heaps);
    F(kv_device_info, timestamp_period_ns); F(kv_device_info, reserved0);
    S(kv_runtime_desc); F(kv_runtime_desc, struct_size); F(kv_runtime_desc, flags); F(kv_runtime_desc, device_index);
    F(kv_runtime_desc, device_name); F(kv_runtime_desc, log_callback); F(kv_runtime_desc, log_user_data);
    F(kv_runtime_desc, vk_instance); F(kv_runtime_desc, vk_physical_device); F(kv_runtime_desc, vk_device);
    F(kv_runtime_desc, vk_queue); F(kv_runtime_desc, vk_queue_family); F(kv_runtime_desc, vk_api_version);
    F(kv_runtime_desc, memory_budget); F(kv_runtime_desc, pipeline_cache_path);
    S(kv_bandwidth_result); F(kv_bandwidth_result, struct_size); F(kv_bandwidth_result, reserved);
    F(kv_bandwidth_result, bytes); F(kv_bandwidth_result, read_gbps); F(kv_bandwidth_result, copy_gbps);
    F(kv_bandwidth_result, write_gbps);
    S(kv_model_desc); F(kv_model_desc, struct_size); F(kv_model_desc, flags); F(kv_model_desc, path);
    F(kv_model_desc, data); F(kv_model_desc, size); F(kv_model_desc, copy_data); F(kv_model_desc, kv_page_size);
    F(kv_model_desc, kv_pool_tokens); F(kv_model_desc, reserved);
    S(kv_model_info); F(kv_model_info, struct_size); F(kv_model_info, on_device); F(kv_model_info, architecture);
    F(kv_model_info, name); F(kv_model_info, weight_types); F(kv_model_info, n_params); F(kv_model_info, weight_bytes);
    F(kv_model_info, file_size); F(kv_model_info, device_bytes); F(kv_model_info, n_vocab); F(kv_model_info, n_embd);
    F(kv_model_info, n_layer); F(kv_model_info, n_head); F(kv_model_info, n_head_kv); F(kv_model_info, head_dim);
    F(kv_model_info, n_ff); F(kv_model_info, n_ctx_train); F(kv_model_info, rope_neox); F(kv_model_info, rope_freq_base);
    F(kv_model_info, tied_output); F(kv_model_info, reserved);
    S(kv_sampler_desc); F(kv_sampler_desc, struct_size); F(kv_sampler_desc, temperature); F(kv_sampler_desc, top_k);
    F(kv_sampler_desc, top_p); F(kv_sampler_desc, min_p); F(kv_sampler_desc, repeat_penalty);
    F(kv_sampler_desc, repeat_last_n); F(kv_sampler_desc, reserved); F(kv_sampler_desc, seed);
    F(kv_sampler_desc, logit_bias); F(kv_sampler_desc, n_logit_bias); F(kv_sampler_desc, n_banned_tokens);
    F(kv_sampler_desc, banned_tokens);
    S(kv_logit_bias); F(kv_logit_bias, token); F(kv_logit_bias, bias);
    S(kv_session_desc); F(kv_session_desc, struct_size); F(kv_session_desc, flags); F(kv_session_desc, n_ctx);
    F(kv_session_desc, cache_type); F(kv_session_desc, n_batch); F(kv_session_desc, reserved);
    F(kv_session_desc, sampler); F(kv_session_desc, window); F(kv_session_desc, sinks);
    S(kv_session_stats); F(kv_session_stats, struct_size); F(kv_session_stats, n_tokens); F(kv_session_stats, n_ctx);
    F(kv_session_stats, page_size); F(kv_session_stats, kv_bytes); F(kv_session_stats, kv_bytes_per_token);
    F(kv_session_stats, tokens_prefilled); F(kv_session_stats, tokens_decoded); F(kv_session_stats, last_prefill_ms);
    F(kv_session_stats, last_prefill_tokens); F(kv_session_stats, reserved); F(kv_session_stats, last_decode_ms);
    F(kv_session_stats, total_prefill_ms); F(kv_session_stats, total_decode_ms); F(kv_session_stats, scratch_bytes);
    F(kv_session_stats, pages); F(kv_session_stats, shared_pages); F(kv_session_stats, prefix_hit_tokens);
    S(kv_cache_stats); F(kv_cache_stats, struct_size); F(kv_cache_stats, page_size); F(kv_cache_stats, pages_total);
    F(kv_cache_stats, pages_in_use); F(kv_cache_stats, pages_cached); F(kv_cache_stats, pages_free);
    F(kv_cache_stats, page_bytes); F(kv_cache_stats, device_bytes); F(kv_cache_stats, prefix_lookups);
    F(kv_cache_stats, prefix_hits); F(kv_cache_stats, evictions);
    /* Since 0.2.0: */
    F(kv_session_stats, forward_passes);
    S(kv_batch_item); F(kv_batch_item, struct_size); F(kv_batch_item, n_tokens); F(kv_batch_item, session);
    F(kv_batch_item, tokens); F(kv_batch_item, logits); F(kv_batch_item, logits_capacity); F(kv_batch_item, token);
    F(kv_batch_item, n_done); F(kv_batch_item, status); F(kv_batch_item, reserved);
    F(kv_model_desc, host_offload_bytes);
    F(kv_session_stats, pages_offloaded); F(kv_session_stats, pages_restored); F(kv_session_stats, offloaded);
    F(kv_session_stats, reserved1);
    F(kv_cache_stats, pages_offloaded); F(kv_cache_stats, pages_restored); F(kv_cache_stats, offloaded_bytes);
    S(kv_generate_desc); F(kv_generate_desc, struct_size); F(kv_generate_desc, max_tokens);
    F(kv_generate_desc, stop_strings); F(kv_generate_desc, n_stop_strings); F(kv_generate_desc, reserved);
    F(kv_generate_desc, on_piece); F(kv_generate_desc, user_data);
    S(kv_generate_result); F(kv_generate_result, struct_size); F(kv_generate_result, n_tokens);
    F(kv_generate_result, stop_reason); F(kv_generate_result, stop_string); F(kv_generate_result, last_token);
    F(kv_generate_result, reserved); F(kv_generate_result, n_bytes);
    S(kv_chat_message); F(kv_chat_message, struct_size); F(kv_chat_message, reserved);
    F(kv_chat_message, role); F(kv_chat_message, content);
    F(kv_session_stats, window_layer_pages); F(kv_session_stats, window_layers);
    F(kv_session_stats, window_layer_pages_released); F(kv_session_stats, pages_released);
    return 0;
}
