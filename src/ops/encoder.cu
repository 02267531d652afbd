// CUDA encoder. The wte gradient is deterministic without float atomics: the
// host groups the (B*T) positions by token (it has the tokens already), and one
// thread per (token, channel) sums that token's rows in position order.
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

// The positions grouped by token, packed for the device as [buckets |
// positions (BT) | each bucket's token (buckets) | each bucket's start in the
// positions (buckets, then BT)], the positions sorted by (token, position).
// At most EncoderPlanSize(BT) elements.
std::vector<int32_t> PackTokenGroups(const int32_t* host_tokens, int BT) {
  std::vector<int32_t> positions(BT);
  std::iota(positions.begin(), positions.end(), 0);
  std::stable_sort(
      positions.begin(), positions.end(),
      [&](int32_t a, int32_t b) { return host_tokens[a] < host_tokens[b]; });
  std::vector<int32_t> bucket_token, bucket_start;
  for (int i = 0; i < BT; ++i) {
    if (i == 0 || host_tokens[positions[i]] != host_tokens[positions[i - 1]]) {
      bucket_token.push_back(host_tokens[positions[i]]);
      bucket_start.push_back(i);
    }
  }
  bucket_start.push_back(BT);
  std::vector<int32_t> packed;
  packed.reserve(1 + BT + 2 * bucket_token.size() + 1);
  packed.push_back(static_cast<int32_t>(bucket_token.size()));
  packed.insert(packed.end(), positions.begin(), positions.end());
  packed.insert(packed.end(), bucket_token.begin(), bucket_token.end());
  packed.insert(packed.end(), bucket_start.begin(), bucket_start.end());
  return packed;
}

// dwte[token, c] += the sum of its positions' rows, one thread a (bucket,
// channel), from PackTokenGroups' layout on the device; blocks stride over
// the buckets, so a launch need not know their count (a recorded graph
// serves every step). The most frequent token is ~12% of Tiny Shakespeare's
// tokens (~1,900 rows at B=16, ~480 at B=4): in training its thread's loop,
// a row read after another, is the kernel's tail (gpt2_bench's uniform random
// tokens make no such bucket), so the rows are loaded kAhead at a time (their
// loads in flight together) and still added one by one in position order:
// the bits of a plain loop.
template <typename T, typename TR>
__global__ void EncoderBackwardWteKernel(T* dwte, const TR* dout,
                                         const int32_t* plan, int BT, int C) {
  KernelPrologue();
  const int buckets = plan[0];
  const int32_t* positions = plan + 1;
  const int32_t* bucket_token = positions + BT;
  const int32_t* bucket_start = bucket_token + buckets;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  constexpr int kAhead = 16;
  for (int bucket = blockIdx.y; bucket < buckets; bucket += gridDim.y) {
    float sum = 0.0f;
    int i = bucket_start[bucket];
    const int end = bucket_start[bucket + 1];
    for (; i + kAhead <= end; i += kAhead) {
      float rows[kAhead];
#pragma unroll
      for (int k = 0; k < kAhead; ++k) {
        rows[k] = ToFloat(dout[int64_t{positions[i + k]} * C + c]);
      }
#pragma unroll
      for (int k = 0; k < kAhead; ++k) sum += rows[k];
    }
    for (; i < end; ++i) sum += ToFloat(dout[int64_t{positions[i]} * C + c]);
    T* row = dwte + int64_t{bucket_token[bucket]} * C;
    row[c] = FromFloat<T>(ToFloat(row[c]) + sum);
  }
}

// dwpe's column sums, then dwte's rows from the packed grouping at `plan`,
// with `bucket_rows` rows of blocks.
void LaunchEncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout,
                           const int32_t* plan, int B, int T, int C,
                           int bucket_rows, CUstream_st* stream,
                           ParamGrads dwpe_grads) {
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
    const dim3 grid(CeilDiv(C, 128), bucket_rows);
    CheckLaunch(GPT2_LAUNCH((EncoderBackwardWteKernel<F, R>), grid, 128, 0,
                            stream, Ptr<F>(dwte), Ptr<R>(dout), plan, B * T, C),
                "EncoderBackwardWteKernel");
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
  // The grouping through scratch, a row of blocks a bucket (up to the grid's
  // limit; more stride).
  const std::vector<int32_t> packed = PackTokenGroups(host_tokens, B * T);
  const size_t bytes = packed.size() * sizeof(int32_t);
  auto* plan = static_cast<int32_t*>(scratch->Get(bytes, stream));
  staging->CopyToDevice(plan, packed.data(), bytes, stream);
  LaunchEncoderBackward(dwte, dwpe, dout, plan, B, T, C,
                        std::min(packed[0], 65535), stream, dwpe_grads);
}

// The largest PackTokenGroups: every position its own bucket.
int64_t EncoderPlanSize(int64_t BT) { return 3 * BT + 2; }

void StageEncoderPlan(Tensor plan, const int32_t* host_tokens, int B, int T,
                      PinnedStaging* staging, CUstream_st* stream) {
  GPT2_CHECK(plan.dtype == DType::kI32 &&
             plan.numel >= EncoderPlanSize(int64_t{B} * T));
  const std::vector<int32_t> packed = PackTokenGroups(host_tokens, B * T);
  staging->CopyToDevice(plan.data, packed.data(),
                        packed.size() * sizeof(int32_t), stream);
}

void EncoderBackwardStaged(Tensor dwte, Tensor dwpe, Tensor dout, Tensor plan,
                           int B, int T, int C, CUstream_st* stream,
                           ParamGrads dwpe_grads) {
  GPT2_CHECK(plan.dtype == DType::kI32 &&
             plan.numel >= EncoderPlanSize(int64_t{B} * T));
  // A grid that does not depend on the tokens: up to 4,096 rows of blocks.
  LaunchEncoderBackward(dwte, dwpe, dout, Ptr<int32_t>(plan), B, T, C,
                        std::min(B * T, 4096), stream, dwpe_grads);
}

}  // namespace gpt2::cuda
