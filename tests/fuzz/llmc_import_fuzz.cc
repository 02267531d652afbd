// src/ckpt/export: an llm.c model file (version 3 or 5) through ImportLlmc
// into a checkpoint in this process's own folder, then read back with
// LoadInferenceModel (as gpt2_sample loads a checkpoint). Any bytes give an
// error or a checkpoint whose parameters are the file's count. The drivers
// bound every allocation: a header's shape may not size a buffer beyond what
// the file holds.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "src/ckpt/export.h"
#include "src/infer/model_source.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gpt2::fuzz::MemFile input(data, size);
  const std::string ckpt = gpt2::fuzz::ScratchFolder() + "/imported.ckpt";
  std::filesystem::remove(ckpt);
  const absl::Status imported = gpt2::ImportLlmc(input.path(), ckpt);
  if (!imported.ok()) {
    GPT2_FUZZ_CHECK(!imported.message().empty());
    return 0;
  }
  const absl::StatusOr<gpt2::infer::InferenceModel> model =
      gpt2::infer::LoadInferenceModel(ckpt);
  GPT2_FUZZ_CHECK(model.ok());
  const size_t value_bytes =
      (size - 1024) / static_cast<size_t>(model->num_params);
  GPT2_FUZZ_CHECK(value_bytes == 4 || value_bytes == 2);
  GPT2_FUZZ_CHECK(model->params.size() ==
                  static_cast<size_t>(model->num_params));
  return 0;
}
