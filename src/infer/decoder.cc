#include "src/infer/decoder.h"

#include "absl/strings/str_cat.h"
#include "src/core/error.h"
#include "src/ops/sample.h"

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

absl::Status Decoder::CheckSampleArgs(absl::Span<const uint64_t> seeds,
                                      absl::Span<int32_t> tokens) const {
  if (batch() == 0) {
    return absl::FailedPreconditionError("SampleNext before Start");
  }
  if (static_cast<int>(seeds.size()) != batch() ||
      static_cast<int>(tokens.size()) != batch()) {
    return absl::InvalidArgumentError(
        absl::StrCat("got ", seeds.size(), " seeds and room for ",
                     tokens.size(), " tokens for ", batch(), " rows"));
  }
  return absl::OkStatus();
}

absl::Status Decoder::SampleNext(const SamplingParams& params,
                                 absl::Span<const uint64_t> seeds,
                                 absl::Span<int32_t> tokens) {
  GPT2_RETURN_IF_ERROR(CheckSampleArgs(seeds, tokens));
  GPT2_RETURN_IF_ERROR(ValidateSamplingParams(params));
  const float* rows = logits();
  const int Vp = shape().padded_vocab_size;
  const int V = shape().vocab_size, position_now = position(), n = batch();
#pragma omp parallel for if (n > 1) schedule(static)
  for (int b = 0; b < n; ++b) {
    tokens[b] = cpu::SampleTopKRow(rows + int64_t{b} * Vp, V, params.top_k,
                                   params.temperature, params.top_p,
                                   SampleUniform(seeds[b], position_now - 1));
  }
  sampled_.assign(tokens.begin(), tokens.end());
  return absl::OkStatus();
}

absl::Status Decoder::CheckAheadArgs(absl::Span<const uint64_t> seeds, int n,
                                     absl::Span<int32_t> tokens) const {
  const int rows = batch();
  if (n < 1 || tokens.size() != static_cast<size_t>(n) * rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleAhead: ", tokens.size(), " tokens for ", n,
                     " draws of ", rows, " rows"));
  }
  GPT2_RETURN_IF_ERROR(CheckSampleArgs(seeds, tokens.subspan(0, rows)));
  if (position() + n - 1 > capacity()) {
    return absl::FailedPreconditionError(
        absl::StrCat("SampleAhead: ", n, " draws from position ", position(),
                     " pass the cache's ", capacity(), " positions"));
  }
  return absl::OkStatus();
}

absl::Status Decoder::SampleAhead(const SamplingParams& params,
                                  absl::Span<const uint64_t> seeds, int n,
                                  absl::Span<int32_t> tokens) {
  GPT2_RETURN_IF_ERROR(CheckAheadArgs(seeds, n, tokens));
  const int rows = batch();
  for (int k = 0; k < n; ++k) {
    GPT2_RETURN_IF_ERROR(
        SampleNext(params, seeds, tokens.subspan(size_t{1} * k * rows, rows)));
    if (k + 1 < n) GPT2_RETURN_IF_ERROR(StepSampled());
  }
  return absl::OkStatus();
}

absl::Status Decoder::StepSampled() {
  if (static_cast<int>(sampled_.size()) != batch()) {
    return absl::FailedPreconditionError("StepSampled without a SampleNext");
  }
  const std::vector<int32_t> tokens = std::move(sampled_);
  sampled_.clear();
  return Step(tokens);
}

}  // namespace gpt2::infer
