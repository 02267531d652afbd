// The trainer end to end on the CUDA backend (label cuda_emu under the
// emulator, gpu on a GPU): a bf16 run follows the CPU's fp32 loss curve, and a
// checkpointed bf16 run resumes bitwise. The same Train() as every other run,
// with the CUDA-capable backend chooser.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "src/backend/device.h"
#include "src/backend/select.h"
#include "src/ckpt/checkpoint.h"
#include "src/core/rng.h"
#include "src/data/token_shard.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"
#include "src/train/memory_plan.h"
#include "src/train/trainer.h"
#include "tests/test_util.h"

#if defined(GPT2_CUDA_EMULATED)
#include "src/cuda_emu/api.h"
#endif

namespace gpt2 {
namespace {

class CudaTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (CudaDeviceCount(&why) == 0)
      GTEST_SKIP() << "no usable CUDA device: " << why;
    dir_ = testing::MakeTestDir("gpt2_cuda_train_test");
    const std::vector<uint16_t> tokens = testing::CyclicTokens(6000, 17, 29, 8);
    ASSERT_TRUE(WriteTokenShard((dir_ / "train.bin").string(), tokens).ok());
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<TrainResult> Run(const std::string& device,
                                  const std::string& precision,
                                  const std::string& name,
                                  const std::string& resume = "",
                                  std::vector<std::string> extra = {}) {
    auto config = ParseConfigText(R"(
      model { num_layers: 2 num_heads: 2 channels: 32 max_seq_len: 16 vocab_size: 256 }
      data { train_shards: "train.bin" }
      train { micro_batch_size: 4 seq_len: 16 total_batch_tokens: 64 max_steps: 8 }
      optim { lr: 3e-3 }
      schedule { warmup_steps: 2 min_lr: 3e-4 }
      checkpoint { every_steps: 4 }
    )",
                                  "cuda_train_test.pbtxt");
    if (!config.ok()) return config.status();
    for (const std::string& o :
         {"train.device=" + device, "train.precision=" + precision,
          "log.run_dir=" + (dir_ / "logs").string(), "log.run_name=" + name}) {
      GPT2_RETURN_IF_ERROR(ApplyOverride(o, &*config));
    }
    for (const std::string& o : extra) {
      GPT2_RETURN_IF_ERROR(ApplyOverride(o, &*config));
    }
    LoadedConfig loaded;
    loaded.config = *config;
    GPT2_ASSIGN_OR_RETURN(loaded.plan,
                          ValidateConfig(*config, 1, "cuda_train_test.pbtxt"));
    TrainOptions options;
    options.config_path = "cuda_train_test.pbtxt";
    options.data_dir = dir_.string();
    options.choose_backend = &ChooseCudaOrCpuBackend;
    options.resume = resume;
    options.keep_final_params = true;
    return Train(loaded, options);
  }

  // Run `name`'s train.log.
  std::string Log(const std::string& name) const {
    std::ifstream log(dir_ / "logs" / name / "train.log");
    return std::string((std::istreambuf_iterator<char>(log)), {});
  }
  // `run` has `plain`'s losses and final weights, bit for bit, and `resumed`
  // (from run's step-4 checkpoint) the rest of them.
  static void ExpectSameRunAndResume(
      const absl::StatusOr<TrainResult>& plain,
      const absl::StatusOr<TrainResult>& run,
      const absl::StatusOr<TrainResult>& resumed) {
    ASSERT_TRUE(plain.ok()) << plain.status();
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ(run->losses, plain->losses);
    EXPECT_EQ(run->final_params, plain->final_params);
    ASSERT_EQ(resumed->losses.size(), 4u);
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(resumed->losses[i], plain->losses[4 + i]) << i;
    EXPECT_EQ(resumed->final_params, plain->final_params);
  }

  std::filesystem::path dir_;
};

// The memory plan the trainer checks before allocating is what the model and
// the optimizer take from the device (exactly, under the emulator, which
// counts bytes; within the driver's page rounding on a GPU), and a run logs the
// check and what the device holds after its first step.
TEST_F(CudaTrain, MemoryPlanIsWhatTheDeviceAllocates) {
  config::TrainConfig train;
  train.set_device(config::CUDA);
  train.set_precision(config::BF16);
  auto choice = ChooseCudaOrCpuBackend(train, 0);
  ASSERT_TRUE(choice.ok()) << choice.status();
  Backend* backend = choice->backend.get();
  // A few MB under the emulator (which counts bytes exactly); on a GPU a plan
  // of hundreds of MB, so that the driver's page rounding is small beside it.
  const bool emulated =
      backend->DeviceMemory().has_value() &&
      backend->DeviceMemory()->device.find("cuda_emu") != std::string::npos;
  const ModelShape shape = emulated ? ModelShape{3, 2, 64, 32, 300, 384}
                                    : ModelShape{4, 8, 512, 256, 50257, 50304};
  const int micro_batch = emulated ? 3 : 8;
  const int seq_len = emulated ? 32 : 256;
  for (const bool fp32_stream : {false, true}) {
    MemoryPlanInputs in;
    in.shape = shape;
    in.dtype = DType::kBF16;
    in.micro_batch = micro_batch;
    in.seq_len = seq_len;
    in.buffer_elems = TotalParams(BuildParamList(shape));
    in.optimizer_elems = in.buffer_elems;
    in.recompute_gelu = fp32_stream;
    in.residual_fp32 = fp32_stream;
    const auto before = backend->DeviceMemory();
    ASSERT_TRUE(before.has_value());
    int64_t taken = 0;
    {
      Gpt2Model model(backend, shape, DType::kBF16, micro_batch, seq_len, 0,
                      in.recompute_gelu, false, in.residual_fp32);
      AdamWOptimizer optimizer(backend, model.param_list(), DType::kBF16, {});
      taken = before->free_bytes - backend->DeviceMemory()->free_bytes;
    }
    const int64_t planned = PlanMemory(in).total();
    if (emulated) {
      EXPECT_EQ(taken, planned) << fp32_stream;
    } else {
      // The driver hands out memory in pages of up to 2 MiB (small
      // allocations may share one, and it may reserve more as it goes):
      // within 32 MiB and 5% of a plan of over 256 MiB. The proof run's
      // "device memory after the first step" line is the measurement.
      ASSERT_GT(planned, int64_t{256} << 20);
      EXPECT_LE(std::abs(taken - planned), (int64_t{32} << 20) + planned / 20)
          << "device took " << taken << " bytes, the plan says " << planned
          << (fp32_stream ? " (f32 residual stream)" : "");
    }
  }
  auto run = Run("CUDA", "BF16", "memory", "", {"train.max_steps=2"});
  ASSERT_TRUE(run.ok()) << run.status();
  std::ifstream log(dir_ / "logs/memory/train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("memory check: "), std::string::npos) << text;
  EXPECT_NE(text.find("device memory after the first step: "),
            std::string::npos)
      << text;
  // Where the first step's host time went, once: ops with their calls, and a
  // total.
  const size_t host = text.find(
      "first step, host time inside ops (launches, library set-up, kernels "
      "loaded on first use): ");
  ASSERT_NE(host, std::string::npos) << text;
  const std::string line = text.substr(host, text.find('\n', host) - host);
  EXPECT_NE(line.find(" ms in all"), std::string::npos) << line;
  EXPECT_NE(line.find(" ms (1 call"), std::string::npos) << line;
  EXPECT_EQ(text.find("first step, host time", host + 1), std::string::npos);
}

TEST_F(CudaTrain, Bf16RunFollowsTheCpuCurve) {
  auto cpu = Run("CPU", "FP32", "cpu");
  auto cuda = Run("CUDA", "BF16", "cuda_bf16");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  ASSERT_EQ(cuda->losses.size(), cpu->losses.size());
  for (size_t i = 0; i < cpu->losses.size(); ++i) {
    EXPECT_NEAR(cuda->losses[i], cpu->losses[i], 2e-2 * cpu->losses[i])
        << "step " << i;
  }
  EXPECT_LT(cuda->losses.back(), cuda->losses.front() - 0.3);
}

// On the asynchronous backend the host reads each step's loss a step late, so
// when the loss has stayed below train.stop_at_loss long enough one more step
// is already queued: the run still says "stopping" once. Every step's dt is a
// positive time (device marks after the first).
TEST_F(CudaTrain, StopsOnceAndTimesEveryStep) {
  auto plain = Run("CUDA", "FP32", "plain");
  ASSERT_TRUE(plain.ok()) << plain.status();
  const std::vector<double>& losses = plain->losses;
  ASSERT_EQ(losses.size(), 8u);
  const double target = (losses[2] + losses[5]) / 2;
  int since = -1, stop_step = -1;
  for (int i = 0; i < 8 && stop_step < 0; ++i) {
    if (losses[i] < target) {
      if (since < 0) since = i;
      if (i - since + 1 >= 2) stop_step = i;
    } else {
      since = -1;
    }
  }
  ASSERT_GE(stop_step, 0);
  ASSERT_LT(stop_step, 7) << "no step queued after the stop: nothing to test";
  auto run =
      Run("CUDA", "FP32", "streak", "",
          {"train.stop_at_loss=" + absl::StrFormat("%.17g", target),
           "train.stop_after_steps_below=2", "checkpoint.every_steps=0"});
  ASSERT_TRUE(run.ok()) << run.status();
  std::ifstream log(dir_ / "logs/streak/train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  int stopping = 0;
  for (size_t at = text.find("at every step since"); at != std::string::npos;
       at = text.find("at every step since", at + 1)) {
    ++stopping;
  }
  EXPECT_EQ(stopping, 1) << text;
  std::ifstream metrics(dir_ / "logs/streak/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    if (line.find("\"final\": true") != std::string::npos) continue;
    ++lines;  // a step's row
    const size_t at = line.find("\"dt_ms\": ");
    ASSERT_NE(at, std::string::npos) << line;
    EXPECT_GT(std::stod(line.substr(at + 9)), 0.0) << line;
  }
  EXPECT_GE(lines, stop_step + 1);
}

#if defined(GPT2_CUDA_EMULATED)
// The step is asynchronous on its stream: once a step the host waits for work
// the device may not have reached (the previous step's loss and norm, for the
// log line), and by then it has queued the next step behind it, so the device
// never idles on the host. Its other waits (pinned staging slots) are for work
// that wait already covered. Counted under the emulator's lazy streams, where
// queued work is visible (cuda_emu::CountHostWaits); the steps of a 10-step
// run beyond a 6-step one's are what a step costs (set-up and teardown are the
// same). With 4 staging slots this counted 3 such waits a step. The same with
// the step a replayed graph holding the last step's updates (its staged
// inputs, grouping and rate).
TEST_F(CudaTrain, HostWaitsOnceAStepWithTheNextStepQueued) {
  const cuda_emu::StreamOrder order = cuda_emu::CurrentStreamOrder();
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  for (const bool graphs : {false, true}) {
    if (graphs) {
      setenv("GPT2_TRAIN_GRAPHS", "1", 1);
      setenv("GPT2_UPDATE_BESIDE", "1", 1);
    }
    auto waits = [&](int steps) {
      const cuda_emu::HostWaits before = cuda_emu::CountHostWaits();
      auto run =
          Run("CUDA", "BF16", absl::StrFormat("waits%d_%d", steps, graphs), "",
              {"train.max_steps=" + std::to_string(steps),
               "checkpoint.every_steps=0", "checkpoint.save_at_end=false"});
      EXPECT_TRUE(run.ok()) << run.status();
      const cuda_emu::HostWaits after = cuda_emu::CountHostWaits();
      return cuda_emu::HostWaits{
          after.waits - before.waits, after.blocking - before.blocking,
          after.blocking_with_work_queued - before.blocking_with_work_queued};
    };
    waits(2);  // the process's first run also times kernels and allocates
    const cuda_emu::HostWaits six = waits(6), ten = waits(10);
    unsetenv("GPT2_TRAIN_GRAPHS");
    unsetenv("GPT2_UPDATE_BESIDE");
    if (graphs) {
      EXPECT_NE(Log("waits10_1").find("each with the last step's updates"),
                std::string::npos);
    }
    EXPECT_EQ(ten.blocking - six.blocking, 4u)
        << "host waits in 4 more steps for work the device may not have "
           "reached (graphs "
        << graphs << ")";
    EXPECT_EQ(ten.blocking_with_work_queued - six.blocking_with_work_queued, 4u)
        << "of those, waits with the next step already queued (graphs "
        << graphs << ")";
  }
  cuda_emu::SetStreamOrder(order);
}
#endif

// The trainer with GPT2_UPDATE_BESIDE=1 (updates beside the next forward):
// the same losses and final weights as without, bit for bit, and resuming
// from its checkpoint (written while updates may be pending: the download
// must wait for them) gives the rest of the run bitwise.
TEST_F(CudaTrain, UpdatesBesideKeepTheRunAndItsCheckpoints) {
  auto plain = Run("CUDA", "BF16", "plain");
  setenv("GPT2_UPDATE_BESIDE", "1", 1);
  auto beside = Run("CUDA", "BF16", "beside");
  const auto ckpt = dir_ / "logs/beside/checkpoints/step_00000004.ckpt";
  auto resumed = Run("CUDA", "BF16", "beside", ckpt.string());
  // With a device communicator (here NCCL asked for at world 1, through
  // host copies in this test) the trainer keeps the updates in place and
  // says so.
  auto with_comm = Run("CUDA", "BF16", "beside_comm", "",
                       {"distributed.comm=BACKEND_NCCL", "train.max_steps=2"});
  // With gradient accumulation (two micro-steps a step: the gradients are
  // zeroed after the first one's forward only).
  const std::vector<std::string> accum = {"train.total_batch_tokens=128",
                                          "train.max_steps=3",
                                          "checkpoint.every_steps=0"};
  auto beside_accum = Run("CUDA", "BF16", "beside_accum", "", accum);
  unsetenv("GPT2_UPDATE_BESIDE");
  auto plain_accum = Run("CUDA", "BF16", "plain_accum", "", accum);
  ASSERT_TRUE(beside_accum.ok()) << beside_accum.status();
  ASSERT_TRUE(plain_accum.ok()) << plain_accum.status();
  EXPECT_EQ(beside_accum->losses, plain_accum->losses);
  EXPECT_EQ(beside_accum->final_params, plain_accum->final_params);
  ExpectSameRunAndResume(plain, beside, resumed);
  EXPECT_NE(Log("beside").find("updates: beside the next forward"),
            std::string::npos)
      << Log("beside");
  ASSERT_TRUE(with_comm.ok()) << with_comm.status();
  EXPECT_NE(Log("beside_comm").find("GPT2_UPDATE_BESIDE=1 has no effect here"),
            std::string::npos)
      << Log("beside_comm");
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(with_comm->losses[i], plain->losses[i]) << i;
}

// The training step recorded as a graph and replayed (GPT2_TRAIN_GRAPHS=1):
// the same losses and weights as running its ops directly, bit for bit (the
// encoder backward's token grouping staged before each replay, the first step
// run directly), resumed from its checkpoint too; with gradient accumulation
// the switch says it does nothing and the run is unchanged.
TEST_F(CudaTrain, RecordedStepsKeepTheRun) {
  auto plain = Run("CUDA", "BF16", "plain");
  setenv("GPT2_TRAIN_GRAPHS", "1", 1);
  auto graphs = Run("CUDA", "BF16", "graphs");
  const auto ckpt = dir_ / "logs/graphs/checkpoints/step_00000004.ckpt";
  auto resumed = Run("CUDA", "BF16", "graphs", ckpt.string());
  const std::vector<std::string> accum = {"train.total_batch_tokens=128",
                                          "train.max_steps=2",
                                          "checkpoint.every_steps=0"};
  auto graphs_accum = Run("CUDA", "BF16", "graphs_accum", "", accum);
  unsetenv("GPT2_TRAIN_GRAPHS");
  auto plain_accum = Run("CUDA", "BF16", "plain_accum", "", accum);
  ExpectSameRunAndResume(plain, graphs, resumed);
  EXPECT_NE(Log("graphs").find("recorded as a graph"), std::string::npos);
  ASSERT_TRUE(graphs_accum.ok()) << graphs_accum.status();
  ASSERT_TRUE(plain_accum.ok()) << plain_accum.status();
  EXPECT_EQ(graphs_accum->losses, plain_accum->losses);
  EXPECT_NE(Log("graphs_accum").find("GPT2_TRAIN_GRAPHS=1 has no effect"),
            std::string::npos);
}

// Both switches (GPT2_TRAIN_GRAPHS=1, GPT2_UPDATE_BESIDE=1): each replay
// queues the last step's updates beside its forward, at the rate staged
// before it (the lr changes every step here); a checkpoint applies the
// deferred update first and the step after it runs directly. The same losses
// and weights as running every op directly, bit for bit, resumed too; with
// stochastic rounding (whose hash takes the staged step) and checkpoints
// every 3 steps but none at the end (the last update is still applied) as
// well. wte's rows the replay's batch gathers are updated first, its other
// rows last (the encoder waiting for the first only): with
// GPT2_UPDATE_ROWS_FIRST=0 (the whole of wte first) the same bits.
TEST_F(CudaTrain, RecordedStepsWithUpdatesBesideKeepTheRun) {
  const std::vector<std::string> sr = {"train.stochastic_rounding=true",
                                       "checkpoint.every_steps=3",
                                       "checkpoint.save_at_end=false"};
  auto plain = Run("CUDA", "BF16", "plain");
  auto plain_sr = Run("CUDA", "BF16", "plain_sr", "", sr);
  setenv("GPT2_TRAIN_GRAPHS", "1", 1);
  setenv("GPT2_UPDATE_BESIDE", "1", 1);
  auto both = Run("CUDA", "BF16", "both");
  const auto ckpt = dir_ / "logs/both/checkpoints/step_00000004.ckpt";
  auto resumed = Run("CUDA", "BF16", "both", ckpt.string());
  auto both_sr = Run("CUDA", "BF16", "both_sr", "", sr);
  setenv("GPT2_UPDATE_ROWS_FIRST", "0", 1);
  auto whole_wte = Run("CUDA", "BF16", "whole_wte", "", sr);
  unsetenv("GPT2_UPDATE_ROWS_FIRST");
  unsetenv("GPT2_TRAIN_GRAPHS");
  unsetenv("GPT2_UPDATE_BESIDE");
  ExpectSameRunAndResume(plain, both, resumed);
  EXPECT_NE(Log("both").find("each with the last step's updates beside its "
                             "forward (wte's rows the batch gathers first)"),
            std::string::npos)
      << Log("both");
  ASSERT_TRUE(whole_wte.ok()) << whole_wte.status();
  EXPECT_EQ(Log("whole_wte").find("gathers first"), std::string::npos);
  EXPECT_EQ(whole_wte->losses, plain_sr->losses);
  EXPECT_EQ(whole_wte->final_params, plain_sr->final_params);
  ASSERT_TRUE(plain_sr.ok()) << plain_sr.status();
  ASSERT_TRUE(both_sr.ok()) << both_sr.status();
  EXPECT_EQ(both_sr->losses, plain_sr->losses);
  EXPECT_EQ(both_sr->final_params, plain_sr->final_params);
}

TEST_F(CudaTrain, Fp32RunMatchesTheCpu) {
  auto cpu = Run("CPU", "FP32", "cpu32");
  auto cuda = Run("CUDA", "FP32", "cuda32");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  for (size_t i = 0; i < cpu->losses.size(); ++i) {
    EXPECT_NEAR(cuda->losses[i], cpu->losses[i], 1e-4 * cpu->losses[i])
        << "step " << i;
  }
}

TEST_F(CudaTrain, Bf16ResumeIsBitwise) {
  auto full = Run("CUDA", "BF16", "resume");
  ASSERT_TRUE(full.ok()) << full.status();
  const auto ckpt = dir_ / "logs/resume/checkpoints/step_00000004.ckpt";
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  auto resumed = Run("CUDA", "BF16", "resume", ckpt.string());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_EQ(resumed->losses.size(), 4u);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(resumed->losses[i], full->losses[4 + i]) << i;
  EXPECT_EQ(resumed->final_params, full->final_params);
}

// train.stochastic_rounding: the bf16 run still follows the fp32 CPU curve,
// its params differ from the round-to-nearest run's (the option does
// something), and resuming it is bitwise (the rounding hashes the step, not
// a stream that a restart would lose).
TEST_F(CudaTrain, StochasticRoundingFollowsTheCurveAndResumesBitwise) {
  const std::vector<std::string> sr = {"train.stochastic_rounding=true"};
  auto cpu = Run("CPU", "FP32", "cpu");
  auto nearest = Run("CUDA", "BF16", "nearest");
  auto full = Run("CUDA", "BF16", "sr", "", sr);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(nearest.ok()) << nearest.status();
  ASSERT_TRUE(full.ok()) << full.status();
  for (size_t i = 0; i < cpu->losses.size(); ++i) {
    EXPECT_NEAR(full->losses[i], cpu->losses[i], 2e-2 * cpu->losses[i])
        << "step " << i;
  }
  EXPECT_NE(full->final_params, nearest->final_params);
  const auto ckpt = dir_ / "logs/sr/checkpoints/step_00000004.ckpt";
  auto resumed = Run("CUDA", "BF16", "sr", ckpt.string(), sr);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(resumed->losses[i], full->losses[4 + i]) << i;
  EXPECT_EQ(resumed->final_params, full->final_params);
}

// optim.bf16_state (the optimizer's whole state in bf16: no masters, bf16
// moments, stochastic rounding): the run still follows the fp32 CPU curve,
// differs from the stochastic-rounding run with f32 state (the option does
// something), logs the state it keeps, checkpoints bf16 moments and no
// masters, and resumes bitwise (and from a checkpoint of the f32 state);
// recorded steps with the updates beside their forward (wte's gathered rows
// first) give the same bits.
TEST_F(CudaTrain, Bf16StateFollowsTheCurveAndResumesBitwise) {
  const std::vector<std::string> state = {"optim.bf16_state=true"};
  auto cpu = Run("CPU", "FP32", "cpu");
  auto sr = Run("CUDA", "BF16", "sr", "", {"train.stochastic_rounding=true"});
  auto full = Run("CUDA", "BF16", "state", "", state);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(sr.ok()) << sr.status();
  ASSERT_TRUE(full.ok()) << full.status();
  for (size_t i = 0; i < cpu->losses.size(); ++i) {
    EXPECT_NEAR(full->losses[i], cpu->losses[i], 2e-2 * cpu->losses[i])
        << "step " << i;
  }
  EXPECT_NE(full->final_params, sr->final_params);
  setenv("GPT2_TRAIN_GRAPHS", "1", 1);
  setenv("GPT2_UPDATE_BESIDE", "1", 1);
  auto recorded = Run("CUDA", "BF16", "state_recorded", "", state);
  unsetenv("GPT2_TRAIN_GRAPHS");
  unsetenv("GPT2_UPDATE_BESIDE");
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->losses, full->losses);
  EXPECT_EQ(recorded->final_params, full->final_params);
  std::ifstream log(dir_ / "logs/state/train.log");
  const std::string logged(std::istreambuf_iterator<char>(log), {});
  EXPECT_NE(logged.find("(optimizer state in bf16: no master weights)"),
            std::string::npos)
      << logged;
  const auto ckpt = dir_ / "logs/state/checkpoints/step_00000004.ckpt";
  auto reader = CheckpointReader::Open(ckpt.string());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_FALSE(reader->header().has_master_weights());
  EXPECT_EQ(reader->header().optimizer_dtype(), ckpt::DTYPE_BF16);
  auto resumed = Run("CUDA", "BF16", "state", ckpt.string(), state);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(resumed->losses[i], full->losses[4 + i]) << i;
  EXPECT_EQ(resumed->final_params, full->final_params);
  // A checkpoint of f32 moments and masters resumes with the state in bf16
  // (the moments rounded as they load, the params standing for the masters),
  // and goes on close to the run it came from.
  const auto sr_ckpt = dir_ / "logs/sr/checkpoints/step_00000004.ckpt";
  auto switched = Run("CUDA", "BF16", "switched", sr_ckpt.string(), state);
  ASSERT_TRUE(switched.ok()) << switched.status();
  ASSERT_EQ(switched->losses.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(switched->losses[i], sr->losses[4 + i],
                2e-2 * sr->losses[4 + i])
        << i;
  }
}

// log.sample_prompts on the device: the end-of-run samples decode on the
// backend that trained (the CUDA decoder, not the CPU's), start with their
// prompts, and repeat for the same seed.
TEST_F(CudaTrain, SamplesFromTheFinalModelOnTheDevice) {
  if (const std::string why = testing::LinkTokenizerInto(dir_); !why.empty())
    GTEST_SKIP() << why;
  const std::vector<std::string> sampling = {
      "model.vocab_size=50257",   "train.max_steps=2",
      "checkpoint.every_steps=0", "log.sample_prompts=ROMEO:",
      "log.samples_per_prompt=2", "log.sample_tokens=4"};
  std::string texts[2];
  for (int run = 0; run < 2; ++run) {
    const std::string name = "samples" + std::to_string(run);
    auto result = Run("CUDA", "BF16", name, "", sampling);
    ASSERT_TRUE(result.ok()) << result.status();
    std::ifstream in(dir_ / "logs" / name / "samples.txt");
    texts[run].assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(texts[0], texts[1]);
  const std::string& text = texts[0];
  const size_t second = text.find("\n======\nROMEO:");
  ASSERT_EQ(text.rfind("ROMEO:", 0), 0u) << text;
  ASSERT_NE(second, std::string::npos) << text;
  EXPECT_GT(second, 6u) << text;  // something after the prompt
  EXPECT_EQ(text.substr(text.size() - 8), "\n======\n") << text;
  std::ifstream log(dir_ / "logs/samples0/train.log");
  const std::string logged(std::istreambuf_iterator<char>(log), {});
  EXPECT_NE(logged.find("new tokens each; cuda"), std::string::npos) << logged;
}
}  // namespace
}  // namespace gpt2
