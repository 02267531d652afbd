// Element type conversion between float buffers (f32 <-> f64 on the CPU, f32
// <-> bf16 on CUDA): how fp32 master weights are made from bf16 params and
// back.
#ifndef GPT2_OPS_CAST_H_
#define GPT2_OPS_CAST_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

// dst (n) = src (n) converted; same-type casts copy.
template <typename To, typename From>
void Cast(To* dst, const From* src, int64_t n);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/cast.cu): f32 and bf16 in any combination.
namespace gpt2::cuda {
void Cast(Tensor dst, Tensor src, CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_CAST_H_
