// Text generation on a Decoder: N samples of one prompt decoded together,
// each with its own KV-cache row and its own random stream.
//
// Stopping: a sample ends when it has max_new_tokens new tokens, when the
// sequence fills the model's context (prompt + new tokens == max_seq_len), or
// when it draws <|endoftext|> (with stop_at_end_of_text; the end-of-text token
// itself is then not part of the sample's tokens), or when its text comes to
// hold one of the stop sequences (its tokens then keep the token that completed
// it, and its text ends where the sequence begins). The batch ends when every
// sample has ended. A sample that ended early keeps its row in the batch (fed
// token 0, its logits ignored) until the batch ends: simpler than
// compacting the cache, and the batches are small.
#ifndef GPT2_INFER_GENERATE_H_
#define GPT2_INFER_GENERATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/data/tokenizer.h"
#include "src/infer/decoder.h"
#include "src/infer/sampler.h"

namespace gpt2::infer {

struct GenerateRequest {
  std::vector<int32_t> prompt;  // token ids; at least one
  int num_samples = 5;
  int max_new_tokens = 50;
  SamplingParams sampling;
  // Sample i draws with seed SampleSeed(seed, i) (Decoder::SampleNext), so
  // sample i's text does not depend on how many samples run beside it.
  uint64_t seed = 1337;
  bool stop_at_end_of_text = true;
  int end_of_text = 50256;  // GPT-2's <|endoftext|>
  // Stop sequences: text (each at least one byte) that ends a sample where it
  // appears; the sample's text stops before it. Needs Generate's tokenizer.
  std::vector<std::string> stop;
};

enum class FinishReason {
  kLength,     // max_new_tokens reached
  kContext,    // the model's context is full
  kEndOfText,  // drew <|endoftext|>
  kStop,       // its text reached a stop sequence
};
const char* FinishReasonName(FinishReason reason);  // "length", ...

struct GeneratedSample {
  std::vector<int32_t> tokens;  // the new tokens only
  FinishReason finish = FinishReason::kLength;
  // With kStop: the bytes of the tokens' text before the stop sequence (the
  // sample's text); -1: the whole text of the tokens.
  int64_t text_bytes = -1;
};

// A sample's text: its tokens decoded (InvalidArgument for an id outside the
// tokenizer's vocabulary), cut where a stop sequence began.
absl::StatusOr<std::string> SampleText(const Tokenizer& tokenizer,
                                       const GeneratedSample& sample);

struct GenerateResult {
  std::vector<GeneratedSample> samples;
  int64_t new_tokens = 0;  // sum of the samples' token counts
  int decode_steps = 0;    // Decoder::Step calls (positions after the prompt)
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  // steps and sampling
};

// The per-sample seed: a splitmix64 mix of (seed, index).
uint64_t SampleSeed(uint64_t seed, int index);

// InvalidArgument naming the field: an empty prompt (not allowed: GPT-2 needs
// at least one token to condition on), a prompt of max_seq_len tokens or more
// (no room left to generate), token ids outside [0, V), num_samples outside
// [1, max_batch], max_new_tokens < 1, bad sampling params, an empty stop
// sequence.
absl::Status ValidateGenerateRequest(const ModelShape& shape, int max_batch,
                                     const GenerateRequest& request);

// The number of new tokens a request can get: max_new_tokens, cut to what
// the context leaves after the prompt.
int NewTokenLimit(const ModelShape& shape, const GenerateRequest& request);

// Called after each batch of draws (Decoder::lookahead() tokens per sample:
// one on the CPU, 16 on a GPU) with the samples so far, for streaming them;
// returning false stops the generation there, and Generate returns
// Cancelled (the reader went away).
using GenerateProgress =
    std::function<bool(const std::vector<GeneratedSample>& samples)>;

// `tokenizer` turns the samples' tokens into text for the stop sequences: a
// request with any needs one (else InvalidArgument).
absl::StatusOr<GenerateResult> Generate(
    Decoder* decoder, const GenerateRequest& request,
    const GenerateProgress& progress = nullptr,
    const Tokenizer* tokenizer = nullptr);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_GENERATE_H_
