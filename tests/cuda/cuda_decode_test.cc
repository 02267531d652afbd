// KV-cache decoding on the CUDA backend against the CPU decoder (label cuda_emu
// under the emulator, gpu on a GPU): fp32 closely, bf16 within its precision.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#include "src/core/rng.h"
#include "src/infer/decoder.h"
#include "tests/test_util.h"

namespace gpt2::infer {
namespace {

class CudaDecode : public ::testing::TestWithParam<DType> {};

TEST_P(CudaDecode, MatchesTheCpuDecoder) {
  std::string why;
  if (CudaDeviceCount(&why) == 0)
    GTEST_SKIP() << "no usable CUDA device: " << why;
  ModelShape shape;
  shape.num_layers = 2;
  shape.num_heads = 2;
  shape.channels = 32;
  shape.max_seq_len = 16;
  shape.vocab_size = 100;
  shape.padded_vocab_size = 128;
  std::vector<double> p =
      testing::RandomVector(TotalParams(BuildParamList(shape)), 5, 0.1);
  const std::vector<float> params(p.begin(), p.end());
  auto backend = MakeCudaBackend(0);
  auto gpu = MakeBackendDecoder(backend.get(), GetParam(), shape, params, 2);
  auto cpu = MakeCpuDecoder(shape, params, 2);
  const std::vector<int32_t> prompt = {3, 14, 15, 92};
  ASSERT_TRUE(gpu->Start(prompt, 2, 12).ok());
  ASSERT_TRUE(cpu->Start(prompt, 2, 12).ok());
  const double tol = GetParam() == DType::kF32 ? 1e-4 : 5e-2;
  Rng rng(2);
  for (int step = 0; step < 5; ++step) {
    double worst = 0;
    for (int b = 0; b < 2; ++b) {
      for (int v = 0; v < shape.vocab_size; ++v) {
        const double a = gpu->logits()[b * shape.padded_vocab_size + v];
        const double c = cpu->logits()[b * shape.padded_vocab_size + v];
        worst = std::max(worst, std::fabs(a - c) / (1 + std::fabs(c)));
      }
    }
    EXPECT_LE(worst, tol) << "step " << step;
    std::vector<int32_t> next = {static_cast<int32_t>(rng.NextU64() % 100),
                                 static_cast<int32_t>(rng.NextU64() % 100)};
    ASSERT_TRUE(gpu->Step(next).ok());
    ASSERT_TRUE(cpu->Step(next).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaDecode,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace gpt2::infer
