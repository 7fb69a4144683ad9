// A command stream: records dispatches, barriers and copies into command buffers, submits them
// and waits on fences. One stream is used by one thread at a time. A recording is normally one
// command buffer submitted by submit_and_wait(); flush() submits what is recorded so far and goes
// on in a fresh command buffer, so the GPU runs the first part of a long pass (a decode step's
// early layers) while the host records the rest.
#pragma once

#include <initializer_list>
#include <map>
#include <vector>

#include "vk/memory.h"
#include "vk/pipeline.h"

namespace kv::vk {

class CommandStream {
public:
    // `max_timestamps` query slots (0: none).
    explicit CommandStream(Device& device, uint32_t max_timestamps = 0);
    ~CommandStream();
    CommandStream(const CommandStream&) = delete;
    CommandStream& operator=(const CommandStream&) = delete;

    Device& device() const { return device_; }

    // Starts recording (discarding a recording abandoned by an exception); recycles descriptor
    // sets of the previous submission.
    void begin();
    // Binds `buffers` to bindings 0..n-1 (each range must be <= maxStorageBufferRange), pushes
    // `push` and dispatches groups. The count of buffers must equal the pipeline's bindings.
    void dispatch(const Pipeline& pipeline, std::initializer_list<BufferRange> buffers,
                  const void* push, uint32_t push_bytes, uint32_t groups_x, uint32_t groups_y = 1,
                  uint32_t groups_z = 1);
    void dispatch(const Pipeline& pipeline, const std::vector<BufferRange>& buffers,
                  const void* push, uint32_t push_bytes, uint32_t groups_x, uint32_t groups_y = 1,
                  uint32_t groups_z = 1);
    // Makes every earlier shader/transfer write visible to every later shader/transfer access.
    // Records nothing when no dispatch, copy or fill came since the previous barrier (flush()
    // after a barrier, say): that barrier already covers them.
    void barrier();
    // Makes device writes visible to the host after the submission completes.
    void host_barrier();
    void copy(const BufferRange& src, const BufferRange& dst);  // sizes must match
    void fill(const BufferRange& dst, uint32_t value);          // size multiple of 4
    // Writes the GPU time into slot `slot` (< max_timestamps) after all earlier work.
    void timestamp(uint32_t slot);
    // Keep descriptor sets between submissions (see cached_set). Only for a stream whose bound
    // buffers all outlive it — a session's stream: its scratch, the model's weights — since a
    // destroyed buffer's handle may be reused by a new buffer. Off by default.
    void set_descriptor_reuse(bool on) { reuse_sets_ = on; }

    // Submits what was recorded since begin() or the last flush() (after a barrier(), so work
    // recorded later sees all of it) and continues recording into another command buffer. The
    // submitted part runs while recording continues; submit_and_wait() waits for all parts.
    // If recording is abandoned after a flush (an exception), the next begin() or the destructor
    // waits for the submitted parts first.
    void flush();
    // Ends recording, submits, waits for every part. Throws KV_ERR_DEVICE_LOST (and marks the
    // device lost).
    void submit_and_wait();
    bool recording() const { return recording_; }
    // vkQueueSubmit calls that succeeded, ever: a caller compares two readings to learn whether
    // the part holding some command (the last one, say) reached the GPU before an error.
    uint64_t submissions() const { return submissions_; }

    // Timestamp slots usable by timestamp() (0: none, or the device has no timestamps).
    uint32_t timestamp_slots() const { return max_timestamps_; }
    // Nanoseconds between two timestamp slots of the last submission.
    double elapsed_ns(uint32_t from_slot, uint32_t to_slot) const;

private:
    VkDescriptorSet allocate_set(VkDescriptorSetLayout layout);
    // Descriptor sets are written once and reused by later recordings that bind the same layout
    // and ranges (a decode step binds the same buffers every time; only push constants change).
    // A set is never updated after its first use, so reuse across submissions is safe.
    VkDescriptorSet cached_set(VkDescriptorSetLayout layout, const std::vector<BufferRange>& buffers);

    Device& device_;
    // Submits part `i` (cmds_[i], signalling fences_[i]).
    void submit_part(size_t i);
    // Waits for parts [0, submitted_) and resets their fences (errors as submit_and_wait).
    void wait_parts();
    // Command buffer and fence of part `i`, created on first use.
    void ensure_part(size_t i);

    VkCommandPool pool_ = VK_NULL_HANDLE;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;  // the one being recorded: cmds_[part_]
    std::vector<VkCommandBuffer> cmds_;
    std::vector<VkFence> fences_;
    size_t part_ = 0;       // index of the part being recorded
    size_t submitted_ = 0;  // parts submitted and not yet waited for
    bool unfenced_ = true;  // work recorded since the last barrier (or a fresh recording)
    VkQueryPool queries_ = VK_NULL_HANDLE;
    uint32_t max_timestamps_ = 0;
    std::vector<VkDescriptorPool> descriptor_pools_;
    size_t current_pool_ = 0;
    struct SetKey {
        VkDescriptorSetLayout layout;
        std::vector<BufferRange> buffers;
        bool operator<(const SetKey& o) const;
    };
    std::map<SetKey, VkDescriptorSet> sets_;
    bool reset_sets_ = false;
    bool reuse_sets_ = false;  // the cache grew past its bound: start afresh at the next begin()
    std::vector<uint64_t> timestamps_;
    bool recording_ = false;
    uint64_t submissions_ = 0;
};

// Uploads host data into device buffers in bounded chunks through one staging buffer (or
// directly into host-visible memory). Blocking.
class Uploader {
public:
    Uploader(Allocator& allocator, uint64_t staging_bytes = 16ull << 20);
    void upload(const Buffer& dst, uint64_t dst_offset, const void* data, uint64_t bytes);
    void download(const Buffer& src, uint64_t src_offset, void* data, uint64_t bytes);

private:
    Allocator& allocator_;
    uint64_t staging_bytes_;
    Buffer staging_;
    Buffer readback_;
    CommandStream stream_;
};

}  // namespace kv::vk
