// Stop signals: each kind sets the flag once and is named; one the process
// inherited as ignored (SIGHUP under nohup) stays ignored.
#include "src/core/stop_signal.h"

#include <csignal>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

TEST(StopSignals, EachKindSetsTheFlagOnce) {
  for (const int signo : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) {
    InstallStopSignals("");
    EXPECT_EQ(StopSignalReceived(), 0);
    std::raise(signo);
    EXPECT_EQ(StopSignalReceived(), signo) << StopSignalName(signo);
  }
  InstallStopSignals("");
  EXPECT_EQ(StopSignalName(SIGHUP), "SIGHUP");
  EXPECT_EQ(StopSignalName(SIGUSR2), "signal " + std::to_string(SIGUSR2));
}

// In a fresh process (the first installation is the one that reads what was
// inherited): "threadsafe" death tests run the binary again for this test.
TEST(StopSignals, AnInheritedIgnoreStaysIgnored) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::signal(SIGHUP, SIG_IGN);  // as nohup leaves it
        InstallStopSignals("");
        std::raise(SIGHUP);      // ignored: neither the flag nor death
        InstallStopSignals("");  // a later installation keeps it ignored
        std::raise(SIGHUP);
        std::raise(SIGTERM);  // the others still stop the run
        std::exit(StopSignalReceived() == SIGTERM ? 7 : 1);
      },
      ::testing::ExitedWithCode(7), "");
}

}  // namespace
}  // namespace gpt2
