// Kernels of cuda_emu::WarpGather, the emulator's own warp collective (no
// CUDA counterpart: under nvcc this file compiles to nothing). Correct uses
// and the misuses the emulator must report.
#if defined(GPT2_CUDA_EMULATED)
#include "src/cuda/launch.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

struct Triple {
  int lane, square, negated;
};

// Lanes of `mask` gather {l, l * l, -l} from every lane; out[32 * 3 * l + 3 *
// k + f] = field f of what lane l received from lane k (-777 where lane l is
// outside the mask and so never called).
__global__ void GatherKernel(unsigned mask, int* out) {
  const int lane = threadIdx.x % 32;
  int* mine_out = out + 32 * 3 * lane;
  if (!((mask >> lane) & 1u)) {
    for (int i = 0; i < 32 * 3; ++i) mine_out[i] = -777;
    return;
  }
  const Triple mine{lane, lane * lane, -lane};
  Triple all[32];
  cuda_emu::WarpGather(mask, &mine, all, sizeof(Triple));
  for (int k = 0; k < 32; ++k) {
    mine_out[3 * k] = all[k].lane;
    mine_out[3 * k + 1] = all[k].square;
    mine_out[3 * k + 2] = all[k].negated;
  }
}

// Each lane's bytes at the start of the buffer it receives into (where lane
// 0's go).
__global__ void GatherInPlaceKernel(int* out) {
  const int lane = threadIdx.x % 32;
  int all[32];
  all[0] = 100 + lane;
  cuda_emu::WarpGather(0xffffffffu, &all[0], all, sizeof(int));
  for (int k = 0; k < 32; ++k) out[32 * lane + k] = all[k];
}

__global__ void GatherWithExitedLaneKernel(int exited_lane, int* out) {
  const int lane = threadIdx.x % 32;
  if (lane == exited_lane) return;
  int all[32];
  cuda_emu::WarpGather(0xffffffffu, &lane, all, sizeof(int));
  out[lane] = all[0];
}

// Lanes 0-15 give 4 bytes, lanes 16-31 8.
__global__ void GatherSizeMismatchKernel(int* out) {
  const int lane = threadIdx.x % 32;
  const long long mine = lane;
  long long all[32];
  cuda_emu::WarpGather(0xffffffffu, &mine, all, lane < 16 ? 4 : 8);
  out[lane] = static_cast<int>(all[0]);
}

__global__ void GatherNoBytesKernel(int* out) {
  const int lane = threadIdx.x % 32;
  int all[32];
  cuda_emu::WarpGather(0xffffffffu, &lane, all, 0);
  out[lane] = all[0];
}

}  // namespace

cudaError_t LaunchGather(unsigned mask, int* out) {
  return GPT2_LAUNCH(GatherKernel, 1, 32, 0, nullptr, mask, out);
}
cudaError_t LaunchGatherInPlace(int* out) {
  return GPT2_LAUNCH(GatherInPlaceKernel, 1, 32, 0, nullptr, out);
}
cudaError_t LaunchGatherWithExitedLane(int exited_lane, int* out) {
  return GPT2_LAUNCH(GatherWithExitedLaneKernel, 1, 32, 0, nullptr, exited_lane,
                     out);
}
cudaError_t LaunchGatherSizeMismatch(int* out) {
  return GPT2_LAUNCH(GatherSizeMismatchKernel, 1, 32, 0, nullptr, out);
}
cudaError_t LaunchGatherNoBytes(int* out) {
  return GPT2_LAUNCH(GatherNoBytesKernel, 1, 32, 0, nullptr, out);
}

}  // namespace cuda_emu_test
#endif  // GPT2_CUDA_EMULATED
