// The training loop's reading of its steps: each step's mean loss and squared
// gradient norm land in one of two slots on the device, and are read back one
// step late on an asynchronous backend (the host queues step s, then reads
// step s-1's, ready as soon as step s-1 has run: the GPU never waits for the
// host), at once on a synchronous one. Reading a step logs it: its line (every
// log.every_steps, the last, any non-finite one), a progress line now and
// then, its metrics row, and what train.on_nan and train.stop_at_loss make of
// it.
#ifndef GPT2_TRAIN_STEP_READER_H_
#define GPT2_TRAIN_STEP_READER_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "proto/config.pb.h"
#include "src/backend/backend.h"
#include "src/train/loss_target.h"
#include "src/train/run_log.h"
#include "src/train/trainer.h"

namespace gpt2 {

struct StepReaderParts {
  Backend* backend = nullptr;
  DType stats_dtype = DType::kF32;  // the loss and norm sums'
  Tensor params;                    // the weights (for the tests' NaN hook)
  int64_t step_tokens = 0;          // tokens a step (all ranks)
  int64_t max_steps = 0;
  int every_steps = 1;                // log.every_steps
  double progress_every_seconds = 0;  // log.progress_every_seconds
  config::NanPolicy on_nan = config::STOP;
  LossTarget* target = nullptr;
  std::chrono::steady_clock::time_point process_start;
  int64_t first_step = 0;  // this run's first step
};

class StepReader {
 public:
  explicit StepReader(const StepReaderParts& parts);  // allocates the slots
  ~StepReader();
  StepReader(const StepReader&) = delete;
  StepReader& operator=(const StepReader&) = delete;

  // Where step `step` puts its mean loss and squared norm.
  Tensor loss_sum(int64_t step) const;
  Tensor norm_squared(int64_t step) const;

  // Queues the reads of the step just queued (`metrics`: its step, lr and
  // evaluations); the step queued before it must have been read (Finish).
  void Queue(const StepMetrics& metrics);

  // Reads and logs the queued step, if any, into `result` (its loss, a
  // skipped step). Sets *stop where the run should end after it (a
  // non-finite loss under on_nan STOP, the loss target reached).
  void Finish(RunLog* log, TrainResult* result, bool* stop);

  // The step `step` comes after something else on the device (a val or
  // HellaSwag pass, a save): its dt is the host's, from now.
  void RestartClock(int64_t step);
  // ... from the last step read (a save after it, whose time the step's
  // device marks would span).
  void TimeOnHost(int64_t step) { host_dt_step_ = step; }

  // train.on_nan STOP's error, held until the run has saved what it can.
  const std::optional<absl::Status>& non_finite_stop() const {
    return non_finite_stop_;
  }

 private:
  double HostScalar(int index) const;

  StepReaderParts p_;
  Tensor loss_sums_, norms_squared_;  // two slots each
  size_t scalar_bytes_;
  std::vector<char> host_scalars_;  // loss, norm for each slot
  std::optional<StepMetrics> pending_;
  int pending_slot_ = 0;
  std::chrono::steady_clock::time_point last_done_;
  // A step whose device marks span something else: its dt from the host.
  int64_t host_dt_step_ = -1;
  // The last progress line's step and time (at first: before the first step).
  int64_t mark_step_;
  double mark_elapsed_s_;
  std::optional<absl::Status> non_finite_stop_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_STEP_READER_H_
