// CUDA AdamW: one fused elementwise pass over a parameter range. It reads the
// squared global norm from the device, so clipping needs no host sync, and
// takes every hyperparameter at run time (the lr changes each step without
// recompiling).
#include <cmath>

#include "src/cuda/common.cuh"
#include "src/ops/adamw.h"

namespace gpt2::cuda {
namespace {

template <typename T>
__global__ void AdamWKernel(T* param, float* master, float* m, float* v,
                            const T* grad, int64_t n, const float* norm_squared,
                            float lr, float beta1, float beta2, float eps,
                            float weight_decay, float correction1,
                            float correction2, float grad_clip) {
  const float norm = sqrtf(norm_squared[0]);
  if (!(norm < INFINITY))
    return;  // NaN or Inf: the step is skipped on the device
  const float scale = (grad_clip > 0.0f && norm > grad_clip)
                          ? grad_clip / (norm + 1e-6f)
                          : 1.0f;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = ToFloat(grad[i]) * scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float w = master != nullptr ? master[i] : ToFloat(param[i]);
    const float updated =
        w - lr * ((mi / correction1) / (sqrtf(vi / correction2) + eps) +
                  weight_decay * w);
    if (master != nullptr) master[i] = updated;
    param[i] = FromFloat<T>(updated);
  }
}

}  // namespace

void AdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
           Tensor norm_squared, const AdamWArgs& args, CUstream_st* stream) {
  const float correction1 =
      static_cast<float>(1.0 - std::pow(args.beta1, double(args.step)));
  const float correction2 =
      static_cast<float>(1.0 - std::pow(args.beta2, double(args.step)));
  DispatchFloat(param.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(
            AdamWKernel<F>, GridStrideBlocks(param.numel), 256, 0, stream,
            Ptr<F>(param),
            master.data == nullptr ? nullptr : Ptr<float>(master),
            Ptr<float>(m), Ptr<float>(v), Ptr<F>(grad), param.numel,
            Ptr<float>(norm_squared), static_cast<float>(args.lr),
            static_cast<float>(args.beta1), static_cast<float>(args.beta2),
            static_cast<float>(args.eps), static_cast<float>(args.weight_decay),
            correction1, correction2, static_cast<float>(args.grad_clip)),
        "AdamWKernel");
  });
}

}  // namespace gpt2::cuda
