// CUDA fused classifier: one block per row computes the softmax statistics over
// the real vocab, the loss, and (when training) overwrites the logits with
// their gradient, so no fp32 probabilities are ever stored. Padded columns get
// zero gradient.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "src/core/env.h"
#include "src/cuda/async_copy.cuh"
#include "src/cuda/common.cuh"
#include "src/cuda/mma_check.h"
#include "src/ops/classifier.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 512;

// The row's log-sum-exp from each thread's running max and its sum of
// exp(x - max) (block-wide; every thread gets it).
__device__ __forceinline__ float RowLogSumExp(float max_logit, float sum,
                                              float* scratch) {
  const float block_max = BlockMax(max_logit, scratch);
  sum = max_logit == -INFINITY ? 0.0f : sum * expf(max_logit - block_max);
  return block_max + logf(BlockSum(sum, scratch));
}

template <typename T>
__global__ void ClassifierKernel(T* logits, float* losses,
                                 const int32_t* targets, int V, int Vp,
                                 float dloss, bool write_grad) {
  KernelPrologue();
  __shared__ float scratch[32];
  T* row = logits + int64_t{blockIdx.x} * Vp;
  // Online max/sum per thread, then combined across the block.
  float max_logit = -INFINITY, sum = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = ToFloat(row[v]);
    if (x > max_logit) {
      sum = sum * expf(max_logit - x) + 1.0f;
      max_logit = x;
    } else {
      sum += expf(x - max_logit);
    }
  }
  const float lse = RowLogSumExp(max_logit, sum, scratch);
  const int target = targets[blockIdx.x];
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - ToFloat(row[target]);
  if (!write_grad) return;
  __syncthreads();  // thread 0 read row[target] above
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    float grad = 0.0f;
    if (v < V)
      grad =
          (expf(ToFloat(row[v]) - lse) - (v == target ? 1.0f : 0.0f)) * dloss;
    row[v] = FromFloat<T>(grad);
  }
}

// exp(x - m) for bf16 rows: 2^(x log2(e) - m log2(e)), one fused multiply-add
// and the hardware's ex2 (Exp2Ftz), where the accurate expf takes ~8
// instructions around its ex2. Per logit the kernels below do little else: two
// exponentials (the row's sum, then the gradient), a conversion each way and
// a few adds, so at 98 KiB a row the accurate expf made them as much ALU-bound
// as memory-bound (1.62 ms a B=16 step on the H200, 2.0 TB/s). Relative error
// ~2^-22, under a bf16 gradient's 2^-9; the f32 rows (the parity mode) and
// GPT2_CLASSIFIER_FAST_EXP=0 keep expf.
constexpr float kLog2e = 1.4426950408889634f;
template <typename T>
constexpr bool kFastExpType = std::is_same_v<T, bf16>;

// One 16-byte pack of a row (columns v0 ...) into a thread's running max and
// sum of exp(x - max): columns from V on (the padded vocab) are left out; the
// running max is updated once per pack.
template <typename T, bool kFast>
__device__ __forceinline__ void AddPackToRowStats(const Pack16<T>& pack, int v0,
                                                  int V, float& max_logit,
                                                  float& sum) {
  constexpr int kN = Pack16<T>::kN;
  float x[kN];
  float pack_max = -INFINITY;
  if (v0 + kN <= V) {  // all but the row's last pack: no column checks
    for (int j = 0; j < kN; ++j) {
      x[j] = ToFloat(pack.v[j]);
      pack_max = fmaxf(pack_max, x[j]);
    }
  } else {
    for (int j = 0; j < kN; ++j) {
      x[j] = v0 + j < V ? ToFloat(pack.v[j]) : -INFINITY;
      pack_max = fmaxf(pack_max, x[j]);
    }
  }
  if (pack_max > max_logit) {
    sum *= expf(max_logit - pack_max);  // 0 * exp(-inf) = 0 at the start
    max_logit = pack_max;
  }
  if (max_logit == -INFINITY) return;
  if constexpr (kFast) {
    const float m2 = max_logit * kLog2e;
    for (int j = 0; j < kN; ++j) sum += Exp2Ftz(fmaf(x[j], kLog2e, -m2));
  } else {
    for (int j = 0; j < kN; ++j) sum += expf(x[j] - max_logit);
  }
}

// The pack's logits replaced by their gradient (zero on the padded vocab).
// The same formula for every column, (exp(x - lse) - [v == target]) * dloss;
// only the pack holding the target or the vocab's end checks columns.
template <typename T, bool kFast>
__device__ __forceinline__ void PackToGradient(Pack16<T>& pack, int v0, int V,
                                               int target, float lse,
                                               float dloss) {
  constexpr int kN = Pack16<T>::kN;
  const float l2 = lse * kLog2e;
  const auto prob = [&](float x) {
    if constexpr (kFast) {
      return Exp2Ftz(fmaf(x, kLog2e, -l2));
    } else {
      return expf(x - lse);
    }
  };
  if (v0 + kN <= V && static_cast<unsigned>(target - v0) >= kN) {
    for (int j = 0; j < kN; ++j)
      pack.v[j] = FromFloat<T>(prob(ToFloat(pack.v[j])) * dloss);
    return;
  }
  for (int j = 0; j < kN; ++j) {
    const int v = v0 + j;
    float grad = 0.0f;
    if (v < V) {
      grad = (prob(ToFloat(pack.v[j])) - (v == target ? 1.0f : 0.0f)) * dloss;
    }
    pack.v[j] = FromFloat<T>(grad);
  }
}

// One block's row in 16-byte packs (Vp a multiple of the pack, rows
// aligned), read from `in` (the row itself, or a staged copy) and its
// gradient written to `row`: each thread takes the packs tid, tid + blockDim,
// ... in that order, whichever `in` is, so both kernels below give the same
// bits.
template <typename T, bool kFast>
__device__ __forceinline__ void ClassifyPackedRowAs(
    const T* in, T* row, int64_t r, float* losses, const int32_t* targets,
    int V, int Vp, float dloss, bool write_grad, float* scratch) {
  constexpr int kN = Pack16<T>::kN;
  float max_logit = -INFINITY, sum = 0.0f;
  for (int v0 = threadIdx.x * kN; v0 < V; v0 += blockDim.x * kN) {
    AddPackToRowStats<T, kFast>(LoadPack16(in + v0), v0, V, max_logit, sum);
  }
  const float lse = RowLogSumExp(max_logit, sum, scratch);
  const int target = targets[r];
  if (threadIdx.x == 0) losses[r] = lse - ToFloat(in[target]);
  if (!write_grad) return;
  __syncthreads();  // thread 0 read in[target] above (in may be row)
  // kAhead packs loaded before the first of them is stored: a load may not
  // move above a store to what may be the same row, so one at a time each
  // pack's load waited on memory in turn. (Each pack is read before it is
  // written, as before; the same bits.)
  constexpr int kAhead = 4;
  const int stride = blockDim.x * kN;
  for (int v0 = threadIdx.x * kN; v0 < Vp; v0 += kAhead * stride) {
    Pack16<T> packs[kAhead];
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      if (v0 + k * stride < Vp) packs[k] = LoadPack16(in + v0 + k * stride);
    }
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      if (v0 + k * stride < Vp) {
        PackToGradient<T, kFast>(packs[k], v0 + k * stride, V, target, lse,
                                 dloss);
        StorePack16(row + v0 + k * stride, packs[k]);
      }
    }
  }
}

// ClassifyPackedRowAs with the fast exponential where the rows are bf16 and
// `fast_exp` (GPT2_CLASSIFIER_FAST_EXP, on unless 0): one choice per launch.
template <typename T>
__device__ __forceinline__ void ClassifyPackedRow(
    const T* in, T* row, int64_t r, float* losses, const int32_t* targets,
    int V, int Vp, float dloss, bool write_grad, bool fast_exp,
    float* scratch) {
  if constexpr (kFastExpType<T>) {
    if (fast_exp) {
      return ClassifyPackedRowAs<T, true>(in, row, r, losses, targets, V, Vp,
                                          dloss, write_grad, scratch);
    }
  }
  ClassifyPackedRowAs<T, false>(in, row, r, losses, targets, V, Vp, dloss,
                                write_grad, scratch);
}

// The row read twice from global memory and written once, at full width.
template <typename T>
__global__ void ClassifierPackedKernel(T* logits, float* losses,
                                       const int32_t* targets, int V, int Vp,
                                       float dloss, bool write_grad,
                                       bool fast_exp) {
  KernelPrologue();
  __shared__ float scratch[32];
  T* row = logits + int64_t{blockIdx.x} * Vp;
  ClassifyPackedRow(row, row, blockIdx.x, losses, targets, V, Vp, dloss,
                    write_grad, fast_exp, scratch);
}

// The row staged in shared memory by one bulk copy (Hopper's
// cp.async.bulk): read from global memory once and written once, the whole
// row's load in flight at once, two blocks an SM (a bf16 row of 50,304
// logits is 98 KiB), so that one block's copy streams while the other
// reduces. (Two earlier versions that read a row once lost to the packed
// kernel: loading the row into shared memory pack by pack, and holding it in
// registers at one block an SM.)
template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    ClassifierBulkKernel(T* logits, float* losses, const int32_t* targets,
                         int V, int Vp, float dloss, bool write_grad,
                         bool fast_exp) {
  KernelPrologue();
  __shared__ float scratch[32];
  __shared__ uint64_t landed;
  GPT2_EXTERN_SHARED(uint4, staged);  // the row: Vp * sizeof(T) bytes
  T* row = logits + int64_t{blockIdx.x} * Vp;
  if (threadIdx.x == 0) BarrierInit(&landed);
  __syncthreads();
  if (threadIdx.x == 0)
    BulkLoad(staged, row, static_cast<uint32_t>(Vp * sizeof(T)), &landed);
  BarrierWait(&landed, 0);
  ClassifyPackedRow(reinterpret_cast<const T*>(staged), row, blockIdx.x, losses,
                    targets, V, Vp, dloss, write_grad, fast_exp, scratch);
}

// The bulk kernel with two row buffers a block and one block an SM, each
// block taking rows blockIdx.x, + gridDim.x, ...: the next row's bulk copy
// is issued before this row's passes, so it streams in while this row is
// reduced and its gradient written (one block at a time per SM otherwise
// waited for its whole row before any math). The same passes over each row:
// the same bits. Opt-in (GPT2_CLASSIFIER_RING=1) until a GPU run measures it.
template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
    ClassifierRingKernel(T* logits, float* losses, const int32_t* targets,
                         int64_t N, int V, int Vp, float dloss, bool write_grad,
                         bool fast_exp) {
  KernelPrologue();
  __shared__ float scratch[32];
  __shared__ uint64_t landed[2];
  GPT2_EXTERN_SHARED(uint4, staged);  // two rows of Vp * sizeof(T) bytes
  const uint32_t bytes = static_cast<uint32_t>(Vp * sizeof(T));
  const auto buffer = [&](int b) {
    return reinterpret_cast<T*>(reinterpret_cast<char*>(staged) + b * bytes);
  };
  if (threadIdx.x == 0) {
    BarrierInit(&landed[0]);
    BarrierInit(&landed[1]);
  }
  __syncthreads();
  if (threadIdx.x == 0 && blockIdx.x < N)
    BulkLoad(buffer(0), logits + int64_t{blockIdx.x} * Vp, bytes, &landed[0]);
  int i = 0;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x, ++i) {
    const int b = i & 1;
    // The other buffer held row i - 1, whose last reads ended before the
    // barrier at the end of the previous iteration.
    const int64_t next = r + gridDim.x;
    if (threadIdx.x == 0 && next < N)
      BulkLoad(buffer(b ^ 1), logits + next * Vp, bytes, &landed[b ^ 1]);
    BarrierWait(&landed[b], (i >> 1) & 1);  // buffer b's (i / 2)-th copy
    ClassifyPackedRow(buffer(b), logits + r * Vp, r, losses, targets, V, Vp,
                      dloss, write_grad, fast_exp, scratch);
    FenceBeforeBulkRefill();
    __syncthreads();  // buffer b is read: refilled next iteration
  }
}

// acc[0] += scale * sum(x), one block, fixed order.
template <typename T>
__global__ void AccumulateSumKernel(float* acc, const T* x, int64_t n,
                                    float scale) {
  KernelPrologue();
  __shared__ float scratch[32];
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += ToFloat(x[i]);
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) acc[0] += sum * scale;
}

// The kernel ClassifierForward runs for these logits (one choice, used by
// the launch and reported by ClassifierKernelName): where the rows are whole
// aligned 16-byte packs, the bulk kernel for bf16 rows of up to kMaxBulkBytes
// on sm_90 and newer, else the packed kernel; else the element-wise one.
// GPT2_CLASSIFIER_PACKED=0: the element-wise kernel for every shape (a switch
// for bisecting training differences on a GPU); GPT2_CLASSIFIER_BULK=0: the
// packed one instead of the bulk one. (Two versions that read a row once lost
// to reading it twice, on the H200 and the H100: the row loaded into shared
// memory pack by pack, 1.55 ms against 1.37 a B=16 step, and held in
// registers, 13 loads in flight a thread at one block an SM, 1.92-1.97 ms
// against 1.66-1.67.)
constexpr int kMaxBulkBytes = 112 * 1024;  // two blocks in an SM's 227 KiB
enum class ClassifierChoice { kElementwise, kPacked, kBulk, kRing };
bool& BulkAllowed() {
  static bool allowed = !EnvIs("GPT2_CLASSIFIER_BULK", "0");
  return allowed;
}
bool& FastExpWanted() {
  static bool wanted = !EnvIs("GPT2_CLASSIFIER_FAST_EXP", "0");
  return wanted;
}
bool& RingWanted() {
  static bool wanted = EnvIs("GPT2_CLASSIFIER_RING", "1");
  return wanted;
}
ClassifierChoice ChooseClassifier(Tensor logits, int Vp) {
  static const bool packed = !EnvIs("GPT2_CLASSIFIER_PACKED", "0");
  const int pack = 16 / static_cast<int>(DTypeSize(logits.dtype));
  if (!packed || Vp % pack != 0 ||
      reinterpret_cast<uintptr_t>(logits.data) % 16 != 0)
    return ClassifierChoice::kElementwise;
  if (BulkAllowed() && logits.dtype == DType::kBF16 &&
      Vp * 2 <= kMaxBulkBytes && CurrentMajor() >= 9)
    return RingWanted() ? ClassifierChoice::kRing : ClassifierChoice::kBulk;
  return ClassifierChoice::kPacked;
}

// A staging kernel's shared memory: `bytes` a block (above the 48 KiB a block
// gets without asking), and all of L1 as shared memory.
void AllowStagedRows(const void* kernel, int bytes, const char* name) {
  CheckLaunch(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
              name);
  CheckLaunch(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                  cudaSharedmemCarveoutMaxShared),
              name);
}

}  // namespace

void SetClassifierBulk(bool on) { BulkAllowed() = on; }
void SetClassifierRing(bool on) { RingWanted() = on; }
void SetClassifierFastExp(bool on) { FastExpWanted() = on; }

const char* ClassifierKernelName(Tensor logits, int Vp) {
  switch (ChooseClassifier(logits, Vp)) {
    case ClassifierChoice::kBulk:
      return "bulk";
    case ClassifierChoice::kRing:
      return "ring";
    case ClassifierChoice::kPacked:
      return "packed";
    default:
      return "elementwise";
  }
}

void ClassifierForward(Tensor logits, Tensor losses, Tensor targets, int64_t N,
                       int V, int Vp, double dloss, bool write_grad,
                       CUstream_st* stream) {
  const ClassifierChoice choice = ChooseClassifier(logits, Vp);
  const bool fast_exp = FastExpWanted();
  DispatchFloat(logits.dtype, [&](auto zero) {
    using F = decltype(zero);
    const auto launch = [&](auto kernel, const char* name, int shared) {
      CheckLaunch(GPT2_LAUNCH(kernel, static_cast<unsigned>(N), kThreads,
                              shared, stream, Ptr<F>(logits),
                              Ptr<float>(losses), Ptr<int32_t>(targets), V, Vp,
                              static_cast<float>(dloss), write_grad, fast_exp),
                  name);
    };
    if (choice == ClassifierChoice::kRing) {
      // Two rows a block (up to 224 KiB of the SM's 227), one block an SM.
      static const int blocks = [] {
        AllowStagedRows(
            reinterpret_cast<const void*>(&ClassifierRingKernel<bf16>),
            2 * kMaxBulkBytes, "ClassifierRingKernel");
        const int sms =
            CurrentDeviceAttribute(cudaDevAttrMultiProcessorCount, 0);
        return sms > 0 ? sms : 132;
      }();
      const unsigned grid =
          static_cast<unsigned>(std::min<int64_t>(N, int64_t{blocks}));
      CheckLaunch(GPT2_LAUNCH(&ClassifierRingKernel<F>, grid, kThreads,
                              2 * Vp * static_cast<int>(sizeof(F)), stream,
                              Ptr<F>(logits), Ptr<float>(losses),
                              Ptr<int32_t>(targets), N, V, Vp,
                              static_cast<float>(dloss), write_grad, fast_exp),
                  "ClassifierRingKernel");
      return;
    }
    if (choice == ClassifierChoice::kBulk) {
      // Two rows an SM; once.
      static const bool allowed = [] {
        AllowStagedRows(
            reinterpret_cast<const void*>(&ClassifierBulkKernel<bf16>),
            kMaxBulkBytes, "ClassifierBulkKernel");
        return true;
      }();
      (void)allowed;
      return launch(&ClassifierBulkKernel<F>, "ClassifierBulkKernel",
                    Vp * static_cast<int>(sizeof(F)));
    }
    if (choice == ClassifierChoice::kPacked)
      return launch(&ClassifierPackedKernel<F>, "ClassifierPackedKernel", 0);
    CheckLaunch(GPT2_LAUNCH(&ClassifierKernel<F>, static_cast<unsigned>(N),
                            kThreads, 0, stream, Ptr<F>(logits),
                            Ptr<float>(losses), Ptr<int32_t>(targets), V, Vp,
                            static_cast<float>(dloss), write_grad),
                "ClassifierKernel");
  });
}

void AccumulateSum(Tensor acc, Tensor x, double scale, CUstream_st* stream) {
  DispatchFloat(x.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(AccumulateSumKernel<F>, 1, 1024, 0, stream, Ptr<float>(acc),
                    Ptr<F>(x), x.numel, static_cast<float>(scale)),
        "AccumulateSumKernel");
  });
}

}  // namespace gpt2::cuda
