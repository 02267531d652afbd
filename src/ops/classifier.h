// Fused softmax + cross-entropy + its gradient, in one pass over the logits.
// The padded vocab columns [V, Vp) are masked: they get no probability and zero
// gradient.
#ifndef GPT2_OPS_CLASSIFIER_H_
#define GPT2_OPS_CLASSIFIER_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace gpt2::cpu {

// logits (N,Vp), targets (N) in [0, V). losses (N) = -log
// softmax(logits)[target]. When write_grad, logits are overwritten in place by
// dlogits = (softmax - onehot(target)) * dloss, and the padded columns by zero.
template <typename T>
void ClassifierForward(T* logits, T* losses, const int32_t* targets, int64_t N,
                       int V, int Vp, double dloss, bool write_grad);

// acc (1) += scale * sum(x (n)), summed in double in a fixed order.
template <typename T>
void AccumulateSum(T* acc, const T* x, int64_t n, double scale);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/classifier.cu): the same contract on device tensors,
// queued on `stream`. Tensors are f32 or bf16 (the storage type; arithmetic is
// fp32).
namespace gpt2::cuda {
class Scratch;
// losses and acc are f32; targets i32.
void ClassifierForward(Tensor logits, Tensor losses, Tensor targets, int64_t N,
                       int V, int Vp, double dloss, bool write_grad,
                       CUstream_st* stream);
void AccumulateSum(Tensor acc, Tensor x, double scale, CUstream_st* stream);
// bf16 rows of up to 57,344 logits (GPT-2's 50,304) on sm_90 and newer are
// staged in shared memory by one bulk copy (read once; the same bits as the
// packed kernel, which reads a row twice); off (GPT2_CLASSIFIER_BULK=0 at
// start-up), the packed kernel. Tests set it.
void SetClassifierBulk(bool on);
// Where the bulk kernel runs, GPT2_CLASSIFIER_RING=1 (at start-up; tests set
// it) runs one block an SM instead, with two row buffers: the next row's bulk
// copy in flight while this row is reduced and written (the same bits).
void SetClassifierRing(bool on);
// bf16 rows take exp(x) as the hardware's ex2 of x log2(e) (one instruction
// where expf takes ~8; relative error ~2^-22); off (GPT2_CLASSIFIER_FAST_EXP=0
// at start-up; tests set it), expf as the f32 rows always do.
void SetClassifierFastExp(bool on);
// Which kernel ClassifierForward runs for these logits: "bulk" or "ring"
// (above), "packed" (16-byte packs, the row read twice) or "elementwise".
const char* ClassifierKernelName(Tensor logits, int Vp);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_CLASSIFIER_H_
