// CUDA encoder. The wte gradient is deterministic without float atomics: the
// host groups the (B*T) positions by token (it has the tokens already), and one
// thread per (token, channel) sums that token's rows in position order, a
// frequent token's in chunks whose sums are then added in chunk order.
#include <algorithm>
#include <numeric>
#include <vector>

#include "src/cuda/common.cuh"
#include "src/cuda/scratch.h"
#include "src/cuda/staging.h"
#include "src/ops/encoder.h"

namespace gpt2::cuda {
namespace {

// T: the embeddings; TR: the residual stream (out, dout), T or f32.
template <typename T, typename TR>
__global__ void EncoderForwardKernel(TR* out, const int32_t* tokens,
                                     const T* wte, const T* wpe, int B, int T_,
                                     int C) {
  KernelPrologue();
  const int64_t total = int64_t{B} * T_ * C;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t bt = i / C;
    const int c = static_cast<int>(i % C);
    const int t = static_cast<int>(bt % T_);
    out[i] = FromFloat<TR>(ToFloat(wte[int64_t{tokens[bt]} * C + c]) +
                           ToFloat(wpe[int64_t{t} * C + c]));
  }
}

// dwpe[t, c] += sum over b of dout[b, t, c], b in order; with `overwrite_rows`
// > 0, dwpe's first overwrite_rows rows are written instead (the sum + 0.0f:
// the bits of adding it to zeros), those from T on with zeros.
template <typename T, typename TR>
__global__ void EncoderBackwardWpeKernel(T* dwpe, const TR* dout, int B, int T_,
                                         int C, int overwrite_rows) {
  KernelPrologue();
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t end = int64_t{overwrite_rows > T_ ? overwrite_rows : T_} * C;
  if (i >= end) return;
  float sum = 0.0f;
  if (i < int64_t{T_} * C) {
    for (int b = 0; b < B; ++b) sum += ToFloat(dout[int64_t{b} * T_ * C + i]);
  }
  dwpe[i] = FromFloat<T>((overwrite_rows > 0 ? 0.0f : ToFloat(dwpe[i])) + sum);
}

// A token's positions are summed by one thread a channel, a row after
// another; a token with more than kChunkRows positions (Tiny Shakespeare's
// most frequent is ~12% of its tokens: ~7,900 rows at B=64, ~1,900 at B=16)
// made that loop the kernel's tail (1.03 ms at B=64 on the H200, 0.14 at
// B=16). Its positions are cut into chunks of kChunkRows, each summed on its
// own into a partial row, then the partials added in chunk order: a fixed
// order, so the same bits every run (not a plain loop's over all the rows).
constexpr int kChunkRows = 128;

// The plan for the device (PackTokenGroups): the positions sorted by (token,
// position) and cut into chunks, a token's positions one chunk unless it has
// more than kChunkRows; a token cut into several chunks is a group, each of
// its chunks a partial row (a slot). Packed as [chunks | groups | positions
// (BT) | each chunk's token (chunks) | each chunk's start in the positions
// (chunks, then BT) | each chunk's slot, -1 for a whole token (chunks) | each
// group's token (groups) | each group's first slot (groups, then the slots)],
// then room for the slots' partial rows (C floats each).
struct PlanView {
  int chunks, groups;
  const int32_t *positions, *chunk_token, *chunk_start, *chunk_slot,
      *group_token, *group_slot;
  float* partials;
  __device__ PlanView(int32_t* plan, int BT) {
    chunks = plan[0];
    groups = plan[1];
    positions = plan + 2;
    chunk_token = positions + BT;
    chunk_start = chunk_token + chunks;
    chunk_slot = chunk_start + chunks + 1;
    group_token = chunk_slot + chunks;
    group_slot = group_token + groups;
    // The integers end after group_slot's groups + 1 entries.
    partials =
        reinterpret_cast<float*>(plan + (group_slot - plan) + groups + 1);
  }
};

// The plan's integers (without the partial rows), and its slots.
struct PackedPlan {
  std::vector<int32_t> ints;
  int slots = 0;
};
PackedPlan PackTokenGroups(const int32_t* host_tokens, int BT) {
  std::vector<int32_t> positions(BT);
  std::iota(positions.begin(), positions.end(), 0);
  std::stable_sort(
      positions.begin(), positions.end(),
      [&](int32_t a, int32_t b) { return host_tokens[a] < host_tokens[b]; });
  std::vector<int32_t> chunk_token, chunk_start, chunk_slot, group_token,
      group_slot;
  int slots = 0;
  for (int begin = 0; begin < BT;) {
    const int32_t token = host_tokens[positions[begin]];
    int end = begin + 1;
    while (end < BT && host_tokens[positions[end]] == token) ++end;
    const bool split = end - begin > kChunkRows;
    if (split) {
      group_token.push_back(token);
      group_slot.push_back(slots);
    }
    for (int c = begin; c < end; c += kChunkRows) {
      chunk_token.push_back(token);
      chunk_start.push_back(c);
      chunk_slot.push_back(split ? slots++ : -1);
    }
    begin = end;
  }
  chunk_start.push_back(BT);
  group_slot.push_back(slots);
  PackedPlan plan;
  plan.slots = slots;
  std::vector<int32_t>& packed = plan.ints;
  packed.reserve(2 + BT + 3 * chunk_token.size() + 1 + 2 * group_token.size() +
                 1);
  packed.push_back(static_cast<int32_t>(chunk_token.size()));
  packed.push_back(static_cast<int32_t>(group_token.size()));
  for (const std::vector<int32_t>* part :
       {&positions, &chunk_token, &chunk_start, &chunk_slot, &group_token,
        &group_slot}) {
    packed.insert(packed.end(), part->begin(), part->end());
  }
  return plan;
}

// The most groups and slots BT positions can make: a group has more than
// kChunkRows positions, and a slot per kChunkRows of them, the last one
// perhaps short.
int64_t MaxGroups(int64_t BT) { return BT / (kChunkRows + 1); }
int64_t MaxSlots(int64_t BT) { return BT / kChunkRows + MaxGroups(BT); }

// Each chunk's rows summed, one thread a (chunk, channel), from the plan on
// the device; blocks stride over the chunks, so a launch need not know their
// count (a recorded graph serves every step). A whole token's sum goes to its
// dwte row, a group's chunk's to its partial row. The rows are loaded kAhead
// at a time (their loads in flight together) and still added one by one in
// position order.
template <typename T, typename TR>
__global__ void EncoderBackwardWteKernel(T* dwte, const TR* dout,
                                         int32_t* plan_data, int BT, int C) {
  KernelPrologue();
  const PlanView plan(plan_data, BT);
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  constexpr int kAhead = 16;
  for (int chunk = blockIdx.y; chunk < plan.chunks; chunk += gridDim.y) {
    float sum = 0.0f;
    int i = plan.chunk_start[chunk];
    const int end = plan.chunk_start[chunk + 1];
    for (; i + kAhead <= end; i += kAhead) {
      float rows[kAhead];
#pragma unroll
      for (int k = 0; k < kAhead; ++k) {
        rows[k] = ToFloat(dout[int64_t{plan.positions[i + k]} * C + c]);
      }
#pragma unroll
      for (int k = 0; k < kAhead; ++k) sum += rows[k];
    }
    for (; i < end; ++i) {
      sum += ToFloat(dout[int64_t{plan.positions[i]} * C + c]);
    }
    const int slot = plan.chunk_slot[chunk];
    if (slot >= 0) {
      plan.partials[int64_t{slot} * C + c] = sum;
    } else {
      T* row = dwte + int64_t{plan.chunk_token[chunk]} * C;
      row[c] = FromFloat<T>(ToFloat(row[c]) + sum);
    }
  }
}

// Each group's partial rows added in chunk order into its dwte row, one
// thread a (group, channel); blocks stride over the groups.
template <typename T>
__global__ void EncoderBackwardGroupsKernel(T* dwte, int32_t* plan_data, int BT,
                                            int C) {
  KernelPrologue();
  const PlanView plan(plan_data, BT);
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int group = blockIdx.y; group < plan.groups; group += gridDim.y) {
    float sum = 0.0f;
    for (int s = plan.group_slot[group]; s < plan.group_slot[group + 1]; ++s) {
      sum += plan.partials[int64_t{s} * C + c];
    }
    T* row = dwte + int64_t{plan.group_token[group]} * C;
    row[c] = FromFloat<T>(ToFloat(row[c]) + sum);
  }
}

// dwpe's column sums, then dwte's rows from the plan at `plan`, with
// `chunk_rows` and `group_rows` rows of blocks (0 groups: no launch).
void LaunchEncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout, int32_t* plan,
                           int B, int T, int C, int chunk_rows, int group_rows,
                           CUstream_st* stream, ParamGrads dwpe_grads) {
  const int overwrite_rows = dwpe_grads == ParamGrads::kOverwrite
                                 ? static_cast<int>(dwpe.numel / C)
                                 : 0;
  const int64_t wpe_elems = int64_t{std::max(T, overwrite_rows)} * C;
  DispatchFloat2(dwte.dtype, dout.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    CheckLaunch(
        GPT2_LAUNCH((EncoderBackwardWpeKernel<F, R>), CeilDiv(wpe_elems, 256),
                    256, 0, stream, Ptr<F>(dwpe), Ptr<R>(dout), B, T, C,
                    overwrite_rows),
        "EncoderBackwardWpeKernel");
    CheckLaunch(GPT2_LAUNCH((EncoderBackwardWteKernel<F, R>),
                            dim3(CeilDiv(C, 128), chunk_rows), 128, 0, stream,
                            Ptr<F>(dwte), Ptr<R>(dout), plan, B * T, C),
                "EncoderBackwardWteKernel");
    if (group_rows > 0) {
      CheckLaunch(GPT2_LAUNCH((EncoderBackwardGroupsKernel<F>),
                              dim3(CeilDiv(C, 128), group_rows), 128, 0, stream,
                              Ptr<F>(dwte), plan, B * T, C),
                  "EncoderBackwardGroupsKernel");
    }
  });
}

}  // namespace

void EncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int B,
                    int T, int C, CUstream_st* stream) {
  DispatchFloat2(wte.dtype, out.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    CheckLaunch(GPT2_LAUNCH((EncoderForwardKernel<F, R>),
                            GridStrideBlocks(int64_t{B} * T * C), 256, 0,
                            stream, Ptr<R>(out), Ptr<int32_t>(tokens),
                            Ptr<F>(wte), Ptr<F>(wpe), B, T, C),
                "EncoderForwardKernel");
  });
}

void EncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout,
                     const int32_t* host_tokens, int B, int T, int C,
                     Scratch* scratch, PinnedStaging* staging,
                     CUstream_st* stream, ParamGrads dwpe_grads) {
  // The plan through scratch, its partial rows after it; a row of blocks a
  // chunk and a group (up to the grid's limit; more stride).
  const PackedPlan packed = PackTokenGroups(host_tokens, B * T);
  const size_t bytes =
      (packed.ints.size() + static_cast<size_t>(packed.slots) * C) * 4;
  auto* plan = static_cast<int32_t*>(scratch->Get(bytes, stream));
  staging->CopyToDevice(plan, packed.ints.data(), packed.ints.size() * 4,
                        stream);
  LaunchEncoderBackward(dwte, dwpe, dout, plan, B, T, C,
                        std::min(packed.ints[0], 65535),
                        std::min(packed.ints[1], 65535), stream, dwpe_grads);
}

int64_t EncoderPlanSize(int64_t BT, int C) {
  // The integers at their most (every position its own chunk, the most
  // groups), then the most partial rows.
  return 2 + BT + 3 * BT + 1 + 2 * MaxGroups(BT) + 1 + MaxSlots(BT) * C;
}

void StageEncoderPlan(Tensor plan, const int32_t* host_tokens, int B, int T,
                      int C, PinnedStaging* staging, CUstream_st* stream) {
  GPT2_CHECK(plan.dtype == DType::kI32 &&
             plan.numel >= EncoderPlanSize(int64_t{B} * T, C));
  const PackedPlan packed = PackTokenGroups(host_tokens, B * T);
  staging->CopyToDevice(plan.data, packed.ints.data(),
                        packed.ints.size() * sizeof(int32_t), stream);
}

void EncoderBackwardStaged(Tensor dwte, Tensor dwpe, Tensor dout, Tensor plan,
                           int B, int T, int C, CUstream_st* stream,
                           ParamGrads dwpe_grads) {
  GPT2_CHECK(plan.dtype == DType::kI32 &&
             plan.numel >= EncoderPlanSize(int64_t{B} * T, C));
  // A grid that does not depend on the tokens: up to 4,096 rows of blocks for
  // the chunks, and one for each group there may be up to 1,024 (the blocks
  // with no group return at once).
  const int64_t groups = MaxGroups(int64_t{B} * T);
  LaunchEncoderBackward(
      dwte, dwpe, dout, Ptr<int32_t>(plan), B, T, C, std::min(B * T, 4096),
      static_cast<int>(std::min<int64_t>(groups, 1024)), stream, dwpe_grads);
}

}  // namespace gpt2::cuda
