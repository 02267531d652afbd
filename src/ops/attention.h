// Causal multi-head self-attention over a fused qkv tensor, flash-style: the
// forward pass keeps only each row's softmax log-sum-exp, and the backward pass
// recomputes the probabilities from it, so no (B, NH, T, T) tensor is ever
// stored.
#ifndef GPT2_OPS_ATTENTION_H_
#define GPT2_OPS_ATTENTION_H_

#include <string>
#include <vector>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

// qkv (B,T,3C) holds q | k | v, each split into NH heads of C/NH channels.
// out (B,T,C) = softmax(q k^T / sqrt(hs), causal) v; lse (B,NH,T) the
// log-sum-exp of each row of scaled scores.
template <typename T>
void AttentionForward(T* out, T* lse, const T* qkv, int B, int T_, int C,
                      int NH);

// dqkv (B,T,3C) = the gradient of the forward pass (overwritten, not added
// to), given dout (B,T,C) and the forward's out and lse.
template <typename T>
void AttentionBackward(T* dqkv, const T* dout, const T* qkv, const T* out,
                       const T* lse, int B, int T_, int C, int NH);

// Decoding, one new position per row: writes the k and v of qkv (B,3C) into
// k_cache and v_cache (B, max_T, C) at position `pos`, then out (B,C) = the
// attention of q over cache positions 0..pos. (The CUDA twin reads pos from
// device memory.)
template <typename T>
void AttentionDecode(T* out, T* k_cache, T* v_cache, const T* qkv, int B,
                     int max_T, int pos, int C, int NH);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/attention.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;

// Which kernels run training attention. kAuto: tensor cores (mma.sync,
// src/ops/attention_tc.cu) for bf16 with head size 16, 32 or 64 on sm_80+,
// reading their streamed tiles through ldmatrix.trans; the portable kernels
// otherwise. kTransposedTiles: the same tensor-core kernels making transposed
// copies of those tiles instead (the version the first H200 run measured);
// GPT2_ATTENTION_LDMATRIX=0 selects it at start-up. The ldmatrix backward
// comes in two versions that give the same results bit for bit: kernels
// holding the block's own rows in registers, or "lean" ones keeping them in
// shared memory (more blocks per SM). kAuto times both on the first
// tensor-core backward of the process (the median of three launches each after
// a warm-up) and keeps the faster (AttentionBackwardChoice says which);
// kRegisterBackward / kLeanBackward fix the choice (GPT2_ATTENTION_LEAN=0 /
// 1); kLeanKeyValueBackward (GPT2_ATTENTION_LEAN=kv), also timed by kAuto,
// runs the lean dK/dV kernel and the register dQ kernel (the H100 timed
// those two the fastest of their kinds alone); kLeanBesideBackward
// (GPT2_ATTENTION_LEAN=beside), also timed by kAuto, runs the two lean kernels
// side by side, dQ on a second stream (the same bits as kLeanBackward).
// kPortable: always the portable kernels;
// GPT2_PORTABLE_ATTENTION=1 selects it, to isolate a tensor-core bug on a new
// card. On an H100/H200 with the sm_90a build (tc::WgmmaSupports), the
// forward and the backward also come as warpgroup wgmma kernels: kAuto times
// them against the mma.sync ones (the forward on its first call, the backward
// as more versions) unless GPT2_ATTENTION_WGMMA=0; kWgmma
// (GPT2_ATTENTION_WGMMA=1) runs them where they are supported, kAuto's
// kernels elsewhere; kWgmmaBeside (GPT2_ATTENTION_WGMMA=beside) likewise, with
// the backward's dQ kernel beside its dK/dV kernel on a second stream;
// kWgmmaRegs (GPT2_ATTENTION_WGMMA=regs) as kWgmmaBeside with the forward's
// queries in registers (tc::WgmmaAttentionForward); kWgmmaWide
// (GPT2_ATTENTION_WGMMA=wide) the wide wgmma forward and the wide dQ kernel
// beside dK/dV (two warpgroups a block sharing each key and value tile; as
// kWgmmaBeside where GPT2_ATTENTION_WGMMA_WIDE=0); kWgmmaSplit
// (GPT2_ATTENTION_WGMMA=split) the split wgmma forward and the split dQ
// kernel beside the split dK/dV kernel (two warpgroups a block taking its
// tiles in turn; as kWgmmaBeside where GPT2_ATTENTION_WGMMA_SPLIT=0).
enum class AttentionKernels {
  kAuto,
  kTransposedTiles,
  kPortable,
  kLeanBackward,
  kRegisterBackward,
  kLeanKeyValueBackward,
  kLeanBesideBackward,
  kWgmma,
  kWgmmaBeside,
  kWgmmaRegs,
  kWgmmaWide,
  kWgmmaSplit
};
// kWgmmaRegs acts as kWgmmaBeside, and kAuto leaves the forward's register
// versions out, where GPT2_ATTENTION_WGMMA_REGS=0 (device_check sets it when
// their test fails, keeping the other wgmma kernels).
void SetAttentionKernels(AttentionKernels kernels);
bool WgmmaRegsAllowed();
// kAuto's timed forward leaves the pipelined wgmma versions out where
// GPT2_ATTENTION_WGMMA_PIPELINED=0 (device_check sets it when their test
// fails).
bool WgmmaPipelinedAllowed();
// And the wide ones (two warpgroups a block) where GPT2_ATTENTION_WGMMA_WIDE=0
// (likewise).
bool WgmmaWideAllowed();
// And the dQ kernel at 4 blocks an SM where GPT2_ATTENTION_WGMMA_DQ4=0
// (likewise).
bool WgmmaFourBlocksDqAllowed();
// And the split ones (two warpgroups a block taking its tiles in turn) where
// GPT2_ATTENTION_WGMMA_SPLIT=0 (likewise).
bool WgmmaSplitAllowed();
// "tensor-core", "tensor-core-lean", "tensor-core-lean-kv",
// "tensor-core-lean-beside", "tensor-core-wgmma", "tensor-core-wgmma-beside",
// "tensor-core-wgmma-regs", "tensor-core-wgmma-wide",
// "tensor-core-wgmma-split", "tensor-core-tt" (transposed tiles) or "portable":
// what a call with these arguments runs.
const char* AttentionKernelName(DType dtype, int head_size);
// How kAuto chose its backward kernels, e.g. "lean (0.840 ms against 1.020 ms
// with registers, one layer, B=16 T=1024)";
// empty before the first
// tensor-core backward, in the emulator, or when the choice was fixed.
std::string AttentionBackwardChoice();
// How kAuto chose the forward (mma.sync or wgmma); empty as above, or where
// wgmma does not run.
std::string AttentionForwardChoice();
// Host seconds the choices above took (timing every version, warm-ups and
// first loads of their kernels included): part of the first step's time.
double AttentionChoiceSeconds();

// lse is f32. Head sizes 4, 8, 16, 32, 64 and 128 are compiled.
void AttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T, int C,
                      int NH, CUstream_st* stream);
void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                       Tensor lse, int B, int T, int C, int NH,
                       Scratch* scratch, CUstream_st* stream);
// For benchmarks: times each attention kernel alone (CUDA events, median of
// `reps` launches after one warm-up) on random bf16 inputs of one layer at
// B, T, C, NH: the tensor-core forward, the delta sums and the two backward
// kernels, each with ldmatrix, lean (backward), and with transposed tiles,
// then (where tc::WgmmaSupports) the wgmma forward, dK/dV and dQ kernels (own
// rows in shared memory, then in registers). flops counts the kernel's own
// products (causal: about half the scores), so a kernel that recomputes is
// charged for it. Empty where the tensor-core kernels do not apply (dtype, head
// size, device).
struct AttentionKernelTime {
  std::string kernel;
  double ms = 0.0;
  double flops = 0.0;
};
std::vector<AttentionKernelTime> ProfileAttentionKernels(int B, int T, int C,
                                                         int NH, int reps,
                                                         CUstream_st* stream);

// pos: i32, one element, on the device (so a CUDA graph serves every
// position); a value outside [0, max_T) writes nothing.
void AttentionDecode(Tensor out, Tensor k_cache, Tensor v_cache, Tensor qkv,
                     int B, int max_T, Tensor pos, int C, int NH,
                     CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_ATTENTION_H_
