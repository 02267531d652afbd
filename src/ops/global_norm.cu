// CUDA sum of squares for the global grad norm, deterministic: a grid fixed by
// the tensor's size (independent of the device) writes one partial per block,
// and one block sums them in order.
#include <algorithm>

#include "src/cuda/common.cuh"
#include "src/cuda/scratch.h"
#include "src/ops/global_norm.h"

namespace gpt2::cuda {
namespace {

constexpr int kBlocks = 512;  // at most
constexpr int kThreads = 512;
// Fewer blocks where a tensor has under this many 16-byte packs a thread:
// GPT-2 124M's gradients (15.5M packs in bf16) take all 512, a small model's
// no more blocks than give each thread 8 packs (a grid of 262,144 threads
// over a few million elements is mostly idle threads, which under the CPU
// emulator each cost a fiber and barriers).
constexpr int64_t kMinPacksPerThread = 8;

int SumSquaresBlocks(int64_t n, int pack) {
  const int64_t per_block = int64_t{kThreads} * kMinPacksPerThread;
  return static_cast<int>(
      std::clamp<int64_t>(CeilDiv(CeilDiv(n, pack), per_block), 1, kBlocks));
}

// Where x is 16-byte aligned, each thread reads 16-byte packs, four in
// flight (the grid is fixed for a tensor's size, so the order of the adds is
// too), then the elements after the last whole pack one by one.
template <typename T>
__global__ void SumSquaresPartials(float* partial, const T* x, int64_t n) {
  KernelPrologue();
  constexpr int kN = Pack16<T>::kN;
  __shared__ float scratch[32];
  float sum = 0.0f;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  int64_t done = 0;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    const int64_t packs = n / kN;
#pragma unroll 4
    for (int64_t p = first; p < packs; p += stride) {
      const Pack16<T> pack = LoadPack16(x + p * kN);
      for (int j = 0; j < kN; ++j) {
        const float v = ToFloat(pack.v[j]);
        sum += v * v;
      }
    }
    done = packs * kN;
  }
  for (int64_t i = done + first; i < n; i += stride) {
    const float v = ToFloat(x[i]);
    sum += v * v;
  }
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void SumPartials(float* out, const float* partial, int count) {
  KernelPrologue();
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
  int blocks = 0;
  DispatchFloat(x.dtype, [&](auto zero) {
    using F = decltype(zero);
    blocks = SumSquaresBlocks(x.numel, Pack16<F>::kN);
    CheckLaunch(GPT2_LAUNCH(SumSquaresPartials<F>, blocks, kThreads, 0, stream,
                            partial, Ptr<F>(x), x.numel),
                "SumSquaresPartials");
  });
  CheckLaunch(GPT2_LAUNCH(SumPartials, 1, kThreads, 0, stream, Ptr<float>(out),
                          partial, blocks),
              "SumPartials");
}

}  // namespace gpt2::cuda
