// CUDA element type conversion, grid-stride (f32 <-> bf16, rounding to nearest
// even).
#include <cstdint>

#include "src/cuda/common.cuh"
#include "src/ops/cast.h"

namespace gpt2::cuda {
namespace {

template <typename To, typename From>
__global__ void CastKernel(To* dst, const From* src, int64_t n) {
  KernelPrologue();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = FromFloat<To>(ToFloat(src[i]));
  }
}

// The same four elements a thread (4 * sizeof accesses; both pointers aligned
// for them, n a multiple of 4): the residual_fp32 stream's gradient is cast
// for every matmul that reads it, so this one is on the step's path.
template <typename To, typename From>
__global__ void CastFourKernel(To* dst, const From* src, int64_t n) {
  KernelPrologue();
  for (int64_t i = 4 * (blockIdx.x * int64_t{blockDim.x} + threadIdx.x); i < n;
       i += 4 * int64_t{gridDim.x} * blockDim.x) {
    const Pack4<From> in = *reinterpret_cast<const Pack4<From>*>(src + i);
    Pack4<To> out;
    for (int j = 0; j < 4; ++j) out.v[j] = FromFloat<To>(ToFloat(in.v[j]));
    *reinterpret_cast<Pack4<To>*>(dst + i) = out;
  }
}

}  // namespace

void Cast(Tensor dst, Tensor src, CUstream_st* stream) {
  DispatchFloat(dst.dtype, [&](auto to) {
    using To = decltype(to);
    DispatchFloat(src.dtype, [&](auto from) {
      using From = decltype(from);
      To* out = Ptr<To>(dst);
      const From* in = Ptr<From>(src);
      int64_t four = 0;  // elements done four at a time
      if (reinterpret_cast<uintptr_t>(out) % (4 * sizeof(To)) == 0 &&
          reinterpret_cast<uintptr_t>(in) % (4 * sizeof(From)) == 0) {
        four = dst.numel / 4 * 4;
      }
      if (four > 0) {
        CheckLaunch(
            GPT2_LAUNCH((CastFourKernel<To, From>), GridStrideBlocks(four / 4),
                        256, 0, stream, out, in, four),
            "CastFourKernel");
      }
      if (four < dst.numel) {
        CheckLaunch(
            GPT2_LAUNCH((CastKernel<To, From>),
                        GridStrideBlocks(dst.numel - four), 256, 0, stream,
                        out + four, in + four, dst.numel - four),
            "CastKernel");
      }
    });
  });
}

}  // namespace gpt2::cuda
