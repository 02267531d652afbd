// CUDA GELU (tanh approximation), elementwise, grid-stride.
#include "src/cuda/common.cuh"
#include "src/ops/gelu.cuh"
#include "src/ops/gelu.h"

namespace gpt2::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

template <typename T>
__global__ void GeluForwardKernel(T* out, const T* inp, int64_t n) {
  KernelPrologue();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = FromFloat<T>(GeluTanh(ToFloat(inp[i])));
  }
}

template <typename T>
__global__ void GeluBackwardKernel(T* dinp, const T* inp, const T* dout,
                                   int64_t n) {
  KernelPrologue();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float x = ToFloat(inp[i]);
    const float t = tanhf(kSqrt2OverPi * (x + kCubic * x * x * x));
    const float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) *
                                               kSqrt2OverPi *
                                               (1.0f + 3.0f * kCubic * x * x);
    dinp[i] = FromFloat<T>(ToFloat(dinp[i]) + grad * ToFloat(dout[i]));
  }
}

}  // namespace

void GeluForward(Tensor out, Tensor inp, CUstream_st* stream) {
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(GeluForwardKernel<F>, GridStrideBlocks(inp.numel), 256, 0,
                    stream, Ptr<F>(out), Ptr<F>(inp), inp.numel),
        "GeluForwardKernel");
  });
}

void GeluBackward(Tensor dinp, Tensor inp, Tensor dout, CUstream_st* stream) {
  DispatchFloat(dinp.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(GeluBackwardKernel<F>, GridStrideBlocks(inp.numel), 256, 0,
                    stream, Ptr<F>(dinp), Ptr<F>(inp), Ptr<F>(dout), inp.numel),
        "GeluBackwardKernel");
  });
}

}  // namespace gpt2::cuda
