#include "src/train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "src/backend/backend.h"
#include "src/backend/select.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/run_files.h"
#include "src/comm/communicator.h"
#include "src/comm/host_staged_communicator.h"
#include "src/core/build_info.h"
#include "src/core/crc32c.h"
#include "src/core/env.h"
#include "src/core/files.h"
#include "src/core/process_clock.h"
#include "src/core/stop_signal.h"
#include "src/core/thousands.h"
#include "src/data/data_loader.h"
#include "src/data/dataset.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"
#include "src/optim/lr_schedule.h"
#include "src/optim/shard_layout.h"
#include "src/train/checkpointing.h"
#include "src/train/evaluator.h"
#include "src/train/final_samples.h"
#include "src/train/hellaswag_eval.h"
#include "src/train/loss_target.h"
#include "src/train/memory_plan.h"
#include "src/train/run_log.h"
#include "src/train/step_graph.h"
#include "src/train/step_reader.h"
#include "src/train/test_hooks.h"
#include "src/train/train_step.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

// The run's learning-rate schedule, from its config.
LrSchedule ScheduleOf(const config::RunConfig& cfg) {
  return LrSchedule{cfg.optim().lr(), cfg.schedule().min_lr(),
                    cfg.schedule().warmup_steps(), cfg.train().max_steps(),
                    cfg.schedule().decay_steps()};
}

// Why the loop stops early, agreed over ranks (Communicator::AgreeMax: the
// largest code wins, so a signal on any rank beats the time budget).
constexpr int kStopForTime = 1;
constexpr int kStopForSignal = 1000;  // + the signal number

// What to do with a saved run, as commands to copy: its samples, the web
// demo, more steps.
std::string NextCommands(const config::RunConfig& cfg,
                         const std::string& run_dir) {
  // The config's first prompt where the shell takes it as it is in quotes.
  std::string prompt = "ROMEO:";
  if (!cfg.log().sample_prompts().empty()) {
    const std::string& first = cfg.log().sample_prompts(0);
    if (!first.empty() && first.find_first_of("\"\\$`\n") == std::string::npos)
      prompt = first;
  }
  return absl::StrFormat(
      "next: %s --checkpoint %s --prompt \"%s\"   (samples)\n"
      "      %s --checkpoint %s   (the web demo, "
      "http://127.0.0.1:8080)\n"
      "      the same command with --resume latest --set train.max_steps=%d   "
      "(more steps)",
      SiblingTool("gpt2_sample"), run_dir, prompt, SiblingTool("gpt2_serve"),
      run_dir, 2 * cfg.train().max_steps());
}

// Once the first step is queued: where its host time went (the calls timed
// since TimeHostCalls(true)), the kernel versions chosen by timing during it,
// the libraries opened, and the device memory in use against the plan (what
// the plan leaves out: the CUDA context, library workspaces, op scratch).
std::vector<std::string> FirstStepReport(Backend* backend,
                                         const MemoryPlan& memory_plan) {
  std::vector<std::string> lines;
  backend->TimeHostCalls(false);
  const std::vector<OpTiming> host_calls = backend->TakeHostCallTimes();
  if (!host_calls.empty()) {
    lines.push_back(FormatHostCallTimes("first step", host_calls));
  }
  if (const std::string tuned = backend->TunedKernels(); !tuned.empty()) {
    lines.push_back("kernels chosen by timing: " + tuned);
  }
  if (const std::string libraries = backend->LibraryNote();
      !libraries.empty()) {
    lines.push_back(libraries);
  }
  std::optional<Backend::MemoryInfo> memory;
  if (backend->name() != "cpu") memory = backend->DeviceMemory();
  if (memory.has_value()) {
    lines.push_back(
        absl::StrCat("device memory after the first step: ",
                     FormatBytes(memory->total_bytes - memory->free_bytes),
                     " in use of ", FormatBytes(memory->total_bytes),
                     " (the plan: ", FormatBytes(memory_plan.total()), ")"));
  }
  return lines;
}

constexpr char kScopePayload[] = "gpt2/error_scope";

// An error every rank reaches together (the same flags and files, or a verdict
// the ranks agreed on), so none waits in a collective and the job need not be
// aborted: `reports` on the rank(s) that print it (rank 0, or the rank whose
// own check failed), the others echo it (ErrorScope).
absl::Status Agreed(absl::Status status, bool reports) {
  status.SetPayload(kScopePayload, absl::Cord(reports ? "agreed" : "echo"));
  return status;
}

// Each rank's share of every batch.
LoaderLayout LayoutFor(const RunPlan& plan, const Communicator& comm) {
  LoaderLayout layout;
  layout.micro_batch_size = plan.micro_batch_size;
  layout.seq_len = plan.seq_len;
  layout.rank = comm.rank();
  layout.world_size = comm.world_size();
  layout.grad_accum_steps = plan.grad_accum_steps;
  return layout;
}

// gpt2_ddp --plan: what the run would be (model, batch arithmetic, memory per
// rank and the check against the device) on rank 0, then the first reason it
// could not start (the memory check, the data), if any.
// The val set's loader (none without a val set), as the run and --plan make
// it: one micro-step a batch; an error naming the val set where its shards
// cannot give one batch, or where log.val_every_steps asks for passes and
// there is no val set.
absl::StatusOr<std::optional<DataLoader>> ValLoaderFor(
    std::vector<TokenShard> val, LoaderLayout layout,
    const config::RunConfig& cfg, const std::string& config_path) {
  if (val.empty()) {
    if (cfg.log().val_every_steps() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path,
          ": log.val_every_steps is set but the data has no val set "
          "(data.val_shards or data.val_tokens)"));
    }
    return std::optional<DataLoader>();
  }
  layout.grad_accum_steps = 1;
  absl::StatusOr<DataLoader> loader =
      DataLoader::Create(std::move(val), layout);
  if (!loader.ok()) {
    return absl::Status(
        loader.status().code(),
        absl::StrCat("the val set: ", loader.status().message()));
  }
  return std::optional<DataLoader>(std::move(*loader));
}

absl::StatusOr<TrainResult> PrintPlan(const LoadedConfig& loaded,
                                      const TrainOptions& options,
                                      const std::string& device, DType dtype,
                                      const Communicator& comm,
                                      const MemoryPlan& memory,
                                      const absl::StatusOr<std::string>& fit,
                                      absl::StatusOr<Datasets>& data) {
  const RunPlan& plan = loaded.plan;
  const ModelShape& s = plan.shape;
  std::string epoch;
  absl::Status data_fits = data.status();
  if (data.ok()) {
    // The loader's own checks too (a shard shorter than one step), as the
    // run makes them: --plan passed what the run then refused.
    absl::StatusOr<DataLoader> loader =
        DataLoader::Create(std::move(data->train), LayoutFor(plan, comm));
    if (loader.ok()) {
      epoch = absl::StrCat("; 1 epoch = ", loader->steps_per_epoch(), " steps");
    } else {
      data_fits = loader.status();
    }
    if (data_fits.ok()) {
      data_fits = ValLoaderFor(std::move(data->val), LayoutFor(plan, comm),
                               loaded.config, options.config_path)
                      .status();
    }
  }
  if (comm.rank() == 0) {
    absl::PrintF(
        "plan of %s\n"
        "model: L=%d NH=%d C=%d maxT=%d V=%d Vp=%d, %s parameters; %s on %s\n"
        "batch: %d x %d tokens per micro-step x %d rank(s) x %d accumulation "
        "step(s) = %s tokens per step%s; train.max_steps %d\n"
        "schedule: %s\n"
        "memory per rank: %s\n%s\n",
        options.config_path, s.num_layers, s.num_heads, s.channels,
        s.max_seq_len, s.vocab_size, s.padded_vocab_size,
        Thousands(TotalParams(BuildParamList(s))), DTypeName(dtype), device,
        plan.micro_batch_size, plan.seq_len, comm.world_size(),
        plan.grad_accum_steps, Thousands(plan.total_batch_tokens), epoch,
        loaded.config.train().max_steps(), ScheduleOf(loaded.config).Describe(),
        DescribeMemoryPlan(memory),
        fit.ok()
            ? *fit
            : absl::StrCat("memory check: FAILS: ", fit.status().message()));
    if (!data_fits.ok()) absl::PrintF("data: FAILS: %s\n", data_fits.message());
  }
  if (!fit.ok() || !data_fits.ok()) {
    // Every rank printed nothing or the same plan; none is in a collective.
    return Agreed(absl::FailedPreconditionError(
                      "the run could not start (the plan above says why)"),
                  comm.rank() == 0);
  }
  return TrainResult{};
}

// The memory check before anything of the run is allocated: every rank
// compares its plan (times the ranks that share its memory: all of a node's
// CPU ranks, or the ranks on one GPU) with the free memory its backend
// reports, and the ranks agree, so either all go on or all stop with the
// reason. GPT2_TEST_FREE_MEMORY=BYTES (or RANK:BYTES, that rank only) stands
// in for the free memory (tests).
// Returns the line saying how it fits.
absl::StatusOr<std::string> CheckMemory(const MemoryPlanInputs& inputs,
                                        const MemoryPlan& plan,
                                        int64_t sequences_per_step,
                                        const Backend& backend,
                                        const BackendChoice& choice,
                                        Communicator& comm) {
  std::optional<Backend::MemoryInfo> memory = backend.DeviceMemory();
  if (const char* fake = std::getenv("GPT2_TEST_FREE_MEMORY")) {
    int rank = -1;
    long long bytes = 0;
    if (std::sscanf(fake, "%d:%lld", &rank, &bytes) != 2) {
      rank = -1;
      bytes = std::atoll(fake);
    }
    if (rank < 0 || rank == comm.rank()) {
      memory = Backend::MemoryInfo{bytes, bytes,
                                   memory.has_value() ? memory->device : ""};
    }
  }
  const bool gpu = backend.name() != "cpu";
  const int sharing =
      gpu ? (comm.local_size() + std::max(choice.devices_on_node, 1) - 1) /
                std::max(choice.devices_on_node, 1)
          : comm.local_size();
  const std::string where = memory.has_value() && !memory->device.empty()
                                ? memory->device
                            : gpu ? "the GPU"
                                  : "the host";
  std::optional<std::string> why;
  if (memory.has_value()) {
    why = WhyItDoesNotFit(inputs, sequences_per_step, sharing,
                          memory->free_bytes, where);
  }
  const int refuse = why.has_value() ? 1 : 0;
  if ((comm.world_size() > 1 ? comm.AgreeMax(refuse) : refuse) != 0) {
    return Agreed(
        absl::ResourceExhaustedError(
            why.has_value() ? *why
                            : "another rank's device lacks the memory for this "
                              "run (see that rank's message)"),
        why.has_value());
  }
  const int64_t need = plan.total() * sharing;
  if (!memory.has_value()) {
    return absl::StrCat("memory check: ", FormatBytes(need), " needed on ",
                        where, "; its free memory is unknown");
  }
  const double share =
      static_cast<double>(need) /
      static_cast<double>(std::max<int64_t>(memory->free_bytes, 1));
  return absl::StrFormat(
      "memory check: %s needed of %s free on %s (%s), before op scratch and "
      "library workspaces%s",
      FormatBytes(need), FormatBytes(memory->free_bytes), where,
      share < 0.01 ? "<1%" : absl::StrFormat("%.0f%%", 100.0 * share),
      share > 0.95 ? " (tight: those may not fit)" : "");
}

// Whether every element of `t` is finite, read back a slice at a time (on a
// run's non-finite stop only; a sum of squares overflowed on finite weights
// past ~1e19 and called them not finite).
bool AllFinite(Backend* backend, Tensor t) {
  constexpr int64_t kSlice = int64_t{1} << 22;
  std::vector<char> bytes;
  for (int64_t at = 0; at < t.numel; at += kSlice) {
    const Tensor part = t.Slice(at, std::min(kSlice, t.numel - at));
    bytes.resize(part.bytes());
    backend->Download(bytes.data(), part);
    for (double v : DecodeHost(bytes, t.dtype)) {
      if (!std::isfinite(v)) return false;
    }
  }
  return true;
}

// Whether `bytes` is the same on every rank (a 31-bit CRC each, its largest
// and smallest over the ranks compared: every rank makes both calls).
bool SameOnEveryRank(Communicator& comm, const std::string& bytes) {
  const int digest =
      static_cast<int>(Crc32c(bytes.data(), bytes.size()) & 0x7fffffffu);
  return comm.AgreeMax(digest) == -comm.AgreeMax(-digest);
}

}  // namespace

absl::Status AgreeOnConfig(Communicator& comm,
                           const absl::StatusOr<LoadedConfig>& loaded,
                           const std::string& run_flags) {
  if (comm.world_size() == 1) return loaded.status();
  const bool rank0 = comm.rank() == 0;
  // Loaded everywhere? (One rank that could not read the file returned while
  // the others waited in the memory check's collective: a hang.)
  const bool any_failed = comm.AgreeMax(loaded.ok() ? 0 : 1) != 0;
  if (any_failed) {
    const bool all_failed = comm.AgreeMax(loaded.ok() ? 1 : 0) == 0;
    if (all_failed) {
      // The same verdict everywhere: rank 0 says it; different ones: each
      // rank says its own.
      const bool same =
          SameOnEveryRank(comm, std::string(loaded.status().message()));
      return Agreed(loaded.status(), rank0 || !same);
    }
    if (!loaded.ok()) return Agreed(loaded.status(), true);
    return Agreed(absl::FailedPreconditionError(
                      "another rank could not load the config (its message "
                      "says why): every rank must read the same config file, "
                      "a path each rank can open"),
                  rank0);
  }
  // The same everywhere? A digest first; on a difference, rank 0's config and
  // flags to every rank, which name what differs.
  // The flags (no NUL in them), a NUL, then the config's bytes.
  std::string config_bytes;
  loaded->config.SerializeToString(&config_bytes);
  const std::string identity =
      absl::StrCat(run_flags, std::string(1, '\0'), config_bytes);
  if (SameOnEveryRank(comm, identity)) return absl::OkStatus();
  const int bytes =
      comm.AgreeMax(rank0 ? static_cast<int>(identity.size()) : 0);
  std::vector<int32_t> words((bytes + 3) / 4, 0);
  if (rank0) std::memcpy(words.data(), identity.data(), identity.size());
  comm.Broadcast(
      Tensor{words.data(), DType::kI32, static_cast<int64_t>(words.size())}, 0);
  const std::string theirs(reinterpret_cast<const char*>(words.data()), bytes);
  if (theirs == identity) {
    return Agreed(absl::FailedPreconditionError(
                      "the ranks do not all run the same config: every rank "
                      "must run the same config file, --set and run flags "
                      "(the differing ranks' messages say what differs)"),
                  rank0);
  }
  const size_t split = theirs.find('\0');
  config::RunConfig rank0_config;
  std::vector<std::string> differences;
  if (split != std::string::npos &&
      rank0_config.ParseFromString(theirs.substr(split + 1))) {
    differences = ConfigChanges(rank0_config, loaded->config);
    if (theirs.substr(0, split) != run_flags) {
      differences.push_back(absl::StrCat("run flags '", run_flags,
                                         "' (rank 0: '",
                                         theirs.substr(0, split), "')"));
    }
  }
  return Agreed(
      absl::FailedPreconditionError(absl::StrCat(
          "this rank's config is not rank 0's",
          differences.empty()
              ? ""
              : absl::StrCat(" (rank 0's -> this rank's: ",
                             absl::StrJoin(differences, "; "), ")"),
          ": every rank must run the same config file and --set (another "
          "copy of the file on this node? a launch whose parts differ?)")),
      true);
}

ErrorScope ScopeOf(const absl::Status& status) {
  const auto scope = status.GetPayload(kScopePayload);
  if (!scope.has_value()) return ErrorScope::kLocal;
  return *scope == "echo" ? ErrorScope::kAgreedEcho : ErrorScope::kAgreed;
}

namespace {

// One run of gpt2_ddp (training, --eval or --plan), from its loaded config to
// its result. Run() takes the phases in order: the set-up (backend,
// communicators, memory, data, model, optimizer, log), the header, then the
// val pass of --eval, or the loop and the end of the run. What the set-up
// builds is held in members, declared in the order it is built, so that it is
// torn down in reverse (the backend last). `log_path` is set to train.log's
// path once it is open.
class TrainingRun {
 public:
  TrainingRun(const LoadedConfig& loaded, const TrainOptions& options,
              std::string* log_path)
      : loaded_(loaded),
        cfg_(loaded.config),
        plan_(loaded.plan),
        options_(options),
        log_path_(log_path),
        process_start_(options.process_start.value_or(Clock::now())),
        phase_start_(process_start_) {}
  ~TrainingRun() {
    if (own_shard_buffer_ && shard_grads_.data != nullptr) {
      backend_->Free(shard_grads_);
    }
  }
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  absl::StatusOr<TrainResult> Run();

 private:
  // The set-up, in Run()'s order. A phase that returns a result ends the run
  // there without error (--plan; a resumed run with nothing left to train).
  absl::Status ChooseBackend();
  absl::Status ChooseDeviceComm();
  void LayOutShards();
  absl::StatusOr<std::optional<TrainResult>> CheckMemoryAndLoadData();
  absl::StatusOr<std::optional<TrainResult>> MakeLoadersAndFindResume();
  void BuildModel();
  absl::Status BuildOptimizer();
  absl::Status OpenLog();
  void LogHeader();
  void MakeLoopParts();
  void LogStartingPoint();
  void LogStartUp();

  absl::StatusOr<TrainResult> EvalOnly();
  void Loop();
  // Whether the loop stops after `step`: the time budget or a stop signal,
  // agreed over ranks.
  bool StopAfter(int64_t step);
  // After the loop: the final val pass, the save, what the run's end says,
  // HellaSwag, the samples.
  absl::StatusOr<TrainResult> Finish();

  // The start-up phase `name` ends now (for the "start-up:" line: the host's
  // seconds from the previous mark; device work queued in a phase may finish
  // in a later one).
  void EndPhase(const char* name);
  absl::Status Save(int64_t steps_done, double lr);
  double EvaluateHellaSwag(int64_t step);
  // Reads and logs the step queued before, if any.
  void FinishPending() { reader_->Finish(&*log_, &result_, &stop_); }

  const LoadedConfig& loaded_;
  const config::RunConfig& cfg_;
  const RunPlan& plan_;
  const TrainOptions& options_;
  std::string* log_path_;
  const Clock::time_point process_start_;
  std::vector<std::pair<const char*, double>> startup_phases_;
  Clock::time_point phase_start_;

  // Ranks and the backend.
  std::unique_ptr<Communicator> own_comm_;
  Communicator* comm_ = nullptr;
  bool rank0_ = false;
  int world_ = 1;
  BackendChoice choice_;
  Backend* backend_ = nullptr;
  // Why there is no GPU, where --plan plans a CUDA run without one (the CPU
  // backend stands in); empty otherwise.
  std::string no_gpu_;
  // The init's draw on the host, beside the rest of start-up.
  std::future<std::unique_ptr<char[]>> drawn_;
  // Training collectives run on the backend's memory: MPI for CPU ranks, NCCL
  // for GPU ranks. Host buffers (checkpoint gathers) always go over comm_.
  std::unique_ptr<Communicator> device_comm_;
  Communicator* dcomm_ = nullptr;

  // The batch and the gradient shards.
  int B_ = 0, T_ = 0, accum_ = 1;
  bool zero1_ = false;
  ShardLayout shard_, optimizer_shard_;
  bool reduce_per_layer_ = false;
  bool own_shard_buffer_ = false;

  // Memory, data and evaluations.
  MemoryPlanInputs memory_inputs_;
  MemoryPlan memory_plan_;
  absl::StatusOr<std::string> memory_fit_;
  std::string data_description_;
  std::vector<TokenShard> train_shards_, val_shards_;
  std::optional<FinalSamples> final_samples_;
  std::optional<HellaSwagEval> hellaswag_;
  std::optional<DataLoader> train_loader_;
  std::optional<DataLoader> val_loader_;
  int val_batches_ = 0;  // a val pass's batches
  std::string run_dir_;
  std::string resume_path_;
  std::string earlier_run_;  // a fresh run's folder's latest checkpoint

  // The model, its optimizer, the log.
  std::optional<Gpt2Model> model_;
  AdamWHyper hyper_;
  std::optional<AdamWOptimizer> optimizer_;
  bool graphs_asked_ = false, train_graphs_ = false;
  bool updates_beside_allowed_ = false;
  TrainProgress progress_;
  std::optional<RunLog> log_;
  Tensor shard_grads_;
  std::optional<LrSchedule> schedule_;

  // The loop.
  std::optional<StepGraph> step_graph_;  // GPT2_TRAIN_GRAPHS=1
  std::optional<TrainStep> train_step_;
  std::optional<Evaluator> evaluator_;
  TrainResult result_;
  int64_t max_steps_ = 0;
  // AdamW's bias-correction step. A non-finite step's update is skipped on
  // the device (the host learns of it a step later) but still counted here.
  int64_t updates_applied_ = 0;
  int64_t save_every_ = 0;
  bool interrupt_saves_ = false;
  int64_t last_saved_ = -1;
  double last_lr_ = 0.0;
  bool stop_ = false;
  std::optional<LossTarget> loss_target_;
  std::optional<StepReader> reader_;
};

void TrainingRun::EndPhase(const char* name) {
  const Clock::time_point now = Clock::now();
  startup_phases_.emplace_back(
      name, std::chrono::duration<double>(now - phase_start_).count());
  phase_start_ = now;
}

absl::StatusOr<TrainResult> TrainingRun::Run() {
  EndPhase("launch");
  comm_ = options_.comm;
  if (comm_ == nullptr) {
    own_comm_ = MakeSingleRankCommunicator();
    comm_ = own_comm_.get();
  }
  rank0_ = comm_->rank() == 0;
  world_ = comm_->world_size();
  if (!options_.resume.empty() && !options_.init_from.empty()) {
    return Agreed(
        absl::InvalidArgumentError(
            "--resume and --init_from both given: --resume continues a run "
            "(its weights, optimizer state and place in the data), "
            "--init_from starts a new run from weights alone; give one"),
        rank0_);
  }
  GPT2_RETURN_IF_ERROR(ChooseBackend());
  GPT2_RETURN_IF_ERROR(ChooseDeviceComm());
  LayOutShards();
  GPT2_ASSIGN_OR_RETURN(std::optional<TrainResult> early,
                        CheckMemoryAndLoadData());
  if (early) return *std::move(early);
  EndPhase("data");
  GPT2_ASSIGN_OR_RETURN(early, MakeLoadersAndFindResume());
  if (early) return *std::move(early);
  BuildModel();
  EndPhase("model");
  GPT2_RETURN_IF_ERROR(BuildOptimizer());
  EndPhase("optimizer");
  GPT2_RETURN_IF_ERROR(OpenLog());
  LogHeader();
  MakeLoopParts();
  LogStartingPoint();
  // What comes before the first step (device, init, uploads) counts against
  // time-to-target runs: said.
  EndPhase("other");
  LogStartUp();
  if (options_.eval_only) return EvalOnly();
  Loop();
  return Finish();
}

absl::Status TrainingRun::ChooseBackend() {
  const BackendChooser choose = options_.choose_backend != nullptr
                                    ? options_.choose_backend
                                    : &ChooseCpuBackend;
  absl::StatusOr<BackendChoice> chosen =
      choose(cfg_.train(), comm_->local_rank());
  // --plan of a CUDA run on a machine without a usable GPU (planning one on a
  // laptop): the plan in the CUDA run's precision, with the CPU backend
  // standing in for what allocates nothing, and no memory check (there is no
  // GPU to check against). Any other run stops here.
  if (!chosen.ok() && options_.plan_only &&
      cfg_.train().device() == config::CUDA &&
      absl::IsFailedPrecondition(chosen.status())) {
    // Its reason alone, without the advice to fall back to the CPU.
    no_gpu_ = std::string(chosen.status().message());
    if (const size_t at = no_gpu_.find("usable: "); at != std::string::npos)
      no_gpu_.erase(0, at + 8);
    if (const size_t at = no_gpu_.find(" (use device: AUTO");
        at != std::string::npos)
      no_gpu_.erase(at);
    config::TrainConfig stand_in = cfg_.train();
    stand_in.set_device(config::CPU);
    stand_in.set_precision(config::FP32);
    chosen = ChooseCpuBackend(stand_in, comm_->local_rank());
    if (chosen.ok()) {
      chosen->dtype =
          cfg_.train().precision() == config::FP32 ? DType::kF32 : DType::kBF16;
    }
  }
  GPT2_RETURN_IF_ERROR(chosen.status());
  choice_ = *std::move(chosen);
  backend_ = choice_.backend.get();
  EndPhase("backend");
  if (cfg_.optim().bf16_state() && choice_.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.config_path,
                     ": optim.bf16_state keeps the optimizer state in "
                     "bf16 beside bf16 params, but this run's params are ",
                     DTypeName(choice_.dtype),
                     " (it needs train.precision BF16, on the CUDA backend)"));
  }
  // The init's draw on the host (124M normals: ~0.5 s on 8 threads) runs
  // beside the rest of start-up (data, memory plan, allocations); a resumed
  // run or one --init_from a file loads every weight instead, so draws none.
  if (!options_.plan_only && options_.resume.empty() &&
      options_.init_from.empty()) {
    drawn_ =
        std::async(std::launch::async, &Gpt2Model::DrawParams, plan_.shape,
                   choice_.dtype, static_cast<uint64_t>(cfg_.train().seed()));
  }
  return absl::OkStatus();
}

absl::Status TrainingRun::ChooseDeviceComm() {
  dcomm_ = comm_;
  // A world of one needs no collectives, but asking for NCCL explicitly still
  // gets it (the loss is then averaged through NCCL): a check of that path on
  // one GPU.
  const bool nccl_asked = cfg_.distributed().comm() == config::BACKEND_NCCL;
  if ((world_ > 1 || nccl_asked) && backend_->name() != "cpu") {
    // NCCL refuses two ranks on one GPU ("Duplicate GPU detected",
    // NVIDIA/nccl#1241), so ranks that share GPUs reduce over MPI through host
    // copies.
    const bool shared_gpus = comm_->local_size() > choice_.devices_on_node;
    const config::Backend wanted = cfg_.distributed().comm();
    if (wanted == config::BACKEND_NCCL && shared_gpus) {
      return absl::InvalidArgumentError(absl::StrCat(
          options_.config_path, ": distributed.comm is BACKEND_NCCL, but ",
          comm_->local_size(), " ranks share ", choice_.devices_on_node,
          " GPU(s) on this node and NCCL refuses two ranks on one GPU; use "
          "BACKEND_AUTO or BACKEND_MPI"));
    }
    if (wanted == config::BACKEND_MPI || shared_gpus ||
        options_.make_device_comm == nullptr) {
      device_comm_ = MakeHostStagedCommunicator(comm_, backend_);
      if (shared_gpus && wanted != config::BACKEND_MPI) {
        choice_.note = absl::StrCat(
            choice_.note, choice_.note.empty() ? "" : "; ", comm_->local_size(),
            " ranks share ", choice_.devices_on_node,
            " GPU(s): gradients go over MPI through host memory");
      }
    } else {
      device_comm_ = options_.make_device_comm(backend_);
    }
    dcomm_ = device_comm_.get();
  }
  if (nccl_asked && backend_->name() == "cpu" && no_gpu_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options_.config_path,
        ": distributed.comm is BACKEND_NCCL, but these ranks run on the CPU "
        "backend; "
        "CPU ranks communicate over MPI (use BACKEND_AUTO or BACKEND_MPI)"));
  }
  return absl::OkStatus();
}

void TrainingRun::LayOutShards() {
  B_ = plan_.micro_batch_size;
  T_ = plan_.seq_len;
  accum_ = plan_.grad_accum_steps;
  zero1_ = cfg_.distributed().zero_stage() == 1 && world_ > 1;
  const int64_t num_params = TotalParams(BuildParamList(plan_.shape));
  // Gradients are always reduced over the same padded shards: a
  // reduce-scatter, then (without ZeRO-1) an all-gather. Each element is
  // summed once, in one place, so every rank holds bit-identical gradients
  // (MPI_Allreduce does not promise that for every world size) and ZeRO-0 and
  // ZeRO-1 see the same numbers.
  shard_ = world_ > 1 ? ShardLayout::Make(num_params, comm_->rank(), world_)
                      : ShardLayout::Whole(num_params);
  optimizer_shard_ = zero1_ ? shard_ : ShardLayout::Whole(num_params);
  // Layer by layer during the backward (each finished region reduced to the
  // ranks whose shard holds it, in place), or one reduce-scatter after it.
  // Unset: on for NCCL (asynchronous: the overlap) and for CPU ranks (MPI
  // blocks, but each layer's gradients are reduced while still in cache:
  // gpt2_bench --comm measured 44-66% less exposed communication on 2 CPU
  // ranks), off where GPU ranks share a GPU over MPI (a host round trip per
  // region).
  reduce_per_layer_ =
      world_ > 1 && (cfg_.distributed().has_reduce_during_backward()
                         ? cfg_.distributed().reduce_during_backward()
                         : dcomm_->asynchronous() || backend_->name() == "cpu");
  // Each rank receives its shard of the averaged gradients here: its own block
  // of the gradient buffer when reducing per layer, else a separate buffer.
  own_shard_buffer_ = world_ > 1 && !reduce_per_layer_;
}

absl::StatusOr<std::optional<TrainResult>>
TrainingRun::CheckMemoryAndLoadData() {
  // Memory: planned, checked against the device, then (later) allocated.
  memory_inputs_.shape = plan_.shape;
  memory_inputs_.dtype = choice_.dtype;
  memory_inputs_.micro_batch = B_;
  memory_inputs_.seq_len = T_;
  memory_inputs_.buffer_elems = shard_.padded_total();
  memory_inputs_.optimizer_elems = optimizer_shard_.shard_size;
  memory_inputs_.shard_grad_elems = own_shard_buffer_ ? shard_.shard_size : 0;
  memory_inputs_.recompute_gelu = cfg_.train().recompute_gelu();
  memory_inputs_.recompute_layernorm = cfg_.train().recompute_layernorm();
  memory_inputs_.residual_fp32 = cfg_.train().residual_fp32();
  memory_inputs_.bf16_state = cfg_.optim().bf16_state();
  memory_plan_ = PlanMemory(memory_inputs_);
  memory_fit_ =
      no_gpu_.empty()
          ? CheckMemory(memory_inputs_, memory_plan_, int64_t{B_} * accum_,
                        *backend_, choice_, *comm_)
          : absl::StrCat("memory check: not made, no GPU here (", no_gpu_,
                         "); a GPU needs the above, and the CUDA context, "
                         "cuBLASLt's workspace and op scratch");
  if (!memory_fit_.ok() && !options_.plan_only) return memory_fit_.status();

  absl::StatusOr<Datasets> loaded_data =
      LoadDatasets(cfg_.data(), options_.data_dir, plan_.shape.vocab_size);
  if (options_.plan_only) {
    return PrintPlan(loaded_, options_,
                     no_gpu_.empty() ? std::string(backend_->name()) : "cuda",
                     choice_.dtype, *comm_, memory_plan_, memory_fit_,
                     loaded_data);
  }
  GPT2_RETURN_IF_ERROR(loaded_data.status());
  train_shards_ = std::move(loaded_data->train);
  val_shards_ = std::move(loaded_data->val);
  data_description_ = std::move(loaded_data->description);
  GPT2_ASSIGN_OR_RETURN(
      FinalSamples samples,
      FinalSamples::Prepare(cfg_.log(), options_.data_dir, plan_.shape,
                            cfg_.train().seed()));
  final_samples_.emplace(std::move(samples));
  // HellaSwag during training: read and tokenized now, so a bad file stops
  // the run before it trains.
  if (!cfg_.log().hellaswag_file().empty()) {
    GPT2_ASSIGN_OR_RETURN(const Tokenizer tokenizer,
                          Tokenizer::LoadFromDataDir(options_.data_dir));
    GPT2_ASSIGN_OR_RETURN(
        HellaSwagEval loaded_eval,
        HellaSwagEval::Load(
            DataPath(options_.data_dir, cfg_.log().hellaswag_file()), tokenizer,
            cfg_.log().hellaswag_examples(), plan_.seq_len,
            plan_.shape.vocab_size));
    if (loaded_eval.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(cfg_.log().hellaswag_file(),
                       ": no example fits train.seq_len ", plan_.seq_len));
    }
    hellaswag_.emplace(std::move(loaded_eval));
  }
  return std::nullopt;
}

absl::StatusOr<std::optional<TrainResult>>
TrainingRun::MakeLoadersAndFindResume() {
  const LoaderLayout layout = LayoutFor(plan_, *comm_);
  GPT2_ASSIGN_OR_RETURN(DataLoader train_loader,
                        DataLoader::Create(std::move(train_shards_), layout));
  train_loader_.emplace(std::move(train_loader));
  GPT2_ASSIGN_OR_RETURN(
      val_loader_,
      ValLoaderFor(std::move(val_shards_), layout, cfg_, options_.config_path));
  if (val_loader_) {
    // A val pass reads the val set at most once (more batches than it holds
    // read the same tokens again: a slower pass, no better measure).
    val_batches_ = static_cast<int>(std::min<int64_t>(
        cfg_.log().val_batches(), val_loader_->steps_per_epoch()));
  }

  run_dir_ = cfg_.log().run_dir() + "/" + cfg_.log().run_name();
  if (!options_.resume.empty()) {
    GPT2_ASSIGN_OR_RETURN(resume_path_,
                          ResolveResume(options_.resume, run_dir_));
    // A run already at its last step has nothing to train (a requeued job
    // after the run ended): said, and nothing written, before any set-up (it
    // reported "done: 0 steps ... final loss 0.000000" and left an empty
    // TensorBoard file).
    GPT2_ASSIGN_OR_RETURN(const CheckpointReader reader,
                          CheckpointReader::Open(resume_path_));
    const int64_t at = reader.header().step();
    if (!options_.eval_only && at >= cfg_.train().max_steps()) {
      if (rank0_) {
        std::printf(
            "%s: already at step %lld, and train.max_steps is %lld: nothing "
            "left to train (--set train.max_steps=N with N above %lld goes "
            "on; --eval only measures it)\n",
            resume_path_.c_str(), static_cast<long long>(at),
            static_cast<long long>(cfg_.train().max_steps()),
            static_cast<long long>(at));
        std::fflush(stdout);
      }
      TrainResult nothing;
      nothing.run_dir = run_dir_;
      return nothing;
    }
  }
  // A fresh run in a folder that holds another run's checkpoints: said, so
  // that the two are not mixed unawares (this run's logs start over, its
  // checkpoints go beside the old ones, its event file beside the old).
  if (resume_path_.empty() && !options_.eval_only) {
    if (absl::StatusOr<std::string> latest = ReadLatest(run_dir_); latest.ok())
      earlier_run_ = *latest;
  }
  return std::nullopt;
}

void TrainingRun::BuildModel() {
  model_.emplace(backend_, plan_.shape, choice_.dtype, B_, T_,
                 shard_.padded_total(), cfg_.train().recompute_gelu(),
                 cfg_.train().recompute_layernorm(),
                 cfg_.train().residual_fp32());
  // Every rank draws the same init from the seed; no broadcast is needed.
  // Without a draw the weights are zeros until they are loaded.
  if (drawn_.valid()) {
    model_->UploadDrawn(drawn_.get().get());
  } else {
    backend_->Zero(model_->params());
  }
}

absl::Status TrainingRun::BuildOptimizer() {
  hyper_.beta1 = cfg_.optim().beta1();
  hyper_.beta2 = cfg_.optim().beta2();
  hyper_.eps = cfg_.optim().eps();
  hyper_.weight_decay = cfg_.optim().weight_decay();
  hyper_.grad_clip = cfg_.optim().grad_clip();
  hyper_.bf16_state = cfg_.optim().bf16_state();
  if ((cfg_.train().stochastic_rounding() || hyper_.bf16_state) &&
      choice_.dtype == DType::kBF16) {
    // Any fixed non-zero value; derived from the run's seed.
    hyper_.rounding_seed = (static_cast<uint64_t>(cfg_.train().seed()) << 1) |
                           0x9E3779B97F4A7C15ull;
  }
  optimizer_.emplace(backend_, model_->param_list(), choice_.dtype, hyper_,
                     optimizer_shard_);
  // Updates beside the next forward (GPT2_UPDATE_BESIDE=1 on the CUDA
  // backend): only with no collectives on the device, which would not wait
  // for them.
  // The training step recorded as a graph after its first run and replayed
  // (GPT2_TRAIN_GRAPHS=1 where the backend has graphs): one launch for the
  // forward, backward and norm instead of one per kernel, with the last
  // step's updates beside its forward where those are on (StepGraph). A world
  // of one, without gradient accumulation.
  graphs_asked_ = EnvIs("GPT2_TRAIN_GRAPHS", "1");
  train_graphs_ = graphs_asked_ && backend_->SupportsGraphs() && world_ == 1 &&
                  accum_ == 1 && device_comm_ == nullptr;
  updates_beside_allowed_ = world_ == 1 && device_comm_ == nullptr;
  optimizer_->AllowUpdatesBeside(updates_beside_allowed_);
  if (!options_.init_from.empty()) {
    GPT2_RETURN_IF_ERROR(InitWeightsFrom(options_.init_from, &*model_));
  }
  if (!resume_path_.empty()) {
    GPT2_ASSIGN_OR_RETURN(
        progress_, RestoreTrainingCheckpoint(resume_path_, cfg_, &*model_,
                                             &*optimizer_, backend_));
    GPT2_RETURN_IF_ERROR(train_loader_->SetCursor(progress_.cursor));
  } else {
    optimizer_->InitMasterFromParams(model_->params());
  }
  return absl::OkStatus();
}

absl::Status TrainingRun::OpenLog() {
  // The run's log files are opened (a fresh run's truncated) only now: a run
  // refused before this (an --init_from file that is not one, or of another
  // shape) leaves an earlier run's logs in the folder as they were (it
  // emptied its train.log and metrics.jsonl).
  GPT2_ASSIGN_OR_RETURN(
      RunLog log,
      RunLog::Open(
          run_dir_, rank0_,
          /*append=*/!resume_path_.empty() || options_.eval_only,
          /*tensorboard=*/cfg_.log().tensorboard() && !options_.eval_only));
  log_.emplace(std::move(log));
  if (rank0_) *log_path_ = run_dir_ + "/train.log";
  shard_grads_ =
      own_shard_buffer_ ? backend_->Alloc(choice_.dtype, shard_.shard_size)
      : world_ > 1
          ? model_->padded_grads().Slice(
                int64_t{shard_.rank} * shard_.shard_size, shard_.shard_size)
          : Tensor{};
  schedule_.emplace(ScheduleOf(cfg_));
  return absl::OkStatus();
}

void TrainingRun::LogHeader() {
  RunLog& log = *log_;
  std::string config_text;
  google::protobuf::TextFormat::PrintToString(cfg_, &config_text);
  log.BeginCapture();  // the header, for the event file's Text tab
  log.Line(absl::StrCat("gpt2_ddp | config ", options_.config_path,
                        " | data dir ", options_.data_dir, " | build ",
                        BuildCommit()));
  log.Line(config_text);
  log.Line(absl::StrFormat(
      "backend: %s, %s%s%s, %d thread(s) | world size %d (%s)",
      backend_->name(), DTypeName(choice_.dtype),
      model_->residual_dtype() != choice_.dtype ? " (f32 residual stream)" : "",
      hyper_.bf16_state ? " (optimizer state in bf16: no master weights)" : "",
      omp_get_max_threads(), world_, dcomm_->name()));
  if (!choice_.note.empty()) log.Line(absl::StrCat("note: ", choice_.note));
  for (const std::string& note : loaded_.notes) {
    log.Line(absl::StrCat("note: ", note));
  }
  const ModelShape& s = plan_.shape;
  const std::string kernels =
      backend_->KernelSummary(choice_.dtype, s.channels / s.num_heads);
  if (!kernels.empty()) log.Line(absl::StrCat("kernels: ", kernels));
  if (backend_->UpdatesBeside() && !updates_beside_allowed_) {
    log.Line(absl::StrCat(
        "note: GPT2_UPDATE_BESIDE=1 has no effect here: the optimizer updates "
        "in place, since ",
        world_ > 1 ? "the gradients and weights go over collectives, which "
                     "would not wait for updates beside"
                   : "distributed.comm asks for NCCL, which would not wait "
                     "for updates beside"));
  }
  if (train_graphs_) {
    log.Line(absl::StrCat(
        "train step: recorded as a graph at the second step and replayed "
        "(GPT2_TRAIN_GRAPHS=1)",
        optimizer_->updates_beside()
            ? absl::StrCat(
                  ", each with the last step's updates beside its forward",
                  StepGraph::RowsFirstWanted() ? StepGraph::kRowsFirstNote : "")
            : ""));
  } else if (graphs_asked_) {
    log.Line(absl::StrCat(
        "note: GPT2_TRAIN_GRAPHS=1 has no effect here: ",
        !backend_->SupportsGraphs()
            ? absl::StrCat(backend_->name(), " records no graphs")
        : accum_ > 1 ? "the step accumulates gradients over micro-steps"
                     : "the step runs collectives"));
  }
  log.Line(absl::StrFormat("model: L=%d NH=%d C=%d maxT=%d V=%d Vp=%d",
                           s.num_layers, s.num_heads, s.channels, s.max_seq_len,
                           s.vocab_size, s.padded_vocab_size));
  const ParamGroupCounts groups =
      CountParamGroups(model_->param_list(), s.num_layers);
  log.Line(
      absl::StrCat("num decayed parameter tensors: ", groups.decayed_tensors,
                   ", with ", Thousands(groups.decayed_params), " parameters"));
  log.Line(
      absl::StrCat("num non-decayed parameter tensors: ", groups.other_tensors,
                   ", with ", Thousands(groups.other_params), " parameters"));
  log.Line(absl::StrCat("total parameters: ", Thousands(model_->num_params())));
  log.Line(absl::StrCat("loaded ", data_description_));
  if (hellaswag_) {
    log.Line(absl::StrCat(
        "hellaswag: ", hellaswag_->size(), " examples from ",
        cfg_.log().hellaswag_file(),
        hellaswag_->left_out() > 0
            ? absl::StrCat(" (", hellaswag_->left_out(),
                           " longer than train.seq_len left out)")
            : "",
        options_.eval_only ? ", on the weights as loaded"
        : cfg_.log().hellaswag_every_steps() > 0
            ? absl::StrCat(", every ", cfg_.log().hellaswag_every_steps(),
                           " steps and on the final weights")
            : ", on the final weights"));
  }
  log.Line(
      absl::StrCat("1 epoch = ", train_loader_->steps_per_epoch(), " batches"));
  if (val_loader_ && val_batches_ < cfg_.log().val_batches() &&
      cfg_.log().val_every_steps() > 0 && !options_.eval_only) {
    log.Line(absl::StrFormat(
        "val: log.val_batches is %d, and the val set holds %d batches of "
        "B %d x T %d per rank: a val pass reads those %d",
        cfg_.log().val_batches(), val_batches_, B_, T_, val_batches_));
  }
  log.Line(absl::StrFormat(
      "total batch %d tokens = B %d x T %d x world %d x grad accum %d",
      plan_.total_batch_tokens, B_, T_, world_, accum_));
  log.Line(absl::StrCat("schedule: ", schedule_->Describe()));
  if (world_ > 1) {
    log.Line(absl::StrFormat(
        "distributed: %d ranks, %s, %s%s", world_, dcomm_->name(),
        zero1_ ? absl::StrCat("ZeRO-1: optimizer state sharded, ",
                              Thousands(shard_.shard_size), " params per rank")
               : std::string("ZeRO-0: gradients reduce-scattered and "
                             "all-gathered (an all-reduce), the full optimizer "
                             "state on every rank"),
        reduce_per_layer_ ? ", gradients reduced layer by layer during the "
                            "backward"
                          : ", gradients reduced after the backward"));
  }
  // The plan is what was allocated (the same lists), so the check was right.
  GPT2_CHECK(model_->activation_bytes() == memory_plan_.activations);
  GPT2_CHECK(optimizer_->state_bytes() == memory_plan_.optimizer);
  log.Line(absl::StrCat(
      "memory: ", DescribeMemoryPlan(memory_plan_),
      zero1_ ? absl::StrCat(" per rank (ZeRO-1: optimizer 1/", world_, ")")
      : world_ > 1 ? " per rank"
                   : ""));
  log.Line(*memory_fit_);
}

void TrainingRun::MakeLoopParts() {
  if (train_graphs_) step_graph_.emplace(backend_, &*model_, &*optimizer_);
  TrainStepParts step_parts;
  step_parts.backend = backend_;
  step_parts.model = &*model_;
  step_parts.optimizer = &*optimizer_;
  step_parts.graph = step_graph_ ? &*step_graph_ : nullptr;
  step_parts.comm = dcomm_;
  step_parts.world = world_;
  step_parts.micro_batch = B_;
  step_parts.seq_len = T_;
  step_parts.accum = accum_;
  step_parts.shard = shard_;
  step_parts.zero1 = zero1_;
  step_parts.reduce_per_layer = reduce_per_layer_;
  step_parts.shard_grads = shard_grads_;
  train_step_.emplace(step_parts);
  // The val loss and HellaSwag of the model as it is.
  EvaluatorParts eval_parts;
  eval_parts.backend = backend_;
  eval_parts.model = &*model_;
  eval_parts.graph = step_parts.graph;
  eval_parts.comm = comm_;
  eval_parts.device_comm = dcomm_;
  eval_parts.micro_batch = B_;
  eval_parts.seq_len = T_;
  eval_parts.val_loader = val_loader_ ? &*val_loader_ : nullptr;
  eval_parts.hellaswag = hellaswag_ ? &*hellaswag_ : nullptr;
  evaluator_.emplace(eval_parts);

  result_.run_dir = run_dir_;
  max_steps_ = cfg_.train().max_steps();
  updates_applied_ = progress_.optimizer_steps;
  save_every_ = cfg_.checkpoint().every_steps();
  interrupt_saves_ = cfg_.checkpoint().save_at_end() || save_every_ > 0;
  last_lr_ = progress_.lr;

  // train.stop_at_loss: the first step below it, and a run of such steps.
  loss_target_.emplace(
      cfg_.train().stop_at_loss(), cfg_.train().stop_after_steps_below(),
      cfg_.train().stop_loss_tokens(), plan_.total_batch_tokens);
  // Each step's loss and norm, read back a step late on an asynchronous
  // backend, and logged.
  StepReaderParts reader_parts;
  reader_parts.backend = backend_;
  reader_parts.stats_dtype = model_->stats_dtype();
  reader_parts.params = model_->params();
  reader_parts.step_tokens = plan_.total_batch_tokens;
  reader_parts.max_steps = max_steps_;
  reader_parts.every_steps = cfg_.log().every_steps();
  reader_parts.progress_every_seconds = cfg_.log().progress_every_seconds();
  reader_parts.on_nan = cfg_.train().on_nan();
  reader_parts.target = &*loss_target_;
  reader_parts.process_start = process_start_;
  reader_parts.first_step = progress_.step;
  reader_.emplace(reader_parts);
}

void TrainingRun::LogStartingPoint() {
  RunLog& log = *log_;
  if (!resume_path_.empty()) {
    log.Line(absl::StrFormat("resumed from %s at step %d (%d tokens seen)",
                             resume_path_, progress_.step,
                             progress_.tokens_seen));
    // What this run changes of the checkpoint's run, said (an lr may change
    // on purpose; a changed text or split is easy to miss).
    if (!progress_.config_changes.empty()) {
      log.Line(absl::StrCat("config changed since the checkpoint: ",
                            absl::StrJoin(progress_.config_changes, ", ")));
    }
    if (progress_.train_tokens != 0 &&
        progress_.train_tokens != train_loader_->total_tokens()) {
      log.Line(absl::StrFormat(
          "warning: the training data holds %d tokens, and the checkpoint's "
          "run trained on %d: other data (or another split of it) from here "
          "on",
          train_loader_->total_tokens(), progress_.train_tokens));
    }
  } else if (!options_.init_from.empty()) {
    log.Line(absl::StrCat("weights from ", options_.init_from));
  }
  if (const std::string events = log.tensorboard_path(); !events.empty()) {
    log.Line(absl::StrCat("TensorBoard events: ", events,
                          " (tensorboard --logdir ", cfg_.log().run_dir(),
                          ")"));
  }
  if (!earlier_run_.empty()) {
    log.Line(absl::StrCat(
        "warning: ", run_dir_, " already holds a run (latest checkpoint ",
        earlier_run_,
        "): this new run starts train.log and metrics.jsonl over, writes its "
        "own TensorBoard event file beside that run's (TensorBoard shows "
        "both) and saves its checkpoints beside that run's; --resume latest "
        "would have continued it, another log.run_name keeps them apart"));
  }
}

void TrainingRun::LogStartUp() {
  std::string phases;
  for (const auto& [name, seconds] : startup_phases_) {
    absl::StrAppend(&phases, phases.empty() ? "" : ", ", name, " ",
                    absl::StrFormat("%.2f", seconds));
  }
  log_->Line(absl::StrFormat("start-up: %.1f s before the first step (%s s)",
                             SecondsSince(process_start_), phases));
  // TensorBoard's Text tab shows each run's config and set-up beside its
  // curves (fenced: Markdown keeps the lines as they are).
  log_->Text(progress_.step, "run", "```\n" + log_->TakeCapture() + "```\n");
}

absl::Status TrainingRun::Save(int64_t steps_done, double lr) {
  if (step_graph_) step_graph_->Flush();
  TrainProgress now;
  now.step = steps_done;
  now.optimizer_steps = updates_applied_;
  now.lr = lr;
  now.tokens_seen = steps_done * plan_.total_batch_tokens;
  now.cursor = train_loader_->cursor();
  now.train_tokens = train_loader_->total_tokens();
  GPT2_ASSIGN_OR_RETURN(SaveReport saved,
                        SaveTrainingCheckpoint(run_dir_, cfg_, now, *model_,
                                               *optimizer_, backend_, comm_));
  log_->Line(absl::StrFormat("saved checkpoint %s (%.1f MiB in %.2f s)",
                             saved.path, saved.bytes / (1024.0 * 1024.0),
                             saved.seconds));
  return absl::OkStatus();
}

double TrainingRun::EvaluateHellaSwag(int64_t step) {
  const Evaluator::Scored scored = evaluator_->HellaSwag(step);
  log_->Line(scored.line);
  return scored.acc_norm;
}

absl::StatusOr<TrainResult> TrainingRun::EvalOnly() {
  // The val pass alone, on the weights as loaded; nothing is trained or
  // saved. At most one pass over the val set (no window twice).
  if (!val_loader_) {
    return absl::InvalidArgumentError(absl::StrCat(
        options_.config_path,
        ": --eval needs a val set (data.val_shards or data.val_tokens)"));
  }
  const int64_t batches = val_batches_;
  result_.val_loss = evaluator_->ValLoss(val_batches_, progress_.step);
  if (!result_.val_loss) {
    result_.interrupted_by = evaluator_->stopped_by();
    log_->Line(absl::StrCat("eval: ", StopSignalName(evaluator_->stopped_by()),
                            " received: stopped, no val loss"));
    return result_;
  }
  log_->Line(absl::StrFormat(
      "eval: val loss %.6f, perplexity %.3f, over %d tokens (%d batches of "
      "%d x %d per rank, %d rank%s%s); weights from %s",
      *result_.val_loss, std::exp(*result_.val_loss),
      batches * B_ * T_ * world_, batches, B_, T_, world_,
      world_ > 1 ? "s" : "",
      batches < cfg_.log().val_batches()
          ? absl::StrCat("; the val set holds no more than ", batches)
          : "",
      !resume_path_.empty() ? resume_path_
      : !options_.init_from.empty()
          ? options_.init_from
          : absl::StrCat("the init (train.seed ", cfg_.train().seed(), ")")));
  if (hellaswag_) result_.hellaswag = EvaluateHellaSwag(progress_.step);
  return result_;
}

void TrainingRun::Loop() {
  for (int64_t step = progress_.step; step < max_steps_ && !stop_; ++step) {
    const int val_every = cfg_.log().val_every_steps();
    std::optional<double> val_loss;
    // Before step `step` trains: the weights after `step` updates (the final
    // ones get their pass after the loop).
    if (val_loader_ && val_every > 0 && step % val_every == 0) {
      FinishPending();
      if (stop_) break;
      val_loss = evaluator_->ValLoss(val_batches_, step);
      if (!val_loss) {
        result_.interrupted_by = evaluator_->stopped_by();
        log_->Line(absl::StrFormat(
            "%s received during the val pass before step %d: stopping%s",
            StopSignalName(evaluator_->stopped_by()), step,
            interrupt_saves_ && result_.steps_run > 0
                ? " and saving a checkpoint"
                : ""));
        break;
      }
      log_->Line(absl::StrFormat("step %d | val loss: %.6f", step, *val_loss));
      reader_->RestartClock(step);  // dt covers training only
    }
    const int hellaswag_every = cfg_.log().hellaswag_every_steps();
    std::optional<double> hellaswag_acc;
    if (hellaswag_ && hellaswag_every > 0 && step % hellaswag_every == 0) {
      FinishPending();
      if (stop_) break;
      hellaswag_acc = EvaluateHellaSwag(step);
      reader_->RestartClock(step);  // dt covers training only
    }
    InjectFaultForTests(step, comm_->rank());
    InjectSignalForTests(step, comm_->rank());
    const Tensor loss_sum = reader_->loss_sum(step);
    const Tensor norm_squared = reader_->norm_squared(step);
    // The first step of the process runs directly (its calls time kernels,
    // grow scratch and make cuBLASLt plans: nothing a recording may do).
    const bool replay =
        step_graph_ && step > progress_.step && step_graph_->ready();
    // What the first step's extra time is made of, on the host.
    if (step == progress_.step) backend_->TimeHostCalls(true);
    StepMetrics metrics;
    metrics.step = step;
    metrics.val_loss = val_loss;
    metrics.hellaswag = hellaswag_acc;
    metrics.lr = schedule_->At(step);
    train_step_->Queue(&*train_loader_, replay, loss_sum, norm_squared,
                       metrics.lr, ++updates_applied_);
    backend_->MarkStepEnd(step);
    if (step == progress_.step) {
      for (const std::string& line : FirstStepReport(backend_, memory_plan_)) {
        log_->Line(line);
      }
    }
    // Step `step` is queued; now read the one before it.
    FinishPending();
    reader_->Queue(metrics);
    // A synchronous backend has already run the step: read it now, so its dt
    // and any stop decision belong to this step.
    if (!backend_->asynchronous()) FinishPending();
    result_.steps_run = step + 1 - progress_.step;
    last_lr_ = metrics.lr;
    // (The last step's save is the one at the end, where the config has
    // one: tried once, and its failing fails the run.)
    if (save_every_ > 0 && (step + 1) % save_every_ == 0 &&
        !(step + 1 == max_steps_ && cfg_.checkpoint().save_at_end())) {
      // A periodic save that fails (a full disk) costs that checkpoint, not
      // the run: the state is still here, the next save may succeed, and
      // `latest` still names the last complete one. (The save at the end
      // failing fails the run.)
      if (const absl::Status saved = Save(step + 1, metrics.lr); saved.ok()) {
        last_saved_ = step + 1;
      } else {
        log_->Line(absl::StrCat(
            "warning: ", saved.message(), "; training goes on (",
            step + 1 + save_every_ <= max_steps_
                ? absl::StrCat("the next save at step ", step + 1 + save_every_)
            : cfg_.checkpoint().save_at_end()
                ? std::string("the next save at the end")
                : std::string("no save left"),
            "; --resume latest would go on from the newest complete "
            "checkpoint)"));
      }
      reader_->TimeOnHost(step + 1);
    }
    if (StopAfter(step)) break;
  }
  FinishPending();
  if (step_graph_) step_graph_->Flush();
}

bool TrainingRun::StopAfter(int64_t step) {
  // Every rank must agree: each has its own clock and its own signals, and a
  // rank that stopped alone would leave the others waiting in the next step's
  // collectives.
  int stop_code = 0;
  if (cfg_.train().max_seconds() > 0 &&
      SecondsSince(process_start_) >= cfg_.train().max_seconds()) {
    stop_code = kStopForTime;
  }
  if (const int signo = StopSignalReceived(); signo != 0) {
    stop_code = kStopForSignal + signo;
  }
  if (world_ > 1) stop_code = comm_->AgreeMax(stop_code);
  if (stop_code >= kStopForSignal) {
    result_.interrupted_by = stop_code - kStopForSignal;
    log_->Line(
        absl::StrFormat("%s received: stopping after step %d%s",
                        StopSignalName(result_.interrupted_by), step,
                        interrupt_saves_ ? " and saving a checkpoint" : ""));
    return true;
  }
  if (stop_code == kStopForTime) {
    log_->Line(absl::StrFormat(
        "time budget train.max_seconds = %g s reached after step %d",
        cfg_.train().max_seconds(), step));
    return true;
  }
  return false;
}

absl::StatusOr<TrainResult> TrainingRun::Finish() {
  RunLog& log = *log_;
  // The val loss of the final weights, labelled with the updates made, as the
  // loop's passes are (not after a stop signal: out quickly; nor a non-finite
  // loss). Every rank takes part; all of them agree on how the loop ended.
  if (val_loader_ && cfg_.log().val_every_steps() > 0 &&
      result_.steps_run > 0 && result_.interrupted_by == 0 &&
      !reader_->non_finite_stop()) {
    const int64_t updates = progress_.step + result_.steps_run;
    result_.val_loss = evaluator_->ValLoss(val_batches_, updates);
    if (result_.val_loss) {
      log.Line(absl::StrFormat("step %d | val loss: %.6f", updates,
                               *result_.val_loss));
      log.FinalEval(updates, result_.val_loss, std::nullopt);
    } else {
      result_.interrupted_by = evaluator_->stopped_by();
      log.Line(absl::StrFormat(
          "%s received during the final val pass: stopped, its val loss not "
          "measured",
          StopSignalName(evaluator_->stopped_by())));
    }
  }
  // A run stopped early (a stop signal, or a non-finite loss under
  // train.on_nan: STOP) saves where the config saves at all (save_at_end or
  // every_steps), so that --resume latest goes on from where it stopped; after
  // a non-finite loss only if the weights themselves are finite (a blown-up lr
  // makes them inf before the loss): a restart point for a lower lr.
  bool weights_finite = true;
  if (reader_->non_finite_stop())
    weights_finite = AllFinite(backend_, model_->params());
  const bool stopped_early =
      result_.interrupted_by != 0 || reader_->non_finite_stop().has_value();
  const int64_t steps_done = progress_.step + result_.steps_run;
  const bool save_now = stopped_early ? interrupt_saves_ && weights_finite
                                      : cfg_.checkpoint().save_at_end();
  if (save_now && result_.steps_run > 0 && last_saved_ != steps_done) {
    GPT2_RETURN_IF_ERROR(Save(steps_done, last_lr_));
    last_saved_ = steps_done;
  }
  // Such a run exits non-zero, and mpirun ends the whole job when the first
  // rank does: no rank leaves before rank 0 has committed the save.
  if (stopped_early && world_ > 1) comm_->Barrier();
  if (const auto& non_finite_stop = reader_->non_finite_stop()) {
    const std::string what =
        !interrupt_saves_ || result_.steps_run == 0
            ? "nothing saved (the config saves no checkpoints)"
        : !weights_finite
            ? absl::StrCat(
                  "the weights are not finite either: not saved",
                  last_saved_ >= 0
                      ? absl::StrFormat(" (the last checkpoint, of step %d, "
                                        "is this run's latest)",
                                        last_saved_)
                      : "")
            : absl::StrFormat(
                  "the last finite weights are saved at step %d (--resume "
                  "latest with a lower optim.lr goes on from there)",
                  steps_done);
    log.Line(what);
    return absl::Status(
        non_finite_stop->code(),
        absl::StrCat(non_finite_stop->message(), " ", what, "."));
  }
  if (result_.interrupted_by != 0 && result_.steps_run == 0) {
    // Stopped in the val pass before this run's first step.
    log.Line(
        absl::StrFormat("interrupted by %s before this run's first step: "
                        "nothing trained, nothing saved",
                        StopSignalName(result_.interrupted_by)));
  } else if (result_.interrupted_by != 0 && interrupt_saves_ &&
             steps_done >= max_steps_) {
    // Stopped in the final val pass: the training itself is done.
    log.Line(absl::StrFormat(
        "interrupted by %s after the last step, %d: the training is done and "
        "saved; --eval with --resume latest measures its val loss",
        StopSignalName(result_.interrupted_by), steps_done));
  } else if (result_.interrupted_by != 0 && interrupt_saves_) {
    log.Line(absl::StrFormat(
        "interrupted by %s after %d steps; to go on: the same command with "
        "--resume latest",
        StopSignalName(result_.interrupted_by), steps_done));
  }
  // HellaSwag on the final weights, once they are saved (every rank: they
  // sum their shares), unless the run was interrupted.
  if (hellaswag_ && result_.steps_run > 0 && result_.interrupted_by == 0) {
    InjectNamedSignalForTests("GPT2_TEST_SIGNAL_IN_HELLASWAG");
    result_.hellaswag = EvaluateHellaSwag(steps_done);
    // A stop signal cut the pass short (its line counts the examples scored):
    // the run is saved; it ends as interrupted, without the samples.
    if (const int signo = StopSignalReceived(); signo != 0) {
      result_.interrupted_by = signo;
      log.Line(absl::StrFormat(
          "%s received during the final HellaSwag pass: stopped; the "
          "checkpoint is saved",
          StopSignalName(signo)));
    } else {
      log.FinalEval(steps_done, std::nullopt, result_.hellaswag);
    }
  }
  if (options_.keep_final_params) result_.final_params = model_->GetParams();
  // Interrupted: out quickly, without the samples.
  if (rank0_ && !final_samples_->empty() && result_.steps_run > 0 &&
      result_.interrupted_by == 0) {
    const std::vector<double> params = model_->GetParams();
    const absl::Status sampled = final_samples_->Run(
        backend_, choice_.dtype,
        std::vector<float>(params.begin(), params.end()), steps_done, run_dir_,
        last_saved_ == steps_done ? CheckpointPath(run_dir_, last_saved_) : "",
        &log);
    // The run itself succeeded and is saved: a failed sample is reported,
    // not turned into a failed run; a stop signal during sampling still ends
    // the process with 128 + the signal.
    if (absl::IsCancelled(sampled)) {
      log.Line(std::string(sampled.message()));
      result_.interrupted_by = StopSignalReceived();
    } else if (!sampled.ok()) {
      log.Line(
          absl::StrCat("warning: the samples (log.sample_prompts) failed: ",
                       sampled.ToString()));
    }
  }
  log.Line(
      absl::StrFormat("done: %d steps in %.1f s, final loss %.6f; logs in %s",
                      result_.steps_run, SecondsSince(process_start_),
                      result_.final_loss, run_dir_));
  if (rank0_ && last_saved_ >= 0 && result_.interrupted_by == 0) {
    log.Line(NextCommands(cfg_, run_dir_));
  }
  return result_;
}

}  // namespace

absl::StatusOr<TrainResult> Train(const LoadedConfig& loaded,
                                  const TrainOptions& options) {
  std::string log_path;
  absl::StatusOr<TrainResult> result =
      TrainingRun(loaded, options, &log_path).Run();
  // Where the run failed once rank 0's run log was open, the error is that
  // log's last line (it went to stderr only: a run folder did not say why its
  // run ended).
  if (!result.ok() && !log_path.empty()) {
    if (FILE* log = std::fopen(log_path.c_str(), "a")) {
      std::fprintf(log, "error: %s\n",
                   std::string(result.status().message()).c_str());
      std::fclose(log);
    }
  }
  return result;
}

}  // namespace gpt2
