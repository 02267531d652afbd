#include "src/serve/model_worker.h"

#include <future>
#include <utility>

namespace gpt2::serve {

ModelWorker::ModelWorker(std::unique_ptr<infer::Decoder> decoder,
                         const Tokenizer* tokenizer)
    : decoder_(std::move(decoder)),
      tokenizer_(tokenizer),
      thread_([this] { Loop(); }) {}

ModelWorker::~ModelWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ModelWorker::Submit(infer::GenerateRequest request,
                         infer::GenerateProgress progress, Done done,
                         std::function<bool()> wanted) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      jobs_.push_back(Job{std::move(request), std::move(progress),
                          std::move(done), std::move(wanted),
                          std::chrono::steady_clock::now()});
      cv_.notify_one();
      return;
    }
  }
  done(absl::UnavailableError(why_), 0.0);
}

int ModelWorker::Stop(const std::string& why) {
  std::deque<Job> dropped;
  int running = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return 0;
    why_ = why;
    stopping_ = true;
    dropped.swap(jobs_);
    running = running_ ? 1 : 0;
  }
  const auto now = std::chrono::steady_clock::now();
  for (Job& job : dropped) {
    job.done(absl::UnavailableError(why),
             std::chrono::duration<double>(now - job.enqueued).count());
  }
  return static_cast<int>(dropped.size()) + running;
}

absl::StatusOr<infer::GenerateResult> ModelWorker::Run(
    const infer::GenerateRequest& request, double* queue_seconds) {
  std::promise<std::pair<absl::StatusOr<infer::GenerateResult>, double>>
      promise;
  auto finished = promise.get_future();
  Submit(
      request, nullptr,
      [&promise](absl::StatusOr<infer::GenerateResult> result, double waited) {
        promise.set_value({std::move(result), waited});
      });
  auto [result, waited] = finished.get();
  *queue_seconds = waited;
  return result;
}

int ModelWorker::queued() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(jobs_.size());
}

void ModelWorker::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stop_ and nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
      running_ = true;
    }
    const double waited = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - job.enqueued)
                              .count();
    if (job.wanted && !job.wanted()) {
      job.done(absl::CancelledError("its client went away before its turn"),
               waited);
      std::lock_guard<std::mutex> lock(mu_);
      running_ = false;
      continue;
    }
    // Between batches of draws: the job's own reader, its client, Stop().
    const infer::GenerateProgress progress =
        [this, &job](const std::vector<infer::GeneratedSample>& samples) {
          if (job.progress && !job.progress(samples)) return false;
          if (job.wanted && !job.wanted()) return false;
          return !stopping_.load();
        };
    absl::StatusOr<infer::GenerateResult> result =
        infer::Generate(decoder_.get(), job.request, progress, tokenizer_);
    if (!result.ok() && absl::IsCancelled(result.status()) && stopping_) {
      result = absl::UnavailableError(why_);
    }
    job.done(std::move(result), waited);
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
  }
}

}  // namespace gpt2::serve
