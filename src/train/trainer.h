// The training loop: builds the backend, model, optimizer and loaders from a
// validated config, then runs micro-steps with gradient accumulation, clipping,
// the lr schedule, periodic val loss, and rank 0's logs.
#ifndef GPT2_TRAIN_TRAINER_H_
#define GPT2_TRAIN_TRAINER_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/backend/select.h"
#include "src/train/config.h"

namespace gpt2 {

class Communicator;

struct TrainOptions {
  std::string config_path;  // for the header
  std::string data_dir;
  // The ranks' communicator; null means a world of one.
  Communicator* comm = nullptr;
  // Makes the communicator for GPU ranks' device tensors (NCCL); CUDA builds
  // set it.
  std::unique_ptr<Communicator> (*make_device_comm)(Backend* backend) = nullptr;
  // Picks the backend; null means ChooseCpuBackend. Tools built with CUDA pass
  // ChooseCudaOrCpuBackend.
  BackendChooser choose_backend = nullptr;
  // Continue a run: "latest" (the run folder's newest checkpoint) or a
  // checkpoint path.
  std::string resume;
  // Start from these weights (our checkpoint or an llm.c model file), optimizer
  // fresh.
  std::string init_from;
  // Return the final parameters in TrainResult (tests compare runs with them).
  bool keep_final_params = false;
  // Only measure: one val pass (log.val_batches, at most the whole val set) on
  // the weights as loaded (resume / init_from / the init); no training, no
  // checkpoint. The result's val_loss holds it.
  bool eval_only = false;
  // Only plan: load the config and data, choose the device, print the batch
  // arithmetic and the memory the run needs per rank against what is free
  // (the check every run makes), and return; nothing allocated, nothing
  // written.
  bool plan_only = false;
  // When the process started (the tool's main, before MPI and the config):
  // times "after process start" count from it. Unset: from the call to Train.
  std::optional<std::chrono::steady_clock::time_point> process_start;
};

struct TrainResult {
  int64_t steps_run = 0;
  double final_loss = 0.0;
  std::vector<double> losses;  // per step
  int64_t skipped_steps =
      0;  // non-finite steps skipped (train.on_nan: SKIP_STEP)
  std::string run_dir;
  std::vector<double> final_params;  // with TrainOptions::keep_final_params
  // The stop signal (SIGINT, SIGTERM) that ended the run early, saved, on any
  // rank; 0 where the run was not interrupted. See src/core/stop_signal.h.
  int interrupted_by = 0;
  // The val loss of an eval_only run, or of a run's final weights (where it
  // logs val losses and was not stopped by a signal or a non-finite loss).
  std::optional<double> val_loss;
  // HellaSwag acc_norm of the final weights (or of an eval_only run's) with
  // log.hellaswag_file.
  std::optional<double> hellaswag;
};

// How a failed Train reached its error. kAgreed: every rank returned an error
// after agreeing to stop (e.g. the memory check), so none is left waiting in
// a collective and the job need not be aborted; kAgreedEcho: the same, on a
// rank whose own check passed (it need not print another rank's verdict;
// rank 0 still should). kLocal: any other error, possibly on this rank alone.
enum class ErrorScope { kLocal, kAgreed, kAgreedEcho };
ErrorScope ScopeOf(const absl::Status& status);

absl::StatusOr<TrainResult> Train(const LoadedConfig& loaded,
                                  const TrainOptions& options);

// A multi-rank job's start-up agreement, made by every rank before Train:
// the config loaded on every rank, and the same on every rank (the same file
// and --sets), with the same `run_flags` (--resume, --eval, ...). Ranks that
// differ would wait forever in a collective (another max_steps, model or
// zero_stage) or train replicas that drift apart (another lr, seed or
// batch). Returns OK everywhere, or an error everywhere (kAgreed: the job
// need not be aborted): a rank that failed to load gives its own error; a
// rank whose config differs from rank 0's names the fields; the others echo
// (rank 0 says what happened on the others). A world of one: `loaded`'s
// status.
absl::Status AgreeOnConfig(Communicator& comm,
                           const absl::StatusOr<LoadedConfig>& loaded,
                           const std::string& run_flags);

}  // namespace gpt2

#endif  // GPT2_TRAIN_TRAINER_H_
