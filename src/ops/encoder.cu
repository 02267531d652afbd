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

// dwpe[t, c] += sum over b of dout[b, t, c], b in order.
template <typename T, typename TR>
__global__ void EncoderBackwardWpeKernel(T* dwpe, const TR* dout, int B, int T_,
                                         int C) {
  KernelPrologue();
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= int64_t{T_} * C) return;
  float sum = 0.0f;
  for (int b = 0; b < B; ++b) sum += ToFloat(dout[int64_t{b} * T_ * C + i]);
  dwpe[i] = FromFloat<T>(ToFloat(dwpe[i]) + sum);
}

// One block row per distinct token: dwte[token, c] += sum of its positions'
// rows.
template <typename T, typename TR>
__global__ void EncoderBackwardWteKernel(T* dwte, const TR* dout,
                                         const int32_t* bucket_token,
                                         const int32_t* bucket_start,
                                         const int32_t* positions, int C) {
  KernelPrologue();
  const int bucket = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f;
  for (int i = bucket_start[bucket]; i < bucket_start[bucket + 1]; ++i) {
    sum += ToFloat(dout[int64_t{positions[i]} * C + c]);
  }
  T* row = dwte + int64_t{bucket_token[bucket]} * C;
  row[c] = FromFloat<T>(ToFloat(row[c]) + sum);
}

// The same sums with the grouping read from the device: blocks stride over
// the buckets (the count is the plan's last element), so the launch does not
// depend on the tokens.
template <typename T, typename TR>
__global__ void EncoderBackwardWteStagedKernel(T* dwte, const TR* dout,
                                               const int32_t* plan, int BT,
                                               int C) {
  KernelPrologue();
  const int32_t* positions = plan;
  const int32_t* bucket_token = plan + BT;
  const int32_t* bucket_start = plan + 2 * BT;
  const int buckets = plan[3 * BT + 1];
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int bucket = blockIdx.y; bucket < buckets; bucket += gridDim.y) {
    float sum = 0.0f;
    for (int i = bucket_start[bucket]; i < bucket_start[bucket + 1]; ++i) {
      sum += ToFloat(dout[int64_t{positions[i]} * C + c]);
    }
    T* row = dwte + int64_t{bucket_token[bucket]} * C;
    row[c] = FromFloat<T>(ToFloat(row[c]) + sum);
  }
}

// Positions grouped by token, sorted by (token, position): the positions, each
// bucket's token and its start in the positions (then BT).
struct TokenGroups {
  std::vector<int32_t> positions, bucket_token, bucket_start;
};
TokenGroups GroupByToken(const int32_t* host_tokens, int BT) {
  TokenGroups g;
  g.positions.resize(BT);
  std::iota(g.positions.begin(), g.positions.end(), 0);
  std::stable_sort(
      g.positions.begin(), g.positions.end(),
      [&](int32_t a, int32_t b) { return host_tokens[a] < host_tokens[b]; });
  for (int i = 0; i < BT; ++i) {
    if (i == 0 ||
        host_tokens[g.positions[i]] != host_tokens[g.positions[i - 1]]) {
      g.bucket_token.push_back(host_tokens[g.positions[i]]);
      g.bucket_start.push_back(i);
    }
  }
  g.bucket_start.push_back(BT);
  return g;
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
                     CUstream_st* stream) {
  const int BT = B * T;
  const TokenGroups g = GroupByToken(host_tokens, BT);
  const int buckets = static_cast<int>(g.bucket_token.size());
  // One upload: [positions | bucket_token | bucket_start].
  std::vector<int32_t> packed;
  packed.reserve(BT + 2 * buckets + 1);
  packed.insert(packed.end(), g.positions.begin(), g.positions.end());
  packed.insert(packed.end(), g.bucket_token.begin(), g.bucket_token.end());
  packed.insert(packed.end(), g.bucket_start.begin(), g.bucket_start.end());
  auto* device = static_cast<int32_t*>(
      scratch->Get(packed.size() * sizeof(int32_t), stream));
  staging->CopyToDevice(device, packed.data(), packed.size() * sizeof(int32_t),
                        stream);
  DispatchFloat2(dwte.dtype, dout.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    CheckLaunch(GPT2_LAUNCH((EncoderBackwardWpeKernel<F, R>),
                            CeilDiv(int64_t{T} * C, 256), 256, 0, stream,
                            Ptr<F>(dwpe), Ptr<R>(dout), B, T, C),
                "EncoderBackwardWpeKernel");
    const dim3 grid(CeilDiv(C, 128), buckets);
    CheckLaunch(GPT2_LAUNCH((EncoderBackwardWteKernel<F, R>), grid, 128, 0,
                            stream, Ptr<F>(dwte), Ptr<R>(dout), device + BT,
                            device + BT + buckets, device, C),
                "EncoderBackwardWteKernel");
  });
}

// [positions (BT) | bucket_token (BT) | bucket_start (BT + 1) | buckets].
int64_t EncoderPlanSize(int64_t BT) { return 3 * BT + 2; }

void StageEncoderPlan(Tensor plan, const int32_t* host_tokens, int B, int T,
                      PinnedStaging* staging, CUstream_st* stream) {
  const int BT = B * T;
  GPT2_CHECK(plan.dtype == DType::kI32 && plan.numel >= EncoderPlanSize(BT));
  const TokenGroups g = GroupByToken(host_tokens, BT);
  std::vector<int32_t> packed(EncoderPlanSize(BT), 0);
  std::copy(g.positions.begin(), g.positions.end(), packed.begin());
  std::copy(g.bucket_token.begin(), g.bucket_token.end(), packed.begin() + BT);
  std::copy(g.bucket_start.begin(), g.bucket_start.end(),
            packed.begin() + 2 * BT);
  packed[3 * BT + 1] = static_cast<int32_t>(g.bucket_token.size());
  staging->CopyToDevice(plan.data, packed.data(),
                        packed.size() * sizeof(int32_t), stream);
}

void EncoderBackwardStaged(Tensor dwte, Tensor dwpe, Tensor dout, Tensor plan,
                           int B, int T, int C, CUstream_st* stream) {
  const int BT = B * T;
  GPT2_CHECK(plan.dtype == DType::kI32 && plan.numel >= EncoderPlanSize(BT));
  DispatchFloat2(dwte.dtype, dout.dtype, [&](auto zero, auto zero_r) {
    using F = decltype(zero);
    using R = decltype(zero_r);
    CheckLaunch(GPT2_LAUNCH((EncoderBackwardWpeKernel<F, R>),
                            CeilDiv(int64_t{T} * C, 256), 256, 0, stream,
                            Ptr<F>(dwpe), Ptr<R>(dout), B, T, C),
                "EncoderBackwardWpeKernel");
    // Up to 4,096 bucket rows of blocks, each striding over the buckets.
    const dim3 grid(CeilDiv(C, 128), std::min(BT, 4096));
    CheckLaunch(GPT2_LAUNCH((EncoderBackwardWteStagedKernel<F, R>), grid, 128,
                            0, stream, Ptr<F>(dwte), Ptr<R>(dout),
                            Ptr<int32_t>(plan), BT, C),
                "EncoderBackwardWteStagedKernel");
  });
}

}  // namespace gpt2::cuda
