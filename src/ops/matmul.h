// Matmul with bias, in the nn.Linear layout: weight is (OC, C), out = inp @
// weight^T + bias. The CPU path runs on a packed, register-blocked GEMM
// (gemm_cpu.h); cuBLASLt on CUDA.
#ifndef GPT2_OPS_MATMUL_H_
#define GPT2_OPS_MATMUL_H_

#include <cstdint>

namespace gpt2::cpu {

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
template <typename T>
void MatmulForward(T* out, const T* inp, const T* weight, const T* bias,
                   int64_t N, int C, int OC);

// dinp (N,C) += dout (N,OC) @ weight; dweight (OC,C) += dout^T @ inp;
// dbias (OC) += column sums of dout. dinp and dbias may be null (skipped).
template <typename T>
void MatmulBackward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                    const T* weight, int64_t N, int C, int OC);

}  // namespace gpt2::cpu

#endif  // GPT2_OPS_MATMUL_H_
