// Residual add. Its backward is the identity on both inputs, so the model
// passes the residual stream's gradient through unchanged and AddInPlace
// accumulates branches.
#ifndef GPT2_OPS_RESIDUAL_H_
#define GPT2_OPS_RESIDUAL_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

// out (n) = a (n) + b (n). out may alias a.
template <typename T>
void ResidualForward(T* out, const T* a, const T* b, int64_t n);

// dst (n) += src (n): the backward of a residual add, for each input.
template <typename T>
void AddInPlace(T* dst, const T* src, int64_t n);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/residual.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
void ResidualForward(Tensor out, Tensor a, Tensor b, CUstream_st* stream);
void AddInPlace(Tensor dst, Tensor src, CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_RESIDUAL_H_
