// Fused softmax + cross-entropy + its gradient, in one pass over the logits.
// The padded vocab columns [V, Vp) are masked: they get no probability and zero
// gradient.
#ifndef GPT2_OPS_CLASSIFIER_H_
#define GPT2_OPS_CLASSIFIER_H_

#include <cstdint>

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

#endif  // GPT2_OPS_CLASSIFIER_H_
