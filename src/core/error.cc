#include "src/core/error.h"

#include <cstdio>
#include <cstdlib>

namespace gpt2 {
namespace {
FatalHook g_fatal_hook = nullptr;
int g_error_rank = -1;
}  // namespace

void SetFatalHook(FatalHook hook) { g_fatal_hook = hook; }
void SetErrorRank(int rank) { g_error_rank = rank; }

void FatalError(const std::string& what, const char* file, int line) {
  std::fflush(stdout);
  if (g_error_rank >= 0) std::fprintf(stderr, "[rank %d] ", g_error_rank);
  std::fprintf(stderr, "fatal: %s at %s:%d\n", what.c_str(), file, line);
  std::fflush(stderr);
  if (g_fatal_hook != nullptr) g_fatal_hook(1);
  std::exit(1);
}

}  // namespace gpt2
