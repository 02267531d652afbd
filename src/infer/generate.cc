// The generation loop: sample every live row, feed the tokens back, stop each
// row by its own rule. Timing is split into prefill and decode for the tools.
#include "src/infer/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"
#include "src/core/process_clock.h"
#include "src/core/rng.h"

namespace gpt2::infer {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContext:
      return "context";
    case FinishReason::kEndOfText:
      return "end_of_text";
    case FinishReason::kStop:
      return "stop";
  }
  return "?";
}

absl::StatusOr<std::string> SampleText(const Tokenizer& tokenizer,
                                       const GeneratedSample& sample) {
  GPT2_ASSIGN_OR_RETURN(std::string text,
                        tokenizer.DecodeChecked(std::vector<int>(
                            sample.tokens.begin(), sample.tokens.end())));
  if (sample.text_bytes >= 0 &&
      sample.text_bytes < static_cast<int64_t>(text.size())) {
    text.resize(sample.text_bytes);
  }
  return text;
}

uint64_t SampleSeed(uint64_t seed, int index) {
  return SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(index)));
}

absl::Status ValidateGenerateRequest(const ModelShape& shape, int max_batch,
                                     const GenerateRequest& request) {
  if (request.prompt.empty()) {
    return absl::InvalidArgumentError(
        "prompt: empty; give at least one token of text to continue");
  }
  if (static_cast<int64_t>(request.prompt.size()) >= shape.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt: ", request.prompt.size(),
        " tokens leave no room in the model's context of ", shape.max_seq_len,
        " tokens (at most ", shape.max_seq_len - 1, ")"));
  }
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= shape.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt: token ", i, " = ", request.prompt[i],
          " is outside the vocabulary [0, ", shape.vocab_size, ")"));
    }
  }
  if (request.num_samples < 1 || request.num_samples > max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples = ", request.num_samples, " is outside [1, ",
                     max_batch, "]"));
  }
  if (request.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens = ", request.max_new_tokens, " must be at least 1"));
  }
  for (size_t i = 0; i < request.stop.size(); ++i) {
    if (request.stop[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop: sequence ", i, " is empty"));
    }
  }
  return ValidateSamplingParams(request.sampling);
}

int NewTokenLimit(const ModelShape& shape, const GenerateRequest& request) {
  const int64_t room =
      shape.max_seq_len - static_cast<int64_t>(request.prompt.size());
  return static_cast<int>(
      std::max<int64_t>(0, std::min<int64_t>(request.max_new_tokens, room)));
}

absl::StatusOr<GenerateResult> Generate(Decoder* decoder,
                                        const GenerateRequest& request,
                                        const GenerateProgress& progress,
                                        const Tokenizer* tokenizer) {
  const ModelShape& shape = decoder->shape();
  GPT2_RETURN_IF_ERROR(
      ValidateGenerateRequest(shape, decoder->max_batch(), request));
  if (!request.stop.empty() && tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        "stop sequences need a tokenizer to read the samples' text");
  }
  size_t longest_stop = 0;
  for (const std::string& s : request.stop) {
    longest_stop = std::max(longest_stop, s.size());
  }
  const int N = request.num_samples;
  const int P = static_cast<int>(request.prompt.size());
  const int limit = NewTokenLimit(shape, request);
  const FinishReason at_limit = limit == request.max_new_tokens
                                    ? FinishReason::kLength
                                    : FinishReason::kContext;
  // The last new token is sampled but never fed back.
  const int capacity = P + limit - 1;

  GenerateResult result;
  result.samples.resize(N);
  std::vector<uint64_t> seeds(N);
  for (int i = 0; i < N; ++i) seeds[i] = SampleSeed(request.seed, i);
  std::vector<bool> active(N, true);
  std::vector<int32_t> sampled(N);
  // Each sample's text so far, where there are stop sequences to look for.
  std::vector<std::string> texts(request.stop.empty() ? 0 : N);
  // Appends `token`'s bytes to sample b's text; true if that completed a stop
  // sequence, which then cuts the text where the earliest one begins.
  auto reaches_stop = [&](int b, int token) {
    std::string& text = texts[b];
    const size_t before = text.size();
    text += tokenizer->DecodeToken(token);
    // Only matches that end in the new bytes are new.
    const size_t from = before >= longest_stop ? before - longest_stop + 1 : 0;
    size_t cut = std::string::npos;
    for (const std::string& s : request.stop) {
      cut = std::min(cut, text.find(s, from));
    }
    if (cut == std::string::npos) return false;
    result.samples[b].text_bytes = static_cast<int64_t>(cut);
    return true;
  };

  auto start = std::chrono::steady_clock::now();
  GPT2_RETURN_IF_ERROR(decoder->Start(request.prompt, N, capacity));
  result.prefill_seconds = SecondsSince(start);
  start = std::chrono::steady_clock::now();
  // Draws come lookahead() at a time (a device decoder then waits once for
  // them all); within a batch of draws each is fed to draw the next, and the
  // last is fed here only if decoding goes on. Drawn where the logits are; a
  // row that has ended keeps drawing (and being fed its draws) until every row
  // has, but nothing of it is kept.
  bool done = false;
  for (int i = 0; i < limit && !done;) {
    const int n = std::min(std::max(decoder->lookahead(), 1), limit - i);
    sampled.resize(static_cast<size_t>(n) * N);
    GPT2_RETURN_IF_ERROR(decoder->SampleAhead(request.sampling, seeds, n,
                                              absl::MakeSpan(sampled)));
    result.decode_steps += n - 1;
    for (int k = 0; k < n && !done; ++k, ++i) {
      int still_active = 0;
      for (int b = 0; b < N; ++b) {
        if (!active[b]) continue;
        const int token = sampled[static_cast<size_t>(k) * N + b];
        GeneratedSample& sample = result.samples[b];
        if (request.stop_at_end_of_text && token == request.end_of_text) {
          sample.finish = FinishReason::kEndOfText;
          active[b] = false;
          continue;
        }
        sample.tokens.push_back(token);
        ++result.new_tokens;
        if (!texts.empty() && reaches_stop(b, token)) {
          sample.finish = FinishReason::kStop;
          active[b] = false;
          continue;
        }
        if (i + 1 == limit) {
          sample.finish = at_limit;
          active[b] = false;
          continue;
        }
        ++still_active;
      }
      done = still_active == 0;
    }
    if (progress && !progress(result.samples)) {
      return absl::CancelledError("generation stopped by its reader");
    }
    if (done) break;
    GPT2_RETURN_IF_ERROR(decoder->StepSampled());
    ++result.decode_steps;
  }
  result.decode_seconds = SecondsSince(start);
  return result;
}

}  // namespace gpt2::infer
