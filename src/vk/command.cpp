#include "vk/command.h"

#include <cstring>

namespace kv::vk {

namespace {
constexpr uint32_t kSetsPerPool = 256;
constexpr uint32_t kBuffersPerPool = kSetsPerPool * 8;
constexpr size_t kMaxCachedSets = 8192;  // distinct (layout, ranges) pairs kept between submissions
}  // namespace

bool CommandStream::SetKey::operator<(const SetKey& o) const {
    if (layout != o.layout) return layout < o.layout;
    if (buffers.size() != o.buffers.size()) return buffers.size() < o.buffers.size();
    for (size_t i = 0; i < buffers.size(); ++i) {
        const BufferRange &a = buffers[i], &b = o.buffers[i];
        if (a.buffer != b.buffer) return a.buffer < b.buffer;
        if (a.offset != b.offset) return a.offset < b.offset;
        if (a.size != b.size) return a.size < b.size;
    }
    return false;
}

CommandStream::CommandStream(Device& device, uint32_t max_timestamps)
    : device_(device), max_timestamps_(max_timestamps) {
    VkDevice dev = device.handle();
    try {
        VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
        pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
        pci.queueFamilyIndex = device.queue_family();
        KV_VK(vkCreateCommandPool(dev, &pci, nullptr, &pool_));
        ensure_part(0);
        cmd_ = cmds_[0];
        if (max_timestamps_ && device.timestamps()) {
            VkQueryPoolCreateInfo qci{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
            qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
            qci.queryCount = max_timestamps_;
            KV_VK(vkCreateQueryPool(dev, &qci, nullptr, &queries_));
            timestamps_.assign(max_timestamps_, 0);
        } else {
            max_timestamps_ = 0;
        }
    } catch (...) {
        for (auto f : fences_) vkDestroyFence(dev, f, nullptr);
        if (pool_) vkDestroyCommandPool(dev, pool_, nullptr);
        throw;
    }
}

CommandStream::~CommandStream() {
    VkDevice dev = device_.handle();
    if (submitted_) {  // recording abandoned after a flush(): let the submitted parts finish
        try {
            wait_parts();
        } catch (...) {
        }
    }
    for (auto p : descriptor_pools_) vkDestroyDescriptorPool(dev, p, nullptr);
    if (queries_) vkDestroyQueryPool(dev, queries_, nullptr);
    for (auto f : fences_) vkDestroyFence(dev, f, nullptr);
    if (pool_) vkDestroyCommandPool(dev, pool_, nullptr);
}

void CommandStream::ensure_part(size_t i) {
    VkDevice dev = device_.handle();
    while (cmds_.size() <= i) {
        VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
        ai.commandPool = pool_;
        ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        ai.commandBufferCount = 1;
        VkCommandBuffer cb;
        KV_VK(vkAllocateCommandBuffers(dev, &ai, &cb));
        cmds_.push_back(cb);
    }
    while (fences_.size() <= i) {
        VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        VkFence f;
        KV_VK(vkCreateFence(dev, &fci, nullptr, &f));
        fences_.push_back(f);
    }
}

void CommandStream::begin() {
    // A recording abandoned by an exception is discarded: its parts already submitted finish
    // first, the command buffers are reset below.
    if (submitted_) wait_parts();
    if (device_.lost()) fail(KV_ERR_DEVICE_LOST, "the device was lost earlier; the runtime must be recreated");
    VkDevice dev = device_.handle();
    if (reset_sets_ || !reuse_sets_) {
        for (auto p : descriptor_pools_) KV_VK(vkResetDescriptorPool(dev, p, 0));
        current_pool_ = 0;
        sets_.clear();
        reset_sets_ = false;
    }
    part_ = 0;
    cmd_ = cmds_[0];
    KV_VK(vkResetCommandBuffer(cmd_, 0));
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    KV_VK(vkBeginCommandBuffer(cmd_, &bi));
    if (queries_) vkCmdResetQueryPool(cmd_, queries_, 0, max_timestamps_);
    recording_ = true;
    unfenced_ = true;  // a first barrier also orders this recording after earlier submissions
}

VkDescriptorSet CommandStream::allocate_set(VkDescriptorSetLayout layout) {
    VkDevice dev = device_.handle();
    for (;;) {
        if (current_pool_ == descriptor_pools_.size()) {
            VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kBuffersPerPool};
            VkDescriptorPoolCreateInfo ci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
            ci.maxSets = kSetsPerPool;
            ci.poolSizeCount = 1;
            ci.pPoolSizes = &size;
            VkDescriptorPool p;
            KV_VK(vkCreateDescriptorPool(dev, &ci, nullptr, &p));
            descriptor_pools_.push_back(p);
        }
        VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
        ai.descriptorPool = descriptor_pools_[current_pool_];
        ai.descriptorSetCount = 1;
        ai.pSetLayouts = &layout;
        VkDescriptorSet set;
        VkResult r = vkAllocateDescriptorSets(dev, &ai, &set);
        if (r == VK_SUCCESS) return set;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) throw_vk(r, "vkAllocateDescriptorSets");
        ++current_pool_;
    }
}

void CommandStream::dispatch(const Pipeline& pipeline, std::initializer_list<BufferRange> buffers,
                             const void* push, uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
    dispatch(pipeline, std::vector<BufferRange>(buffers), push, push_bytes, gx, gy, gz);
}

void CommandStream::dispatch(const Pipeline& pipeline, const std::vector<BufferRange>& buffers,
                             const void* push, uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
    KV_CHECK(recording_);
    const PipelineDesc& d = pipeline.desc();
    if (buffers.size() != d.bindings || push_bytes != d.push_constant_bytes)
        fail(KV_ERR_INTERNAL, "dispatch of %s: %zu buffers / %u push bytes, pipeline expects %u / %u",
             d.shader.c_str(), buffers.size(), push_bytes, d.bindings, d.push_constant_bytes);
    const auto& lim = device_.limits();
    if (gx == 0 || gy == 0 || gz == 0) return;  // nothing to do
    if (gx > lim.maxComputeWorkGroupCount[0] || gy > lim.maxComputeWorkGroupCount[1] ||
        gz > lim.maxComputeWorkGroupCount[2])
        fail(KV_ERR_INTERNAL, "dispatch of %s: %u x %u x %u groups exceed the device limits", d.shader.c_str(),
             gx, gy, gz);

    VkDescriptorSet set = cached_set(pipeline.set_layout(), buffers);
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle());
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout(), 0, 1, &set, 0, nullptr);
    if (push_bytes) vkCmdPushConstants(cmd_, pipeline.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    vkCmdDispatch(cmd_, gx, gy, gz);
    unfenced_ = true;
}

VkDescriptorSet CommandStream::cached_set(VkDescriptorSetLayout layout, const std::vector<BufferRange>& buffers) {
    SetKey key{layout, buffers};
    auto it = sets_.find(key);
    if (it != sets_.end()) return it->second;
    const auto& lim = device_.limits();
    VkDescriptorSet set = allocate_set(layout);
    std::vector<VkDescriptorBufferInfo> infos(buffers.size());
    std::vector<VkWriteDescriptorSet> writes(buffers.size());
    uint64_t range_limit = device_.max_storage_buffer_range();
    uint64_t align = lim.minStorageBufferOffsetAlignment;
    for (size_t i = 0; i < buffers.size(); ++i) {
        const BufferRange& b = buffers[i];
        if (!b.buffer || b.size == 0) fail(KV_ERR_INTERNAL, "dispatch: binding %zu is empty", i);
        if (b.size > range_limit)
            fail(KV_ERR_INTERNAL, "dispatch: binding %zu is %llu bytes, over maxStorageBufferRange %llu", i,
                 (unsigned long long)b.size, (unsigned long long)range_limit);
        if (b.offset % align)
            fail(KV_ERR_INTERNAL, "dispatch: binding %zu offset %llu is not a multiple of %llu", i,
                 (unsigned long long)b.offset, (unsigned long long)align);
        infos[i] = {b.buffer, b.offset, b.size};
        writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
        writes[i].dstSet = set;
        writes[i].dstBinding = static_cast<uint32_t>(i);
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
    }
    vkUpdateDescriptorSets(device_.handle(), static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);
    sets_.emplace(std::move(key), set);
    if (sets_.size() > kMaxCachedSets) reset_sets_ = true;
    return set;
}

void CommandStream::barrier() {
    KV_CHECK(recording_);
    if (!unfenced_) return;  // nothing recorded since the last barrier: it already covers all
    unfenced_ = false;
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0,
                         nullptr, 0, nullptr);
}

void CommandStream::host_barrier() {
    KV_CHECK(recording_);
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

void CommandStream::copy(const BufferRange& src, const BufferRange& dst) {
    KV_CHECK(recording_ && src.size == dst.size);
    if (!src.size) return;
    VkBufferCopy c{src.offset, dst.offset, src.size};
    unfenced_ = true;
    vkCmdCopyBuffer(cmd_, src.buffer, dst.buffer, 1, &c);
}

void CommandStream::fill(const BufferRange& dst, uint32_t value) {
    KV_CHECK(recording_ && dst.size % 4 == 0 && dst.offset % 4 == 0);
    if (!dst.size) return;
    vkCmdFillBuffer(cmd_, dst.buffer, dst.offset, dst.size, value);
    unfenced_ = true;
}

void CommandStream::timestamp(uint32_t slot) {
    KV_CHECK(recording_);
    if (!queries_) return;
    KV_CHECK(slot < max_timestamps_);
    vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, slot);
}

void CommandStream::submit_part(size_t i) {
    KV_VK(vkEndCommandBuffer(cmds_[i]));
    VkResult r = device_.submit(cmds_[i], fences_[i]);
    if (r == VK_SUCCESS) {
        submitted_ = i + 1;
        ++submissions_;
        return;
    }
    recording_ = false;
    if (r == VK_ERROR_DEVICE_LOST) {
        device_.mark_lost();
        fail(KV_ERR_DEVICE_LOST, "the Vulkan device was lost during a submission");
    }
    throw_vk(r, "vkQueueSubmit");
}

void CommandStream::wait_parts() {
    VkDevice dev = device_.handle();
    VkResult r = VK_SUCCESS;
    for (size_t i = 0; i < submitted_ && r == VK_SUCCESS; ++i) {
        // Bounded waits so a hung GPU surfaces as an error instead of a hang forever.
        for (;;) {
            r = vkWaitForFences(dev, 1, &fences_[i], VK_TRUE, 10ull * 1000 * 1000 * 1000);
            if (r != VK_TIMEOUT) break;
            device_.logger().warn("a GPU submission has been running for over 10 s");
        }
        if (r == VK_SUCCESS && (r = device_.faults().check(FaultPoint::Wait)) != VK_SUCCESS) {
            // An injected loss: as after a real one, nothing submitted is left running.
            vkWaitForFences(dev, uint32_t(submitted_), fences_.data(), VK_TRUE, UINT64_MAX);
        }
    }
    if (r == VK_SUCCESS) {
        vkResetFences(dev, uint32_t(submitted_), fences_.data());
        submitted_ = 0;
    } else {
        submitted_ = 0;  // nothing more can be waited for on a lost device
    }
    if (r == VK_ERROR_DEVICE_LOST) {
        device_.mark_lost();
        fail(KV_ERR_DEVICE_LOST, "the Vulkan device was lost during a submission");
    }
    if (r != VK_SUCCESS) throw_vk(r, "vkWaitForFences");
}

void CommandStream::flush() {
    KV_CHECK(recording_);
    barrier();
    submit_part(part_);
    ++part_;
    ensure_part(part_);
    cmd_ = cmds_[part_];
    KV_VK(vkResetCommandBuffer(cmd_, 0));
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    KV_VK(vkBeginCommandBuffer(cmd_, &bi));
}

void CommandStream::submit_and_wait() {
    KV_CHECK(recording_);
    recording_ = false;
    submit_part(part_);
    wait_parts();
    if (queries_) {
        VkResult r = vkGetQueryPoolResults(device_.handle(), queries_, 0, max_timestamps_,
                                           timestamps_.size() * sizeof(uint64_t), timestamps_.data(),
                                           sizeof(uint64_t), VK_QUERY_RESULT_64_BIT);
        if (r != VK_SUCCESS && r != VK_NOT_READY) throw_vk(r, "vkGetQueryPoolResults");
    }
}

double CommandStream::elapsed_ns(uint32_t from, uint32_t to) const {
    if (!queries_ || from >= max_timestamps_ || to >= max_timestamps_) return 0;
    return double(timestamps_[to] - timestamps_[from]) * device_.timestamp_period_ns();
}

// ---- Uploader ----------------------------------------------------------------------------------

Uploader::Uploader(Allocator& allocator, uint64_t staging_bytes)
    : allocator_(allocator), staging_bytes_(staging_bytes), stream_(allocator.device()) {}

void Uploader::upload(const Buffer& dst, uint64_t dst_offset, const void* data, uint64_t bytes) {
    KV_CHECK(dst_offset + bytes <= dst.size());
    if (!bytes) return;
    if (dst.host_visible()) {  // unified memory: write straight into the buffer
        std::memcpy(static_cast<char*>(dst.mapped()) + dst_offset, data, bytes);
        dst.flush(dst_offset, bytes);
        return;
    }
    if (!staging_.valid()) staging_ = Buffer(&allocator_, staging_bytes_, MemoryUse::Upload);
    const char* src = static_cast<const char*>(data);
    for (uint64_t done = 0; done < bytes;) {
        uint64_t n = std::min<uint64_t>(staging_bytes_, bytes - done);
        std::memcpy(staging_.mapped(), src + done, n);
        staging_.flush(0, n);
        stream_.begin();
        stream_.copy({staging_.handle(), 0, n}, {dst.handle(), dst_offset + done, n});
        stream_.barrier();
        stream_.submit_and_wait();
        done += n;
    }
}

void Uploader::download(const Buffer& src, uint64_t src_offset, void* data, uint64_t bytes) {
    KV_CHECK(src_offset + bytes <= src.size());
    if (!bytes) return;
    if (src.host_visible()) {
        src.invalidate(src_offset, bytes);
        std::memcpy(data, static_cast<const char*>(src.mapped()) + src_offset, bytes);
        return;
    }
    if (!readback_.valid()) readback_ = Buffer(&allocator_, staging_bytes_, MemoryUse::Readback);
    char* out = static_cast<char*>(data);
    for (uint64_t done = 0; done < bytes;) {
        uint64_t n = std::min<uint64_t>(staging_bytes_, bytes - done);
        stream_.begin();
        stream_.copy({src.handle(), src_offset + done, n}, {readback_.handle(), 0, n});
        stream_.host_barrier();
        stream_.submit_and_wait();
        readback_.invalidate(0, n);
        std::memcpy(out + done, readback_.mapped(), n);
        done += n;
    }
}

}  // namespace kv::vk
