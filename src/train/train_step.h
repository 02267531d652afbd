// One training step of a rank, queued on its backend: each micro-batch's
// forward and backward (the first writes the gradients over the last step's,
// the others add to them), the loss and gradients averaged over the ranks
// (layer by layer during the last backward, or after it), the global grad
// norm, the AdamW update (skipped on the device where the norm is not
// finite), and under ZeRO-1 the updated shards gathered back to every rank.
// With a recorded step (StepGraph) ready, the one micro-batch is its replay.
#ifndef GPT2_TRAIN_TRAIN_STEP_H_
#define GPT2_TRAIN_TRAIN_STEP_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "src/backend/backend.h"
#include "src/comm/communicator.h"
#include "src/data/data_loader.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"
#include "src/optim/shard_layout.h"
#include "src/train/layerwise_reduction.h"
#include "src/train/step_graph.h"

namespace gpt2 {

struct TrainStepParts {
  Backend* backend = nullptr;
  Gpt2Model* model = nullptr;
  AdamWOptimizer* optimizer = nullptr;
  StepGraph* graph = nullptr;    // null: no recorded step
  Communicator* comm = nullptr;  // the training collectives' (device)
  int world = 1;
  int micro_batch = 0, seq_len = 0;  // B, T
  int accum = 1;                     // micro-batches a step
  ShardLayout shard;                 // this rank's share of the gradients
  bool zero1 = false;                // optimizer state sharded
  bool reduce_per_layer = false;     // during the backward
  // The rank's averaged gradient shard, where it is its own buffer (else
  // empty: its block of the gradient buffer, or a world of one).
  Tensor shard_grads;
};

class TrainStep {
 public:
  explicit TrainStep(const TrainStepParts& parts);

  // Queues a step on `loader`'s next batches. loss_sum and norm_squared
  // receive its mean loss and squared gradient norm (one element each, on
  // the device), lr and `update` (AdamW's bias-correction count) the update.
  // `replay`: run the recorded step (its graph ready, no accumulation).
  void Queue(DataLoader* loader, bool replay, Tensor loss_sum,
             Tensor norm_squared, double lr, int64_t update);

 private:
  TrainStepParts p_;
  double dloss_;  // each token's share of the step's mean loss
  std::optional<LayerwiseReduction> layerwise_;
  std::vector<int32_t> inputs_, targets_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_TRAIN_STEP_H_
