// Rank 0's run output: human-readable lines to stdout and <run_dir>/train.log,
// and one JSON object per step to <run_dir>/metrics.jsonl. Other ranks
// construct it disabled.
#ifndef GPT2_TRAIN_RUN_LOG_H_
#define GPT2_TRAIN_RUN_LOG_H_

#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

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
std::string FormatMetricsJson(const StepMetrics& m);

class RunLog {
 public:
  // Creates run_dir (and parents) and starts its train.log and metrics.jsonl
  // afresh, or appends to them (a resumed run).
  static absl::StatusOr<RunLog> Open(const std::string& run_dir, bool enabled,
                                     bool append = false);
  RunLog(RunLog&&) noexcept;
  ~RunLog();

  void Line(const std::string& text);  // stdout and train.log
  void Metrics(const StepMetrics& m);  // metrics.jsonl
  const std::string& dir() const { return dir_; }

 private:
  RunLog() = default;
  std::string dir_;
  bool enabled_ = false;
  FILE* log_ = nullptr;
  FILE* metrics_ = nullptr;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_RUN_LOG_H_
