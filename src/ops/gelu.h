// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#ifndef GPT2_OPS_GELU_H_
#define GPT2_OPS_GELU_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

// out (n) = gelu(inp (n)).
template <typename T>
void GeluForward(T* out, const T* inp, int64_t n);

// dinp (n) += gelu'(inp) * dout.
template <typename T>
void GeluBackward(T* dinp, const T* inp, const T* dout, int64_t n);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/gelu.cu): the same contract on device tensors, queued
// on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is fp32).
namespace gpt2::cuda {
class Scratch;
void GeluForward(Tensor out, Tensor inp, CUstream_st* stream);
void GeluBackward(Tensor dinp, Tensor inp, Tensor dout, CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_GELU_H_
