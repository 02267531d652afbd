// AdamW over the model's flat parameter buffer, driven by the parameter list:
// weight decay applies to exactly the tensors the list marks as decayed. The
// state (m, v) lives on the model's backend. (ZeRO-1 will run this same loop
// over a rank's shard of the buffer.)
#ifndef GPT2_OPTIM_ADAMW_OPTIMIZER_H_
#define GPT2_OPTIM_ADAMW_OPTIMIZER_H_

#include <cstdint>
#include <vector>

#include "src/backend/backend.h"
#include "src/model/params.h"

namespace gpt2 {

struct AdamWHyper {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  double grad_clip = 1.0;  // 0 = off
};

class AdamWOptimizer {
 public:
  AdamWOptimizer(Backend* backend, const std::vector<ParamSpec>& params,
                 DType dtype, const AdamWHyper& hyper);
  ~AdamWOptimizer();
  AdamWOptimizer(const AdamWOptimizer&) = delete;
  AdamWOptimizer& operator=(const AdamWOptimizer&) = delete;

  // One update at learning rate lr; `norm_squared` (1 element, on the backend)
  // is the squared global gradient norm used for clipping. step is 1-based.
  void Step(Tensor params, Tensor grads, Tensor norm_squared, double lr,
            int64_t step);

  int64_t state_bytes() const { return m_.bytes() + v_.bytes(); }

 private:
  Backend* backend_;
  std::vector<ParamSpec> params_;
  AdamWHyper hyper_;
  Tensor m_, v_;
};

}  // namespace gpt2

#endif  // GPT2_OPTIM_ADAMW_OPTIMIZER_H_
