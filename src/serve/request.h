// gpt2_serve's requests: the JSON bodies of its two generation APIs read into
// one GenerateRequest, every field typed and bounded, every mistake an error
// naming the field (the server answers 400 with it).
//   POST /api/generate   the page's API (docs/serve.md)
//   POST /v1/completions OpenAI's completions API, for the clients made for
//                        it: the fields it shares with ours, and a clear
//                        refusal of the ones this model cannot honour
#ifndef GPT2_SERVE_REQUEST_H_
#define GPT2_SERVE_REQUEST_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/data/tokenizer.h"
#include "src/infer/generate.h"
#include "src/model/params.h"

namespace gpt2::serve {

// Limits, documented in docs/serve.md.
inline constexpr size_t kMaxBodyBytes = 64 * 1024;  // else 413
inline constexpr size_t kMaxPromptBytes = 8 * 1024;
inline constexpr int kMaxSamples = 10;
inline constexpr int kMaxNewTokens = 1024;
inline constexpr double kMaxTemperature = 10.0;
inline constexpr size_t kMaxStops = 4;  // stop sequences, as OpenAI's
inline constexpr size_t kMaxStopBytes = 256;

struct ParsedRequest {
  infer::GenerateRequest request;  // prompt tokens, samples, sampling, seed
  std::string prompt;              // the text as sent
  bool stream = false;
  // /v1/completions: stream_options.include_usage (a last chunk with the
  // token counts).
  bool stream_usage = false;
};

// {"prompt", "num_samples" (5), "max_new_tokens" (50), "top_k" (50),
// "temperature" (1.0), "top_p" (1.0: off), "stop" (none: a string or a list
// of up to kMaxStops), "seed" (1337), "stream" (false)}.
absl::StatusOr<ParsedRequest> ParseGenerateBody(const std::string& body,
                                                const ModelShape& shape,
                                                const Tokenizer& tokenizer);

// OpenAI's fields: "prompt" (a string, or a list of one), "max_tokens" (16),
// "n" (1), "temperature" (1.0; 0 is greedy), "seed" (`fresh_seed` when absent:
// each request its own text, as OpenAI's), "stream", "stream_options",
// "model" and "user" (any string); "top_p" (1; 0 is greedy), "stop" (a string
// or a list of up to kMaxStops; the text ends before the first that appears,
// finish_reason "stop"); "top_k" (ours; default: the whole vocabulary, as
// OpenAI samples). Accepted only at their no-op values: "echo" false,
// "logprobs" null, "best_of" 1, "presence_penalty" and "frequency_penalty" 0,
// "logit_bias" empty, "suffix" null. Anything else is an error naming it.
absl::StatusOr<ParsedRequest> ParseCompletionsBody(const std::string& body,
                                                   const ModelShape& shape,
                                                   const Tokenizer& tokenizer,
                                                   uint64_t fresh_seed);

}  // namespace gpt2::serve

#endif  // GPT2_SERVE_REQUEST_H_
