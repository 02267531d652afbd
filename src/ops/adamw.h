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

#if defined(__CUDACC__)
#define GPT2_ADAMW_HD __host__ __device__
#else
#define GPT2_ADAMW_HD
#endif

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
  // Non-zero (bf16 params, CUDA): param gets the updated master (or, with no
  // masters and bf16 m and v, the updated param, and m and v theirs) rounded
  // stochastically, from a hash of (rounding_seed, step, index + i; the
  // moments' hashes salted apart), so the rounding does not depend on how the
  // parameters are sharded or split into calls; 0: round to nearest even.
  // bf16 moments (m, v; optim.bf16_state) need it non-zero and no masters.
  uint64_t rounding_seed = 0;
  int64_t index = 0;  // the parameter number of param[0]
  // Set (an AdamWStepValues on the call's backend, kI32 x 6): lr and step
  // are read from it when the update runs, not from the fields above, so a
  // recorded call (a replayed graph) updates at each replay's rate.
  Tensor step_values;
  // Set (kI32, one mark per row, on the call's backend): the call is one run
  // over a table of rows of row_width elements (GPT-2's wte) and updates only
  // the rows marked with its step's stamp (marked_rows) or only the others
  // (!marked_rows), each as a call without marks would: one call of each
  // updates every row once. MarkAdamWRows marks the rows a batch gathers, so
  // that its gather (the encoder) can wait for their update alone.
  Tensor row_marks;
  int64_t row_width = 0;
  bool marked_rows = true;
};

// A row's mark for the call's step (AdamWArgs::row_marks): the step's low 32
// bits, never 0 (the marks of a new table). Marks left from another step
// with the same stamp only make the marked call update more rows: the two
// calls still split the rows between them. (The CUDA twin's too.)
GPT2_ADAMW_HD inline int32_t AdamWRowStamp(int64_t step) {
  const auto stamp = static_cast<int32_t>(static_cast<uint32_t>(step));
  return stamp == 0 ? 1 : stamp;
}

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

// The table of a call with row marks (AdamWArgs::row_marks): its one run's
// first element, rows, row width and weight decay; checks that the call is
// one run of whole rows with a mark for each (a programming error
// otherwise).
struct AdamWRowTable {
  int64_t begin, rows, width;
  double weight_decay;
};
AdamWRowTable AdamWRows(const AdamWArgs& args, int64_t n);

// The factor the gradient is multiplied by: 1, or clip / (norm + 1e-6) when
// larger.
inline double ClipScale(double norm, double grad_clip) {
  if (grad_clip <= 0.0 || norm <= grad_clip) return 1.0;
  return grad_clip / (norm + 1e-6);
}

namespace cpu {

// marks[tokens[i]] = stamp for the n tokens (those outside [0, rows) are
// left out).
void MarkAdamWRows(int32_t* marks, int64_t rows, const int32_t* tokens,
                   int64_t n, int32_t stamp);

// For i in the runs of args (all of [0, n) without runs): updates param, m,
// v (all n) from grad (n) * clip scale, where the norm is
// sqrt(*norm_squared); with args.row_marks (host memory) only the rows it
// selects.
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
// Marks the rows `tokens` (i32) index in `marks` (i32, one per row) with the
// stamp of args' step (read from args.step_values where set).
void MarkAdamWRows(Tensor marks, Tensor tokens, const AdamWArgs& args,
                   CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_ADAMW_H_
