// Kernels with deliberate synchronization and memory bugs. On a GPU they hang,
// corrupt memory or return garbage; the emulator must report each one (kernel,
// block, thread) and never hang. Built with nvcc (sm_90) and the emulator.
#include "src/cuda/launch.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

// Only the first half of the block reaches the barrier.
__global__ void DivergentBarrierKernel(int* out) {
  if (threadIdx.x < blockDim.x / 2) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

// One thread leaves before a barrier the others wait at.
__global__ void EarlyReturnKernel(int quitter, int* out) {
  if (static_cast<int>(threadIdx.x) == quitter) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void ShuffleWithExitedLaneKernel(int exited_lane, int* out) {
  const int lane = threadIdx.x % 32;
  if (lane == exited_lane) return;
  out[lane] = __shfl_xor_sync(0xffffffffu, lane, 1);
}

// Lanes 0-15 shuffle with the full mask while lanes 16-31 go to a barrier.
__global__ void ShuffleVsBarrierKernel(int* out) {
  const int lane = threadIdx.x % 32;
  if (lane < 16) {
    out[lane] = __shfl_sync(0xffffffffu, lane, 0);
  } else {
    __syncthreads();
    out[lane] = lane;
  }
}

__global__ void OverlappingShuffleMasksKernel(int* out) {
  const int lane = threadIdx.x % 32;
  if (lane < 16) {
    out[lane] = __shfl_sync(0xffffffffu, lane, 0);
  } else {
    out[lane] = __shfl_sync(0xffff0000u, lane, 16);
  }
}

// The last warp is partial, yet the shuffle names all 32 lanes.
__global__ void FullMaskInPartialWarpKernel(int* out) {
  out[threadIdx.x] =
      __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

// Every lane uses a 16-lane mask, including lanes 16-31 that are not in it.
__global__ void ShuffleNotInOwnMaskKernel(int* out) {
  const int lane = threadIdx.x % 32;
  out[lane] = __shfl_sync(0x0000ffffu, lane, 0);
}

__global__ void ShuffleBadWidthKernel(int width, int* out) {
  out[threadIdx.x] =
      __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0, width);
}

__global__ void MixedBarrierVariantsKernel(int* out) {
  if (threadIdx.x == 0) {
    out[0] = __syncthreads_count(1);
  } else {
    __syncthreads();
  }
}

__global__ void WriteOutOfBoundsKernel(float* buf, int index) {
  if (threadIdx.x == 0) buf[index] = 1.0f;
}

__global__ void ReadOutOfBoundsKernel(const float* buf, int index, float* out) {
  if (threadIdx.x == 0) out[0] = buf[index];
}

__global__ void DynamicSmemOverflowKernel(int* out) {
  GPT2_EXTERN_SHARED(int, s);
  s[threadIdx.x + 1] = 1;  // the last thread writes one past the end
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

// Thread 0 waits for a flag that thread 1 sets only after a barrier thread 0
// never reaches.
__global__ void SpinForeverKernel(int* flag) {
  if (threadIdx.x == 0) {
    while (atomicCAS(flag, 1, 1) != 1) {
    }
  } else {
    __syncthreads();
    atomicExch(flag, 1);
  }
}

}  // namespace

cudaError_t LaunchDivergentBarrier(int blocks, int threads, int* out) {
  return GPT2_LAUNCH(DivergentBarrierKernel, blocks, threads, 0, nullptr, out);
}

cudaError_t LaunchEarlyReturnBeforeBarrier(int threads, int quitter, int* out) {
  return GPT2_LAUNCH(EarlyReturnKernel, 1, threads, 0, nullptr, quitter, out);
}

cudaError_t LaunchShuffleWithExitedLane(int exited_lane, int* out) {
  return GPT2_LAUNCH(ShuffleWithExitedLaneKernel, 1, 32, 0, nullptr,
                     exited_lane, out);
}

cudaError_t LaunchShuffleVsBarrier(int* out) {
  return GPT2_LAUNCH(ShuffleVsBarrierKernel, 1, 32, 0, nullptr, out);
}

cudaError_t LaunchOverlappingShuffleMasks(int* out) {
  return GPT2_LAUNCH(OverlappingShuffleMasksKernel, 1, 32, 0, nullptr, out);
}

cudaError_t LaunchFullMaskInPartialWarp(int threads, int* out) {
  return GPT2_LAUNCH(FullMaskInPartialWarpKernel, 1, threads, 0, nullptr, out);
}

cudaError_t LaunchShuffleNotInOwnMask(int* out) {
  return GPT2_LAUNCH(ShuffleNotInOwnMaskKernel, 1, 32, 0, nullptr, out);
}

cudaError_t LaunchShuffleBadWidth(int width, int* out) {
  return GPT2_LAUNCH(ShuffleBadWidthKernel, 1, 32, 0, nullptr, width, out);
}

cudaError_t LaunchMixedBarrierVariants(int* out) {
  return GPT2_LAUNCH(MixedBarrierVariantsKernel, 1, 64, 0, nullptr, out);
}

cudaError_t LaunchWriteOutOfBounds(float* buf, int index) {
  return GPT2_LAUNCH(WriteOutOfBoundsKernel, 1, 32, 0, nullptr, buf, index);
}

cudaError_t LaunchReadOutOfBounds(const float* buf, int index, float* out) {
  return GPT2_LAUNCH(ReadOutOfBoundsKernel, 1, 32, 0, nullptr, buf, index, out);
}

cudaError_t LaunchDynamicSmemOverflow(int threads, int* out) {
  return GPT2_LAUNCH(DynamicSmemOverflowKernel, 1, threads,
                     threads * sizeof(int), nullptr, out);
}

cudaError_t LaunchSpinForever(int* flag) {
  return GPT2_LAUNCH(SpinForeverKernel, 1, 2, 0, nullptr, flag);
}

}  // namespace cuda_emu_test
