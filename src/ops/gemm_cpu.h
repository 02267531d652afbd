// A general CPU GEMM, C (M,N) += A (M,K) @ B (K,N), with arbitrary strides for
// A and B. Panels of A and B are packed into contiguous strips and multiplied
// by a register-blocked micro-kernel written with GCC vector extensions, so it
// vectorises for AVX2 / AVX-512 without intrinsics. Each output tile's K-sum
// runs in a fixed order: the result does not depend on the thread count.
#ifndef GPT2_OPS_GEMM_CPU_H_
#define GPT2_OPS_GEMM_CPU_H_

#include <cstdint>

namespace gpt2::cpu {

// A[i][k] = a[i * a_row_stride + k * a_col_stride]; likewise B; C is row-major
// with ldc.
template <typename T>
void GemmAccumulate(int64_t M, int64_t N, int64_t K, const T* a,
                    int64_t a_row_stride, int64_t a_col_stride, const T* b,
                    int64_t b_row_stride, int64_t b_col_stride, T* c,
                    int64_t ldc);

}  // namespace gpt2::cpu

#endif  // GPT2_OPS_GEMM_CPU_H_
