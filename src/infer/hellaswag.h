// HellaSwag (Zellers et al. 2019), the commonsense benchmark llm.c reports for
// its GPT-2 runs: each example is a context and four endings, one right; the
// model picks the ending it finds most likely. Scored the way llm.c and the
// eval harnesses do: the context's tokens, then each ending's (encoded with a
// leading space), and for each ending the loss of its tokens given everything
// before them; "acc" picks the lowest total loss, "acc_norm" the lowest mean
// loss per token (the figure quoted for GPT-2: 124M about 0.29).
//
// The endings are decoded side by side on a KV-cache decoder (the CPU's or a
// GPU's): the context once for the four rows, then one step per ending token.
#ifndef GPT2_INFER_HELLASWAG_H_
#define GPT2_INFER_HELLASWAG_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/data/tokenizer.h"
#include "src/infer/decoder.h"

namespace gpt2::infer {

struct HellaSwagExample {
  std::string context;                 // "ctx"
  std::array<std::string, 4> endings;  // "endings"
  int label = 0;                       // "label": the right ending, 0..3
  std::string where;                   // "file:LINE"
};

// The examples of a HellaSwag .jsonl file (rowanz/hellaswag's
// hellaswag_val.jsonl: one object per line with "ctx", "endings" (4
// strings) and "label"; other fields ignored). An error names the line.
absl::StatusOr<std::vector<HellaSwagExample>> ReadHellaSwag(
    const std::string& path);

struct EndingScore {
  double loss_sum = 0.0;  // -log p of the ending's tokens, summed
  int tokens = 0;
  double mean() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
};

struct HellaSwagScore {
  std::array<EndingScore, 4> endings;
  int pick = 0;       // lowest loss_sum
  int pick_norm = 0;  // lowest mean
};

// Scores one example on `decoder` (max_batch >= 4). The context and the
// longest ending must fit the model's context together (else an error: the
// context is not cut).
absl::StatusOr<HellaSwagScore> ScoreHellaSwag(Decoder* decoder,
                                              const Tokenizer& tokenizer,
                                              const HellaSwagExample& example);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_HELLASWAG_H_
