#include "src/train/test_hooks.h"

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

// Raises SIGNO where the variable `name` is RANK:STEP:SIGNO for this rank and
// step, as if it came from outside.
void RaiseSignalForTests(const char* name, int64_t step, int rank) {
  const char* spec = std::getenv(name);
  if (spec == nullptr) return;
  int signal_rank = -1, signo = 0;
  long long signal_step = -1;
  if (std::sscanf(spec, "%d:%lld:%d", &signal_rank, &signal_step, &signo) ==
          3 &&
      signal_rank == rank && signal_step == step) {
    std::raise(signo);
  }
}

}  // namespace

void InjectFaultForTests(int64_t step, int rank) {
  const char* spec = std::getenv("GPT2_TEST_FAIL_AT");
  if (spec == nullptr) return;
  int fail_rank = -1;
  long long fail_step = -1;
  if (std::sscanf(spec, "%d:%lld", &fail_rank, &fail_step) == 2 &&
      fail_rank == rank && fail_step == step) {
    FatalError(
        absl::StrCat("injected fault at step ", step, " (GPT2_TEST_FAIL_AT)"),
        __FILE__, __LINE__);
  }
}

bool NonFiniteLossForTests(int64_t step) {
  const char* spec = std::getenv("GPT2_TEST_NAN_AT");
  return spec != nullptr && std::atoll(spec) == step;
}

void NonFiniteWeightsForTests(int64_t step, Backend* backend, Tensor params) {
  const char* spec = std::getenv("GPT2_TEST_NAN_AT");
  if (spec == nullptr || std::atoll(spec) != step ||
      !absl::EndsWith(spec, ":weights")) {
    return;
  }
  const Tensor first = params.Slice(0, 1);
  backend->Upload(first, EncodeHost({std::nan("")}, first.dtype).data());
}

void InjectSignalForTests(int64_t step, int rank) {
  RaiseSignalForTests("GPT2_TEST_SIGNAL_AT", step, rank);
}

void InjectValSignalForTests(int64_t step, int rank) {
  RaiseSignalForTests("GPT2_TEST_SIGNAL_IN_VAL", step, rank);
}

void InjectNamedSignalForTests(const char* name) {
  if (const char* signo = std::getenv(name)) std::raise(std::atoi(signo));
}

}  // namespace gpt2
