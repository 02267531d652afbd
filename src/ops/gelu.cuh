// GELU's tanh approximation on the device, shared by the GELU kernels and the
// matmul kernels that apply it on the way out.
#ifndef GPT2_OPS_GELU_CUH_
#define GPT2_OPS_GELU_CUH_

#include "src/cuda/common.cuh"

namespace gpt2::cuda {

__device__ __forceinline__ float GeluTanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  constexpr float kCubic = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kCubic * x * x * x)));
}

}  // namespace gpt2::cuda

#endif  // GPT2_OPS_GELU_CUH_
