#include "src/serve/connection_threads.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2::serve {

ConnectionThreads::ConnectionThreads(int max_threads, int keep_threads,
                                     std::chrono::milliseconds idle)
    : max_threads_(max_threads),
      keep_threads_(std::clamp(keep_threads, 0, max_threads)),
      idle_timeout_(idle) {
  GPT2_CHECK_MSG(max_threads >= 1, "max_threads = ", max_threads);
}

ConnectionThreads::~ConnectionThreads() { Shutdown(); }

void ConnectionThreads::Enqueue(std::function<void()> task) {
  JoinRetired();
  std::unique_lock<std::mutex> lock(mu_);
  GPT2_CHECK_MSG(!shutdown_, "a task queued after Shutdown");
  tasks_.push_back(std::move(task));
  // More tasks waiting than idle threads to take them: one more thread.
  if (static_cast<int>(tasks_.size()) > idle_ &&
      static_cast<int>(threads_.size()) < max_threads_) {
    try {
      threads_.emplace_back([this] { Work(); });
    } catch (const std::system_error& e) {
      // No thread to be had (a process limit): the task waits for a busy
      // one, or, with none at all, runs here (it threw into the server's
      // accept loop, ending the process).
      Warning(absl::StrCat("gpt2_serve: no new connection thread (", e.what(),
                           "); ", threads_.size(), " serve on"));
      if (threads_.empty()) {
        std::function<void()> now = std::move(tasks_.back());
        tasks_.pop_back();
        lock.unlock();
        now();
        return;
      }
    }
  }
  cv_.notify_one();
}

void ConnectionThreads::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    const bool woken = cv_.wait_for(
        lock, idle_timeout_, [this] { return shutdown_ || !tasks_.empty(); });
    --idle_;
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // its captures freed outside the lock
      lock.lock();
      continue;
    }
    if (shutdown_) return;  // Shutdown joins it
    if (!woken && static_cast<int>(threads_.size()) > keep_threads_) {
      // Idle too long: hand this thread's handle to the next Enqueue or
      // Shutdown to join, and end.
      const std::thread::id me = std::this_thread::get_id();
      const auto it =
          std::find_if(threads_.begin(), threads_.end(),
                       [me](const std::thread& t) { return t.get_id() == me; });
      GPT2_CHECK(it != threads_.end());
      retired_.push_back(std::move(*it));
      threads_.erase(it);
      return;
    }
  }
}

void ConnectionThreads::JoinRetired() {
  std::vector<std::thread> retired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    retired.swap(retired_);
  }
  for (std::thread& t : retired) t.join();
}

void ConnectionThreads::Shutdown() {
  std::list<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
  JoinRetired();
}

int ConnectionThreads::threads() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(threads_.size());
}

}  // namespace gpt2::serve
