// Squared L2 norm of a flat buffer, for global-norm gradient clipping.
// Deterministic: fixed-size chunks summed in double, then the chunks in order.
#ifndef GPT2_OPS_GLOBAL_NORM_H_
#define GPT2_OPS_GLOBAL_NORM_H_

#include <cstdint>

namespace gpt2::cpu {

// out (1) = sum of x (n) squared.
template <typename T>
void SumSquares(T* out, const T* x, int64_t n);

}  // namespace gpt2::cpu

#endif  // GPT2_OPS_GLOBAL_NORM_H_
