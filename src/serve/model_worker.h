// The one thread that runs gpt2_serve's generations: it owns the decoder, so
// the model is never shared, OpenMP sees one caller, and requests are served
// in the order they arrive, each told how long it waited for those ahead.
#ifndef GPT2_SERVE_MODEL_WORKER_H_
#define GPT2_SERVE_MODEL_WORKER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "src/data/tokenizer.h"
#include "src/infer/decoder.h"
#include "src/infer/generate.h"

namespace gpt2::serve {

class ModelWorker {
 public:
  // `tokenizer` (for stop sequences; may be null without them) must outlive
  // the worker.
  ModelWorker(std::unique_ptr<infer::Decoder> decoder,
              const Tokenizer* tokenizer);
  // Runs the jobs already queued, then ends the thread.
  ~ModelWorker();
  ModelWorker(const ModelWorker&) = delete;
  ModelWorker& operator=(const ModelWorker&) = delete;

  // What a job reports when it ends: the result (or the error), and how long
  // it waited for the requests ahead of it.
  using Done = std::function<void(absl::StatusOr<infer::GenerateResult>,
                                  double queue_seconds)>;

  // Queues `request`; the worker calls `progress` (may be null) as samples
  // grow and `done` once at the end, both on its own thread, except that a
  // job ended by Stop (or refused after it) gets `done` on the thread calling
  // Stop (or Submit). `wanted` (may be
  // null) is asked when the job's turn comes and between batches of draws:
  // false (its client went away) ends the job with Cancelled, unrun or
  // stopped.
  void Submit(infer::GenerateRequest request, infer::GenerateProgress progress,
              Done done, std::function<bool()> wanted = nullptr);

  // Blocks until the worker has run `request`. *queue_seconds: time spent
  // waiting for the requests ahead of it.
  absl::StatusOr<infer::GenerateResult> Run(
      const infer::GenerateRequest& request, double* queue_seconds);

  // Jobs waiting (not the one running).
  int queued();

  // Stops taking work (a server that was told to stop): every job still
  // queued ends at once with Unavailable(why), the one running at its next
  // batch of draws with the same, and so does every later Submit. Returns
  // the jobs that were queued or running.
  int Stop(const std::string& why);

 private:
  struct Job {
    infer::GenerateRequest request;
    infer::GenerateProgress progress;
    Done done;
    std::function<bool()> wanted;
    std::chrono::steady_clock::time_point enqueued;
  };

  void Loop();

  std::unique_ptr<infer::Decoder> decoder_;
  const Tokenizer* tokenizer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  bool running_ = false;  // a job is being run
  // Stop(): why, once called (read by the worker between batches of draws).
  std::atomic<bool> stopping_{false};
  std::string why_;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace gpt2::serve

#endif  // GPT2_SERVE_MODEL_WORKER_H_
