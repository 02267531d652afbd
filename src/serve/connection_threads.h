// gpt2_serve's connection threads: made as connections arrive, up to a
// maximum, each ending after a while without work (down to a few kept). A
// client that sends slowly, or waits for the model, holds its own thread only:
// the other connections, the page and /healthz are served beside it until
// `max_threads` connections are open at once; past that, connections wait for
// a thread in the order they came.
#ifndef GPT2_SERVE_CONNECTION_THREADS_H_
#define GPT2_SERVE_CONNECTION_THREADS_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace gpt2::serve {

class ConnectionThreads {
 public:
  // Up to `max_threads` at once; a thread idle for `idle` ends, unless it is
  // one of the last `keep_threads`.
  ConnectionThreads(int max_threads, int keep_threads,
                    std::chrono::milliseconds idle);
  ~ConnectionThreads();  // Shutdown()
  ConnectionThreads(const ConnectionThreads&) = delete;
  ConnectionThreads& operator=(const ConnectionThreads&) = delete;

  // Runs `task` on an idle thread, a new one if none is idle and the maximum
  // allows, else once a thread is free.
  void Enqueue(std::function<void()> task);
  // Runs the tasks queued, then ends every thread. Idempotent.
  void Shutdown();
  // Threads alive now (busy or idle).
  int threads();

 private:
  void Work();
  void JoinRetired();  // the threads that ended for idleness

  const int max_threads_, keep_threads_;
  const std::chrono::milliseconds idle_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::list<std::thread> threads_;
  std::vector<std::thread> retired_;
  int idle_ = 0;  // threads waiting for a task
  bool shutdown_ = false;
};

}  // namespace gpt2::serve

#endif  // GPT2_SERVE_CONNECTION_THREADS_H_
