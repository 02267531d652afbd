// CUDA causal attention, flash-style: the forward pass keeps only each row's
// log-sum-exp; the backward recomputes the probabilities. No (B, NH, T, T)
// tensor is ever written, and the backward needs no atomics: dK/dV and dQ come
// from separate kernels. bf16 with the usual head sizes runs on tensor cores
// (src/ops/attention_tc.cu); the portable kernels here cover every other case
// (fp32 for tight parity, odd head sizes): one thread owns one query (or key)
// row and keys/queries stream through shared memory in tiles.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "src/core/env.h"
#include "src/core/error.h"
#include "src/core/process_clock.h"
#include "src/cuda/common.cuh"
#include "src/cuda/mma_check.h"
#include "src/cuda/scratch.h"
#include "src/ops/attention.h"
#include "src/ops/attention_tc.h"

namespace gpt2::cuda {
namespace {

constexpr int kRows = 64;  // query (or key) rows per block, one per thread
constexpr int kTile = 32;  // keys (or queries) per shared-memory tile

// Index of element d of head h's q (part 0), k (1) or v (2) at position t of
// batch b.
__device__ __forceinline__ int64_t QkvIndex(int b, int t, int part, int h,
                                            int d, int T_, int C, int hs) {
  return (int64_t{b} * T_ + t) * 3 * C + int64_t{part} * C + int64_t{h} * hs +
         d;
}

// Rows [row0, row0 + kTile) of head h's part (0 q, 1 k, 2 v) into a shared
// tile, zero past the sequence. Every thread of the block takes part.
template <typename T, int HS>
__device__ __forceinline__ void LoadQkvTile(float (*tile)[HS], const T* qkv,
                                            int b, int row0, int part, int h,
                                            int T_, int C) {
  for (int i = threadIdx.x; i < kTile * HS; i += blockDim.x) {
    const int t = row0 + i / HS, d = i % HS;
    tile[i / HS][d] =
        t < T_ ? ToFloat(qkv[QkvIndex(b, t, part, h, d, T_, C, HS)]) : 0.0f;
  }
}

template <typename T, int HS>
__global__ void AttentionForwardKernel(T* out, float* lse, const T* qkv, int T_,
                                       int C, int NH, float scale) {
  KernelPrologue();
  __shared__ float keys[kTile][HS];
  __shared__ float values[kTile][HS];
  const int b = blockIdx.z, h = blockIdx.y;
  const int t = blockIdx.x * kRows + threadIdx.x;
  const bool active = t < T_;
  float q[HS], acc[HS];
  for (int d = 0; d < HS; ++d) {
    q[d] = active ? ToFloat(qkv[QkvIndex(b, t, 0, h, d, T_, C, HS)]) * scale
                  : 0.0f;
    acc[d] = 0.0f;
  }
  float row_max = -INFINITY, row_sum = 0.0f;
  const int last_key = min(T_ - 1, int(blockIdx.x) * kRows + kRows - 1);
  for (int k0 = 0; k0 <= last_key; k0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    LoadQkvTile<T, HS>(keys, qkv, b, k0, 1, h, T_, C);
    LoadQkvTile<T, HS>(values, qkv, b, k0, 2, h, T_, C);
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < kTile && k0 + j <= t; ++j) {
      float score = 0.0f;
      for (int d = 0; d < HS; ++d) score += q[d] * keys[j][d];
      if (score > row_max) {  // rescale what was accumulated under the old max
        const float correction = expf(row_max - score);
        row_sum *= correction;
        for (int d = 0; d < HS; ++d) acc[d] *= correction;
        row_max = score;
      }
      const float p = expf(score - row_max);
      row_sum += p;
      for (int d = 0; d < HS; ++d) acc[d] += p * values[j][d];
    }
  }
  if (!active) return;
  T* o = out + (int64_t{b} * T_ + t) * C + int64_t{h} * HS;
  for (int d = 0; d < HS; ++d) o[d] = FromFloat<T>(acc[d] / row_sum);
  lse[(int64_t{b} * NH + h) * T_ + t] = row_max + logf(row_sum);
}

// delta[b, h, t] = dout . out over the head's channels.
template <typename T>
__global__ void AttentionDeltaKernel(float* delta, const T* dout, const T* out,
                                     int B, int T_, int C, int NH) {
  KernelPrologue();
  const int64_t i =
      blockIdx.x * int64_t{blockDim.x} + threadIdx.x;  // (b, h, t)
  if (i >= int64_t{B} * NH * T_) return;
  const int t = static_cast<int>(i % T_);
  const int h = static_cast<int>((i / T_) % NH);
  const int b = static_cast<int>(i / (int64_t{T_} * NH));
  const int hs = C / NH;
  const int64_t base = (int64_t{b} * T_ + t) * C + int64_t{h} * hs;
  float sum = 0.0f;
  for (int d = 0; d < hs; ++d)
    sum += ToFloat(dout[base + d]) * ToFloat(out[base + d]);
  delta[i] = sum;
}

// The same sums with coalesced 16-byte loads: thread i takes pack i of the
// (B, T, C) tensors, and the kLanes neighbouring threads that hold one head's
// channels (HS / 8 for bf16) add their dot products with shuffles. (The
// kernel above reads each row's channels one by one, a row per thread: every
// load of a warp touches 32 rows.)
template <typename T, int kLanes>
__global__ void AttentionDeltaPackedKernel(float* delta, const T* dout,
                                           const T* out, int64_t packs, int T_,
                                           int C, int NH) {
  KernelPrologue();
  constexpr int kN = Pack16<T>::kN;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  float sum = 0.0f;
  if (i < packs) {  // no early return: the whole warp shuffles
    const Pack16<T> a = LoadPack16(dout + i * kN), b = LoadPack16(out + i * kN);
    for (int j = 0; j < kN; ++j) sum += ToFloat(a.v[j]) * ToFloat(b.v[j]);
  }
  for (int offset = kLanes / 2; offset > 0; offset /= 2)
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (i < packs && i % kLanes == 0) {
    const int64_t row = i / (C / kN);  // b * T + t
    const int h = static_cast<int>(i % (C / kN)) / kLanes;
    delta[(row / T_ * NH + h) * T_ + row % T_] = sum;
  }
}

// Launches the delta sums: packed where the head's channels are whole 16-byte
// packs, a power of two of them (at most a warp), and the tensors aligned;
// else one row per thread.
template <typename F>
void LaunchAttentionDelta(float* delta, const F* dout, const F* out, int B,
                          int T, int C, int NH, CUstream_st* stream) {
  constexpr int kN = Pack16<F>::kN;
  const int hs = C / NH;
  const int lanes = hs / kN;
  const bool packed = hs % kN == 0 && lanes >= 1 && lanes <= 32 &&
                      (lanes & (lanes - 1)) == 0 &&
                      reinterpret_cast<uintptr_t>(dout) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (packed) {
    const int64_t packs = int64_t{B} * T * C / kN;
    DispatchInt<1, 2, 4, 8, 16, 32>(
        lanes, "AttentionDeltaPackedKernel (lanes)", [&](auto k) {
          CheckLaunch(
              GPT2_LAUNCH((AttentionDeltaPackedKernel<F, decltype(k)::value>),
                          CeilDiv(packs, 256), 256, 0, stream, delta, dout, out,
                          packs, T, C, NH),
              "AttentionDeltaPackedKernel");
        });
    return;
  }
  const int64_t rows = int64_t{B} * NH * T;
  CheckLaunch(GPT2_LAUNCH(AttentionDeltaKernel<F>, CeilDiv(rows, 256), 256, 0,
                          stream, delta, dout, out, B, T, C, NH),
              "AttentionDeltaKernel");
}

template <typename T, int HS>
__global__ void AttentionBackwardQueryKernel(T* dqkv, const T* dout,
                                             const T* qkv, const float* lse,
                                             const float* delta, int T_, int C,
                                             int NH, float scale) {
  KernelPrologue();
  __shared__ float keys[kTile][HS];
  __shared__ float values[kTile][HS];
  const int b = blockIdx.z, h = blockIdx.y;
  const int t = blockIdx.x * kRows + threadIdx.x;
  const bool active = t < T_;
  float q[HS], dy[HS], dq[HS];
  const int64_t out_base = (int64_t{b} * T_ + t) * C + int64_t{h} * HS;
  for (int d = 0; d < HS; ++d) {
    q[d] = active ? ToFloat(qkv[QkvIndex(b, t, 0, h, d, T_, C, HS)]) : 0.0f;
    dy[d] = active ? ToFloat(dout[out_base + d]) : 0.0f;
    dq[d] = 0.0f;
  }
  const int64_t stat = (int64_t{b} * NH + h) * T_ + t;
  const float row_lse = active ? lse[stat] : 0.0f;
  const float row_delta = active ? delta[stat] : 0.0f;
  const int last_key = min(T_ - 1, int(blockIdx.x) * kRows + kRows - 1);
  for (int k0 = 0; k0 <= last_key; k0 += kTile) {
    __syncthreads();
    LoadQkvTile<T, HS>(keys, qkv, b, k0, 1, h, T_, C);
    LoadQkvTile<T, HS>(values, qkv, b, k0, 2, h, T_, C);
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < kTile && k0 + j <= t; ++j) {
      float score = 0.0f, dp = 0.0f;
      for (int d = 0; d < HS; ++d) {
        score += q[d] * keys[j][d];
        dp += dy[d] * values[j][d];
      }
      const float p = expf(score * scale - row_lse);
      const float dscore = p * (dp - row_delta) * scale;
      for (int d = 0; d < HS; ++d) dq[d] += dscore * keys[j][d];
    }
  }
  if (!active) return;
  for (int d = 0; d < HS; ++d)
    dqkv[QkvIndex(b, t, 0, h, d, T_, C, HS)] = FromFloat<T>(dq[d]);
}

template <typename T, int HS>
__global__ void AttentionBackwardKeyValueKernel(T* dqkv, const T* dout,
                                                const T* qkv, const float* lse,
                                                const float* delta, int T_,
                                                int C, int NH, float scale) {
  KernelPrologue();
  __shared__ float queries[kTile][HS];
  __shared__ float douts[kTile][HS];
  __shared__ float tile_lse[kTile], tile_delta[kTile];
  const int b = blockIdx.z, h = blockIdx.y;
  const int s = blockIdx.x * kRows + threadIdx.x;  // this thread's key row
  const bool active = s < T_;
  float k[HS], v[HS], dk[HS], dv[HS];
  for (int d = 0; d < HS; ++d) {
    k[d] = active ? ToFloat(qkv[QkvIndex(b, s, 1, h, d, T_, C, HS)]) : 0.0f;
    v[d] = active ? ToFloat(qkv[QkvIndex(b, s, 2, h, d, T_, C, HS)]) : 0.0f;
    dk[d] = dv[d] = 0.0f;
  }
  // Queries at or after the block's first key see its keys.
  const int first_query = int(blockIdx.x) * kRows;
  for (int q0 = first_query; q0 < T_; q0 += kTile) {
    __syncthreads();
    LoadQkvTile<T, HS>(queries, qkv, b, q0, 0, h, T_, C);
    for (int i = threadIdx.x; i < kTile * HS; i += blockDim.x) {
      const int t = q0 + i / HS, d = i % HS;
      douts[i / HS][d] =
          t < T_
              ? ToFloat(dout[(int64_t{b} * T_ + t) * C + int64_t{h} * HS + d])
              : 0.0f;
    }
    for (int j = threadIdx.x; j < kTile; j += blockDim.x) {
      const int t = q0 + j;
      const int64_t stat = (int64_t{b} * NH + h) * T_ + t;
      tile_lse[j] = t < T_ ? lse[stat] : 0.0f;
      tile_delta[j] = t < T_ ? delta[stat] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < kTile && q0 + j < T_; ++j) {
      if (q0 + j < s) continue;  // causal: query before this key
      float score = 0.0f, dp = 0.0f;
      for (int d = 0; d < HS; ++d) {
        score += queries[j][d] * k[d];
        dp += douts[j][d] * v[d];
      }
      const float p = expf(score * scale - tile_lse[j]);
      const float dscore = p * (dp - tile_delta[j]) * scale;
      for (int d = 0; d < HS; ++d) {
        dv[d] += p * douts[j][d];
        dk[d] += dscore * queries[j][d];
      }
    }
  }
  if (!active) return;
  for (int d = 0; d < HS; ++d) {
    dqkv[QkvIndex(b, s, 1, h, d, T_, C, HS)] = FromFloat<T>(dk[d]);
    dqkv[QkvIndex(b, s, 2, h, d, T_, C, HS)] = FromFloat<T>(dv[d]);
  }
}

// Decoding: one block per (row, head). The new position's k and v go into the
// caches; then each warp takes every kDecodeWarps-th cache position, its lanes
// over the head's channels (rows read whole): first the scores (in dynamic
// shared memory), then, after the softmax statistics, its share of p . V; the
// warps' shares are added in warp order. Head size at most 32 *
// kDecodeChannelsPerLane.
// scores[0..pos] (each thread's share written, `local_max` its largest)
// become exp(score - the largest); returns their sum. Every thread of the
// block calls it; its barriers publish the scores to the whole block.
__device__ __forceinline__ float DecodeSoftmax(float* scores, int pos,
                                               float local_max, float* reduce) {
  const float max_score = BlockMax(local_max, reduce);
  float local_sum = 0.0f;
  for (int s = threadIdx.x; s <= pos; s += blockDim.x) {
    scores[s] = expf(scores[s] - max_score);
    local_sum += scores[s];
  }
  return BlockSum(local_sum, reduce);
}

constexpr int kDecodeWarps = 4;
constexpr int kDecodeChannelsPerLane = 4;
template <typename T>
__global__ void __launch_bounds__(32 * kDecodeWarps)
    AttentionDecodeKernel(T* out, T* k_cache, T* v_cache, const T* qkv,
                          int max_T, const int32_t* position, int C, int NH,
                          float scale) {
  KernelPrologue();
  constexpr int kMaxHs = 32 * kDecodeChannelsPerLane;
  __shared__ float reduce[32];
  __shared__ float shares[kDecodeWarps][kMaxHs];
  GPT2_EXTERN_SHARED(float, scores);  // (max_T)
  const int pos = *position;
  if (pos < 0 || pos >= max_T) return;  // the caller's contract; uniform
  const int b = blockIdx.x, h = blockIdx.y, hs = C / NH;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T* row = qkv + int64_t{b} * 3 * C;
  const int64_t cache_row = (int64_t{b} * max_T) * C + int64_t{h} * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    k_cache[cache_row + int64_t{pos} * C + i] = row[C + h * hs + i];
    v_cache[cache_row + int64_t{pos} * C + i] = row[2 * C + h * hs + i];
  }
  __syncthreads();
  float q[kDecodeChannelsPerLane];
  for (int j = 0; j < kDecodeChannelsPerLane; ++j) {
    const int d = lane + 32 * j;
    q[j] = d < hs ? ToFloat(row[h * hs + d]) : 0.0f;
  }
  float local_max = -INFINITY;
  for (int s = warp; s <= pos; s += kDecodeWarps) {
    const T* k = k_cache + cache_row + int64_t{s} * C;
    float dot = 0.0f;
    for (int j = 0; j < kDecodeChannelsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < hs) dot += q[j] * ToFloat(k[d]);
    }
    dot = WarpSum(dot) * scale;  // every lane has it
    if (lane == 0) scores[s] = dot;
    local_max = fmaxf(local_max, dot);
  }
  const float sum = DecodeSoftmax(scores, pos, local_max, reduce);
  float acc[kDecodeChannelsPerLane] = {};
  for (int s = warp; s <= pos; s += kDecodeWarps) {
    const float p = scores[s];
    const T* v = v_cache + cache_row + int64_t{s} * C;
    for (int j = 0; j < kDecodeChannelsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < hs) acc[j] += p * ToFloat(v[d]);
    }
  }
  for (int j = 0; j < kDecodeChannelsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < hs) shares[warp][d] = acc[j];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float total = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) total += shares[w][d];
    out[int64_t{b} * C + h * hs + d] = FromFloat<T>(total / sum);
  }
}

// Decoding, many positions at once: one block per (row, head), 256 threads.
// Scores: each thread takes whole cache positions (every 256th), reading a key
// row in 16-byte pieces against q in shared memory, so all threads have loads
// in flight at once. p . V: the block's threads form groups of hs / kN (one
// 16-byte piece of a value row each), group g taking positions g, g + groups,
// ...; the groups' sums are added in group order. Head size a multiple of kN
// (16 bytes of T), at most kMaxHs; rows 16-byte aligned. The same arithmetic
// as AttentionDecodeKernel, summed in another order.
constexpr int kDecodeWideThreads = 256;
template <typename T>
__global__ void __launch_bounds__(kDecodeWideThreads)
    AttentionDecodeWideKernel(T* out, T* k_cache, T* v_cache, const T* qkv,
                              int max_T, const int32_t* position, int C, int NH,
                              float scale) {
  KernelPrologue();
  constexpr int kN = Pack16<T>::kN;
  constexpr int kMaxHs = 32 * kDecodeChannelsPerLane;
  __shared__ float reduce[32];
  __shared__ float q[kMaxHs];
  __shared__ float partial[kDecodeWideThreads * kN];  // (groups, hs)
  GPT2_EXTERN_SHARED(float, scores);                  // (max_T)
  const int pos = *position;
  if (pos < 0 || pos >= max_T) return;  // the caller's contract; uniform
  const int b = blockIdx.x, h = blockIdx.y, hs = C / NH;
  const T* row = qkv + int64_t{b} * 3 * C;
  const int64_t cache_row = (int64_t{b} * max_T) * C + int64_t{h} * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    k_cache[cache_row + int64_t{pos} * C + i] = row[C + h * hs + i];
    v_cache[cache_row + int64_t{pos} * C + i] = row[2 * C + h * hs + i];
    q[i] = ToFloat(row[h * hs + i]);
  }
  __syncthreads();
  float local_max = -INFINITY;
  for (int s = threadIdx.x; s <= pos; s += blockDim.x) {
    const T* k = k_cache + cache_row + int64_t{s} * C;
    float dot = 0.0f;
    for (int d0 = 0; d0 < hs; d0 += kN) {
      const Pack16<T> piece = LoadPack16(k + d0);
#pragma unroll
      for (int j = 0; j < kN; ++j) dot += q[d0 + j] * ToFloat(piece.v[j]);
    }
    dot *= scale;
    scores[s] = dot;
    local_max = fmaxf(local_max, dot);
  }
  const float sum = DecodeSoftmax(scores, pos, local_max, reduce);
  const int row_threads = hs / kN, groups = blockDim.x / row_threads;
  const int group = threadIdx.x / row_threads,
            d0 = (threadIdx.x % row_threads) * kN;
  if (group < groups) {
    float acc[kN] = {};
    for (int s = group; s <= pos; s += groups) {
      const float p = scores[s];
      const Pack16<T> piece =
          LoadPack16(v_cache + cache_row + int64_t{s} * C + d0);
#pragma unroll
      for (int j = 0; j < kN; ++j) acc[j] += p * ToFloat(piece.v[j]);
    }
#pragma unroll
    for (int j = 0; j < kN; ++j) partial[group * hs + d0 + j] = acc[j];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float total = 0.0f;
    for (int g = 0; g < groups; ++g) total += partial[g * hs + d];
    out[int64_t{b} * C + h * hs + d] = FromFloat<T>(total / sum);
  }
}

}  // namespace

bool WgmmaRegsAllowed() {
  static const bool allowed = !EnvIs("GPT2_ATTENTION_WGMMA_REGS", "0");
  return allowed;
}

bool WgmmaPipelinedAllowed() {
  static const bool allowed = !EnvIs("GPT2_ATTENTION_WGMMA_PIPELINED", "0");
  return allowed;
}

bool WgmmaWideAllowed() {
  static const bool allowed = !EnvIs("GPT2_ATTENTION_WGMMA_WIDE", "0");
  return allowed;
}

bool WgmmaFourBlocksDqAllowed() {
  static const bool allowed = !EnvIs("GPT2_ATTENTION_WGMMA_DQ4", "0");
  return allowed;
}

bool WgmmaSplitAllowed() {
  static const bool allowed = !EnvIs("GPT2_ATTENTION_WGMMA_SPLIT", "0");
  return allowed;
}

namespace {

// kWgmmaRegs as kWgmmaBeside where the register versions are barred,
// kWgmmaWide where the wide ones are and kWgmmaSplit where the split ones
// are; the one place both the environment's choice and SetAttentionKernels
// pass through.
AttentionKernels BarRegs(AttentionKernels k) {
  return (k == AttentionKernels::kWgmmaRegs && !WgmmaRegsAllowed()) ||
                 (k == AttentionKernels::kWgmmaWide && !WgmmaWideAllowed()) ||
                 (k == AttentionKernels::kWgmmaSplit && !WgmmaSplitAllowed())
             ? AttentionKernels::kWgmmaBeside
             : k;
}

AttentionKernels& KernelChoice() {
  static AttentionKernels choice = [] {
    if (EnvIs("GPT2_PORTABLE_ATTENTION", "1"))
      return AttentionKernels::kPortable;
    AttentionKernels kernels =
        EnvIs("GPT2_ATTENTION_LDMATRIX", "0")
            ? AttentionKernels::kTransposedTiles
        : EnvIs("GPT2_ATTENTION_LEAN", "1") ? AttentionKernels::kLeanBackward
        : EnvIs("GPT2_ATTENTION_LEAN", "kv")
            ? AttentionKernels::kLeanKeyValueBackward
        : EnvIs("GPT2_ATTENTION_LEAN", "beside")
            ? AttentionKernels::kLeanBesideBackward
        : EnvIs("GPT2_ATTENTION_LEAN", "0")
            ? AttentionKernels::kRegisterBackward
        : EnvIs("GPT2_ATTENTION_WGMMA", "1") ? AttentionKernels::kWgmma
        : EnvIs("GPT2_ATTENTION_WGMMA", "beside")
            ? AttentionKernels::kWgmmaBeside
        : EnvIs("GPT2_ATTENTION_WGMMA", "regs")
            ? BarRegs(AttentionKernels::kWgmmaRegs)
        : EnvIs("GPT2_ATTENTION_WGMMA", "wide")
            ? BarRegs(AttentionKernels::kWgmmaWide)
        : EnvIs("GPT2_ATTENTION_WGMMA", "split")
            ? BarRegs(AttentionKernels::kWgmmaSplit)
            : AttentionKernels::kAuto;
    // The tensor-core kernels rest on two register layouts (mma.sync's
    // fragments, ldmatrix.trans's): check them on this device once, in a
    // millisecond, and fall back rather than train on garbage if the
    // hardware disagrees.
    if (tc::Supports(DType::kBF16, 64)) {
      std::string why = CheckMmaLayout();
      if (!why.empty()) {
        Warning(absl::StrCat("tensor-core self-check failed (", why,
                             "): portable attention kernels"));
        return AttentionKernels::kPortable;
      }
      if (kernels != AttentionKernels::kTransposedTiles &&
          !(why = CheckLdMatrixLayout()).empty()) {
        Warning(absl::StrCat("ldmatrix self-check failed (", why,
                             "): tensor-core attention with transposed tiles"));
        kernels = AttentionKernels::kTransposedTiles;
      }
      // The wgmma kernels' layouts likewise, now (not inside a graph capture
      // later): where the device could run them and the check fails, they
      // are never chosen, and the user is told.
      const std::string wgmma = EnvIs("GPT2_ATTENTION_WGMMA", "0")
                                    ? std::string()
                                    : tc::WgmmaWhyNot();
      if (!wgmma.empty() && wgmma.find(kNoWgmmaHere) == std::string::npos) {
        Warning(absl::StrCat(wgmma, ": mma.sync attention kernels only"));
      }
    }
    return kernels;
  }();
  return choice;
}

bool TensorCoresFor(DType dtype, int head_size) {
  return KernelChoice() != AttentionKernels::kPortable &&
         tc::Supports(dtype, head_size);
}

bool FixedWgmma(AttentionKernels k) {
  return k == AttentionKernels::kWgmma || k == AttentionKernels::kWgmmaBeside ||
         k == AttentionKernels::kWgmmaRegs ||
         k == AttentionKernels::kWgmmaWide ||
         k == AttentionKernels::kWgmmaSplit;
}

// Whether the wgmma kernels run for these tensors: kAuto (timed against the
// others) or kWgmma, unless GPT2_ATTENTION_WGMMA=0, where tc::WgmmaSupports.
bool WgmmaFor(DType dtype, int head_size) {
  static const bool allowed = !EnvIs("GPT2_ATTENTION_WGMMA", "0");
  const AttentionKernels k = KernelChoice();
  return allowed && (k == AttentionKernels::kAuto || FixedWgmma(k)) &&
         tc::WgmmaSupports(dtype, head_size);
}

bool Ldmatrix() {
  const AttentionKernels k = KernelChoice();
  return k == AttentionKernels::kAuto || FixedWgmma(k) ||
         k == AttentionKernels::kLeanBackward ||
         k == AttentionKernels::kRegisterBackward ||
         k == AttentionKernels::kLeanKeyValueBackward ||
         k == AttentionKernels::kLeanBesideBackward;
}

// The tensor-core backward's versions (ldmatrix): the block's own rows in
// registers, in shared memory (lean), lean in the dK/dV kernel only, the two
// lean kernels side by side on two streams. (A version making dQ in the lean
// dK/dV kernel, each score computed once, the key blocks' shares added in a
// fixed order, lost by 2x on the H100 and the H200, 0.97 ms a layer against
// 0.45: deleted.)
// kWgmma*: Hopper's wgmma kernels (timed only where WgmmaFor), one after the
// other or dQ beside dK/dV on a second stream. (Lost on the H100 and
// deleted: the wgmma dK/dV kernel overlapping its math with its products at 2
// blocks an SM, 0.376 ms a layer against 0.323 for the plain wgmma pair;
// wgmma dK/dV with the lean mma.sync dQ beside it, 0.367 against 0.310 for
// the wgmma pair beside; the wgmma pair holding each block's own rows in
// registers, one after the other or beside, 0.32-0.33 against 0.25 at B=16.)
// kWgmmaWideBeside: the wide dQ kernel (two warpgroups a block sharing the
// key and value tiles) beside the wgmma dK/dV kernel; kWgmmaFourBlocksBeside:
// the dQ kernel at 4 blocks an SM (tc::WgmmaDq) there; kWgmmaSplitBeside: the
// split dQ kernel beside the split dK/dV kernel (two warpgroups a block
// taking its tiles in turn: half the longest chain, for small batches).
enum BackwardVersion {
  kRegisters = 0,
  kLean = 1,
  kLeanKeyValue = 2,
  kLeanBeside = 3,
  kWgmmaVersion = 4,
  kWgmmaBeside = 5,
  kWgmmaWideBeside = 6,
  kWgmmaFourBlocksBeside = 7,
  kWgmmaSplitBeside = 8
};
const char* const kBackwardNames[] = {"registers",
                                      "lean",
                                      "lean dK/dV",
                                      "lean, dQ beside dK/dV",
                                      "wgmma",
                                      "wgmma, dQ beside dK/dV",
                                      "wgmma, wide dQ beside dK/dV",
                                      "wgmma, 4-block dQ beside dK/dV",
                                      "wgmma, split dQ beside split dK/dV"};
constexpr int kVersions = 9;
bool IsWgmma(BackwardVersion v) {
  return v == kWgmmaVersion || v == kWgmmaBeside || v == kWgmmaWideBeside ||
         v == kWgmmaFourBlocksBeside || v == kWgmmaSplitBeside;
}

// A second stream for the dQ kernel of kLeanBeside, with the events that fork
// it from the caller's stream and join it back. The dK/dV kernel holds 3
// blocks (12 warps) an SM by its registers and the dQ kernel 4; side by side a
// dQ block fits beside two dK/dV blocks, and neither kernel's last blocks run
// alone. Created at first use, on the device current then (one per process).
struct SideStream {
  cudaStream_t stream = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};
SideStream& Side() {
  static SideStream side = [] {
    SideStream s;
    GPT2_CUDA_CHECK(
        cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    GPT2_CUDA_CHECK(cudaEventCreateWithFlags(&s.fork, cudaEventDisableTiming));
    GPT2_CUDA_CHECK(cudaEventCreateWithFlags(&s.join, cudaEventDisableTiming));
    return s;
  }();
  return side;
}

// Runs version v of the tensor-core backward (ldmatrix).
void RunBackward(BackwardVersion v, Tensor dqkv, Tensor dout, Tensor qkv,
                 const float* lse, const float* delta, int B, int T, int C,
                 int NH, CUstream_st* stream) {
  if (v == kLeanKeyValue || v == kLeanBeside || v == kWgmmaBeside ||
      v == kWgmmaWideBeside || v == kWgmmaFourBlocksBeside ||
      v == kWgmmaSplitBeside) {
    // The two kernels one by one: the lean dK/dV kernel, then the register
    // (kLeanKeyValue) or lean (kLeanBeside) dQ kernel; or the wgmma ones
    // (kWgmma*Beside). The beside versions run dQ on the side stream, forked
    // before the dK/dV kernel (which takes the SMs first) and joined after:
    // the two write disjoint columns of dqkv, and the caller's stream goes on
    // only once both are done.
    const bool beside = v != kLeanKeyValue;
    CUstream_st* query_stream = stream;
    if (beside) {
      SideStream& side = Side();
      GPT2_CUDA_CHECK(cudaEventRecord(side.fork, stream));
      GPT2_CUDA_CHECK(cudaStreamWaitEvent(side.stream, side.fork, 0));
      query_stream = side.stream;
    }
    if (IsWgmma(v)) {
      const bool split = v == kWgmmaSplitBeside;
      tc::WgmmaAttentionBackward(
          dqkv, dout, qkv, lse, delta, B, T, C, NH, stream, tc::kKeyValuePart,
          tc::DefaultWgmmaDq(),
          split ? tc::WgmmaKv::kSplit : tc::WgmmaKv::kPlain);
      tc::WgmmaAttentionBackward(dqkv, dout, qkv, lse, delta, B, T, C, NH,
                                 query_stream, tc::kQueryPart,
                                 v == kWgmmaWideBeside ? tc::WgmmaDq::kWide
                                 : v == kWgmmaFourBlocksBeside
                                     ? tc::WgmmaDq::kFourBlocks
                                 : split ? tc::WgmmaDq::kSplit
                                         : tc::DefaultWgmmaDq());
    } else {
      tc::AttentionBackward(dqkv, dout, qkv, lse, delta, B, T, C, NH, true,
                            true, stream, tc::kKeyValuePart);
      tc::AttentionBackward(dqkv, dout, qkv, lse, delta, B, T, C, NH, true,
                            beside, query_stream, tc::kQueryPart);
    }
    if (beside) {
      GPT2_CUDA_CHECK(cudaEventRecord(Side().join, query_stream));
      GPT2_CUDA_CHECK(cudaStreamWaitEvent(stream, Side().join, 0));
    }
    return;
  }
  if (IsWgmma(v)) {
    return tc::WgmmaAttentionBackward(dqkv, dout, qkv, lse, delta, B, T, C, NH,
                                      stream);
  }
  tc::AttentionBackward(dqkv, dout, qkv, lse, delta, B, T, C, NH, true,
                        v == kLean, stream);
}

std::string& AutoChoiceNote() {
  static std::string note;
  return note;
}
std::string& OrderChoiceNote() {
  static std::string note;
  return note;
}

std::string FormatMs(float ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f ms", ms);
  return text;
}

// Host seconds spent in Fastest (AttentionChoiceSeconds).
double& ChoiceSeconds() {
  static double seconds = 0.0;
  return seconds;
}

// Times fn(0), ..., fn(n - 1) (after a warm-up, three rounds of one launch
// each, the versions in turn so that a drift of the clock or the card's
// temperature touches them alike) and returns the one with the least median,
// with a note of every median. Not in the emulator (its clock says
// nothing of a GPU; 0) nor inside a graph capture (0, no note).
template <typename Fn>
int Fastest(CUstream_st* stream, const char* const* names, int n, int B, int T,
            std::string* note, Fn&& fn) {
#if defined(GPT2_CUDA_EMULATED)
  (void)stream, (void)names, (void)n, (void)B, (void)T, (void)note, (void)fn;
  return 0;
#else
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
      capture != cudaStreamCaptureStatusNone) {
    return 0;
  }
  const auto began = std::chrono::steady_clock::now();
  cudaEvent_t start = nullptr, end = nullptr;
  GPT2_CUDA_CHECK(cudaEventCreate(&start));
  GPT2_CUDA_CHECK(cudaEventCreate(&end));
  constexpr int kRounds = 3;
  std::vector<std::vector<float> > rounds(n, std::vector<float>(kRounds));
  for (int pass = 0; pass <= kRounds; ++pass) {  // pass 0: the warm-up
    for (int v = 0; v < n; ++v) {
      GPT2_CUDA_CHECK(cudaEventRecord(start, stream));
      fn(v);
      GPT2_CUDA_CHECK(cudaEventRecord(end, stream));
      GPT2_CUDA_CHECK(cudaEventSynchronize(end));
      if (pass > 0) {
        GPT2_CUDA_CHECK(cudaEventElapsedTime(&rounds[v][pass - 1], start, end));
      }
    }
  }
  GPT2_CUDA_CHECK(cudaEventDestroy(start));
  GPT2_CUDA_CHECK(cudaEventDestroy(end));
  std::vector<float> ms(n);
  for (int v = 0; v < n; ++v) {
    std::sort(rounds[v].begin(), rounds[v].end());
    ms[v] = rounds[v][kRounds / 2];
  }
  int best = 0;
  for (int v = 1; v < n; ++v) best = ms[v] < ms[best] ? v : best;
  std::string text = std::string(names[best]) + " (" + FormatMs(ms[best]);
  for (int v = 0; v < n; ++v) {
    if (v != best) text += " against " + FormatMs(ms[v]) + " with " + names[v];
  }
  *note = text + ", one layer, B=" + std::to_string(B) +
          " T=" + std::to_string(T) + ")";
  ChoiceSeconds() += SecondsSince(began);
  return best;
#endif
}

// kAuto's backward version: each timed once, on the first call's tensors
// (which the real call then overwrites), the fastest kept.
BackwardVersion AutoBackward(Tensor dqkv, Tensor dout, Tensor qkv,
                             const float* lse, const float* delta, int B, int T,
                             int C, int NH, CUstream_st* stream) {
  // One choice for tensors the wgmma kernels take and one for the others:
  // a wgmma version timed on head size 64 is never run on another.
  static int choices[2] = {-1, -1};
  const bool wgmma = WgmmaFor(dout.dtype, C / NH);
  int& choice = choices[wgmma ? 1 : 0];
  if (choice < 0) {
    std::vector<BackwardVersion> versions;
    std::vector<const char*> names;
    for (int v = 0; v < kVersions; ++v) {
      const auto version = static_cast<BackwardVersion>(v);
      if (IsWgmma(version) && !wgmma) continue;
      if (version == kWgmmaWideBeside && !WgmmaWideAllowed()) continue;
      if (version == kWgmmaFourBlocksBeside && !WgmmaFourBlocksDqAllowed())
        continue;
      if (version == kWgmmaSplitBeside && !WgmmaSplitAllowed()) continue;
      versions.push_back(version);
      names.push_back(kBackwardNames[v]);
    }
    choice = versions[Fastest(stream, names.data(),
                              static_cast<int>(versions.size()), B, T,
                              &AutoChoiceNote(), [&](int i) {
                                RunBackward(versions[i], dqkv, dout, qkv, lse,
                                            delta, B, T, C, NH, stream);
                              })];
  }
  return static_cast<BackwardVersion>(choice);
}

// The blocks' order (tc::BlockGroup): unless GPT2_ATTENTION_GROUP fixed it,
// the first tensor-core backward times backward version v with the longest
// row blocks of groups of pairs first and head by head (the H100 run's
// order), and every attention kernel keeps the faster.
void ChooseBlockOrder(BackwardVersion v, Tensor dqkv, Tensor dout, Tensor qkv,
                      const float* lse, const float* delta, int B, int T, int C,
                      int NH, CUstream_st* stream) {
  static bool chosen = tc::BlockGroupFixed();
  if (chosen) return;
  chosen = true;
  const int group = tc::BlockGroup();
  const std::string grouped =
      "longest first in groups of " + std::to_string(group) + " pairs";
  const char* const names[] = {grouped.c_str(), "head by head"};
  const int pick =
      Fastest(stream, names, 2, B, T, &OrderChoiceNote(), [&](int order) {
        tc::SetBlockGroup(order == 0 ? group : 1);
        RunBackward(v, dqkv, dout, qkv, lse, delta, B, T, C, NH, stream);
      });
  tc::SetBlockGroup(pick == 0 ? group : 1);
}

// ...and for these tensors, which the kernels read 16 bytes at a time.
bool UseTensorCores(DType dtype, int head_size,
                    std::initializer_list<const void*> pointers) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return TensorCoresFor(dtype, head_size);
}

}  // namespace

void SetAttentionKernels(AttentionKernels kernels) {
  KernelChoice() = BarRegs(kernels);
}

// The forward's version where wgmma runs: chosen by timing at the first
// tensor-core forward (0 mma.sync, 1 wgmma, 2 wgmma pipelined, 3 wgmma with
// Q in registers, 4 both, 5 wgmma with two warpgroups a block, 6 wgmma with
// two warpgroups taking a block's key tiles in turn: WgmmaForm), or fixed by
// kWgmma* (1, 3 for kWgmmaRegs, 5 for kWgmmaWide, 6 for kWgmmaSplit); 0 where
// wgmma does not run.
std::string& ForwardChoiceNote() {
  static std::string note;
  return note;
}
tc::WgmmaForwardForm WgmmaForm(int version) {
  tc::WgmmaForwardForm form;
  form.own_rows_in_registers = version == 3 || version == 4;
  form.pipelined = version == 2 || version == 4;
  form.wide = version == 5;
  form.split = version == 6;
  return form;
}
int ForwardVersion(Tensor out, Tensor lse, Tensor qkv, int B, int T, int C,
                   int NH, CUstream_st* stream) {
  if (!WgmmaFor(out.dtype, C / NH)) return 0;
  if (FixedWgmma(KernelChoice())) {
    return KernelChoice() == AttentionKernels::kWgmmaRegs    ? 3
           : KernelChoice() == AttentionKernels::kWgmmaWide  ? 5
           : KernelChoice() == AttentionKernels::kWgmmaSplit ? 6
                                                             : 1;
  }
  static int version = -1;
  if (version < 0) {
    static const char* const kNames[] = {"mma.sync",
                                         "wgmma",
                                         "wgmma, pipelined",
                                         "wgmma, Q in registers",
                                         "wgmma, pipelined, Q in registers",
                                         "wgmma, 128 rows",
                                         "wgmma, split keys"};
    std::vector<int> versions;
    std::vector<const char*> names;
    for (int v = 0; v < 7; ++v) {
      const tc::WgmmaForwardForm form = WgmmaForm(v);
      if ((form.own_rows_in_registers && !WgmmaRegsAllowed()) ||
          (form.pipelined && !WgmmaPipelinedAllowed()) ||
          (form.wide && !WgmmaWideAllowed()) ||
          (form.split && !WgmmaSplitAllowed()))
        continue;
      versions.push_back(v);
      names.push_back(kNames[v]);
    }
    version = versions[Fastest(
        stream, names.data(), static_cast<int>(versions.size()), B, T,
        &ForwardChoiceNote(), [&](int i) {
          if (versions[i] > 0) {
            tc::WgmmaAttentionForward(out, lse, qkv, B, T, C, NH,
                                      WgmmaForm(versions[i]), stream);
          } else {
            tc::AttentionForward(out, lse, qkv, B, T, C, NH, true, stream);
          }
        })];
  }
  return version;
}

std::string AttentionForwardChoice() { return ForwardChoiceNote(); }

double AttentionChoiceSeconds() { return ChoiceSeconds(); }

std::string AttentionBackwardChoice() {
  std::string note = AutoChoiceNote();
  if (!OrderChoiceNote().empty())
    note +=
        (note.empty() ? "block order " : "; block order ") + OrderChoiceNote();
  return note;
}

const char* AttentionKernelName(DType dtype, int head_size) {
  // Training's tensors are aligned (device allocations, offsets in multiples
  // of the head size), so the alignment test does not change the answer.
  if (!TensorCoresFor(dtype, head_size)) return "portable";
  if (FixedWgmma(KernelChoice()) && WgmmaFor(dtype, head_size)) {
    return KernelChoice() == AttentionKernels::kWgmma ? "tensor-core-wgmma"
           : KernelChoice() == AttentionKernels::kWgmmaBeside
               ? "tensor-core-wgmma-beside"
           : KernelChoice() == AttentionKernels::kWgmmaWide
               ? "tensor-core-wgmma-wide"
           : KernelChoice() == AttentionKernels::kWgmmaSplit
               ? "tensor-core-wgmma-split"
               : "tensor-core-wgmma-regs";
  }
  if (KernelChoice() == AttentionKernels::kLeanBackward)
    return "tensor-core-lean";
  if (KernelChoice() == AttentionKernels::kLeanKeyValueBackward)
    return "tensor-core-lean-kv";
  if (KernelChoice() == AttentionKernels::kLeanBesideBackward)
    return "tensor-core-lean-beside";
  return Ldmatrix() ? "tensor-core" : "tensor-core-tt";
}

void AttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T, int C,
                      int NH, CUstream_st* stream) {
  const int hs = C / NH;
  if (UseTensorCores(out.dtype, hs, {out.data, qkv.data})) {
    const int version =
        Ldmatrix() ? ForwardVersion(out, lse, qkv, B, T, C, NH, stream) : 0;
    if (version > 0) {
      return tc::WgmmaAttentionForward(out, lse, qkv, B, T, C, NH,
                                       WgmmaForm(version), stream);
    }
    return tc::AttentionForward(out, lse, qkv, B, T, C, NH, Ldmatrix(), stream);
  }
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  const dim3 grid(CeilDiv(T, kRows), NH, B);
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    DispatchInt<4, 8, 16, 32, 64, 128>(
        hs, "CUDA attention (head size)", [&](auto head) {
          CheckLaunch(
              GPT2_LAUNCH((AttentionForwardKernel<F, decltype(head)::value>),
                          grid, kRows, 0, stream, Ptr<F>(out), Ptr<float>(lse),
                          Ptr<F>(qkv), T, C, NH, scale),
              "AttentionForwardKernel");
        });
  });
}

void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                       Tensor lse, int B, int T, int C, int NH,
                       Scratch* scratch, CUstream_st* stream) {
  const int hs = C / NH;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  const int64_t rows = int64_t{B} * NH * T;
  const bool tensor_cores =
      UseTensorCores(dout.dtype, hs, {dqkv.data, dout.data, qkv.data});
  auto* delta = static_cast<float*>(scratch->Get(sizeof(float) * rows, stream));
  const dim3 grid(CeilDiv(T, kRows), NH, B);
  DispatchFloat(dout.dtype, [&](auto zero) {
    using F = decltype(zero);
    LaunchAttentionDelta<F>(delta, Ptr<F>(dout), Ptr<F>(out), B, T, C, NH,
                            stream);
    if (tensor_cores) {
      const AttentionKernels k = KernelChoice();
      const BackwardVersion version =
          k == AttentionKernels::kAuto
              ? AutoBackward(dqkv, dout, qkv, Ptr<float>(lse), delta, B, T, C,
                             NH, stream)
          : k == AttentionKernels::kLeanBackward         ? kLean
          : k == AttentionKernels::kLeanKeyValueBackward ? kLeanKeyValue
          : k == AttentionKernels::kLeanBesideBackward   ? kLeanBeside
          : FixedWgmma(k)
              ? (WgmmaFor(dout.dtype, hs)
                     ? (k == AttentionKernels::kWgmma        ? kWgmmaVersion
                        : k == AttentionKernels::kWgmmaWide  ? kWgmmaWideBeside
                        : k == AttentionKernels::kWgmmaSplit ? kWgmmaSplitBeside
                                                             : kWgmmaBeside)
                     : AutoBackward(dqkv, dout, qkv, Ptr<float>(lse), delta, B,
                                    T, C, NH, stream))
              : kRegisters;
      if (!Ldmatrix()) {  // transposed tiles
        return tc::AttentionBackward(dqkv, dout, qkv, Ptr<float>(lse), delta, B,
                                     T, C, NH, false, false, stream);
      }
      ChooseBlockOrder(version, dqkv, dout, qkv, Ptr<float>(lse), delta, B, T,
                       C, NH, stream);
      return RunBackward(version, dqkv, dout, qkv, Ptr<float>(lse), delta, B, T,
                         C, NH, stream);
    }
    DispatchInt<4, 8, 16, 32, 64, 128>(
        hs, "CUDA attention (head size)", [&](auto head) {
          constexpr int kHs = decltype(head)::value;
          CheckLaunch(
              GPT2_LAUNCH((AttentionBackwardQueryKernel<F, kHs>), grid, kRows,
                          0, stream, Ptr<F>(dqkv), Ptr<F>(dout), Ptr<F>(qkv),
                          Ptr<float>(lse), delta, T, C, NH, scale),
              "AttentionBackwardQueryKernel");
          CheckLaunch(
              GPT2_LAUNCH((AttentionBackwardKeyValueKernel<F, kHs>), grid,
                          kRows, 0, stream, Ptr<F>(dqkv), Ptr<F>(dout),
                          Ptr<F>(qkv), Ptr<float>(lse), delta, T, C, NH, scale),
              "AttentionBackwardKeyValueKernel");
        });
  });
}

void AttentionDecode(Tensor out, Tensor k_cache, Tensor v_cache, Tensor qkv,
                     int B, int max_T, Tensor pos, int C, int NH,
                     CUstream_st* stream) {
  const int hs = C / NH;
  if (hs > 32 * kDecodeChannelsPerLane) {
    ::gpt2::FatalError("CUDA decode attention supports head sizes up to " +
                           std::to_string(32 * kDecodeChannelsPerLane) +
                           "; got " + std::to_string(hs),
                       __FILE__, __LINE__);
  }
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  // Room for any position: the launch must not depend on it.
  const size_t smem = sizeof(float) * max_T;
  // The wide kernel where its 16-byte reads line up (GPT-2's shapes): 3.2x
  // the warp-per-position kernel's tokens/s over 1,000 positions on the H200
  // (logs/gpu_h200_2026-11-26_2); that one serves the other head sizes.
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    constexpr int kN = Pack16<F>::kN;
    const bool aligned = hs % kN == 0 && C % kN == 0 &&
                         reinterpret_cast<uintptr_t>(k_cache.data) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(v_cache.data) % 16 == 0;
    if (aligned) {
      CheckLaunch(GPT2_LAUNCH(AttentionDecodeWideKernel<F>, dim3(B, NH),
                              kDecodeWideThreads, smem, stream, Ptr<F>(out),
                              Ptr<F>(k_cache), Ptr<F>(v_cache), Ptr<F>(qkv),
                              max_T, Ptr<int32_t>(pos), C, NH, scale),
                  "AttentionDecodeWideKernel");
      return;
    }
    CheckLaunch(
        GPT2_LAUNCH(AttentionDecodeKernel<F>, dim3(B, NH), 32 * kDecodeWarps,
                    smem, stream, Ptr<F>(out), Ptr<F>(k_cache), Ptr<F>(v_cache),
                    Ptr<F>(qkv), max_T, Ptr<int32_t>(pos), C, NH, scale),
        "AttentionDecodeKernel");
  });
}

}  // namespace gpt2::cuda

namespace gpt2::cuda {
namespace {

// x[i] = scale * (a hash of i and seed, uniform in [-1, 1)).
__global__ void FillHashKernel(bf16* x, int64_t n, uint32_t seed, float scale) {
  KernelPrologue();
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += stride) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    x[i] =
        FromFloat<bf16>(scale * (static_cast<float>(h) * 4.656613e-10f - 1.0f));
  }
}

}  // namespace

std::vector<AttentionKernelTime> ProfileAttentionKernels(int B, int T, int C,
                                                         int NH, int reps,
                                                         CUstream_st* stream) {
  std::vector<AttentionKernelTime> times;
  const int hs = C / NH;
  if (reps < 1 || C % NH != 0 || !tc::Supports(DType::kBF16, hs)) return times;
  const int64_t rows = int64_t{B} * T, stats = int64_t{B} * NH * T;
  bf16 *qkv = nullptr, *out = nullptr, *dout = nullptr, *dqkv = nullptr;
  float *lse = nullptr, *delta = nullptr;
  GPT2_CUDA_CHECK(cudaMalloc(&qkv, sizeof(bf16) * rows * 3 * C));
  GPT2_CUDA_CHECK(cudaMalloc(&dqkv, sizeof(bf16) * rows * 3 * C));
  GPT2_CUDA_CHECK(cudaMalloc(&out, sizeof(bf16) * rows * C));
  GPT2_CUDA_CHECK(cudaMalloc(&dout, sizeof(bf16) * rows * C));
  GPT2_CUDA_CHECK(cudaMalloc(&lse, sizeof(float) * stats));
  GPT2_CUDA_CHECK(cudaMalloc(&delta, sizeof(float) * stats));
  CheckLaunch(GPT2_LAUNCH(FillHashKernel, 256, 256, 0, stream, qkv,
                          rows * 3 * C, 1u, 1.0f),
              "FillHashKernel");
  CheckLaunch(GPT2_LAUNCH(FillHashKernel, 256, 256, 0, stream, dout, rows * C,
                          2u, 0.1f),
              "FillHashKernel");
  const Tensor t_qkv{qkv, DType::kBF16, rows * 3 * C},
      t_dqkv{dqkv, DType::kBF16, rows * 3 * C},
      t_out{out, DType::kBF16, rows * C}, t_dout{dout, DType::kBF16, rows * C},
      t_lse{lse, DType::kF32, stats};
  cudaEvent_t start = nullptr, end = nullptr;
  GPT2_CUDA_CHECK(cudaEventCreate(&start));
  GPT2_CUDA_CHECK(cudaEventCreate(&end));
  // One product over the causal half of the scores: 2 * (B NH T (T + 1) / 2)
  // * hs flops.
  const double product = static_cast<double>(B) * NH * T * (T + 1.0) * hs;
  auto time = [&](const std::string& kernel, double flops, auto&& launch) {
    launch();  // warm-up (and the forward's out and lse for what follows)
    std::vector<float> ms(reps);
    for (int r = 0; r < reps; ++r) {
      GPT2_CUDA_CHECK(cudaEventRecord(start, stream));
      launch();
      GPT2_CUDA_CHECK(cudaEventRecord(end, stream));
      GPT2_CUDA_CHECK(cudaEventSynchronize(end));
      GPT2_CUDA_CHECK(cudaEventElapsedTime(&ms[r], start, end));
    }
    std::sort(ms.begin(), ms.end());
    times.push_back({kernel, ms[reps / 2], flops});
  };
  for (const bool ldm : {true, false}) {
    time(ldm ? "forward (ldmatrix)" : "forward (transposed tiles)", 2 * product,
         [&] {
           tc::AttentionForward(t_out, t_lse, t_qkv, B, T, C, NH, ldm, stream);
         });
  }
  time("delta (dout . out)", 2.0 * rows * C, [&] {
    LaunchAttentionDelta<bf16>(delta, dout, out, B, T, C, NH, stream);
  });
  for (int version = 0; version < 3; ++version) {
    const bool ldm = version < 2, lean = version == 1;
    const std::string tag = version == 0   ? " (ldmatrix)"
                            : version == 1 ? " (ldmatrix, lean)"
                                           : " (transposed tiles)";
    time("dK, dV" + tag, 4 * product, [&] {
      tc::AttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C, NH, ldm,
                            lean, stream, tc::kKeyValuePart);
    });
    time("dQ" + tag, 3 * product, [&] {
      tc::AttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C, NH, ldm,
                            lean, stream, tc::kQueryPart);
    });
  }
  // The same kernels with their blocks started pair after pair (the order
  // the H100 run measured) instead of longest first across pair groups.
  const int group = tc::BlockGroup();
  tc::SetBlockGroup(1);
  time("forward (ldmatrix, head by head)", 2 * product, [&] {
    tc::AttentionForward(t_out, t_lse, t_qkv, B, T, C, NH, true, stream);
  });
  time("dK, dV (ldmatrix, lean, head by head)", 4 * product, [&] {
    tc::AttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C, NH, true,
                          true, stream, tc::kKeyValuePart);
  });
  time("dQ (ldmatrix, head by head)", 3 * product, [&] {
    tc::AttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C, NH, true,
                          false, stream, tc::kQueryPart);
  });
  tc::SetBlockGroup(group);
  if (tc::WgmmaSupports(DType::kBF16, hs)) {  // Hopper's versions
    const auto forward = [&](bool regs) {
      const std::string how = regs ? ", own rows in registers)" : ")";
      for (const bool pipelined : {false, true}) {
        time(pipelined ? "forward (wgmma, pipelined" + how
                       : "forward (wgmma" + how,
             2 * product, [&] {
               tc::WgmmaAttentionForward(t_out, t_lse, t_qkv, B, T, C, NH,
                                         {regs, pipelined}, stream);
             });
      }
    };
    forward(false);
    time("forward (wgmma, 128 rows)", 2 * product, [&] {
      tc::WgmmaAttentionForward(t_out, t_lse, t_qkv, B, T, C, NH,
                                {false, false, true}, stream);
    });
    time("forward (wgmma, split keys)", 2 * product, [&] {
      tc::WgmmaAttentionForward(t_out, t_lse, t_qkv, B, T, C, NH,
                                {false, false, false, true}, stream);
    });
    time("dK, dV (wgmma)", 4 * product, [&] {
      tc::WgmmaAttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C, NH,
                                 stream, tc::kKeyValuePart);
    });
    time("dK, dV (wgmma, split queries)", 4 * product, [&] {
      tc::WgmmaAttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C, NH,
                                 stream, tc::kKeyValuePart, tc::WgmmaDq::kPlain,
                                 tc::WgmmaKv::kSplit);
    });
    for (const auto [dq, name] :
         {std::pair{tc::WgmmaDq::kPlain, "dQ (wgmma)"},
          std::pair{tc::WgmmaDq::kPipelined, "dQ (wgmma, pipelined)"},
          std::pair{tc::WgmmaDq::kWide, "dQ (wgmma, 128 rows)"},
          std::pair{tc::WgmmaDq::kFourBlocks, "dQ (wgmma, 4 blocks an SM)"},
          std::pair{tc::WgmmaDq::kSplit, "dQ (wgmma, split keys)"}}) {
      time(name, 3 * product, [&, dq = dq] {
        tc::WgmmaAttentionBackward(t_dqkv, t_dout, t_qkv, lse, delta, B, T, C,
                                   NH, stream, tc::kQueryPart, dq);
      });
    }
    forward(true);
  }
  GPT2_CUDA_CHECK(cudaEventDestroy(start));
  GPT2_CUDA_CHECK(cudaEventDestroy(end));
  for (void* p : {static_cast<void*>(qkv), static_cast<void*>(dqkv),
                  static_cast<void*>(out), static_cast<void*>(dout),
                  static_cast<void*>(lse), static_cast<void*>(delta)}) {
    GPT2_CUDA_CHECK(cudaFree(p));
  }
  return times;
}

}  // namespace gpt2::cuda
