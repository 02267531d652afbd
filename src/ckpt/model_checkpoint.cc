#include "src/ckpt/model_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

constexpr TensorFamily kAllFamilies[] = {
    TensorFamily::kParams, TensorFamily::kAdamM, TensorFamily::kAdamV,
    TensorFamily::kMaster};

// Calls fn(spec, begin, end) for the part [begin, end) of each list tensor
// (tensor-relative elements) that overlaps flat range [offset, offset + count).
template <typename Fn>
absl::Status ForEachOverlap(const std::vector<ParamSpec>& list, int64_t offset,
                            int64_t count, Fn fn) {
  const int64_t end = offset + count;
  for (const ParamSpec& spec : list) {
    const int64_t begin = std::max(offset, spec.offset);
    const int64_t stop = std::min(end, spec.offset + spec.numel);
    if (begin >= stop) continue;
    GPT2_RETURN_IF_ERROR(fn(spec, begin - spec.offset, stop - spec.offset));
  }
  return absl::OkStatus();
}

absl::Status CheckTensor(const CheckpointReader& reader, const ParamSpec& spec,
                         TensorFamily family) {
  const std::string name = FamilyTensorName(family, spec.name);
  const TensorInfo* info = reader.Find(name);
  if (info == nullptr) {
    std::string why;
    if (family == TensorFamily::kAdamM || family == TensorFamily::kAdamV) {
      if (!reader.header().has_optimizer_state())
        why = " (the checkpoint holds weights only, no optimizer state)";
    }
    return absl::NotFoundError(absl::StrCat(reader.path(), ": tensor '", name,
                                            "' is missing; the config needs it "
                                            "with shape ",
                                            ShapeString(spec.shape), why));
  }
  if (info->shape != spec.shape) {
    return absl::FailedPreconditionError(
        absl::StrCat(reader.path(), ": tensor '", name, "' has shape ",
                     ShapeString(info->shape), " in the checkpoint but ",
                     ShapeString(spec.shape),
                     " in the config (the model section does not match)"));
  }
  return absl::OkStatus();
}

absl::Status CheckView(const std::string& path, const char* what,
                       const HostView& view, int64_t total) {
  if (view.numel < total) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", what, " has ", view.numel,
                     " elements, the parameter list needs ", total));
  }
  return absl::OkStatus();
}

}  // namespace

const char* FamilyPrefix(TensorFamily family) {
  switch (family) {
    case TensorFamily::kParams:
      return "";
    case TensorFamily::kAdamM:
      return "adamw.m/";
    case TensorFamily::kAdamV:
      return "adamw.v/";
    case TensorFamily::kMaster:
      return "master/";
  }
  return "";
}

std::string FamilyTensorName(TensorFamily family, const std::string& param) {
  return absl::StrCat(FamilyPrefix(family), param);
}

config::ModelConfig ModelConfigOf(const ModelShape& shape) {
  config::ModelConfig m;
  m.set_num_layers(shape.num_layers);
  m.set_num_heads(shape.num_heads);
  m.set_channels(shape.channels);
  m.set_max_seq_len(shape.max_seq_len);
  m.set_vocab_size(shape.vocab_size);
  m.set_padded_vocab_size(shape.padded_vocab_size);
  return m;
}

absl::StatusOr<ModelShape> ModelShapeFromConfig(const config::ModelConfig& m) {
  ModelShape shape;
  shape.num_layers = m.num_layers();
  shape.num_heads = m.num_heads();
  shape.channels = m.channels();
  shape.max_seq_len = m.max_seq_len();
  shape.vocab_size = m.vocab_size();
  shape.padded_vocab_size =
      shape.vocab_size > 0
          ? ModelShape::PaddedVocab(m.vocab_size(), m.padded_vocab_size())
          : m.padded_vocab_size();
  auto bad = [&](const char* field, int value, const char* want) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.", field, " = ", value,
                     " is not a usable model shape (", want, ")"));
  };
  if (shape.num_layers < 1 || shape.num_layers > 1024)
    return bad("num_layers", shape.num_layers, "1..1024");
  if (shape.channels < 1 || shape.channels > 65536)
    return bad("channels", shape.channels, "1..65536");
  if (shape.num_heads < 1 || shape.channels % shape.num_heads != 0)
    return bad("num_heads", shape.num_heads, "must divide channels");
  if (shape.max_seq_len < 1 || shape.max_seq_len > (1 << 20))
    return bad("max_seq_len", shape.max_seq_len, "1..2^20");
  if (shape.vocab_size < 1 || shape.vocab_size > (1 << 24))
    return bad("vocab_size", shape.vocab_size, "1..2^24");
  if (shape.padded_vocab_size < shape.vocab_size ||
      shape.padded_vocab_size > (1 << 24))
    return bad("padded_vocab_size", shape.padded_vocab_size,
               "vocab_size..2^24");
  if (TotalParams(BuildParamList(shape)) > kMaxTensorElements)
    return absl::InvalidArgumentError("model has more than 2^40 parameters");
  return shape;
}

absl::Status WriteFlatRange(CheckpointWriter* writer,
                            const std::vector<ParamSpec>& list,
                            TensorFamily family, DType dtype,
                            int64_t flat_offset, const void* data,
                            int64_t count) {
  if (flat_offset < 0 || count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(writer->path(), ": bad flat range [", flat_offset, ", ",
                     flat_offset + count, ")"));
  }
  const char* bytes = static_cast<const char*>(data);
  const int64_t size = static_cast<int64_t>(DTypeSize(dtype));
  return ForEachOverlap(
      list, flat_offset, count,
      [&](const ParamSpec& spec, int64_t begin, int64_t end) {
        return writer->WriteChunk(
            FamilyTensorName(family, spec.name), spec.shape, dtype, begin,
            bytes + (spec.offset + begin - flat_offset) * size, end - begin);
      });
}

absl::Status SaveModelCheckpoint(const std::string& path, ckpt::Header header,
                                 const std::vector<ParamSpec>& list,
                                 const ModelStateView& state,
                                 const CheckpointWriterOptions& options) {
  const int64_t total = TotalParams(list);
  if (!state.params.present()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no parameters to save"));
  }
  if (state.adam_m.present() != state.adam_v.present()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": AdamW state needs both m and v, or neither"));
  }
  GPT2_RETURN_IF_ERROR(CheckView(path, "params", state.params, total));
  const bool optimizer = state.adam_m.present();
  if (optimizer) {
    GPT2_RETURN_IF_ERROR(CheckView(path, "adamw.m", state.adam_m, total));
    GPT2_RETURN_IF_ERROR(CheckView(path, "adamw.v", state.adam_v, total));
    if (state.adam_m.dtype != state.adam_v.dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": adamw.m and adamw.v differ in dtype"));
    }
  }
  if (state.master.present())
    GPT2_RETURN_IF_ERROR(CheckView(path, "master", state.master, total));

  header.set_param_dtype(ToProtoDType(state.params.dtype));
  header.set_has_optimizer_state(optimizer);
  if (optimizer) {
    header.set_optimizer_dtype(ToProtoDType(state.adam_m.dtype));
  } else {
    header.clear_optimizer_dtype();
  }
  header.set_has_master_weights(state.master.present());
  header.set_num_params(total);

  GPT2_ASSIGN_OR_RETURN(CheckpointWriter writer,
                        CheckpointWriter::Create(path, header, options));
  const HostView* views[] = {&state.params, &state.adam_m, &state.adam_v,
                             &state.master};
  for (int i = 0; i < 4; ++i) {
    if (!views[i]->present()) continue;
    GPT2_RETURN_IF_ERROR(WriteFlatRange(&writer, list, kAllFamilies[i],
                                        views[i]->dtype, 0, views[i]->data,
                                        total));
  }
  return writer.Commit();
}

absl::Status CheckFamily(const CheckpointReader& reader,
                         const std::vector<ParamSpec>& list,
                         TensorFamily family) {
  for (const ParamSpec& spec : list)
    GPT2_RETURN_IF_ERROR(CheckTensor(reader, spec, family));
  return absl::OkStatus();
}

absl::Status ReadFlatRange(CheckpointReader* reader,
                           const std::vector<ParamSpec>& list,
                           TensorFamily family, DType want, int64_t flat_offset,
                           int64_t count, void* out) {
  if (flat_offset < 0 || count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(reader->path(), ": bad flat range [", flat_offset, ", ",
                     flat_offset + count, ")"));
  }
  char* bytes = static_cast<char*>(out);
  const int64_t size = static_cast<int64_t>(DTypeSize(want));
  const int64_t total = TotalParams(list);
  GPT2_RETURN_IF_ERROR(ForEachOverlap(
      list, flat_offset, count,
      [&](const ParamSpec& spec, int64_t begin, int64_t end) {
        GPT2_RETURN_IF_ERROR(CheckTensor(*reader, spec, family));
        return reader->ReadTensorSlice(
            FamilyTensorName(family, spec.name), want, begin, end - begin,
            bytes + (spec.offset + begin - flat_offset) * size);
      }));
  // ZeRO padding past the last parameter.
  const int64_t pad_begin = std::max(flat_offset, total);
  const int64_t pad_end = flat_offset + count;
  if (pad_begin < pad_end) {
    std::memset(bytes + (pad_begin - flat_offset) * size, 0,
                static_cast<size_t>((pad_end - pad_begin) * size));
  }
  return absl::OkStatus();
}

absl::StatusOr<HostModelState> LoadModelCheckpoint(
    const std::string& path, const std::vector<ParamSpec>& list,
    bool optimizer_state) {
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader, CheckpointReader::Open(path));
  HostModelState state;
  state.header = reader.header();
  const int64_t total = TotalParams(list);
  GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kParams));
  if (optimizer_state) {
    GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kAdamM));
    GPT2_RETURN_IF_ERROR(CheckFamily(reader, list, TensorFamily::kAdamV));
  }
  state.params.resize(static_cast<size_t>(total));
  GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, list, TensorFamily::kParams,
                                     DType::kF64, 0, total,
                                     state.params.data()));
  if (optimizer_state) {
    state.adam_m.resize(static_cast<size_t>(total));
    state.adam_v.resize(static_cast<size_t>(total));
    GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, list, TensorFamily::kAdamM,
                                       DType::kF64, 0, total,
                                       state.adam_m.data()));
    GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, list, TensorFamily::kAdamV,
                                       DType::kF64, 0, total,
                                       state.adam_v.data()));
  }
  return state;
}

}  // namespace gpt2
