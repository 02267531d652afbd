// Distributed training on the CUDA backend with two ranks sharing one GPU (run
// under mpirun -np 2; under the emulator in CI, labels cuda_emu and mpi, and on
// a real GPU as gpu.cuda_mpi_np2): the
// ranks reduce over MPI through host copies (NCCL refuses two ranks on one
// GPU), with ZeRO-1, and their loss curve matches a single process's: in
// fp32, bf16, and bf16 with the optimizer's whole state in bf16
// (optim.bf16_state: each rank's shard of bf16 moments, no masters).
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "gtest/gtest.h"
#include "src/backend/device.h"
#include "src/comm/mpi_env.h"
#include "src/core/rng.h"
#include "src/data/token_shard.h"
#include "src/train/trainer.h"
#include "tests/comm/mpi_test_main.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

MpiEnv* g_mpi = nullptr;

class CudaMpi : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string why;
    if (CudaDeviceCount(&why) == 0)
      GTEST_SKIP() << "no usable CUDA device: " << why;
    dir_ = testing::MakeTestDir("gpt2_cuda_mpi_test");
    const std::vector<uint16_t> tokens = testing::CyclicTokens(8000, 23, 31, 8);
    ASSERT_TRUE(WriteTokenShard((dir_ / "train.bin").string(), tokens).ok());
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  TrainResult Run(Communicator* comm, int world, const std::string& name,
                  bool per_layer = false) {
    auto config = *ParseConfigText(R"(
      model { num_layers: 2 num_heads: 2 channels: 32 max_seq_len: 16 vocab_size: 256 }
      data { train_shards: "train.bin" }
      train { seq_len: 16 total_batch_tokens: 128 max_steps: 6 device: CUDA }
      optim { lr: 3e-3 }
      schedule { warmup_steps: 2 min_lr: 3e-4 }
      distributed { zero_stage: 1 }
      checkpoint { save_at_end: false }
    )",
                                   "cuda_mpi_test.pbtxt");
    const std::string precision = GetParam();
    const bool bf16_state = precision == "BF16_STATE";
    for (const std::string& o :
         {"train.micro_batch_size=" + std::to_string(8 / world),
          "train.precision=" + (bf16_state ? std::string("BF16") : precision),
          "log.run_dir=" + (dir_ / "logs").string(), "log.run_name=" + name,
          std::string("distributed.reduce_during_backward=") +
              (per_layer ? "true" : "false")}) {
      EXPECT_TRUE(ApplyOverride(o, &config).ok()) << o;
    }
    if (bf16_state) config.mutable_optim()->set_bf16_state(true);
    LoadedConfig loaded;
    loaded.config = config;
    auto plan = ValidateConfig(config, world, "cuda_mpi_test.pbtxt");
    EXPECT_TRUE(plan.ok()) << plan.status();
    loaded.plan = *plan;
    TrainOptions options;
    options.config_path = "cuda_mpi_test.pbtxt";
    options.data_dir = dir_.string();
    options.comm = comm;
    options.choose_backend = &ChooseCudaOrCpuBackend;
    auto result = Train(loaded, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : TrainResult{};
  }
  std::filesystem::path dir_;
};

TEST_P(CudaMpi, RanksSharingAGpuMatchOneProcess) {
  auto comm = MakeMpiCommunicator(*g_mpi);
  const TrainResult alone =
      Run(nullptr, 1, "alone_r" + std::to_string(g_mpi->rank()));
  // Gradients reduced after the backward, and layer by layer during it.
  const TrainResult shared = Run(comm.get(), g_mpi->world_size(), "shared");
  const TrainResult layers =
      Run(comm.get(), g_mpi->world_size(), "shared_layers", true);
  const double rtol = std::string(GetParam()) == "FP32" ? 1e-5 : 2e-2;
  int64_t bad = alone.losses.size() != 6;
  for (const TrainResult* run : {&shared, &layers}) {
    bad += run->losses.size() != 6;
    for (size_t i = 0; i < std::min(alone.losses.size(), run->losses.size());
         ++i) {
      if (std::fabs(run->losses[i] - alone.losses[i]) >
          rtol * alone.losses[i]) {
        ++bad;
        ADD_FAILURE() << (run == &layers ? "per layer, " : "") << "step " << i
                      << ": " << run->losses[i] << " vs " << alone.losses[i];
      }
    }
  }
  int64_t total = 0;
  MPI_Allreduce(&bad, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(total, 0);
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaMpi,
                         ::testing::Values("FP32", "BF16", "BF16_STATE"));

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  return gpt2::testing::RunMpiTests(argc, argv, &gpt2::g_mpi);
}
