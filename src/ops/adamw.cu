// CUDA AdamW: one fused elementwise pass over a parameter range. It reads the
// squared global norm from the device, so clipping needs no host sync, and
// takes every hyperparameter at run time (the lr changes each step without
// recompiling).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "src/cuda/common.cuh"
#include "src/ops/adamw.h"

namespace gpt2::cuda {
namespace {

// x rounded to bf16 up or down with probability by distance (unbiased), from
// 16 random bits: r added below the kept bits, then truncated. Non-finite
// values round to nearest.
__device__ __forceinline__ bf16 StochasticBf16(float x, uint32_t r) {
  if (!(fabsf(x) < INFINITY)) return __float2bfloat16(x);  // NaN, Inf
  const uint32_t bits = __float_as_uint(x) + (r & 0xFFFFu);
  return __ushort_as_bfloat16(static_cast<unsigned short>(bits >> 16));
}

__device__ __forceinline__ uint32_t RoundingBits(uint64_t seed, int64_t step,
                                                 int64_t index) {
  uint64_t z = seed ^ (static_cast<uint64_t>(step) * 0x9E3779B97F4A7C15ull) ^
               (static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>(z ^ (z >> 31));
}

template <typename T>
__device__ __forceinline__ T RoundParam(float x, uint64_t seed, int64_t step,
                                        int64_t index) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (seed != 0) return StochasticBf16(x, RoundingBits(seed, step, index));
  }
  return FromFloat<T>(x);
}

template <typename T>
__global__ void AdamWKernel(T* param, float* master, float* m, float* v,
                            const T* grad, int64_t n, const float* norm_squared,
                            float lr, float beta1, float beta2, float eps,
                            float weight_decay, float correction1,
                            float correction2, float grad_clip,
                            uint64_t rounding_seed, int64_t step,
                            int64_t index) {
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
    param[i] = RoundParam<T>(updated, master != nullptr ? rounding_seed : 0,
                             step, index + i);
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
            correction1, correction2, static_cast<float>(args.grad_clip),
            args.rounding_seed, args.step, args.index),
        "AdamWKernel");
  });
}

}  // namespace gpt2::cuda
