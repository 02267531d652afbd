// The CPU kernels of one decode step, in fp32. At decode time a batch is a
// handful of rows, so the matmuls are matrix-vector products bound by reading
// the weights: each weight row is streamed once and dotted with every input
// row while it is in cache, instead of being packed as the training GEMM does.
// Every output element is summed in a fixed order, independent of the thread
// count and of the other rows.
#ifndef GPT2_INFER_CPU_KERNELS_H_
#define GPT2_INFER_CPU_KERNELS_H_

#include <cstdint>

namespace gpt2::infer::cpu {

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
// Meant for small N (a decode batch); any N works.
void SmallBatchMatmul(float* out, const float* inp, const float* weight,
                      const float* bias, int N, int C, int OC);
// The same with the weights in bf16 (their bits): half the bytes to stream,
// which is what a decode step waits for; the sums stay fp32, in the same
// order.
void SmallBatchMatmul(float* out, const float* inp, const uint16_t* weight_bf16,
                      const float* bias, int N, int C, int OC);

// One new position per row against a KV cache.
// q: B rows q_stride floats apart, each starting with its newest position's
// query (C = NH * hs floats), so q can point into a fused qkv buffer.
// k_cache, v_cache: (B, NH, capacity, hs); positions [0, len) are valid, the
// newest (len - 1) included.
// out (B, C) = softmax(q k^T / sqrt(hs)) v over those positions.
// scratch: at least B * NH * len floats.
void CachedAttention(float* out, const float* q, int64_t q_stride,
                     const float* k_cache, const float* v_cache, int B, int NH,
                     int hs, int capacity, int len, float* scratch);

}  // namespace gpt2::infer::cpu

#endif  // GPT2_INFER_CPU_KERNELS_H_
