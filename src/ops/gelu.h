// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#ifndef GPT2_OPS_GELU_H_
#define GPT2_OPS_GELU_H_

#include <cstdint>

namespace gpt2::cpu {

// out (n) = gelu(inp (n)).
template <typename T>
void GeluForward(T* out, const T* inp, int64_t n);

// dinp (n) += gelu'(inp) * dout.
template <typename T>
void GeluBackward(T* dinp, const T* inp, const T* dout, int64_t n);

}  // namespace gpt2::cpu

#endif  // GPT2_OPS_GELU_H_
