// src/ckpt/export: a Hugging Face GPT-2 as ReadHf reads it (gpt2_sample,
// gpt2_serve and --init_from take one). The input is a model.safetensors, or,
// after the line "--config.json--", a config.json as well, both written into a
// folder of this process's own. Any bytes give an HfModel or an error; one
// that reads has the parameter count of its shape. The drivers bound every
// allocation, so a header's or config's sizes may not size a buffer beyond
// what the file holds.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "src/ckpt/export.h"
#include "src/model/params.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view model, config;
  gpt2::fuzz::SplitInput(
      std::string_view(reinterpret_cast<const char*>(data), size),
      "\n--config.json--\n", &model, &config);
  const std::string& folder = gpt2::fuzz::ScratchFolder();
  gpt2::fuzz::WriteFile(folder + "/model.safetensors", model);
  const std::string config_path = folder + "/config.json";
  if (config.data() != nullptr) {
    gpt2::fuzz::WriteFile(config_path, config);
  } else {
    std::filesystem::remove(config_path);
  }
  std::string note;
  const absl::StatusOr<gpt2::HfModel> hf = gpt2::ReadHf(folder, &note);
  if (hf.ok()) {
    GPT2_FUZZ_CHECK(static_cast<int64_t>(hf->params.size()) ==
                    gpt2::TotalParams(gpt2::BuildParamList(hf->shape)));
  } else {
    GPT2_FUZZ_CHECK(!hf.status().message().empty());
  }
  return 0;
}
