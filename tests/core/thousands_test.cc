// Numbers for people: thousands separators and durations.
#include "src/core/thousands.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

TEST(Thousands, GroupsDigitsInThrees) {
  EXPECT_EQ(Thousands(0), "0");
  EXPECT_EQ(Thousands(999), "999");
  EXPECT_EQ(Thousands(1000), "1,000");
  EXPECT_EQ(Thousands(124475904), "124,475,904");
  EXPECT_EQ(Thousands(-1234567), "-1,234,567");
  EXPECT_EQ(Thousands(std::numeric_limits<int64_t>::min()),
            "-9,223,372,036,854,775,808");
}

TEST(Duration, SecondsMinutesHours) {
  EXPECT_EQ(Duration(0), "0s");
  EXPECT_EQ(Duration(59), "59s");
  EXPECT_EQ(Duration(60), "1m 00s");
  EXPECT_EQ(Duration(216), "3m 36s");
  EXPECT_EQ(Duration(3599), "59m 59s");
  EXPECT_EQ(Duration(3600), "1h 00m");
  EXPECT_EQ(Duration(7500), "2h 05m");
  EXPECT_EQ(Duration(-5), "0s");
}

}  // namespace
}  // namespace gpt2
