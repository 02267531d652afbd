#include "src/infer/sampler.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2::infer {

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  if (params.top_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "top_k = ", params.top_k, " must be at least 1 (1 is greedy)"));
  }
  if (!(params.temperature > 0.0) || !std::isfinite(params.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature = ", params.temperature,
                     " must be a finite number above 0"));
  }
  if (!(params.top_p > 0.0 && params.top_p <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p = ", params.top_p,
                     " must be above 0 and at most 1 (1 keeps every token)"));
  }
  return absl::OkStatus();
}

}  // namespace gpt2::infer
