// The training loop end to end on small CPU runs: gradient accumulation matches
// one big batch, the log line and metrics formats, and bad data gives a clear
// error.
#include "src/train/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "proto/tensorboard.pb.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/export.h"
#include "src/core/rng.h"
#include "src/core/stop_signal.h"
#include "src/data/token_shard.h"
#include "src/train/run_log.h"
#include "src/train/tensorboard.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTestDir("gpt2_trainer_test");
    // A learnable stream (a cycle with 10% noise): the loss falls within the
    // few steps the tests run, whatever the init draws.
    const std::vector<uint16_t> tokens = testing::CyclicTokens(4000, 5, 29, 7);
    ASSERT_TRUE(WriteTokenShard((dir_ / "train.bin").string(), tokens).ok());
    ASSERT_TRUE(WriteTokenShard(
                    (dir_ / "val.bin").string(),
                    std::vector<uint16_t>(tokens.begin(), tokens.begin() + 600))
                    .ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  absl::StatusOr<TrainResult> RunEval(std::vector<std::string> overrides,
                                      const std::string& resume,
                                      const std::string& init_from) {
    return Run(std::move(overrides), resume, init_from, /*eval_only=*/true);
  }
  absl::StatusOr<TrainResult> Run(std::vector<std::string> overrides,
                                  const std::string& resume = "",
                                  const std::string& init_from = "",
                                  bool eval_only = false,
                                  bool plan_only = false) {
    const std::string text = R"(
      model { num_layers: 2 num_heads: 2 channels: 16 max_seq_len: 16 vocab_size: 256 }
      data { train_shards: "train.bin" val_shards: "val.bin" }
      train { micro_batch_size: 4 seq_len: 16 total_batch_tokens: 64 max_steps: 8
              precision: FP64 device: CPU }
      optim { lr: 1e-3 }
      schedule { warmup_steps: 2 min_lr: 1e-4 }
      log { val_every_steps: 4 val_batches: 2 }
    )";
    auto config = ParseConfigText(text, "test.pbtxt");
    if (!config.ok()) return config.status();
    overrides.push_back("log.run_dir=" + (dir_ / "logs").string());
    for (const auto& o : overrides) {
      absl::Status s = ApplyOverride(o, &*config);
      if (!s.ok()) return s;
    }
    LoadedConfig loaded;
    loaded.config = *config;
    auto plan = ValidateConfig(*config, 1, "test.pbtxt");
    if (!plan.ok()) return plan.status();
    loaded.plan = *plan;
    TrainOptions options;
    options.config_path = "test.pbtxt";
    options.data_dir = dir_.string();
    options.resume = resume;
    options.init_from = init_from;
    options.keep_final_params = true;
    options.eval_only = eval_only;
    options.plan_only = plan_only;
    return Train(loaded, options);
  }
  std::filesystem::path dir_;
};

TEST_F(TrainerTest, AccumulationMatchesOneLargeBatch) {
  auto big = Run({"log.run_name=big"});
  ASSERT_TRUE(big.ok()) << big.status();
  auto accum =
      Run({"log.run_name=accum", "train.micro_batch_size=1"});  // 4 micro-steps
  ASSERT_TRUE(accum.ok()) << accum.status();
  ASSERT_EQ(big->losses.size(), 8u);
  ASSERT_EQ(accum->losses.size(), 8u);
  for (size_t i = 0; i < big->losses.size(); ++i) {
    EXPECT_NEAR(accum->losses[i], big->losses[i], 1e-9 * big->losses[i])
        << "step " << i;
  }
  EXPECT_LT(big->losses.back(), big->losses.front() - 0.1);  // it learns
}

// A full disk, made by a file size limit (the logs stay under it, a
// checkpoint does not): a periodic save that fails is a warning and the run
// trains on, nothing half-written left; the save at the end failing fails the
// run, naming the step.
TEST_F(TrainerTest, APeriodicSaveThatFailsLeavesTheRunGoing) {
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit cap = old;
  cap.rlim_cur = 64 << 10;  // the checkpoint is ~250 KiB
  std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &cap), 0);
  auto periodic = Run({"log.run_name=full", "checkpoint.every_steps=4",
                       "checkpoint.save_at_end=false"});
  auto final_save = Run({"log.run_name=full_end", "checkpoint.every_steps=0",
                         "checkpoint.save_at_end=true"});
  auto both = Run({"log.run_name=full_both", "checkpoint.every_steps=4",
                   "checkpoint.save_at_end=true"});
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, SIG_DFL);

  ASSERT_TRUE(periodic.ok()) << periodic.status();
  EXPECT_EQ(periodic->losses.size(), 8u);
  const std::string log = testing::ReadFile(dir_ / "logs/full/train.log");
  for (const char* what :
       {"warning: saving the checkpoint at step 4 failed: ",
        "; training goes on (the next save at step 8; --resume latest",
        "warning: saving the checkpoint at step 8 failed: ",
        "; training goes on (no save left; --resume latest"}) {
    EXPECT_NE(log.find(what), std::string::npos) << what << "\n" << log;
  }
  EXPECT_NE(log.find(std::strerror(EFBIG)), std::string::npos) << log;
  const auto checkpoints = dir_ / "logs/full/checkpoints";
  EXPECT_TRUE(!std::filesystem::exists(checkpoints) ||
              std::filesystem::is_empty(checkpoints))
      << "a failed save left a file";
  ASSERT_FALSE(final_save.ok());
  EXPECT_NE(final_save.status().message().find(
                "saving the checkpoint at step 8 failed"),
            std::string::npos)
      << final_save.status();
  // The error is train.log's last line too (it went to stderr alone).
  const std::string end_log =
      testing::ReadFile(dir_ / "logs/full_end/train.log");
  EXPECT_NE(end_log.rfind("\nerror: saving the checkpoint at step 8 failed"),
            std::string::npos)
      << end_log;
  ASSERT_FALSE(end_log.empty());
  EXPECT_EQ(end_log.back(), '\n');
  EXPECT_EQ(end_log.find("\n", end_log.rfind("\nerror: ") + 1),
            end_log.size() - 1)
      << "the error is the last line";
  // The last step's periodic save is the save at the end, tried once (it
  // was tried twice, first with "training goes on").
  ASSERT_FALSE(both.ok());
  EXPECT_NE(
      both.status().message().find("saving the checkpoint at step 8 failed"),
      std::string::npos)
      << both.status();
  const std::string both_log =
      testing::ReadFile(dir_ / "logs/full_both/train.log");
  EXPECT_NE(both_log.find("warning: saving the checkpoint at step 4 failed"),
            std::string::npos)
      << both_log;
  EXPECT_EQ(both_log.find("warning: saving the checkpoint at step 8"),
            std::string::npos)
      << both_log;
}

TEST_F(TrainerTest, SameSeedSameLosses) {
  auto a = Run({"log.run_name=a", "train.precision=FP32"});
  auto b = Run({"log.run_name=b", "train.precision=FP32"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->losses, b->losses);  // bitwise: the CPU ops are deterministic
}

TEST_F(TrainerTest, WritesLogLinesAndMetrics) {
  auto result = Run({"log.run_name=fmt"});
  ASSERT_TRUE(result.ok()) << result.status();
  std::ifstream log(dir_ / "logs/fmt/train.log");
  std::string line;
  const std::regex step_line(
      R"(step (\d+) \| loss: \d+\.\d{6} \| lr: \d\.\d{4}e[-+]\d{2} \| dt: \d+\.\d{2}ms \| )"
      R"(tok/sec: \d+\.\d{2} \| norm: \d+\.\d{4})");
  int steps = 0, vals = 0;
  bool saw_header = false;
  while (std::getline(log, line)) {
    if (std::regex_match(line, step_line)) ++steps;
    if (line.find("| val loss: ") != std::string::npos) ++vals;
    if (line.find("num decayed parameter tensors: 10, with 10,496") == 0)
      saw_header = true;
  }
  EXPECT_EQ(steps, 8);
  EXPECT_EQ(vals, 3);  // steps 0, 4 and 8: the final weights
  EXPECT_TRUE(result->val_loss.has_value());
  EXPECT_NE(testing::ReadFile(dir_ / "logs/fmt/train.log")
                .find("step 8 | val loss: "),
            std::string::npos);
  EXPECT_TRUE(saw_header);
  std::ifstream metrics(dir_ / "logs/fmt/metrics.jsonl");
  const std::regex json_line(
      R"(\{"step": \d+, "loss": [-0-9.e+]+, "lr": [-0-9.e+]+, "norm": [-0-9.e+]+, )"
      R"("dt_ms": [-0-9.e+]+, "tok_per_sec": [-0-9.e+]+, "elapsed_s": [-0-9.e+]+)"
      R"((, "val_loss": [-0-9.e+]+)?\})");
  std::vector<std::string> rows;
  while (std::getline(metrics, line)) rows.push_back(line);
  // The step rows, then the final weights' val loss, after 8 updates: no
  // more.
  ASSERT_EQ(rows.size(), 9u)
      << testing::ReadFile(dir_ / "logs/fmt/metrics.jsonl");
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(std::regex_match(rows[i], json_line)) << rows[i];
  }
  const std::string& last = rows.back();
  EXPECT_EQ(last, FormatFinalJson(8, result->val_loss, std::nullopt));
  EXPECT_TRUE(std::regex_match(
      last, std::regex(R"(\{"step": 8, "final": true, "val_loss": [0-9.]+\})")))
      << last;
  // Progress lines: none at the default minute (the run takes less); with a
  // tiny interval one after every step, with the time left at the pace.
  EXPECT_EQ(testing::ReadFile(dir_ / "logs/fmt/train.log").find("progress:"),
            std::string::npos);
  auto often = Run({"log.run_name=often", "log.progress_every_seconds=1e-9"});
  ASSERT_TRUE(often.ok()) << often.status();
  std::ifstream often_log(dir_ / "logs/often/train.log");
  const std::regex progress_line(
      R"(progress: step (\d+) of 8 \((\d+)%\), \d+ s since start; about )"
      R"(\d+s left at \d+\.\d ms/step)");
  int progress = 0;
  while (std::getline(often_log, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, progress_line)) continue;
    EXPECT_EQ(std::stoi(m[1]), progress) << line;
    EXPECT_EQ(m[2].str(), absl::StrFormat("%.0f", 100.0 * (progress + 1) / 8))
        << line;
    ++progress;
  }
  EXPECT_EQ(progress, 8);
  EXPECT_FALSE(Run({"log.progress_every_seconds=-1"}).ok());
}

// The event files in a run folder.
std::set<std::string> EventFiles(const std::filesystem::path& run) {
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(run)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("events.out.tfevents.", 0) == 0) files.insert(entry.path());
  }
  return files;
}

// An event file's events; fails the test on a damaged one.
std::vector<tensorboard::Event> ReadEvents(const std::string& path) {
  std::vector<tensorboard::Event> events;
  auto records = ParseRecords(testing::ReadFile(path));
  EXPECT_TRUE(records.ok()) << records.status();
  if (!records.ok()) return events;
  for (const std::string& record : *records) {
    EXPECT_TRUE(events.emplace_back().ParseFromString(record)) << path;
  }
  return events;
}

// tag -> (step, value) of every scalar, in file order.
std::map<std::string, std::vector<std::pair<int64_t, float>>> ScalarsByTag(
    const std::vector<tensorboard::Event>& events) {
  std::map<std::string, std::vector<std::pair<int64_t, float>>> tags;
  for (const tensorboard::Event& e : events) {
    for (const auto& v : e.summary().value()) {
      tags[v.tag()].emplace_back(e.step(), v.simple_value());
    }
  }
  return tags;
}

// The step figures as TensorBoard scalars, the same as metrics.jsonl's; a
// resumed run starts a file of its own that marks its restart step.
TEST_F(TrainerTest, WritesTensorBoardEvents) {
  auto full = Run({"log.run_name=tb", "checkpoint.every_steps=4"});
  ASSERT_TRUE(full.ok()) << full.status();
  const std::filesystem::path run = dir_ / "logs/tb";
  const std::set<std::string> first_files = EventFiles(run);
  ASSERT_EQ(first_files.size(), 1u);
  const std::vector<tensorboard::Event> events =
      ReadEvents(*first_files.begin());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  auto tags = ScalarsByTag(events);
  ASSERT_EQ(tags["train/loss"].size(), 8u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(tags["train/loss"][i].first, i);
    EXPECT_EQ(tags["train/loss"][i].second, static_cast<float>(full->losses[i]))
        << "step " << i;
  }
  for (const char* tag : {"train/lr", "train/grad_norm", "train/step_ms",
                          "train/tokens_per_sec"}) {
    EXPECT_EQ(tags[tag].size(), 8u) << tag;
  }
  EXPECT_GT(tags["train/tokens_per_sec"][7].second, 0.0f);
  // The lr of the warmup's first step: lr / warmup_steps.
  EXPECT_FLOAT_EQ(tags["train/lr"][0].second, 5e-4f);
  // Val losses at steps 0 and 4 (log.val_every_steps) and of the final
  // weights, after 8 updates.
  ASSERT_EQ(tags["val/loss"].size(), 3u);
  EXPECT_EQ(tags["val/loss"][0].first, 0);
  EXPECT_EQ(tags["val/loss"][1].first, 4);
  EXPECT_EQ(tags["val/loss"][2].first, 8);
  EXPECT_EQ(tags["val/loss"][2].second, static_cast<float>(*full->val_loss));
  EXPECT_NE(testing::ReadFile(run / "train.log").find("TensorBoard events: "),
            std::string::npos);

  auto resumed = Run({"log.run_name=tb", "checkpoint.every_steps=4"},
                     (run / "checkpoints/step_00000004.ckpt").string());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  std::set<std::string> files = EventFiles(run);
  ASSERT_EQ(files.size(), 2u);
  for (const std::string& f : first_files) files.erase(f);
  ASSERT_EQ(files.size(), 1u);
  const std::vector<tensorboard::Event> again = ReadEvents(*files.begin());
  ASSERT_GE(again.size(), 2u);
  EXPECT_EQ(again[0].file_version(), "brain.Event:2");
  EXPECT_EQ(again[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(again[1].step(), 4);
  auto again_tags = ScalarsByTag(again);
  ASSERT_EQ(again_tags["train/loss"].size(), 4u);
  EXPECT_EQ(again_tags["train/loss"][0].first, 4);
  EXPECT_EQ(again_tags["train/loss"][3].first, 7);
  // The earlier file is as it was.
  EXPECT_EQ(ReadEvents(*first_files.begin()).size(), events.size());
  // metrics.jsonl: the first run's 8 steps and final row, then the resumed
  // run's restart row before its steps 4-7, and its own final row.
  std::vector<std::string> rows;
  {
    std::ifstream metrics(run / "metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) rows.push_back(line);
  }
  ASSERT_EQ(rows.size(), 8u + 1 + 1 + 4 + 1) << absl::StrJoin(rows, "\n");
  EXPECT_EQ(rows[8], FormatFinalJson(8, full->val_loss, std::nullopt));
  EXPECT_EQ(rows[9], FormatRestartJson(4));
  EXPECT_EQ(rows[9], R"({"step": 4, "restart": true})");
  EXPECT_EQ(rows[10].rfind(R"({"step": 4, "loss": )", 0), 0u) << rows[10];
  EXPECT_EQ(rows[14], FormatFinalJson(8, resumed->val_loss, std::nullopt));

  auto off = Run({"log.run_name=tb_off", "log.tensorboard=false"});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(EventFiles(dir_ / "logs/tb_off").empty());
  EXPECT_EQ(
      testing::ReadFile(dir_ / "logs/tb_off/train.log").find("TensorBoard"),
      std::string::npos);
}

TEST_F(TrainerTest, StopsAtTheTargetLoss) {
  auto result = Run({"log.run_name=stop", "train.stop_at_loss=100"});
  ASSERT_TRUE(result.ok());
  // The CPU backend reads each step's loss right after it: the run ends after
  // step 0. (On CUDA the read lags one step, so one more step runs.)
  EXPECT_EQ(result->steps_run, 1);
  EXPECT_EQ(result->losses.size(), 1u);
  std::ifstream log(dir_ / "logs/stop/train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("< 100 first at step 0"), std::string::npos) << text;
}

// With stop_after_steps_below the run goes on until the loss has stayed below
// the target for that many steps, and logs where that stretch began. The
// expected steps come from a plain run of the same (deterministic) config.
TEST_F(TrainerTest, StopsAfterTheLossStaysBelowTheTarget) {
  auto plain = Run({"log.run_name=plain"});
  ASSERT_TRUE(plain.ok());
  const std::vector<double>& losses = plain->losses;
  ASSERT_EQ(losses.size(), 8u);
  // A target the loss crosses midway: below it from some step on.
  const double target = (losses[2] + losses[5]) / 2;
  const int streak = 2;
  int first = -1, since = -1, stop_step = -1;
  for (int i = 0; i < 8 && stop_step < 0; ++i) {
    if (losses[i] < target) {
      if (first < 0) first = i;
      if (since < 0) since = i;
      if (i - since + 1 >= streak) stop_step = i;
    } else {
      since = -1;
    }
  }
  ASSERT_GE(stop_step, 0) << "the plain run never stays below " << target;
  auto result = Run({"log.run_name=streak",
                     "train.stop_at_loss=" + absl::StrFormat("%.17g", target),
                     "train.stop_after_steps_below=" + std::to_string(streak)});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->steps_run, stop_step + 1);
  std::ifstream log(dir_ / "logs/streak/train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("first at step " + std::to_string(first) + ","),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("at every step since step " + std::to_string(since) + " ("),
      std::string::npos)
      << text;
}

// train.stop_loss_tokens: the loss held against the target is the mean of the
// latest steps holding that many tokens (here 150 of 64 a step: 3 steps), so
// the run stops where that mean first goes below, not where one step's loss
// does; the log says which steps it averaged. Expected steps from a plain run.
TEST_F(TrainerTest, StopsWhenTheMeanOverTheTokensGoesBelow) {
  auto plain = Run({"log.run_name=plain"});
  ASSERT_TRUE(plain.ok());
  const std::vector<double>& l = plain->losses;
  ASSERT_EQ(l.size(), 8u);
  // Between step 4's own loss and the mean of steps 2-4 (the loss falls): one
  // step is below at step 4, the three-step mean only later.
  const double mean4 = (l[2] + l[3] + l[4]) / 3;
  ASSERT_LT(l[4], mean4);
  const double target = (l[4] + mean4) / 2;
  int single = -1, windowed = -1;
  for (int i = 0; i < 8; ++i) {
    if (single < 0 && l[i] < target) single = i;
    if (windowed < 0 && i >= 2 && (l[i - 2] + l[i - 1] + l[i]) / 3 < target)
      windowed = i;
  }
  ASSERT_GE(windowed, 0) << "the three-step mean never goes below " << target;
  ASSERT_LT(single, windowed);
  auto result = Run({"log.run_name=window",
                     "train.stop_at_loss=" + absl::StrFormat("%.17g", target),
                     "train.stop_loss_tokens=150"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps_run, windowed + 1);
  std::ifstream log(dir_ / "logs/window/train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("first at step " + std::to_string(windowed) + ","),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("(the mean of its last 3 steps, 192 tokens); stopping"),
            std::string::npos)
      << text;
  auto negative = Run({"log.run_name=neg", "train.stop_loss_tokens=-1"});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find(
                "train.stop_loss_tokens must be >= 0, got -1"),
            std::string::npos)
      << negative.status();
}

// An absurd learning rate blows the weights up until the loss is not finite.
TEST_F(TrainerTest, NonFiniteLossStopsOrSkipsPerPolicy) {
  const std::vector<std::string> blow_up = {
      "optim.lr=1e30", "schedule.min_lr=1e29", "schedule.warmup_steps=0",
      "train.precision=FP32"};
  // The lr blew the weights up before the loss: nothing worth saving.
  setenv("GPT2_TEST_NAN_AT", "2:weights", 1);
  auto stopped = Run({"train.precision=FP32", "log.run_name=nan_stop"});
  ASSERT_FALSE(stopped.ok());
  EXPECT_NE(stopped.status().message().find("is not finite; stopping"),
            std::string::npos)
      << stopped.status();
  EXPECT_NE(stopped.status().message().find(
                "the weights are not finite either: not saved."),
            std::string::npos)
      << stopped.status();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/nan_stop/checkpoints"));
  // The same after a periodic save: that checkpoint is named.
  auto after_save = Run({"train.precision=FP32", "log.run_name=nan_stop_saved",
                         "checkpoint.every_steps=1", "log.val_every_steps=0"});
  unsetenv("GPT2_TEST_NAN_AT");
  ASSERT_FALSE(after_save.ok());
  EXPECT_NE(after_save.status().message().find(
                "the weights are not finite either: not saved (the last "
                "checkpoint, of step 3, is this run's latest)"),
            std::string::npos)
      << after_save.status();
  auto skip = blow_up;
  skip.push_back("log.run_name=nan_skip");
  skip.push_back("train.on_nan=SKIP_STEP");
  auto skipped = Run(skip);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_EQ(skipped->steps_run, 8);
  EXPECT_GT(skipped->skipped_steps, 0);
}

// A non-finite loss with finite weights (an overflow in one step) stops the
// run with an error, after saving the weights as a restart point; the run
// resumes from them. Without checkpoints in the config nothing is written.
TEST_F(TrainerTest, NonFiniteStopSavesTheFiniteWeights) {
  setenv("GPT2_TEST_NAN_AT", "3", 1);
  auto stopped = Run({"log.run_name=nan_save", "train.precision=FP32"});
  auto unsaved = Run({"log.run_name=nan_nosave", "train.precision=FP32",
                      "checkpoint.save_at_end=false"});
  unsetenv("GPT2_TEST_NAN_AT");
  ASSERT_FALSE(stopped.ok());
  EXPECT_NE(stopped.status().message().find("step 3: the loss (nan)"),
            std::string::npos)
      << stopped.status();
  // Steps 0-3 ran (step 3's update is in: the NaN is only read on the host),
  // so the weights saved are those after 4 steps.
  EXPECT_NE(stopped.status().message().find(
                "the last finite weights are saved at step 4"),
            std::string::npos)
      << stopped.status();
  const std::filesystem::path ckpt =
      dir_ / "logs/nan_save/checkpoints/step_00000004.ckpt";
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  auto resumed =
      Run({"log.run_name=nan_save", "train.precision=FP32"}, ckpt.string());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->steps_run, 4);
  ASSERT_FALSE(unsaved.ok());
  EXPECT_NE(unsaved.status().message().find("nothing saved (the config"),
            std::string::npos)
      << unsaved.status();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/nan_nosave/checkpoints"));
  // A blown-up lr: weights huge but finite when the loss goes NaN (a sum of
  // their squares overflowed, and they were called not finite and not
  // saved), saved; and then not finite at all: not saved, the earlier
  // checkpoint named.
  auto huge = Run({"log.run_name=nan_huge", "train.precision=FP32",
                   "optim.lr=1e25", "optim.grad_clip=0",
                   "schedule.warmup_steps=0", "log.val_every_steps=0"});
  ASSERT_FALSE(huge.ok());
  const std::string why(huge.status().message());
  std::smatch at;
  ASSERT_TRUE(std::regex_search(
      why, at, std::regex("the last finite weights are saved at step (\\d+)")))
      << why;
  auto saved = CheckpointReader::Open(
      (dir_ / absl::StrFormat("logs/nan_huge/checkpoints/step_%08d.ckpt",
                              std::stoi(at[1])))
          .string());
  ASSERT_TRUE(saved.ok()) << saved.status();
  double sum_squares = 0;  // of the weights (not the optimizer's state)
  for (const TensorInfo& t : saved->tensors()) {
    if (t.name.find('/') != std::string::npos) continue;
    std::vector<double> values(t.numel);
    ASSERT_TRUE(
        saved->ReadTensor(t.name, DType::kF64, values.data(), t.numel).ok());
    for (double v : values) {
      ASSERT_TRUE(std::isfinite(v)) << t.name;
      sum_squares += v * v;
    }
  }
  EXPECT_GT(sum_squares, 3.5e38) << "squares whose sum overflows a float";
}

TEST_F(TrainerTest, ResumeIsBitwiseIdentical) {
  auto full = Run({"log.run_name=resume", "checkpoint.every_steps=4",
                   "train.precision=FP32"});
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(full->losses.size(), 8u);
  const std::string ckpt =
      (dir_ / "logs/resume/checkpoints/step_00000004.ckpt").string();
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  auto resumed = Run({"log.run_name=resume", "checkpoint.every_steps=4",
                      "train.precision=FP32"},
                     ckpt);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_EQ(resumed->losses.size(), 4u);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(resumed->losses[i], full->losses[4 + i]) << i;
  EXPECT_EQ(resumed->final_params, full->final_params);  // bitwise
  // "latest" names the end-of-run checkpoint, step 8: nothing is left to run,
  // and nothing is written (no TensorBoard file, no line in train.log).
  const auto count_files = [&] {
    int n = 0;
    for ([[maybe_unused]] const auto& e :
         std::filesystem::directory_iterator(dir_ / "logs/resume"))
      ++n;
    return n;
  };
  const int files_before = count_files();
  const auto log_size =
      std::filesystem::file_size(dir_ / "logs/resume/train.log");
  auto latest = Run({"log.run_name=resume", "train.precision=FP32"}, "latest");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->steps_run, 0);
  EXPECT_TRUE(latest->losses.empty());
  EXPECT_EQ(count_files(), files_before);
  EXPECT_EQ(std::filesystem::file_size(dir_ / "logs/resume/train.log"),
            log_size);
}

// SIGINT / SIGTERM / SIGUSR1 / SIGHUP: the step in flight finishes, a
// checkpoint is saved, the result names the signal, and --resume latest goes on
// exactly as an uninterrupted run would have. GPT2_TEST_SIGNAL_AT raises the
// signal inside the loop, as step 3 starts.
TEST_F(TrainerTest, StopsCleanlyOnASignalAndResumes) {
  // The last signal's flag must not stop the tests that run after this one
  // in the same process (ctest runs each alone; a plain run of the binary
  // does not).
  absl::Cleanup no_signal_left = [] { InstallStopSignals(""); };
  auto full = Run(
      {"log.run_name=whole", "train.precision=FP32", "log.val_every_steps=0"});
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->interrupted_by, 0);
  for (const int signo : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) {
    const std::string name = absl::StrCat("signalled", signo);
    InstallStopSignals("");
    setenv("GPT2_TEST_SIGNAL_AT", absl::StrCat("0:3:", signo).c_str(), 1);
    auto cut = Run({"log.run_name=" + name, "train.precision=FP32",
                    "log.val_every_steps=0"});
    unsetenv("GPT2_TEST_SIGNAL_AT");
    ASSERT_TRUE(cut.ok()) << cut.status();
    EXPECT_EQ(cut->interrupted_by, signo);
    ASSERT_EQ(cut->steps_run, 4);  // steps 0-3: step 3 was under way
    const std::filesystem::path run = dir_ / "logs" / name;
    EXPECT_TRUE(
        std::filesystem::exists(run / "checkpoints/step_00000004.ckpt"));
    const std::string log = testing::ReadFile(run / "train.log");
    EXPECT_NE(log.find(StopSignalName(signo) +
                       " received: stopping after step 3 and saving"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("--resume latest"), std::string::npos) << log;
    InstallStopSignals("");  // a fresh process: no signal received
    auto rest = Run({"log.run_name=" + name, "train.precision=FP32",
                     "log.val_every_steps=0"},
                    "latest");
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(rest->interrupted_by, 0);
    ASSERT_EQ(rest->losses.size(), 4u);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(cut->losses[i], full->losses[i]) << i;
      EXPECT_EQ(rest->losses[i], full->losses[4 + i]) << i;
    }
    EXPECT_EQ(rest->final_params, full->final_params);  // bitwise
  }
  // A run configured never to save stops all the same, and says nothing of a
  // checkpoint.
  InstallStopSignals("");
  setenv("GPT2_TEST_SIGNAL_AT", "0:1:2", 1);
  auto unsaved = Run({"log.run_name=unsaved", "checkpoint.save_at_end=false",
                      "log.val_every_steps=0"});
  unsetenv("GPT2_TEST_SIGNAL_AT");
  ASSERT_TRUE(unsaved.ok()) << unsaved.status();
  EXPECT_EQ(unsaved->steps_run, 2);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/unsaved/checkpoints"));
  const std::string log = testing::ReadFile(dir_ / "logs/unsaved/train.log");
  EXPECT_NE(log.find("SIGINT received: stopping after step 1\n"),
            std::string::npos)
      << log;
}

// A stop signal during a val pass stops it after the batch under way (on
// the CPU a pass of a large model takes minutes; the signal waited for the
// pass and the next step): the run saves where it stands and says so; in the
// final pass the training is done and saved; before any step nothing is;
// --eval gives no val loss. GPT2_TEST_SIGNAL_IN_VAL raises the signal after
// the first of the pass's two batches.
TEST_F(TrainerTest, StopsInAValPass) {
  absl::Cleanup no_signal_left = [] {
    unsetenv("GPT2_TEST_SIGNAL_IN_VAL");
    InstallStopSignals("");
  };
  const auto run_signalled = [&](const std::string& name, const char* at) {
    InstallStopSignals("");
    setenv("GPT2_TEST_SIGNAL_IN_VAL", at, 1);
    auto result = Run({"log.run_name=" + name, "log.val_every_steps=3"});
    unsetenv("GPT2_TEST_SIGNAL_IN_VAL");
    return result;
  };
  const std::filesystem::path logs = dir_ / "logs";
  // Before step 3: steps 0-2 trained and saved, no val loss of step 3.
  auto mid = run_signalled("val_mid", absl::StrCat("0:3:", SIGTERM).c_str());
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->interrupted_by, SIGTERM);
  EXPECT_EQ(mid->steps_run, 3);
  EXPECT_TRUE(
      std::filesystem::exists(logs / "val_mid/checkpoints/step_00000003.ckpt"));
  std::string log = testing::ReadFile(logs / "val_mid/train.log");
  EXPECT_NE(log.find("SIGTERM received during the val pass before step 3: "
                     "stopping and saving a checkpoint\n"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("step 0 | val loss"), std::string::npos) << log;
  EXPECT_EQ(log.find("step 3 | val loss"), std::string::npos) << log;
  EXPECT_NE(log.find("interrupted by SIGTERM after 3 steps; to go on"),
            std::string::npos)
      << log;
  // The final pass (after step 7, 8 updates): the training is done and saved.
  auto last = run_signalled("val_last", absl::StrCat("0:8:", SIGINT).c_str());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->interrupted_by, SIGINT);
  EXPECT_EQ(last->steps_run, 8);
  EXPECT_FALSE(last->val_loss.has_value());
  EXPECT_TRUE(std::filesystem::exists(
      logs / "val_last/checkpoints/step_00000008.ckpt"));
  log = testing::ReadFile(logs / "val_last/train.log");
  EXPECT_NE(log.find("SIGINT received during the final val pass: stopped, its "
                     "val loss not measured\n"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("step 8 | val loss"), std::string::npos) << log;
  EXPECT_NE(log.find("interrupted by SIGINT after the last step, 8: the "
                     "training is done and saved"),
            std::string::npos)
      << log;
  // Before the first step: nothing trained, nothing saved.
  auto first = run_signalled("val_first", absl::StrCat("0:0:", SIGINT).c_str());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->interrupted_by, SIGINT);
  EXPECT_EQ(first->steps_run, 0);
  EXPECT_FALSE(std::filesystem::exists(logs / "val_first/checkpoints"));
  log = testing::ReadFile(logs / "val_first/train.log");
  EXPECT_NE(log.find("SIGINT received during the val pass before step 0: "
                     "stopping\n"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("interrupted by SIGINT before this run's first step: "
                     "nothing trained, nothing saved"),
            std::string::npos)
      << log;
  // --eval on the step-3 checkpoint: no val loss, the signal named.
  InstallStopSignals("");
  setenv("GPT2_TEST_SIGNAL_IN_VAL", absl::StrCat("0:3:", SIGTERM).c_str(), 1);
  auto eval =
      RunEval({"log.run_name=val_mid", "log.val_every_steps=3"},
              (logs / "val_mid/checkpoints/step_00000003.ckpt").string(), "");
  unsetenv("GPT2_TEST_SIGNAL_IN_VAL");
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->interrupted_by, SIGTERM);
  EXPECT_FALSE(eval->val_loss.has_value());
  log = testing::ReadFile(logs / "val_mid/train.log");
  EXPECT_NE(log.find("eval: SIGTERM received: stopped, no val loss\n"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("eval: val loss"), std::string::npos) << log;
}

// --eval: the val pass alone on the weights as loaded. On a checkpoint it
// gives the val loss the training logged at that step (the pass before that
// step's update sees the same weights), and it trains and saves nothing.
// Every run checks its memory plan against the device's free memory before
// allocating: a run that cannot fit stops with the reason and a micro-batch
// that fits, having written nothing; one that fits says so in its log; a plan
// only (--plan) writes nothing either.
TEST_F(TrainerTest, ChecksMemoryBeforeAllocatingAnything) {
  auto fits = Run({"log.run_name=fits", "train.max_steps=1"});
  ASSERT_TRUE(fits.ok()) << fits.status();
  const std::string log = testing::ReadFile(dir_ / "logs/fits/train.log");
  EXPECT_NE(log.find("memory check: "), std::string::npos) << log;
  EXPECT_NE(log.find(" free on the host"), std::string::npos) << log;

  // Room for one sequence per micro-step, not the config's four.
  setenv("GPT2_TEST_FREE_MEMORY", "600000", 1);
  auto refused = Run({"log.run_name=refused"});
  auto planned = Run({"log.run_name=planned"}, "", "", false, true);
  setenv("GPT2_TEST_FREE_MEMORY", "1:100", 1);  // another rank's: ignored
  auto other_rank = Run({"log.run_name=other", "train.max_steps=1"});
  unsetenv("GPT2_TEST_FREE_MEMORY");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ScopeOf(refused.status()), ErrorScope::kAgreed);
  EXPECT_NE(refused.status().message().find("is free"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("train.micro_batch_size=1 "),
            std::string::npos)
      << refused.status();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/refused"));
  // The plan fails the same check, and writes nothing either way.
  EXPECT_FALSE(planned.ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/planned"));
  auto plan_fits = Run({"log.run_name=planned"}, "", "", false, true);
  ASSERT_TRUE(plan_fits.ok()) << plan_fits.status();
  EXPECT_EQ(plan_fits->steps_run, 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/planned"));
  ASSERT_TRUE(other_rank.ok()) << other_rank.status();
  EXPECT_EQ(ScopeOf(absl::InternalError("x")), ErrorScope::kLocal);
}

// A training run's val pass reads the val set at most once: more batches
// than it holds (it wrapped round and read the same tokens again, a slower
// pass whose loss depended on the count) are capped, and said.
TEST_F(TrainerTest, ValPassReadsTheValSetAtMostOnce) {
  auto many = Run({"log.run_name=valmany", "log.val_batches=1000",
                   "train.max_steps=2", "log.val_every_steps=1"});
  ASSERT_TRUE(many.ok()) << many.status();
  const std::string log = testing::ReadFile(dir_ / "logs/valmany/train.log");
  const std::regex note(
      "val: log.val_batches is 1000, and the val set holds (\\d+) batches of "
      "B 4 x T 16 per rank: a val pass reads those \\d+");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, note)) << log;
  const int held = std::stoi(m[1]);
  ASSERT_GT(held, 2);
  auto exact =
      Run({"log.run_name=valexact", absl::StrCat("log.val_batches=", held),
           "train.max_steps=2", "log.val_every_steps=1"});
  ASSERT_TRUE(exact.ok()) << exact.status();
  ASSERT_TRUE(many->val_loss.has_value() && exact->val_loss.has_value());
  EXPECT_EQ(*many->val_loss, *exact->val_loss);
  EXPECT_EQ(testing::ReadFile(dir_ / "logs/valexact/train.log")
                .find("val: log.val_batches"),
            std::string::npos);
}

TEST_F(TrainerTest, EvalOnlyMeasuresTheLoadedWeights) {
  auto run = Run({"log.run_name=evalrun", "checkpoint.every_steps=4",
                  "log.val_every_steps=4"});
  ASSERT_TRUE(run.ok()) << run.status();
  const std::string log_before =
      testing::ReadFile(dir_ / "logs/evalrun/train.log");
  const std::regex at4("step 4 \\| val loss: ([0-9.]+)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log_before, m, at4)) << log_before;
  const double logged = std::stod(m[1]);
  auto eval = [&](const std::string& resume, const std::string& init_from,
                  const std::vector<std::string>& more = {}) {
    std::vector<std::string> sets = {"log.run_name=evalrun",
                                     "log.val_every_steps=0",
                                     "log.val_batches=2"};  // as in training
    sets.insert(sets.end(), more.begin(), more.end());
    return RunEval(sets, resume, init_from);
  };
  const std::string ckpt =
      (dir_ / "logs/evalrun/checkpoints/step_00000004.ckpt").string();
  auto resumed = eval(ckpt, "");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_TRUE(resumed->val_loss.has_value());
  EXPECT_NEAR(*resumed->val_loss, logged, 1e-6 * logged);  // log has 6 places
  EXPECT_EQ(resumed->steps_run, 0);
  auto initialised = eval("", ckpt);
  ASSERT_TRUE(initialised.ok()) << initialised.status();
  EXPECT_EQ(*initialised->val_loss, *resumed->val_loss);
  // The log was appended to, not replaced, and no checkpoint was added.
  const std::string log_after =
      testing::ReadFile(dir_ / "logs/evalrun/train.log");
  EXPECT_EQ(log_after.rfind(log_before, 0), 0u);
  EXPECT_NE(log_after.find("eval: val loss"), std::string::npos) << log_after;
  EXPECT_NE(log_after.find("weights from " + ckpt), std::string::npos);
  int checkpoints = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(dir_ / "logs/evalrun/checkpoints")) {
    checkpoints += e.path().extension() == ".ckpt";
  }
  EXPECT_EQ(checkpoints, 2);  // steps 4 and 8, from the training
  // More batches than the val set holds: capped at one pass, and said.
  auto capped = eval(ckpt, "", {"log.val_batches=1000"});
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_NE(testing::ReadFile(dir_ / "logs/evalrun/train.log")
                .find("the val set holds no more than"),
            std::string::npos);
  // No val set: a clear error.
  auto no_val = RunEval(
      {"log.run_name=noval", "data.val_shards=", "log.val_every_steps=0"}, "",
      "");
  ASSERT_FALSE(no_val.ok());
  EXPECT_NE(no_val.status().message().find("--eval needs a val set"),
            std::string::npos)
      << no_val.status();
}

// optim.bf16_state keeps the optimizer state in bf16 beside bf16 params: on
// the CPU backend (fp32 params) it is a clear error naming the option and
// what it needs, before any training.
TEST_F(TrainerTest, Bf16StateNeedsBf16Params) {
  auto refused = Run({"log.run_name=state", "optim.bf16_state=true"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* part :
       {"optim.bf16_state keeps the optimizer state in bf16 beside bf16 "
        "params, but this run's params are f64",  // the test config's
        "(it needs train.precision BF16, on the CUDA backend)"}) {
    EXPECT_NE(refused.status().message().find(part), std::string::npos)
        << refused.status();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/state/metrics.jsonl"));
}

TEST_F(TrainerTest, ResumeAndInitFromErrors) {
  auto missing = Run({"log.run_name=none"}, "latest");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("latest"), std::string::npos)
      << missing.status();
  auto base = Run({"log.run_name=base", "train.max_steps=2"});
  ASSERT_TRUE(base.ok()) << base.status();
  const std::string ckpt =
      (dir_ / "logs/base/checkpoints/step_00000002.ckpt").string();
  // Another model shape cannot resume from it; the message names the tensor.
  auto shape = Run({"log.run_name=base2", "model.channels=32"}, ckpt);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("wte"), std::string::npos)
      << shape.status();
  // Another total batch would change the data order.
  auto batch =
      Run({"log.run_name=base3", "train.total_batch_tokens=128"}, ckpt);
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("total_batch_tokens"),
            std::string::npos);
  // What may change is said: the config's changed fields, and other training
  // data (it trained on silently).
  {
    auto changed = Run({"log.run_name=base_more", "train.max_steps=4",
                        "optim.lr=2e-3", "schedule.min_lr=2e-4"},
                       ckpt);
    ASSERT_TRUE(changed.ok()) << changed.status();
    const std::string log =
        testing::ReadFile(dir_ / "logs/base_more/train.log");
    EXPECT_NE(log.find("config changed since the checkpoint: train.max_steps "
                       "2 -> 4, optim.lr 0.001 -> 0.002, schedule.min_lr "
                       "0.0001 -> 0.0002, log.run_name \"base\" -> "
                       "\"base_more\"\n"),
              std::string::npos)
        << log;
    EXPECT_EQ(log.find("warning: the training data"), std::string::npos);
    const std::vector<uint16_t> other = testing::CyclicTokens(3000, 5, 29, 7);
    ASSERT_TRUE(WriteTokenShard((dir_ / "train.bin").string(), other).ok());
    auto other_data = Run({"log.run_name=base", "train.max_steps=3"}, ckpt);
    ASSERT_TRUE(other_data.ok()) << other_data.status();
    const std::string other_log =
        testing::ReadFile(dir_ / "logs/base/train.log");
    EXPECT_NE(other_log.find("warning: the training data holds 3000 tokens, "
                             "and the checkpoint's run trained on 4000"),
              std::string::npos)
        << other_log;
    EXPECT_NE(other_log.find("config changed since the checkpoint: "
                             "train.max_steps 2 -> 3\n"),
              std::string::npos)
        << other_log;
    ASSERT_TRUE(WriteTokenShard((dir_ / "train.bin").string(),
                                testing::CyclicTokens(4000, 5, 29, 7))
                    .ok());
  }
  // --init_from takes only the weights: step 0, fresh optimizer, same starting
  // params.
  auto init = Run({"log.run_name=init", "train.max_steps=1", "optim.lr=1e-12",
                   "schedule.min_lr=0", "optim.weight_decay=0"},
                  "", ckpt);
  ASSERT_TRUE(init.ok()) << init.status();
  ASSERT_EQ(init->final_params.size(), base->final_params.size());
  double max_diff = 0;
  for (size_t i = 0; i < base->final_params.size(); ++i) {
    max_diff = std::max(
        max_diff, std::fabs(init->final_params[i] - base->final_params[i]));
  }
  EXPECT_LT(max_diff, 1e-9);
  // The same weights through a Hugging Face folder (gpt2_ckpt export --format
  // hf): --init_from takes the folder.
  {
    auto reader = CheckpointReader::Open(ckpt);
    ASSERT_TRUE(reader.ok()) << reader.status();
    ASSERT_TRUE(ExportHf(&*reader, (dir_ / "hf").string(), "").ok());
  }
  auto from_hf =
      Run({"log.run_name=init_hf", "train.max_steps=1", "optim.lr=1e-12",
           "schedule.min_lr=0", "optim.weight_decay=0"},
          "", (dir_ / "hf").string());
  ASSERT_TRUE(from_hf.ok()) << from_hf.status();
  // fp32 in the folder: within fp32 rounding of the FP64 run's weights.
  max_diff = 0;
  for (size_t i = 0; i < base->final_params.size(); ++i) {
    max_diff = std::max(
        max_diff, std::fabs(from_hf->final_params[i] - base->final_params[i]));
  }
  EXPECT_LT(max_diff, 1e-6);
  EXPECT_GT(max_diff, 0.0);  // it did go through fp32
  // A folder of another shape is refused, naming what it holds.
  auto other = Run({"log.run_name=init_hf2", "model.channels=32"}, "",
                   (dir_ / "hf").string());
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("C=16"), std::string::npos)
      << other.status();
}

// log.sample_prompts: text from the final model in samples.txt (and the log),
// the same for the same seed; prompts that cannot run fail before training.
// log.hellaswag_file: HellaSwag scored with the training model at step 0,
// every hellaswag_every_steps (logged, and in metrics.jsonl) and on the final
// weights (logged); --eval scores it too; a model without GPT-2's vocabulary,
// or a bad file, stops the run before it trains.
TEST_F(TrainerTest, HellaSwagDuringTraining) {
  if (const std::string why = testing::LinkTokenizerInto(dir_); !why.empty())
    GTEST_SKIP() << why;
  std::ofstream(dir_ / "hs.jsonl")
      << R"({"ctx": "ROMEO: What light", "endings": ["through yonder window breaks?", "is that?", "goes there.", "and so on."], "label": 0})"
      << "\n"
      << R"({"ctx": "The cook", "endings": [" cracks an egg.", " sings.", " runs.", " eats"], "label": 2})"
      << "\n";
  const std::vector<std::string> sets = {"model.vocab_size=50257",
                                         "model.padded_vocab_size=50304",
                                         "log.hellaswag_file=hs.jsonl",
                                         "log.hellaswag_every_steps=3",
                                         "log.run_name=hs",
                                         "checkpoint.every_steps=4"};
  auto run = Run(sets);
  ASSERT_TRUE(run.ok()) << run.status();
  const std::string log = testing::ReadFile(dir_ / "logs/hs/train.log");
  const std::regex line(
      R"(step (\d+) \| hellaswag: acc_norm (0|1)\.\d{4}, acc (0|1)\.\d{4} )"
      R"(\(2 examples, [0-9.]+ s\))");
  std::vector<int> at;
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end;
       ++it) {
    at.push_back(std::stoi((*it)[1]));
  }
  EXPECT_EQ(at, (std::vector<int>{0, 3, 6, 8})) << log;  // 8: final weights
  EXPECT_NE(log.find("hellaswag: 2 examples from hs.jsonl, every 3 steps and "
                     "on the final weights"),
            std::string::npos)
      << log;
  ASSERT_TRUE(run->hellaswag.has_value());
  const std::string metrics = testing::ReadFile(dir_ / "logs/hs/metrics.jsonl");
  int with_score = 0;
  for (size_t p = metrics.find("\"hellaswag\": "); p != std::string::npos;
       p = metrics.find("\"hellaswag\": ", p + 1)) {
    ++with_score;
  }
  EXPECT_EQ(with_score, 4);  // steps 0, 3, 6, and the final weights' row:
  EXPECT_NE(metrics.find(FormatFinalJson(8, std::nullopt, run->hellaswag)),
            std::string::npos)
      << metrics;
  // A stop signal during the final pass: the pass stops, the run is saved and
  // ends as interrupted (with no samples configured, which would notice the
  // signal themselves).
  {
    std::vector<std::string> stopped = sets;
    stopped.push_back("log.run_name=hs_stop");
    InstallStopSignals("");  // the raised signal sets the flag, as in gpt2_ddp
    setenv("GPT2_TEST_SIGNAL_IN_HELLASWAG", std::to_string(SIGTERM).c_str(), 1);
    auto run_stopped = Run(stopped);
    unsetenv("GPT2_TEST_SIGNAL_IN_HELLASWAG");
    InstallStopSignals("");  // no signal left for the tests after this one
    ASSERT_TRUE(run_stopped.ok()) << run_stopped.status();
    EXPECT_EQ(run_stopped->interrupted_by, SIGTERM);
    const std::string text = testing::ReadFile(dir_ / "logs/hs_stop/train.log");
    EXPECT_NE(text.find("step 8 | hellaswag: acc_norm 0.0000, acc 0.0000 (0 "
                        "examples"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("SIGTERM received during the final HellaSwag pass"),
              std::string::npos)
        << text;
    EXPECT_TRUE(std::filesystem::exists(
        dir_ / "logs/hs_stop/checkpoints/step_00000008.ckpt"));
  }
  auto eval = RunEval(
      sets, (dir_ / "logs/hs/checkpoints/step_00000008.ckpt").string(), "");
  ASSERT_TRUE(eval.ok()) << eval.status();
  ASSERT_TRUE(eval->hellaswag.has_value());
  EXPECT_GE(*eval->hellaswag, 0.0);
  EXPECT_LE(*eval->hellaswag, 1.0);
  // The test model's vocabulary (256) is not GPT-2's; a file that is not
  // HellaSwag's: both refused before any step.
  auto small = Run({"log.hellaswag_file=hs.jsonl", "log.run_name=small"});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("needs GPT-2's vocabulary"),
            std::string::npos)
      << small.status();
  std::ofstream(dir_ / "bad.jsonl") << "{\"ctx\": 1}\n";
  std::vector<std::string> bad = sets;
  bad.push_back("log.hellaswag_file=bad.jsonl");
  bad.push_back("log.run_name=bad");
  auto refused = Run(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("bad.jsonl:1"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/bad"));
}

TEST_F(TrainerTest, SamplesFromTheFinalModel) {
  if (const std::string why = testing::LinkTokenizerInto(dir_); !why.empty())
    GTEST_SKIP() << why;
  const std::vector<std::string> gpt2_vocab = {
      "model.vocab_size=50257",    "model.padded_vocab_size=50304",
      "log.sample_prompts=ROMEO:", "log.sample_prompts+=JULIET:",
      "log.samples_per_prompt=2",  "log.sample_tokens=5"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), gpt2_vocab.begin(), gpt2_vocab.end());
    return more;
  };
  auto read = [&](const std::string& run) {
    std::ifstream in(dir_ / "logs" / run / "samples.txt");
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ASSERT_TRUE(Run(with({"log.run_name=s1"})).ok());
  const std::string text = read("s1");
  std::vector<std::string> samples;
  for (size_t at = 0, end;
       (end = text.find("\n======\n", at)) != std::string::npos; at = end + 8) {
    samples.push_back(text.substr(at, end - at));
  }
  ASSERT_EQ(samples.size(), 4u) << text;
  for (int i = 0; i < 4; ++i) {
    const std::string prompt = i < 2 ? "ROMEO:" : "JULIET:";
    EXPECT_EQ(samples[i].rfind(prompt, 0), 0u) << samples[i];
    EXPECT_GT(samples[i].size(), prompt.size()) << samples[i];
  }
  std::ifstream log(dir_ / "logs/s1/train.log");
  const std::string logged(std::istreambuf_iterator<char>(log), {});
  EXPECT_NE(logged.find("samples from the model after step 8"),
            std::string::npos);
  EXPECT_NE(logged.find(samples[3]), std::string::npos);
  // The same samples in the event file, for TensorBoard's Text tab: one text
  // tensor under "samples" at step 8, each sample in a fenced block; and
  // before the first step the run's header (config, set-up) under "run".
  const std::set<std::string> events = EventFiles(dir_ / "logs/s1");
  ASSERT_EQ(events.size(), 1u);
  int texts = 0, runs = 0;
  for (const tensorboard::Event& e : ReadEvents(*events.begin())) {
    for (const auto& v : e.summary().value()) {
      if (!v.has_tensor()) continue;
      if (v.tag() == "run") {
        ++runs;
        EXPECT_EQ(e.step(), 0);
        EXPECT_EQ(v.metadata().plugin_data().plugin_name(), "text");
        ASSERT_EQ(v.tensor().string_val_size(), 1);
        const std::string& header = v.tensor().string_val(0);
        EXPECT_EQ(header.rfind("```\ngpt2_ddp | config ", 0), 0u) << header;
        EXPECT_NE(header.find("run_name: \"s1\""), std::string::npos) << header;
        EXPECT_NE(header.find("\nmodel: L="), std::string::npos) << header;
        EXPECT_NE(header.find("\nstart-up: "), std::string::npos) << header;
        EXPECT_EQ(header.find("| loss:"), std::string::npos) << header;
        EXPECT_EQ(header.substr(header.size() - 5), "\n```\n");
        continue;
      }
      ++texts;
      EXPECT_EQ(v.tag(), "samples");
      EXPECT_EQ(e.step(), 8);
      EXPECT_EQ(v.metadata().plugin_data().plugin_name(), "text");
      EXPECT_EQ(v.tensor().dtype(), tensorboard::DT_STRING);
      ASSERT_EQ(v.tensor().string_val_size(), 1);
      std::string want;
      for (const std::string& s : samples) want += "```\n" + s + "\n```\n\n";
      EXPECT_EQ(v.tensor().string_val(0), want);
    }
  }
  EXPECT_EQ(texts, 1);
  EXPECT_EQ(runs, 1);
  ASSERT_TRUE(Run(with({"log.run_name=s2"})).ok());
  EXPECT_EQ(read("s2"), text);  // same seed, same text
  // A stop signal while sampling (Ctrl-C) stops the samples, writes none, and
  // the run ends as interrupted (exit 128 + the signal), its checkpoint saved.
  InstallStopSignals("");
  setenv("GPT2_TEST_SIGNAL_IN_SAMPLES", "2", 1);
  auto cut = Run(with({"log.run_name=s4"}));
  unsetenv("GPT2_TEST_SIGNAL_IN_SAMPLES");
  InstallStopSignals("");  // leave no flag for the rest
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->interrupted_by, SIGINT);
  EXPECT_EQ(cut->steps_run, 8);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/s4/samples.txt"));
  EXPECT_NE(testing::ReadFile(dir_ / "logs/s4/train.log")
                .find("SIGINT received: the samples were stopped (none "
                      "written)"),
            std::string::npos);
  EXPECT_TRUE(
      std::filesystem::exists(dir_ / "logs/s4/checkpoints/step_00000008.ckpt"));
  // Samples that fail after training (here samples.txt cannot be written) are
  // a warning: the run itself succeeded and is saved.
  std::filesystem::create_directories(dir_ / "logs/s3/samples.txt");
  ASSERT_TRUE(Run(with({"log.run_name=s3"})).ok());
  std::ifstream log3(dir_ / "logs/s3/train.log");
  const std::string logged3(std::istreambuf_iterator<char>(log3), {});
  EXPECT_NE(logged3.find("warning: the samples (log.sample_prompts) failed: "),
            std::string::npos)
      << logged3;
  EXPECT_NE(logged3.find("cannot write"), std::string::npos);
  // ...and the samples themselves still reach the console and train.log.
  const size_t samples_at = logged3.find("samples from the model after step");
  ASSERT_NE(samples_at, std::string::npos) << logged3;
  EXPECT_NE(logged3.find("======\n", samples_at), std::string::npos) << logged3;
  EXPECT_LT(samples_at, logged3.find("warning: the samples"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "logs/s3/checkpoints"));

  auto error = [&](std::vector<std::string> overrides) {
    auto result = Run(std::move(overrides));
    EXPECT_FALSE(result.ok());
    return std::string(result.status().message());
  };
  EXPECT_NE(error({"log.sample_prompts=ROMEO:"})
                .find("this model's model.vocab_size is 256"),
            std::string::npos);
  std::vector<std::string> long_run = with({"log.run_name=long"});
  long_run.push_back(
      "log.sample_prompts+=To be, or not to be, that is the question: whether "
      "'tis nobler in the mind to suffer");
  const std::string long_prompt = error(long_run);
  EXPECT_NE(long_prompt.find("leaves no room"), std::string::npos)
      << long_prompt;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/long/checkpoints"));
  std::filesystem::remove(dir_ / "gpt2");
  EXPECT_NE(error(with({})).find("needs GPT-2's tokenizer"), std::string::npos);
}

TEST_F(TrainerTest, BadDataIsAClearError) {
  auto missing = Run({"log.run_name=x", "data.train_shards=nope_*.bin"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no token shards match"),
            std::string::npos);
  auto small = Run({"log.run_name=y", "train.total_batch_tokens=4096"});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("one step needs 4097"),
            std::string::npos)
      << small.status();
  auto vocab = Run({"log.run_name=z", "model.vocab_size=100"});
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.status().message().find("outside the vocab"),
            std::string::npos);
}

}  // namespace
}  // namespace gpt2
