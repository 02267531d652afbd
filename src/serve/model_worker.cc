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
                         infer::GenerateProgress progress, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{std::move(request), std::move(progress),
                        std::move(done), std::chrono::steady_clock::now()});
  }
  cv_.notify_one();
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
    }
    const double waited = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - job.enqueued)
                              .count();
    job.done(
        infer::Generate(decoder_.get(), job.request, job.progress, tokenizer_),
        waited);
  }
}

}  // namespace gpt2::serve
