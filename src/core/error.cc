#include "src/core/error.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace gpt2 {
namespace {

FatalHook g_fatal_hook = nullptr;
int g_error_rank = -1;

std::string RankPrefix() {
  return g_error_rank >= 0 ? "[rank " + std::to_string(g_error_rank) + "] "
                           : "";
}

}  // namespace

void SetFatalHook(FatalHook hook) { g_fatal_hook = hook; }
void SetErrorRank(int rank) { g_error_rank = rank; }

void Warning(const std::string& what) {
  const std::string message = RankPrefix() + "gpt2: warning: " + what + "\n";
  std::fwrite(message.data(), 1, message.size(), stderr);
  std::fflush(stderr);
}

void FatalError(const std::string& what, const char* file, int line) {
  std::fflush(stdout);
  // One write, so that mpirun, which forwards each rank's output in chunks,
  // cannot split the rank prefix from the message.
  const std::string message = RankPrefix() + "fatal: " + what + " at " + file +
                              ":" + std::to_string(line) + "\n";
  std::fwrite(message.data(), 1, message.size(), stderr);
  std::fflush(stderr);
  if (g_fatal_hook != nullptr) g_fatal_hook(1);
  std::exit(1);
}

}  // namespace gpt2
