#include "src/train/train_step.h"

namespace gpt2 {

TrainStep::TrainStep(const TrainStepParts& parts)
    : p_(parts),
      dloss_(1.0 / (static_cast<double>(parts.micro_batch) * parts.seq_len *
                    parts.accum)),
      inputs_(int64_t{parts.micro_batch} * parts.seq_len),
      targets_(int64_t{parts.micro_batch} * parts.seq_len) {
  if (p_.reduce_per_layer) layerwise_.emplace(*p_.model, p_.shard);
}

void TrainStep::Queue(DataLoader* loader, bool replay, Tensor loss_sum,
                      Tensor norm_squared, double lr, int64_t update) {
  Backend* backend = p_.backend;
  Gpt2Model& model = *p_.model;
  Communicator* comm = p_.comm;
  const int B = p_.micro_batch, T = p_.seq_len;
  if (replay) {
    loader->Next(inputs_.data(), targets_.data());
    p_.graph->Run(inputs_.data(), targets_.data(), B, T, dloss_, loss_sum,
                  norm_squared);
  } else {
    backend->Zero(loss_sum);
  }
  for (int micro = 0; micro < (replay ? 0 : p_.accum); ++micro) {
    loader->Next(inputs_.data(), targets_.data());
    model.Forward(inputs_.data(), targets_.data(), B, T, dloss_,
                  /*write_grad=*/true);
    backend->AccumulateSum(loss_sum, model.losses(), dloss_);
    // The first micro-step writes the gradients over the last step's (no
    // zeroing pass; each op waits for the last step's updates beside that
    // still read them), the others add to them.
    const ParamGrads grads =
        micro == 0 ? ParamGrads::kOverwrite : ParamGrads::kAccumulate;
    if (layerwise_ && micro == p_.accum - 1) {
      comm->BeginOverlap();
      model.Backward(
          [&](int layer) {
            layerwise_->Reduce(comm, model.padded_grads(), layer);
          },
          grads);
      comm->EndOverlap();
    } else {
      model.Backward(nullptr, grads);
    }
  }
  // The loss and gradients are averaged over ranks. Only after the last
  // micro-step: earlier micro-steps do no communication.
  if (!replay) comm->AllReduce(loss_sum, ReduceOp::kAverage);
  if (p_.world > 1 && !p_.reduce_per_layer) {  // into its own buffer
    comm->ReduceScatter(p_.shard_grads, model.padded_grads(),
                        ReduceOp::kAverage);
  }
  Tensor step_grads;
  if (p_.zero1) {
    backend->SumSquares(norm_squared, p_.shard_grads);
    comm->AllReduce(norm_squared, ReduceOp::kSum);  // global norm over shards
    step_grads = p_.shard_grads;
  } else {
    if (p_.world > 1) comm->AllGather(model.padded_grads(), p_.shard_grads);
    if (!replay) backend->SumSquares(norm_squared, model.grads());
    step_grads = model.grads();
  }
  // AdamW skips the update on the device when the norm is not finite.
  if (p_.graph != nullptr) {
    p_.graph->Update(norm_squared, lr, update);
  } else {
    p_.optimizer->Step(model.params(), step_grads, norm_squared, lr, update);
  }
  if (p_.zero1) {
    comm->AllGather(
        model.padded_params(),
        model.padded_params().Slice(p_.shard.rank * p_.shard.shard_size,
                                    p_.shard.shard_size));
  }
}

}  // namespace gpt2
