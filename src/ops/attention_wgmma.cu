// Causal attention on Hopper's warpgroup tensor cores (wgmma.mma_async,
// src/cuda/wgmma.cuh): the forward and the two backward kernels of
// attention_tc.cu for head size 64, with the same blocks (4 warps, 64 rows),
// the same grid and block order, and the same arithmetic between the
// products (attention_tc_parts.cuh).
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "src/core/env.h"
#include "src/cuda/async_copy.cuh"
#include "src/cuda/common.cuh"
#include "src/cuda/mma_check.h"
#include "src/cuda/wgmma.cuh"
#include "src/ops/attention_tc.h"
#include "src/ops/attention_tc_parts.cuh"

namespace gpt2::cuda::tc {
namespace {

using namespace internal;  // NOLINT: the shared pieces, attention_tc_parts.cuh

// Head size 64 only (every GPT-2 shape). A block is one warpgroup (the same
// 4 warps of 16 rows); each product of a 64-row block with a 64-row tile is
// 4 wgmma (k-steps of 16) instead of 32 mma.sync a warp, with B read by the
// tensor cores from shared memory: no fragment loads, no ldmatrix. Tiles are
// stored in the TileIndex layout (whole rows, 128-byte swizzle), which the
// same tile serves as a K-major operand (rows along M or N) and as an
// MN-major B (rows along K): Q and dO feed S^T and dP^T K-major and dK, dV
// MN-major.
// The block's own rows are A operands straight from shared memory (or, in the
// kernels' register versions, A fragments loaded once: OwnRows), and P^T /
// dS^T go from the accumulators to A fragments in registers (AccToA), as in
// the mma.sync kernels. Results match those kernels to rounding, not bit for
// bit (the tensor cores add a k-step in their own order).
constexpr int kWgTiles = 6;  // dK/dV and dQ: 2 own + 2 x 2 streamed tiles
constexpr int WgmmaSharedBytes(int tiles = kWgTiles) {
  return tiles * kTileElems * static_cast<int>(sizeof(bf16)) +
         4 * kTile * static_cast<int>(sizeof(float)) +  // lse, delta x 2
         kTileAlign;  // to start the tiles on the swizzle's 1,024 bytes
}

// The wgmma kernels' shared memory (WgmmaSharedBytes): the block's own rows
// of two tensors (one in the forward), two buffers of each of two streamed
// tensors, then room for two buffers of two 64-float statistics. The
// pipelined backward kernels take a third buffer of a streamed tensor past
// those six tiles (their shared memory is larger), and ring() deals a
// tensor's three buffers out in turn. Buffers by arithmetic, not arrays of
// pointers (a run-time index would put such an array on the stack).
struct WgTiles {
  bf16* base;
  __device__ bf16* own(int tensor) const { return base + tensor * kTileElems; }
  __device__ bf16* streamed(int tensor, int buf) const {
    return base + (2 + 2 * tensor + buf) * kTileElems;
  }
  __device__ float* stats() const {
    return reinterpret_cast<float*>(base + kWgTiles * kTileElems);
  }
  // Streamed tensor `tensor`'s buffer `slot` of three (the third past the
  // six tiles, tensor by tensor).
  __device__ bf16* ring(int tensor, int slot) const {
    return slot < 2 ? streamed(tensor, slot)
                    : base + (kWgTiles + tensor) * kTileElems;
  }
};
__device__ __forceinline__ WgTiles CarveWgTiles() {
  GPT2_EXTERN_SHARED(uint4, wg_tiles);  // WgmmaSharedBytes()
  return WgTiles{AlignTiles(reinterpret_cast<bf16*>(wg_tiles))};
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

// The block's own rows (a 64-row tile it keeps for the whole loop) as the A
// of its S-type products: read by the tensor cores from shared memory at
// every product, or (kInRegisters) loaded once into A fragments, warp w's 16
// rows in mma.sync's A layout (mma.cuh), and read from registers. With A and
// B both in shared memory, an m64n64k16 product moves 4 KiB through the
// SM's 128 bytes a cycle in the 32 cycles its tensor cores take: shared
// memory, not the tensor cores, sets the pace; from registers only B moves.
// 16 registers more a tile.
template <bool kInRegisters>
struct OwnRows {
  const bf16* tile;
  uint32_t a[4][4];
  // After the tile has landed and a barrier published it.
  __device__ __forceinline__ void Load() {
    if constexpr (kInRegisters) {
      const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
      const int r = (threadIdx.x / 32 % 4) * 16 + g;
      const auto pair = [&](int row, int col) {
        return *reinterpret_cast<const uint32_t*>(tile + TileIndex(row, col));
      };
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        const int c = 16 * ks + 2 * t;
        a[ks][0] = pair(r, c);
        a[ks][1] = pair(r + 8, c);
        a[ks][2] = pair(r, c + 8);
        a[ks][3] = pair(r + 8, c + 8);
      }
    }
  }
  // acc = these rows times other^T (other K-major over its 64 columns).
  __device__ __forceinline__ void TimesTile(float (&acc)[8][4],
                                            const bf16* other) const {
    if constexpr (kInRegisters) {
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        Wgmma64x64<false>(acc, a[ks], TileKMajor(other, ks), ks > 0);
    } else {
      WgRowsTimesTile(acc, tile, other);
    }
  }
};

// acc += a (64 x 64 as four A fragments) times tile (rows along k).
__device__ __forceinline__ void WgFragmentsTimesTile(float (&acc)[8][4],
                                                     const uint32_t (&a)[4][4],
                                                     const bf16* tile) {
#pragma unroll
  for (int j = 0; j < 4; ++j)
    Wgmma64x64<true>(acc, a[j], TileMnMajor(tile, j), true);
}

// The pipelined kernels' accumulators and A fragments, computed before, in
// their registers and fenced for the products that follow.
__device__ __forceinline__ void FenceForProducts(float (&acc)[8][4],
                                                 uint32_t (&a)[4][4]) {
  PinAccumulators(acc);
  PinFragments(a);
  WgmmaFence();
}

// The pipelined kernels' step after issuing this tile's kGroups groups of
// products: the previous tile's products (acc += a times the tile
// tile_of() returns; kPrevious) queued behind them as one more group, then a
// wait for this tile's first group (whose accumulators are `first`).
template <bool kPrevious, int kGroups, typename TileOf>
__device__ __forceinline__ void QueuePreviousAwaitFirst(
    float (&acc)[8][4], const uint32_t (&a)[4][4], TileOf tile_of,
    float (&first)[8][4]) {
  if constexpr (kPrevious) {
    WgFragmentsTimesTile(acc, a, tile_of());
    WgmmaCommit();
    WgmmaWait<kGroups>();
  } else {
    WgmmaWait<kGroups - 1>();
  }
  PinAccumulators(first);
}

// The previous tile's products (kPrevious), the last group in flight: waited
// for, their accumulators pinned.
template <bool kPrevious>
__device__ __forceinline__ void AwaitPrevious(float (&acc)[8][4]) {
  if constexpr (kPrevious) {
    WgmmaWait<0>();
    PinAccumulators(acc);
  }
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

// The pipelined kernels' last tile: acc += a times tile (a computed before),
// waited for.
__device__ __forceinline__ void FinishLastTile(float (&acc)[8][4],
                                               uint32_t (&a)[4][4],
                                               const bf16* tile) {
  FenceForProducts(acc, a);
  WgFragmentsTimesTile(acc, a, tile);
  WgFinish(acc);
}

// dK and dV for one block of 64 keys (BackwardKeyValueKernel's arithmetic):
// the products in two groups, each waited for before the math that follows
// it (168 registers, 3 blocks an SM; 0.211 ms a layer on the H100). (A
// version starting each product as soon as its inputs were there, so that
// the math between them overlapped the tensor cores' work, needed 208
// registers, 2 blocks an SM, and lost on the H100: 0.269 ms a layer against
// 0.211.) (Versions of this and the dQ kernels holding the block's own rows
// in registers as A fragments, 2 blocks an SM, lost on the H100 at every
// batch: 0.32 against 0.25 ms a layer for the pair at B=16, 1.27 against 0.99
// at B=64, logs/gpu_h100_2026-11-27_3; deleted. The forward's stay: a tie.)
// A block of 64 keys (the dK/dV kernels'): its place, its key block (low
// blocks see the most queries), its keys a and a + 8 (this lane's), with its
// keys and values (own tiles 0 and 1) queued by the constructor; LoadQueries
// queues query tile qt's rows of Q and dO and stores its statistics (lse in
// log2 units, delta; plain stores published by the caller's barrier).
struct KeyBlock {
  Place at;
  int kb, query_tiles;
  const bf16* q;   // this head's queries; its keys at + C, values at + 2 C
  const bf16* dy;  // this head's output gradients
  float scale_log2;
  int key_a;
  __device__ KeyBlock(const WgTiles& tiles, const bf16* qkv, const bf16* dout,
                      int T, int C, int NH, float scale)
      : at(PlaceOf<64>(T, C, NH)),
        kb(RowBlockRank()),
        query_tiles((T + kTile - 1) / kTile),
        q(qkv + at.qkv),
        dy(dout + at.rows),
        scale_log2(scale * kLog2e),
        key_a(kb * kRows + at.warp * 16 + at.g) {
    LoadTileAsync(tiles.own(0), q + C, at.stride, kb * kRows, T);
    LoadTileAsync(tiles.own(1), q + 2 * C, at.stride, kb * kRows, T);
  }
  __device__ void LoadQueries(int qt, bf16* q_tile, bf16* do_tile,
                              float* tile_lse, float* tile_delta,
                              const float* lse, const float* delta, int T,
                              int C) const {
    const int q0 = qt * kTile;
    LoadTileAsync(q_tile, q, at.stride, q0, T);
    LoadTileAsync(do_tile, dy, C, q0, T);
    LoadTileStats(tile_lse, tile_delta, lse, delta, at.stat, q0, T);
  }
};

// One query tile of the dK/dV kernels (WgmmaKeyValueKernel's loop body): S^T
// = K Q^T and dP^T = V dO^T (keys x queries), whole tiles: the diagonal
// tile's masked corner (`masked`: the diagonal tile, or queries past T) costs
// less than splitting the warpgroup. Then dV += P^T dO and dK += dS^T Q.
__device__ __forceinline__ void KeyValueTile(
    const OwnRows<false>& k_own, const OwnRows<false>& v_own, const bf16* q,
    const bf16* dy, const float* tile_lse, const float* tile_delta, bool masked,
    int q0, int key_a, int t, int T, float scale_log2, float (&dk)[8][4],
    float (&dv)[8][4]) {
  float s[8][4], dp[8][4];
  uint32_t pa[4][4], dsa[4][4];  // P^T and dS^T / scale as A fragments
  // Both products waited for together: computing P^T while dP^T's products
  // still run (as the dQ kernel does) needs registers this kernel does not
  // have at 3 blocks an SM, and ptxas then serializes every wgmma (C7512).
  WgmmaFence();
  k_own.TimesTile(s, q);
  v_own.TimesTile(dp, dy);
  WgFinish(s, dp);
  KeyValueScoreGrads(masked, s, dp, tile_lse, tile_delta, q0, key_a, t, T,
                     scale_log2);
  // Each A just before its products (fewer live registers).
  AccToFragments(pa, s);
  WgmmaFence();
  WgFragmentsTimesTile(dv, pa, dy);  // dV += P^T dO
  AccToFragments(dsa, dp);
  WgmmaFence();
  WgFragmentsTimesTile(dk, dsa, q);  // dK += dS^T Q
  WgFinish(dv, dk);
}

__global__ void __launch_bounds__(kThreads, 3)
    WgmmaKeyValueKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                        const float* lse, const float* delta, int T, int C,
                        int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  OwnRows<false> k_own{tiles.own(0)}, v_own{tiles.own(1)};
  const auto q_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto do_tile = [&](int buf) { return tiles.streamed(1, buf); };
  // Statistics: lse of buffer b at [b * kTile], delta at [(2 + b) * kTile].
  float* const stats = tiles.stats();
  const KeyBlock b(tiles, qkv, dout, T, C, NH, scale);
  const auto load_tile = [&](int qt, int buf) {
    b.LoadQueries(qt, q_tile(buf), do_tile(buf), stats + buf * kTile,
                  stats + (2 + buf) * kTile, lse, delta, T, C);
  };
  load_tile(b.kb, 0);
  CpAsyncCommit();
  const Place& at = b.at;
  const int kb = b.kb, query_tiles = b.query_tiles, key_a = b.key_a;
  const float scale_log2 = b.scale_log2;

  float dk[8][4] = {}, dv[8][4] = {};
  for (int qt = kb; qt < query_tiles; ++qt) {
    const int q0 = qt * kTile, buf = (qt - kb) % 2;
    // Tile qt has landed (for the tensor cores too); every product of tile
    // qt - 1 was waited for, so its buffers take qt + 1.
    CpAsyncWait<0>();
    FenceProxyAsync();
    __syncthreads();
    if (qt == kb) {
      k_own.Load();
      v_own.Load();
    }
    if (qt + 1 < query_tiles) load_tile(qt + 1, buf ^ 1);
    CpAsyncCommit();
    // S^T = K Q^T and dP^T = V dO^T, then dV and dK: KeyValueTile's
    // arithmetic, written out (through the helper ptxas schedules this
    // kernel differently: 8 instructions more at the same 168 registers; the
    // code the H100 runs measured stays).
    const bool masked = qt == kb || q0 + kTile > T;
    const float* tile_lse = stats + buf * kTile;
    const float* tile_delta = stats + (2 + buf) * kTile;
    float s[8][4], dp[8][4];
    uint32_t pa[4][4], dsa[4][4];
    WgmmaFence();
    k_own.TimesTile(s, q_tile(buf));
    v_own.TimesTile(dp, do_tile(buf));
    WgFinish(s, dp);
    KeyValueScoreGrads(masked, s, dp, tile_lse, tile_delta, q0, key_a, at.t, T,
                       scale_log2);
    AccToFragments(pa, s);
    WgmmaFence();
    WgFragmentsTimesTile(dv, pa, do_tile(buf));  // dV += P^T dO
    AccToFragments(dsa, dp);
    WgmmaFence();
    WgFragmentsTimesTile(dk, dsa, q_tile(buf));  // dK += dS^T Q
    WgFinish(dv, dk);
  }
  bf16* grads = dqkv + at.qkv;
  StoreRows<HS>(grads + C, at.stride, dk, key_a, T, scale);
  StoreRows<HS>(grads + 2 * C, at.stride, dv, key_a, T, 1.0f);
}

// A block of 64 queries (the forward's and dQ's): its place, its query block
// (the longest rows first), its rows a and a + 8 (this lane's), and its first
// loads queued: its queries (own tile 0), with `dout` its output gradients
// too (own tile 1), the keys and values of tile 0 (streamed buffers 0).
struct QueryBlock {
  Place at;
  int qb;
  const bf16* q;  // this head's queries; its keys at + C, values at + 2 C
  float scale_log2;
  int row_a;
  __device__ QueryBlock(const WgTiles& tiles, const bf16* qkv, int T, int C,
                        int NH, float scale, const bf16* dout = nullptr)
      : at(PlaceOf<64>(T, C, NH)),
        qb(gridDim.y - 1 - RowBlockRank()),
        q(qkv + at.qkv),
        scale_log2(scale * kLog2e),
        row_a(qb * kRows + at.warp * 16 + at.g) {
    LoadTileAsync(tiles.own(0), q, at.stride, qb * kRows, T);
    if (dout != nullptr)
      LoadTileAsync(tiles.own(1), dout + at.rows, C, qb * kRows, T);
    LoadTileAsync(tiles.streamed(0, 0), q + C, at.stride, 0, T);
    LoadTileAsync(tiles.streamed(1, 0), q + 2 * C, at.stride, 0, T);
    CpAsyncCommit();
  }
};

// One key tile of the four-blocks and wide dQ kernels (WgmmaQueryKernel's
// loop body): S = Q K^T, then dP = dO V^T running while P is computed from S
// (masked on the diagonal tile), dS, and dQ += dS K.
__device__ __forceinline__ void QueryTile(const OwnRows<false>& q_own,
                                          const OwnRows<false>& do_own,
                                          const bf16* k, const bf16* v,
                                          bool diagonal, int k0, int row_a,
                                          int t, const float (&row_lse)[2],
                                          const float (&row_delta)[2],
                                          float scale_log2, float (&dq)[8][4]) {
  float s[8][4], dp[8][4];
  WgmmaFence();
  q_own.TimesTile(s, k);
  WgmmaCommit();
  do_own.TimesTile(dp, v);
  WgmmaCommit();
  WgmmaWait<1>();
  PinAccumulators(s);
  QueryScoreGrads<kProbabilities>(diagonal, s, dp, k0, row_a, t, row_lse,
                                  row_delta, scale_log2);
  WgmmaWait<0>();  // dP
  PinAccumulators(dp);
  QueryScoreGrads<kGradients>(false, s, dp, k0, row_a, t, row_lse, row_delta,
                              scale_log2);
  uint32_t dsa[4][4];
  AccToFragments(dsa, dp);
  WgmmaFence();
  WgFragmentsTimesTile(dq, dsa, k);  // dQ += dS K
  WgFinish(dq);
}

// dQ for one block of 64 queries (BackwardQueryKernel's arithmetic), 3
// blocks an SM at 151 registers; kFourBlocks: the same through the QueryTile
// helper, whose schedule ptxas fits in 126 registers, for 4 blocks an SM
// (the same arithmetic: the same bits).
template <bool kFourBlocks>
__global__ void __launch_bounds__(kThreads, kFourBlocks ? 4 : 3)
    WgmmaQueryKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                     const float* lse, const float* delta, int T, int C, int NH,
                     float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  OwnRows<false> q_own{tiles.own(0)}, do_own{tiles.own(1)};
  const auto k_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto v_tile = [&](int buf) { return tiles.streamed(1, buf); };
  const QueryBlock b(tiles, qkv, T, C, NH, scale, dout);
  float row_lse[2], row_delta[2];
  LoadRowStats(row_lse, row_delta, lse, delta, b.at, b.row_a, T);

  float dq[8][4] = {};
  for (int kt = 0; kt <= b.qb; ++kt) {
    const int k0 = kt * kTile, buf = kt % 2;
    AwaitKeysQueueNext<64, true>(k_tile(buf ^ 1), v_tile(buf ^ 1), b.q, C,
                                 b.at.stride, kt, b.qb, T);
    if constexpr (kFourBlocks) {
      QueryTile(q_own, do_own, k_tile(buf), v_tile(buf), kt == b.qb, k0,
                b.row_a, b.at.t, row_lse, row_delta, b.scale_log2, dq);
      continue;
    }
    // S = Q K^T, then dP = dO V^T running while P is computed from S. (The
    // same as QueryTile, written out: the schedule the H100 runs measured.)
    float s[8][4], dp[8][4];
    WgmmaFence();
    q_own.TimesTile(s, k_tile(buf));
    WgmmaCommit();
    do_own.TimesTile(dp, v_tile(buf));
    WgmmaCommit();
    WgmmaWait<1>();
    PinAccumulators(s);
    QueryScoreGrads<kProbabilities>(kt == b.qb, s, dp, k0, b.row_a, b.at.t,
                                    row_lse, row_delta,
                                    b.scale_log2);  // mask: diagonal
    WgmmaWait<0>();                                 // dP
    PinAccumulators(dp);
    QueryScoreGrads<kGradients>(false, s, dp, k0, b.row_a, b.at.t, row_lse,
                                row_delta, b.scale_log2);
    uint32_t dsa[4][4];
    AccToFragments(dsa, dp);
    WgmmaFence();
    WgFragmentsTimesTile(dq, dsa, k_tile(buf));  // dQ += dS K
    WgFinish(dq);
  }
  StoreRows<HS>(dqkv + b.at.qkv, b.at.stride, dq, b.row_a, T, scale);
}

// dQ with each key tile's S and dP products followed by the previous tile's
// dQ += dS K (the forward's pipelining): the score math of tile kt runs
// while dQ's products of tile kt - 1 do. The same products added to dQ in
// the same order: the same bits. K takes three buffers (the third after the
// two streamed pairs, where the dK/dV kernel keeps its statistics: this
// kernel's shared memory is kWgTiles + 1 tiles). (A dK/dV kernel pipelined
// alike, at 2 blocks an SM, lost to the plain one on the H100: 0.198 against
// 0.176 ms a layer at B=16, logs/gpu_h100_2026-11-27_3; deleted.)
constexpr int kWgQueryPipelinedTiles = kWgTiles + 1;
__global__ void __launch_bounds__(kThreads, 3)
    WgmmaQueryPipelinedKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                              const float* lse, const float* delta, int T,
                              int C, int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  OwnRows<false> q_own{tiles.own(0)}, do_own{tiles.own(1)};
  const auto k_tile = [&](int kt) { return tiles.ring(0, kt % 3); };
  const auto v_tile = [&](int kt) { return tiles.streamed(1, kt % 2); };
  const QueryBlock b(tiles, qkv, T, C, NH, scale, dout);
  float row_lse[2], row_delta[2];
  LoadRowStats(row_lse, row_delta, lse, delta, b.at, b.row_a, T);

  float dq[8][4] = {};
  uint32_t dsa[4][4];  // dS / scale of the previous tile as A fragments
  const auto tile = [&](int kt, auto previous) {
    constexpr bool kPrevious = decltype(previous)::value;
    const int k0 = kt * kTile;
    // Every product of tile kt - 1 was waited for: V's buffer of tile kt - 1
    // and K's of tile kt - 2 take tile kt + 1.
    AwaitKeysQueueNext<64, true>(k_tile(kt + 1), v_tile(kt + 1), b.q, C,
                                 b.at.stride, kt, b.qb, T);
    if constexpr (!kPrevious) {
      q_own.Load();
      do_own.Load();
    }
    float s[8][4], dp[8][4];
    FenceForProducts(dq, dsa);
    q_own.TimesTile(s, k_tile(kt));
    WgmmaCommit();
    do_own.TimesTile(dp, v_tile(kt));
    WgmmaCommit();
    // dQ += dS K of tile kt - 1 behind them; then S.
    QueuePreviousAwaitFirst<kPrevious, 2>(
        dq, dsa, [&] { return k_tile(kt - 1); }, s);
    QueryScoreGrads<kProbabilities>(kt == b.qb, s, dp, k0, b.row_a, b.at.t,
                                    row_lse, row_delta,
                                    b.scale_log2);  // mask: diagonal
    if constexpr (kPrevious) {
      WgmmaWait<1>();  // dP
    } else {
      WgmmaWait<0>();
    }
    PinAccumulators(dp);
    QueryScoreGrads<kGradients>(false, s, dp, k0, b.row_a, b.at.t, row_lse,
                                row_delta, b.scale_log2);
    AwaitPrevious<kPrevious>(dq);
    AccToFragments(dsa, dp);
  };
  tile(0, std::false_type{});
  for (int kt = 1; kt <= b.qb; ++kt) tile(kt, std::true_type{});
  FinishLastTile(dq, dsa, k_tile(b.qb));  // dQ += dS K
  StoreRows<HS>(dqkv + b.at.qkv, b.at.stride, dq, b.row_a, T, scale);
}

// One key tile of the plain forwards (WgmmaForwardKernel and the wide one):
// S = Q K^T (masked on the diagonal tile), the online softmax, O += P V.
template <bool kQRegs>
__device__ __forceinline__ void ForwardTile(
    const OwnRows<kQRegs>& q_own, const bf16* k, const bf16* v, bool diagonal,
    int k0, int row_a, int t, float scale_log2, float (&o)[8][4],
    float (&row_max)[2], float (&row_sum)[2]) {
  float s[8][4];
  WgmmaFence();
  q_own.TimesTile(s, k);
  WgFinish(s);
  float tile_max[2] = {-INFINITY, -INFINITY};
  MaskScores(diagonal, s, tile_max, k0, row_a, t);
  SoftmaxTile<64>(s, tile_max, row_max, row_sum, o, scale_log2);
  uint32_t pa[4][4];
  AccToFragments(pa, s);
  WgmmaFence();
  PinAccumulators(o);
  WgFragmentsTimesTile(o, pa, v);  // O += P V
  WgFinish(o);
}

// The forward (ForwardKernel's arithmetic): S = Q K^T, the online softmax,
// O += P V, with the block's queries and the streamed keys and values in
// shared memory; kQRegs: the queries as A fragments in registers (OwnRows),
// capped at 128 registers for 4 blocks an SM.
template <bool kQRegs>
__global__ void __launch_bounds__(kThreads, kQRegs ? 4 : 3)
    WgmmaForwardKernel(bf16* out, float* lse, const bf16* qkv, int T, int C,
                       int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  OwnRows<kQRegs> q_own{tiles.own(0)};
  const auto k_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto v_tile = [&](int buf) { return tiles.streamed(1, buf); };
  const QueryBlock b(tiles, qkv, T, C, NH, scale);

  float o[8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  for (int kt = 0; kt <= b.qb; ++kt) {
    const int k0 = kt * kTile, buf = kt % 2;
    AwaitKeysQueueNext<64, true>(k_tile(buf ^ 1), v_tile(buf ^ 1), b.q, C,
                                 b.at.stride, kt, b.qb, T);
    if (kt == 0) q_own.Load();
    ForwardTile(q_own, k_tile(buf), v_tile(buf), kt == b.qb, k0, b.row_a,
                b.at.t, b.scale_log2, o, row_max, row_sum);
  }

  StoreForwardRows<HS>(out, lse, b.at, o, row_sum, row_max, b.row_a, T, C,
                       b.scale_log2);
}

// A block of the wide kernels: two warpgroups, 128 queries (row blocks
// 2 p and 2 p + 1 of a head, p = the block's rank from the longest), each
// warpgroup its 64 rows computed as the narrow kernels do (the same
// operations in the same order on the same tiles: the same bits), the two
// sharing each key and value tile, loaded once (warpgroup 0 queues K,
// warpgroup 1 V). The narrow kernels read every key tile from L2 once for
// each 64 queries: at B=16 ~420 MB a layer, ~4.2 TB/s in the forward's 0.100
// ms on the H100 (dQ's 0.113 ms: ~3.7), near what its L2 delivers; here half.
// Warpgroup 0 sits out the last tile (warpgroup 1's diagonal) but for its
// barriers and loads; a warpgroup whose rows start at or past T computes
// nothing.
struct WideBlock {
  Place at;              // at.warp: the warp within its warpgroup
  int wg, tid;           // the warpgroup, and the thread within it
  int qb;                // this warpgroup's row block
  int row_blocks, last;  // of the head; the last key tile the block reads
  int row_a;
  const bf16* q;  // this head's queries; its keys at + C, values at + 2 C
  float scale_log2;
  __device__ WideBlock(const bf16* qkv, int T, int C, int NH, float scale)
      : at(PlaceOf<64>(T, C, NH)),
        wg(static_cast<int>(threadIdx.x) / kThreads),
        tid(static_cast<int>(threadIdx.x) % kThreads),
        qb(2 * (static_cast<int>(gridDim.y) - 1 - RowBlockRank()) + wg),
        row_blocks((T + kRows - 1) / kRows),
        last(min(qb | 1, row_blocks - 1)),
        q(qkv + at.qkv),
        scale_log2(scale * kLog2e) {
    at.warp %= 4;
    row_a = qb * kRows + at.warp * 16 + at.g;
  }
  // Whether this warpgroup's rows take key tile kt.
  __device__ bool Takes(int kt) const { return kt <= qb && qb < row_blocks; }
  // This warpgroup's share of key tile kt: K or V, into k or v.
  __device__ void QueueKeys(bf16* k, bf16* v, int kt, int C, int T) const {
    LoadTileAsync(wg == 0 ? k : v, q + (1 + wg) * C, at.stride, kt * kTile, T,
                  tid);
  }
  // The loop's step for key tile kt: landed (for the tensor cores too), both
  // warpgroups done with tile kt - 1, whose buffers (k_next, v_next) take
  // tile kt + 1 unless kt is the last.
  __device__ void AwaitQueueNext(bf16* k_next, bf16* v_next, int kt, int C,
                                 int T) const {
    CpAsyncWait<0>();
    FenceProxyAsync();
    __syncthreads();
    if (kt < last) QueueKeys(k_next, v_next, kt + 1, C, T);
    CpAsyncCommit();
  }
};

// The wide forward: 2 blocks (4 warpgroups) an SM, within 128 registers (117;
// with the queries in registers it spilled).
__global__ void __launch_bounds__(2 * kThreads, 2)
    WgmmaForwardWideKernel(bf16* out, float* lse, const bf16* qkv, int T, int C,
                           int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  const WideBlock b(qkv, T, C, NH, scale);
  OwnRows<false> q_own{tiles.own(b.wg)};
  const auto k_tile = [&](int buf) { return tiles.streamed(0, buf); };
  const auto v_tile = [&](int buf) { return tiles.streamed(1, buf); };
  LoadTileAsync(tiles.own(b.wg), b.q, b.at.stride, b.qb * kRows, T, b.tid);
  b.QueueKeys(k_tile(0), v_tile(0), 0, C, T);
  CpAsyncCommit();

  float o[8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  for (int kt = 0; kt <= b.last; ++kt) {
    const int buf = kt % 2;
    b.AwaitQueueNext(k_tile(buf ^ 1), v_tile(buf ^ 1), kt, C, T);
    if (!b.Takes(kt)) continue;
    ForwardTile(q_own, k_tile(buf), v_tile(buf), kt == b.qb, kt * kTile,
                b.row_a, b.at.t, b.scale_log2, o, row_max, row_sum);
  }
  if (b.qb < b.row_blocks) {
    StoreForwardRows<HS>(out, lse, b.at, o, row_sum, row_max, b.row_a, T, C,
                         b.scale_log2);
  }
}

// The wide dQ kernel: each warpgroup's own rows of Q and dO (tiles 2 wg and
// 2 wg + 1), K and V streamed through tiles 4-5 and 6-7. 2 blocks (16 warps)
// an SM within 128 registers, no spills (ptxas sm_90a, CUDA 13.0), against
// WgmmaQueryKernel's 3 blocks (12 warps) at 151.
constexpr int kWgQueryWideTiles = 8;
__global__ void __launch_bounds__(2 * kThreads, 2)
    WgmmaQueryWideKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                         const float* lse, const float* delta, int T, int C,
                         int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  const auto tile = [&](int i) { return tiles.base + i * kTileElems; };
  const WideBlock b(qkv, T, C, NH, scale);
  OwnRows<false> q_own{tile(2 * b.wg)}, do_own{tile(2 * b.wg + 1)};
  const auto k_tile = [&](int buf) { return tile(4 + buf); };
  const auto v_tile = [&](int buf) { return tile(6 + buf); };
  LoadTileAsync(tile(2 * b.wg), b.q, b.at.stride, b.qb * kRows, T, b.tid);
  LoadTileAsync(tile(2 * b.wg + 1), dout + b.at.rows, C, b.qb * kRows, T,
                b.tid);
  b.QueueKeys(k_tile(0), v_tile(0), 0, C, T);
  CpAsyncCommit();
  float row_lse[2], row_delta[2];
  LoadRowStats(row_lse, row_delta, lse, delta, b.at, b.row_a, T);

  float dq[8][4] = {};
  for (int kt = 0; kt <= b.last; ++kt) {
    const int buf = kt % 2;
    b.AwaitQueueNext(k_tile(buf ^ 1), v_tile(buf ^ 1), kt, C, T);
    if (!b.Takes(kt)) continue;
    QueryTile(q_own, do_own, k_tile(buf), v_tile(buf), kt == b.qb, kt * kTile,
              b.row_a, b.at.t, row_lse, row_delta, b.scale_log2, dq);
  }
  if (b.qb < b.row_blocks) {
    StoreRows<HS>(dqkv + b.at.qkv, b.at.stride, dq, b.row_a, T, scale);
  }
}

// A block of the split kernels: two warpgroups share one 64-row block's tiles
// (the key tiles of a query block in the forward and dQ kernels, the query
// tiles of a key block in dK/dV), taking them in turn: warpgroup w the w-th
// of each pair, through buffers of its own, so that the two products of a
// pair run side by side. At the end warpgroup 1 hands its partial results to
// warpgroup 0 through shared memory (Put, Taken: thread i's values to thread i
// of warpgroup 0, whose accumulators hold the same rows and columns), which
// combines the two, in that order, and stores. The longest row blocks' chain
// of tiles (16 at T = 1,024) one after another is what a layer's kernel
// takes at B = 1-2, where the SMs hold every block at once; here half. Not
// the narrow kernels' bits (the tiles are added in another grouping).
// Kernels: WgmmaForwardSplitKernel, WgmmaQuerySplitKernel,
// WgmmaKeyValueSplitKernel.
struct SplitBlock {
  Place at;     // at.warp: the warp within its warpgroup
  int wg, tid;  // the warpgroup, and the thread within it
  __device__ SplitBlock(int T, int C, int NH)
      : at(PlaceOf<64>(T, C, NH)),
        wg(static_cast<int>(threadIdx.x) / kThreads),
        tid(static_cast<int>(threadIdx.x) % kThreads) {
    at.warp %= 4;
  }
  // The hand-over through `share` (shared memory both warpgroups are done
  // with, behind a barrier): warpgroup 1 puts this thread's values, value i
  // at share[i * kThreads + tid] (a warp's 32 stores or loads in 32 banks),
  // then after a barrier warpgroup 0 reads its partner's, the same thread
  // index within the warpgroup: the same rows and columns of an accumulator.
  __device__ void Put(float* share, int i, float value) const {
    share[i * kThreads + tid] = value;
  }
  __device__ float Taken(const float* share, int i) const {
    return share[i * kThreads + tid];
  }
  // A 64 x 64 accumulator as values at, at + 1, ..., at + 31.
  __device__ void PutAcc(float* share, int at, const float (&acc)[8][4]) const {
#pragma unroll
    for (int i = 0; i < 32; ++i) Put(share, at + i, acc[i / 4][i % 4]);
  }
  __device__ void AddTaken(float (&acc)[8][4], const float* share,
                           int at) const {
#pragma unroll
    for (int i = 0; i < 32; ++i) acc[i / 4][i % 4] += Taken(share, at + i);
  }
  // The hand-over itself: put() (its Put calls) in warpgroup 1 between two
  // barriers; true in warpgroup 0, which then reads with Taken, false in
  // warpgroup 1, which is done.
  template <typename PutFn>
  __device__ bool HandedOver(PutFn&& put) const {
    __syncthreads();  // both warpgroups done with the room
    if (wg == 1) put();
    __syncthreads();
    return wg == 0;
  }
  // fn(t, buf) for each of this warpgroup's tiles (first + wg, first + wg +
  // 2, ... below end), landed in its buffer buf, after queue(t, buf) queued
  // it; the pairs in lockstep (a barrier each: the pair has landed, for the
  // tensor cores too, and both warpgroups are done with the last, whose
  // buffers take the next). The caller's own-rows loads, queued before, land
  // with the first pair.
  template <typename QueueFn, typename Fn>
  __device__ void ForTiles(int first, int end, QueueFn&& queue, Fn&& fn) const {
    if (first + wg < end) queue(first + wg, 0);
    CpAsyncCommit();
    for (int i = 0, t = first + wg; first + 2 * i < end; ++i, t += 2) {
      const int buf = i % 2;
      CpAsyncWait<0>();
      FenceProxyAsync();
      __syncthreads();
      if (t + 2 < end) queue(t + 2, buf ^ 1);
      CpAsyncCommit();
      if (t < end) fn(t, buf);
    }
  }
};

// A query block of the split kernels (the forward's, dQ's): its row block
// (the longest rows first), this lane's rows a and a + 8, and this
// warpgroup's key tiles (b.wg, b.wg + 2, ... up to qb) streamed through two
// K and two V buffers of its own, from tile `first` of the shared memory on
// (each warpgroup four).
struct SplitQueryBlock : SplitBlock {
  int qb, row_a;
  const bf16* q;  // this head's queries; its keys at + C, values at + 2 C
  float scale_log2;
  bf16* kv;  // this warpgroup's K buffers, then its V buffers
  __device__ SplitQueryBlock(bf16* tiles, int first, const bf16* qkv, int T,
                             int C, int NH, float scale)
      : SplitBlock(T, C, NH),
        qb(static_cast<int>(gridDim.y) - 1 - RowBlockRank()),
        row_a(qb * kRows + at.warp * 16 + at.g),
        q(qkv + at.qkv),
        scale_log2(scale * kLog2e),
        kv(tiles + (first + 4 * wg) * kTileElems) {}
  __device__ bf16* k_tile(int buf) const { return kv + buf * kTileElems; }
  __device__ bf16* v_tile(int buf) const { return kv + (2 + buf) * kTileElems; }
  // The hand-over's room (Put, Taken): warpgroup 0's four buffers, 32 KiB.
  __device__ float* share() const {
    return reinterpret_cast<float*>(kv - 4 * wg * kTileElems);
  }
  __device__ void Queue(int kt, int buf, int C, int T) const {
    LoadTileAsync(k_tile(buf), q + C, at.stride, kt * kTile, T, tid);
    LoadTileAsync(v_tile(buf), q + 2 * C, at.stride, kt * kTile, T, tid);
  }
  // fn(kt, buf) for each of this warpgroup's key tiles (ForTiles).
  template <typename Fn>
  __device__ void ForKeyTiles(int C, int T, Fn&& fn) const {
    ForTiles(
        0, qb + 1, [&](int kt, int buf) { Queue(kt, buf, C, T); }, fn);
  }
};

// The split forward: the key tiles of one query block dealt to two
// warpgroups in turn, each with its own online softmax (ForwardTile, as
// WgmmaForwardKernel), then one softmax of the two: m = max(m0, m1), o =
// o0 c0 + o1 c1, sum = sum0 c0 + sum1 c1 with c_j = 2^((m_j - m) scale); a
// warpgroup with no tile (the first row block's second) adds zeros. Shared
// memory: the queries (read by both), then each warpgroup's two K and two V
// buffers. 2 blocks (16 warps) an SM.
constexpr int kWgForwardSplitTiles = 9;
__global__ void __launch_bounds__(2 * kThreads, 2)
    WgmmaForwardSplitKernel(bf16* out, float* lse, const bf16* qkv, int T,
                            int C, int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  const SplitQueryBlock b(tiles.base, 1, qkv, T, C, NH, scale);
  if (b.wg == 0) {
    LoadTileAsync(tiles.base, b.q, b.at.stride, b.qb * kRows, T, b.tid);
  }
  OwnRows<false> q_own{tiles.base};

  float o[8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  b.ForKeyTiles(C, T, [&](int kt, int buf) {
    ForwardTile(q_own, b.k_tile(buf), b.v_tile(buf), kt == b.qb, kt * kTile,
                b.row_a, b.at.t, b.scale_log2, o, row_max, row_sum);
  });
  // Warpgroup 1's o, maxima and sums to warpgroup 0 (over the K/V buffers).
  float* const share = b.share();
  if (!b.HandedOver([&] {
        b.PutAcc(share, 0, o);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          b.Put(share, 32 + r, row_max[r]);
          b.Put(share, 34 + r, row_sum[r]);
        }
      })) {
    return;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // Warpgroup 0 took key tile 0: its maximum is finite, and a partner
    // with no tile (-inf, sum 0, o 0) weighs 0.
    const float max1 = b.Taken(share, 32 + r);
    const float m = fmaxf(row_max[r], max1);
    const float c0 = Exp2Ftz((row_max[r] - m) * b.scale_log2);
    const float c1 = Exp2Ftz((max1 - m) * b.scale_log2);
    row_max[r] = m;
    row_sum[r] = fmaf(b.Taken(share, 34 + r), c1, row_sum[r] * c0);
#pragma unroll
    for (int dt = 0; dt < 8; ++dt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * r + h;
        o[dt][j] = fmaf(b.Taken(share, dt * 4 + j), c1, o[dt][j] * c0);
      }
    }
  }
  StoreForwardRows<HS>(out, lse, b.at, o, row_sum, row_max, b.row_a, T, C,
                       b.scale_log2);
}

// The split dQ kernel: the key tiles of one query block dealt to two
// warpgroups in turn (QueryTile, as the 4-blocks dQ kernel), dQ = dQ0 + dQ1.
// Shared memory: the queries and their output gradients (read by both), then
// each warpgroup's two K and two V buffers. 2 blocks an SM within 128
// registers.
constexpr int kWgQuerySplitTiles = 10;
__global__ void __launch_bounds__(2 * kThreads, 2)
    WgmmaQuerySplitKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                          const float* lse, const float* delta, int T, int C,
                          int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  const SplitQueryBlock b(tiles.base, 2, qkv, T, C, NH, scale);
  // Warpgroup 0 queues the queries, 1 their output gradients.
  LoadTileAsync(tiles.own(b.wg), b.wg == 0 ? b.q : dout + b.at.rows,
                b.wg == 0 ? b.at.stride : C, b.qb * kRows, T, b.tid);
  OwnRows<false> q_own{tiles.own(0)}, do_own{tiles.own(1)};
  float row_lse[2], row_delta[2];
  LoadRowStats(row_lse, row_delta, lse, delta, b.at, b.row_a, T);

  float dq[8][4] = {};
  b.ForKeyTiles(C, T, [&](int kt, int buf) {
    QueryTile(q_own, do_own, b.k_tile(buf), b.v_tile(buf), kt == b.qb,
              kt * kTile, b.row_a, b.at.t, row_lse, row_delta, b.scale_log2,
              dq);
  });
  // Warpgroup 1's dQ to warpgroup 0 (over the K buffers).
  float* const share = b.share();
  if (!b.HandedOver([&] { b.PutAcc(share, 0, dq); })) return;
  b.AddTaken(dq, share, 0);
  StoreRows<HS>(dqkv + b.at.qkv, b.at.stride, dq, b.row_a, T, scale);
}

// The split dK/dV kernel: the query tiles of one key block dealt to two
// warpgroups in turn (KeyValueTile, as WgmmaKeyValueKernel), dK = dK0 + dK1
// and dV = dV0 + dV1. Shared memory: the keys and values (read by both), each
// warpgroup's two Q and two dO buffers, then each warpgroup's statistics of
// its two buffers. 200 registers: one block (8 warps) an SM.
constexpr int kWgKeyValueSplitTiles = 10;
constexpr int WgmmaKeyValueSplitBytes() {
  return kWgKeyValueSplitTiles * kTileElems * static_cast<int>(sizeof(bf16)) +
         8 * kTile * static_cast<int>(sizeof(float)) + kTileAlign;
}
__global__ void __launch_bounds__(2 * kThreads, 1)
    WgmmaKeyValueSplitKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                             const float* lse, const float* delta, int T, int C,
                             int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  const auto tile = [&](int i) { return tiles.base + i * kTileElems; };
  const SplitBlock b(T, C, NH);
  const int kb = RowBlockRank();  // low blocks see the most queries
  const int query_tiles = (T + kTile - 1) / kTile;
  const int key_a = kb * kRows + b.at.warp * 16 + b.at.g;
  const bf16* q = qkv + b.at.qkv;
  const bf16* dy = dout + b.at.rows;
  const float scale_log2 = scale * kLog2e;
  const auto q_tile = [&](int buf) { return tile(2 + 4 * b.wg + buf); };
  const auto do_tile = [&](int buf) { return tile(4 + 4 * b.wg + buf); };
  // This warpgroup's lse of buffer u at stats(u), delta at stats(2 + u).
  float* const stats_base =
      reinterpret_cast<float*>(tile(kWgKeyValueSplitTiles));
  const auto stats = [&](int i) { return stats_base + (4 * b.wg + i) * kTile; };
  const auto queue = [&](int qt, int buf) {
    const int q0 = qt * kTile;
    LoadTileAsync(q_tile(buf), q, b.at.stride, q0, T, b.tid);
    LoadTileAsync(do_tile(buf), dy, C, q0, T, b.tid);
    LoadTileStats(stats(buf), stats(2 + buf), lse, delta, b.at.stat, q0, T,
                  b.tid);
  };
  // Warpgroup 0 queues the keys, 1 the values.
  LoadTileAsync(tile(b.wg), q + (1 + b.wg) * C, b.at.stride, kb * kRows, T,
                b.tid);
  OwnRows<false> k_own{tile(0)}, v_own{tile(1)};

  float dk[8][4] = {}, dv[8][4] = {};
  b.ForTiles(kb, query_tiles, queue, [&](int qt, int buf) {
    const int q0 = qt * kTile;
    KeyValueTile(k_own, v_own, q_tile(buf), do_tile(buf), stats(buf),
                 stats(2 + buf), qt == kb || q0 + kTile > T, q0, key_a, b.at.t,
                 T, scale_log2, dk, dv);
  });
  // Warpgroup 1's dK and dV to warpgroup 0 (over the Q and dO buffers).
  float* const share = reinterpret_cast<float*>(tile(2));
  if (!b.HandedOver([&] {
        b.PutAcc(share, 0, dk);
        b.PutAcc(share, 32, dv);
      })) {
    return;
  }
  b.AddTaken(dk, share, 0);
  b.AddTaken(dv, share, 32);
  bf16* grads = dqkv + b.at.qkv;
  StoreRows<HS>(grads + C, b.at.stride, dk, key_a, T, scale);
  StoreRows<HS>(grads + 2 * C, b.at.stride, dv, key_a, T, 1.0f);
}

// The forward with each key tile's scores overlapping the previous tile's
// output products (FlashAttention-3's overlap within a warpgroup): at tile
// kt, S = Q K^T and O += P V of tile kt - 1 are issued together, the softmax
// of S runs while O's products do, and O is rescaled once they are done. O
// sees the same operations in the same order as in WgmmaForwardKernel (O *=
// c of tile kt, then O += P V of tile kt, here across two iterations): the
// same bits. V takes three buffers (the third is the own-rows tile the
// forward does not otherwise use): tile kt - 1's is still read when tile
// kt + 1 is queued. kQRegs: the queries as A fragments (OwnRows).
template <bool kQRegs>
__global__ void __launch_bounds__(kThreads, 3)
    WgmmaForwardPipelinedKernel(bf16* out, float* lse, const bf16* qkv, int T,
                                int C, int NH, float scale) {
  KernelPrologue();
  constexpr int HS = 64;
  const WgTiles tiles = CarveWgTiles();
  OwnRows<kQRegs> q_own{tiles.own(0)};
  const auto k_tile = [&](int kt) { return tiles.streamed(0, kt % 2); };
  const auto v_tile = [&](int kt) {
    const int buf = kt % 3;
    return buf < 2 ? tiles.streamed(1, buf) : tiles.own(1);
  };
  const QueryBlock b(tiles, qkv, T, C, NH, scale);

  float o[8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  uint32_t pa[4][4];  // P of the previous tile, the A of its output products
  // One key tile; kOutput: with the previous tile's output products (all but
  // the first tile, a separate instance: no branch around the products).
  const auto tile = [&](int kt, auto output) {
    constexpr bool kOutput = decltype(output)::value;
    const int k0 = kt * kTile;
    // Every product of tile kt - 1 was waited for: K's buffer of tile kt - 1
    // and V's of tile kt - 2 take tile kt + 1.
    AwaitKeysQueueNext<64, true>(k_tile(kt + 1), v_tile(kt + 1), b.q, C,
                                 b.at.stride, kt, b.qb, T);
    if constexpr (!kOutput) q_own.Load();
    float s[8][4];
    FenceForProducts(o, pa);  // O and P of tile kt - 1
    q_own.TimesTile(s, k_tile(kt));
    WgmmaCommit();
    // O += P V of tile kt - 1 behind it; then S.
    QueuePreviousAwaitFirst<kOutput, 1>(
        o, pa, [&] { return v_tile(kt - 1); }, s);
    float tile_max[2] = {-INFINITY, -INFINITY}, correction[2];
    MaskScores(kt == b.qb, s, tile_max, k0, b.row_a, b.at.t);
    SoftmaxProbabilities(s, tile_max, row_max, row_sum, correction,
                         b.scale_log2);
    AwaitPrevious<kOutput>(o);
    RescaleOutput<HS>(o, correction);
    AccToFragments(pa, s);
  };
  tile(0, std::false_type{});
  for (int kt = 1; kt <= b.qb; ++kt) tile(kt, std::true_type{});
  FinishLastTile(o, pa, v_tile(b.qb));  // O += P V

  StoreForwardRows<HS>(out, lse, b.at, o, row_sum, row_max, b.row_a, T, C,
                       b.scale_log2);
}

}  // namespace

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
                           int C, int NH, WgmmaForwardForm form,
                           CUstream_st* stream) {
  GPT2_CHECK_MSG(out.dtype == DType::kBF16 && C == 64 * NH,
                 "wgmma attention: bf16, head size 64 only");
  const float scale = 1.0f / sqrtf(static_cast<float>(C / NH));
  constexpr int kShared = WgmmaSharedBytes();
  constexpr int kSharedSplit = WgmmaSharedBytes(kWgForwardSplitTiles);
  using Kernel = void (*)(bf16*, float*, const bf16*, int, int, int, float);
  // [pipelined][own rows in registers]
  static constexpr Kernel kKernels[2][2] = {
      {&WgmmaForwardKernel<false>, &WgmmaForwardKernel<true>},
      {&WgmmaForwardPipelinedKernel<false>,
       &WgmmaForwardPipelinedKernel<true>}};
  static const char* const kNames[2][2] = {
      {"tc::WgmmaForwardKernel", "tc::WgmmaForwardKernel (Q in registers)"},
      {"tc::WgmmaForwardPipelinedKernel",
       "tc::WgmmaForwardPipelinedKernel (Q in registers)"}};
  static const bool allowed = [] {
    for (const auto& row : kKernels)
      for (Kernel kernel : row)
        AllowWgmmaShared(reinterpret_cast<const void*>(kernel), kShared);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaForwardWideKernel),
                     kShared);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaForwardSplitKernel),
                     kSharedSplit);
    return true;
  }();
  (void)allowed;
  const int p = form.pipelined ? 1 : 0, r = form.own_rows_in_registers ? 1 : 0;
  GPT2_CHECK_MSG(!form.split || !(form.wide || form.pipelined ||
                                  form.own_rows_in_registers),
                 "the split wgmma forward: queries in shared memory, not "
                 "pipelined, not wide");
  if (form.split) {
    CheckLaunch(GPT2_LAUNCH(&WgmmaForwardSplitKernel,
                            BlockGrid(CeilDiv(T, kRows), B, NH), 2 * kThreads,
                            kSharedSplit, stream, Ptr<bf16>(out),
                            Ptr<float>(lse), Ptr<bf16>(qkv), T, C, NH, scale),
                "tc::WgmmaForwardSplitKernel");
    return;
  }
  if (form.wide) {
    GPT2_CHECK_MSG(!form.pipelined && !form.own_rows_in_registers,
                   "the wide wgmma forward: queries in shared memory, not "
                   "pipelined");
    CheckLaunch(GPT2_LAUNCH(&WgmmaForwardWideKernel,
                            BlockGrid(CeilDiv(T, 2 * kRows), B, NH),
                            2 * kThreads, kShared, stream, Ptr<bf16>(out),
                            Ptr<float>(lse), Ptr<bf16>(qkv), T, C, NH, scale),
                "tc::WgmmaForwardWideKernel");
    return;
  }
  CheckLaunch(GPT2_LAUNCH(kKernels[p][r], BlockGrid(CeilDiv(T, kRows), B, NH),
                          kThreads, kShared, stream, Ptr<bf16>(out),
                          Ptr<float>(lse), Ptr<bf16>(qkv), T, C, NH, scale),
              kNames[p][r]);
}

WgmmaDq DefaultWgmmaDq() {
  static const bool pipelined =
      EnvIs("GPT2_ATTENTION_WGMMA_DQ_PIPELINED", "1") &&
      !EnvIs("GPT2_ATTENTION_WGMMA_PIPELINED", "0");
  return pipelined ? WgmmaDq::kPipelined : WgmmaDq::kPlain;
}

void WgmmaAttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv,
                            const float* lse, const float* delta, int B, int T,
                            int C, int NH, CUstream_st* stream, int parts,
                            WgmmaDq dq, WgmmaKv kv) {
  GPT2_CHECK_MSG(dout.dtype == DType::kBF16 && C == 64 * NH,
                 "wgmma attention: bf16, head size 64 only");
  const float scale = 1.0f / sqrtf(static_cast<float>(C / NH));
  constexpr int kShared = WgmmaSharedBytes();
  constexpr int kSharedPipelined = WgmmaSharedBytes(kWgQueryPipelinedTiles);
  constexpr int kSharedWide = WgmmaSharedBytes(kWgQueryWideTiles);
  constexpr int kSharedQuerySplit = WgmmaSharedBytes(kWgQuerySplitTiles);
  constexpr int kSharedKeyValueSplit = WgmmaKeyValueSplitBytes();
  static const bool allowed = [] {
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaKeyValueKernel),
                     kShared);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaQueryKernel<false>),
                     kShared);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaQueryPipelinedKernel),
                     kSharedPipelined);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaQueryWideKernel),
                     kSharedWide);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaQueryKernel<true>),
                     kShared);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaQuerySplitKernel),
                     kSharedQuerySplit);
    AllowWgmmaShared(reinterpret_cast<const void*>(&WgmmaKeyValueSplitKernel),
                     kSharedKeyValueSplit);
    return true;
  }();
  (void)allowed;
  const dim3 grid = BlockGrid(CeilDiv(T, kRows), B, NH);
  if ((parts & kKeyValuePart) && kv == WgmmaKv::kSplit) {
    CheckLaunch(GPT2_LAUNCH(&WgmmaKeyValueSplitKernel, grid, 2 * kThreads,
                            kSharedKeyValueSplit, stream, Ptr<bf16>(dqkv),
                            Ptr<bf16>(dout), Ptr<bf16>(qkv), lse, delta, T, C,
                            NH, scale),
                "tc::WgmmaKeyValueSplitKernel");
  } else if (parts & kKeyValuePart) {
    CheckLaunch(GPT2_LAUNCH(&WgmmaKeyValueKernel, grid, kThreads, kShared,
                            stream, Ptr<bf16>(dqkv), Ptr<bf16>(dout),
                            Ptr<bf16>(qkv), lse, delta, T, C, NH, scale),
                "tc::WgmmaKeyValueKernel");
  }
  if (!(parts & kQueryPart)) return;
  if (dq == WgmmaDq::kSplit) {
    CheckLaunch(
        GPT2_LAUNCH(&WgmmaQuerySplitKernel, grid, 2 * kThreads,
                    kSharedQuerySplit, stream, Ptr<bf16>(dqkv), Ptr<bf16>(dout),
                    Ptr<bf16>(qkv), lse, delta, T, C, NH, scale),
        "tc::WgmmaQuerySplitKernel");
    return;
  }
  if (dq == WgmmaDq::kWide) {
    CheckLaunch(
        GPT2_LAUNCH(&WgmmaQueryWideKernel,
                    BlockGrid(CeilDiv(T, 2 * kRows), B, NH), 2 * kThreads,
                    kSharedWide, stream, Ptr<bf16>(dqkv), Ptr<bf16>(dout),
                    Ptr<bf16>(qkv), lse, delta, T, C, NH, scale),
        "tc::WgmmaQueryWideKernel");
    return;
  }
  using Kernel = void (*)(bf16*, const bf16*, const bf16*, const float*,
                          const float*, int, int, int, float);
  const Kernel kernel = dq == WgmmaDq::kPipelined ? &WgmmaQueryPipelinedKernel
                        : dq == WgmmaDq::kFourBlocks ? &WgmmaQueryKernel<true>
                                                     : &WgmmaQueryKernel<false>;
  CheckLaunch(
      GPT2_LAUNCH(kernel, grid, kThreads,
                  dq == WgmmaDq::kPipelined ? kSharedPipelined : kShared,
                  stream, Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv), lse,
                  delta, T, C, NH, scale),
      dq == WgmmaDq::kPipelined    ? "tc::WgmmaQueryPipelinedKernel"
      : dq == WgmmaDq::kFourBlocks ? "tc::WgmmaQueryKernel (4 blocks an SM)"
                                   : "tc::WgmmaQueryKernel");
}

}  // namespace gpt2::cuda::tc
