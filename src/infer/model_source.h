// Where an inference model's weights come from: a gpt2_ddp checkpoint (its
// parameters only, read straight into fp32) or a Hugging Face GPT-2, or GPT-2's
// random init for a shape (benchmarks of sizes no checkpoint exists for, and
// tests).
#ifndef GPT2_INFER_MODEL_SOURCE_H_
#define GPT2_INFER_MODEL_SOURCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/model/params.h"

namespace gpt2::infer {

struct InferenceModel {
  ModelShape shape;
  std::vector<float> params;  // TotalParams(BuildParamList(shape)), flat
  int64_t num_params = 0;
  int64_t step = 0;    // the checkpoint's optimizer steps; 0 for a random init
  std::string source;  // the checkpoint path, or "random init (seed N)"
  bool hugging_face = false;  // weights from a Hugging Face folder (no step)
};

// Reads the checkpoint's header and parameters. `path`: a checkpoint file, or a
// run folder or its checkpoints/ folder for the newest (ResolveCheckpoint), or
// a Hugging Face GPT-2 folder or .safetensors file (ImportHf).
// Errors name the file: missing,
// truncated or corrupt files (the checkpoint reader's checks), a header whose
// model shape is unusable, tensors that do not match that shape.
absl::StatusOr<InferenceModel> LoadInferenceModel(const std::string& path);

// GPT-2's init (InitParams) for `shape` from `seed`.
InferenceModel RandomInferenceModel(const ModelShape& shape, uint64_t seed);

// "L=12 H=12 C=768 T=1024 V=50257 (124.4M params)".
std::string DescribeShape(const ModelShape& shape, int64_t num_params);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_MODEL_SOURCE_H_
