// gpt2_ddp: trains GPT-2 from a config. Without mpirun it is a world of one.
#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "src/backend/select.h"
#include "src/comm/mpi_env.h"
#ifdef GPT2_HAVE_CUDA
#include "src/comm/nccl_communicator.h"
#endif
#include "src/core/process_clock.h"
#include "src/core/stop_signal.h"
#include "src/core/threads.h"
#include "src/data/dataset.h"
#include "src/tools/cli_common.h"
#include "src/train/config.h"
#include "src/train/trainer.h"

ABSL_FLAG(std::string, config, "",
          "Run configuration, a protobuf text file (see configs/ and "
          "proto/config.proto). Required.");
ABSL_FLAG(std::string, set, "",
          "Override one config field, e.g. --set train.max_steps=20 or "
          "--set optim.lr=3e-4. Repeatable; applied in order after the file. "
          "A list field takes one value per --set: 'log.sample_prompts=ROMEO:' "
          "sets the list to that one ('log.sample_prompts=': none), "
          "'log.sample_prompts+=JULIET:' adds one.");
ABSL_FLAG(
    std::string, resume, "",
    "Continue a run from a checkpoint: a path, or 'latest' for the newest in "
    "<log.run_dir>/<log.run_name>/checkpoints. Any world size whose ranks "
    "split the run's total batch (train.total_batch_tokens / train.seq_len "
    "sequences) works: the total batch is kept.");
ABSL_FLAG(
    std::string, init_from, "",
    "Start from the weights of a checkpoint, an llm.c model file (e.g. GPT-2 "
    "124M from llm.c's scripts) or a Hugging Face GPT-2 (a folder with "
    "model.safetensors and config.json, e.g. openai-community/gpt2's), with a "
    "fresh optimizer: fine-tuning.");
ABSL_FLAG(bool, eval, false,
          "Only measure: the val loss and perplexity of the weights as loaded "
          "(--resume, --init_from, e.g. OpenAI's GPT-2 from a Hugging Face "
          "folder, or the init) over log.val_batches batches of the config's "
          "val set (at most all of it); nothing is trained and no "
          "checkpoint written (the result line is also added to the run's "
          "train.log).");
ABSL_FLAG(bool, plan, false,
          "Only plan: print the model, the batch arithmetic (tokens per step, "
          "gradient accumulation, steps per epoch) and the memory each rank "
          "needs (params, grads, optimizer state, activations) against the "
          "device's free memory, then exit; nothing is allocated or written. "
          "Every run makes the same memory check first and refuses, saying "
          "what would fit, when the run cannot fit.");
ABSL_FLAG(std::string, data_dir, "",
          "Data directory: config data paths are relative to it. Default: "
          "$GPT2_DATA_DIR, else ./data. It is only read, never written.");

int main(int argc, char** argv) {
  // Times "after process start" count from the process's start, before
  // main() (and before the re-exec below).
  const auto process_start = gpt2::ProcessStartTime();
  gpt2::UsePassiveOpenMpWait(argv);
  absl::SetProgramUsageMessage(
      "Trains GPT-2 from scratch.\n\n"
      "  gpt2_ddp --config configs/tiny_cpu.pbtxt --data_dir ../shared/data\n"
      "  gpt2_ddp --config FILE --set train.max_steps=100 --set optim.lr=1e-3\n"
      "  mpirun -np 4 gpt2_ddp --config FILE   (one rank per GPU or CPU "
      "process; each rank reads its share of every batch)\n\n"
      "Prints one line per step: step | loss | lr | dt | tok/sec | norm, and "
      "writes them to <log.run_dir>/<log.run_name>/train.log and "
      "metrics.jsonl, and as TensorBoard scalars to an event file there "
      "(tensorboard --logdir logs; log.tensorboard: false turns it off); "
      "checkpoints go to its checkpoints/ folder (checkpoint section), and "
      "when training ends the prompts of log.sample_prompts are continued by "
      "the final model into its samples.txt.\n\n"
      "Stopping: Ctrl-C, SIGTERM, SIGUSR1 or SIGHUP (the terminal closed; "
      "nohup keeps the run going) ends the run after the current "
      "step, with a checkpoint where the config saves at all (checkpoint."
      "save_at_end or every_steps), and exit status 128 + the signal; the same "
      "command with --resume latest goes on from it (during the final samples "
      "it stops them). Under mpirun send SIGUSR1 "
      "to mpirun (kill -USR1 PID): Open MPI passes it to every rank, whereas "
      "on Ctrl-C it kills the ranks a second after asking them to stop. A "
      "reader of the output that goes away (| head) does not end the run: "
      "train.log has every line.\n\n"
      "On a GPU, GPT2_* environment variables switch kernel versions and "
      "overlaps (e.g. GPT2_MATMUL_AUTOTUNE=1, GPT2_UPDATE_BESIDE=1); "
      "docs/gpu_runbook.md lists them, and the log's kernels line says which "
      "ran. A value a switch does not take is an error, a GPT2_* name no tool "
      "reads a warning.");
  std::string set_error;
  const std::vector<std::string> overrides =
      gpt2::TakeRepeatedFlag("set", &argc, argv, &set_error);
  if (!set_error.empty()) {
    return gpt2::ReportError("gpt2_ddp", absl::InvalidArgumentError(set_error));
  }
  if (const int rc = gpt2::ParseFlagsOnly("gpt2_ddp", argc, argv)) return rc;
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    return gpt2::ReportError(
        "gpt2_ddp",
        absl::InvalidArgumentError("--config FILE is required (see --help)"));
  }
  gpt2::MpiEnv& mpi = gpt2::MpiEnv::Init(&argc, &argv);
  gpt2::ShareCpusAmongLocalRanks(mpi.local_size());
  // A failed run's error: every rank's own (prefixed by its rank in a job of
  // several), an agreed one's echo on rank 0 only; a failure on one rank may
  // leave the others in a collective: it ends the whole job, unless the ranks
  // stopped together.
  const auto fail = [&mpi](const absl::Status& status) {
    const gpt2::ErrorScope scope = gpt2::ScopeOf(status);
    const std::string prefix =
        mpi.world_size() > 1 ? absl::StrCat("[rank ", mpi.rank(), "] gpt2_ddp")
                             : "gpt2_ddp";
    if (scope != gpt2::ErrorScope::kAgreedEcho || mpi.rank() == 0) {
      gpt2::ReportError(prefix.c_str(), status);
    }
    if (mpi.world_size() > 1 && scope == gpt2::ErrorScope::kLocal) {
      gpt2::MpiEnv::Abort(1);
    }
    return 1;
  };
  const auto loaded =
      gpt2::LoadConfig(config_path, overrides, mpi.world_size());
  std::unique_ptr<gpt2::Communicator> comm =
      mpi.world_size() > 1 ? gpt2::MakeMpiCommunicator(mpi)
                           : gpt2::MakeSingleRankCommunicator();
  // Every rank loaded the same config, with the same run flags (a rank that
  // could not, or whose differs, hung the job or trained another replica).
  const std::string run_flags =
      absl::StrCat("--resume=", absl::GetFlag(FLAGS_resume),
                   " --init_from=", absl::GetFlag(FLAGS_init_from),
                   " --eval=", absl::GetFlag(FLAGS_eval),
                   " --plan=", absl::GetFlag(FLAGS_plan));
  if (const absl::Status agreed = gpt2::AgreeOnConfig(*comm, loaded, run_flags);
      !agreed.ok()) {
    return fail(agreed);
  }
  gpt2::TrainOptions options;
  options.config_path = config_path;
  options.data_dir = gpt2::ResolveDataDir(absl::GetFlag(FLAGS_data_dir));
  options.comm = comm.get();
  options.resume = absl::GetFlag(FLAGS_resume);
  options.init_from = absl::GetFlag(FLAGS_init_from);
  options.eval_only = absl::GetFlag(FLAGS_eval);
  options.plan_only = absl::GetFlag(FLAGS_plan);
  options.process_start = process_start;
#ifdef GPT2_HAVE_CUDA
  options.choose_backend = &gpt2::ChooseCudaOrCpuBackend;
  options.make_device_comm = [](gpt2::Backend* backend) {
    return gpt2::MakeNcclCommunicator(gpt2::MpiEnv::Init(nullptr, nullptr),
                                      backend->cuda_stream());
  };
#endif
  // Ctrl-C / SIGTERM (Slurm's warning before a time limit, mpirun passing one
  // on) / SIGHUP (the terminal closed; not under nohup): stop after the
  // current step, save, and exit 128 + the signal. A reader of stdout that
  // goes away (`| head`, a tee killed) must not end the run: its lines still
  // go to train.log.
  std::signal(SIGPIPE, SIG_IGN);
  const auto& saving = loaded->config.checkpoint();
  const bool saves = saving.save_at_end() || saving.every_steps() > 0;
  // Under mpirun a signal may also be mpirun ending the job (a rank failed,
  // or its own Ctrl-C), which kills the ranks before they save: said.
  const std::string job_note =
      mpi.world_size() > 1
          ? " (unless mpirun is ending the job: a rank failed, or Ctrl-C on "
            "mpirun, which kills the ranks a second later; SIGUSR1 to mpirun "
            "stops them cleanly)"
          : "";
  gpt2::InstallStopSignals(
      mpi.rank() != 0 ? ""
      : saves
          ? absl::StrCat("\ngpt2_ddp: stopping after this step and saving a "
                         "checkpoint, or, once training is done, the final "
                         "samples",
                         job_note, " (send the signal again to quit at once)\n")
          : absl::StrCat("\ngpt2_ddp: stopping after this step (this config "
                         "saves no checkpoint: checkpoint.save_at_end and "
                         "every_steps are off), or, once training is done, the "
                         "final samples",
                         job_note,
                         " (send the signal again to quit at once)\n"));
  // A signal ignored from the start stays ignored (a background job of a
  // non-interactive shell ignores SIGINT): said, since kill -INT then does
  // nothing at all.
  if (const std::string ignored = gpt2::IgnoredStopSignals();
      !ignored.empty() && mpi.rank() == 0) {
    std::fprintf(stderr,
                 "gpt2_ddp: note: %s ignored when this process started (a "
                 "background job of a non-interactive shell ignores SIGINT) "
                 "and left so; stop the run with %s\n",
                 ignored.c_str(),
                 ignored.find("SIGTERM") == std::string::npos   ? "SIGTERM"
                 : ignored.find("SIGUSR1") == std::string::npos ? "SIGUSR1"
                                                                : "SIGHUP");
  }
  auto result = gpt2::Train(*loaded, options);
  if (!result.ok()) return fail(result.status());
  return result->interrupted_by != 0 ? 128 + result->interrupted_by : 0;
}
