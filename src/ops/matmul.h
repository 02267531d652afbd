// Matmul with bias, in the nn.Linear layout: weight is (OC, C), out = inp @
// weight^T + bias. The CPU path runs on a packed, register-blocked GEMM
// (gemm_cpu.h); cuBLASLt on CUDA.
#ifndef GPT2_OPS_MATMUL_H_
#define GPT2_OPS_MATMUL_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

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

// ---- CUDA twin (src/ops/matmul.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
// The portable tiled kernels (the emulated build's path, and a fallback); the
// GPU path is cuBLASLt (matmul_cublaslt.cc).
void MatmulForward(Tensor out, Tensor inp, Tensor weight, Tensor bias,
                   int64_t N, int C, int OC, CUstream_st* stream);
// dinp, dweight and dbias may each be empty (skipped): the input gradient
// and the weight gradients may go to different streams. dinp accumulates,
// dweight and dbias as `dparams` says.
void MatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                    Tensor inp, Tensor weight, int64_t N, int C, int OC,
                    Scratch* scratch, CUstream_st* stream,
                    ParamGrads dparams = ParamGrads::kAccumulate);
// The forward for at most kSkinnyMaxRows rows (decoding), on both paths:
// memory-bound on the weights, which a GEMM tiled for many rows reads poorly.
// With a non-null gelu_out, `out` gets the pre-activation and gelu_out its
// GELU (tanh), as MatmulForward then GeluForward would. Returns false without
// queuing anything where it does not apply (more rows, a storage type or C
// that 16-byte packs do not fit, misaligned tensors).
inline constexpr int kSkinnyMaxRows = 8;
bool SkinnyMatmulForward(Tensor out, Tensor gelu_out, Tensor inp, Tensor weight,
                         Tensor bias, int64_t N, int C, int OC,
                         CUstream_st* stream);
// The same with the input made in the kernel (Backend::
// ResidualLayerNormMatmul): residual_out = a + b, inp = LayerNorm(residual_out;
// ln_w, ln_b); `inp` is then unused. Also false where the rows (N * C) would
// not fit in 48 KiB of shared memory or a tensor is of another type.
struct SkinnyLayerNorm {
  Tensor residual_out, a, b, ln_w, ln_b;
};
bool SkinnyMatmulForward(Tensor out, Tensor gelu_out, Tensor inp, Tensor weight,
                         Tensor bias, int64_t N, int C, int OC,
                         CUstream_st* stream, const SkinnyLayerNorm* ln);
// dbias (OC) (+)= column sums of dout (N,OC), deterministic (used by both
// paths): fixed row chunks, then the chunks in order (src/cuda/reduce.cuh).
void MatmulBiasBackward(Tensor dbias, Tensor dout, int64_t N, int OC,
                        Scratch* scratch, CUstream_st* stream,
                        ParamGrads dparams = ParamGrads::kAccumulate);
// dbias (OC) (+)= sums (OC floats in device memory), for column sums made
// elsewhere (cuBLASLt's bias-gradient epilogue).
void AddBiasSums(Tensor dbias, const float* sums, int OC, CUstream_st* stream,
                 ParamGrads dparams = ParamGrads::kAccumulate);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_MATMUL_H_
