// Top-k / top-p sampling as a backend op: one token per row of logits, drawn
// where the logits are, so a GPU decoder sends back four bytes a row instead of
// the vocabulary's logits, and the host neither converts nor ranks them.
//
// The draw, for one row of logits over ids [0, V):
//  - logits are ranked by value (NaN as -infinity; -0 below +0), ties by lower
//    id; the first k = min(top_k, V) are kept;
//  - a kept id weighs exp((logit - top) / temperature), top being the largest
//    logit (an id equal to the top weighs exactly 1, so +infinity works too);
//  - with top_p < 1 (nucleus sampling) only the nucleus stays kept: the
//    shortest prefix of the kept ids in rank order whose weights sum to at
//    least top_p times the sum of all kept weights (ids of equal logits weigh
//    the same, so which of them make the prefix follows the ranking's ties:
//    lower ids first). top_p = 1 keeps them all and skips the ranking;
//  - with S the sum of the weights and u the row's uniform in [0, 1), the
//    token is the first kept id, in id order, at which the running sum of
//    weights passes u * S (the last id of positive weight if rounding leaves
//    u * S at the very top). In id order rather than rank order, so that a
//    GPU can scan its slices of the row in parallel; the distribution is the
//    same.
//  - u = SampleUniform(seed, counter): a counter-based hash, so a row's draw
//    depends only on its seed and the counter (a decoder passes the position),
//    not on the batch or on earlier draws.
// If every logit is -infinity (or NaN) the token is 0.
#ifndef GPT2_OPS_SAMPLE_H_
#define GPT2_OPS_SAMPLE_H_

#include <cstdint>

#include "src/core/tensor.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers

#if defined(__CUDACC__)
#define GPT2_SAMPLE_HD __host__ __device__
#else
#define GPT2_SAMPLE_HD
#endif

namespace gpt2 {

// splitmix64's finaliser.
inline GPT2_SAMPLE_HD uint64_t SampleMix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The uniform in [0, 1) (53 random bits) that draw `counter` of `seed` uses.
inline GPT2_SAMPLE_HD double SampleUniform(uint64_t seed, int64_t counter) {
  const uint64_t bits =
      SampleMix(SampleMix(seed) ^
                (static_cast<uint64_t>(counter) * 0xD1B54A32D192ED03ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// A float's place in the ranking above as an unsigned key: a larger key is a
// larger logit; NaN maps to -infinity's key.
inline GPT2_SAMPLE_HD uint32_t SampleKey(uint32_t float_bits) {
  if ((float_bits & 0x7F800000u) == 0x7F800000u &&
      (float_bits & 0x007FFFFFu) != 0) {
    float_bits = 0xFF800000u;  // NaN -> -infinity
  }
  return (float_bits & 0x80000000u) != 0 ? ~float_bits
                                         : float_bits | 0x80000000u;
}

// Seeds travel to the device as two i32 words per row: low, then high.
inline void SplitSeed(uint64_t seed, int32_t* words) {
  words[0] = static_cast<int32_t>(static_cast<uint32_t>(seed));
  words[1] = static_cast<int32_t>(static_cast<uint32_t>(seed >> 32));
}
inline GPT2_SAMPLE_HD uint64_t JoinSeed(const int32_t* words) {
  return static_cast<uint64_t>(static_cast<uint32_t>(words[0])) |
         (static_cast<uint64_t>(static_cast<uint32_t>(words[1])) << 32);
}

}  // namespace gpt2

namespace gpt2::cpu {

// The reference draw for one row (V logits) with uniform u: weights and sums
// in double.
template <typename T>
int32_t SampleTopKRow(const T* logits, int V, int top_k, double temperature,
                      double top_p, double u);

// tokens (rows) = the draw of each row of logits (rows, Vp) over ids < V, row
// b's uniform SampleUniform(JoinSeed(seeds + 2 b), counter). top_k >= 1,
// temperature > 0, 0 < top_p <= 1.
template <typename T>
void SampleTopK(int32_t* tokens, const T* logits, const int32_t* seeds,
                int32_t counter, int rows, int V, int Vp, int top_k,
                double temperature, double top_p);

}  // namespace gpt2::cpu

// ---- CUDA twin (src/ops/sample.cu): the same draw, one block per row, in
// fp32 (so a u within rounding of a boundary between two ids may go to the
// other one, and a nucleus whose sum lands within rounding of top_p times the
// total may hold one id more or less). logits f32 or bf16; seeds i32 (2
// rows); counter i32, one element, read on the device (a CUDA graph can replay
// it).
namespace gpt2::cuda {
void SampleTopK(Tensor tokens, Tensor logits, Tensor seeds, Tensor counter,
                int rows, int V, int Vp, int top_k, double temperature,
                double top_p, CUstream_st* stream);
}  // namespace gpt2::cuda

#endif  // GPT2_OPS_SAMPLE_H_
