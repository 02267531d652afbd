// LayerNorm over the last dimension, eps 1e-5, as in GPT-2.
// Forward saves the per-row mean and 1/std for the backward pass.
#ifndef GPT2_OPS_LAYERNORM_H_
#define GPT2_OPS_LAYERNORM_H_

#include <cstdint>

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

#endif  // GPT2_OPS_LAYERNORM_H_
