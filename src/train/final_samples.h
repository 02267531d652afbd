// Text from the final model at the end of a run (log.sample_prompts): each
// prompt continued with a KV-cache decoder on the run's own backend, printed
// and written to <run folder>/samples.txt, the way gpt2_sample prints them.
#ifndef GPT2_TRAIN_FINAL_SAMPLES_H_
#define GPT2_TRAIN_FINAL_SAMPLES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "src/backend/backend.h"
#include "src/data/tokenizer.h"
#include "src/model/params.h"
#include "src/train/run_log.h"

namespace gpt2 {

class FinalSamples {
 public:
  // Loads the tokenizer from data_dir and encodes the prompts, at start-up,
  // so a prompt that cannot run (too long for the model's context) fails
  // before any training. None configured: an object that does nothing.
  static absl::StatusOr<FinalSamples> Prepare(const config::LogConfig& log,
                                              const std::string& data_dir,
                                              const ModelShape& shape,
                                              uint64_t seed);

  bool empty() const { return prompts_.empty(); }

  // Samples from `params` (the model's flat parameters, as floats) on
  // `backend` (its own fast CPU decoder for the CPU backend), then prints
  // them through `log` and writes run_dir/samples.txt. `step`: the model's
  // step, for the header. `checkpoint`: the file that holds these weights
  // ("" if none), for the gpt2_sample command that draws the same samples.
  absl::Status Run(Backend* backend, DType dtype,
                   const std::vector<float>& params, int64_t step,
                   const std::string& run_dir, const std::string& checkpoint,
                   RunLog* log) const;

 private:
  FinalSamples() = default;

  ModelShape shape_;
  std::optional<Tokenizer> tokenizer_;  // when there are prompts
  std::vector<std::string> prompts_;
  std::vector<std::vector<int32_t>> prompt_ids_;
  int new_tokens_ = 0;
  int per_prompt_ = 1;
  uint64_t seed_ = 0;
  std::string data_dir_;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_FINAL_SAMPLES_H_
