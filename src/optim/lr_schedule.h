// The learning-rate schedule of the original PyTorch run: linear warmup over
// warmup_steps, then cosine decay from lr to min_lr at max_steps (0-based
// steps).
#ifndef GPT2_OPTIM_LR_SCHEDULE_H_
#define GPT2_OPTIM_LR_SCHEDULE_H_

#include <cmath>
#include <cstdint>

namespace gpt2 {

struct LrSchedule {
  double max_lr = 6e-4;
  double min_lr = 6e-5;
  int64_t warmup_steps = 10;
  int64_t max_steps = 1000;

  double At(int64_t step) const {
    if (step < warmup_steps) return max_lr * (step + 1) / warmup_steps;
    if (step > max_steps || max_steps <= warmup_steps) return min_lr;
    const double ratio =
        static_cast<double>(step - warmup_steps) / (max_steps - warmup_steps);
    const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
    return min_lr + coeff * (max_lr - min_lr);
  }
};

}  // namespace gpt2

#endif  // GPT2_OPTIM_LR_SCHEDULE_H_
