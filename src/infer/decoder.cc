#include "src/infer/decoder.h"

#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2::infer {

absl::Status CheckTokens(const ModelShape& shape,
                         absl::Span<const int32_t> tokens, const char* what) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= shape.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, "[", i, "] = ", tokens[i], " is outside the vocabulary [0, ",
          shape.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckStartArgs(const ModelShape& shape, int max_batch,
                            absl::Span<const int32_t> prompt, int batch,
                            int capacity) {
  if (batch < 1 || batch > max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch = ", batch, " is outside [1, ", max_batch, "]"));
  }
  if (capacity < 1 || capacity > shape.max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity = ", capacity, " is outside [1, ",
                     shape.max_seq_len, "] (the model's context)"));
  }
  if (prompt.empty() || static_cast<int>(prompt.size()) > capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt.size(), " tokens; it needs 1 to ", capacity,
        " (the cache capacity)"));
  }
  return CheckTokens(shape, prompt, "prompt");
}

}  // namespace gpt2::infer
