#include "src/optim/lr_schedule.h"

#include "absl/strings/str_format.h"
#include "src/core/thousands.h"

namespace gpt2 {

std::string LrSchedule::Describe() const {
  const std::string warmup =
      absl::StrFormat("lr %.4e after %s warmup step%s", max_lr,
                      Thousands(warmup_steps), warmup_steps == 1 ? "" : "s");
  if (max_steps <= warmup_steps) {
    return absl::StrFormat(
        "lr rising to %.4e over %s warmup steps (train.max_steps %s ends "
        "within them)",
        max_lr, Thousands(warmup_steps), Thousands(max_steps));
  }
  if (decay_steps > 0) {
    const int64_t start = std::max(warmup_steps, max_steps - decay_steps);
    return absl::StrFormat(
        "%s, held to step %s, then linear to %.4e at step %s", warmup,
        Thousands(start), min_lr, Thousands(max_steps));
  }
  return absl::StrFormat("%s, cosine to %.4e at step %s", warmup, min_lr,
                         Thousands(max_steps));
}

}  // namespace gpt2
