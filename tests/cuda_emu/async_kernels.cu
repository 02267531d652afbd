// Kernels for the emulated asynchrony of Hopper's warpgroup products
// (src/cuda/wgmma.cuh): products queued at the call and run at the
// wgmma.wait_group that retires their group; and of cp.async copies
// (src/cuda/async_copy.cuh), deferred to their wait when asked. Built with
// nvcc (sm_90, where the products would trap: these kernels are for the
// emulator) and against the emulator.
#include <cstdint>

#include "src/cuda/async_copy.cuh"
#include "src/cuda/launch.h"
#include "src/cuda/mma.cuh"
#include "src/cuda/wgmma.cuh"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

using gpt2::cuda::AlignTiles;
using gpt2::cuda::kTileElems;
using gpt2::cuda::PackBf16;
using gpt2::cuda::TileKMajor;
using gpt2::cuda::Wgmma64x64;
using gpt2::cuda::WgmmaCommit;
using gpt2::cuda::WgmmaFence;
using gpt2::cuda::WgmmaWait;

__device__ void FillTile(__nv_bfloat16* tile, float v) {
  for (int i = threadIdx.x; i < kTileElems; i += blockDim.x)
    tile[i] = __float2bfloat16(v);
}

__device__ void SetAll(float (&d)[8][4], float v) {
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 4; ++i) d[j][i] = v;
}

// One warpgroup; x = ones, y = twos, one k-step of 16 (each product element
// is 16 x (x value) x (y value)). out[k * 128 + t] for thread t, k:
//   0: a (x y^T, group 1) read before any wait          (-1: not yet run)
//   1: a after wait_group 1, y overwritten with 3 first  (48)
//   2: b (x y^T, group 2) at that point                  (-1)
//   3: b after wait_group 0, y overwritten with 4 first  (64)
//   4: c (register A of ones, changed to twos while in flight, times y = 4)
//      after its wait                                     (128)
__global__ void WgmmaAsyncKernel(float* out) {
  GPT2_EXTERN_SHARED(uint4, smem);
  __nv_bfloat16* x = AlignTiles(reinterpret_cast<__nv_bfloat16*>(smem));
  __nv_bfloat16* y = x + kTileElems;
  const int t = threadIdx.x;
  FillTile(x, 1.0f);
  FillTile(y, 2.0f);
  __syncthreads();
  float a[8][4], b[8][4], c[8][4];
  SetAll(a, -1.0f);
  SetAll(b, -1.0f);
  SetAll(c, -1.0f);
  WgmmaFence();
  Wgmma64x64<false>(a, TileKMajor(x, 0), TileKMajor(y, 0), false);
  WgmmaCommit();
  Wgmma64x64<false>(b, TileKMajor(x, 0), TileKMajor(y, 0), false);
  WgmmaCommit();
  out[t] = a[0][0];
  __syncthreads();
  FillTile(y, 3.0f);
  __syncthreads();
  WgmmaWait<1>();
  out[128 + t] = a[0][0];
  out[256 + t] = b[0][0];
  __syncthreads();
  FillTile(y, 4.0f);
  __syncthreads();
  WgmmaWait<0>();
  out[384 + t] = b[7][3];
  uint32_t ra[4];
  for (uint32_t& r : ra) r = PackBf16(1.0f, 1.0f);
  WgmmaFence();
  Wgmma64x64<false>(c, ra, TileKMajor(y, 0), false);
  WgmmaCommit();
  for (uint32_t& r : ra) r = PackBf16(2.0f, 2.0f);
  WgmmaWait<0>();
  out[512 + t] = c[3][1];
}

// One warpgroup product issued and committed, never waited for.
__global__ void WgmmaNeverWaitedKernel(int* out) {
  GPT2_EXTERN_SHARED(uint4, smem);
  __nv_bfloat16* x = AlignTiles(reinterpret_cast<__nv_bfloat16*>(smem));
  FillTile(x, 1.0f);
  __syncthreads();
  float d[8][4];
  WgmmaFence();
  Wgmma64x64<false>(d, TileKMajor(x, 0), TileKMajor(x, 0), false);
  WgmmaCommit();
  out[threadIdx.x] = 1;
}

// Commits 17 groups and never waits: more than the emulator's queue holds.
__global__ void WgmmaTooManyGroupsKernel(int* out) {
  for (int g = 0; g < 17; ++g) WgmmaCommit();
  out[threadIdx.x] = 1;
}

// 32 threads; shared chunks start as -1. Thread t copies src chunk t (group
// 1) and chunk 32 + t (group 2) and records the first int of a chunk:
// out[t] chunk t before any wait, out[32 + t] chunk t after wait_group 1,
// out[64 + t] chunk 32 + t then, out[96 + t] chunk 32 + t after wait_group 0.
__global__ void CpAsyncGroupsKernel(const int4* src, int* out) {
  __shared__ int4 chunks[64];
  const int t = threadIdx.x;
  chunks[t] = chunks[32 + t] = make_int4(-1, -1, -1, -1);
  __syncthreads();
  gpt2::cuda::CpAsync16(&chunks[t], &src[t], true);
  gpt2::cuda::CpAsyncCommit();
  gpt2::cuda::CpAsync16(&chunks[32 + t], &src[32 + t], true);
  gpt2::cuda::CpAsyncCommit();
  out[t] = chunks[t].x;
  gpt2::cuda::CpAsyncWait<1>();
  out[32 + t] = chunks[t].x;
  out[64 + t] = chunks[32 + t].x;
  gpt2::cuda::CpAsyncWait<0>();
  out[96 + t] = chunks[32 + t].x;
}

// 32 threads: thread 0 stages src's 32 ints in shared memory by one bulk copy
// that completes an mbarrier; out[t] = int t before the wait, out[32 + t]
// after it.
__global__ void BulkCopyKernel(const int* src, int* out) {
  __shared__ __align__(16) int staged[32];
  __shared__ uint64_t bar;
  const int t = threadIdx.x;
  staged[t] = -1;
  if (t == 0) gpt2::cuda::BarrierInit(&bar);
  __syncthreads();
  if (t == 0) gpt2::cuda::BulkLoad(staged, src, sizeof(staged), &bar);
  out[t] = staged[t];
  gpt2::cuda::BarrierWait(&bar, 0);
  out[32 + t] = staged[t];
}

// Every thread waits on an mbarrier that no copy completes.
__global__ void BulkWaitForeverKernel(int* out) {
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) gpt2::cuda::BarrierInit(&bar);
  __syncthreads();
  gpt2::cuda::BarrierWait(&bar, 0);
  out[threadIdx.x] = 1;
}

}  // namespace

cudaError_t LaunchBulkCopy(const int* src, int* out) {
  return GPT2_LAUNCH(BulkCopyKernel, 1, 32, 0, nullptr, src, out);
}

cudaError_t LaunchBulkWaitForever(int* out) {
  return GPT2_LAUNCH(BulkWaitForeverKernel, 1, 32, 0, nullptr, out);
}

cudaError_t LaunchCpAsyncGroups(const int4* src, int* out) {
  return GPT2_LAUNCH(CpAsyncGroupsKernel, 1, 32, 0, nullptr, src, out);
}

cudaError_t LaunchWgmmaAsync(float* out) {
  constexpr int kShared = 2 * kTileElems * 2 + gpt2::cuda::kTileAlign;
  return GPT2_LAUNCH(WgmmaAsyncKernel, 1, 128, kShared, nullptr, out);
}

cudaError_t LaunchWgmmaNeverWaited(int* out) {
  constexpr int kShared = kTileElems * 2 + gpt2::cuda::kTileAlign;
  return GPT2_LAUNCH(WgmmaNeverWaitedKernel, 1, 128, kShared, nullptr, out);
}

cudaError_t LaunchWgmmaTooManyGroups(int* out) {
  return GPT2_LAUNCH(WgmmaTooManyGroupsKernel, 1, 128, 0, nullptr, out);
}

}  // namespace cuda_emu_test
