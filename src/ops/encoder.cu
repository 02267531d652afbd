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
  // Group positions by token: positions sorted by (token, position).
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
  const int buckets = static_cast<int>(bucket_token.size());
  // One upload: [positions | bucket_token | bucket_start].
  std::vector<int32_t> packed;
  packed.reserve(BT + 2 * buckets + 1);
  packed.insert(packed.end(), positions.begin(), positions.end());
  packed.insert(packed.end(), bucket_token.begin(), bucket_token.end());
  packed.insert(packed.end(), bucket_start.begin(), bucket_start.end());
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

}  // namespace gpt2::cuda
