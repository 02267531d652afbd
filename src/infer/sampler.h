// Picks the next token from a row of logits: temperature, then top-k, then a
// draw from the seeded Rng. Only ids below vocab_size are ever considered, so
// the padded tail of the LM head (ids >= V) can never be sampled.
#ifndef GPT2_INFER_SAMPLER_H_
#define GPT2_INFER_SAMPLER_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "src/core/rng.h"

namespace gpt2::infer {

struct SamplingParams {
  // Keep the k most likely tokens (k >= 1; 1 is greedy; k > V means all V).
  int top_k = 50;
  // Divides the logits; > 0 and finite. Lower is more conservative.
  double temperature = 1.0;
};

// InvalidArgument naming the field when a value is out of range.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Not thread-safe: keeps its candidate buffer between calls (one per worker).
class Sampler {
 public:
  // logits: vocab_size values (a row of a decoder's (batch, Vp) logits).
  // The k largest logits are ranked by value, then by lower id on ties (a
  // total order, so the result does not depend on the selection algorithm);
  // NaN counts as -infinity. With top_k == 1 this is the argmax and draws no
  // random number; otherwise it draws exactly one Uniform() from `rng`.
  // params must be valid (ValidateSamplingParams).
  int Sample(const float* logits, int vocab_size, const SamplingParams& params,
             Rng* rng);

 private:
  std::vector<std::pair<float, int>> candidates_;
  std::vector<double> weights_;
};

// Samples one token per row of (rows, stride) row-major logits, row b with
// rngs[b], into tokens[b], rows in parallel (each row's draw is the one
// Sampler::Sample makes, so the result does not depend on the threads). Rows
// with active != nullptr && !active[b] are skipped (tokens[b] untouched).
void SampleRows(const float* logits, int rows, int64_t stride, int vocab_size,
                const SamplingParams& params, Rng* rngs, int32_t* tokens,
                const bool* active = nullptr);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_SAMPLER_H_
