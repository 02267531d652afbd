// CUDA residual add and in-place accumulate, elementwise, grid-stride.
#include "src/cuda/common.cuh"
#include "src/ops/residual.h"

namespace gpt2::cuda {
namespace {

template <typename T>
__global__ void ResidualForwardKernel(T* out, const T* a, const T* b,
                                      int64_t n) {
  KernelPrologue();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = FromFloat<T>(ToFloat(a[i]) + ToFloat(b[i]));
  }
}

template <typename T>
__global__ void AddInPlaceKernel(T* dst, const T* src, int64_t n) {
  KernelPrologue();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = FromFloat<T>(ToFloat(dst[i]) + ToFloat(src[i]));
  }
}

}  // namespace

void ResidualForward(Tensor out, Tensor a, Tensor b, CUstream_st* stream) {
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(ResidualForwardKernel<F>, GridStrideBlocks(out.numel), 256,
                    0, stream, Ptr<F>(out), Ptr<F>(a), Ptr<F>(b), out.numel),
        "ResidualForwardKernel");
  });
}

void AddInPlace(Tensor dst, Tensor src, CUstream_st* stream) {
  DispatchFloat(dst.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(AddInPlaceKernel<F>, GridStrideBlocks(dst.numel), 256, 0,
                    stream, Ptr<F>(dst), Ptr<F>(src), dst.numel),
        "AddInPlaceKernel");
  });
}

}  // namespace gpt2::cuda
