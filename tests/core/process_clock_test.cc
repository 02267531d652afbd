// The process's start time, from /proc/self/stat: parsing (a command name with
// spaces and parentheses, short or garbled lines) and the clock it gives.
#include "src/core/process_clock.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

TEST(ProcessClock, ParsesTheStartTimeAfterTheCommandName) {
  // Field 22 (start time) is 6734432 ticks; the name holds ") 1 2 (".
  const std::string stat =
      "27797 (odd ) 1 2 (name) R 27793 27793 18174 0 -1 4194304 124 0 0 0 0 0 "
      "0 0 20 0 1 0 6734432 3133440 388 18446744073709551615";
  const std::optional<double> seconds = StartSecondsFromStat(stat, 100);
  ASSERT_TRUE(seconds.has_value());
  EXPECT_DOUBLE_EQ(*seconds, 67344.32);
  EXPECT_EQ(StartSecondsFromStat(stat, 0), std::nullopt);
  EXPECT_EQ(StartSecondsFromStat("27797 (cat) R 1 2 3", 100), std::nullopt);
  EXPECT_EQ(StartSecondsFromStat("no parenthesis at all", 100), std::nullopt);
  EXPECT_EQ(StartSecondsFromStat(
                "1 (x) R 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12ab 3 4", 100),
            std::nullopt);
}

TEST(ProcessClock, TheStartIsBeforeNowAndStaysPut) {
  const auto first = ProcessStartTime();
  const auto now = std::chrono::steady_clock::now();
  EXPECT_LE(first, now);
  // This test binary started moments ago (a minute is far more than it needs).
  EXPECT_LT(now - first, std::chrono::seconds(60));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // The same start, not "now" again: within one 10 ms tick of rounding.
  const auto second = ProcessStartTime();
  EXPECT_LT(std::chrono::abs(second - first), std::chrono::milliseconds(15));
}

}  // namespace
}  // namespace gpt2
