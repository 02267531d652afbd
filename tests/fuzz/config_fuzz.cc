// src/train/config: a run config as gpt2_ddp reads it. The input is the
// protobuf text, then after a line "--set--" one --set override a line.
// Parsing, the overrides and validation at world sizes 1, 3 and 16 each give
// a config or an error naming the problem; a config that validates has a plan
// whose batch arithmetic holds (B x T x world x accumulation = the step's
// tokens) and a model shape of positive sizes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_split.h"
#include "src/train/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text, overrides;
  gpt2::fuzz::SplitInput(
      std::string_view(reinterpret_cast<const char*>(data), size),
      "\n--set--\n", &text, &overrides);
  absl::StatusOr<gpt2::config::RunConfig> config =
      gpt2::ParseConfigText(std::string(text), "fuzz.pbtxt");
  if (!config.ok()) {
    GPT2_FUZZ_CHECK(!config.status().message().empty());
    return 0;
  }
  if (!overrides.empty()) {
    for (absl::string_view line : absl::StrSplit(
             absl::string_view(overrides.data(), overrides.size()), '\n')) {
      const absl::Status status =
          gpt2::ApplyOverride(std::string(line), &*config);
      if (!status.ok()) return 0;
    }
  }
  for (int world : {1, 3, 16}) {
    const absl::StatusOr<gpt2::RunPlan> plan =
        gpt2::ValidateConfig(*config, world, "fuzz.pbtxt");
    if (!plan.ok()) {
      GPT2_FUZZ_CHECK(!plan.status().message().empty());
      continue;
    }
    GPT2_FUZZ_CHECK(plan->micro_batch_size > 0 && plan->seq_len > 0 &&
                    plan->grad_accum_steps > 0);
    GPT2_FUZZ_CHECK(static_cast<int64_t>(plan->micro_batch_size) *
                        plan->seq_len * world * plan->grad_accum_steps ==
                    plan->total_batch_tokens);
    GPT2_FUZZ_CHECK(plan->seq_len <= plan->shape.max_seq_len);
    GPT2_FUZZ_CHECK(plan->shape.num_layers > 0 && plan->shape.num_heads > 0 &&
                    plan->shape.channels % plan->shape.num_heads == 0 &&
                    plan->shape.vocab_size > 0 &&
                    plan->shape.padded_vocab_size >= plan->shape.vocab_size);
  }
  return 0;
}
