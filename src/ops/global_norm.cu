// CUDA sum of squares for the global grad norm, deterministic: a fixed grid
// writes one partial per block (independent of the device), and one block sums
// them in order.
#include "src/cuda/common.cuh"
#include "src/cuda/scratch.h"
#include "src/ops/global_norm.h"

namespace gpt2::cuda {
namespace {

constexpr int kBlocks = 512;
constexpr int kThreads = 512;

template <typename T>
__global__ void SumSquaresPartials(float* partial, const T* x, int64_t n) {
  __shared__ float scratch[32];
  float sum = 0.0f;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = ToFloat(x[i]);
    sum += v * v;
  }
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void SumPartials(float* out, const float* partial, int count) {
  __shared__ float scratch[32];
  float sum = 0.0f;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) out[0] = sum;
}

}  // namespace

void SumSquares(Tensor out, Tensor x, Scratch* scratch, CUstream_st* stream) {
  auto* partial =
      static_cast<float*>(scratch->Get(sizeof(float) * kBlocks, stream));
  DispatchFloat(x.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(GPT2_LAUNCH(SumSquaresPartials<F>, kBlocks, kThreads, 0, stream,
                            partial, Ptr<F>(x), x.numel),
                "SumSquaresPartials");
  });
  CheckLaunch(GPT2_LAUNCH(SumPartials, 1, kThreads, 0, stream, Ptr<float>(out),
                          partial, kBlocks),
              "SumPartials");
}

}  // namespace gpt2::cuda
