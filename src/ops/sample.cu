// Top-k sampling on the device (src/ops/sample.h has the draw): one block of
// 1024 threads per row, thread t owning a contiguous slice of the ids, so that
// block-wide scans run in id order. The k-th largest logit is found by a radix
// select over the 32-bit ranking keys (four passes of 8 bits, two for bf16
// logits, whose keys have 16 significant bits; shared-memory histograms with
// integer atomics, so counts are exact; the top key found in the first); ties
// at the threshold go to the lowest ids through a scan of the tie counts;
// weights are summed per slice and scanned; the slice holding u * S is walked
// by its thread. Every sum runs in a fixed order: the same inputs give the same
// token.
//
// With top_p < 1 the nucleus is found the same way, over weights instead of
// counts: a radix select 4 bits at a time (8 passes, 4 for bf16) of the
// largest key whose kept ids, with every larger key's, weigh at least top_p of
// the total; each pass sums the weights under each of its 16 digits (sums per
// thread in id order, then over the block in a fixed order); the ids at that
// key are taken lowest first until the mass is reached.
//
// The slices make every pass's loads strided across a warp (32 rows of 32
// bytes for 64 used). A version copying the bf16 row into shared memory first
// was no faster on the H200 (2,118 against 2,170 tokens/s at batch 1, graphs
// off; logs/gpu_h200_2026-11-26_2) and is gone.
#include <climits>
#include <cstdint>
#include <type_traits>

#include "src/cuda/common.cuh"
#include "src/ops/sample.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Inclusive prefix sum over the warp in lane order.
template <typename V>
__device__ __forceinline__ V WarpInclusiveScan(V x) {
  const int lane = threadIdx.x % 32;
  for (int offset = 1; offset < 32; offset *= 2) {
    const V y = __shfl_up_sync(0xffffffffu, x, offset);
    if (lane >= offset) x += y;
  }
  return x;
}

// Exclusive prefix sum over the block in thread order, and the block total.
// `scratch` holds kWarps + 1 values of shared memory.
template <typename V>
__device__ __forceinline__ V BlockExclusiveScan(V x, V* total, V* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const V inclusive = WarpInclusiveScan(x);
  V exclusive = __shfl_up_sync(0xffffffffu, inclusive, 1);
  if (lane == 0) exclusive = V(0);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    const V w = scratch[lane];  // kWarps == 32
    const V warp_inclusive = WarpInclusiveScan(w);
    V warp_exclusive = __shfl_up_sync(0xffffffffu, warp_inclusive, 1);
    if (lane == 0) warp_exclusive = V(0);
    __syncwarp();
    scratch[lane] = warp_exclusive;
    if (lane == 31) scratch[kWarps] = warp_inclusive;
  }
  __syncthreads();
  *total = scratch[kWarps];
  return scratch[warp] + exclusive;
}

// Sixteen sums over the block, each in a fixed order; every thread gets them.
// `scratch` holds kWarps * 16 + 16 floats of shared memory.
__device__ __forceinline__ void BlockSum16(float (&v)[16], float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int d = 0; d < 16; ++d) v[d] = WarpSum(v[d]);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane < 16) {
    float mine = 0.0f;
#pragma unroll
    for (int d = 0; d < 16; ++d) mine = lane == d ? v[d] : mine;
    scratch[warp * 16 + lane] = mine;
  }
  __syncthreads();
  if (threadIdx.x < 16) {
    float sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) sum += scratch[w * 16 + threadIdx.x];
    scratch[kWarps * 16 + threadIdx.x] = sum;
  }
  __syncthreads();
#pragma unroll
  for (int d = 0; d < 16; ++d) v[d] = scratch[kWarps * 16 + d];
}

// The largest value over the block (every thread gets it).
__device__ __forceinline__ int BlockMaxInt(int v, int* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2)
    v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[lane];
  for (int offset = 16; offset > 0; offset /= 2)
    v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ uint32_t KeyAt(const float* row, int i) {
  return SampleKey(__float_as_uint(row[i]));
}
__device__ __forceinline__ uint32_t KeyAt(const bf16* row, int i) {
  return SampleKey(__float_as_uint(ToFloat(row[i])));
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
    SampleTopKKernel(int32_t* tokens, const T* logits, const int32_t* seeds,
                     const int32_t* counter, int V, int Vp, int top_k,
                     float inv_temperature, float top_p) {
  KernelPrologue();
  __shared__ int histogram[256];
  __shared__ float digit_scratch[kWarps * 16 + 16];
  __shared__ int int_scratch[kWarps + 1];
  __shared__ float float_scratch[kWarps + 1];
  __shared__ uint32_t chosen_digit;
  __shared__ int chosen_above;
  const T* row = logits + int64_t{blockIdx.x} * Vp;
  const int slice = (V + kThreads - 1) / kThreads;
  const int begin = min(V, static_cast<int>(threadIdx.x) * slice);
  const int end = min(V, begin + slice);

  // The top key (as an int: keys are unsigned, and as ints they order the
  // same after flipping the top bit), in a pass of its own where no select
  // runs, else in the select's first pass.
  const int k = min(top_k, V);
  const bool select = k > 1 && k < V;
  int top_flipped = INT_MIN;
  if (!select) {
    for (int i = begin; i < end; ++i)
      top_flipped =
          max(top_flipped, static_cast<int>(KeyAt(row, i) ^ 0x80000000u));
  }

  // The threshold key (the k-th largest) and how many of the ids at it are
  // kept (`need`, the lowest ones). k >= V keeps everything.
  uint32_t threshold = 0;
  int need = V;
  if (select) {
    // A bf16 logit's key has 16 significant bits: the two passes over the
    // high ones decide it (the low 16 are 0 for a positive logit's key,
    // 0xFFFF for a negative one's), so the last two passes are skipped.
    constexpr int kLastShift = std::is_same_v<T, bf16> ? 16 : 0;
    uint32_t prefix = 0;
    int remaining = k;
    for (int shift = 24; shift >= kLastShift; shift -= 8) {
      for (int d = threadIdx.x; d < 256; d += kThreads) histogram[d] = 0;
      __syncthreads();
      const uint32_t high_mask = shift == 24 ? 0u : ~0u << (shift + 8);
      // Logits crowd into a few digits (the first pass sees little more than
      // the exponent), so the lanes of a warp that share one add together:
      // one atomic per distinct digit per warp, not per lane. Every lane runs
      // every iteration (the slice length is the block's), so the match
      // always has the full warp.
      for (int j = 0; j < slice; ++j) {
        const int i = begin + j;
        uint32_t digit = 256;  // no digit: past the slice or not under prefix
        if (i < end) {
          const uint32_t key = KeyAt(row, i);
          if (shift == 24)
            top_flipped = max(top_flipped, static_cast<int>(key ^ 0x80000000u));
          if ((key & high_mask) == prefix) digit = (key >> shift) & 255u;
        }
        const unsigned peers = __match_any_sync(0xffffffffu, digit);
        if (digit < 256 && (threadIdx.x % 32) == __ffs(peers) - 1)
          atomicAdd(&histogram[digit], __popc(peers));
      }
      __syncthreads();
      if (threadIdx.x < 32) {
        // Lane l holds digits 255 - 8 l down to 248 - 8 l: above = how many
        // keys have a larger digit; the chosen digit is where `remaining`
        // falls.
        const int lane = threadIdx.x;
        int counts[8], lane_total = 0;
        for (int j = 0; j < 8; ++j) {
          counts[j] = histogram[255 - (8 * lane + j)];
          lane_total += counts[j];
        }
        int above = WarpInclusiveScan(lane_total) - lane_total;
        for (int j = 0; j < 8; ++j) {
          if (above < remaining && remaining <= above + counts[j]) {
            chosen_digit = 255u - (8u * lane + j);
            chosen_above = above;
          }
          above += counts[j];
        }
      }
      __syncthreads();
      prefix |= chosen_digit << shift;
      remaining -= chosen_above;
      __syncthreads();  // chosen_* and the histogram are reused next pass
    }
    if (kLastShift == 16) prefix |= (prefix & 0x80000000u) != 0 ? 0u : 0xFFFFu;
    threshold = prefix;
    need = remaining;
  }
  top_flipped = BlockMaxInt(top_flipped, int_scratch);
  const uint32_t top_key = static_cast<uint32_t>(top_flipped) ^ 0x80000000u;
  if (top_key == SampleKey(0xFF800000u)) {  // every logit -inf or NaN
    if (threadIdx.x == 0) tokens[blockIdx.x] = 0;
    return;
  }
  if (k == 1) {
    threshold = top_key;
    need = 1;
  }

  // Ties at the threshold: this slice's first one has rank tie_base among them.
  int ties = 0;
  for (int i = begin; i < end; ++i) ties += KeyAt(row, i) == threshold;
  int all_ties = 0;
  const int tie_base = BlockExclusiveScan(ties, &all_ties, int_scratch);

  const float top = __uint_as_float(
      (top_key & 0x80000000u) != 0 ? top_key & 0x7FFFFFFFu : ~top_key);
  const uint32_t minus_inf = SampleKey(0xFF800000u);
  auto weight = [&](int i, int* tie_rank) -> float {
    const uint32_t key = KeyAt(row, i);
    bool kept = key > threshold;
    if (key == threshold) kept = (*tie_rank)++ < need;
    if (!kept || key == minus_inf) return 0.0f;  // NaN too
    if (key == top_key) return 1.0f;
    return expf((ToFloat(row[i]) - top) * inv_temperature);
  };
  float local = 0.0f;
  int rank = tie_base;
  for (int i = begin; i < end; ++i) local += weight(i, &rank);
  float total = 0.0f;
  float base = BlockExclusiveScan(local, &total, float_scratch);

  // The nucleus (top_p < 1): the largest key `nucleus` whose kept ids and
  // every larger key's weigh at least goal = top_p * total, and how many of
  // the ids at it are taken (`nucleus_need`, the lowest ones).
  uint32_t nucleus = 0;  // 0: every kept id (no key is below it)
  int nucleus_need = V;
  int nucleus_base = 0;
  if (top_p < 1.0f) {
    const float goal = top_p * total;
    constexpr int kLastNibble = std::is_same_v<T, bf16> ? 16 : 0;
    uint32_t prefix = 0;
    float above = 0.0f;  // the weight of the keys above the prefix so far
    for (int shift = 28; shift >= kLastNibble; shift -= 4) {
      const uint32_t high_mask = shift == 28 ? 0u : ~0u << (shift + 4);
      float sums[16];
#pragma unroll
      for (int d = 0; d < 16; ++d) sums[d] = 0.0f;
      int r = tie_base;
      for (int i = begin; i < end; ++i) {
        const float w = weight(i, &r);
        const uint32_t key = KeyAt(row, i);
        if (w > 0.0f && (key & high_mask) == prefix) {
          const uint32_t digit = (key >> shift) & 15u;
#pragma unroll
          for (int d = 0; d < 16; ++d) sums[d] += digit == d ? w : 0.0f;
        }
      }
      BlockSum16(sums, digit_scratch);
      // The largest digit whose weight, with everything above, reaches the
      // goal; rounding may leave every digit short of it (top_p near 1), and
      // then the lowest digit of any weight.
      int chosen = -1, lowest = -1;
      float running = above, running_at_lowest = above;
      for (int d = 15; d >= 0; --d) {
        if (sums[d] <= 0.0f) continue;
        if (running + sums[d] >= goal) {
          chosen = d;
          break;
        }
        lowest = d;
        running_at_lowest = running;
        running += sums[d];
      }
      if (chosen < 0) {
        chosen = max(lowest, 0);
        running = running_at_lowest;
      }
      above = running;
      prefix |= static_cast<uint32_t>(chosen) << shift;
    }
    if (kLastNibble == 16) {
      prefix |= (prefix & 0x80000000u) != 0 ? 0u : 0xFFFFu;
    }
    nucleus = prefix;
    const float nucleus_logit = __uint_as_float(
        (nucleus & 0x80000000u) != 0 ? nucleus & 0x7FFFFFFFu : ~nucleus);
    const float w_nucleus = nucleus == top_key
                                ? 1.0f
                                : expf((nucleus_logit - top) * inv_temperature);
    // (Clamped before the cast: where rounding left the goal out of reach the
    // quotient can exceed any int (or be NaN), and every id at the key is
    // taken.)
    const float want = ceilf((goal - above) / w_nucleus);
    nucleus_need =
        !(want < static_cast<float>(V)) ? V : max(1, static_cast<int>(want));
    // The kept ids at that key before this slice's first: the tie rank.
    int at_nucleus = 0;
    int r = tie_base;
    for (int i = begin; i < end; ++i) {
      const float w = weight(i, &r);
      at_nucleus += w > 0.0f && KeyAt(row, i) == nucleus;
    }
    int all_at_nucleus = 0;
    nucleus_base = BlockExclusiveScan(at_nucleus, &all_at_nucleus, int_scratch);
  }
  // A kept id's weight inside the nucleus, 0 outside it.
  auto nucleus_weight = [&](int i, int* tie_rank, int* nucleus_rank) -> float {
    const float w = weight(i, tie_rank);
    if (w <= 0.0f) return 0.0f;
    const uint32_t key = KeyAt(row, i);
    if (key > nucleus) return w;
    if (key < nucleus) return 0.0f;
    return (*nucleus_rank)++ < nucleus_need ? w : 0.0f;
  };
  if (top_p < 1.0f) {
    local = 0.0f;
    rank = tie_base;
    int nucleus_rank = nucleus_base;
    for (int i = begin; i < end; ++i) {
      local += nucleus_weight(i, &rank, &nucleus_rank);
    }
    base = BlockExclusiveScan(local, &total, float_scratch);
  }

  // The slice that holds target = u * total: the last one with weight that
  // starts at or below it. Its thread walks it.
  const double u = SampleUniform(JoinSeed(seeds + 2 * blockIdx.x), counter[0]);
  const float target = static_cast<float>(u * static_cast<double>(total));
  const int owner = BlockMaxInt(
      local > 0.0f && base <= target ? static_cast<int>(threadIdx.x) : -1,
      int_scratch);
  if (owner < 0) {  // cannot happen: thread 0's base is 0 <= target
    if (threadIdx.x == 0) tokens[blockIdx.x] = 0;
    return;
  }
  if (static_cast<int>(threadIdx.x) != owner) return;
  float running = base;
  int last_positive = begin;
  rank = tie_base;
  int nucleus_rank = nucleus_base;
  for (int i = begin; i < end; ++i) {
    const float w = nucleus_weight(i, &rank, &nucleus_rank);
    if (w <= 0.0f) continue;
    running += w;
    last_positive = i;
    if (target < running) {
      tokens[blockIdx.x] = i;
      return;
    }
  }
  tokens[blockIdx.x] = last_positive;
}

}  // namespace

void SampleTopK(Tensor tokens, Tensor logits, Tensor seeds, Tensor counter,
                int rows, int V, int Vp, int top_k, double temperature,
                double top_p, CUstream_st* stream) {
  GPT2_CHECK_MSG(tokens.dtype == DType::kI32 && seeds.dtype == DType::kI32 &&
                     counter.dtype == DType::kI32,
                 "SampleTopK: tokens, seeds and counter are i32");
  GPT2_CHECK(rows >= 1 && V >= 1 && V <= Vp && top_k >= 1 &&
             temperature > 0.0 && top_p > 0.0 && top_p <= 1.0);
  const float inv_temperature = static_cast<float>(1.0 / temperature);
  DispatchFloat(logits.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(GPT2_LAUNCH(SampleTopKKernel<F>, rows, kThreads, 0, stream,
                            Ptr<int32_t>(tokens), Ptr<F>(logits),
                            Ptr<int32_t>(seeds), Ptr<int32_t>(counter), V, Vp,
                            top_k, inv_temperature, static_cast<float>(top_p)),
                "SampleTopKKernel");
  });
}

}  // namespace gpt2::cuda
