// The learning-rate schedules: the PyTorch run's warmup + cosine, and
// warmup-stable-decay (schedule.decay_steps).
#include "src/optim/lr_schedule.h"

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

TEST(LrSchedule, WarmupThenCosineToMinLr) {
  const LrSchedule s{6e-4, 6e-5, 10, 5000};
  EXPECT_DOUBLE_EQ(s.At(0), 6e-5);  // (0 + 1) / 10 of the peak
  EXPECT_DOUBLE_EQ(s.At(9), 6e-4);
  EXPECT_DOUBLE_EQ(s.At(10), 6e-4);
  // Halfway through the cosine: the mean of the two ends.
  EXPECT_NEAR(s.At(10 + 2495), 0.5 * (6e-4 + 6e-5), 1e-12);
  EXPECT_NEAR(s.At(5000), 6e-5, 1e-15);
  EXPECT_DOUBLE_EQ(s.At(7000), 6e-5);
  for (int64_t step = 10; step < 5000; ++step)
    ASSERT_LE(s.At(step + 1), s.At(step)) << step;
}

TEST(LrSchedule, WarmupStableDecay) {
  const LrSchedule s{1e-3, 1e-4, 20, 1200, 300};
  EXPECT_DOUBLE_EQ(s.At(0), 1e-3 / 20);
  EXPECT_DOUBLE_EQ(s.At(19), 1e-3);
  EXPECT_DOUBLE_EQ(s.At(500), 1e-3);
  EXPECT_DOUBLE_EQ(s.At(900), 1e-3);  // the decay starts after step 900
  EXPECT_NEAR(s.At(1050), 0.5 * (1e-3 + 1e-4), 1e-15);
  EXPECT_NEAR(s.At(1200), 1e-4, 1e-15);
  EXPECT_DOUBLE_EQ(s.At(5000), 1e-4);
  for (int64_t step = 900; step < 1200; ++step)
    ASSERT_LT(s.At(step + 1), s.At(step)) << step;
  // A decay longer than what follows the warmup starts right after it.
  const LrSchedule all{1e-3, 0.0, 10, 110, 1000};
  EXPECT_DOUBLE_EQ(all.At(10), 1e-3);
  EXPECT_NEAR(all.At(60), 5e-4, 1e-15);
}

// What --plan and the run's header print.
TEST(LrSchedule, DescribesItself) {
  EXPECT_EQ((LrSchedule{6e-4, 6e-5, 10, 5000}.Describe()),
            "lr 6.0000e-04 after 10 warmup steps, cosine to 6.0000e-05 at step "
            "5,000");
  EXPECT_EQ((LrSchedule{1.5e-4, 1.5e-5, 10, 3400, 1400}.Describe()),
            "lr 1.5000e-04 after 10 warmup steps, held to step 2,000, then "
            "linear to 1.5000e-05 at step 3,400");
  // A decay longer than what follows the warmup starts right after it.
  EXPECT_EQ((LrSchedule{1e-3, 0.0, 1, 110, 1000}.Describe()),
            "lr 1.0000e-03 after 1 warmup step, held to step 1, then linear to "
            "0.0000e+00 at step 110");
  EXPECT_EQ((LrSchedule{1e-3, 1e-4, 50, 20}.Describe()),
            "lr rising to 1.0000e-03 over 50 warmup steps (train.max_steps 20 "
            "ends within them)");
}

}  // namespace
}  // namespace gpt2
