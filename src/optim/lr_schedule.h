// The learning-rate schedule of the original PyTorch run: linear warmup over
// warmup_steps, then cosine decay from lr to min_lr at max_steps (0-based
// steps). Or, with decay_steps > 0, warmup-stable-decay: lr held after the
// warmup, then a linear decay to min_lr over the last decay_steps before
// max_steps.
#ifndef GPT2_OPTIM_LR_SCHEDULE_H_
#define GPT2_OPTIM_LR_SCHEDULE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace gpt2 {

struct LrSchedule {
  double max_lr = 6e-4;
  double min_lr = 6e-5;
  int64_t warmup_steps = 10;
  int64_t max_steps = 1000;
  int64_t decay_steps = 0;  // 0: cosine

  double At(int64_t step) const {
    if (step < warmup_steps) return max_lr * (step + 1) / warmup_steps;
    if (step > max_steps || max_steps <= warmup_steps) return min_lr;
    if (decay_steps > 0) {
      const int64_t start = std::max(warmup_steps, max_steps - decay_steps);
      if (step <= start) return max_lr;
      const double ratio =
          static_cast<double>(step - start) / (max_steps - start);
      return max_lr + ratio * (min_lr - max_lr);
    }
    const double ratio =
        static_cast<double>(step - warmup_steps) / (max_steps - warmup_steps);
    const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
    return min_lr + coeff * (max_lr - min_lr);
  }

  // In words, for the plan and the run's header, e.g. "lr 6.0000e-04 after 10
  // warmup steps, cosine to 6.0000e-05 at step 5,000" or "lr 1.5000e-04 after
  // 10 warmup steps, held to step 2,000, then linear to 1.5000e-05 at step
  // 3,400".
  std::string Describe() const;
};

}  // namespace gpt2

#endif  // GPT2_OPTIM_LR_SCHEDULE_H_
