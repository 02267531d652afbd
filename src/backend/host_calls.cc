#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/backend/backend.h"

namespace gpt2 {

std::string FormatHostCallTimes(const std::string& what,
                                const std::vector<OpTiming>& calls) {
  std::string line = absl::StrCat(
      what,
      ", host time inside ops (launches, library set-up, kernels loaded on "
      "first use):");
  double total = 0.0, rest = 0.0;
  int64_t rest_ops = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    total += calls[i].ms;
    if (i < 5) {
      absl::StrAppend(
          &line, i == 0 ? " " : ", ", calls[i].op,
          absl::StrFormat(" %.1f ms (%d call%s)", calls[i].ms, calls[i].calls,
                          calls[i].calls == 1 ? "" : "s"));
    } else {
      rest += calls[i].ms;
      ++rest_ops;
    }
  }
  if (rest_ops > 0) {
    absl::StrAppend(&line, absl::StrFormat(", %d more op%s %.1f ms", rest_ops,
                                           rest_ops == 1 ? "" : "s", rest));
  }
  return line + absl::StrFormat("; %.1f ms in all", total);
}

}  // namespace gpt2
