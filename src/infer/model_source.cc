// Checkpoint parameters go straight from the file into fp32 through the
// checkpoint reader's flat-range API; shapes are checked against the header. A
// Hugging Face GPT-2 goes through ImportHf first.
#include "src/infer/model_source.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/export.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/ckpt/run_files.h"
#include "src/core/error.h"

namespace gpt2::infer {

absl::StatusOr<InferenceModel> LoadInferenceModel(const std::string& what) {
  if (IsHfModel(what)) {  // a Hugging Face GPT-2 (e.g. OpenAI's)
    GPT2_ASSIGN_OR_RETURN(HfModel hf, ReadHf(what));
    InferenceModel model;
    model.shape = hf.shape;
    model.num_params = static_cast<int64_t>(hf.params.size());
    model.params = std::move(hf.params);
    model.source = what;
    model.hugging_face = true;
    return model;
  }
  GPT2_ASSIGN_OR_RETURN(const std::string path, ResolveCheckpoint(what));
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader, CheckpointReader::Open(path));
  const absl::StatusOr<ModelShape> shape =
      ModelShapeFromConfig(reader.header().config().model());
  if (!shape.ok()) {
    return absl::DataLossError(absl::StrCat(
        path, ": the header's model config: ", shape.status().message()));
  }
  const std::vector<ParamSpec> list = BuildParamList(*shape);
  GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kParams));
  InferenceModel model;
  model.shape = *shape;
  model.num_params = TotalParams(list);
  model.params.resize(static_cast<size_t>(model.num_params));
  // Straight into fp32: a 124M model never exists in double here.
  GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, list, TensorFamily::kParams,
                                     DType::kF32, 0, model.num_params,
                                     model.params.data()));
  model.step = reader.header().step();
  model.source = path;
  return model;
}

InferenceModel RandomInferenceModel(const ModelShape& shape, uint64_t seed) {
  const std::vector<ParamSpec> list = BuildParamList(shape);
  std::vector<double> host;
  InitParams(shape, list, seed, &host);
  InferenceModel model;
  model.shape = shape;
  model.num_params = TotalParams(list);
  model.params.assign(host.begin(), host.end());
  model.source = absl::StrCat("random init (seed ", seed, ")");
  return model;
}

std::string DescribeShape(const ModelShape& shape, int64_t num_params) {
  return absl::StrFormat("L=%d H=%d C=%d T=%d V=%d (%.1fM params)",
                         shape.num_layers, shape.num_heads, shape.channels,
                         shape.max_seq_len, shape.vocab_size, num_params / 1e6);
}

}  // namespace gpt2::infer
