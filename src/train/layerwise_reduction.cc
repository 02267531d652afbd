#include "src/train/layerwise_reduction.h"

#include <algorithm>

namespace gpt2 {

LayerwiseReduction::LayerwiseReduction(const Gpt2Model& model,
                                       const ShardLayout& shard)
    : shard_(shard) {
  for (int layer = -1; layer < model.shape().num_layers; ++layer)
    regions_.push_back(model.GradRegions(layer));
}

void LayerwiseReduction::Reduce(Communicator* comm, Tensor padded_grads,
                                int layer) const {
  comm->GroupStart();
  for (const auto& [offset, count] : regions_[layer + 1]) {
    for (int64_t a = offset, end = offset + count; a < end;) {
      const int owner = static_cast<int>(a / shard_.shard_size);
      const int64_t b = std::min(end, int64_t{owner + 1} * shard_.shard_size);
      comm->Reduce(padded_grads.Slice(a, b - a), owner, ReduceOp::kAverage);
      a = b;
    }
  }
  comm->GroupEnd();
}

}  // namespace gpt2
