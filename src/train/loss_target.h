// train.stop_at_loss: the loss held against a target (each step's, or the
// mean of the last steps holding train.stop_loss_tokens tokens), the first
// step it is below, and a run that has stayed below for
// train.stop_after_steps_below steps; the log's lines about both.
#ifndef GPT2_TRAIN_LOSS_TARGET_H_
#define GPT2_TRAIN_LOSS_TARGET_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "src/train/run_log.h"

namespace gpt2 {

class LossTarget {
 public:
  // target 0: none (Observe never stops). window_tokens: the tokens the held
  // loss is the mean over (0: each step's own), of steps of step_tokens.
  LossTarget(double target, int streak_needed, int64_t window_tokens,
             int64_t step_tokens);

  // Takes a finite step's loss (steps in order); returns the lines to log.
  // Sets *stop once the run should end after this step (it never clears it):
  // at the first step below without a streak to wait for, else once the
  // loss has been below for `streak_needed` steps in a row (said once, while
  // *stop is still false: a step queued before the stop is read after it).
  std::vector<std::string> Observe(const StepMetrics& metrics, bool* stop);

  int64_t window_steps() const { return window_; }

 private:
  double target_;
  int streak_needed_;
  int64_t window_;
  std::string over_;  // what the lines add about the mean
  std::deque<double> recent_;
  std::optional<StepMetrics> first_below_, below_since_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_LOSS_TARGET_H_
