// CUDA LayerNorm: one warp per row. The weight/bias gradients are
// deterministic: each block writes per-channel partial sums over its rows, then
// the partials are added in block order (src/cuda/reduce.cuh). Where C is a
// multiple of 32 lanes x 16 bytes and the tensors are 16-byte aligned, each
// warp holds its row in registers (16-byte loads and stores): the forward
// reads it once, and the backward is one pass that writes dinp and
// accumulates its rows' weight/bias gradients in registers; the block's warps
// add theirs in warp order.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "src/core/env.h"
#include "src/cuda/common.cuh"
#include "src/cuda/reduce.cuh"
#include "src/cuda/scratch.h"
#include "src/ops/layernorm.h"

namespace gpt2::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each at a time

// The LayerNorm of row `row` of x into y, by one warp; each lane touches the
// same channels in every pass, so a row the warp has just written reads back
// without a barrier.
template <typename T, typename TR>
__device__ __forceinline__ void NormalizeRow(T* y, float* mean, float* rstd,
                                             const TR* x, const T* weight,
                                             const T* bias, int64_t row,
                                             int C) {
  const int lane = threadIdx.x % 32;
  float sum = 0.0f;
  for (int c = lane; c < C; c += 32) sum += ToFloat(x[c]);
  const float m = WarpSum(sum) / C;
  float var = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = ToFloat(x[c]) - m;
    var += d * d;
  }
  const float s = rsqrtf(WarpSum(var) / C + 1e-5f);
  for (int c = lane; c < C; c += 32) {
    y[c] = FromFloat<T>((ToFloat(x[c]) - m) * s * ToFloat(weight[c]) +
                        ToFloat(bias[c]));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// T: activations and parameters; TR: the residual stream the LayerNorm reads
// (and the backward's dinp), T or f32 (train.residual_fp32).
template <typename T, typename TR>
__global__ void LayerNormForwardKernel(T* out, float* mean, float* rstd,
                                       const TR* inp, const T* weight,
                                       const T* bias, int64_t N, int C) {
  KernelPrologue();
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  NormalizeRow(out + row * C, mean, rstd, inp + row * C, weight, bias, row, C);
}

// residual = a + b (rounded to TR, as the unfused residual add stores it),
// then its LayerNorm: one pass over a and b instead of a residual kernel and a
// LayerNorm kernel reading the sum back. `a` and the residual are the stream
// (TR), `b` a branch's output (T).
template <typename T, typename TR>
__global__ void ResidualLayerNormForwardKernel(TR* residual, T* out,
                                               float* mean, float* rstd,
                                               const TR* a, const T* b,
                                               const T* weight, const T* bias,
                                               int64_t N, int C) {
  KernelPrologue();
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  TR* r = residual + row * C;
  for (int c = threadIdx.x % 32; c < C; c += 32)
    r[c] = FromFloat<TR>(ToFloat(a[row * C + c]) + ToFloat(b[row * C + c]));
  NormalizeRow(out + row * C, mean, rstd, r, weight, bias, row, C);
}

template <typename T, typename TR>
__global__ void LayerNormBackwardInputKernel(TR* dinp, const T* dout,
                                             const TR* inp, const T* weight,
                                             const float* mean,
                                             const float* rstd, int64_t N,
                                             int C) {
  KernelPrologue();
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  const TR* x = inp + row * C;
  const T* dy = dout + row * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float norm = (ToFloat(x[c]) - m) * s;
    const float dnorm = ToFloat(weight[c]) * ToFloat(dy[c]);
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * norm;
  }
  dnorm_mean = WarpSum(dnorm_mean) / C;
  dnorm_norm_mean = WarpSum(dnorm_norm_mean) / C;
  TR* dx = dinp + row * C;
  for (int c = lane; c < C; c += 32) {
    const float norm = (ToFloat(x[c]) - m) * s;
    const float dnorm = ToFloat(weight[c]) * ToFloat(dy[c]);
    dx[c] = FromFloat<TR>(ToFloat(dx[c]) +
                          (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
  }
}

// partial[block][c] and partial[blocks + block][c]: this block's rows' dweight,
// dbias.
template <typename T, typename TR>
__global__ void LayerNormBackwardParamPartials(float* partial, const T* dout,
                                               const TR* inp, const float* mean,
                                               const float* rstd, int64_t N,
                                               int C, int rows_per_block) {
  KernelPrologue();
  const int64_t row0 = blockIdx.x * int64_t{rows_per_block};
  const int64_t row1 = row0 + rows_per_block < N ? row0 + rows_per_block : N;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float dw = 0.0f, db = 0.0f;
    for (int64_t r = row0; r < row1; ++r) {
      const float dy = ToFloat(dout[r * C + c]);
      dw += (ToFloat(inp[r * C + c]) - mean[r]) * rstd[r] * dy;
      db += dy;
    }
    partial[int64_t{blockIdx.x} * C + c] = dw;
    partial[int64_t{gridDim.x + blockIdx.x} * C + c] = db;
  }
}

// The fused backward: one warp per row at a time, the rows dealt out to the
// grid's warps in turn (row r to warp r mod (blocks x kFusedWarps)), a lane
// holding kIters 16-byte packs of the row (C = kIters * 32 * kN). The grid is
// the blocks that fit the GPU at once (FusedBackwardBlocks): with a fixed
// kRowsPerWarp = 4 rows a warp, N = 16,384 took 1.29 waves of 3 blocks an SM on
// the H100, whose last 0.29 ran nearly alone (65% of the memory bandwidth,
// Nsight Compute); dealt out, each warp has 5 or 6 rows.
// kPrefetch: the row's inp, dout and dinp are all loaded before any is used
// (one wait on memory per row instead of two), held as they are stored, and
// the normalised values recomputed in the second pass, within 128 registers
// for two blocks an SM (where that fits: kPrefetchFits); else (the version
// measured on the H100: 1.57 ms a B=16 step) dinp is loaded after the row's
// sums. The same arithmetic in the same order: the same bits.
constexpr int kFusedWarps = 8;

// Whether the prefetching version fits two blocks an SM (128 registers) without
// spilling (ptxas sm_90: bf16 with C = 768 exactly, 128 registers; fp32
// residual stream or wider rows spill, and keep the other version).
template <typename T, typename TR, int kIters>
constexpr bool kPrefetchFits = std::is_same_v<T, TR>&& kIters <= 3;

// One channel of a row, the same arithmetic in both versions, every operation
// rounded on its own (the _rn intrinsics are never contracted into FMAs): the
// prefetching version recomputes norm and dnorm in its second pass where the
// other keeps them, and nvcc contracting `w * dy - mean` there but not here
// gave different fp32 bits on the H200 (logs/gpu_h200_2026-11-26_2).
struct ChannelTerms {
  float norm, dnorm;
};
__device__ __forceinline__ ChannelTerms LayerNormChannel(float x, float dy,
                                                         float w, float mean,
                                                         float rstd) {
  return {__fmul_rn(__fsub_rn(x, mean), rstd), __fmul_rn(w, dy)};
}
// The first pass's sums for one channel.
__device__ __forceinline__ void AddChannel(ChannelTerms t, float dy,
                                           float& dnorm_sum,
                                           float& dnorm_norm_sum, float& dw,
                                           float& db) {
  dnorm_sum = __fadd_rn(dnorm_sum, t.dnorm);
  dnorm_norm_sum = __fmaf_rn(t.dnorm, t.norm, dnorm_norm_sum);
  dw = __fmaf_rn(t.norm, dy, dw);
  db = __fadd_rn(db, dy);
}
// dinp's new value for one channel.
__device__ __forceinline__ float DinpPlus(float dinp, ChannelTerms t,
                                          float dnorm_mean,
                                          float dnorm_norm_mean, float rstd) {
  const float centred = __fsub_rn(t.dnorm, dnorm_mean);
  return __fmaf_rn(__fmaf_rn(-t.norm, dnorm_norm_mean, centred), rstd, dinp);
}

// The fused backward's two versions (the same bits): kSumsFirst loads dinp
// after the row's sums, its dweight and dbias sums in 2 kN kIters registers
// a lane (where a row's three tensors do not fit in registers at once: the
// fp32 residual stream, wide rows); kSharedSums loads inp, dout and dinp at
// once (one wait on memory per row instead of two) with each warp's sums in
// shared memory, for 3 blocks (24 warps) an SM (ptxas sm_90, bf16 C = 768:
// 80 registers and, with CUDA 13.0's ptxas, 4 bytes spilled; at 64 registers
// for 4 blocks it spills 136 bytes).
// On the H100 (B=16 step): 1.18-1.20 ms against 1.45-1.48 for kSumsFirst and
// 1.48-1.49 for the prefetch with its sums in registers at 2 blocks an SM
// (deleted).
enum class LnBackward { kSumsFirst, kSharedSums };
// The kSharedSums kernel's blocks an SM: its register cap, and the grid of
// one full wave (FusedBackwardBlocks).
constexpr int kSharedSumsBlocksPerSm = 3;

// Dynamic shared memory of a kSharedSums block: per warp, C floats of
// dweight sums and C of dbias sums, each indexed by SumSlot (48 KiB at bf16
// C = 768: no opt-in needed).
constexpr int SharedSumsBytes(int C) {
  return kFusedWarps * 2 * C * static_cast<int>(sizeof(float));
}
// Where channel (i * 32 + lane) * kN + j of a warp's sums sits: [j][i][lane],
// so the 32 lanes of an access hit 32 banks.
template <int kIters>
__device__ __forceinline__ int SumSlot(int i, int j, int lane) {
  return (j * kIters + i) * 32 + lane;
}

template <typename T, typename TR, int kIters, LnBackward kVersion>
__global__ void __launch_bounds__(32 * kFusedWarps,
                                  kVersion == LnBackward::kSharedSums
                                      ? kSharedSumsBlocksPerSm
                                      : 1)
    LayerNormBackwardFusedKernel(TR* dinp, float* partial, const T* dout,
                                 const TR* inp, const T* weight,
                                 const float* mean, const float* rstd,
                                 int64_t N) {
  KernelPrologue();
  // Both at once: the row prefetched, the sums in shared memory.
  constexpr bool kPrefetch = kVersion == LnBackward::kSharedSums;
  constexpr bool kShared = kPrefetch;
  constexpr int kN = Pack16<T>::kN;
  constexpr int kRPacks = kN / Pack16<TR>::kN;  // packs of TR per pack of T
  constexpr int C = kIters * 32 * kN;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // A lane's sums: in registers, or (kShared) in its warp's slices.
  float dw[kShared ? 1 : kIters][kN], db[kShared ? 1 : kIters][kN];
  float *warp_dw = nullptr, *warp_db = nullptr;
  if constexpr (kShared) {
    GPT2_EXTERN_SHARED(float, slices);  // [warp][dweight, dbias][SumSlot]
    warp_dw = slices + warp * 2 * C;
    warp_db = warp_dw + C;
    for (int i = 0; i < kIters; ++i) {
      for (int j = 0; j < kN; ++j) {
        warp_dw[SumSlot<kIters>(i, j, lane)] = 0.0f;
        warp_db[SumSlot<kIters>(i, j, lane)] = 0.0f;
      }
    }
  } else {
    for (int i = 0; i < kIters; ++i)
      for (int j = 0; j < kN; ++j) dw[i][j] = db[i][j] = 0.0f;
  }
  // The lane's sums of channel (i, j); each lane touches only its own.
  auto dw_at = [&](int i, int j) -> float& {
    if constexpr (kShared) return warp_dw[SumSlot<kIters>(i, j, lane)];
    return dw[kShared ? 0 : i][j];
  };
  auto db_at = [&](int i, int j) -> float& {
    if constexpr (kShared) return warp_db[SumSlot<kIters>(i, j, lane)];
    return db[kShared ? 0 : i][j];
  };
  // A 32-bit row counter (N < 2^31 rows), widened for addresses.
  const int rows_at_once = static_cast<int>(gridDim.x) * kFusedWarps;
  for (int r = static_cast<int>(blockIdx.x) * kFusedWarps + warp; r < N;
       r += rows_at_once) {
    const int64_t row = r;
    if constexpr (kPrefetch) {
      Pack16<TR> x_raw[kIters][kRPacks], dx_raw[kIters][kRPacks];
      Pack16<T> dy[kIters];
      for (int i = 0; i < kIters; ++i) {
        const int64_t at = row * C + (i * 32 + lane) * kN;
        for (int p = 0; p < kRPacks; ++p) {
          x_raw[i][p] = LoadPack16(inp + at + p * Pack16<TR>::kN);
          dx_raw[i][p] = LoadPack16(dinp + at + p * Pack16<TR>::kN);
        }
        dy[i] = LoadPack16(dout + at);
      }
      const float m = mean[row], s = rstd[row];
      auto x_of = [&](int i, int j) {
        return ToFloat(x_raw[i][j / Pack16<TR>::kN].v[j % Pack16<TR>::kN]);
      };
      float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
      for (int i = 0; i < kIters; ++i) {
        const Pack16<T> w = LoadPack16(weight + (i * 32 + lane) * kN);
        for (int j = 0; j < kN; ++j) {
          const float g = ToFloat(dy[i].v[j]);
          AddChannel(LayerNormChannel(x_of(i, j), g, ToFloat(w.v[j]), m, s), g,
                     dnorm_sum, dnorm_norm_sum, dw_at(i, j), db_at(i, j));
        }
      }
      const float dnorm_mean = WarpSum(dnorm_sum) / C;
      const float dnorm_norm_mean = WarpSum(dnorm_norm_sum) / C;
      for (int i = 0; i < kIters; ++i) {
        const int c = (i * 32 + lane) * kN;
        const Pack16<T> w = LoadPack16(weight + c);
        for (int j = 0; j < kN; ++j) {
          const ChannelTerms t = LayerNormChannel(
              x_of(i, j), ToFloat(dy[i].v[j]), ToFloat(w.v[j]), m, s);
          TR& dx = dx_raw[i][j / Pack16<TR>::kN].v[j % Pack16<TR>::kN];
          dx = FromFloat<TR>(
              DinpPlus(ToFloat(dx), t, dnorm_mean, dnorm_norm_mean, s));
        }
        for (int p = 0; p < kRPacks; ++p)
          StorePack16(dinp + row * C + c + p * Pack16<TR>::kN, dx_raw[i][p]);
      }
    } else {
      const float m = mean[row], s = rstd[row];
      ChannelTerms terms[kIters][kN];
      float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
      for (int i = 0; i < kIters; ++i) {
        const int c = (i * 32 + lane) * kN;
        float x[kN];
        LoadFloats<kN>(inp + row * C + c, x);
        const Pack16<T> dy = LoadPack16(dout + row * C + c);
        const Pack16<T> w = LoadPack16(weight + c);
        for (int j = 0; j < kN; ++j) {
          const float g = ToFloat(dy.v[j]);
          terms[i][j] = LayerNormChannel(x[j], g, ToFloat(w.v[j]), m, s);
          AddChannel(terms[i][j], g, dnorm_sum, dnorm_norm_sum, dw_at(i, j),
                     db_at(i, j));
        }
      }
      const float dnorm_mean = WarpSum(dnorm_sum) / C;
      const float dnorm_norm_mean = WarpSum(dnorm_norm_sum) / C;
      for (int i = 0; i < kIters; ++i) {
        const int c = (i * 32 + lane) * kN;
        float dx[kN];
        LoadFloats<kN>(dinp + row * C + c, dx);
        for (int j = 0; j < kN; ++j)
          dx[j] = DinpPlus(dx[j], terms[i][j], dnorm_mean, dnorm_norm_mean, s);
        StoreFloats<kN>(dinp + row * C + c, dx);
      }
    }
  }
  // The block's warps add their sums in warp order (deterministic): 0 + the
  // first warp's, then each next warp's, in every version.
  float* out_dw = partial + int64_t{blockIdx.x} * C;
  float* out_db = partial + int64_t{gridDim.x + blockIdx.x} * C;
  if constexpr (kShared) {
    __syncthreads();
    GPT2_EXTERN_SHARED(float, slices);  // every warp's, as at the start
    for (int slot = threadIdx.x; slot < C; slot += blockDim.x) {
      float sum_w = 0.0f, sum_b = 0.0f;
      for (int w = 0; w < kFusedWarps; ++w) {
        sum_w = __fadd_rn(sum_w, slices[w * 2 * C + slot]);
        sum_b = __fadd_rn(sum_b, slices[w * 2 * C + C + slot]);
      }
      // slot = (j * kIters + i) * 32 + lane: channel (i * 32 + lane) * kN + j.
      const int l = slot % 32, i = slot / 32 % kIters, j = slot / 32 / kIters;
      out_dw[(i * 32 + l) * kN + j] = sum_w;
      out_db[(i * 32 + l) * kN + j] = sum_b;
    }
  } else {
    __shared__ float block_sums[2][C];
    for (int w = 0; w < kFusedWarps; ++w) {
      if (warp == w) {
        for (int i = 0; i < kIters; ++i) {
          for (int j = 0; j < kN; ++j) {
            const int c = (i * 32 + lane) * kN + j;
            block_sums[0][c] =
                __fadd_rn(w == 0 ? 0.0f : block_sums[0][c], dw[i][j]);
            block_sums[1][c] =
                __fadd_rn(w == 0 ? 0.0f : block_sums[1][c], db[i][j]);
          }
        }
      }
      __syncthreads();
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      out_dw[c] = block_sums[0][c];
      out_db[c] = block_sums[1][c];
    }
  }
}

// The packed kernels hold a lane's share of a row in registers (the backward
// 4 floats per channel): up to 40 channels per lane (C <= 1280) that fits
// without spilling (ptxas sm_90, backward: bf16 C=768 128 registers, C=1280
// 195; spills from 56 on).
constexpr int kMaxPackedChannelsPerLane = 40;

// kIters of the fused backward for C channels of T, or 0 where it does not
// apply: C not a multiple of a warp's 16-byte packs, too wide a row, or a
// tensor not 16-byte aligned.
// GPT2_LAYERNORM_PACKED=0 makes it 0 everywhere: the general kernels for
// every shape (a switch for bisecting training differences on a GPU).
template <typename T>
int PackedRowIters(int C, std::initializer_list<const void*> ptrs) {
  constexpr int kWarpWidth = 32 * Pack16<T>::kN;
  static const bool packed = !EnvIs("GPT2_LAYERNORM_PACKED", "0");
  if (!packed) return 0;
  if (C % kWarpWidth != 0 || C / 32 > kMaxPackedChannelsPerLane) return 0;
  for (const void* p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return 0;
  }
  return C / kWarpWidth;
}

// Calls fn(integral_constant<int, kIters>) for the compiled fused variants of
// T: 1..5 packs of 8 bf16, 1..10 packs of 4 floats.
template <typename T, typename Fn>
void DispatchPackedIters(int iters, Fn&& fn) {
  static_assert(kMaxPackedChannelsPerLane == 40, "update the lists below");
  if constexpr (std::is_same_v<T, float>) {
    DispatchInt<1, 2, 3, 4, 5, 6, 7, 8, 9, 10>(
        iters, "LayerNormBackwardFusedKernel<float>", fn);
  } else {
    DispatchInt<1, 2, 3, 4, 5>(iters, "LayerNormBackwardFusedKernel<bf16>", fn);
  }
}

// The forward in 16-byte packs, one warp per row held in registers (the same
// shapes as the fused backward): with `a` and `b`, residual = a + b (rounded
// to TR) first, and the LayerNorm of that; with b null, of `a` as is. The
// row's a and b are all loaded before anything is stored (the compiler may
// not move a load above a store to what might be the same memory): one wait
// on memory a row instead of one a pack (the fused backward's prefetch won
// 1.18 against 1.45 ms on the H100 the same way).
template <typename T, typename TR, int kIters>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    LayerNormForwardPackedKernel(TR* residual, T* out, float* mean, float* rstd,
                                 const TR* a, const T* b, const T* weight,
                                 const T* bias, int64_t N) {
  KernelPrologue();
  constexpr int kN = Pack16<T>::kN;
  constexpr int C = kIters * 32 * kN;
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  float x[kIters][kN];
  Pack16<T> pb[kIters];
  for (int i = 0; i < kIters; ++i) {
    const int c = (i * 32 + lane) * kN;
    LoadFloats<kN>(a + row * C + c, x[i]);
    if (b != nullptr) pb[i] = LoadPack16(b + row * C + c);
  }
  float sum = 0.0f;
  for (int i = 0; i < kIters; ++i) {
    if (b != nullptr) {
      for (int j = 0; j < kN; ++j) {
        // Rounded to the stream's type, as stored.
        x[i][j] = ToFloat(FromFloat<TR>(x[i][j] + ToFloat(pb[i].v[j])));
      }
      StoreFloats<kN>(residual + row * C + (i * 32 + lane) * kN, x[i]);
    }
    for (int j = 0; j < kN; ++j) sum += x[i][j];
  }
  const float m = WarpSum(sum) / C;
  float var = 0.0f;
  for (int i = 0; i < kIters; ++i)
    for (int j = 0; j < kN; ++j) var += (x[i][j] - m) * (x[i][j] - m);
  const float s = rsqrtf(WarpSum(var) / C + 1e-5f);
  for (int i = 0; i < kIters; ++i) {
    const int c = (i * 32 + lane) * kN;
    const Pack16<T> w = LoadPack16(weight + c), bi = LoadPack16(bias + c);
    Pack16<T> y;
    for (int j = 0; j < kN; ++j) {
      y.v[j] =
          FromFloat<T>((x[i][j] - m) * s * ToFloat(w.v[j]) + ToFloat(bi.v[j]));
    }
    StorePack16(out + row * C + c, y);
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// Launches the packed forward (residual and b null: a plain LayerNorm of a).
template <typename F, typename R>
void LaunchPackedForward(int iters, R* residual, F* out, float* mean,
                         float* rstd, const R* a, const F* b, const F* weight,
                         const F* bias, int64_t N, CUstream_st* stream) {
  DispatchPackedIters<F>(iters, [&](auto k) {
    CheckLaunch(
        GPT2_LAUNCH((LayerNormForwardPackedKernel<F, R, decltype(k)::value>),
                    CeilDiv(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream,
                    residual, out, mean, rstd, a, b, weight, bias, N),
        "LayerNormForwardPackedKernel");
  });
}

// The fused backward's grid: the blocks the GPU holds at once (3 an SM, the
// shared-sums version's occupancy), fewer where N has fewer rows than their
// warps. Both versions take the same grid, so they deal rows out alike and
// add the same partial sums (the same bits).
int FusedBackwardBlocks(int64_t N) {
  static const int resident = [] {
    const int sms = CurrentDeviceAttribute(cudaDevAttrMultiProcessorCount, 0);
    return kSharedSumsBlocksPerSm * (sms > 0 ? sms : 132);
  }();
  return static_cast<int>(std::min<int64_t>(resident, CeilDiv(N, kFusedWarps)));
}

bool& PrefetchSetting() {
  // GPT2_LAYERNORM_PREFETCH=0: the backward loading dinp after the sums.
  static bool prefetch = !EnvIs("GPT2_LAYERNORM_PREFETCH", "0");
  return prefetch;
}

}  // namespace

void SetLayerNormBackwardPrefetch(bool on) { PrefetchSetting() = on; }
bool LayerNormBackwardPrefetch() { return PrefetchSetting(); }

void LayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                      Tensor weight, Tensor bias, int64_t N, int C,
                      CUstream_st* stream) {
  DispatchFloat2(out.dtype, inp.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    const int iters =
        PackedRowIters<F>(C, {out.data, inp.data, weight.data, bias.data});
    if (iters > 0) {
      return LaunchPackedForward<F, R>(
          iters, nullptr, Ptr<F>(out), Ptr<float>(mean), Ptr<float>(rstd),
          Ptr<R>(inp), nullptr, Ptr<F>(weight), Ptr<F>(bias), N, stream);
    }
    CheckLaunch(
        GPT2_LAUNCH((LayerNormForwardKernel<F, R>), CeilDiv(N, kRowsPerBlock),
                    32 * kRowsPerBlock, 0, stream, Ptr<F>(out),
                    Ptr<float>(mean), Ptr<float>(rstd), Ptr<R>(inp),
                    Ptr<F>(weight), Ptr<F>(bias), N, C),
        "LayerNormForwardKernel");
  });
}

void ResidualLayerNormForward(Tensor residual, Tensor out, Tensor mean,
                              Tensor rstd, Tensor a, Tensor b, Tensor weight,
                              Tensor bias, int64_t N, int C,
                              CUstream_st* stream) {
  DispatchFloat2(out.dtype, residual.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    const int iters = PackedRowIters<F>(
        C, {residual.data, out.data, a.data, b.data, weight.data, bias.data});
    if (iters > 0) {
      return LaunchPackedForward<F, R>(iters, Ptr<R>(residual), Ptr<F>(out),
                                       Ptr<float>(mean), Ptr<float>(rstd),
                                       Ptr<R>(a), Ptr<F>(b), Ptr<F>(weight),
                                       Ptr<F>(bias), N, stream);
    }
    CheckLaunch(GPT2_LAUNCH((ResidualLayerNormForwardKernel<F, R>),
                            CeilDiv(N, kRowsPerBlock), 32 * kRowsPerBlock, 0,
                            stream, Ptr<R>(residual), Ptr<F>(out),
                            Ptr<float>(mean), Ptr<float>(rstd), Ptr<R>(a),
                            Ptr<F>(b), Ptr<F>(weight), Ptr<F>(bias), N, C),
                "ResidualLayerNormForwardKernel");
  });
}

void LayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                       Tensor inp, Tensor weight, Tensor mean, Tensor rstd,
                       int64_t N, int C, Scratch* scratch, CUstream_st* stream,
                       ParamGrads dparams) {
  DispatchFloat2(dout.dtype, dinp.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    const int iters =
        PackedRowIters<F>(C, {dinp.data, dout.data, inp.data, weight.data});
    constexpr int kParamRows = 64;
    const int blocks = iters > 0 ? FusedBackwardBlocks(N)
                                 : static_cast<int>(CeilDiv(N, kParamRows));
    auto* partial = static_cast<float*>(scratch->Get(
        sizeof(float) * 2 * static_cast<size_t>(blocks) * C, stream));
    if (iters > 0) {
      DispatchPackedIters<F>(iters, [&](auto k) {
        constexpr int kIters = decltype(k)::value;
        auto* kernel =
            &LayerNormBackwardFusedKernel<F, R, kIters, LnBackward::kSumsFirst>;
        int smem = 0;
        if constexpr (kPrefetchFits<F, R, kIters>) {
          if (LayerNormBackwardPrefetch()) {
            kernel = &LayerNormBackwardFusedKernel<F, R, kIters,
                                                   LnBackward::kSharedSums>;
            smem = SharedSumsBytes(C);
          }
        }
        CheckLaunch(
            GPT2_LAUNCH(kernel, blocks, 32 * kFusedWarps, smem, stream,
                        Ptr<R>(dinp), partial, Ptr<F>(dout), Ptr<R>(inp),
                        Ptr<F>(weight), Ptr<float>(mean), Ptr<float>(rstd), N),
            "LayerNormBackwardFusedKernel");
      });
    } else {
      CheckLaunch(
          GPT2_LAUNCH((LayerNormBackwardInputKernel<F, R>),
                      CeilDiv(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream,
                      Ptr<R>(dinp), Ptr<F>(dout), Ptr<R>(inp), Ptr<F>(weight),
                      Ptr<float>(mean), Ptr<float>(rstd), N, C),
          "LayerNormBackwardInputKernel");
      CheckLaunch(
          GPT2_LAUNCH((LayerNormBackwardParamPartials<F, R>), blocks, 256, 0,
                      stream, partial, Ptr<F>(dout), Ptr<R>(inp),
                      Ptr<float>(mean), Ptr<float>(rstd), N, C, kParamRows),
          "LayerNormBackwardParamPartials");
    }
    const dim3 block(kColumnTile, kRowLanes);
    // dweight (blockIdx.y 0) and dbias (1) in one launch: 2 C / 32 blocks.
    CheckLaunch(
        GPT2_LAUNCH(AddColumnSumsKernel<F>, dim3(CeilDiv(C, kColumnTile), 2),
                    block, 0, stream, Ptr<F>(dweight), partial, blocks, C,
                    Ptr<F>(dbias), dparams == ParamGrads::kOverwrite),
        "AddColumnSumsKernel(dweight, dbias)");
  });
}

}  // namespace gpt2::cuda
