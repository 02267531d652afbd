// src/serve/request: the bodies of gpt2_serve's two generation APIs. Any body
// gives a request or an error naming the field (the server's 400); a request
// that parses is one the generator takes (ValidateGenerateRequest), its
// prompt in range and at least one token. The first input byte picks the
// model shape (124M, or a small one whose context a long prompt overflows).
#include <cstddef>
#include <cstdint>
#include <string>

#include "src/infer/generate.h"
#include "src/serve/request.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void CheckRequest(const absl::StatusOr<gpt2::serve::ParsedRequest>& parsed,
                  const gpt2::ModelShape& shape) {
  if (!parsed.ok()) {
    GPT2_FUZZ_CHECK(!parsed.status().message().empty());
    return;
  }
  const gpt2::infer::GenerateRequest& request = parsed->request;
  GPT2_FUZZ_CHECK(!request.prompt.empty());
  for (int32_t id : request.prompt) {
    GPT2_FUZZ_CHECK(id >= 0 && id < shape.vocab_size);
  }
  GPT2_FUZZ_CHECK(request.num_samples >= 1 &&
                  request.num_samples <= gpt2::serve::kMaxSamples);
  GPT2_FUZZ_CHECK(gpt2::infer::ValidateGenerateRequest(
                      shape, gpt2::serve::kMaxSamples, request)
                      .ok());
  GPT2_FUZZ_CHECK(gpt2::infer::NewTokenLimit(shape, request) >= 0);
  GPT2_FUZZ_CHECK(request.sampling.top_p > 0.0 &&
                  request.sampling.top_p <= 1.0);
  GPT2_FUZZ_CHECK(request.stop.size() <= gpt2::serve::kMaxStops);
  for (const std::string& stop : request.stop) {
    GPT2_FUZZ_CHECK(!stop.empty() && stop.size() <= gpt2::serve::kMaxStopBytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const gpt2::Tokenizer& tokenizer = gpt2::fuzz::SharedTokenizer();
  gpt2::ModelShape shape = gpt2::ModelShape::Gpt2Small();
  if (data[0] & 1) shape = gpt2::ModelShape{2, 4, 128, 64, 50257, 50304};
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  CheckRequest(gpt2::serve::ParseGenerateBody(body, shape, tokenizer), shape);
  CheckRequest(gpt2::serve::ParseCompletionsBody(body, shape, tokenizer,
                                                 /*fresh_seed=*/42),
               shape);
  return 0;
}
