// The decoder written over the Backend interface, on the CPU backend, against
// the CPU decoder (which the decoder tests hold to the training model's full
// forward): the same logits after the prompt and after every step, for several
// rows with different tokens.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/backend.h"
#include "src/core/rng.h"
#include "src/infer/decoder.h"
#include "tests/test_util.h"

namespace gpt2::infer {
namespace {

ModelShape SmallShape() {
  ModelShape s;
  s.num_layers = 2;
  s.num_heads = 2;
  s.channels = 16;
  s.max_seq_len = 12;
  s.vocab_size = 50;
  s.padded_vocab_size = 64;
  return s;
}

std::vector<float> RandomParams(const ModelShape& shape, uint64_t seed) {
  std::vector<double> p =
      testing::RandomVector(TotalParams(BuildParamList(shape)), seed, 0.3);
  return std::vector<float>(p.begin(), p.end());
}

TEST(BackendDecoder, MatchesTheCpuDecoderStepByStep) {
  const ModelShape shape = SmallShape();
  const std::vector<float> params = RandomParams(shape, 3);
  auto backend = MakeCpuBackend();
  auto ours = MakeBackendDecoder(backend.get(), DType::kF32, shape, params, 4);
  auto reference = MakeCpuDecoder(shape, params, 4);
  const std::vector<int32_t> prompt = {7, 1, 33};
  ASSERT_TRUE(ours->Start(prompt, 3, 10).ok());
  ASSERT_TRUE(reference->Start(prompt, 3, 10).ok());
  Rng rng(9);
  for (int step = 0; step <= 6; ++step) {
    const int n = 3 * shape.padded_vocab_size;
    int bad = 0;
    for (int i = 0; i < n; ++i) {
      const float a = ours->logits()[i], b = reference->logits()[i];
      if (std::isinf(b)) {
        bad += !(std::isinf(a) && a < 0);  // padded entries
      } else {
        bad += !(std::fabs(a - b) <= 1e-4 * (1 + std::fabs(b)));
      }
    }
    ASSERT_EQ(bad, 0) << "step " << step;
    if (step == 6) break;
    std::vector<int32_t> next(3);
    for (auto& t : next)
      t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
    ASSERT_TRUE(ours->Step(next).ok());
    ASSERT_TRUE(reference->Step(next).ok());
  }
  EXPECT_EQ(ours->position(), 9);
  // The cache is full at capacity; bad input is an error, not a crash.
  ASSERT_TRUE(ours->Step(std::vector<int32_t>{1, 2, 3}).ok());
  EXPECT_FALSE(ours->Step(std::vector<int32_t>{1, 2, 3}).ok());
  EXPECT_FALSE(ours->Start(std::vector<int32_t>{}, 1, 5).ok());
  EXPECT_FALSE(ours->Start(std::vector<int32_t>{99}, 1, 5).ok());
  EXPECT_FALSE(ours->Start(prompt, 5, 5).ok());
}

}  // namespace
}  // namespace gpt2::infer
