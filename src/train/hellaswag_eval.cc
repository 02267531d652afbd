#include "src/train/hellaswag_eval.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"
#include "src/core/stop_signal.h"

namespace gpt2 {

absl::StatusOr<HellaSwagEval> HellaSwagEval::Load(const std::string& path,
                                                  const Tokenizer& tokenizer,
                                                  int limit, int max_seq,
                                                  int vocab_size) {
  if (vocab_size != tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": HellaSwag needs GPT-2's vocabulary (", tokenizer.vocab_size(),
        "); the model's model.vocab_size is ", vocab_size));
  }
  GPT2_ASSIGN_OR_RETURN(std::vector<infer::HellaSwagExample> examples,
                        infer::ReadHellaSwag(path));
  if (limit > 0 && static_cast<size_t>(limit) < examples.size()) {
    examples.resize(limit);
  }
  HellaSwagEval eval;
  for (const infer::HellaSwagExample& example : examples) {
    GPT2_ASSIGN_OR_RETURN(infer::HellaSwagRows rows,
                          infer::RenderHellaSwag(tokenizer, example));
    // A row of n tokens is a forward of n - 1 positions.
    if (rows.longest() - 1 > max_seq) {
      ++eval.left_out_;
      continue;
    }
    eval.rows_.push_back(std::move(rows));
    eval.labels_.push_back(example.label);
  }
  return eval;
}

infer::HellaSwagScore HellaSwagEval::Score(size_t e, Gpt2Model* model,
                                           Backend* backend,
                                           int max_batch) const {
  const int chunk = std::max(1, std::min(4, max_batch));
  const infer::HellaSwagRows& rows = rows_[e];
  const int T = rows.longest() - 1;
  std::vector<std::vector<double>> losses(4);
  for (int first = 0; first < 4; first += chunk) {
    const int n = std::min(chunk, 4 - first);
    std::vector<int32_t> inputs(static_cast<size_t>(n) * T),
        targets(static_cast<size_t>(n) * T);
    for (int r = 0; r < n; ++r) {
      rows.Row(first + r, T, inputs.data() + static_cast<size_t>(r) * T,
               targets.data() + static_cast<size_t>(r) * T);
    }
    model->Forward(inputs.data(), targets.data(), n, T, 0.0,
                   /*write_grad=*/false);
    std::vector<char> bytes(model->losses().bytes());
    backend->Download(bytes.data(), model->losses());
    const std::vector<double> all = DecodeHost(bytes, model->stats_dtype());
    for (int r = 0; r < n; ++r) {
      losses[first + r].assign(all.begin() + static_cast<size_t>(r) * T,
                               all.begin() + static_cast<size_t>(r + 1) * T);
    }
  }
  return infer::ScoreFromLosses(rows,
                                [&](int i, int p) { return losses[i][p]; });
}

HellaSwagEval::Result HellaSwagEval::Run(Gpt2Model* model, Backend* backend,
                                         Communicator* comm, int rank,
                                         int world, int max_batch,
                                         Tensor sums) const {
  std::vector<double> counts(3, 0.0);  // examples, right, right_norm
  for (size_t e = rank; e < rows_.size(); e += world) {
    // A stop signal ends the pass early (the count says how far it got); the
    // ranks still meet in the sum below.
    if (StopSignalReceived() != 0) break;
    const infer::HellaSwagScore score = Score(e, model, backend, max_batch);
    counts[0] += 1;
    counts[1] += score.pick == labels_[e];
    counts[2] += score.pick_norm == labels_[e];
  }
  if (world > 1) {
    const std::vector<char> encoded = EncodeHost(counts, sums.dtype);
    backend->Upload(sums, encoded.data());
    comm->AllReduce(sums, ReduceOp::kSum);
    std::vector<char> bytes(sums.bytes());
    backend->Download(bytes.data(), sums);
    counts = DecodeHost(bytes, sums.dtype);
  }
  Result result;
  result.examples = static_cast<int64_t>(counts[0] + 0.5);
  result.right = static_cast<int64_t>(counts[1] + 0.5);
  result.right_norm = static_cast<int64_t>(counts[2] + 0.5);
  return result;
}

}  // namespace gpt2
