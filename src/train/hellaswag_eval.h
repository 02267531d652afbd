// HellaSwag during training (log.hellaswag_file), as llm.c evaluates it
// every few hundred steps: the examples scored with the training model's
// own forward (an example's four rows padded to its longest, in chunks of the
// micro-batch), each rank a share of the examples, the counts summed over
// ranks. Scoring as src/infer/hellaswag.h (acc, acc_norm).
#ifndef GPT2_TRAIN_HELLASWAG_EVAL_H_
#define GPT2_TRAIN_HELLASWAG_EVAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/backend/backend.h"
#include "src/comm/communicator.h"
#include "src/data/tokenizer.h"
#include "src/infer/hellaswag.h"
#include "src/model/gpt2.h"

namespace gpt2 {

class HellaSwagEval {
 public:
  // Reads and tokenizes the first `limit` examples (0: all) of `path` for a
  // model of GPT-2's vocabulary (`vocab_size` must be the tokenizer's).
  // Examples whose longest row exceeds `max_seq` + 1 tokens are left out and
  // counted.
  static absl::StatusOr<HellaSwagEval> Load(const std::string& path,
                                            const Tokenizer& tokenizer,
                                            int limit, int max_seq,
                                            int vocab_size);

  struct Result {
    int64_t examples = 0, right = 0, right_norm = 0;
    double acc() const { return examples ? double(right) / examples : 0.0; }
    double acc_norm() const {
      return examples ? double(right_norm) / examples : 0.0;
    }
  };
  // Scores this rank's share (examples rank, rank + world, ...) with `model`
  // (at most max_batch rows a forward) and sums over `comm` in `sums` (3
  // elements of the model's stats type, allocated once by the caller).
  Result Run(Gpt2Model* model, Backend* backend, Communicator* comm, int rank,
             int world, int max_batch, Tensor sums) const;

  // Example e's score by the model's forward (at most max_batch rows a
  // forward).
  infer::HellaSwagScore Score(size_t e, Gpt2Model* model, Backend* backend,
                              int max_batch) const;

  int64_t size() const { return static_cast<int64_t>(rows_.size()); }
  int64_t left_out() const { return left_out_; }

 private:
  std::vector<infer::HellaSwagRows> rows_;
  std::vector<int> labels_;
  int64_t left_out_ = 0;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_HELLASWAG_EVAL_H_
