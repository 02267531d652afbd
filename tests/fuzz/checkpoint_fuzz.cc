// src/ckpt: a checkpoint file as every tool reads one: CheckpointReader::Open
// (framing, header, records tiling each tensor, trailer), VerifyAll, each
// tensor whole and in a slice, gpt2_ckpt inspect's statistics and size
// breakdown, LoadModelCheckpoint at the header's shape (resume, --init_from)
// and LoadInferenceModel (gpt2_sample, gpt2_serve). Any bytes give a Status
// or values; a tensor that opens fits in the file. In launch/fuzz.sh's builds
// (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) the CRC checks pass whatever
// the bytes, so that mutations reach the parsing behind them.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/ckpt/checkpoint.h"
#include "src/ckpt/inspect.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/infer/model_source.h"
#include "src/model/params.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gpt2::fuzz::MemFile file(data, size);
  absl::StatusOr<gpt2::CheckpointReader> reader =
      gpt2::CheckpointReader::Open(file.path());
  if (!reader.ok()) {
    GPT2_FUZZ_CHECK(!reader.status().message().empty());
    return 0;
  }
  (void)reader->VerifyAll();
  const gpt2::SizeBreakdown sizes = gpt2::ComputeSizeBreakdown(*reader);
  GPT2_FUZZ_CHECK(sizes.total == static_cast<int64_t>(size));
  std::vector<double> values;
  for (const gpt2::TensorInfo& t : reader->tensors()) {
    GPT2_FUZZ_CHECK(t.numel >= 0 && t.bytes <= static_cast<int64_t>(size));
    if (t.dtype == gpt2::DType::kI32) continue;
    values.resize(static_cast<size_t>(t.numel));
    (void)reader->ReadTensor(t.name, gpt2::DType::kF64, values.data(), t.numel);
    if (t.numel > 2) {
      (void)reader->ReadTensorSlice(t.name, gpt2::DType::kF64, 1, t.numel - 2,
                                    values.data());
    }
    (void)gpt2::ComputeTensorStats(&*reader, t.name);
  }
  const absl::StatusOr<gpt2::ModelShape> shape =
      gpt2::ModelShapeFromConfig(reader->header().config().model());
  if (shape.ok()) {
    const std::vector<gpt2::ParamSpec> list = gpt2::BuildParamList(*shape);
    (void)gpt2::LoadModelCheckpoint(file.path(), list, false);
    (void)gpt2::LoadModelCheckpoint(file.path(), list, true);
  }
  const absl::StatusOr<gpt2::infer::InferenceModel> model =
      gpt2::infer::LoadInferenceModel(file.path());
  if (model.ok()) {
    GPT2_FUZZ_CHECK(model->params.size() ==
                    static_cast<size_t>(model->num_params));
  }
  return 0;
}
