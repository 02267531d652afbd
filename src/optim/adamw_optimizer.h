// AdamW over one shard of the model's flat parameter buffer, driven by the
// parameter list: weight decay applies to exactly the tensors the list marks as
// decayed, even where a shard boundary cuts through a tensor. The state (m, v)
// covers only the shard; with ShardLayout::Whole it is plain AdamW over
// everything. With bf16 params the optimizer also keeps fp32 master weights for
// its shard: the update runs on them and the params receive it rounded.
#ifndef GPT2_OPTIM_ADAMW_OPTIMIZER_H_
#define GPT2_OPTIM_ADAMW_OPTIMIZER_H_

#include <cstdint>
#include <vector>

#include "src/backend/backend.h"
#include "src/model/params.h"
#include "src/optim/shard_layout.h"

namespace gpt2 {

struct AdamWHyper {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  double grad_clip = 1.0;  // 0 = off
  // Non-zero: bf16 params are the masters rounded stochastically with this
  // seed (AdamWArgs::rounding_seed); 0: to nearest.
  uint64_t rounding_seed = 0;
  // With bf16 params: the whole state in bf16 (optim.bf16_state): m and v
  // in bf16 and no fp32 masters (the update reads and writes the bf16
  // params), every stored value rounded stochastically (needs a non-zero
  // rounding_seed): 14 bytes of memory traffic a parameter instead of 28.
  bool bf16_state = false;
};

// A table parameter whose rows the next forward gathers by its tokens
// (GPT-2's wte, by the encoder).
struct GatheredRows {
  int param = -1;  // its index in the parameter list (-1: none)
  Tensor tokens;   // what the forward gathers by (i32, on the backend)
  Tensor marks;    // i32, one a row of the table (AdamWArgs::row_marks)
};

class AdamWOptimizer {
 public:
  AdamWOptimizer(Backend* backend, const std::vector<ParamSpec>& params,
                 DType dtype, const AdamWHyper& hyper,
                 const ShardLayout& shard);
  // Whole-buffer AdamW.
  AdamWOptimizer(Backend* backend, const std::vector<ParamSpec>& params,
                 DType dtype, const AdamWHyper& hyper);
  ~AdamWOptimizer();
  AdamWOptimizer(const AdamWOptimizer&) = delete;
  AdamWOptimizer& operator=(const AdamWOptimizer&) = delete;

  // One update at learning rate lr. `params` is the whole flat buffer;
  // `shard_grads` holds the gradients of this shard only (element 0 =
  // shard.begin()). `norm_squared` (1 element, on the backend) is the squared
  // global gradient norm, used for clipping. step is 1-based.
  void Step(Tensor params, Tensor shard_grads, Tensor norm_squared, double lr,
            int64_t step);
  // The same update with its rate and step read when it runs from
  // `step_values` (AdamWArgs::step_values, on the backend), for a recorded
  // step: each replay updates at the values staged before it. With updates
  // beside and `gathered`, the table's rows the tokens index are updated
  // first, on their own, and its other rows last, after every group: the
  // forward's gather of its rows waits for the first only, and no layer's
  // update queues behind the rest of the table (~30% of GPT-2 124M's
  // parameters). The tokens must hold the batch that forward gathers when
  // the update runs (staged before a replay); the same updates either way,
  // bit for bit.
  void StepAtStagedValues(Tensor params, Tensor shard_grads,
                          Tensor norm_squared, Tensor step_values,
                          const GatheredRows& gathered = {});
  // Writes the values Step(..., lr, step) would use to step_values.
  void StageStepValues(Tensor step_values, double lr, int64_t step);
  // Where the backend has updates beside (Backend::BeginUpdatesBeside), Step
  // queues them there group by group in the forward's order
  // (ForwardUpdateGroups): the same updates, bit for bit. Allow it only where
  // nothing outside the backend's ops touches the weights, gradients or
  // optimizer state before the next forward (no collectives after the step:
  // a world of one). Off by default.
  void AllowUpdatesBeside(bool allow) { updates_beside_allowed_ = allow; }
  // Whether Step queues its updates beside (allowed, and the backend has it).
  bool updates_beside() const {
    return updates_beside_allowed_ && backend_->UpdatesBeside();
  }

  const ShardLayout& shard() const { return shard_; }
  // Bytes of m, v and the master weights; StateBytes: the same before
  // making one, for planning memory.
  int64_t state_bytes() const {
    return m_.bytes() + v_.bytes() + master_.bytes();
  }
  static int64_t StateBytes(DType dtype, int64_t shard_size,
                            bool bf16_state = false);
  // The moments of this rank's shard, (shard_size) each, for checkpoints.
  Tensor m() const { return m_; }
  Tensor v() const { return v_; }
  // fp32 master weights of the shard (bf16 params only; else empty).
  Tensor master() const { return master_; }
  bool has_master() const { return master_.data != nullptr; }
  // Sets the master weights from the params (after init, or loading weights).
  void InitMasterFromParams(Tensor params);

 private:
  void Queue(Tensor params, Tensor shard_grads, Tensor norm_squared, double lr,
             int64_t step, Tensor step_values,
             const GatheredRows& gathered = {});
  static DType StateDType(DType dtype, bool bf16_state) {
    return dtype == DType::kBF16 && !bf16_state ? DType::kF32 : dtype;
  }
  static bool HasMaster(DType dtype, bool bf16_state) {
    return dtype == DType::kBF16 && !bf16_state;
  }

  Backend* backend_;
  std::vector<ParamSpec> params_;
  AdamWHyper hyper_;
  ShardLayout shard_;
  Tensor m_, v_;   // (shard_size), f32 (f64 for an f64 model)
  Tensor master_;  // (shard_size) f32, bf16 params only
  // Step's AdamW call but for the lr and step: the hyperparameters, the
  // shard's first parameter number and its runs with and without decay.
  AdamWArgs args_;
  // The same split into the forward's groups (runs with gaps), for updates
  // beside; groups with no element in the shard left out.
  std::vector<AdamWArgs> group_args_;
  bool updates_beside_allowed_ = false;
};

}  // namespace gpt2

#endif  // GPT2_OPTIM_ADAMW_OPTIMIZER_H_
