// Causal attention on tensor cores (mma.sync m16n8k16, bf16 in, fp32
// accumulate), flash-style: the forward pass keeps each row's log-sum-exp
// only, and the backward recomputes the probabilities from it.
//
// A block is 4 warps and owns 64 rows (queries, or keys in the dK/dV kernel),
// 16 per warp; the other side streams through shared memory in tiles of 64.
// Every operand of an mma is either a register fragment of the warp's own rows
// or a shared tile stored [n][k] row-major (src/cuda/mma.cuh has the layout),
// so fragment loads are plain 32-bit reads; rows are padded by 8 bf16 so the
// 32 lanes of such a read hit 32 different banks.
//
// The backward has no atomics, so it is deterministic: one kernel makes dK and
// dV per key block, another dQ per query block (recomputing the scores once
// more, the price of determinism).
//
// Two versions (kLdm): the second products read the streamed tiles as stored,
// through ldmatrix.trans, and the next tiles load by cp.async into a second
// set of buffers while the current ones are used; or (the version measured on
// the first H200 run) transposed copies are made, and each tile is loaded
// before it is used.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "src/cuda/async_copy.cuh"
#include "src/cuda/common.cuh"
#include "src/cuda/mma.cuh"
#include "src/cuda/mma_check.h"
#include "src/cuda/wgmma.cuh"
#include "src/ops/attention_tc.h"

namespace gpt2::cuda::tc {
namespace {

constexpr int kRows = 64;  // rows per block: 4 warps of 16
constexpr int kThreads = 128;
constexpr int kTile = 64;  // rows of the streamed side per shared tile
constexpr int kPad = 8;    // bf16 of padding per shared row
constexpr int kTileT = kTile + kPad;  // row length of a transposed tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t Load32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// 2^x as the hardware's ex2 with denormal results flushed to zero: one
// instruction (exp2f, which keeps denormals, adds a range check and two
// predicated multiplies around it, for every score). A probability below
// 2^-126 next to a row sum of at least 1 changes nothing. The emulator flushes
// the exact value the same way.
__device__ __forceinline__ float Exp2Ftz(float x) {
#if defined(GPT2_CUDA_EMULATED)
  const float r = exp2f(x);
  return r < 0x1p-126f ? 0.0f : r;
#elif defined(__CUDA_ARCH__)
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#else
  return exp2f(x);
#endif
}

// Rows [row0, row0 + 64) of a (T, HS) slice whose rows are `stride` elements
// apart, into tile[r][d] (row length HS + kPad); zeros past row T.
template <int HS>
__device__ __forceinline__ void LoadRows(bf16* tile, const bf16* src,
                                         int64_t stride, int row0, int T) {
  constexpr int kChunks = HS / 8;  // 16-byte chunks per row
  for (int i = threadIdx.x; i < kTile * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row0 + r < T)
      v = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + c);
    *reinterpret_cast<uint4*>(tile + r * (HS + kPad) + c) = v;
  }
}

// LoadRows through cp.async: queued, complete after CpAsyncWait and a barrier.
template <int HS>
__device__ __forceinline__ void LoadRowsAsync(bf16* tile, const bf16* src,
                                              int64_t stride, int row0, int T) {
  constexpr int kChunks = HS / 8;
  for (int i = threadIdx.x; i < kTile * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const bool valid = row0 + r < T;
    CpAsync16(tile + r * (HS + kPad) + c,
              valid ? src + (row0 + r) * stride + c : src, valid);
  }
}

// Rows [row0, row0 + 64) of a (T, 64) slice whose rows are `stride` apart,
// queued by cp.async into a TileIndex tile (src/cuda/wgmma.cuh); zeros past row
// T. Lanes 8 i .. 8 i + 7 take one 16-byte chunk of 8 neighbouring rows: a warp
// reads 8 rows x 64 contiguous bytes, and the 8 lanes of each store phase fill
// one 128-byte core matrix (no bank conflicts).
__device__ __forceinline__ void LoadTileAsync(bf16* tile, const bf16* src,
                                              int64_t stride, int row0, int T) {
  for (int i = threadIdx.x; i < kTile * 8; i += kThreads) {
    const int r = (i / 64) * 8 + i % 8, chunk = (i / 8) % 8;
    const bool valid = row0 + r < T;
    CpAsync16(tile + TileIndex(r, 8 * chunk),
              valid ? src + (row0 + r) * stride + 8 * chunk : src, valid);
  }
}

// The pipelined kernels' step for key tile kt of K and V (queued one step
// before): wait for it, then queue tile kt + 1 into the other buffers unless
// kt is the last. The barrier also means every warp is done with tile kt - 1,
// whose buffers those are. kWgmma: tiles in the TileIndex layout, and
// published to the tensor cores' reads too (the wgmma kernels wait for every
// product of tile kt - 1 before this).
template <int HS, bool kWgmma = false>
__device__ __forceinline__ void AwaitKeysQueueNext(bf16* k_next, bf16* v_next,
                                                   const bf16* q, int C,
                                                   int64_t stride, int kt,
                                                   int last, int T) {
  CpAsyncWait<0>();
  if constexpr (kWgmma) FenceProxyAsync();
  __syncthreads();
  if (kt < last) {
    if constexpr (kWgmma) {
      LoadTileAsync(k_next, q + C, stride, (kt + 1) * kTile, T);
      LoadTileAsync(v_next, q + 2 * C, stride, (kt + 1) * kTile, T);
    } else {
      LoadRowsAsync<HS>(k_next, q + C, stride, (kt + 1) * kTile, T);
      LoadRowsAsync<HS>(v_next, q + 2 * C, stride, (kt + 1) * kTile, T);
    }
  }
  CpAsyncCommit();
}

// The same rows transposed: tile[d][r] (row length kTileT).
template <int HS>
__device__ __forceinline__ void LoadColumns(bf16* tile, const bf16* src,
                                            int64_t stride, int row0, int T) {
  constexpr int kChunks = HS / 8;
  for (int i = threadIdx.x; i < kTile * kChunks; i += kThreads) {
    const int r = i % kTile, c = (i / kTile) * 8;  // neighbours take rows
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row0 + r < T)
      v = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + c);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
    for (int w = 0; w < 4; ++w) {
      tile[(c + 2 * w) * kTileT + r] =
          __ushort_as_bfloat16(static_cast<uint16_t>(words[w]));
      tile[(c + 2 * w + 1) * kTileT + r] =
          __ushort_as_bfloat16(static_cast<uint16_t>(words[w] >> 16));
    }
  }
}

// The A fragment of rows [r0, r0 + 16) and columns [k0, k0 + 16) of a
// row-major shared tile with rows `S` elements long.
template <int S>
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const bf16* tile,
                                      int r0, int k0) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const bf16* p = tile + (r0 + g) * S + k0 + 2 * t;
  a[0] = Load32(p);
  a[1] = Load32(p + 8 * S);
  a[2] = Load32(p + 8);
  a[3] = Load32(p + 8 * S + 8);
}

// The B fragment (k in [k0, k0 + 16), n in [n0, n0 + 8)) of a tile stored
// [n][k] row-major with rows `S` elements long.
template <int S>
__device__ __forceinline__ void LoadB(uint32_t (&b)[2], const bf16* tile,
                                      int n0, int k0) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const bf16* p = tile + (n0 + g) * S + k0 + 2 * t;
  b[0] = Load32(p);
  b[1] = Load32(p + 8);
}

// Accumulators of two neighbouring 16x8 tiles (16 columns) as the A fragment
// of the next product, whose k runs over those columns.
__device__ __forceinline__ void AccToA(uint32_t (&a)[4], const float (&c0)[4],
                                       const float (&c1)[4]) {
  a[0] = PackBf16(c0[0], c0[1]);
  a[1] = PackBf16(c0[2], c0[3]);
  a[2] = PackBf16(c1[0], c1[1]);
  a[3] = PackBf16(c1[2], c1[3]);
}

// s (16 x 64) = A (the warp's 16 rows, as fragments over HS) times the tile's
// rows transposed. Only the 8-column tiles [nt_begin, nt_end) are computed
// (the others are zero): on the diagonal the causal mask hides the rest.
// The range must be the same for the whole warp. kLdm: the tile's B
// fragments come two 8-column tiles at a time through ldmatrix (one
// instruction instead of four 32-bit loads); else by 32-bit loads (the
// version the first H200 run measured). The same registers either way, and
// each accumulator adds its k-steps in the same order: the same sums.
template <int HS, bool kLdm>
__device__ __forceinline__ void RowsTimesTile(float (&s)[8][4],
                                              const uint32_t (&a)[HS / 16][4],
                                              const bf16* tile,
                                              int nt_begin = 0,
                                              int nt_end = 8) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
    s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
  if constexpr (kLdm) {
#pragma unroll
    for (int np = 0; np < 4; ++np) {  // 8-column tiles 2 np and 2 np + 1
      const bool lo = 2 * np >= nt_begin && 2 * np < nt_end;
      const bool hi = 2 * np + 1 >= nt_begin && 2 * np + 1 < nt_end;
      if (!lo && !hi) continue;
#pragma unroll
      for (int ks = 0; ks < HS / 16; ++ks) {
        uint32_t b0[2], b1[2];
        LdMatrixB(b0, b1, tile + np * 16 * (HS + kPad) + ks * 16, HS + kPad);
        if (lo) MmaBf16(s[2 * np], a[ks], b0);
        if (hi) MmaBf16(s[2 * np + 1], a[ks], b1);
      }
    }
  } else {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      if (nt < nt_begin || nt >= nt_end) continue;
#pragma unroll
      for (int ks = 0; ks < HS / 16; ++ks) {
        uint32_t b[2];
        LoadB<HS + kPad>(b, tile, nt * 8, ks * 16);
        MmaBf16(s[nt], a[ks], b);
      }
    }
  }
}

// RowsTimesTile<HS, true> with A read from shared memory (the warp's 16 rows,
// `rows` pointing at the first, rows HS + kPad long) one k-step at a time
// instead of held in registers: the same products in the same order (each
// accumulator still adds k-steps 0, 1, ... in turn), so the same sums, bit
// for bit. Fragments through ldmatrix: one A and four B loads per k-step.
template <int HS>
__device__ __forceinline__ void RowsTimesTileShared(float (&s)[8][4],
                                                    const bf16* rows,
                                                    const bf16* tile,
                                                    int nt_begin = 0,
                                                    int nt_end = 8) {
  constexpr int S = HS + kPad;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
    s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < HS / 16; ++ks) {
    uint32_t a[4];
    LdMatrixA(a, rows + ks * 16, S);
#pragma unroll
    for (int np = 0; np < 4; ++np) {  // 8-column tiles 2 np and 2 np + 1
      const bool lo = 2 * np >= nt_begin && 2 * np < nt_end;
      const bool hi = 2 * np + 1 >= nt_begin && 2 * np + 1 < nt_end;
      if (!lo && !hi) continue;
      uint32_t b0[2], b1[2];
      LdMatrixB(b0, b1, tile + np * 16 * S + ks * 16, S);
      if (lo) MmaBf16(s[2 * np], a, b0);
      if (hi) MmaBf16(s[2 * np + 1], a, b1);
    }
  }
}

// Dynamic shared memory of a lean backward kernel: two double-buffered
// streamed tiles and the block's own 64 rows of two tensors; with kFusedQ
// also a 64 x 64 tile of score gradients (rows kTileT long).
template <int HS, bool kFusedQ = false>
constexpr int LeanSharedBytes() {
  return ((4 * kTile + 2 * kRows) * (HS + kPad) +
          (kFusedQ ? kRows * kTileT : 0)) *
         static_cast<int>(sizeof(bf16));
}
struct LeanTiles {
  bf16* streamed[2][2];  // [tensor][buffer]
  bf16* own[2];          // the block's rows of each of its two tensors
  bf16* scores;          // kFusedQ's score-gradient tile
};
template <int HS>
__device__ __forceinline__ LeanTiles CarveLeanTiles() {
  constexpr int S = HS + kPad;
  GPT2_EXTERN_SHARED(uint4, lean_tiles);  // LeanSharedBytes<HS>()
  bf16* base = reinterpret_cast<bf16*>(lean_tiles);
  LeanTiles t;
  for (int tensor = 0; tensor < 2; ++tensor) {
    for (int b = 0; b < 2; ++b)
      t.streamed[tensor][b] = base + (2 * tensor + b) * kTile * S;
    t.own[tensor] = base + 4 * kTile * S + tensor * kRows * S;
  }
  t.scores = base + (4 * kTile + 2 * kRows) * S;
  return t;
}

// acc (16 x HS) += a (an A fragment: 16 rows x 16 k) times rows [0, 16) of a
// tile stored [k][n] (`rows` at its row 0, HS + kPad long), through
// ldmatrix.trans.
template <int HS>
__device__ __forceinline__ void FragmentTimesRows(float (&acc)[HS / 8][4],
                                                  const uint32_t (&a)[4],
                                                  const bf16* rows) {
  constexpr int S = HS + kPad;
#pragma unroll
  for (int dt = 0; dt < HS / 8; dt += 2) {
    uint32_t b0[2], b1[2];
    LdMatrixBTrans(b0, b1, rows + dt * 8, S);
    MmaBf16(acc[dt], a, b0);
    MmaBf16(acc[dt + 1], a, b1);
  }
}

// acc (16 x HS) += p (16 x 64, accumulators) times the streamed side's 64
// rows; 16-column chunks of p outside the 8-column tiles [nt_begin, nt_end)
// are zero and skipped. kLdm: from the rows as stored (rows[key][d], HS +
// kPad long) through ldmatrix.trans; else from a transposed copy
// (rows_t[d][key]).
template <int HS, bool kLdm>
__device__ __forceinline__ void AccTimes(float (&acc)[HS / 8][4],
                                         const float (&p)[8][4],
                                         const bf16* rows, const bf16* rows_t,
                                         int nt_begin = 0, int nt_end = 8) {
  constexpr int S = HS + kPad;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (2 * j + 1 < nt_begin || 2 * j >= nt_end) continue;
    uint32_t a[4];
    AccToA(a, p[2 * j], p[2 * j + 1]);
    if constexpr (kLdm) {
      FragmentTimesRows<HS>(acc, a, rows + j * 16 * S);
    } else {
#pragma unroll
      for (int dt = 0; dt < HS / 8; ++dt) {
        uint32_t b[2];
        LoadB<kTileT>(b, rows_t, dt * 8, j * 16);
        MmaBf16(acc[dt], a, b);
      }
    }
  }
}

// dst[row][d] = scale * acc for the warp's rows below T; dst points at
// column 0 of row 0 and rows are `stride` apart.
template <int HS>
__device__ __forceinline__ void StoreRows(bf16* dst, int64_t stride,
                                          const float (&acc)[HS / 8][4],
                                          int row_a, int T, float scale) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row_a + 8 * half;
    if (row >= T) continue;
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(dst + row * stride + dt * 8 + 2 * t) =
          PackBf16(scale * acc[dt][2 * half], scale * acc[dt][2 * half + 1]);
    }
  }
}

// Where a thread works: its block's (batch, head) slice of the tensors, as
// offsets of that head's row 0, and its place in the warp's mma fragments.
struct Place {
  int warp, g, t;  // warp in the block; lane / 4 and lane % 4 (see mma.cuh)
  int64_t stride;  // between rows of qkv and dqkv: 3C
  int64_t qkv;     // this head's q in qkv or dqkv (its k at +C, v at +2C)
  int64_t rows;    // this head in (B, T, C) tensors: out, dout
  int64_t stat;    // this head in (B, NH, T) statistics: lse, delta
};

// The place of a block working on head h of batch row b.
template <int HS>
__device__ __forceinline__ Place PlaceAt(int b, int h, int T, int C, int NH) {
  const int lane = threadIdx.x % 32;
  Place at;
  at.warp = threadIdx.x / 32;
  at.g = lane / 4;
  at.t = lane % 4;
  at.stride = 3 * int64_t{C};
  at.qkv = int64_t{b} * T * at.stride + h * HS;
  at.rows = (int64_t{b} * T) * C + h * HS;
  at.stat = (int64_t{b} * NH + h) * T;
  return at;
}

// The grid (BlockGrid): x and z number the (batch, head) pairs (pair z *
// gridDim.x + x, head = pair % NH), y the row blocks by length, longest first
// (RowBlockRank). The hardware starts blocks in the order of their linear
// index (x fastest), so the longest row blocks of gridDim.x pairs start
// before the shorter ones of those pairs, and a kernel's last blocks are
// short ones: with the pairs one after the other (gridDim.x == 1, the old
// order), the longest blocks of the last pairs start near the end and run on
// alone.
template <int HS>
__device__ __forceinline__ Place PlaceOf(int T, int C, int NH) {
  const int pair = blockIdx.z * gridDim.x + blockIdx.x;
  const int b = pair / NH;
  return PlaceAt<HS>(b, pair - b * NH, T, C, NH);
}
// 0 for the block with the most work (the most keys, or in the dK/dV kernel
// the most queries), up to gridDim.y - 1.
__device__ __forceinline__ int RowBlockRank() { return blockIdx.y; }

// The warp's 16 rows of a shared tile (rows HS + kPad long) as A fragments.
template <int HS>
__device__ __forceinline__ void LoadWarpRows(uint32_t (&f)[HS / 16][4],
                                             const bf16* tile) {
#pragma unroll
  for (int ks = 0; ks < HS / 16; ++ks)
    LoadA<HS + kPad>(f[ks], tile, (threadIdx.x / 32) * 16, ks * 16);
}

// One key tile of the online softmax for a warp's 16 rows (this lane's two, r
// = 0, 1): the tile's maxima of the unscaled scores (this lane's share in
// tile_max; the scale is positive, so the same maximum) are reduced over the
// row's four lanes, the running maximum moves and the row's sum and output
// rescale, and the scores become probabilities 2^(s * scale_log2 - max *
// scale_log2), one fused multiply-add and one ex2 each, added to the sums.
template <int HS>
__device__ __forceinline__ void SoftmaxTile(
    float (&s)[8][4], float (&tile_max)[2], float (&row_max)[2],
    float (&row_sum)[2], float (&o)[HS / 8][4], float scale_log2) {
  float neg_max[2];  // -max * scale_log2 of each row
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] =
        fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] =
        fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    const float new_max = fmaxf(row_max[r], tile_max[r]);
    const float correction = Exp2Ftz((row_max[r] - new_max) * scale_log2);
    row_max[r] = new_max;
    neg_max[r] = -new_max * scale_log2;
    row_sum[r] *= correction;
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt) {
      o[dt][2 * r] *= correction;
      o[dt][2 * r + 1] *= correction;
    }
  }
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float p = Exp2Ftz(fmaf(s[nt][i], scale_log2, neg_max[i / 2]));
      s[nt][i] = p;
      row_sum[i / 2] += p;
    }
  }
}

// Where the causal mask applies (the diagonal tile; keys past T are after
// every row), masked scores of a forward tile become -inf; either way this
// lane's share of each row's tile maximum. The other tiles skip the mask's
// arithmetic (kMasked false).
template <bool kMasked>
__device__ __forceinline__ void MaskScoresTile(float (&s)[8][4],
                                               float (&tile_max)[2], int k0,
                                               int row_a, int t) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = k0 + nt * 8 + 2 * t + (i & 1);
      const int row = row_a + 8 * (i / 2);
      if (kMasked && key > row) s[nt][i] = -INFINITY;
      tile_max[i / 2] = fmaxf(tile_max[i / 2], s[nt][i]);
    }
  }
}

// The score-gradient steps below come in two halves, for kernels that
// compute the probabilities while the products for dP still run: P from the
// scores (kProbabilities), then dS / scale = P (dP - delta) from P
// (kGradients); or both in one pass (kBothSteps). The same values either way.
constexpr int kProbabilities = 1, kGradients = 2, kBothSteps = 3;

// The dK/dV kernels' step from S^T and dP^T (keys x queries) of query tile
// q0 to P^T (in s) and dS^T / scale (in dp), from the tile's lse (log2
// units) and delta; kMasked where queries before a key (the diagonal tile) or
// past T (the last) exist.
template <bool kMasked, int kStep>
__device__ __forceinline__ void KeyValueScoreGradsTile(
    float (&s)[8][4], float (&dp)[8][4], const float* tile_lse,
    const float* tile_delta, int q0, int key_a, int t, int T,
    float scale_log2) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    // The lane's two queries' statistics, one 8-byte load each.
    const int col0 = nt * 8 + 2 * t;
    float2 lse2, delta2;
    if (kStep & kProbabilities)
      lse2 = *reinterpret_cast<const float2*>(&tile_lse[col0]);
    if (kStep & kGradients)
      delta2 = *reinterpret_cast<const float2*>(&tile_delta[col0]);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (kStep & kProbabilities) {
        const int query = q0 + col0 + (i & 1);
        const int key = key_a + 8 * (i / 2);
        s[nt][i] = !kMasked || (query >= key && query < T)
                       ? Exp2Ftz(fmaf(s[nt][i], scale_log2,
                                      -((i & 1) ? lse2.y : lse2.x)))
                       : 0.0f;
      }
      if (kStep & kGradients)
        dp[nt][i] = s[nt][i] * (dp[nt][i] - ((i & 1) ? delta2.y : delta2.x));
    }
  }
}

// The dQ kernels' step from S and dP (queries x keys) of key tile k0 to P (in
// s) and dS / scale (in dp), from the lane's rows' lse (log2 units) and
// delta; kMasked on the diagonal tile.
template <bool kMasked, int kStep>
__device__ __forceinline__ void QueryScoreGradsTile(
    float (&s)[8][4], float (&dp)[8][4], int k0, int row_a, int t,
    const float (&row_lse)[2], const float (&row_delta)[2], float scale_log2) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = i / 2;
      if (kStep & kProbabilities) {
        const int key = k0 + nt * 8 + 2 * t + (i & 1);
        s[nt][i] = !kMasked || key <= row_a + 8 * r
                       ? Exp2Ftz(fmaf(s[nt][i], scale_log2, -row_lse[r]))
                       : 0.0f;
      }
      if (kStep & kGradients) dp[nt][i] = s[nt][i] * (dp[nt][i] - row_delta[r]);
    }
  }
}

// The three above with the mask chosen at run time: the masked version
// only where `masked`, the other tiles skip the mask's arithmetic (the
// kGradients half has no mask: P is zero where it applies).
__device__ __forceinline__ void MaskScores(bool masked, float (&s)[8][4],
                                           float (&tile_max)[2], int k0,
                                           int row_a, int t) {
  if (masked) {
    MaskScoresTile<true>(s, tile_max, k0, row_a, t);
  } else {
    MaskScoresTile<false>(s, tile_max, k0, row_a, t);
  }
}
template <int kStep = kBothSteps>
__device__ __forceinline__ void KeyValueScoreGrads(
    bool masked, float (&s)[8][4], float (&dp)[8][4], const float* tile_lse,
    const float* tile_delta, int q0, int key_a, int t, int T,
    float scale_log2) {
  if (masked) {
    KeyValueScoreGradsTile<true, kStep>(s, dp, tile_lse, tile_delta, q0, key_a,
                                        t, T, scale_log2);
  } else {
    KeyValueScoreGradsTile<false, kStep>(s, dp, tile_lse, tile_delta, q0, key_a,
                                         t, T, scale_log2);
  }
}
template <int kStep = kBothSteps>
__device__ __forceinline__ void QueryScoreGrads(
    bool masked, float (&s)[8][4], float (&dp)[8][4], int k0, int row_a, int t,
    const float (&row_lse)[2], const float (&row_delta)[2], float scale_log2) {
  if (masked) {
    QueryScoreGradsTile<true, kStep>(s, dp, k0, row_a, t, row_lse, row_delta,
                                     scale_log2);
  } else {
    QueryScoreGradsTile<false, kStep>(s, dp, k0, row_a, t, row_lse, row_delta,
                                      scale_log2);
  }
}

// The lane's two rows' lse (in log2 units) and delta, zero past T.
__device__ __forceinline__ void LoadRowStats(
    float (&row_lse)[2], float (&row_delta)[2], const float* lse,
    const float* delta, const Place& at, int row_a, int T) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_a + 8 * r;
    row_lse[r] = row < T ? lse[at.stat + row] * kLog2e : 0.0f;
    row_delta[r] = row < T ? delta[at.stat + row] : 0.0f;
  }
}

// The forward's end: each row's sum over its four lanes, out = o / sum as
// bf16 and lse = the natural log of the sum of exp(scores), for the lane's
// rows below T.
template <int HS>
__device__ __forceinline__ void StoreForwardRows(
    bf16* out, float* lse, const Place& at, const float (&o)[HS / 8][4],
    float (&row_sum)[2], const float (&row_max)[2], int row_a, int T, int C,
    float scale_log2) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
  bf16* o_rows = out + at.rows;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_a + 8 * r;
    if (row >= T) continue;
    const float inv = 1.0f / row_sum[r];
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(o_rows + int64_t{row} * C + dt * 8 +
                                   2 * at.t) =
          PackBf16(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
    if (at.t == 0)
      lse[at.stat + row] =
          fmaf(row_max[r], scale_log2, log2f(row_sum[r])) * kLn2;
  }
}

// kLdm: the streamed tiles the second product reads are kept as rows and
// read through ldmatrix.trans; else transposed copies are made (the path the
// first H200 run measured; GPT2_ATTENTION_LDMATRIX=0 selects it).
// At most 128 registers: 4 blocks (16 warps) per SM.
template <int HS, bool kLdm>
__global__ void __launch_bounds__(kThreads, 4)
    ForwardKernel(bf16* out, float* lse, const bf16* qkv, int T, int C, int NH,
                  float scale) {
  constexpr int S = HS + kPad;
  // kLdm: K and V as rows, two of each so that the next pair loads (cp.async)
  // while this one is used; else K rows and V transposed, loaded in turn.
  constexpr int kBufs = kLdm ? 2 : 1;
  __shared__ __align__(16) bf16 k_tile[kBufs][kTile * S];
  __shared__ __align__(16) bf16 v_tile[kBufs][kLdm ? kTile * S : HS * kTileT];
  const Place at = PlaceOf<HS>(T, C, NH);
  const int qb = gridDim.y - 1 - RowBlockRank();  // the longest rows first
  const bf16* q = qkv + at.qkv;
  const float scale_log2 = scale * kLog2e;

  // The at.warp's queries as A fragments, staged through the last key buffer
  // (the first key tile goes to buffer 0 meanwhile).
  LoadRows<HS>(k_tile[kBufs - 1], q, at.stride, qb * kRows, T);
  if constexpr (kLdm) {
    LoadRowsAsync<HS>(k_tile[0], q + C, at.stride, 0, T);
    LoadRowsAsync<HS>(v_tile[0], q + 2 * C, at.stride, 0, T);
    CpAsyncCommit();
  }
  __syncthreads();
  uint32_t qf[HS / 16][4];
  LoadWarpRows<HS>(qf, k_tile[kBufs - 1]);

  float o[HS / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  const int row_a =
      qb * kRows + at.warp * 16 + at.g;  // this lane's rows: a, a + 8
  for (int kt = 0; kt <= qb; ++kt) {     // key tile qb is the diagonal one
    const int k0 = kt * kTile, buf = kLdm ? kt % 2 : 0;
    if constexpr (kLdm) {
      AwaitKeysQueueNext<HS>(k_tile[buf ^ 1], v_tile[buf ^ 1], q, C, at.stride,
                             kt, qb, T);
    } else {
      __syncthreads();  // the previous tiles are no longer read
      LoadRows<HS>(k_tile[0], q + C, at.stride, k0, T);
      LoadColumns<HS>(v_tile[0], q + 2 * C, at.stride, k0, T);
      __syncthreads();
    }
    // On the diagonal tile, this at.warp's rows see keys up to 16 at.warp +
    // 15: the 8-key tiles past that are all masked.
    const int nt_end = kt == qb ? 2 * at.warp + 2 : 8;
    float s[8][4];
    RowsTimesTile<HS, kLdm>(s, qf, k_tile[buf], 0, nt_end);
    float tile_max[2] = {-INFINITY, -INFINITY};  // of the unscaled scores
    // Only the diagonal tile has keys after a row (keys past T are after
    // every row): the others skip the mask's arithmetic.
    MaskScores(kt == qb, s, tile_max, k0, row_a, at.t);
    // Key k0 <= row, so the row has a finite score in every tile it visits.
    SoftmaxTile<HS>(s, tile_max, row_max, row_sum, o, scale_log2);
    AccTimes<HS, kLdm>(o, s, v_tile[buf], v_tile[buf], 0, nt_end);
  }

  StoreForwardRows<HS>(out, lse, at, o, row_sum, row_max, row_a, T, C,
                       scale_log2);
}

// Fused backward (kFusedQ): the dK/dV block of keys kb also makes each query
// tile's share of dQ, dS (64 queries x its 64 keys) times its keys, and adds
// it to an fp32 sum, so the scores are computed once instead of twice. The
// shares of query tile qt come from key blocks qt, qt - 1, ..., 0, and are
// added in that order, whatever the timing: a counter per (batch, head,
// query tile) says how many have been added, and block kb waits until it
// reads qt - kb. Block kb reaches tile qt one tile later than block kb + 1
// (both start at their diagonal), so the wait is short once both run.
// Blocks take their (batch, head, key block) from a ticket drawn at start
// (key blocks from the last down), so a block only ever waits for one that
// started before it: no deadlock, whatever order the hardware starts blocks
// in. Key block qt (the first share) writes the sum; key block 0 (the last)
// writes scale * sum as bf16 into dqkv. sync: [0] the ticket counter, then
// the counters, (B, NH, query tiles); zero before the launch. dq_sum: (B,
// NH, T, HS) fp32. Deterministic: fixed order, no float atomics.
__device__ __forceinline__ void ReleaseShare(int* counter, int shares) {
  __threadfence();  // the block's adds (before the barrier) before the count
  atomicExch(counter, shares);
}
// `seen`: the counter as read earlier (the read issued before the share's
// products, so its latency hides behind them); spins only if that was short.
// A wait is one tile of another block (microseconds); one that lasts ~2^21
// polls (a second or more) means the order broke: the kernel traps, so the
// run fails loudly instead of hanging (the emulator reports spins that make
// no progress itself).
__device__ __forceinline__ void AwaitShares(int* counter, int shares,
                                            int seen) {
  constexpr int kMaxPolls = 1 << 21;
  for (int polls = 0; seen < shares; ++polls) {
#if !defined(GPT2_CUDA_EMULATED)
    if (polls == kMaxPolls) __trap();
#endif
    __nanosleep(64);
    seen = atomicAdd(counter, 0);
  }
  __threadfence();
}

// The fused kernel's share of dQ for query tile qt from key block kb (see
// above): ds (this warp's 16 keys x 64 queries of dS^T / scale, as
// accumulators) goes to ds_tile; then each warp takes 16 of the queries, its
// 16 x HS share is dS (from ds_tile, through ldmatrix.trans) times the
// block's keys (k_rows), and it adds that to the sum once the shares of the
// key blocks after kb are in (the first share, kb == qt, writes the sum; the
// last, kb == 0, writes scale * sum as bf16 to dq). The caller's barrier at
// the top of its next tile means every warp is done with ds_tile, and has
// added its share, before either changes hands.
template <int HS>
__device__ __forceinline__ void AddQueryShare(bf16* dq, int64_t stride,
                                              float* dq_rows, int* counter,
                                              const float (&ds)[8][4],
                                              bf16* ds_tile, const bf16* k_rows,
                                              int qt, int kb, int T,
                                              float scale) {
  constexpr int S = HS + kPad;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4,
            t = lane % 4;
  bf16* mine = ds_tile + (warp * 16 + g) * kTileT + 2 * t;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    *reinterpret_cast<uint32_t*>(mine + nt * 8) =
        PackBf16(ds[nt][0], ds[nt][1]);
    *reinterpret_cast<uint32_t*>(mine + 8 * kTileT + nt * 8) =
        PackBf16(ds[nt][2], ds[nt][3]);
  }
  __syncthreads();
  const bool first = qt == kb, last = kb == 0;
  const int seen = !first && lane == 0 ? atomicAdd(counter, 0) : 0;
  // On the diagonal, this warp's queries (16 warp..+15) see keys up to 16
  // warp + 15: key chunks past the warp's own are zero.
  const int chunks = first ? warp + 1 : 4;
  float share[HS / 8][4] = {};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (j >= chunks) continue;
    uint32_t a[4];
    LdMatrixATrans(a, ds_tile + j * 16 * kTileT + warp * 16, kTileT);
    FragmentTimesRows<HS>(share, a, k_rows + j * 16 * S);
  }
  if (!first) {
    if (lane == 0) AwaitShares(counter, qt - kb, seen);
    __syncwarp();
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = qt * kTile + warp * 16 + g + 8 * half;
    if (row >= T) continue;
    float* sum = dq_rows + int64_t{row} * HS + 2 * t;
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt) {
      float2 v = make_float2(share[dt][2 * half], share[dt][2 * half + 1]);
      if (!first) {  // L2, where the other blocks' adds are
        const float2 before =
            __ldcg(reinterpret_cast<const float2*>(sum + dt * 8));
        v.x = before.x + v.x;
        v.y = before.y + v.y;
      }
      if (last) {
        *reinterpret_cast<uint32_t*>(dq + row * stride + dt * 8 + 2 * t) =
            PackBf16(scale * v.x, scale * v.y);
      } else {
        __stcg(reinterpret_cast<float2*>(sum + dt * 8), v);
      }
    }
  }
}

// dK and dV for one block of 64 keys, over the queries at or after them.
// kLean: the block's keys and values stay in shared memory and are read as A
// fragments each tile (not held in 32 registers a thread), for 3 blocks per
// SM instead of 2; the same arithmetic. kFusedQ (lean only): dQ too, above.
// kMinBlocks: the blocks per SM the register budget is set for (3: 168
// registers a thread; 2 lets the fused kernel keep everything in registers).
template <int HS, bool kLdm, bool kLean, bool kFusedQ = false,
          int kMinBlocks = 3>
__global__ void __launch_bounds__(kThreads, kLean ? kMinBlocks : 1)
    BackwardKeyValueKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                           const float* lse, const float* delta, int T, int C,
                           int NH, float scale, float* dq_sum, int* sync) {
  static_assert(kLdm || !kLean, "the lean kernels stream through ldmatrix");
  static_assert(kLean || !kFusedQ, "the fused kernel is a lean one");
  constexpr int S = HS + kPad;
  // kLdm: Q and dO as rows, two of each (the next pair loads while this one
  // is used); else also transposed copies, all loaded in turn.
  constexpr int kBufs = kLdm ? 2 : 1;
  __shared__ __align__(8) float tile_lse[kBufs][kTile],
      tile_delta[kBufs][kTile];
  bf16 *q_tile[kBufs], *do_tile[kBufs], *qt_tile = nullptr, *dot_tile = nullptr;
  bf16 *k_rows = nullptr, *v_rows = nullptr;  // kLean
  bf16* ds_tile = nullptr;  // kFusedQ: dS^T / scale of a tile, [key][query]
  if constexpr (kLean) {
    const LeanTiles lean = CarveLeanTiles<HS>();
    for (int b = 0; b < kBufs; ++b) {
      q_tile[b] = lean.streamed[0][b];
      do_tile[b] = lean.streamed[1][b];
    }
    k_rows = lean.own[0];
    v_rows = lean.own[1];
    ds_tile = lean.scores;
  } else {
    constexpr int kTransposed = kLdm ? 8 : HS * kTileT;  // unused with kLdm
    __shared__ __align__(16) bf16 q_s[kBufs][kTile * S];
    __shared__ __align__(16) bf16 do_s[kBufs][kTile * S];
    __shared__ __align__(16) bf16 qt_s[kTransposed];
    __shared__ __align__(16) bf16 dot_s[kTransposed];
    for (int b = 0; b < kBufs; ++b) {
      q_tile[b] = q_s[b];
      do_tile[b] = do_s[b];
    }
    qt_tile = qt_s;
    dot_tile = dot_s;
  }
  const int query_tiles = (T + kTile - 1) / kTile;
  int kb = RowBlockRank();  // low key blocks see the most queries: first
  Place at;
  int* counters = nullptr;   // kFusedQ: this head's, one per query tile
  float* dq_rows = nullptr;  // kFusedQ: this head's (T, HS) sums
  if constexpr (kFusedQ) {
    __shared__ int ticket;
    if (threadIdx.x == 0) ticket = atomicAdd(sync, 1);
    __syncthreads();
    const int key_blocks = gridDim.y, head = ticket / key_blocks;
    kb = key_blocks - 1 - ticket % key_blocks;
    at = PlaceAt<HS>(head / NH, head % NH, T, C, NH);
    counters = sync + 1 + int64_t{head} * query_tiles;
    dq_rows = dq_sum + at.stat * HS;
  } else {
    at = PlaceOf<HS>(T, C, NH);
  }
  const bf16* q = qkv + at.qkv;
  const bf16* dy = dout + at.rows;
  const float scale_log2 = scale * kLog2e;
  // Query tile qt's rows, and its lse (in log2 units) and delta, into buffer
  // `buf`: queued (kLdm) or loaded.
  auto load_tile = [&](int qt, int buf) {
    const int q0 = qt * kTile;
    if constexpr (kLdm) {
      LoadRowsAsync<HS>(q_tile[buf], q, at.stride, q0, T);
      LoadRowsAsync<HS>(do_tile[buf], dy, C, q0, T);
    } else {
      LoadRows<HS>(q_tile[buf], q, at.stride, q0, T);
      LoadRows<HS>(do_tile[buf], dy, C, q0, T);
      LoadColumns<HS>(qt_tile, q, at.stride, q0, T);
      LoadColumns<HS>(dot_tile, dy, C, q0, T);
    }
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      const bool in = q0 + i < T;
      tile_lse[buf][i] = in ? lse[at.stat + q0 + i] * kLog2e : 0.0f;
      tile_delta[buf][i] = in ? delta[at.stat + q0 + i] : 0.0f;
    }
  };

  // The at.warp's keys and values: kept in shared memory (kLean), or as A
  // fragments staged through the last buffers (the first query tile goes to
  // buffer 0 meanwhile).
  uint32_t kf[kLean ? 1 : HS / 16][4], vf[kLean ? 1 : HS / 16][4];
  if constexpr (kLean) {
    LoadRows<HS>(k_rows, q + C, at.stride, kb * kRows, T);
    LoadRows<HS>(v_rows, q + 2 * C, at.stride, kb * kRows, T);
    load_tile(kb, 0);
    CpAsyncCommit();
    __syncthreads();
  } else {
    LoadRows<HS>(q_tile[kBufs - 1], q + C, at.stride, kb * kRows, T);
    LoadRows<HS>(do_tile[kBufs - 1], q + 2 * C, at.stride, kb * kRows, T);
    if constexpr (kLdm) {
      load_tile(kb, 0);
      CpAsyncCommit();
    }
    __syncthreads();
    LoadWarpRows<HS>(kf, q_tile[kBufs - 1]);
    LoadWarpRows<HS>(vf, do_tile[kBufs - 1]);
  }

  float dk[HS / 8][4] = {}, dv[HS / 8][4] = {};
  const int key_a =
      kb * kRows + at.warp * 16 + at.g;  // this lane's keys: a, a + 8
  for (int qt = kb; qt < query_tiles; ++qt) {
    const int q0 = qt * kTile, buf = kLdm ? (qt - kb) % 2 : 0;
    if constexpr (kLdm) {
      // Tile qt has landed; every warp is done with the buffers of qt - 1,
      // which take qt + 1.
      CpAsyncWait<0>();
      __syncthreads();
      if constexpr (kFusedQ) {  // every warp has added its share of qt - 1
        if (threadIdx.x == 0 && qt > kb && kb > 0)
          ReleaseShare(counters + qt - 1, qt - kb);
      }
      if (qt + 1 < query_tiles) load_tile(qt + 1, buf ^ 1);
      CpAsyncCommit();
    } else {
      __syncthreads();
      load_tile(qt, 0);
      __syncthreads();
    }
    // Transposed scores (keys x queries) and dP^T = V dO^T.
    // On the diagonal tile, queries before this at.warp's first key (16
    // at.warp) see none of its keys: those 8-query tiles are skipped.
    const int nt_begin = qt == kb ? 2 * at.warp : 0;
    float s[8][4], dp[8][4];
    if constexpr (kLean) {
      RowsTimesTileShared<HS>(s, k_rows + at.warp * 16 * S, q_tile[buf],
                              nt_begin);
      RowsTimesTileShared<HS>(dp, v_rows + at.warp * 16 * S, do_tile[buf],
                              nt_begin);
    } else {
      RowsTimesTile<HS, kLdm>(s, kf, q_tile[buf], nt_begin);
      RowsTimesTile<HS, kLdm>(dp, vf, do_tile[buf], nt_begin);
    }
    // Queries before a key exist only on the diagonal tile, queries past T
    // only on the last: the other tiles skip the mask's arithmetic.
    KeyValueScoreGrads(qt == kb || q0 + kTile > T, s, dp, tile_lse[buf],
                       tile_delta[buf], q0, key_a, at.t, T, scale_log2);
    AccTimes<HS, kLdm>(dv, s, do_tile[buf], dot_tile,
                       nt_begin);  // dV += P^T dO
    AccTimes<HS, kLdm>(dk, dp, q_tile[buf], qt_tile,
                       nt_begin);  // dK += dS^T Q
    if constexpr (kFusedQ) {
      AddQueryShare<HS>(dqkv + at.qkv, at.stride, dq_rows, counters + qt, dp,
                        ds_tile, k_rows, qt, kb, T, scale);
    }
  }
  if constexpr (kFusedQ) {
    __syncthreads();
    if (threadIdx.x == 0 && kb > 0)
      ReleaseShare(counters + query_tiles - 1, query_tiles - kb);
  }
  bf16* grads = dqkv + at.qkv;
  StoreRows<HS>(grads + C, at.stride, dk, key_a, T, scale);
  StoreRows<HS>(grads + 2 * C, at.stride, dv, key_a, T, 1.0f);
}

// dQ for one block of 64 queries, over the keys at or before them. kLean:
// the block's queries and output gradients stay in shared memory (read as A
// fragments each tile), for 4 blocks per SM instead of 3.
template <int HS, bool kLdm, bool kLean>
__global__ void __launch_bounds__(kThreads,
                                  kLean ? 4 : 3)  // <= 128 / 170 regs
    BackwardQueryKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                        const float* lse, const float* delta, int T, int C,
                        int NH, float scale) {
  static_assert(kLdm || !kLean, "the lean kernels stream through ldmatrix");
  constexpr int S = HS + kPad;
  // kLdm: K and V as rows, two of each (the next pair loads while this one is
  // used); else also K transposed, all loaded in turn.
  constexpr int kBufs = kLdm ? 2 : 1;
  bf16 *k_tile[kBufs], *v_tile[kBufs], *kt_tile = nullptr;
  bf16 *q_rows = nullptr, *do_rows = nullptr;  // kLean
  if constexpr (kLean) {
    const LeanTiles lean = CarveLeanTiles<HS>();
    for (int b = 0; b < kBufs; ++b) {
      k_tile[b] = lean.streamed[0][b];
      v_tile[b] = lean.streamed[1][b];
    }
    q_rows = lean.own[0];
    do_rows = lean.own[1];
  } else {
    __shared__ __align__(16) bf16 k_s[kBufs][kTile * S];
    __shared__ __align__(16) bf16 v_s[kBufs][kTile * S];
    __shared__ __align__(16) bf16 kt_s[kLdm ? 8 : HS * kTileT];
    for (int b = 0; b < kBufs; ++b) {
      k_tile[b] = k_s[b];
      v_tile[b] = v_s[b];
    }
    kt_tile = kt_s;
  }
  const Place at = PlaceOf<HS>(T, C, NH);
  const int qb = gridDim.y - 1 - RowBlockRank();
  const bf16* q = qkv + at.qkv;
  const bf16* dy = dout + at.rows;
  const float scale_log2 = scale * kLog2e;

  // The at.warp's queries and output gradients: kept in shared memory
  // (kLean), or as A fragments staged through the last buffers (the first key
  // tile goes to buffer 0 meanwhile).
  uint32_t qf[kLean ? 1 : HS / 16][4], dof[kLean ? 1 : HS / 16][4];
  LoadRows<HS>(kLean ? q_rows : k_tile[kBufs - 1], q, at.stride, qb * kRows, T);
  LoadRows<HS>(kLean ? do_rows : v_tile[kBufs - 1], dy, C, qb * kRows, T);
  if constexpr (kLdm) {
    LoadRowsAsync<HS>(k_tile[0], q + C, at.stride, 0, T);
    LoadRowsAsync<HS>(v_tile[0], q + 2 * C, at.stride, 0, T);
    CpAsyncCommit();
  }
  __syncthreads();
  if constexpr (!kLean) {
    LoadWarpRows<HS>(qf, k_tile[kBufs - 1]);
    LoadWarpRows<HS>(dof, v_tile[kBufs - 1]);
  }
  const int row_a = qb * kRows + at.warp * 16 + at.g;
  float row_lse[2], row_delta[2];
  LoadRowStats(row_lse, row_delta, lse, delta, at, row_a, T);

  float dq[HS / 8][4] = {};
  for (int kt = 0; kt <= qb; ++kt) {
    const int k0 = kt * kTile, buf = kLdm ? kt % 2 : 0;
    if constexpr (kLdm) {
      AwaitKeysQueueNext<HS>(k_tile[buf ^ 1], v_tile[buf ^ 1], q, C, at.stride,
                             kt, qb, T);
    } else {
      __syncthreads();
      LoadRows<HS>(k_tile[0], q + C, at.stride, k0, T);
      LoadRows<HS>(v_tile[0], q + 2 * C, at.stride, k0, T);
      LoadColumns<HS>(kt_tile, q + C, at.stride, k0, T);
      __syncthreads();
    }
    const int nt_end = kt == qb ? 2 * at.warp + 2 : 8;  // as in the forward
    float s[8][4], dp[8][4];                            // dP = dO V^T
    if constexpr (kLean) {
      RowsTimesTileShared<HS>(s, q_rows + at.warp * 16 * S, k_tile[buf], 0,
                              nt_end);
      RowsTimesTileShared<HS>(dp, do_rows + at.warp * 16 * S, v_tile[buf], 0,
                              nt_end);
    } else {
      RowsTimesTile<HS, kLdm>(s, qf, k_tile[buf], 0, nt_end);
      RowsTimesTile<HS, kLdm>(dp, dof, v_tile[buf], 0, nt_end);
    }
    QueryScoreGrads(kt == qb, s, dp, k0, row_a, at.t, row_lse, row_delta,
                    scale_log2);  // the mask: diagonal tile only
    AccTimes<HS, kLdm>(dq, dp, k_tile[buf], kt_tile, 0,
                       nt_end);  // dQ += dS K
  }
  StoreRows<HS>(dqkv + at.qkv, at.stride, dq, row_a, T, scale);
}

// ---- Hopper: the same products as warpgroup wgmma (src/cuda/wgmma.cuh) ----
// Head size 64 only (every GPT-2 shape). A block is one warpgroup (the same
// 4 warps of 16 rows); each product of a 64-row block with a 64-row tile is
// 4 wgmma (k-steps of 16) instead of 32 mma.sync a warp, with B read by the
// tensor cores from shared memory: no fragment loads, no ldmatrix. Tiles are
// stored in the TileIndex layout (core matrices of 8 x 8), which the same
// tile serves as a K-major operand (rows along M or N) and as an MN-major B
// (rows along K): Q and dO feed S^T and dP^T K-major and dK, dV MN-major.
// The block's own rows are A operands straight from shared memory, and P^T /
// dS^T go from the accumulators to A fragments in registers (AccToA), as in
// the mma.sync kernels. Results match those kernels to rounding, not bit for
// bit (the tensor cores add a k-step in their own order).
constexpr int kWgTiles = 6;  // dK/dV and dQ: 2 own + 2 x 2 streamed tiles
constexpr int WgmmaSharedBytes() {
  return kWgTiles * kTileElems * static_cast<int>(sizeof(bf16)) +
         4 * kTile * static_cast<int>(sizeof(float));  // lse, delta x 2
}

// The wgmma kernels' shared memory (WgmmaSharedBytes): the block's own rows
// of two tensors (one in the forward), two buffers of each of two streamed
// tensors, then room for two buffers of two 64-float statistics. Buffers by
// arithmetic, not arrays of pointers (a run-time index would put such an
// array on the stack).
struct WgTiles {
  bf16* base;
  __device__ bf16* own(int tensor) const { return base + tensor * kTileElems; }
  __device__ bf16* streamed(int tensor, int buf) const {
    return base + (2 + 2 * tensor + buf) * kTileElems;
  }
  __device__ float* stats() const {
    return reinterpret_cast<float*>(base + kWgTiles * kTileElems);
  }
};
__device__ __forceinline__ WgTiles CarveWgTiles() {
  GPT2_EXTERN_SHARED(uint4, wg_tiles);  // WgmmaSharedBytes()
  return WgTiles{reinterpret_cast<bf16*>(wg_tiles)};
}

// The 8-column tiles of two 64 x 64 accumulators as the four A fragments
// (k-steps of 16 columns) of the next product.
__device__ __forceinline__ void AccToFragments(uint32_t (&a)[4][4],
                                               const float (&acc)[8][4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) AccToA(a[j], acc[2 * j], acc[2 * j + 1]);
}

// acc (+)= rows (a 64-row tile, K-major over its 64 columns) times tile^T.
__device__ __forceinline__ void WgRowsTimesTile(float (&acc)[8][4],
                                                const bf16* rows,
                                                const bf16* tile) {
#pragma unroll
  for (int ks = 0; ks < 4; ++ks)
    Wgmma64x64<false>(acc, TileKMajor(rows, ks), TileKMajor(tile, ks), ks > 0);
}

// acc += a (64 x 64 as four A fragments) times tile (rows along k).
__device__ __forceinline__ void WgFragmentsTimesTile(float (&acc)[8][4],
                                                     const uint32_t (&a)[4][4],
                                                     const bf16* tile) {
#pragma unroll
  for (int j = 0; j < 4; ++j)
    Wgmma64x64<true>(acc, a[j], TileMnMajor(tile, j), true);
}

// Issues the products queued since the last wait and waits for them.
__device__ __forceinline__ void WgFinish(float (&a)[8][4]) {
  WgmmaCommit();
  WgmmaWait<0>();
  PinAccumulators(a);
}
__device__ __forceinline__ void WgFinish(float (&a)[8][4], float (&b)[8][4]) {
  WgFinish(a);
  PinAccumulators(b);
}

// dK and dV for one block of 64 keys (BackwardKeyValueKernel's arithmetic).
// kOverlap: the products in four groups, each started as soon as its inputs
// are there, so that the math between them overlaps the tensor cores' work
// (208 registers: 2 blocks an SM; at 3 blocks ptxas serializes the products
// for want of registers); else two groups, each waited for before the math
// that follows it (168 registers, 3 blocks an SM).
template <bool kOverlap>
__global__ void __launch_bounds__(kThreads, kOverlap ? 2 : 3)
    WgmmaKeyValueKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                        const float* lse, const float* delta, int T, int C,
                        int NH, float scale) {
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  bf16* const k_rows = tiles.own(0);
  bf16* const v_rows = tiles.own(1);
  const auto q_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto do_tile = [&](int buf) { return tiles.streamed(1, buf); };
  float* const stats = tiles.stats();
  const Place at = PlaceOf<HS>(T, C, NH);
  const int kb = RowBlockRank();  // low key blocks see the most queries
  const int query_tiles = (T + kTile - 1) / kTile;
  const bf16* q = qkv + at.qkv;
  const bf16* dy = dout + at.rows;
  const float scale_log2 = scale * kLog2e;
  // stats: lse (log2 units) of buffer b at [b * kTile], delta at [(2 + b) *
  // kTile]; plain loads and stores, published by the loop's barrier.
  auto load_tile = [&](int qt, int buf) {
    const int q0 = qt * kTile;
    LoadTileAsync(q_tile(buf), q, at.stride, q0, T);
    LoadTileAsync(do_tile(buf), dy, C, q0, T);
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      const bool in = q0 + i < T;
      stats[buf * kTile + i] = in ? lse[at.stat + q0 + i] * kLog2e : 0.0f;
      stats[(2 + buf) * kTile + i] = in ? delta[at.stat + q0 + i] : 0.0f;
    }
  };
  LoadTileAsync(k_rows, q + C, at.stride, kb * kRows, T);
  LoadTileAsync(v_rows, q + 2 * C, at.stride, kb * kRows, T);
  load_tile(kb, 0);
  CpAsyncCommit();

  float dk[8][4] = {}, dv[8][4] = {};
  const int key_a = kb * kRows + at.warp * 16 + at.g;  // lane's keys a, a + 8
  for (int qt = kb; qt < query_tiles; ++qt) {
    const int q0 = qt * kTile, buf = (qt - kb) % 2;
    // Tile qt has landed (for the tensor cores too); every product of tile
    // qt - 1 was waited for, so its buffers take qt + 1.
    CpAsyncWait<0>();
    FenceProxyAsync();
    __syncthreads();
    if (qt + 1 < query_tiles) load_tile(qt + 1, buf ^ 1);
    CpAsyncCommit();
    // S^T = K Q^T and dP^T = V dO^T (keys x queries), whole tiles: the
    // diagonal tile's masked corner costs less than splitting the warpgroup.
    // kOverlap: S^T, then dP^T (running while P^T is computed from S^T), then
    // dV += P^T dO (running while dS^T is computed from dP^T), then dK +=
    // dS^T Q. Else S^T and dP^T, then dV and dK.
    const bool masked = qt == kb || q0 + kTile > T;
    const float* tile_lse = stats + buf * kTile;
    const float* tile_delta = stats + (2 + buf) * kTile;
    float s[8][4], dp[8][4];
    uint32_t pa[4][4], dsa[4][4];  // P^T and dS^T / scale as A fragments
    WgmmaFence();
    WgRowsTimesTile(s, k_rows, q_tile(buf));
    if constexpr (kOverlap) {
      WgmmaCommit();
      WgRowsTimesTile(dp, v_rows, do_tile(buf));
      WgmmaCommit();
      WgmmaWait<1>();  // S^T
      PinAccumulators(s);
      KeyValueScoreGrads<kProbabilities>(masked, s, dp, tile_lse, tile_delta,
                                         q0, key_a, at.t, T, scale_log2);
      AccToFragments(pa, s);
      WgmmaFence();
      WgFragmentsTimesTile(dv, pa, do_tile(buf));  // dV += P^T dO
      WgmmaCommit();
      WgmmaWait<1>();  // dP^T (dV's products may still run)
      PinAccumulators(dp);
      KeyValueScoreGrads<kGradients>(false, s, dp, tile_lse, tile_delta, q0,
                                     key_a, at.t, T, scale_log2);
    } else {
      WgRowsTimesTile(dp, v_rows, do_tile(buf));
      WgFinish(s, dp);
      KeyValueScoreGrads(masked, s, dp, tile_lse, tile_delta, q0, key_a, at.t,
                         T, scale_log2);
      // Each A just before its products (fewer live registers).
      AccToFragments(pa, s);
      WgmmaFence();
      WgFragmentsTimesTile(dv, pa, do_tile(buf));  // dV += P^T dO
    }
    AccToFragments(dsa, dp);
    WgmmaFence();
    WgFragmentsTimesTile(dk, dsa, q_tile(buf));  // dK += dS^T Q
    WgFinish(dv, dk);
  }
  bf16* grads = dqkv + at.qkv;
  StoreRows<HS>(grads + C, at.stride, dk, key_a, T, scale);
  StoreRows<HS>(grads + 2 * C, at.stride, dv, key_a, T, 1.0f);
}

// dQ for one block of 64 queries (BackwardQueryKernel's arithmetic).
__global__ void __launch_bounds__(kThreads, 3)
    WgmmaQueryKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                     const float* lse, const float* delta, int T, int C, int NH,
                     float scale) {
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  bf16* const q_rows = tiles.own(0);
  bf16* const do_rows = tiles.own(1);
  const auto k_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto v_tile = [&](int buf) { return tiles.streamed(1, buf); };
  const Place at = PlaceOf<HS>(T, C, NH);
  const int qb = gridDim.y - 1 - RowBlockRank();
  const bf16* q = qkv + at.qkv;
  const bf16* dy = dout + at.rows;
  const float scale_log2 = scale * kLog2e;
  LoadTileAsync(q_rows, q, at.stride, qb * kRows, T);
  LoadTileAsync(do_rows, dy, C, qb * kRows, T);
  LoadTileAsync(k_tile(0), q + C, at.stride, 0, T);
  LoadTileAsync(v_tile(0), q + 2 * C, at.stride, 0, T);
  CpAsyncCommit();
  const int row_a = qb * kRows + at.warp * 16 + at.g;
  float row_lse[2], row_delta[2];
  LoadRowStats(row_lse, row_delta, lse, delta, at, row_a, T);

  float dq[8][4] = {};
  for (int kt = 0; kt <= qb; ++kt) {
    const int k0 = kt * kTile, buf = kt % 2;
    AwaitKeysQueueNext<64, true>(k_tile(buf ^ 1), v_tile(buf ^ 1), q, C,
                                 at.stride, kt, qb, T);
    // S = Q K^T, then dP = dO V^T running while P is computed from S.
    float s[8][4], dp[8][4];
    WgmmaFence();
    WgRowsTimesTile(s, q_rows, k_tile(buf));
    WgmmaCommit();
    WgRowsTimesTile(dp, do_rows, v_tile(buf));
    WgmmaCommit();
    WgmmaWait<1>();
    PinAccumulators(s);
    QueryScoreGrads<kProbabilities>(kt == qb, s, dp, k0, row_a, at.t, row_lse,
                                    row_delta, scale_log2);  // mask: diagonal
    WgmmaWait<0>();                                          // dP
    PinAccumulators(dp);
    QueryScoreGrads<kGradients>(false, s, dp, k0, row_a, at.t, row_lse,
                                row_delta, scale_log2);
    uint32_t dsa[4][4];
    AccToFragments(dsa, dp);
    WgmmaFence();
    WgFragmentsTimesTile(dq, dsa, k_tile(buf));  // dQ += dS K
    WgFinish(dq);
  }
  StoreRows<HS>(dqkv + at.qkv, at.stride, dq, row_a, T, scale);
}

// The forward (ForwardKernel's arithmetic): S = Q K^T, the online softmax,
// O += P V, with the block's queries and the streamed keys and values in
// shared memory.
__global__ void __launch_bounds__(kThreads, 3)
    WgmmaForwardKernel(bf16* out, float* lse, const bf16* qkv, int T, int C,
                       int NH, float scale) {
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  bf16* const q_rows = tiles.own(0);
  const auto k_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto v_tile = [&](int buf) { return tiles.streamed(1, buf); };
  const Place at = PlaceOf<HS>(T, C, NH);
  const int qb = gridDim.y - 1 - RowBlockRank();  // the longest rows first
  const bf16* q = qkv + at.qkv;
  const float scale_log2 = scale * kLog2e;
  LoadTileAsync(q_rows, q, at.stride, qb * kRows, T);
  LoadTileAsync(k_tile(0), q + C, at.stride, 0, T);
  LoadTileAsync(v_tile(0), q + 2 * C, at.stride, 0, T);
  CpAsyncCommit();

  float o[8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  const int row_a = qb * kRows + at.warp * 16 + at.g;  // rows a, a + 8
  for (int kt = 0; kt <= qb; ++kt) {
    const int k0 = kt * kTile, buf = kt % 2;
    AwaitKeysQueueNext<64, true>(k_tile(buf ^ 1), v_tile(buf ^ 1), q, C,
                                 at.stride, kt, qb, T);
    float s[8][4];
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      Wgmma64x64<false>(s, TileKMajor(q_rows, ks), TileKMajor(k_tile(buf), ks),
                        ks > 0);
    }
    WgFinish(s);
    float tile_max[2] = {-INFINITY, -INFINITY};
    MaskScores(kt == qb, s, tile_max, k0, row_a, at.t);
    SoftmaxTile<HS>(s, tile_max, row_max, row_sum, o, scale_log2);
    uint32_t pa[4][4];
    AccToFragments(pa, s);
    WgmmaFence();
    PinAccumulators(o);
    WgFragmentsTimesTile(o, pa, v_tile(buf));  // O += P V
    WgFinish(o);
  }

  StoreForwardRows<HS>(out, lse, at, o, row_sum, row_max, row_a, T, C,
                       scale_log2);
}

// Compute capability major of the current device, asked once per device.
int CurrentMajor() {
  static int majors[64];  // 0: not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64)
    return 0;
  if (majors[device] == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                               device) != cudaSuccess)
      return 0;
    majors[device] = major;
  }
  return majors[device];
}

// GPT2_ATTENTION_GROUP, or 0 where it is not set to a group size.
int GroupFromEnv() {
  const char* env = std::getenv("GPT2_ATTENTION_GROUP");
  const int n = env != nullptr ? std::atoi(env) : 0;
  return n >= 1 ? n : 0;
}

int& GroupSetting() {
  static int pairs = BlockGroupFixed() ? GroupFromEnv() : kDefaultBlockGroup;
  return pairs;
}

// The launch grid of PlaceOf / RowBlockRank: row_blocks row blocks of each of
// the B * NH (batch, head) pairs, taken BlockGroup() pairs at a time (the
// largest divisor of B * NH up to it, so that no block is left over).
dim3 BlockGrid(int row_blocks, int B, int NH) {
  const int pairs = B * NH;
  int group = std::min(GroupSetting(), pairs);
  while (pairs % group != 0) --group;
  return dim3(group, row_blocks, pairs / group);
}

}  // namespace

void SetBlockGroup(int pairs) {
  GroupSetting() = pairs >= 1 ? pairs : kDefaultBlockGroup;
}
int BlockGroup() { return GroupSetting(); }
bool BlockGroupFixed() { return GroupFromEnv() > 0; }

bool Supports(DType dtype, int head_size) {
  return dtype == DType::kBF16 &&
         (head_size == 16 || head_size == 32 || head_size == 64) &&
         CurrentMajor() >= 8;
}

void AttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T, int C,
                      int NH, bool ldmatrix, CUstream_st* stream) {
  const int hs = C / NH;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  const dim3 grid = BlockGrid(CeilDiv(T, kRows), B, NH);
  DispatchInt<16, 32, 64>(
      hs, "tensor-core attention (head size)", [&](auto head) {
        constexpr int kHs = decltype(head)::value;
        CheckLaunch(
            ldmatrix ? GPT2_LAUNCH((ForwardKernel<kHs, true>), grid, kThreads,
                                   0, stream, Ptr<bf16>(out), Ptr<float>(lse),
                                   Ptr<bf16>(qkv), T, C, NH, scale)
                     : GPT2_LAUNCH((ForwardKernel<kHs, false>), grid, kThreads,
                                   0, stream, Ptr<bf16>(out), Ptr<float>(lse),
                                   Ptr<bf16>(qkv), T, C, NH, scale),
            "tc::ForwardKernel");
      });
}

size_t FusedBackwardWorkspaceBytes(int B, int T, int C, int NH) {
  const int64_t counters = 1 + int64_t{B} * NH * CeilDiv(T, kTile);
  return (int64_t{B} * T * C * sizeof(float) + 255) / 256 * 256 +
         counters * sizeof(int);
}

void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, const float* lse,
                       const float* delta, int B, int T, int C, int NH,
                       bool ldmatrix, bool lean, CUstream_st* stream, int parts,
                       void* fused_workspace, int fused_min_blocks) {
  const int hs = C / NH;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  const int row_blocks = CeilDiv(T, kRows);
  const dim3 grid = BlockGrid(row_blocks, B, NH);
  float* dq_sum = static_cast<float*>(fused_workspace);
  int* sync = nullptr;
  if (fused_workspace != nullptr) {
    sync = reinterpret_cast<int*>(static_cast<char*>(fused_workspace) +
                                  (int64_t{B} * T * C * sizeof(float) + 255) /
                                      256 * 256);
    const size_t counters = 1 + size_t(row_blocks) * NH * B;
    CheckLaunch(cudaMemsetAsync(sync, 0, counters * sizeof(int), stream),
                "tc fused backward (counters)");
  }
  auto launch = [&](auto head, auto ldm, auto lean_tag, auto fused_tag,
                    auto blocks_tag) {
    constexpr int kHs = decltype(head)::value;
    constexpr bool kLdm = decltype(ldm)::value;
    constexpr bool kLean = decltype(lean_tag)::value;
    constexpr bool kFused = decltype(fused_tag)::value;
    constexpr int kBlocks = decltype(blocks_tag)::value;
    constexpr int kShared = kLean ? LeanSharedBytes<kHs>() : 0;
    constexpr int kFusedShared = LeanSharedBytes<kHs, true>();
    auto* kv = &BackwardKeyValueKernel<kHs, kLdm, kLean, kFused, kBlocks>;
    auto* query = &BackwardQueryKernel<kHs, kLdm, kLean>;
    if constexpr (kLean) {
      // Above the 48 KiB a block gets without asking; once per kernel.
      static const bool allowed = [&] {
        for (const void* kernel : {reinterpret_cast<const void*>(kv),
                                   reinterpret_cast<const void*>(query)}) {
          CheckLaunch(cudaFuncSetAttribute(
                          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                          kernel == reinterpret_cast<const void*>(kv) && kFused
                              ? kFusedShared
                              : kShared),
                      "tc lean backward (shared memory size)");
          // All of L1 as shared memory, where the driver might otherwise
          // leave too little for the 3-4 blocks per SM these kernels are for.
          CheckLaunch(
              cudaFuncSetAttribute(
                  kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                  cudaSharedmemCarveoutMaxShared),
              "tc lean backward (shared memory carveout)");
        }
        return true;
      }();
      (void)allowed;
    }
    if (kFused || (parts & kKeyValuePart)) {
      CheckLaunch(
          GPT2_LAUNCH(kv, grid, kThreads, kFused ? kFusedShared : kShared,
                      stream, Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv),
                      lse, delta, T, C, NH, scale, dq_sum, sync),
          kFused ? "tc::BackwardKeyValueKernel (fused dQ)"
                 : "tc::BackwardKeyValueKernel");
    }
    if (!kFused && (parts & kQueryPart)) {
      CheckLaunch(GPT2_LAUNCH(query, grid, kThreads, kShared, stream,
                              Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv),
                              lse, delta, T, C, NH, scale),
                  "tc::BackwardQueryKernel");
    }
  };
  const std::false_type no;
  const std::true_type yes;
  const std::integral_constant<int, 3> three;
  const std::integral_constant<int, 2> two;
  DispatchInt<16, 32, 64>(
      hs, "tensor-core attention (head size)", [&](auto head) {
        if (fused_workspace != nullptr && fused_min_blocks == 2) {
          launch(head, yes, yes, yes, two);
        } else if (fused_workspace != nullptr) {
          launch(head, yes, yes, yes, three);
        } else if (ldmatrix && lean) {
          launch(head, yes, yes, no, three);
        } else if (ldmatrix) {
          launch(head, yes, no, no, three);
        } else {
          launch(head, no, no, no, three);
        }
      });
}

const std::string& WgmmaWhyNot() {
  static const std::string why = [] {
    const std::string check = CheckWgmmaLayout();
    return check.empty() ? check : "wgmma: " + check;
  }();
  return why;
}

bool WgmmaSupports(DType dtype, int head_size) {
  return dtype == DType::kBF16 && head_size == 64 && CurrentMajor() == 9 &&
         WgmmaWhyNot().empty();
}

namespace {
// Above the 48 KiB a block gets without asking, and all of L1 as shared
// memory; once per kernel.
void AllowWgmmaShared(const void* kernel, int bytes) {
  CheckLaunch(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
              "tc wgmma kernels (shared memory size)");
  CheckLaunch(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                  cudaSharedmemCarveoutMaxShared),
              "tc wgmma kernels (shared memory carveout)");
}
}  // namespace

void WgmmaAttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T,
                           int C, int NH, CUstream_st* stream) {
  GPT2_CHECK_MSG(out.dtype == DType::kBF16 && C == 64 * NH,
                 "wgmma attention: bf16, head size 64 only");
  const float scale = 1.0f / sqrtf(static_cast<float>(C / NH));
  constexpr int kShared = WgmmaSharedBytes();
  static const bool allowed =
      (AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaForwardKernel),
                        kShared),
       true);
  (void)allowed;
  CheckLaunch(
      GPT2_LAUNCH(WgmmaForwardKernel, BlockGrid(CeilDiv(T, kRows), B, NH),
                  kThreads, kShared, stream, Ptr<bf16>(out), Ptr<float>(lse),
                  Ptr<bf16>(qkv), T, C, NH, scale),
      "tc::WgmmaForwardKernel");
}

void WgmmaAttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv,
                            const float* lse, const float* delta, int B, int T,
                            int C, int NH, bool overlap, CUstream_st* stream,
                            int parts) {
  GPT2_CHECK_MSG(dout.dtype == DType::kBF16 && C == 64 * NH,
                 "wgmma attention: bf16, head size 64 only");
  const float scale = 1.0f / sqrtf(static_cast<float>(C / NH));
  constexpr int kShared = WgmmaSharedBytes();
  static const bool allowed =
      (AllowWgmmaShared(
           reinterpret_cast<const void*>(&WgmmaKeyValueKernel<false>), kShared),
       AllowWgmmaShared(
           reinterpret_cast<const void*>(&WgmmaKeyValueKernel<true>), kShared),
       AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaQueryKernel),
                        kShared),
       true);
  (void)allowed;
  const dim3 grid = BlockGrid(CeilDiv(T, kRows), B, NH);
  if (parts & kKeyValuePart) {
    auto* kernel =
        overlap ? &WgmmaKeyValueKernel<true> : &WgmmaKeyValueKernel<false>;
    CheckLaunch(GPT2_LAUNCH(kernel, grid, kThreads, kShared, stream,
                            Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv),
                            lse, delta, T, C, NH, scale),
                overlap ? "tc::WgmmaKeyValueKernel (overlapped, 2 blocks/SM)"
                        : "tc::WgmmaKeyValueKernel");
  }
  if (parts & kQueryPart) {
    CheckLaunch(GPT2_LAUNCH(WgmmaQueryKernel, grid, kThreads, kShared, stream,
                            Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv),
                            lse, delta, T, C, NH, scale),
                "tc::WgmmaQueryKernel");
  }
}

}  // namespace gpt2::cuda::tc
