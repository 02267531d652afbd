#include "src/train/loss_target.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "src/core/thousands.h"

namespace gpt2 {

LossTarget::LossTarget(double target, int streak_needed, int64_t window_tokens,
                       int64_t step_tokens)
    : target_(target),
      streak_needed_(streak_needed),
      window_(std::max<int64_t>(1, (window_tokens + step_tokens - 1) /
                                       std::max<int64_t>(step_tokens, 1))) {
  if (window_ > 1) {
    over_ = absl::StrFormat(" (the mean of its last %d steps, %s tokens)",
                            window_, Thousands(window_ * step_tokens));
  }
}

std::vector<std::string> LossTarget::Observe(const StepMetrics& metrics,
                                             bool* stop) {
  std::vector<std::string> lines;
  recent_.push_back(metrics.loss);
  if (static_cast<int64_t>(recent_.size()) > window_) recent_.pop_front();
  if (target_ <= 0 || static_cast<int64_t>(recent_.size()) < window_) {
    return lines;
  }
  double held = 0.0;
  for (double loss : recent_) held += loss;
  held /= static_cast<double>(window_);
  if (!(held < target_)) {
    below_since_.reset();
    return lines;
  }
  if (!below_since_) below_since_ = metrics;
  if (!first_below_) {
    first_below_ = metrics;
    lines.push_back(absl::StrFormat(
        "loss %.6f < %g first at step %d, %.1f s after process start%s%s", held,
        target_, metrics.step, metrics.elapsed_s, over_,
        streak_needed_ > 0 ? "" : "; stopping"));
  }
  if (metrics.step - below_since_->step + 1 >= streak_needed_) {
    if (streak_needed_ > 0 && !*stop) {
      lines.push_back(absl::StrFormat(
          "loss below %g at every step since step %d (%.1f s after process "
          "start)%s: %d steps; stopping",
          target_, below_since_->step, below_since_->elapsed_s, over_,
          streak_needed_));
    }
    *stop = true;
  }
  return lines;
}

}  // namespace gpt2
