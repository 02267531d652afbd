// CUDA element type conversion, grid-stride (f32 <-> bf16, rounding to nearest
// even).
#include "src/cuda/common.cuh"
#include "src/ops/cast.h"

namespace gpt2::cuda {
namespace {

template <typename To, typename From>
__global__ void CastKernel(To* dst, const From* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = FromFloat<To>(ToFloat(src[i]));
  }
}

}  // namespace

void Cast(Tensor dst, Tensor src, CUstream_st* stream) {
  DispatchFloat(dst.dtype, [&](auto to) {
    using To = decltype(to);
    DispatchFloat(src.dtype, [&](auto from) {
      using From = decltype(from);
      CheckLaunch(
          GPT2_LAUNCH((CastKernel<To, From>), GridStrideBlocks(dst.numel), 256,
                      0, stream, Ptr<To>(dst), Ptr<From>(src), dst.numel),
          "CastKernel");
    });
  });
}

}  // namespace gpt2::cuda
