// Saving a training run to a checkpoint and resuming from one (format:
// src/ckpt). Every rank calls these: rank 0 writes while the optimizer shards
// of a ZeRO-1 run come to it one shard at a time, never a second full copy of
// the state; on resume each rank reads its own shard, so the world size may
// differ from the one the run was saved under.
#ifndef GPT2_TRAIN_CHECKPOINTING_H_
#define GPT2_TRAIN_CHECKPOINTING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "src/backend/backend.h"
#include "src/comm/communicator.h"
#include "src/data/data_loader.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"

namespace gpt2 {

// Where training stands between two steps.
struct TrainProgress {
  int64_t step = 0;             // steps completed = the next step's index
  int64_t optimizer_steps = 0;  // AdamW updates applied
  double lr = 0.0;              // of the last completed step
  int64_t tokens_seen = 0;      // training tokens consumed
  LoaderCursor cursor;          // the train loader's (the same on every rank)
  int64_t train_tokens = 0;     // in the training data; 0: not recorded
  // Restored: the saved config's fields this run's config gives other values
  // ("optim.lr 0.001 -> 0.003"), for the log.
  std::vector<std::string> config_changes;
};

struct SaveReport {
  std::string path;
  int64_t bytes = 0;
  double seconds = 0.0;
};

// Writes <run_dir>/checkpoints/step_<step>.ckpt (rank 0), then points `latest`
// at it and keeps the newest `keep_last`. Collective: every rank must call it.
absl::StatusOr<SaveReport> SaveTrainingCheckpoint(
    const std::string& run_dir, const config::RunConfig& config,
    const TrainProgress& progress, const Gpt2Model& model,
    const AdamWOptimizer& optimizer, Backend* backend, Communicator* comm);

// Loads params, this rank's optimizer shard and the progress from `path`. The
// model shape and train.total_batch_tokens must match the run's.
absl::StatusOr<TrainProgress> RestoreTrainingCheckpoint(
    const std::string& path, const config::RunConfig& config, Gpt2Model* model,
    AdamWOptimizer* optimizer, Backend* backend);

// Starts from the weights of `path`: one of our checkpoints (only its params
// are used) or an llm.c model file. The optimizer starts fresh.
absl::Status InitWeightsFrom(const std::string& path, Gpt2Model* model);

}  // namespace gpt2

#endif  // GPT2_TRAIN_CHECKPOINTING_H_
