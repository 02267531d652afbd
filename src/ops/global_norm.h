// Squared L2 norm of a flat buffer, for global-norm gradient clipping.
// Deterministic: fixed-size chunks summed in double, then the chunks in order.
#ifndef GPT2_OPS_GLOBAL_NORM_H_
#define GPT2_OPS_GLOBAL_NORM_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

// out (1) = sum of x (n) squared.
template <typename T>
void SumSquares(T* out, const T* x, int64_t n);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/global_norm.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
// out is f32 (1 element).
void SumSquares(Tensor out, Tensor x, Scratch* scratch, CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_GLOBAL_NORM_H_
