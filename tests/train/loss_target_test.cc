// Tests for LossTarget (train.stop_at_loss): the first step below the target,
// a streak below it, the held loss as a mean over a window of steps, and the
// lines it gives the log.
#include "src/train/loss_target.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

StepMetrics Step(int64_t step, double loss) {
  StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.elapsed_s = 0.5 * (step + 1);
  return m;
}

// Feeds the losses from step 0 on; returns the step after which it first
// asked to stop (-1: never) and every line it gave.
int64_t Feed(LossTarget* target, const std::vector<double>& losses,
             std::vector<std::string>* lines) {
  bool stop = false;
  int64_t stopped_at = -1;
  for (size_t i = 0; i < losses.size(); ++i) {
    for (const std::string& line :
         target->Observe(Step(static_cast<int64_t>(i), losses[i]), &stop)) {
      lines->push_back(line);
    }
    if (stop && stopped_at < 0) stopped_at = static_cast<int64_t>(i);
  }
  return stopped_at;
}

TEST(LossTarget, StopsAtTheFirstStepBelowWithoutAStreak) {
  LossTarget target(0.1, 0, 0, 4096);
  std::vector<std::string> lines;
  EXPECT_EQ(Feed(&target, {0.5, 0.2, 0.1, 0.09, 0.3}, &lines), 3);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "loss 0.090000 < 0.1 first at step 3, 2.0 s after process start; "
            "stopping");
}

TEST(LossTarget, AStreakRestartsWhenTheLossComesBackUp) {
  LossTarget target(0.1, 3, 0, 4096);
  std::vector<std::string> lines;
  // Below at 1-2, up at 3, below from 4: the streak of 3 ends at step 6.
  EXPECT_EQ(
      Feed(&target, {0.5, 0.05, 0.05, 0.2, 0.05, 0.05, 0.05, 0.05}, &lines), 6);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "loss 0.050000 < 0.1 first at step 1, 1.0 s after process start");
  EXPECT_EQ(lines[1],
            "loss below 0.1 at every step since step 4 (2.5 s after process "
            "start): 3 steps; stopping");
}

TEST(LossTarget, HoldsTheMeanOverTheWindowsTokens) {
  // 16,384 tokens of 4,096-token steps: the mean of the last 4 steps, from
  // the fourth step on (one step at 0.01 is not enough).
  LossTarget target(0.1, 0, 16384, 4096);
  EXPECT_EQ(target.window_steps(), 4);
  std::vector<std::string> lines;
  EXPECT_EQ(Feed(&target, {0.01, 0.3, 0.3, 0.3, 0.09, 0.09, 0.09, 0.09, 0.09},
                 &lines),
            7);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "loss 0.090000 < 0.1 first at step 7, 4.0 s after process start "
            "(the mean of its last 4 steps, 16,384 tokens); stopping");
  // A window that is not a whole number of steps rounds up.
  EXPECT_EQ(LossTarget(0.1, 0, 10000, 4096).window_steps(), 3);
}

TEST(LossTarget, NoTargetNeverStops) {
  LossTarget target(0.0, 0, 0, 4096);
  std::vector<std::string> lines;
  EXPECT_EQ(Feed(&target, {0.5, 0.0, -1.0}, &lines), -1);
  EXPECT_TRUE(lines.empty());
}

}  // namespace
}  // namespace gpt2
