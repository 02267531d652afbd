// LayerNorm over the last dimension, eps 1e-5, as in GPT-2.
// Forward saves the per-row mean and 1/std for the backward pass.
#ifndef GPT2_OPS_LAYERNORM_H_
#define GPT2_OPS_LAYERNORM_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

inline constexpr double kLayerNormEps = 1e-5;

// out (N,C) = (inp - mean) * rstd * weight (C) + bias (C); mean, rstd (N).
template <typename T>
void LayerNormForward(T* out, T* mean, T* rstd, const T* inp, const T* weight,
                      const T* bias, int64_t N, int C);

// dinp (N,C) +=, dweight (C) +=, dbias (C) +=.
template <typename T>
void LayerNormBackward(T* dinp, T* dweight, T* dbias, const T* dout,
                       const T* inp, const T* weight, const T* mean,
                       const T* rstd, int64_t N, int C);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/layernorm.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
// mean and rstd are f32 whatever the data type.
void LayerNormForward(Tensor out, Tensor mean, Tensor rstd, Tensor inp,
                      Tensor weight, Tensor bias, int64_t N, int C,
                      CUstream_st* stream);
// dinp accumulates; dweight and dbias as `dparams` says.
void LayerNormBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                       Tensor inp, Tensor weight, Tensor mean, Tensor rstd,
                       int64_t N, int C, Scratch* scratch, CUstream_st* stream,
                       ParamGrads dparams = ParamGrads::kAccumulate);
// residual (N,C) = a + b, then out = LayerNorm(residual) as above, in one
// kernel (Backend::ResidualLayerNormForward; the CPU runs the two ops).
void ResidualLayerNormForward(Tensor residual, Tensor out, Tensor mean,
                              Tensor rstd, Tensor a, Tensor b, Tensor weight,
                              Tensor bias, int64_t N, int C,
                              CUstream_st* stream);
// Where a row's inp, dout and dinp fit in registers at once (bf16 or fp32
// throughout, up to 768 or 384 channels), the packed backward loads all three
// at once, its weight and bias gradient sums in shared memory (the default);
// off (GPT2_LAYERNORM_PREFETCH=0), it loads dinp after the row's sums, as it
// does for every other shape. The same bits either way; tests set it.
void SetLayerNormBackwardPrefetch(bool on);
bool LayerNormBackwardPrefetch();
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_LAYERNORM_H_
