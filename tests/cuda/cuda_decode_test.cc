// KV-cache decoding on the CUDA backend against the CPU decoder (label cuda_emu
// under the emulator, gpu on a GPU): fp32 closely, bf16 within its precision.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#include "src/core/rng.h"
#include "src/infer/decoder.h"
#include "src/infer/generate.h"
#include "tests/test_util.h"

#if defined(GPT2_CUDA_EMULATED)
#include "src/cuda_emu/api.h"
#endif

namespace gpt2::infer {
namespace {

class CudaDecode : public ::testing::TestWithParam<DType> {};

TEST_P(CudaDecode, MatchesTheCpuDecoder) {
  std::string why;
  if (CudaDeviceCount(&why) == 0)
    GTEST_SKIP() << "no usable CUDA device: " << why;
  const ModelShape shape{2, 2, 32, 16, 100, 128};  // L NH C maxT V Vp
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

// Generate draws lookahead() tokens per wait for the device (16 here): the
// same samples, token for token, as one draw per wait, with rows that end at
// end-of-text in the middle of a batch of draws and a limit that is no
// multiple of 16.
TEST_P(CudaDecode, DrawingAheadGivesTheSameSamples) {
  std::string why;
  if (CudaDeviceCount(&why) == 0)
    GTEST_SKIP() << "no usable CUDA device: " << why;
  const ModelShape shape{2, 2, 32, 64, 100, 128};
  std::vector<double> p =
      testing::RandomVector(TotalParams(BuildParamList(shape)), 6, 0.1);
  for (double& x : p) x *= 8;  // peaked logits: some tokens recur
  const std::vector<float> params(p.begin(), p.end());
  auto backend = MakeCudaBackend(0);
  auto ahead = MakeBackendDecoder(backend.get(), GetParam(), shape, params, 3);
  ASSERT_EQ(ahead->lookahead(), 16);
  setenv("GPT2_DECODE_LOOKAHEAD", "1", 1);
  auto one = MakeBackendDecoder(backend.get(), GetParam(), shape, params, 3);
  unsetenv("GPT2_DECODE_LOOKAHEAD");
  ASSERT_EQ(one->lookahead(), 1);
  GenerateRequest r;
  r.prompt = {3, 14, 15};
  r.num_samples = 3;
  r.max_new_tokens = 37;
  r.sampling = {20, 1.0};
  r.seed = 77;
  r.stop_at_end_of_text = false;
  auto free_run = Generate(one.get(), r);
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  ASSERT_EQ(free_run->samples[1].tokens.size(), 37u);
  // The token row 1 draws 20th becomes end-of-text: rows stop where it comes.
  r.stop_at_end_of_text = true;
  r.end_of_text = free_run->samples[1].tokens[19];
  for (const int max_new : {37, 5}) {
    r.max_new_tokens = max_new;
    auto a = Generate(ahead.get(), r), b = Generate(one.get(), r);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(a->samples.size(), b->samples.size());
    for (size_t i = 0; i < a->samples.size(); ++i) {
      EXPECT_EQ(a->samples[i].tokens, b->samples[i].tokens) << i;
      EXPECT_EQ(a->samples[i].finish, b->samples[i].finish) << i;
    }
    EXPECT_EQ(a->new_tokens, b->new_tokens);
    if (max_new == 37) {
      EXPECT_EQ(a->samples[1].finish, FinishReason::kEndOfText);
      EXPECT_LE(a->samples[1].tokens.size(), 19u);
    }
  }
#if defined(GPT2_CUDA_EMULATED)
  // The waits themselves, under the emulator's lazy streams: those after which
  // the device may have nothing queued (it idles until the host queues more).
  // The host may also wait with positions still queued (the pinned staging
  // ring keeps it at most 8 positions ahead), which leaves the device busy.
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kLazy);
  r.stop_at_end_of_text = false;
  r.max_new_tokens = 37;
  auto idle_waits = [&](Decoder* decoder) {
    const cuda_emu::HostWaits before = cuda_emu::CountHostWaits();
    EXPECT_TRUE(Generate(decoder, r).ok());
    const cuda_emu::HostWaits after = cuda_emu::CountHostWaits();
    return (after.blocking - after.blocking_with_work_queued) -
           (before.blocking - before.blocking_with_work_queued);
  };
  const uint64_t ahead_waits = idle_waits(ahead.get());
  const uint64_t one_waits = idle_waits(one.get());
  cuda_emu::SetStreamOrder(cuda_emu::StreamOrder::kEager);
  EXPECT_EQ(ahead_waits, 3u) << "37 tokens drawn 16 a wait";
  EXPECT_EQ(one_waits, 37u) << "37 tokens drawn one a wait";
#endif
}

INSTANTIATE_TEST_SUITE_P(Types, CudaDecode,
                         ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace gpt2::infer
