// CUDA fused classifier: one block per row computes the softmax statistics over
// the real vocab, the loss, and (when training) overwrites the logits with
// their gradient, so no fp32 probabilities are ever stored. Padded columns get
// zero gradient.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "src/core/env.h"
#include "src/cuda/common.cuh"
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

// One 16-byte pack of a row (columns v0 ...) into a thread's running max and
// sum of exp(x - max): columns from V on (the padded vocab) are left out; the
// running max is updated once per pack.
template <typename T>
__device__ __forceinline__ void AddPackToRowStats(const Pack16<T>& pack, int v0,
                                                  int V, float& max_logit,
                                                  float& sum) {
  constexpr int kN = Pack16<T>::kN;
  float x[kN];
  float pack_max = -INFINITY;
  for (int j = 0; j < kN; ++j) {
    x[j] = v0 + j < V ? ToFloat(pack.v[j]) : -INFINITY;
    pack_max = fmaxf(pack_max, x[j]);
  }
  if (pack_max > max_logit) {
    sum *= expf(max_logit - pack_max);  // 0 * exp(-inf) = 0 at the start
    max_logit = pack_max;
  }
  if (max_logit == -INFINITY) return;
  for (int j = 0; j < kN; ++j) sum += expf(x[j] - max_logit);
}

// The pack's logits replaced by their gradient (zero on the padded vocab).
template <typename T>
__device__ __forceinline__ void PackToGradient(Pack16<T>& pack, int v0, int V,
                                               int target, float lse,
                                               float dloss) {
  for (int j = 0; j < Pack16<T>::kN; ++j) {
    const int v = v0 + j;
    float grad = 0.0f;
    if (v < V) {
      grad = (expf(ToFloat(pack.v[j]) - lse) - (v == target ? 1.0f : 0.0f)) *
             dloss;
    }
    pack.v[j] = FromFloat<T>(grad);
  }
}

// The same in 16-byte packs (Vp a multiple of the pack, rows aligned): the
// row is read twice and written once at full width.
template <typename T>
__global__ void ClassifierPackedKernel(T* logits, float* losses,
                                       const int32_t* targets, int V, int Vp,
                                       float dloss, bool write_grad) {
  constexpr int kN = Pack16<T>::kN;
  __shared__ float scratch[32];
  T* row = logits + int64_t{blockIdx.x} * Vp;
  float max_logit = -INFINITY, sum = 0.0f;
  for (int v0 = threadIdx.x * kN; v0 < V; v0 += blockDim.x * kN) {
    AddPackToRowStats(LoadPack16(row + v0), v0, V, max_logit, sum);
  }
  const float lse = RowLogSumExp(max_logit, sum, scratch);
  const int target = targets[blockIdx.x];
  if (threadIdx.x == 0) losses[blockIdx.x] = lse - ToFloat(row[target]);
  if (!write_grad) return;
  __syncthreads();  // thread 0 read row[target] above
  for (int v0 = threadIdx.x * kN; v0 < Vp; v0 += blockDim.x * kN) {
    Pack16<T> pack = LoadPack16(row + v0);
    PackToGradient(pack, v0, V, target, lse, dloss);
    StorePack16(row + v0, pack);
  }
}

// The packed kernel with the row held in registers between its two passes:
// read once and written once (a third less traffic), every thread's loads
// issued before the first is used (kPacks of 16 bytes in flight a thread:
// GPT-2's 98 KiB bf16 row is 13 a thread at 512 threads). The same packs per
// thread in the same order as ClassifierPackedKernel at kThreads, so the same
// bits. (A version keeping the row in shared memory, loading a pack and using
// it in turn, lost to the two reads on the H200: 1.55 ms against 1.37.)
template <typename T, int kPacks>
__global__ void __launch_bounds__(kThreads, 1)
    ClassifierRegisterKernel(T* logits, float* losses, const int32_t* targets,
                             int V, int Vp, float dloss, bool write_grad) {
  constexpr int kN = Pack16<T>::kN;
  __shared__ float scratch[32];
  T* row = logits + int64_t{blockIdx.x} * Vp;
  // Raw 16-byte words (an array of Pack16 went to the stack), each turned
  // into a pack by value where it is used.
  uint4 raw[kPacks];
  const auto pack_at = [&](int p) {
    Pack16<T> pack;
    memcpy(&pack, &raw[p], sizeof(pack));
    return pack;
  };
#pragma unroll
  for (int p = 0; p < kPacks; ++p) {
    const int v0 = (p * kThreads + static_cast<int>(threadIdx.x)) * kN;
    raw[p] = v0 < Vp ? *reinterpret_cast<const uint4*>(row + v0)
                     : make_uint4(0, 0, 0, 0);
  }
  float max_logit = -INFINITY, sum = 0.0f;
#pragma unroll
  for (int p = 0; p < kPacks; ++p) {
    const int v0 = (p * kThreads + static_cast<int>(threadIdx.x)) * kN;
    if (v0 < V) AddPackToRowStats(pack_at(p), v0, V, max_logit, sum);
  }
  const float lse = RowLogSumExp(max_logit, sum, scratch);
  // The loss, from the thread holding the target's pack: it reads the logit
  // again (a cache hit) before it overwrites the pack with gradients.
  const int target = targets[blockIdx.x];
  if ((target / kN) % kThreads == static_cast<int>(threadIdx.x))
    losses[blockIdx.x] = lse - ToFloat(row[target]);
  if (!write_grad) return;
#pragma unroll
  for (int p = 0; p < kPacks; ++p) {
    const int v0 = (p * kThreads + static_cast<int>(threadIdx.x)) * kN;
    if (v0 < Vp) {
      Pack16<T> pack = pack_at(p);
      PackToGradient(pack, v0, V, target, lse, dloss);
      StorePack16(row + v0, pack);
    }
  }
}

bool& RowInRegisters() {
  // GPT2_CLASSIFIER_REGISTERS=0: the version reading the row twice.
  static bool on = !EnvIs("GPT2_CLASSIFIER_REGISTERS", "0");
  return on;
}

// acc[0] += scale * sum(x), one block, fixed order.
template <typename T>
__global__ void AccumulateSumKernel(float* acc, const T* x, int64_t n,
                                    float scale) {
  __shared__ float scratch[32];
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += ToFloat(x[i]);
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) acc[0] += sum * scale;
}

// The kernel ClassifierForward runs for these logits (one choice, used by the
// launch and reported by ClassifierKernelName): the register kernel for bf16
// rows of up to 13 packs a thread (GPT-2's 50,304), else the packed one where
// the rows are whole aligned packs, else the element-wise one.
// GPT2_CLASSIFIER_PACKED=0: the element-wise kernel for every shape (a switch
// for bisecting training differences on a GPU).
enum class ClassifierChoice { kElementwise, kPacked, kRegisters };
ClassifierChoice ChooseClassifier(Tensor logits, int Vp) {
  static const bool packed = !EnvIs("GPT2_CLASSIFIER_PACKED", "0");
  const int pack = 16 / static_cast<int>(DTypeSize(logits.dtype));
  if (!packed || Vp % pack != 0 ||
      reinterpret_cast<uintptr_t>(logits.data) % 16 != 0)
    return ClassifierChoice::kElementwise;
  if (logits.dtype == DType::kBF16 && RowInRegisters() &&
      CeilDiv(Vp / pack, kThreads) <= 13)
    return ClassifierChoice::kRegisters;
  return ClassifierChoice::kPacked;
}

}  // namespace

const char* ClassifierKernelName(Tensor logits, int Vp) {
  switch (ChooseClassifier(logits, Vp)) {
    case ClassifierChoice::kRegisters:
      return "registers";
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
  DispatchFloat(logits.dtype, [&](auto zero) {
    using F = decltype(zero);
    const auto launch = [&](auto kernel, const char* name) {
      CheckLaunch(
          GPT2_LAUNCH(kernel, static_cast<unsigned>(N), kThreads, 0, stream,
                      Ptr<F>(logits), Ptr<float>(losses), Ptr<int32_t>(targets),
                      V, Vp, static_cast<float>(dloss), write_grad),
          name);
    };
    if constexpr (std::is_same_v<F, bf16>) {
      if (choice == ClassifierChoice::kRegisters) {
        const int packs = CeilDiv(Vp / Pack16<F>::kN, kThreads);
        const char* name = "ClassifierRegisterKernel";
        if (packs <= 1) return launch(&ClassifierRegisterKernel<F, 1>, name);
        if (packs <= 2) return launch(&ClassifierRegisterKernel<F, 2>, name);
        if (packs <= 4) return launch(&ClassifierRegisterKernel<F, 4>, name);
        if (packs <= 8) return launch(&ClassifierRegisterKernel<F, 8>, name);
        return launch(&ClassifierRegisterKernel<F, 13>, name);
      }
    }
    if (choice == ClassifierChoice::kPacked)
      return launch(&ClassifierPackedKernel<F>, "ClassifierPackedKernel");
    launch(&ClassifierKernel<F>, "ClassifierKernel");
  });
}

void SetClassifierRowInRegisters(bool on) { RowInRegisters() = on; }

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
