// The device-side pieces the tensor-core attention kernels share: the
// mma.sync kernels (attention_tc.cu) and Hopper's wgmma ones
// (attention_wgmma.cu). Tile sizes, the block's place in the grid, tile loads,
// fragment helpers, the online softmax step, the score-gradient steps and the
// forward's final store. Internal to those two files.
#ifndef GPT2_OPS_ATTENTION_TC_PARTS_CUH_
#define GPT2_OPS_ATTENTION_TC_PARTS_CUH_

#include <cstdint>

#include "src/cuda/async_copy.cuh"
#include "src/cuda/common.cuh"
#include "src/cuda/mma.cuh"
#include "src/cuda/mma_check.h"
#include "src/cuda/wgmma.cuh"

namespace gpt2::cuda::tc::internal {

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

// This thread's share of copying rows [row0, row0 + 64) of a slice whose
// rows are `stride` elements apart, kChunks 16-byte chunks a row: chunk
// threadIdx.x % kChunks of rows threadIdx.x / kChunks + j kPassRows (j <
// kTile / kPassRows). The same chunk of rows a fixed step apart: one address
// and one step computed per call, not a division and a multiply per chunk
// (those were a third of the wgmma forward's instructions), and no bounds
// checks where the whole tile is before T. copy(j, from, valid): valid is
// false past row T (from is then not to be read). `tid`: the thread's index
// among the kThreads that copy the tile (threadIdx.x but in blocks of two
// warpgroups, which share the work of a tile by warpgroup).
template <int kChunks, typename Copy>
__device__ __forceinline__ void ForTileChunks(const bf16* src, int64_t stride,
                                              int row0, int T, Copy copy,
                                              int tid) {
  constexpr int kPassRows = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kTile % kPassRows == 0,
                "a tile's chunks in whole passes of the block");
  const int r = tid / kChunks;
  const bf16* from = src + (row0 + r) * stride + tid % kChunks * 8;
  const int64_t step = kPassRows * stride;
  if (row0 + kTile <= T) {
#pragma unroll
    for (int j = 0; j < kTile / kPassRows; ++j) copy(j, from + j * step, true);
  } else {
#pragma unroll
    for (int j = 0; j < kTile / kPassRows; ++j)
      copy(j, from + j * step, row0 + r + j * kPassRows < T);
  }
}

// Where this thread's first chunk of ForTileChunks goes in a tile with rows
// `row_elems` long.
template <int kChunks>
__device__ __forceinline__ int FirstChunk(int row_elems) {
  return static_cast<int>(threadIdx.x) / kChunks * row_elems +
         static_cast<int>(threadIdx.x) % kChunks * 8;
}

// Rows [row0, row0 + 64) of a (T, HS) slice whose rows are `stride` elements
// apart, into tile[r][d] (row length HS + kPad); zeros past row T.
template <int HS>
__device__ __forceinline__ void LoadRows(bf16* tile, const bf16* src,
                                         int64_t stride, int row0, int T) {
  constexpr int kChunks = HS / 8, kPass = kThreads / kChunks * (HS + kPad);
  bf16* to = tile + FirstChunk<kChunks>(HS + kPad);
  ForTileChunks<kChunks>(
      src, stride, row0, T,
      [&](int j, const bf16* from, bool valid) {
        uint4 v = make_uint4(0, 0, 0, 0);
        if (valid) v = *reinterpret_cast<const uint4*>(from);
        *reinterpret_cast<uint4*>(to + j * kPass) = v;
      },
      threadIdx.x);
}

// LoadRows through cp.async: queued, complete after CpAsyncWait and a barrier.
template <int HS>
__device__ __forceinline__ void LoadRowsAsync(bf16* tile, const bf16* src,
                                              int64_t stride, int row0, int T) {
  constexpr int kChunks = HS / 8, kPass = kThreads / kChunks * (HS + kPad);
  bf16* to = tile + FirstChunk<kChunks>(HS + kPad);
  ForTileChunks<kChunks>(
      src, stride, row0, T,
      [&](int j, const bf16* from, bool valid) {
        CpAsync16(to + j * kPass, valid ? from : src, valid);
      },
      threadIdx.x);
}

// Rows [row0, row0 + 64) of a (T, 64) slice whose rows are `stride` apart,
// queued by cp.async into a TileIndex tile (src/cuda/wgmma.cuh: 128-byte
// swizzle); zeros past row T. Lanes 8 i .. 8 i + 7 take the 8 chunks of one
// row: a warp reads 4 whole rows (128 contiguous bytes each), and the 8 lanes
// of each store phase write 8 different chunk positions (no bank conflicts).
// A pass moves 16 rows, a multiple of the swizzle's 8: each of this thread's
// chunks is its first one plus whole passes. `tid` as in ForTileChunks.
__device__ __forceinline__ void LoadTileAsync(bf16* tile, const bf16* src,
                                              int64_t stride, int row0, int T,
                                              int tid) {
  constexpr int kPassRows = kThreads / 8;
  static_assert(kPassRows % 8 == 0, "passes of whole swizzle periods");
  static_assert(
      TileIndex(kPassRows + 5, 24) == TileIndex(5, 24) + kPassRows * 64,
      "the swizzle repeats every 8 rows");
  bf16* to = tile + TileIndex(tid / 8, tid % 8 * 8);
  ForTileChunks<8>(
      src, stride, row0, T,
      [&](int j, const bf16* from, bool valid) {
        CpAsync16(to + j * kPassRows * 64, valid ? from : src, valid);
      },
      tid);
}
__device__ __forceinline__ void LoadTileAsync(bf16* tile, const bf16* src,
                                              int64_t stride, int row0, int T) {
  LoadTileAsync(tile, src, stride, row0, T, threadIdx.x);
}

// The dK/dV kernels' statistics of query tile q0 (rows stat + q0 ..): lse in
// log2 units and delta, zeros past T; one a thread (plain stores, published
// by the loop's barrier). `tid`: the thread's index among those loading (by
// default the block's).
__device__ __forceinline__ void LoadTileStats(float* tile_lse,
                                              float* tile_delta,
                                              const float* lse,
                                              const float* delta, int64_t stat,
                                              int q0, int T, int tid) {
  static_assert(kTile <= kThreads, "one statistic a thread");
  if (const int i = tid; i < kTile) {
    const bool in = q0 + i < T;
    tile_lse[i] = in ? lse[stat + q0 + i] * kLog2e : 0.0f;
    tile_delta[i] = in ? delta[stat + q0 + i] : 0.0f;
  }
}
__device__ __forceinline__ void LoadTileStats(float* tile_lse,
                                              float* tile_delta,
                                              const float* lse,
                                              const float* delta, int64_t stat,
                                              int q0, int T) {
  LoadTileStats(tile_lse, tile_delta, lse, delta, stat, q0, T, threadIdx.x);
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
// streamed tiles and the block's own 64 rows of two tensors.
template <int HS>
constexpr int LeanSharedBytes() {
  return (4 * kTile + 2 * kRows) * (HS + kPad) * static_cast<int>(sizeof(bf16));
}
struct LeanTiles {
  bf16* streamed[2][2];  // [tensor][buffer]
  bf16* own[2];          // the block's rows of each of its two tensors
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
// In two parts: SoftmaxProbabilities leaves the output's rescale to
// RescaleOutput (for a kernel whose output products are still running).
__device__ __forceinline__ void SoftmaxProbabilities(
    float (&s)[8][4], float (&tile_max)[2], float (&row_max)[2],
    float (&row_sum)[2], float (&correction)[2], float scale_log2) {
  float neg_max[2];  // -max * scale_log2 of each row
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] =
        fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] =
        fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    const float new_max = fmaxf(row_max[r], tile_max[r]);
    correction[r] = Exp2Ftz((row_max[r] - new_max) * scale_log2);
    row_max[r] = new_max;
    neg_max[r] = -new_max * scale_log2;
    row_sum[r] *= correction[r];
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
template <int HS>
__device__ __forceinline__ void RescaleOutput(float (&o)[HS / 8][4],
                                              const float (&correction)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
#pragma unroll
    for (int dt = 0; dt < HS / 8; ++dt) {
      o[dt][2 * r] *= correction[r];
      o[dt][2 * r + 1] *= correction[r];
    }
  }
}
template <int HS>
__device__ __forceinline__ void SoftmaxTile(
    float (&s)[8][4], float (&tile_max)[2], float (&row_max)[2],
    float (&row_sum)[2], float (&o)[HS / 8][4], float scale_log2) {
  float correction[2];
  SoftmaxProbabilities(s, tile_max, row_max, row_sum, correction, scale_log2);
  RescaleOutput<HS>(o, correction);
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

// The launch grid of PlaceOf / RowBlockRank: row_blocks row blocks of each of
// the B * NH (batch, head) pairs, taken BlockGroup() pairs at a time (the
// largest divisor of B * NH up to it, so that no block is left over).
dim3 BlockGrid(int row_blocks, int B, int NH);

}  // namespace gpt2::cuda::tc::internal

#endif  // GPT2_OPS_ATTENTION_TC_PARTS_CUH_
