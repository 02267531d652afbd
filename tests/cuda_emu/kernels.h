// Host-side launchers of the emulator's sample kernels (sample_kernels.cu,
// buggy_kernels.cu). The .cu files build both with nvcc and against the
// emulator; the tests call only these functions and the CUDA runtime API.
#ifndef GPT2_TESTS_CUDA_EMU_KERNELS_H_
#define GPT2_TESTS_CUDA_EMU_KERNELS_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace cuda_emu_test {

// ---- Correct kernels (sample_kernels.cu) ----

// out[i] for the i-th thread of the grid (blocks in x-y-z order, threads in
// x-y-z order within a block) = {blockIdx, threadIdx, blockDim, gridDim}, each
// packed as x * 10000 + y * 100 + z.
cudaError_t LaunchIndex(dim3 grid, dim3 block, int4* out);
// Writes `value` to out[global linear thread index].
cudaError_t LaunchFill(dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       int* out, int value);
// Same kernel, launched through gpt2::cuda::Launch (no name for reports).
cudaError_t LaunchFillUnnamed(dim3 grid, dim3 block, int* out, int value);
// Template kernel: out[i] = i * kScale.
cudaError_t LaunchScaleTemplate(int blocks, int threads, int* out);
// out[i] = in[i-1] + in[i] + in[i+1] (cyclic within each block) through
// dynamic shared memory; without the barrier between the write and the reads
// the kernel is wrong.
cudaError_t LaunchNeighborSum(int blocks, int threads, bool use_barrier,
                              const int* in, int* out);
// Inclusive prefix sum of each block's slice (Hillis-Steele, static shared
// memory, two barriers per step).
cudaError_t LaunchBlockScan(int blocks, int threads, const int* in, int* out);
// out[block * 3 + {0,1,2}] = __syncthreads_{count,and,or} of (t % 3 == 0),
// (t < threads) and (t == threads - 1).
cudaError_t LaunchSyncReductions(int blocks, int threads, int* out);
// Each block stores a block-specific tag in static shared memory, syncs, and
// every thread writes back what it sees.
cudaError_t LaunchSharedTag(int blocks, int threads, int* out);
// Each thread first reads its dynamic shared word (before anyone wrote it),
// then the block fills it: out[i] = the value read.
cudaError_t LaunchReadFreshDynamicSmem(int blocks, int threads, int* out);
// Static and dynamic shared memory side by side; out[t] = st[63-t] +
// dyn[63-t] (= 63 - t + 1000 + 63 - t), out[64] = 1 if two dynamic names
// alias, out[65] = 1 if static and dynamic do not overlap. 64 threads.
cudaError_t LaunchStaticAndDynamic(int* out);
// Sums `words` ints of dynamic shared memory (needs the opt-in above 48 KiB).
cudaError_t LaunchBigDynamicSmem(int words, int* out);
// Asks for dynamic shared memory above the default limit of that kernel.
cudaError_t SetBigDynamicSmemLimit(int bytes);

struct AtomicCounters {
  int i_add;
  unsigned u_add;
  float f_add;
  double d_add;
  unsigned long long ull_add;
  int i_max;
  int i_min;
  unsigned u_max;
  unsigned inc;  // atomicInc with wrap-around at 9
  int exch_count;
  int sub;
  unsigned or_bits;
  float f_max;  // via an atomicCAS loop
};
cudaError_t LaunchAtomics(int blocks, int threads, AtomicCounters* c);
// Histogram of in[i] & 15 built with shared-memory atomics, then added to
// hist[16] with global atomics.
cudaError_t LaunchSharedHistogram(int blocks, int threads, const int* in, int n,
                                  unsigned* hist);
// Every thread increments *counter non-atomically inside a spin lock taken
// with atomicCAS and released with atomicExch.
cudaError_t LaunchSpinLockCounter(int blocks, int threads, int* lock,
                                  int* counter);
// out[block] = sum of the block's grid-stride share of in[0..n), reduced with
// warp shuffles and shared memory; works for any block size 1..1024.
cudaError_t LaunchBlockReduce(int blocks, int threads, const float* in, int n,
                              float* out);

enum WarpOp {
  kOpShfl,
  kOpShflUp,
  kOpShflDown,
  kOpShflXor,
  kOpBallot,
  kOpAny,
  kOpAll,
  kOpReduceAdd,
  kOpReduceMax,
  kOpMatchAny,
  kOpSyncWarp,
  kOpActiveMask,
};
// One warp (32 threads). Lane l, if in `mask`, applies `op` to in[l] with
// param[l] (source lane / delta / lane mask) and `width`; out[l] = result, or
// -777 for lanes outside the mask.
cudaError_t LaunchWarpOp(int op, unsigned mask, int width, const int* param,
                         const int* in, int* out);
// Lane l of one warp: __shfl_xor_sync(full, x, 1) of float, double, long long,
// bf16 values derived from l.
cudaError_t LaunchShuffleTypes(float* f, double* d, long long* ll,
                               __nv_bfloat16* b);
// Block (8,8): out[linear] = __shfl_sync(full, linear, 0): the linear index
// of its warp's lane 0.
cudaError_t LaunchWarpOf2dBlock(int* out);
// `threads` threads; those with t >= live return at once, the others call
// __activemask() and __syncwarp() on it: out[t] = the mask t saw, or -1.
cudaError_t LaunchActiveMask(int threads, int live, int* out);

// Copies 4 scales into a __constant__ array and resets a __device__ counter
// (cudaMemcpyToSymbol with the symbols themselves).
cudaError_t SetConstantScales(const float* scales4);
// x[i] *= scales[i % 4]; counts the threads in the __device__ counter.
cudaError_t LaunchScaleByConstant(int blocks, int threads, float* x);
cudaError_t ReadDeviceCounter(unsigned* count);

// out[i] for x = in[i] (one block of 256 threads, __launch_bounds__(256, 2),
// __restrict__/__ldg inputs): 8 results per element, see MathKernel.
constexpr int kMathResults = 8;
cudaError_t LaunchMath(const float* in, float* out, int n);
// Host twin of the __host__ __device__ helper MathKernel uses.
__host__ __device__ float GeluTanh(float x);
// 1 if the kernel saw GPT2_CUDA_EMULATED (the emulated build), else 0.
cudaError_t LaunchWhichBuild(int* out);

// `threads` threads; those with t >= live return at once. The others:
// out[t] = __ballot_sync(full mask, t is even), then __syncwarp() (full mask).
// Votes and __syncwarp may name exited lanes and lanes past the block's end.
cudaError_t LaunchVoteAfterExit(int threads, int live, int* out);

// One warpgroup's warpgroup products (async_kernels.cu): out[k * 128 + t]
// for thread t at the 5 points WgmmaAsyncKernel lists; 640 floats.
cudaError_t LaunchWgmmaAsync(float* out);
// 32 threads, two cp.async groups (async_kernels.cu): out[k * 32 + t] the
// first int of a shared chunk at the 4 points CpAsyncGroupsKernel lists; src:
// 64 chunks; 128 ints.
cudaError_t LaunchCpAsyncGroups(const int4* src, int* out);
// 32 threads; thread 0 bulk-copies src's 32 ints into shared memory
// (async_kernels.cu): out[t] int t read before the mbarrier wait, out[32 + t]
// after it; 64 ints.
cudaError_t LaunchBulkCopy(const int* src, int* out);

// ---- Buggy kernels (buggy_kernels.cu): each must be reported, not hang ----
cudaError_t LaunchDivergentBarrier(int blocks, int threads, int* out);
cudaError_t LaunchEarlyReturnBeforeBarrier(int threads, int quitter, int* out);
cudaError_t LaunchShuffleWithExitedLane(int exited_lane, int* out);
cudaError_t LaunchShuffleVsBarrier(int* out);
cudaError_t LaunchOverlappingShuffleMasks(int* out);
cudaError_t LaunchFullMaskInPartialWarp(int threads, int* out);
cudaError_t LaunchShuffleNotInOwnMask(int* out);
cudaError_t LaunchShuffleBadWidth(int width, int* out);
cudaError_t LaunchMixedBarrierVariants(int* out);
// Thread 0 writes buf[index].
cudaError_t LaunchWriteOutOfBounds(float* buf, int index);
// Thread 0 copies buf[index] to out[0].
cudaError_t LaunchReadOutOfBounds(const float* buf, int index, float* out);
cudaError_t LaunchDynamicSmemOverflow(int threads, int* out);
cudaError_t LaunchSpinForever(int* flag);
// 128 threads commit 17 warpgroup-product groups without waiting
// (async_kernels.cu): more than the emulated queue holds.
cudaError_t LaunchWgmmaTooManyGroups(int* out);
// 128 threads issue a warpgroup product and exit without waiting for it
// (async_kernels.cu).
cudaError_t LaunchWgmmaNeverWaited(int* out);
// 32 threads wait on an mbarrier that no bulk copy completes
// (async_kernels.cu).
cudaError_t LaunchBulkWaitForever(int* out);

// ---- cuda_emu::WarpGather (gather_kernels.cu; emulated build only) ----

// One warp; lanes of `mask` gather {l, l * l, -l} from every lane: out[32 * 3
// * l + 3 * k + f] = field f of what lane l received from lane k, -777 for
// lanes outside the mask (32 * 32 * 3 ints).
cudaError_t LaunchGather(unsigned mask, int* out);
// Each lane gives the first int of the buffer it receives into (100 + l):
// out[32 * l + k].
cudaError_t LaunchGatherInPlace(int* out);
// Misuses to be reported: a lane of the full mask exits first; lanes give
// different sizes (4 and 8 bytes); no bytes at all.
cudaError_t LaunchGatherWithExitedLane(int exited_lane, int* out);
cudaError_t LaunchGatherSizeMismatch(int* out);
cudaError_t LaunchGatherNoBytes(int* out);

}  // namespace cuda_emu_test

#endif  // GPT2_TESTS_CUDA_EMU_KERNELS_H_
