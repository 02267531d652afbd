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
// The pieces these kernels share with Hopper's wgmma versions
// (attention_wgmma.cu) are in attention_tc_parts.cuh.
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
#include "src/ops/attention_tc.h"
#include "src/ops/attention_tc_parts.cuh"

namespace gpt2::cuda::tc {
namespace {

using namespace internal;  // NOLINT: the shared pieces, attention_tc_parts.cuh

// kLdm: the streamed tiles the second product reads are kept as rows and
// read through ldmatrix.trans; else transposed copies are made (the path the
// first H200 run measured; GPT2_ATTENTION_LDMATRIX=0 selects it).
// At most 128 registers: 4 blocks (16 warps) per SM.
template <int HS, bool kLdm>
__global__ void __launch_bounds__(kThreads, 4)
    ForwardKernel(bf16* out, float* lse, const bf16* qkv, int T, int C, int NH,
                  float scale) {
  KernelPrologue();
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

// dK and dV for one block of 64 keys, over the queries at or after them.
// kLean: the block's keys and values stay in shared memory and are read as A
// fragments each tile (not held in 32 registers a thread), for 3 blocks per
// SM instead of 2; the same arithmetic. (A version that also made dQ, each
// key block adding its share of every query tile's dQ in a fixed order, so
// that the scores were computed once instead of twice, lost to the two
// kernels by 2x on the H100 and the H200: its blocks waited on one another.)
template <int HS, bool kLdm, bool kLean>
__global__ void __launch_bounds__(kThreads, kLean ? 3 : 1)
    BackwardKeyValueKernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                           const float* lse, const float* delta, int T, int C,
                           int NH, float scale) {
  KernelPrologue();
  static_assert(kLdm || !kLean, "the lean kernels stream through ldmatrix");
  constexpr int S = HS + kPad;
  // kLdm: Q and dO as rows, two of each (the next pair loads while this one
  // is used); else also transposed copies, all loaded in turn.
  constexpr int kBufs = kLdm ? 2 : 1;
  __shared__ __align__(8) float tile_lse[kBufs][kTile],
      tile_delta[kBufs][kTile];
  bf16 *q_tile[kBufs], *do_tile[kBufs], *qt_tile = nullptr, *dot_tile = nullptr;
  bf16 *k_rows = nullptr, *v_rows = nullptr;  // kLean
  if constexpr (kLean) {
    const LeanTiles lean = CarveLeanTiles<HS>();
    for (int b = 0; b < kBufs; ++b) {
      q_tile[b] = lean.streamed[0][b];
      do_tile[b] = lean.streamed[1][b];
    }
    k_rows = lean.own[0];
    v_rows = lean.own[1];
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
  const int kb = RowBlockRank();  // low key blocks see the most queries
  const Place at = PlaceOf<HS>(T, C, NH);
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
    LoadTileStats(tile_lse[buf], tile_delta[buf], lse, delta, at.stat, q0, T);
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
  KernelPrologue();
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

}  // namespace

namespace internal {

dim3 BlockGrid(int row_blocks, int B, int NH) {
  const int pairs = B * NH;
  int group = std::min(GroupSetting(), pairs);
  while (pairs % group != 0) --group;
  return dim3(group, row_blocks, pairs / group);
}

}  // namespace internal

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

void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, const float* lse,
                       const float* delta, int B, int T, int C, int NH,
                       bool ldmatrix, bool lean, CUstream_st* stream,
                       int parts) {
  const int hs = C / NH;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  const dim3 grid = BlockGrid(CeilDiv(T, kRows), B, NH);
  auto launch = [&](auto head, auto ldm, auto lean_tag) {
    constexpr int kHs = decltype(head)::value;
    constexpr bool kLdm = decltype(ldm)::value;
    constexpr bool kLean = decltype(lean_tag)::value;
    constexpr int kShared = kLean ? LeanSharedBytes<kHs>() : 0;
    auto* kv = &BackwardKeyValueKernel<kHs, kLdm, kLean>;
    auto* query = &BackwardQueryKernel<kHs, kLdm, kLean>;
    if constexpr (kLean) {
      // Above the 48 KiB a block gets without asking; once per kernel.
      static const bool allowed = [&] {
        for (const void* kernel : {reinterpret_cast<const void*>(kv),
                                   reinterpret_cast<const void*>(query)}) {
          CheckLaunch(
              cudaFuncSetAttribute(
                  kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared),
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
    if (parts & kKeyValuePart) {
      CheckLaunch(GPT2_LAUNCH(kv, grid, kThreads, kShared, stream,
                              Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv),
                              lse, delta, T, C, NH, scale),
                  "tc::BackwardKeyValueKernel");
    }
    if (parts & kQueryPart) {
      CheckLaunch(GPT2_LAUNCH(query, grid, kThreads, kShared, stream,
                              Ptr<bf16>(dqkv), Ptr<bf16>(dout), Ptr<bf16>(qkv),
                              lse, delta, T, C, NH, scale),
                  "tc::BackwardQueryKernel");
    }
  };
  const std::false_type no;
  const std::true_type yes;
  DispatchInt<16, 32, 64>(hs, "tensor-core attention (head size)",
                          [&](auto head) {
                            if (ldmatrix && lean) {
                              launch(head, yes, yes);
                            } else if (ldmatrix) {
                              launch(head, yes, no);
                            } else {
                              launch(head, no, no);
                            }
                          });
}

}  // namespace gpt2::cuda::tc
