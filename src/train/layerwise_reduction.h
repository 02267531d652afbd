// Gradients reduced layer by layer during the backward: each region of the
// flat gradient buffer that one layer's backward has finished goes to the
// ranks whose ZeRO shards hold it, while the backward of the layers below
// runs (on NCCL's stream: the overlap). The trainer and gpt2_bench's overlap
// measurement use the same one.
#ifndef GPT2_TRAIN_LAYERWISE_REDUCTION_H_
#define GPT2_TRAIN_LAYERWISE_REDUCTION_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "src/comm/communicator.h"
#include "src/model/gpt2.h"
#include "src/optim/shard_layout.h"

namespace gpt2 {

class LayerwiseReduction {
 public:
  // The regions of every layer (Gpt2Model::GradRegions), fixed for the run.
  LayerwiseReduction(const Gpt2Model& model, const ShardLayout& shard);

  // Averages the regions the backward of `layer` (-1: what is left after the
  // last layer) has just finished into their owners' copies of
  // padded_grads: one Reduce per (region, owner) piece, in one group.
  void Reduce(Communicator* comm, Tensor padded_grads, int layer) const;

 private:
  std::vector<std::vector<std::pair<int64_t, int64_t>>> regions_;
  ShardLayout shard_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_LAYERWISE_REDUCTION_H_
