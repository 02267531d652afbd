// The trainer end to end on the CUDA backend (label cuda_emu under the
// emulator, gpu on a GPU): a bf16 run follows the CPU's fp32 loss curve, and a
// checkpointed bf16 run resumes bitwise. The same Train() as every other run,
// with the CUDA-capable backend chooser.
#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "src/backend/device.h"
#include "src/backend/select.h"
#include "src/core/rng.h"
#include "src/data/token_shard.h"
#include "src/train/trainer.h"
#include "tests/test_util.h"

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
                                  const std::string& resume = "") {
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

  std::filesystem::path dir_;
};

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

}  // namespace
}  // namespace gpt2
