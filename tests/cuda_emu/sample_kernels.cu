// Correct sample kernels exercising the CUDA execution model: indexing,
// barriers, static and dynamic shared memory, atomics, warp collectives and a
// block reduction. Built with nvcc (sm_90) and against the emulator.
#include "src/cuda/launch.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

__device__ int Pack(unsigned x, unsigned y, unsigned z) {
  return static_cast<int>(x * 10000 + y * 100 + z);
}

__device__ int LinearThread() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

__device__ int LinearGlobal() {
  const int block =
      blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  return block * (blockDim.x * blockDim.y * blockDim.z) + LinearThread();
}

__global__ void IndexKernel(int4* out) {
  out[LinearGlobal()] = make_int4(Pack(blockIdx.x, blockIdx.y, blockIdx.z),
                                  Pack(threadIdx.x, threadIdx.y, threadIdx.z),
                                  Pack(blockDim.x, blockDim.y, blockDim.z),
                                  Pack(gridDim.x, gridDim.y, gridDim.z));
}

__global__ void FillKernel(int* out, int value) { out[LinearGlobal()] = value; }

template <int kScale>
__global__ void ScaleKernel(int* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = i * kScale;
}

__global__ void NeighborSumKernel(bool use_barrier, const int* in, int* out) {
  GPT2_EXTERN_SHARED(int, s);
  const int t = threadIdx.x, n = blockDim.x;
  const int base = blockIdx.x * n;
  s[t] = in[base + t];
  if (use_barrier) __syncthreads();
  out[base + t] = s[(t + n - 1) % n] + s[t] + s[(t + 1) % n];
}

__global__ void __launch_bounds__(1024)
    BlockScanKernel(const int* in, int* out) {
  __shared__ int s[1024];
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  s[t] = in[base + t];
  __syncthreads();
  for (int offset = 1; offset < static_cast<int>(blockDim.x); offset *= 2) {
    const int add = t >= offset ? s[t - offset] : 0;
    __syncthreads();
    s[t] += add;
    __syncthreads();
  }
  out[base + t] = s[t];
}

__global__ void SyncReductionsKernel(int* out) {
  const int t = threadIdx.x, n = blockDim.x;
  const int count = __syncthreads_count(t % 3 == 0);
  const int all = __syncthreads_and(t < n);
  const int any = __syncthreads_or(t == n - 1);
  const int none = __syncthreads_or(0);
  if (t == 0) {
    out[blockIdx.x * 4 + 0] = count;
    out[blockIdx.x * 4 + 1] = all != 0;
    out[blockIdx.x * 4 + 2] = any != 0;
    out[blockIdx.x * 4 + 3] = none != 0;
  }
}

__global__ void SharedTagKernel(int* out) {
  __shared__ int tag;
  if (threadIdx.x == 0) tag = 1000 + 7 * blockIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = tag;
  __syncthreads();  // nobody may see the next writer's tag: there is none
}

__global__ void ReadFreshDynamicSmemKernel(int* out) {
  GPT2_EXTERN_SHARED(int, s);
  const int t = threadIdx.x;
  const int before = s[t];  // never written in this block
  __syncthreads();
  s[t] = 12345 + blockIdx.x;
  out[blockIdx.x * blockDim.x + t] = before;
}

__global__ void StaticAndDynamicKernel(int* out) {
  __shared__ int st[64];
  GPT2_EXTERN_SHARED(int, dyn);
  GPT2_EXTERN_SHARED(float, dyn_as_float);
  const int t = threadIdx.x;
  st[t] = t;
  dyn[t] = 1000 + t;
  __syncthreads();
  out[t] = st[63 - t] + dyn[63 - t];
  if (t == 0) {
    out[64] = static_cast<void*>(dyn) == static_cast<void*>(dyn_as_float);
    const char* a = reinterpret_cast<const char*>(st);
    const char* b = reinterpret_cast<const char*>(dyn);
    out[65] = (a + sizeof(st) <= b || b + 64 * sizeof(int) <= a) ? 1 : 0;
  }
}

__global__ void BigDynamicSmemKernel(int words, int* out) {
  GPT2_EXTERN_SHARED(int, s);
  for (int i = threadIdx.x; i < words; i += blockDim.x) s[i] = i % 7;
  __syncthreads();
  if (threadIdx.x == 0) {
    int sum = 0;
    for (int i = 0; i < words; ++i) sum += s[i];
    *out = sum;
  }
}

__global__ void AtomicsKernel(AtomicCounters* c) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&c->i_add, 2);
  atomicAdd(&c->u_add, 3u);
  atomicAdd(&c->f_add, 0.5f);
  atomicAdd(&c->d_add, 0.25);
  atomicAdd(&c->ull_add, 1ull << 33);
  atomicMax(&c->i_max, g);
  atomicMin(&c->i_min, -g);
  atomicMax(&c->u_max, static_cast<unsigned>(g) * 2u);
  atomicInc(&c->inc, 9u);
  if (atomicExch(&c->exch_count, g) >= 0) atomicSub(&c->sub, 1);
  atomicOr(&c->or_bits, 1u << (g % 32));
  // Float max through a compare-and-swap loop.
  const float mine = static_cast<float>(g % 1000) * 0.5f;
  int* as_int = reinterpret_cast<int*>(&c->f_max);
  int old = *as_int, assumed;
  do {
    assumed = old;
    if (__int_as_float(assumed) >= mine) break;
    old = atomicCAS(as_int, assumed, __float_as_int(mine));
  } while (old != assumed);
}

__global__ void SharedHistogramKernel(const int* in, int n, unsigned* hist) {
  __shared__ unsigned h[16];
  if (threadIdx.x < 16) h[threadIdx.x] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += blockDim.x * gridDim.x) {
    atomicAdd(&h[in[i] & 15], 1u);
  }
  __syncthreads();
  if (threadIdx.x < 16) atomicAdd(&hist[threadIdx.x], h[threadIdx.x]);
}

__global__ void SpinLockCounterKernel(int* lock, int* counter) {
  while (atomicCAS(lock, 0, 1) != 0) {
  }
  __threadfence();
  *counter = *counter + 1;  // protected by the lock
  __threadfence();
  atomicExch(lock, 0);
}

// Sums v over the `lanes` lanes of `mask` (the present lanes of a warp, lanes
// 0..lanes-1); lane 0 gets the total. Every lane of the mask takes part in
// each shuffle; contributions from lanes past the end are ignored.
__device__ float WarpSum(float v, unsigned mask, int lanes, int lane) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_down_sync(mask, v, offset);
    if (lane + offset < lanes) v += other;
  }
  return v;
}

__global__ void BlockReduceKernel(const float* in, int n, float* out) {
  __shared__ float warp_sums[32];
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  const int threads = blockDim.x;
  const int warps = (threads + 31) / 32;
  const int lanes = min(32, threads - warp * 32);
  const unsigned mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  float v = 0.0f;
  for (int i = blockIdx.x * threads + t; i < n; i += threads * gridDim.x) {
    v += in[i];
  }
  v = WarpSum(v, mask, lanes, lane);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? warp_sums[lane] : 0.0f;
    s = WarpSum(s, mask, lanes, lane);
    if (lane == 0) out[blockIdx.x] = s;
  }
}

__global__ void WarpOpKernel(int op, unsigned mask, int width, const int* param,
                             const int* in, int* out) {
  const int lane = threadIdx.x % 32;
  int r = -777;
  if ((mask >> lane) & 1u) {
    const int v = in[lane], p = param[lane];
    switch (op) {
      case kOpShfl:
        r = __shfl_sync(mask, v, p, width);
        break;
      case kOpShflUp:
        r = __shfl_up_sync(mask, v, static_cast<unsigned>(p), width);
        break;
      case kOpShflDown:
        r = __shfl_down_sync(mask, v, static_cast<unsigned>(p), width);
        break;
      case kOpShflXor:
        r = __shfl_xor_sync(mask, v, p, width);
        break;
      case kOpBallot:
        r = static_cast<int>(__ballot_sync(mask, v));
        break;
      case kOpAny:
        r = __any_sync(mask, v);
        break;
      case kOpAll:
        r = __all_sync(mask, v);
        break;
      case kOpReduceAdd:
        r = __reduce_add_sync(mask, v);
        break;
      case kOpReduceMax:
        r = __reduce_max_sync(mask, v);
        break;
      case kOpMatchAny:
        r = static_cast<int>(__match_any_sync(mask, v));
        break;
      case kOpSyncWarp:
        __syncwarp(mask);
        r = v;
        break;
      default:
        break;
    }
  }
  out[lane] = r;
}

__global__ void ShuffleTypesKernel(float* f, double* d, long long* ll,
                                   __nv_bfloat16* b) {
  const int l = threadIdx.x;
  f[l] = __shfl_xor_sync(0xffffffffu, 1.5f * l, 1);
  d[l] = __shfl_xor_sync(0xffffffffu, 0.25 * l + 1e-12, 1);
  ll[l] = __shfl_xor_sync(0xffffffffu, (1ll << 40) + l, 1);
  b[l] = __shfl_xor_sync(0xffffffffu, __float2bfloat16(2.0f * l), 1);
}

__global__ void WarpOf2dBlockKernel(int* out) {
  const int linear = LinearThread();
  out[linear] = __shfl_sync(0xffffffffu, linear, 0);
}

__global__ void ActiveMaskKernel(int live, int* out) {
  const int t = threadIdx.x;
  if (t >= live) {
    out[t] = -1;
    return;
  }
  const unsigned active = __activemask();
  __syncwarp(active);
  out[t] = static_cast<int>(active);
}

__constant__ float kScales[4];
__device__ unsigned g_counter;

__global__ void ScaleByConstantKernel(float* x) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  x[i] *= kScales[i % 4];
  atomicAdd(&g_counter, 1u);
}

}  // namespace

__host__ __device__ float GeluTanh(float x) {
  const float k = 0.7978845608f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

namespace {

__global__ void __launch_bounds__(256, 2)
    MathKernel(const float* __restrict__ in, float* __restrict__ out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = __ldg(in + i);
  float* o = out + i * kMathResults;
  o[0] = __expf(x);
  o[1] = __logf(fabsf(x) + 1.0f);
  o[2] = rsqrtf(fabsf(x) + 0.5f);
  o[3] = __fdividef(x, 3.0f);
  o[4] = fmaxf(x, 0.25f) + fminf(x, -0.25f);
  o[5] = __bfloat162float(__float2bfloat16(x));
  o[6] = GeluTanh(x);
  o[7] = static_cast<float>(max(static_cast<int>(x * 10.0f), -3) +
                            static_cast<int>(min(2u, 7u)));
}

__global__ void VoteAfterExitKernel(int live, int* out) {
  const int t = threadIdx.x;
  if (t >= live) return;
  out[t] = static_cast<int>(__ballot_sync(0xffffffffu, t % 2 == 0));
  __syncwarp();
}

__global__ void WhichBuildKernel(int* out) {
#if defined(GPT2_CUDA_EMULATED)
  *out = 1;
#else
  *out = 0;
#endif
}

}  // namespace

cudaError_t SetConstantScales(const float* scales4) {
  const unsigned zero = 0;
  cudaError_t e = cudaMemcpyToSymbol(kScales, scales4, 4 * sizeof(float));
  if (e != cudaSuccess) return e;
  return cudaMemcpyToSymbol(g_counter, &zero, sizeof(zero));
}

cudaError_t LaunchScaleByConstant(int blocks, int threads, float* x) {
  return GPT2_LAUNCH(ScaleByConstantKernel, blocks, threads, 0, nullptr, x);
}

cudaError_t ReadDeviceCounter(unsigned* count) {
  return cudaMemcpyFromSymbol(count, g_counter, sizeof(unsigned));
}

cudaError_t LaunchMath(const float* in, float* out, int n) {
  return GPT2_LAUNCH(MathKernel, (n + 255) / 256, 256, 0, nullptr, in, out, n);
}

cudaError_t LaunchVoteAfterExit(int threads, int live, int* out) {
  return GPT2_LAUNCH(VoteAfterExitKernel, 1, threads, 0, nullptr, live, out);
}

cudaError_t LaunchWhichBuild(int* out) {
  return GPT2_LAUNCH(WhichBuildKernel, 1, 1, 0, nullptr, out);
}

cudaError_t LaunchIndex(dim3 grid, dim3 block, int4* out) {
  return GPT2_LAUNCH(IndexKernel, grid, block, 0, 0, out);
}

cudaError_t LaunchFill(dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       int* out, int value) {
  return GPT2_LAUNCH(FillKernel, grid, block, smem, stream, out, value);
}

cudaError_t LaunchFillUnnamed(dim3 grid, dim3 block, int* out, int value) {
  return gpt2::cuda::Launch(FillKernel, grid, block, 0, nullptr, out, value);
}

cudaError_t LaunchScaleTemplate(int blocks, int threads, int* out) {
  return GPT2_LAUNCH((ScaleKernel<3>), blocks, threads, 0, nullptr, out);
}

cudaError_t LaunchNeighborSum(int blocks, int threads, bool use_barrier,
                              const int* in, int* out) {
  return GPT2_LAUNCH(NeighborSumKernel, blocks, threads, threads * sizeof(int),
                     nullptr, use_barrier, in, out);
}

cudaError_t LaunchBlockScan(int blocks, int threads, const int* in, int* out) {
  return GPT2_LAUNCH(BlockScanKernel, blocks, threads, 0, nullptr, in, out);
}

cudaError_t LaunchSyncReductions(int blocks, int threads, int* out) {
  return GPT2_LAUNCH(SyncReductionsKernel, blocks, threads, 0, nullptr, out);
}

cudaError_t LaunchSharedTag(int blocks, int threads, int* out) {
  return GPT2_LAUNCH(SharedTagKernel, blocks, threads, 0, nullptr, out);
}

cudaError_t LaunchReadFreshDynamicSmem(int blocks, int threads, int* out) {
  return GPT2_LAUNCH(ReadFreshDynamicSmemKernel, blocks, threads,
                     threads * sizeof(int), nullptr, out);
}

cudaError_t LaunchStaticAndDynamic(int* out) {
  return GPT2_LAUNCH(StaticAndDynamicKernel, 1, 64, 64 * sizeof(int), nullptr,
                     out);
}

cudaError_t LaunchBigDynamicSmem(int words, int* out) {
  return GPT2_LAUNCH(BigDynamicSmemKernel, 1, 256, words * sizeof(int), nullptr,
                     words, out);
}

cudaError_t SetBigDynamicSmemLimit(int bytes) {
  return cudaFuncSetAttribute(
      BigDynamicSmemKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

cudaError_t LaunchAtomics(int blocks, int threads, AtomicCounters* c) {
  return GPT2_LAUNCH(AtomicsKernel, blocks, threads, 0, nullptr, c);
}

cudaError_t LaunchSharedHistogram(int blocks, int threads, const int* in, int n,
                                  unsigned* hist) {
  return GPT2_LAUNCH(SharedHistogramKernel, blocks, threads, 0, nullptr, in, n,
                     hist);
}

cudaError_t LaunchSpinLockCounter(int blocks, int threads, int* lock,
                                  int* counter) {
  return GPT2_LAUNCH(SpinLockCounterKernel, blocks, threads, 0, nullptr, lock,
                     counter);
}

cudaError_t LaunchBlockReduce(int blocks, int threads, const float* in, int n,
                              float* out) {
  return GPT2_LAUNCH(BlockReduceKernel, blocks, threads, 0, nullptr, in, n,
                     out);
}

cudaError_t LaunchWarpOp(int op, unsigned mask, int width, const int* param,
                         const int* in, int* out) {
  return GPT2_LAUNCH(WarpOpKernel, 1, 32, 0, nullptr, op, mask, width, param,
                     in, out);
}

cudaError_t LaunchShuffleTypes(float* f, double* d, long long* ll,
                               __nv_bfloat16* b) {
  return GPT2_LAUNCH(ShuffleTypesKernel, 1, 32, 0, nullptr, f, d, ll, b);
}

cudaError_t LaunchWarpOf2dBlock(int* out) {
  return GPT2_LAUNCH(WarpOf2dBlockKernel, 1, dim3(8, 8), 0, nullptr, out);
}

cudaError_t LaunchActiveMask(int threads, int live, int* out) {
  return GPT2_LAUNCH(ActiveMaskKernel, 1, threads, 0, nullptr, live, out);
}

}  // namespace cuda_emu_test
