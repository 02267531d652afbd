#include "src/optim/adamw_optimizer.h"

namespace gpt2 {

AdamWOptimizer::AdamWOptimizer(Backend* backend,
                               const std::vector<ParamSpec>& params,
                               DType dtype, const AdamWHyper& hyper)
    : backend_(backend), params_(params), hyper_(hyper) {
  const int64_t n = TotalParams(params_);
  m_ = backend_->Alloc(dtype, n);
  v_ = backend_->Alloc(dtype, n);
}

AdamWOptimizer::~AdamWOptimizer() {
  backend_->Free(m_);
  backend_->Free(v_);
}

void AdamWOptimizer::Step(Tensor params, Tensor grads, Tensor norm_squared,
                          double lr, int64_t step) {
  AdamWArgs args;
  args.lr = lr;
  args.beta1 = hyper_.beta1;
  args.beta2 = hyper_.beta2;
  args.eps = hyper_.eps;
  args.step = step;
  args.grad_clip = hyper_.grad_clip;
  for (const ParamSpec& p : params_) {
    args.weight_decay = p.decayed ? hyper_.weight_decay : 0.0;
    backend_->AdamW(params.Slice(p.offset, p.numel),
                    m_.Slice(p.offset, p.numel), v_.Slice(p.offset, p.numel),
                    grads.Slice(p.offset, p.numel), norm_squared, args);
  }
}

}  // namespace gpt2
