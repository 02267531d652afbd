// Encoder: token embedding plus position embedding.
// Backward accumulates (+=) into the parameter gradients, like every op here.
#ifndef GPT2_OPS_ENCODER_H_
#define GPT2_OPS_ENCODER_H_

#include <cstdint>

namespace gpt2::cpu {

// out (B,T,C) = wte[tokens[b,t]] (Vp,C) + wpe[t] (maxT,C); tokens (B,T).
template <typename T>
void EncoderForward(T* out, const int32_t* tokens, const T* wte, const T* wpe,
                    int B, int T_, int C);

// dwte (Vp,C) += scatter of dout (B,T,C) by token; dwpe (maxT,C) += sum over b.
// Deterministic: each channel range is owned by one thread, rows summed in
// order.
template <typename T>
void EncoderBackward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens,
                     int B, int T_, int C);

}  // namespace gpt2::cpu

#endif  // GPT2_OPS_ENCODER_H_
