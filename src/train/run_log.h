// Rank 0's run output: human-readable lines to stdout and <run_dir>/train.log,
// one JSON object per step to <run_dir>/metrics.jsonl, and (log.tensorboard)
// the same figures as TensorBoard scalars in an event file there. Other ranks
// construct it disabled.
#ifndef GPT2_TRAIN_RUN_LOG_H_
#define GPT2_TRAIN_RUN_LOG_H_

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/train/tensorboard.h"

namespace gpt2 {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0.0;
  double lr = 0.0;
  double norm = 0.0;
  double dt_ms = 0.0;
  double tok_per_sec = 0.0;
  double elapsed_s = 0.0;  // since process start, when the step was done
  std::optional<double> val_loss;
  std::optional<double> hellaswag;  // acc_norm, where measured
};

// The per-step line, in the original PyTorch run's format.
std::string FormatStepLine(const StepMetrics& m);
// metrics.jsonl's rows: a step's (FormatMetricsJson); a resumed run's first,
// {"step": N, "restart": true} before its first step N, where the rows of
// steps >= N already in the file are abandoned (TensorBoard's restart too);
// the final weights' measures after N updates, {"step": N, "final": true,
// "val_loss": ...} and/or "hellaswag" (no "loss": not a step of training).
std::string FormatMetricsJson(const StepMetrics& m);
std::string FormatRestartJson(int64_t step);
std::string FormatFinalJson(int64_t step, std::optional<double> val_loss,
                            std::optional<double> hellaswag);

class RunLog {
 public:
  // Creates run_dir (and parents) and starts its train.log and metrics.jsonl
  // afresh, or appends to them (a resumed run). With `tensorboard`, also a new
  // TensorBoard event file there; after `append`, its first event marks the
  // restart at the first step Metrics gets.
  static absl::StatusOr<RunLog> Open(const std::string& run_dir, bool enabled,
                                     bool append = false,
                                     bool tensorboard = false);
  RunLog(RunLog&&) noexcept = default;

  // stdout and train.log. A line train.log cannot take (a full disk) is
  // still printed; the first such failure, and the first write after
  // failures, say so on stderr (as Metrics does for metrics.jsonl).
  void Line(const std::string& text);
  // metrics.jsonl (after the restart row, on a resumed run's first call),
  // and the event file's scalars train/loss, train/lr, train/grad_norm,
  // train/step_ms, train/tokens_per_sec, val/loss and eval/hellaswag_acc_norm
  // (the last two where measured). A failed event write says so once on the
  // log and ends the event file, not the run.
  void Metrics(const StepMetrics& m);
  // Measures of the final weights after `step` updates: a "final" row of
  // metrics.jsonl, and the scalars val/loss and eval/hellaswag_acc_norm.
  void FinalEval(int64_t step, std::optional<double> val_loss,
                 std::optional<double> hellaswag);
  // Text for the event file's Text tab (e.g. the final samples); nothing
  // without an event file.
  void Text(int64_t step, const std::string& tag, const std::string& text);
  // Lines given to Line from now on are also kept, until TakeCapture returns
  // them (each with its newline) and stops keeping them: the run's header
  // (config, hardware, plan) for the event file's Text tab.
  void BeginCapture() { capturing_ = true; }
  std::string TakeCapture();
  const std::string& dir() const { return dir_; }
  // The event file, or "" without one.
  std::string tensorboard_path() const {
    return tensorboard_.has_value() ? tensorboard_->path() : std::string();
  }

 private:
  RunLog() = default;
  void Scalars(int64_t step, std::vector<TensorBoardWriter::Scalar> scalars);
  // Runs `write` (given the wall time) on the event file, after the restart
  // marker where one is due; a failure ends the event file, with a warning.
  void ToEvents(int64_t step, const std::function<absl::Status(double)>& write);
  // After a write to run-folder file `file`: the first failure of a stretch
  // and the first success after one say so on stderr (the step, where
  // `step` >= 0, and how many `what` were lost); *lost counts the stretch.
  void Track(bool written, const char* file, const char* what, int64_t* lost,
             int64_t step);
  std::string dir_;
  bool enabled_ = false;
  struct Closer {
    void operator()(FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<FILE, Closer> log_, metrics_;
  std::optional<TensorBoardWriter> tensorboard_;
  // A resumed run's first step not yet marked in the event file / in
  // metrics.jsonl.
  bool restart_pending_ = false;
  bool metrics_restart_pending_ = false;
  int64_t log_lost_ = 0, metrics_lost_ = 0;  // lines lost since the last write
  bool capturing_ = false;
  std::string captured_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_RUN_LOG_H_
