// What a training run allocates, worked out before allocating it: the
// parameters, gradients, optimizer state and activations of one rank, from
// the same lists the model and the optimizer allocate from. The trainer
// checks the plan against the device's free memory and refuses a run that
// cannot fit with a message that says what would (a smaller micro-batch with
// the same total batch, recomputation), instead of failing in an allocation;
// `gpt2_ddp --plan` prints it.
#ifndef GPT2_TRAIN_MEMORY_PLAN_H_
#define GPT2_TRAIN_MEMORY_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>

#include "src/core/tensor.h"
#include "src/model/params.h"

namespace gpt2 {

struct MemoryPlanInputs {
  ModelShape shape;
  DType dtype = DType::kF32;
  int micro_batch = 1, seq_len = 1;
  int64_t buffer_elems = 0;      // the flat param/grad buffers (ZeRO pads them)
  int64_t optimizer_elems = 0;   // what the optimizer state covers (a shard)
  int64_t shard_grad_elems = 0;  // a separate shard gradient buffer, or 0
  bool recompute_gelu = false, recompute_layernorm = false;
  bool residual_fp32 = false;
  bool bf16_state = false;  // optim.bf16_state
};

struct MemoryPlan {
  int64_t params = 0, grads = 0, optimizer = 0, shard_grads = 0,
          activations = 0;
  int64_t total() const {
    return params + grads + optimizer + shard_grads + activations;
  }
};

MemoryPlan PlanMemory(const MemoryPlanInputs& in);

// "params 237.4 MiB, grads 237.4 MiB, optimizer 1.4 GiB, activations
// 6.4 GiB; 8.3 GiB in all" (shard gradients where there are some).
std::string DescribeMemoryPlan(const MemoryPlan& plan);

// 1.5 GiB / 200.0 MiB / 12 KiB.
std::string FormatBytes(int64_t bytes);

// Whether a run needing `plan` (times `sharing`, the ranks that allocate from
// the same memory) fits in `free_bytes`: nullopt if it does, else why not and
// what would fit: the largest micro-batch that divides
// `sequences_per_step` (micro-batch x gradient-accumulation steps, which the
// advice keeps, so the total batch stays) and fits, and the recomputation
// switches not yet on with what each saves. `where` names the memory (e.g.
// "GPU 0 (NVIDIA H100 80GB HBM3)").
std::optional<std::string> WhyItDoesNotFit(const MemoryPlanInputs& in,
                                           int64_t sequences_per_step,
                                           int sharing, int64_t free_bytes,
                                           const std::string& where);

}  // namespace gpt2

#endif  // GPT2_TRAIN_MEMORY_PLAN_H_
