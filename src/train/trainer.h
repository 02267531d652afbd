// The training loop: builds the backend, model, optimizer and loaders from a
// validated config, then runs micro-steps with gradient accumulation, clipping,
// the lr schedule, periodic val loss, and rank 0's logs.
#ifndef GPT2_TRAIN_TRAINER_H_
#define GPT2_TRAIN_TRAINER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/train/config.h"

namespace gpt2 {

struct TrainOptions {
  std::string config_path;  // for the header
  std::string data_dir;
};

struct TrainResult {
  int64_t steps_run = 0;
  double final_loss = 0.0;
  std::vector<double> losses;  // per step
  std::string run_dir;
};

absl::StatusOr<TrainResult> Train(const LoadedConfig& loaded,
                                  const TrainOptions& options);

}  // namespace gpt2

#endif  // GPT2_TRAIN_TRAINER_H_
