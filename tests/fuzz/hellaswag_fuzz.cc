// src/infer/hellaswag: ReadHellaSwag on any bytes, then every example that
// reads rendered with GPT-2's tokenizer (RenderHellaSwag), as gpt2_eval and
// training's log.hellaswag_file do. An example that reads has a label in 0..3;
// a rendering that succeeds fits the model's context.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/infer/hellaswag.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gpt2::fuzz::MemFile file(data, size);
  const absl::StatusOr<std::vector<gpt2::infer::HellaSwagExample>> examples =
      gpt2::infer::ReadHellaSwag(file.path());
  if (!examples.ok()) {
    GPT2_FUZZ_CHECK(!examples.status().message().empty());
    return 0;
  }
  for (const gpt2::infer::HellaSwagExample& example : *examples) {
    GPT2_FUZZ_CHECK(example.label >= 0 && example.label <= 3);
    const absl::StatusOr<gpt2::infer::HellaSwagRows> rows =
        gpt2::infer::RenderHellaSwag(gpt2::fuzz::SharedTokenizer(), example);
    if (!rows.ok()) continue;
    GPT2_FUZZ_CHECK(!rows->context.empty());
    const int length = rows->longest();
    std::vector<int32_t> inputs(length), targets(length);
    for (int i = 0; i < 4; ++i) {
      GPT2_FUZZ_CHECK(!rows->endings[i].empty());
      GPT2_FUZZ_CHECK(rows->row_length(i) <= length);
      rows->Row(i, length, inputs.data(), targets.data());
    }
  }
  return 0;
}
