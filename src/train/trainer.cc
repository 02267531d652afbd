#include "src/train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
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

}  // namespace

ErrorScope ScopeOf(const absl::Status& status) {
  const auto scope = status.GetPayload(kScopePayload);
  if (!scope.has_value()) return ErrorScope::kLocal;
  return *scope == "echo" ? ErrorScope::kAgreedEcho : ErrorScope::kAgreed;
}

namespace {

// Train, and where it fails once rank 0's run log is open, the error as that
// log's last line (it went to stderr only: a run folder did not say why its
// run ended). `log_path` is set to train.log's path once it is open.
absl::StatusOr<TrainResult> TrainLogged(const LoadedConfig& loaded,
                                        const TrainOptions& options,
                                        std::string* log_path);

}  // namespace

absl::StatusOr<TrainResult> Train(const LoadedConfig& loaded,
                                  const TrainOptions& options) {
  std::string log_path;
  absl::StatusOr<TrainResult> result = TrainLogged(loaded, options, &log_path);
  if (!result.ok() && !log_path.empty()) {
    if (FILE* log = std::fopen(log_path.c_str(), "a")) {
      std::fprintf(log, "error: %s\n",
                   std::string(result.status().message()).c_str());
      std::fclose(log);
    }
  }
  return result;
}

namespace {

absl::StatusOr<TrainResult> TrainLogged(const LoadedConfig& loaded,
                                        const TrainOptions& options,
                                        std::string* log_path) {
  const Clock::time_point process_start =
      options.process_start.value_or(Clock::now());
  // Start-up phases, for the "start-up:" line: the host's seconds from the
  // previous mark (device work queued in a phase may finish in a later one).
  std::vector<std::pair<const char*, double>> startup_phases;
  Clock::time_point phase_start = process_start;
  auto end_phase = [&](const char* name) {
    const Clock::time_point now = Clock::now();
    startup_phases.emplace_back(
        name, std::chrono::duration<double>(now - phase_start).count());
    phase_start = now;
  };
  end_phase("launch");
  const config::RunConfig& cfg = loaded.config;
  const RunPlan& plan = loaded.plan;
  std::unique_ptr<Communicator> own_comm;
  Communicator* comm = options.comm;
  if (comm == nullptr) {
    own_comm = MakeSingleRankCommunicator();
    comm = own_comm.get();
  }
  const bool rank0 = comm->rank() == 0;
  const int world = comm->world_size();
  if (!options.resume.empty() && !options.init_from.empty()) {
    return Agreed(
        absl::InvalidArgumentError(
            "--resume and --init_from both given: --resume continues a run "
            "(its weights, optimizer state and place in the data), "
            "--init_from starts a new run from weights alone; give one"),
        rank0);
  }

  const BackendChooser choose = options.choose_backend != nullptr
                                    ? options.choose_backend
                                    : &ChooseCpuBackend;
  absl::StatusOr<BackendChoice> chosen =
      choose(cfg.train(), comm->local_rank());
  // --plan of a CUDA run on a machine without a usable GPU (planning one on a
  // laptop): the plan in the CUDA run's precision, with the CPU backend
  // standing in for what allocates nothing, and no memory check (there is no
  // GPU to check against). Any other run stops here.
  std::string no_gpu;
  if (!chosen.ok() && options.plan_only &&
      cfg.train().device() == config::CUDA &&
      absl::IsFailedPrecondition(chosen.status())) {
    // Its reason alone, without the advice to fall back to the CPU.
    no_gpu = std::string(chosen.status().message());
    if (const size_t at = no_gpu.find("usable: "); at != std::string::npos)
      no_gpu.erase(0, at + 8);
    if (const size_t at = no_gpu.find(" (use device: AUTO");
        at != std::string::npos)
      no_gpu.erase(at);
    config::TrainConfig stand_in = cfg.train();
    stand_in.set_device(config::CPU);
    stand_in.set_precision(config::FP32);
    chosen = ChooseCpuBackend(stand_in, comm->local_rank());
    if (chosen.ok()) {
      chosen->dtype =
          cfg.train().precision() == config::FP32 ? DType::kF32 : DType::kBF16;
    }
  }
  GPT2_RETURN_IF_ERROR(chosen.status());
  BackendChoice choice = *std::move(chosen);
  Backend* backend = choice.backend.get();
  end_phase("backend");
  if (cfg.optim().bf16_state() && choice.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.config_path,
                     ": optim.bf16_state keeps the optimizer state in "
                     "bf16 beside bf16 params, but this run's params are ",
                     DTypeName(choice.dtype),
                     " (it needs train.precision BF16, on the CUDA backend)"));
  }
  // The init's draw on the host (124M normals: ~0.5 s on 8 threads) runs
  // beside the rest of start-up (data, memory plan, allocations); a resumed
  // run or one --init_from a file loads every weight instead, so draws none.
  std::future<std::unique_ptr<char[]>> drawn;
  if (!options.plan_only && options.resume.empty() &&
      options.init_from.empty()) {
    drawn = std::async(std::launch::async, &Gpt2Model::DrawParams, plan.shape,
                       choice.dtype, static_cast<uint64_t>(cfg.train().seed()));
  }
  // Training collectives run on the backend's memory: MPI for CPU ranks, NCCL
  // for GPU ranks. Host buffers (checkpoint gathers) always go over `comm`.
  std::unique_ptr<Communicator> device_comm;
  Communicator* dcomm = comm;
  // A world of one needs no collectives, but asking for NCCL explicitly still
  // gets it (the loss is then averaged through NCCL): a check of that path on
  // one GPU.
  const bool nccl_asked = cfg.distributed().comm() == config::BACKEND_NCCL;
  if ((world > 1 || nccl_asked) && backend->name() != "cpu") {
    // NCCL refuses two ranks on one GPU ("Duplicate GPU detected",
    // NVIDIA/nccl#1241), so ranks that share GPUs reduce over MPI through host
    // copies.
    const bool shared_gpus = comm->local_size() > choice.devices_on_node;
    const config::Backend wanted = cfg.distributed().comm();
    if (wanted == config::BACKEND_NCCL && shared_gpus) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.config_path, ": distributed.comm is BACKEND_NCCL, but ",
          comm->local_size(), " ranks share ", choice.devices_on_node,
          " GPU(s) on this node and NCCL refuses two ranks on one GPU; use "
          "BACKEND_AUTO or BACKEND_MPI"));
    }
    if (wanted == config::BACKEND_MPI || shared_gpus ||
        options.make_device_comm == nullptr) {
      device_comm = MakeHostStagedCommunicator(comm, backend);
      if (shared_gpus && wanted != config::BACKEND_MPI) {
        choice.note = absl::StrCat(
            choice.note, choice.note.empty() ? "" : "; ", comm->local_size(),
            " ranks share ", choice.devices_on_node,
            " GPU(s): gradients go over MPI through host memory");
      }
    } else {
      device_comm = options.make_device_comm(backend);
    }
    dcomm = device_comm.get();
  }
  if (nccl_asked && backend->name() == "cpu" && no_gpu.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.config_path,
        ": distributed.comm is BACKEND_NCCL, but these ranks run on the CPU "
        "backend; "
        "CPU ranks communicate over MPI (use BACKEND_AUTO or BACKEND_MPI)"));
  }
  const int B = plan.micro_batch_size, T = plan.seq_len;
  const int accum = plan.grad_accum_steps;
  const bool zero1 = cfg.distributed().zero_stage() == 1 && world > 1;
  const int64_t num_params = TotalParams(BuildParamList(plan.shape));
  // Gradients are always reduced over the same padded shards: a reduce-scatter,
  // then (without ZeRO-1) an all-gather. Each element is summed once, in one
  // place, so every rank holds bit-identical gradients (MPI_Allreduce does not
  // promise that for every world size) and ZeRO-0 and ZeRO-1 see the same
  // numbers.
  const ShardLayout shard =
      world > 1 ? ShardLayout::Make(num_params, comm->rank(), world)
                : ShardLayout::Whole(num_params);
  const ShardLayout optimizer_shard =
      zero1 ? shard : ShardLayout::Whole(num_params);
  // Layer by layer during the backward (each finished region reduced to the
  // ranks whose shard holds it, in place), or one reduce-scatter after it.
  // Unset: on for NCCL (asynchronous: the overlap) and for CPU ranks (MPI
  // blocks, but each layer's gradients are reduced while still in cache:
  // gpt2_bench --comm measured 44-66% less exposed communication on 2 CPU
  // ranks), off where GPU ranks share a GPU over MPI (a host round trip per
  // region).
  const bool reduce_per_layer =
      world > 1 && (cfg.distributed().has_reduce_during_backward()
                        ? cfg.distributed().reduce_during_backward()
                        : dcomm->asynchronous() || backend->name() == "cpu");
  // Each rank receives its shard of the averaged gradients here: its own block
  // of the gradient buffer when reducing per layer, else a separate buffer.
  const bool own_shard_buffer = world > 1 && !reduce_per_layer;
  // ---- Memory: planned, checked against the device, then allocated ----
  MemoryPlanInputs memory_inputs;
  memory_inputs.shape = plan.shape;
  memory_inputs.dtype = choice.dtype;
  memory_inputs.micro_batch = B;
  memory_inputs.seq_len = T;
  memory_inputs.buffer_elems = shard.padded_total();
  memory_inputs.optimizer_elems = optimizer_shard.shard_size;
  memory_inputs.shard_grad_elems = own_shard_buffer ? shard.shard_size : 0;
  memory_inputs.recompute_gelu = cfg.train().recompute_gelu();
  memory_inputs.recompute_layernorm = cfg.train().recompute_layernorm();
  memory_inputs.residual_fp32 = cfg.train().residual_fp32();
  memory_inputs.bf16_state = cfg.optim().bf16_state();
  const MemoryPlan memory_plan = PlanMemory(memory_inputs);
  const absl::StatusOr<std::string> memory_fit =
      no_gpu.empty()
          ? CheckMemory(memory_inputs, memory_plan, int64_t{B} * accum,
                        *backend, choice, *comm)
          : absl::StrCat("memory check: not made, no GPU here (", no_gpu,
                         "); a GPU needs the above, and the CUDA context, "
                         "cuBLASLt's workspace and op scratch");
  if (!memory_fit.ok() && !options.plan_only) return memory_fit.status();

  absl::StatusOr<Datasets> loaded_data =
      LoadDatasets(cfg.data(), options.data_dir, plan.shape.vocab_size);
  if (options.plan_only) {
    return PrintPlan(loaded, options,
                     no_gpu.empty() ? std::string(backend->name()) : "cuda",
                     choice.dtype, *comm, memory_plan, memory_fit, loaded_data);
  }
  GPT2_RETURN_IF_ERROR(loaded_data.status());
  Datasets& data = *loaded_data;
  GPT2_ASSIGN_OR_RETURN(const FinalSamples final_samples,
                        FinalSamples::Prepare(cfg.log(), options.data_dir,
                                              plan.shape, cfg.train().seed()));
  // HellaSwag during training: read and tokenized now, so a bad file stops
  // the run before it trains.
  std::optional<HellaSwagEval> hellaswag;
  if (!cfg.log().hellaswag_file().empty()) {
    GPT2_ASSIGN_OR_RETURN(const Tokenizer tokenizer,
                          Tokenizer::LoadFromDataDir(options.data_dir));
    GPT2_ASSIGN_OR_RETURN(
        HellaSwagEval loaded_eval,
        HellaSwagEval::Load(
            DataPath(options.data_dir, cfg.log().hellaswag_file()), tokenizer,
            cfg.log().hellaswag_examples(), plan.seq_len,
            plan.shape.vocab_size));
    if (loaded_eval.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(cfg.log().hellaswag_file(),
                       ": no example fits train.seq_len ", plan.seq_len));
    }
    hellaswag.emplace(std::move(loaded_eval));
  }
  end_phase("data");

  const LoaderLayout layout = LayoutFor(plan, *comm);
  GPT2_ASSIGN_OR_RETURN(DataLoader train_loader,
                        DataLoader::Create(std::move(data.train), layout));
  GPT2_ASSIGN_OR_RETURN(
      std::optional<DataLoader> val_loader,
      ValLoaderFor(std::move(data.val), layout, cfg, options.config_path));
  int val_batches = 0;  // a val pass's batches
  if (val_loader) {
    // A val pass reads the val set at most once (more batches than it holds
    // read the same tokens again: a slower pass, no better measure).
    val_batches = static_cast<int>(std::min<int64_t>(
        cfg.log().val_batches(), val_loader->steps_per_epoch()));
  }

  const std::string run_dir = cfg.log().run_dir() + "/" + cfg.log().run_name();
  std::string resume_path;
  if (!options.resume.empty()) {
    GPT2_ASSIGN_OR_RETURN(resume_path, ResolveResume(options.resume, run_dir));
    // A run already at its last step has nothing to train (a requeued job
    // after the run ended): said, and nothing written, before any set-up (it
    // reported "done: 0 steps ... final loss 0.000000" and left an empty
    // TensorBoard file).
    GPT2_ASSIGN_OR_RETURN(const CheckpointReader reader,
                          CheckpointReader::Open(resume_path));
    const int64_t at = reader.header().step();
    if (!options.eval_only && at >= cfg.train().max_steps()) {
      if (rank0) {
        std::printf(
            "%s: already at step %lld, and train.max_steps is %lld: nothing "
            "left to train (--set train.max_steps=N with N above %lld goes "
            "on; --eval only measures it)\n",
            resume_path.c_str(), static_cast<long long>(at),
            static_cast<long long>(cfg.train().max_steps()),
            static_cast<long long>(at));
        std::fflush(stdout);
      }
      TrainResult nothing;
      nothing.run_dir = run_dir;
      return nothing;
    }
  }
  // A fresh run in a folder that holds another run's checkpoints: said, so
  // that the two are not mixed unawares (this run's logs start over, its
  // checkpoints go beside the old ones, its event file beside the old).
  std::string earlier_run;
  if (resume_path.empty() && !options.eval_only) {
    if (absl::StatusOr<std::string> latest = ReadLatest(run_dir); latest.ok())
      earlier_run = *latest;
  }

  Gpt2Model model(backend, plan.shape, choice.dtype, B, T, shard.padded_total(),
                  cfg.train().recompute_gelu(),
                  cfg.train().recompute_layernorm(),
                  cfg.train().residual_fp32());
  // Every rank draws the same init from the seed; no broadcast is needed.
  // Without a draw the weights are zeros until they are loaded.
  if (drawn.valid()) {
    model.UploadDrawn(drawn.get().get());
  } else {
    backend->Zero(model.params());
  }
  end_phase("model");
  AdamWHyper hyper;
  hyper.beta1 = cfg.optim().beta1();
  hyper.beta2 = cfg.optim().beta2();
  hyper.eps = cfg.optim().eps();
  hyper.weight_decay = cfg.optim().weight_decay();
  hyper.grad_clip = cfg.optim().grad_clip();
  hyper.bf16_state = cfg.optim().bf16_state();
  if ((cfg.train().stochastic_rounding() || hyper.bf16_state) &&
      choice.dtype == DType::kBF16) {
    // Any fixed non-zero value; derived from the run's seed.
    hyper.rounding_seed = (static_cast<uint64_t>(cfg.train().seed()) << 1) |
                          0x9E3779B97F4A7C15ull;
  }
  AdamWOptimizer optimizer(backend, model.param_list(), choice.dtype, hyper,
                           optimizer_shard);
  // Updates beside the next forward (GPT2_UPDATE_BESIDE=1 on the CUDA
  // backend): only with no collectives on the device, which would not wait
  // for them.
  // The training step recorded as a graph after its first run and replayed
  // (GPT2_TRAIN_GRAPHS=1 where the backend has graphs): one launch for the
  // forward, backward and norm instead of one per kernel, with the last
  // step's updates beside its forward where those are on (StepGraph). A world
  // of one, without gradient accumulation.
  const bool graphs_asked = EnvIs("GPT2_TRAIN_GRAPHS", "1");
  const bool train_graphs = graphs_asked && backend->SupportsGraphs() &&
                            world == 1 && accum == 1 && device_comm == nullptr;
  const bool updates_beside_allowed = world == 1 && device_comm == nullptr;
  optimizer.AllowUpdatesBeside(updates_beside_allowed);
  TrainProgress progress;
  if (!options.init_from.empty()) {
    GPT2_RETURN_IF_ERROR(InitWeightsFrom(options.init_from, &model));
  }
  if (!resume_path.empty()) {
    GPT2_ASSIGN_OR_RETURN(progress,
                          RestoreTrainingCheckpoint(resume_path, cfg, &model,
                                                    &optimizer, backend));
    GPT2_RETURN_IF_ERROR(train_loader.SetCursor(progress.cursor));
  } else {
    optimizer.InitMasterFromParams(model.params());
  }
  end_phase("optimizer");
  // The run's log files are opened (a fresh run's truncated) only now: a run
  // refused before this (an --init_from file that is not one, or of another
  // shape) leaves an earlier run's logs in the folder as they were (it
  // emptied its train.log and metrics.jsonl).
  GPT2_ASSIGN_OR_RETURN(
      RunLog log,
      RunLog::Open(
          run_dir, rank0,
          /*append=*/!resume_path.empty() || options.eval_only,
          /*tensorboard=*/cfg.log().tensorboard() && !options.eval_only));
  if (rank0) *log_path = run_dir + "/train.log";
  Tensor shard_grads =
      own_shard_buffer ? backend->Alloc(choice.dtype, shard.shard_size)
      : world > 1
          ? model.padded_grads().Slice(int64_t{shard.rank} * shard.shard_size,
                                       shard.shard_size)
          : Tensor{};
  const LrSchedule schedule = ScheduleOf(cfg);

  // ---- Header ----
  std::string config_text;
  google::protobuf::TextFormat::PrintToString(cfg, &config_text);
  log.BeginCapture();  // the header, for the event file's Text tab
  log.Line(absl::StrCat("gpt2_ddp | config ", options.config_path,
                        " | data dir ", options.data_dir, " | build ",
                        BuildCommit()));
  log.Line(config_text);
  log.Line(absl::StrFormat(
      "backend: %s, %s%s%s, %d thread(s) | world size %d (%s)", backend->name(),
      DTypeName(choice.dtype),
      model.residual_dtype() != choice.dtype ? " (f32 residual stream)" : "",
      hyper.bf16_state ? " (optimizer state in bf16: no master weights)" : "",
      omp_get_max_threads(), comm->world_size(), dcomm->name()));
  if (!choice.note.empty()) log.Line(absl::StrCat("note: ", choice.note));
  const ModelShape& s = plan.shape;
  const std::string kernels =
      backend->KernelSummary(choice.dtype, s.channels / s.num_heads);
  if (!kernels.empty()) log.Line(absl::StrCat("kernels: ", kernels));
  if (backend->UpdatesBeside() && !updates_beside_allowed) {
    log.Line(absl::StrCat(
        "note: GPT2_UPDATE_BESIDE=1 has no effect here: the optimizer updates "
        "in place, since ",
        world > 1 ? "the gradients and weights go over collectives, which "
                    "would not wait for updates beside"
                  : "distributed.comm asks for NCCL, which would not wait "
                    "for updates beside"));
  }
  if (train_graphs) {
    log.Line(absl::StrCat(
        "train step: recorded as a graph at the second step and replayed "
        "(GPT2_TRAIN_GRAPHS=1)",
        optimizer.updates_beside()
            ? absl::StrCat(
                  ", each with the last step's updates beside its forward",
                  StepGraph::RowsFirstWanted() ? StepGraph::kRowsFirstNote : "")
            : ""));
  } else if (graphs_asked) {
    log.Line(absl::StrCat(
        "note: GPT2_TRAIN_GRAPHS=1 has no effect here: ",
        !backend->SupportsGraphs()
            ? absl::StrCat(backend->name(), " records no graphs")
        : accum > 1 ? "the step accumulates gradients over micro-steps"
                    : "the step runs collectives"));
  }
  log.Line(absl::StrFormat("model: L=%d NH=%d C=%d maxT=%d V=%d Vp=%d",
                           s.num_layers, s.num_heads, s.channels, s.max_seq_len,
                           s.vocab_size, s.padded_vocab_size));
  const ParamGroupCounts groups =
      CountParamGroups(model.param_list(), s.num_layers);
  log.Line(
      absl::StrCat("num decayed parameter tensors: ", groups.decayed_tensors,
                   ", with ", Thousands(groups.decayed_params), " parameters"));
  log.Line(
      absl::StrCat("num non-decayed parameter tensors: ", groups.other_tensors,
                   ", with ", Thousands(groups.other_params), " parameters"));
  log.Line(absl::StrCat("total parameters: ", Thousands(model.num_params())));
  log.Line(absl::StrCat("loaded ", data.description));
  if (hellaswag) {
    log.Line(absl::StrCat(
        "hellaswag: ", hellaswag->size(), " examples from ",
        cfg.log().hellaswag_file(),
        hellaswag->left_out() > 0
            ? absl::StrCat(" (", hellaswag->left_out(),
                           " longer than train.seq_len left out)")
            : "",
        options.eval_only ? ", on the weights as loaded"
        : cfg.log().hellaswag_every_steps() > 0
            ? absl::StrCat(", every ", cfg.log().hellaswag_every_steps(),
                           " steps and on the final weights")
            : ", on the final weights"));
  }
  log.Line(
      absl::StrCat("1 epoch = ", train_loader.steps_per_epoch(), " batches"));
  if (val_loader && val_batches < cfg.log().val_batches() &&
      cfg.log().val_every_steps() > 0 && !options.eval_only) {
    log.Line(absl::StrFormat(
        "val: log.val_batches is %d, and the val set holds %d batches of "
        "B %d x T %d per rank: a val pass reads those %d",
        cfg.log().val_batches(), val_batches, B, T, val_batches));
  }
  log.Line(absl::StrFormat(
      "total batch %d tokens = B %d x T %d x world %d x grad accum %d",
      plan.total_batch_tokens, B, T, comm->world_size(), accum));
  log.Line(absl::StrCat("schedule: ", schedule.Describe()));
  if (world > 1) {
    log.Line(absl::StrFormat(
        "distributed: %d ranks, %s, %s%s", world, dcomm->name(),
        zero1
            ? absl::StrFormat(
                  "ZeRO-1: optimizer state sharded, %d params per rank",
                  shard.shard_size)
            : std::string("ZeRO-0: gradients all-reduced, full optimizer state "
                          "on every rank"),
        reduce_per_layer ? ", gradients reduced layer by layer during the "
                           "backward"
                         : ", gradients reduced after the backward"));
  }
  // The plan is what was allocated (the same lists), so the check was right.
  GPT2_CHECK(model.activation_bytes() == memory_plan.activations);
  GPT2_CHECK(optimizer.state_bytes() == memory_plan.optimizer);
  log.Line(absl::StrCat(
      "memory: ", DescribeMemoryPlan(memory_plan),
      zero1 ? absl::StrCat(" per rank (ZeRO-1: optimizer 1/", world, ")")
            : ""));
  log.Line(*memory_fit);

  // ---- Loop ----
  // The recorded step (GPT2_TRAIN_GRAPHS=1).
  std::optional<StepGraph> step_graph;
  if (train_graphs) step_graph.emplace(backend, &model, &optimizer);
  TrainStepParts step_parts;
  step_parts.backend = backend;
  step_parts.model = &model;
  step_parts.optimizer = &optimizer;
  step_parts.graph = step_graph ? &*step_graph : nullptr;
  step_parts.comm = dcomm;
  step_parts.world = world;
  step_parts.micro_batch = B;
  step_parts.seq_len = T;
  step_parts.accum = accum;
  step_parts.shard = shard;
  step_parts.zero1 = zero1;
  step_parts.reduce_per_layer = reduce_per_layer;
  step_parts.shard_grads = shard_grads;
  TrainStep train_step(step_parts);
  // Freed on every way out: the end, --eval, an error.
  absl::Cleanup free_buffers = [&] {
    if (own_shard_buffer) backend->Free(shard_grads);
  };
  // The val loss and HellaSwag of the model as it is.
  EvaluatorParts eval_parts;
  eval_parts.backend = backend;
  eval_parts.model = &model;
  eval_parts.graph = step_parts.graph;
  eval_parts.comm = comm;
  eval_parts.device_comm = dcomm;
  eval_parts.micro_batch = B;
  eval_parts.seq_len = T;
  eval_parts.val_loader = val_loader ? &*val_loader : nullptr;
  eval_parts.hellaswag = hellaswag ? &*hellaswag : nullptr;
  Evaluator evaluator(eval_parts);
  auto evaluate_hellaswag = [&](int64_t step) {
    const Evaluator::Scored scored = evaluator.HellaSwag(step);
    log.Line(scored.line);
    return scored.acc_norm;
  };

  TrainResult result;
  result.run_dir = run_dir;
  const int64_t max_steps = cfg.train().max_steps();
  // AdamW's bias-correction step. A non-finite step's update is skipped on the
  // device (the host learns of it a step later) but still counted here.
  int64_t updates_applied = progress.optimizer_steps;
  if (!resume_path.empty()) {
    log.Line(absl::StrFormat("resumed from %s at step %d (%d tokens seen)",
                             resume_path, progress.step, progress.tokens_seen));
    // What this run changes of the checkpoint's run, said (an lr may change
    // on purpose; a changed text or split is easy to miss).
    if (!progress.config_changes.empty()) {
      log.Line(absl::StrCat("config changed since the checkpoint: ",
                            absl::StrJoin(progress.config_changes, ", ")));
    }
    if (progress.train_tokens != 0 &&
        progress.train_tokens != train_loader.total_tokens()) {
      log.Line(absl::StrFormat(
          "warning: the training data holds %d tokens, and the checkpoint's "
          "run trained on %d: other data (or another split of it) from here "
          "on",
          train_loader.total_tokens(), progress.train_tokens));
    }
  } else if (!options.init_from.empty()) {
    log.Line(absl::StrCat("weights from ", options.init_from));
  }
  if (const std::string events = log.tensorboard_path(); !events.empty()) {
    log.Line(absl::StrCat("TensorBoard events: ", events,
                          " (tensorboard --logdir ", cfg.log().run_dir(), ")"));
  }
  if (!earlier_run.empty()) {
    log.Line(absl::StrCat(
        "warning: ", run_dir, " already holds a run (latest checkpoint ",
        earlier_run,
        "): this new run starts train.log and metrics.jsonl over, writes its "
        "own TensorBoard event file beside that run's (TensorBoard shows "
        "both) and saves its checkpoints beside that run's; --resume latest "
        "would have continued it, another log.run_name keeps them apart"));
  }
  auto save = [&](int64_t steps_done, double lr) -> absl::Status {
    if (step_graph) step_graph->Flush();
    TrainProgress now;
    now.step = steps_done;
    now.optimizer_steps = updates_applied;
    now.lr = lr;
    now.tokens_seen = steps_done * plan.total_batch_tokens;
    now.cursor = train_loader.cursor();
    now.train_tokens = train_loader.total_tokens();
    GPT2_ASSIGN_OR_RETURN(SaveReport saved,
                          SaveTrainingCheckpoint(run_dir, cfg, now, model,
                                                 optimizer, backend, comm));
    log.Line(absl::StrFormat("saved checkpoint %s (%.1f MiB in %.2f s)",
                             saved.path, saved.bytes / (1024.0 * 1024.0),
                             saved.seconds));
    return absl::OkStatus();
  };
  const int64_t save_every = cfg.checkpoint().every_steps();
  const bool interrupt_saves = cfg.checkpoint().save_at_end() || save_every > 0;
  int64_t last_saved = -1;
  double last_lr = progress.lr;
  bool stop = false;

  // train.stop_at_loss: the first step below it, and a run of such steps.
  LossTarget loss_target(
      cfg.train().stop_at_loss(), cfg.train().stop_after_steps_below(),
      cfg.train().stop_loss_tokens(), plan.total_batch_tokens);
  // Each step's loss and norm, read back a step late on an asynchronous
  // backend, and logged.
  StepReaderParts reader_parts;
  reader_parts.backend = backend;
  reader_parts.stats_dtype = model.stats_dtype();
  reader_parts.params = model.params();
  reader_parts.step_tokens = plan.total_batch_tokens;
  reader_parts.max_steps = max_steps;
  reader_parts.every_steps = cfg.log().every_steps();
  reader_parts.progress_every_seconds = cfg.log().progress_every_seconds();
  reader_parts.on_nan = cfg.train().on_nan();
  reader_parts.target = &loss_target;
  reader_parts.process_start = process_start;
  reader_parts.first_step = progress.step;
  StepReader reader(reader_parts);
  const auto finish_pending = [&] { reader.Finish(&log, &result, &stop); };

  // What comes before the first step (device, init, uploads) counts against
  // time-to-target runs: say how long it took.
  end_phase("other");
  std::string phases;
  for (const auto& [name, seconds] : startup_phases) {
    absl::StrAppend(&phases, phases.empty() ? "" : ", ", name, " ",
                    absl::StrFormat("%.2f", seconds));
  }
  log.Line(absl::StrFormat("start-up: %.1f s before the first step (%s s)",
                           SecondsSince(process_start), phases));
  // TensorBoard's Text tab shows each run's config and set-up beside its
  // curves (fenced: Markdown keeps the lines as they are).
  log.Text(progress.step, "run", "```\n" + log.TakeCapture() + "```\n");
  if (options.eval_only) {
    // The val pass alone, on the weights as loaded; nothing is trained or
    // saved. At most one pass over the val set (no window twice).
    if (!val_loader) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.config_path,
          ": --eval needs a val set (data.val_shards or data.val_tokens)"));
    }
    const int64_t batches = val_batches;
    result.val_loss = evaluator.ValLoss(val_batches, progress.step);
    if (!result.val_loss) {
      result.interrupted_by = evaluator.stopped_by();
      log.Line(absl::StrCat("eval: ", StopSignalName(evaluator.stopped_by()),
                            " received: stopped, no val loss"));
      return result;
    }
    log.Line(absl::StrFormat(
        "eval: val loss %.6f, perplexity %.3f, over %d tokens (%d batches of "
        "%d x %d per rank, %d rank%s%s); weights from %s",
        *result.val_loss, std::exp(*result.val_loss), batches * B * T * world,
        batches, B, T, world, world > 1 ? "s" : "",
        batches < cfg.log().val_batches()
            ? absl::StrCat("; the val set holds no more than ", batches)
            : "",
        !resume_path.empty() ? resume_path
        : !options.init_from.empty()
            ? options.init_from
            : absl::StrCat("the init (train.seed ", cfg.train().seed(), ")")));
    if (hellaswag) result.hellaswag = evaluate_hellaswag(progress.step);
    return result;
  }
  for (int64_t step = progress.step; step < max_steps && !stop; ++step) {
    const int val_every = cfg.log().val_every_steps();
    std::optional<double> val_loss;
    // Before step `step` trains: the weights after `step` updates (the final
    // ones get their pass after the loop).
    if (val_loader && val_every > 0 && step % val_every == 0) {
      finish_pending();
      if (stop) break;
      val_loss = evaluator.ValLoss(val_batches, step);
      if (!val_loss) {
        result.interrupted_by = evaluator.stopped_by();
        log.Line(absl::StrFormat(
            "%s received during the val pass before step %d: stopping%s",
            StopSignalName(evaluator.stopped_by()), step,
            interrupt_saves && result.steps_run > 0 ? " and saving a checkpoint"
                                                    : ""));
        break;
      }
      log.Line(absl::StrFormat("step %d | val loss: %.6f", step, *val_loss));
      reader.RestartClock(step);  // dt covers training only
    }
    const int hellaswag_every = cfg.log().hellaswag_every_steps();
    std::optional<double> hellaswag_acc;
    if (hellaswag && hellaswag_every > 0 && step % hellaswag_every == 0) {
      finish_pending();
      if (stop) break;
      hellaswag_acc = evaluate_hellaswag(step);
      reader.RestartClock(step);  // dt covers training only
    }
    InjectFaultForTests(step, comm->rank());
    InjectSignalForTests(step, comm->rank());
    const Tensor loss_sum = reader.loss_sum(step);
    const Tensor norm_squared = reader.norm_squared(step);
    // The first step of the process runs directly (its calls time kernels,
    // grow scratch and make cuBLASLt plans: nothing a recording may do).
    const bool replay =
        step_graph && step > progress.step && step_graph->ready();
    // What the first step's extra time is made of, on the host.
    if (step == progress.step) backend->TimeHostCalls(true);
    StepMetrics metrics;
    metrics.step = step;
    metrics.val_loss = val_loss;
    metrics.hellaswag = hellaswag_acc;
    metrics.lr = schedule.At(step);
    train_step.Queue(&train_loader, replay, loss_sum, norm_squared, metrics.lr,
                     ++updates_applied);
    backend->MarkStepEnd(step);
    if (step == progress.step) {
      for (const std::string& line : FirstStepReport(backend, memory_plan)) {
        log.Line(line);
      }
    }
    // Step `step` is queued; now read the one before it.
    finish_pending();
    reader.Queue(metrics);
    // A synchronous backend has already run the step: read it now, so its dt
    // and any stop decision belong to this step.
    if (!backend->asynchronous()) finish_pending();
    result.steps_run = step + 1 - progress.step;
    last_lr = metrics.lr;
    // (The last step's save is the one at the end, where the config has
    // one: tried once, and its failing fails the run.)
    if (save_every > 0 && (step + 1) % save_every == 0 &&
        !(step + 1 == max_steps && cfg.checkpoint().save_at_end())) {
      // A periodic save that fails (a full disk) costs that checkpoint, not
      // the run: the state is still here, the next save may succeed, and
      // `latest` still names the last complete one. (The save at the end
      // failing fails the run.)
      if (const absl::Status saved = save(step + 1, metrics.lr); saved.ok()) {
        last_saved = step + 1;
      } else {
        log.Line(absl::StrCat(
            "warning: ", saved.message(), "; training goes on (",
            step + 1 + save_every <= max_steps
                ? absl::StrCat("the next save at step ", step + 1 + save_every)
            : cfg.checkpoint().save_at_end()
                ? std::string("the next save at the end")
                : std::string("no save left"),
            "; --resume latest would go on from the newest complete "
            "checkpoint)"));
      }
      reader.TimeOnHost(step + 1);
    }
    // Stop here? Every rank must agree: each has its own clock and its own
    // signals, and a rank that stopped alone would leave the others waiting
    // in the next step's collectives.
    int stop_code = 0;
    if (cfg.train().max_seconds() > 0 &&
        SecondsSince(process_start) >= cfg.train().max_seconds()) {
      stop_code = kStopForTime;
    }
    if (const int signo = StopSignalReceived(); signo != 0) {
      stop_code = kStopForSignal + signo;
    }
    if (world > 1) stop_code = comm->AgreeMax(stop_code);
    if (stop_code >= kStopForSignal) {
      result.interrupted_by = stop_code - kStopForSignal;
      log.Line(
          absl::StrFormat("%s received: stopping after step %d%s",
                          StopSignalName(result.interrupted_by), step,
                          interrupt_saves ? " and saving a checkpoint" : ""));
      break;
    }
    if (stop_code == kStopForTime) {
      log.Line(absl::StrFormat(
          "time budget train.max_seconds = %g s reached after step %d",
          cfg.train().max_seconds(), step));
      break;
    }
  }
  finish_pending();
  if (step_graph) step_graph->Flush();
  // The val loss of the final weights, labelled with the updates made, as the
  // loop's passes are (not after a stop signal: out quickly; nor a non-finite
  // loss). Every rank takes part; all of them agree on how the loop ended.
  if (val_loader && cfg.log().val_every_steps() > 0 && result.steps_run > 0 &&
      result.interrupted_by == 0 && !reader.non_finite_stop()) {
    const int64_t updates = progress.step + result.steps_run;
    result.val_loss = evaluator.ValLoss(val_batches, updates);
    if (result.val_loss) {
      log.Line(absl::StrFormat("step %d | val loss: %.6f", updates,
                               *result.val_loss));
      log.FinalEval(updates, result.val_loss, std::nullopt);
    } else {
      result.interrupted_by = evaluator.stopped_by();
      log.Line(absl::StrFormat(
          "%s received during the final val pass: stopped, its val loss not "
          "measured",
          StopSignalName(evaluator.stopped_by())));
    }
  }
  // A run stopped early (a stop signal, or a non-finite loss under
  // train.on_nan: STOP) saves where the config saves at all (save_at_end or
  // every_steps), so that --resume latest goes on from where it stopped; after
  // a non-finite loss only if the weights themselves are finite (a blown-up lr
  // makes them inf before the loss): a restart point for a lower lr.
  bool weights_finite = true;
  if (reader.non_finite_stop())
    weights_finite = AllFinite(backend, model.params());
  const bool stopped_early =
      result.interrupted_by != 0 || reader.non_finite_stop().has_value();
  const int64_t steps_done = progress.step + result.steps_run;
  const bool save_now = stopped_early ? interrupt_saves && weights_finite
                                      : cfg.checkpoint().save_at_end();
  if (save_now && result.steps_run > 0 && last_saved != steps_done) {
    GPT2_RETURN_IF_ERROR(save(steps_done, last_lr));
    last_saved = steps_done;
  }
  // Such a run exits non-zero, and mpirun ends the whole job when the first
  // rank does: no rank leaves before rank 0 has committed the save.
  if (stopped_early && world > 1) comm->Barrier();
  if (const auto& non_finite_stop = reader.non_finite_stop()) {
    const std::string what =
        !interrupt_saves || result.steps_run == 0
            ? "nothing saved (the config saves no checkpoints)"
        : !weights_finite
            ? absl::StrCat(
                  "the weights are not finite either: not saved",
                  last_saved >= 0
                      ? absl::StrFormat(" (the last checkpoint, of step %d, "
                                        "is this run's latest)",
                                        last_saved)
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
  if (result.interrupted_by != 0 && result.steps_run == 0) {
    // Stopped in the val pass before this run's first step.
    log.Line(
        absl::StrFormat("interrupted by %s before this run's first step: "
                        "nothing trained, nothing saved",
                        StopSignalName(result.interrupted_by)));
  } else if (result.interrupted_by != 0 && interrupt_saves &&
             steps_done >= max_steps) {
    // Stopped in the final val pass: the training itself is done.
    log.Line(absl::StrFormat(
        "interrupted by %s after the last step, %d: the training is done and "
        "saved; --eval with --resume latest measures its val loss",
        StopSignalName(result.interrupted_by), steps_done));
  } else if (result.interrupted_by != 0 && interrupt_saves) {
    log.Line(absl::StrFormat(
        "interrupted by %s after %d steps; to go on: the same command with "
        "--resume latest",
        StopSignalName(result.interrupted_by), steps_done));
  }
  // HellaSwag on the final weights, once they are saved (every rank: they
  // sum their shares), unless the run was interrupted.
  if (hellaswag && result.steps_run > 0 && result.interrupted_by == 0) {
    InjectNamedSignalForTests("GPT2_TEST_SIGNAL_IN_HELLASWAG");
    result.hellaswag = evaluate_hellaswag(progress.step + result.steps_run);
    // A stop signal cut the pass short (its line counts the examples scored):
    // the run is saved; it ends as interrupted, without the samples.
    if (const int signo = StopSignalReceived(); signo != 0) {
      result.interrupted_by = signo;
      log.Line(absl::StrFormat(
          "%s received during the final HellaSwag pass: stopped; the "
          "checkpoint is saved",
          StopSignalName(signo)));
    } else {
      log.FinalEval(progress.step + result.steps_run, std::nullopt,
                    result.hellaswag);
    }
  }
  if (options.keep_final_params) result.final_params = model.GetParams();
  // Interrupted: out quickly, without the samples.
  if (rank0 && !final_samples.empty() && result.steps_run > 0 &&
      result.interrupted_by == 0) {
    const std::vector<double> params = model.GetParams();
    const absl::Status sampled = final_samples.Run(
        backend, choice.dtype, std::vector<float>(params.begin(), params.end()),
        progress.step + result.steps_run, run_dir,
        last_saved == progress.step + result.steps_run
            ? CheckpointPath(run_dir, last_saved)
            : "",
        &log);
    // The run itself succeeded and is saved: a failed sample is reported,
    // not turned into a failed run; a stop signal during sampling still ends
    // the process with 128 + the signal.
    if (absl::IsCancelled(sampled)) {
      log.Line(std::string(sampled.message()));
      result.interrupted_by = StopSignalReceived();
    } else if (!sampled.ok()) {
      log.Line(
          absl::StrCat("warning: the samples (log.sample_prompts) failed: ",
                       sampled.ToString()));
    }
  }
  log.Line(absl::StrFormat(
      "done: %d steps in %.1f s, final loss %.6f; logs in %s", result.steps_run,
      SecondsSince(process_start), result.final_loss, run_dir));
  if (rank0 && last_saved >= 0 && result.interrupted_by == 0) {
    log.Line(NextCommands(cfg, run_dir));
  }
  return result;
}

}  // namespace
}  // namespace gpt2
