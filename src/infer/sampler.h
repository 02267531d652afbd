// What a draw of the next token takes: top-k, temperature and top-p, checked
// here.
// The draw itself is the ops' SampleTopK (src/ops/sample.h), made by the
// decoder where its logits are (Decoder::SampleNext).
#ifndef GPT2_INFER_SAMPLER_H_
#define GPT2_INFER_SAMPLER_H_

#include <cstdint>

#include "absl/status/status.h"

namespace gpt2::infer {

struct SamplingParams {
  // Keep the k most likely tokens (k >= 1; 1 is greedy; k > V means all V).
  int top_k = 50;
  // Divides the logits; > 0 and finite. Lower is more conservative.
  double temperature = 1.0;
  // Nucleus sampling, after top-k and temperature: draw only from the most
  // likely tokens that together hold at least this share of the probability;
  // in (0, 1], 1 (the default) keeps every token top-k kept.
  double top_p = 1.0;
};

// InvalidArgument naming the field when a value is out of range.
absl::Status ValidateSamplingParams(const SamplingParams& params);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_SAMPLER_H_
