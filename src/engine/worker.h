// kvulkan's own thread of a runtime: runs the work of kv_submit_* calls, one job at a time in
// submission order, so the caller's thread (a game's frame loop, an app's UI) never waits on a
// fence. Started on the first submit; the runtime's destructor finishes the queued jobs and joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace kv::engine {

class Worker {
public:
    Worker();
    ~Worker();  // runs what is queued, then joins
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void post(std::function<void()> job);
    bool on_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

private:
    void loop();
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace kv::engine
