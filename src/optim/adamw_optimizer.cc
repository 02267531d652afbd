#include "src/optim/adamw_optimizer.h"

#include <algorithm>

namespace gpt2 {

AdamWOptimizer::AdamWOptimizer(Backend* backend,
                               const std::vector<ParamSpec>& params,
                               DType dtype, const AdamWHyper& hyper,
                               const ShardLayout& shard)
    : backend_(backend), params_(params), hyper_(hyper), shard_(shard) {
  m_ = backend_->Alloc(StateDType(dtype), shard_.shard_size);
  v_ = backend_->Alloc(StateDType(dtype), shard_.shard_size);
  if (HasMaster(dtype))
    master_ = backend_->Alloc(DType::kF32, shard_.shard_size);
}

int64_t AdamWOptimizer::StateBytes(DType dtype, int64_t shard_size) {
  const int64_t per_param =
      2 * DTypeSize(StateDType(dtype)) + (HasMaster(dtype) ? 4 : 0);
  return per_param * shard_size;
}

AdamWOptimizer::AdamWOptimizer(Backend* backend,
                               const std::vector<ParamSpec>& params,
                               DType dtype, const AdamWHyper& hyper)
    : AdamWOptimizer(backend, params, dtype, hyper,
                     ShardLayout::Whole(TotalParams(params))) {}

AdamWOptimizer::~AdamWOptimizer() {
  backend_->Free(m_);
  backend_->Free(v_);
  backend_->Free(master_);
}

void AdamWOptimizer::Step(Tensor params, Tensor shard_grads,
                          Tensor norm_squared, double lr, int64_t step) {
  AdamWArgs args;
  args.lr = lr;
  args.beta1 = hyper_.beta1;
  args.beta2 = hyper_.beta2;
  args.eps = hyper_.eps;
  args.step = step;
  args.grad_clip = hyper_.grad_clip;
  args.rounding_seed = hyper_.rounding_seed;
  const int64_t begin = shard_.begin(), end = shard_.end();
  for (const ParamSpec& p : params_) {
    // The part of this tensor inside the shard.
    const int64_t lo = std::max(begin, p.offset);
    const int64_t hi = std::min(end, p.offset + p.numel);
    if (lo >= hi) continue;
    args.weight_decay = p.decayed ? hyper_.weight_decay : 0.0;
    args.index = lo;
    const int64_t n = hi - lo;
    const Tensor master =
        has_master() ? master_.Slice(lo - begin, n) : Tensor{};
    backend_->AdamW(params.Slice(lo, n), master, m_.Slice(lo - begin, n),
                    v_.Slice(lo - begin, n), shard_grads.Slice(lo - begin, n),
                    norm_squared, args);
  }
}

void AdamWOptimizer::InitMasterFromParams(Tensor params) {
  if (!has_master()) return;
  const int64_t n = shard_.end() - shard_.begin();
  if (n > 0)
    backend_->Cast(master_.Slice(0, n), params.Slice(shard_.begin(), n));
}

}  // namespace gpt2
