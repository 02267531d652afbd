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

// An example as tokens: row i is the context then ending i (with its leading
// space). Its ending tokens are predicted at positions context.size() - 1 ..
// row_length(i) - 2 of the row (the loss at position p is that of token p+1).
struct HellaSwagRows {
  std::vector<int32_t> context;
  std::array<std::vector<int32_t>, 4> endings;
  int row_length(int i) const {
    return static_cast<int>(context.size() + endings[i].size());
  }
  int longest() const;  // the longest row
  // Row i as a training batch row: inputs (the row but its last token) and
  // targets (the row but its first), both padded with token 0 to `length`.
  void Row(int i, int length, int32_t* inputs, int32_t* targets) const;
};

// The rows of `example`; an error if its context or an ending is empty.
// Whether they fit a model is the caller's question (longest()): the context
// is never cut.
absl::StatusOr<HellaSwagRows> RenderHellaSwag(const Tokenizer& tokenizer,
                                              const HellaSwagExample& example);

// The score from per-position losses: loss(i, p) is row i's loss at position
// p (of predicting its token p + 1).
template <typename Loss>
HellaSwagScore ScoreFromLosses(const HellaSwagRows& rows, Loss&& loss) {
  HellaSwagScore score;
  const int first = static_cast<int>(rows.context.size()) - 1;
  for (int i = 0; i < 4; ++i) {
    for (int p = first; p <= rows.row_length(i) - 2; ++p) {
      score.endings[i].loss_sum += loss(i, p);
      ++score.endings[i].tokens;
    }
  }
  for (int i = 1; i < 4; ++i) {
    if (score.endings[i].loss_sum < score.endings[score.pick].loss_sum) {
      score.pick = i;
    }
    if (score.endings[i].mean() < score.endings[score.pick_norm].mean()) {
      score.pick_norm = i;
    }
  }
  return score;
}

// Scores one example on `decoder` (max_batch >= 4): the context once for four
// rows, then one step per ending token. OutOfRange where the context and the
// longest ending do not fit the model's context (callers may leave it out).
absl::StatusOr<HellaSwagScore> ScoreHellaSwag(Decoder* decoder,
                                              const Tokenizer& tokenizer,
                                              const HellaSwagExample& example);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_HELLASWAG_H_
