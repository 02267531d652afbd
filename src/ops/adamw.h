// AdamW with decoupled weight decay and bias correction, as torch.optim.AdamW.
// Global-norm clipping is folded in: the step reads the squared grad norm and
// scales the gradient by min(1, clip / (norm + 1e-6)), so no separate pass
// rewrites the grads. A non-finite norm skips the update, so the host need not
// read the norm before it.
#ifndef GPT2_OPS_ADAMW_H_
#define GPT2_OPS_ADAMW_H_

#include <cstdint>
#include <vector>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2 {

// A run of consecutive elements of one AdamW call that all decay or all do
// not: the elements from begin to end, where begin -1 means the previous
// run's end (0 for the first).
struct AdamWRun {
  int64_t end;
  bool decayed;
  int64_t begin = -1;
};

struct AdamWArgs {
  double lr = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;  // of the decayed elements
  // The call's elements in runs, ascending and within the call's n, so that
  // one call covers tensors with and without decay (the optimizer's whole
  // shard: one launch instead of one a tensor). Runs may leave gaps: the
  // elements between them are not touched (one layer's slices of GPT-2's
  // tensors in one call). Empty: every element, decayed.
  std::vector<AdamWRun> runs;
  int64_t step = 1;        // 1-based, for bias correction
  double grad_clip = 0.0;  // 0 = no clipping
  // Non-zero (bf16 params with fp32 masters, CUDA): param gets the updated
  // master rounded stochastically, from a hash of (rounding_seed, step,
  // index + i), so the rounding does not depend on how the parameters are
  // sharded or split into calls; 0: round to nearest even.
  uint64_t rounding_seed = 0;
  int64_t index = 0;  // the parameter number of param[0]
  // Set (an AdamWStepValues on the call's backend, kI32 x 6): lr and step
  // are read from it when the update runs, not from the fields above, so a
  // recorded call (a replayed graph) updates at each replay's rate.
  Tensor step_values;
};

// What changes from one step to the next, as the update reads it: the lr and
// the bias corrections in float, the step (stochastic rounding's hash).
struct AdamWStepValues {
  float lr, correction1, correction2;
  int32_t unused = 0;
  int64_t step;
};
static_assert(sizeof(AdamWStepValues) == 24, "six int32 on the device");
constexpr int64_t kAdamWStepValuesI32 = 6;
// The values of args.lr and args.step with args' betas (as the CUDA twin
// computes them from the fields).
AdamWStepValues MakeAdamWStepValues(const AdamWArgs& args);

// The weight decay of each run of `args` over a call of n elements (one run
// of weight_decay when args.runs is empty), with the runs' bounds; checks
// that the runs are non-empty, ascend without overlapping and stay within
// [0, n) (a programming error otherwise).
struct AdamWDecayRun {
  int64_t begin, end;
  double weight_decay;
};
std::vector<AdamWDecayRun> AdamWDecayRuns(const AdamWArgs& args, int64_t n);

// The factor the gradient is multiplied by: 1, or clip / (norm + 1e-6) when
// larger.
inline double ClipScale(double norm, double grad_clip) {
  if (grad_clip <= 0.0 || norm <= grad_clip) return 1.0;
  return grad_clip / (norm + 1e-6);
}

namespace cpu {

// For i in the runs of args (all of [0, n) without runs): updates param, m,
// v (all n) from grad (n) * clip scale, where the norm is
// sqrt(*norm_squared).
template <typename T>
void AdamW(T* param, T* m, T* v, const T* grad, int64_t n,
           const T* norm_squared, const AdamWArgs& args);

}  // namespace cpu
}  // namespace gpt2

// ---- CUDA twin (src/ops/adamw.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
// m, v, master and norm_squared are f32; param and grad f32 or bf16. With
// master (bf16 params), the update runs on master and param receives it
// rounded.
void AdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
           Tensor norm_squared, const AdamWArgs& args, CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_ADAMW_H_
