// CUDA LayerNorm: one warp per row. The weight/bias gradients are
// deterministic: each block writes per-channel partial sums over its rows, then
// the partials are added in block order (src/cuda/reduce.cuh).
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
template <typename T>
__device__ __forceinline__ void NormalizeRow(T* y, float* mean, float* rstd,
                                             const T* x, const T* weight,
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

template <typename T>
__global__ void LayerNormForwardKernel(T* out, float* mean, float* rstd,
                                       const T* inp, const T* weight,
                                       const T* bias, int64_t N, int C) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  NormalizeRow(out + row * C, mean, rstd, inp + row * C, weight, bias, row, C);
}

// residual = a + b (rounded to T, as the unfused residual add stores it), then
// its LayerNorm: one pass over a and b instead of a residual kernel and a
// LayerNorm kernel reading the sum back.
template <typename T>
__global__ void ResidualLayerNormForwardKernel(T* residual, T* out, float* mean,
                                               float* rstd, const T* a,
                                               const T* b, const T* weight,
                                               const T* bias, int64_t N,
                                               int C) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  T* r = residual + row * C;
  for (int c = threadIdx.x % 32; c < C; c += 32)
    r[c] = FromFloat<T>(ToFloat(a[row * C + c]) + ToFloat(b[row * C + c]));
  NormalizeRow(out + row * C, mean, rstd, r, weight, bias, row, C);
}

template <typename T>
__global__ void LayerNormBackwardInputKernel(T* dinp, const T* dout,
                                             const T* inp, const T* weight,
                                             const float* mean,
                                             const float* rstd, int64_t N,
                                             int C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= N) return;
  const T* x = inp + row * C;
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
  T* dx = dinp + row * C;
  for (int c = lane; c < C; c += 32) {
    const float norm = (ToFloat(x[c]) - m) * s;
    const float dnorm = ToFloat(weight[c]) * ToFloat(dy[c]);
    dx[c] = FromFloat<T>(ToFloat(dx[c]) +
                         (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
  }
}

// partial[block][c] and partial[blocks + block][c]: this block's rows' dweight,
// dbias.
template <typename T>
__global__ void LayerNormBackwardParamPartials(float* partial, const T* dout,
                                               const T* inp, const float* mean,
                                               const float* rstd, int64_t N,
                                               int C, int rows_per_block) {
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

}  // namespace

void LayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                      Tensor weight, Tensor bias, int64_t N, int C,
                      CUstream_st* stream) {
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(LayerNormForwardKernel<F>, CeilDiv(N, kRowsPerBlock),
                    32 * kRowsPerBlock, 0, stream, Ptr<F>(out),
                    Ptr<float>(mean), Ptr<float>(rstd), Ptr<F>(inp),
                    Ptr<F>(weight), Ptr<F>(bias), N, C),
        "LayerNormForwardKernel");
  });
}

void ResidualLayerNormForward(Tensor residual, Tensor out, Tensor mean,
                              Tensor rstd, Tensor a, Tensor b, Tensor weight,
                              Tensor bias, int64_t N, int C,
                              CUstream_st* stream) {
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(GPT2_LAUNCH(ResidualLayerNormForwardKernel<F>,
                            CeilDiv(N, kRowsPerBlock), 32 * kRowsPerBlock, 0,
                            stream, Ptr<F>(residual), Ptr<F>(out),
                            Ptr<float>(mean), Ptr<float>(rstd), Ptr<F>(a),
                            Ptr<F>(b), Ptr<F>(weight), Ptr<F>(bias), N, C),
                "ResidualLayerNormForwardKernel");
  });
}

void LayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                       Tensor inp, Tensor weight, Tensor mean, Tensor rstd,
                       int64_t N, int C, Scratch* scratch,
                       CUstream_st* stream) {
  constexpr int kParamRows = 64;
  const int blocks = static_cast<int>(CeilDiv(N, kParamRows));
  auto* partial = static_cast<float*>(scratch->Get(
      sizeof(float) * 2 * static_cast<size_t>(blocks) * C, stream));
  DispatchFloat(dout.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(
        GPT2_LAUNCH(LayerNormBackwardInputKernel<F>, CeilDiv(N, kRowsPerBlock),
                    32 * kRowsPerBlock, 0, stream, Ptr<F>(dinp), Ptr<F>(dout),
                    Ptr<F>(inp), Ptr<F>(weight), Ptr<float>(mean),
                    Ptr<float>(rstd), N, C),
        "LayerNormBackwardInputKernel");
    CheckLaunch(
        GPT2_LAUNCH(LayerNormBackwardParamPartials<F>, blocks, 256, 0, stream,
                    partial, Ptr<F>(dout), Ptr<F>(inp), Ptr<float>(mean),
                    Ptr<float>(rstd), N, C, kParamRows),
        "LayerNormBackwardParamPartials");
    const dim3 block(kColumnTile, kRowLanes);
    CheckLaunch(
        GPT2_LAUNCH(AddColumnSumsKernel<F>, CeilDiv(C, kColumnTile), block, 0,
                    stream, Ptr<F>(dweight), partial, blocks, C),
        "AddColumnSumsKernel(dweight)");
    CheckLaunch(
        GPT2_LAUNCH(AddColumnSumsKernel<F>, CeilDiv(C, kColumnTile), block, 0,
                    stream, Ptr<F>(dbias),
                    partial + static_cast<size_t>(blocks) * C, blocks, C),
        "AddColumnSumsKernel(dbias)");
  });
}

}  // namespace gpt2::cuda
