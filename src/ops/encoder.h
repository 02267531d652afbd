// Encoder: token embedding plus position embedding.
// Backward accumulates (+=) into the parameter gradients, like every op's
// reference here; the CUDA twin can also write wpe's (ParamGrads).
#ifndef GPT2_OPS_ENCODER_H_
#define GPT2_OPS_ENCODER_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

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

// ---- CUDA twin (src/ops/encoder.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
class PinnedStaging;
void EncoderForward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int B,
                    int T, int C, CUstream_st* stream);
// host_tokens: the (B,T) tokens in host memory, grouped on the host per token.
// dwte accumulates; dwpe (maxT,C) as `dwpe_grads` says (overwritten, its rows
// from T on are zeroed).
void EncoderBackward(Tensor dwte, Tensor dwpe, Tensor dout,
                     const int32_t* host_tokens, int B, int T, int C,
                     Scratch* scratch, PinnedStaging* staging,
                     CUstream_st* stream,
                     ParamGrads dwpe_grads = ParamGrads::kAccumulate);
// The same in two parts, for graphs: StageEncoderPlan groups the tokens on
// the host and copies the grouping into `plan` (i32, at least
// EncoderPlanSize(B * T, C) elements, room for the partial sums of frequent
// tokens included) on `stream`; EncoderBackwardStaged then reads it from
// there, its launches the same for any tokens (so a recorded graph serves
// every step). The same sums in the same order: the same bits.
int64_t EncoderPlanSize(int64_t BT, int C);
void StageEncoderPlan(Tensor plan, const int32_t* host_tokens, int B, int T,
                      int C, PinnedStaging* staging, CUstream_st* stream);
void EncoderBackwardStaged(Tensor dwte, Tensor dwpe, Tensor dout, Tensor plan,
                           int B, int T, int C, CUstream_st* stream,
                           ParamGrads dwpe_grads = ParamGrads::kAccumulate);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_ENCODER_H_
