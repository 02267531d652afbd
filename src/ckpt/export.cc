#include "src/ckpt/export.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/ckpt/json_util.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/core/bf16.h"
#include "src/core/error.h"
#include "src/core/files.h"
#include "src/core/json_reader.h"

namespace gpt2 {
namespace {

namespace fs = std::filesystem;

// Elements per streamed window.
constexpr int64_t kWindow = int64_t{1} << 20;

// A file opened for reading (closed when this goes) and its size.
struct InputFile {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file{nullptr, &std::fclose};
  int64_t size = 0;
};

absl::StatusOr<InputFile> OpenInput(const std::string& path) {
  InputFile in;
  in.file.reset(std::fopen(path.c_str(), "rb"));
  if (in.file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fileno(in.file.get()), &st) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": cannot stat"));
  }
  in.size = static_cast<int64_t>(st.st_size);
  return in;
}

// An output file written as "<path>.tmp" and renamed into place on Commit
// (Close, then Publish: several files closed first and published together),
// so a failed export never leaves a half-written file under the real name.
class OutputFile {
 public:
  OutputFile() = default;
  OutputFile(OutputFile&& other) noexcept
      : path_(std::move(other.path_)),
        temp_(std::move(other.temp_)),
        file_(std::exchange(other.file_, nullptr)),
        closed_(std::exchange(other.closed_, false)) {}
  OutputFile& operator=(OutputFile&&) = delete;
  ~OutputFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (file_ != nullptr || closed_) std::remove(temp_.c_str());
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    temp_ = path + ".tmp";
    // Refused before anything is written (the whole export went to the
    // temporary file first, then the rename failed).
    GPT2_RETURN_IF_ERROR(NotAFolder(path, "a file to export to"));
    file_ = std::fopen(temp_.c_str(), "wb");
    if (file_ == nullptr) {
      return absl::PermissionDeniedError(
          absl::StrCat(temp_, ": cannot create: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  absl::Status Write(const void* data, size_t size) {
    if (size > 0 && std::fwrite(data, 1, size, file_) != size) {
      return absl::ResourceExhaustedError(
          absl::StrCat(temp_, ": write failed: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  absl::Status Write(const std::string& s) { return Write(s.data(), s.size()); }
  // The temporary file written whole (flushed to the disk) and closed.
  absl::Status Close() {
    const bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
    const std::string error = std::strerror(errno);
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok || !closed) {
      std::remove(temp_.c_str());
      return absl::ResourceExhaustedError(
          absl::StrCat(path_, ": cannot write: ", error));
    }
    closed_ = true;
    return absl::OkStatus();
  }
  // Renamed into place (after Close).
  absl::Status Publish() {
    closed_ = false;
    if (std::rename(temp_.c_str(), path_.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      std::remove(temp_.c_str());
      return absl::PermissionDeniedError(
          absl::StrCat("cannot rename ", temp_, " to ", path_, ": ", why));
    }
    return absl::OkStatus();
  }
  absl::Status Commit() {
    GPT2_RETURN_IF_ERROR(Close());
    return Publish();
  }

 private:
  std::string path_, temp_;
  std::FILE* file_ = nullptr;
  bool closed_ = false;  // written whole, not yet renamed
};

absl::StatusOr<std::vector<ParamSpec>> ParamListOf(CheckpointReader* reader) {
  const absl::StatusOr<ModelShape> shape =
      ModelShapeFromConfig(reader->header().config().model());
  if (!shape.ok()) {
    return absl::DataLossError(absl::StrCat(
        reader->path(), ": the header's config: ", shape.status().message()));
  }
  std::vector<ParamSpec> list = BuildParamList(*shape);
  GPT2_RETURN_IF_ERROR(CheckFamily(*reader, list, TensorFamily::kParams));
  return list;
}

// `from` copied to `to`'s temporary file, closed (Publish puts it in place).
absl::StatusOr<OutputFile> CopyFile(const std::string& from,
                                    const std::string& to) {
  std::FILE* in = std::fopen(from.c_str(), "rb");
  if (in == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        from, ": cannot open the tokenizer file: ", std::strerror(errno)));
  }
  OutputFile out;
  absl::Status status = out.Open(to);
  std::vector<char> buffer(1 << 20);
  while (status.ok()) {
    const size_t n = std::fread(buffer.data(), 1, buffer.size(), in);
    if (n == 0) break;
    status = out.Write(buffer.data(), n);
  }
  const bool read_error = std::ferror(in) != 0;
  std::fclose(in);
  GPT2_RETURN_IF_ERROR(status);
  if (read_error)
    return absl::DataLossError(absl::StrCat(from, ": read failed"));
  GPT2_RETURN_IF_ERROR(out.Close());
  return out;
}

// One tensor of model.safetensors: `count` elements of parameter `param`
// from element `source_offset`, as shape `shape` (transposed if asked).
struct HfTensor {
  std::string name;
  std::string param;
  int64_t source_offset = 0;
  int64_t count = 0;
  std::vector<int64_t> shape;  // Hugging Face's
  bool transpose = false;
};

absl::StatusOr<std::vector<HfTensor>> PlanHfTensors(
    const std::vector<ParamSpec>& list, const ModelShape& shape) {
  std::vector<HfTensor> globals_before, globals_after;
  std::vector<std::vector<HfTensor>> per_layer(shape.num_layers);
  for (const ParamSpec& spec : list) {
    if (spec.hf_name.empty()) {
      return absl::UnimplementedError(
          absl::StrCat("parameter '", spec.name, "' has no Hugging Face name"));
    }
    std::vector<int64_t> slice_shape = spec.slice_shape();
    if (spec.hf_transposed) std::swap(slice_shape[0], slice_shape[1]);
    if (spec.per_layer) {
      for (int l = 0; l < shape.num_layers; ++l) {
        per_layer[l].push_back(
            HfTensor{absl::StrCat("transformer.h.", l, ".", spec.hf_name),
                     spec.name, l * spec.layer_numel(), spec.layer_numel(),
                     slice_shape, spec.hf_transposed});
      }
      continue;
    }
    // Only the rows that hold the model: wte's past V are llm.c's padding.
    HfTensor t{spec.hf_name,       spec.name,   0,
               spec.model_numel(), slice_shape, false};
    if (spec.model_rows != 0) t.shape[0] = spec.model_rows;
    // Global tensors keep their place around the blocks (wte, wpe before,
    // ln_f after), as in Hugging Face's files.
    (per_layer[0].empty() ? globals_before : globals_after)
        .push_back(std::move(t));
  }
  std::vector<HfTensor> plan = std::move(globals_before);
  for (auto& l : per_layer)
    for (auto& t : l) plan.push_back(std::move(t));
  for (auto& t : globals_after) plan.push_back(std::move(t));
  return plan;
}

std::string HfConfigJson(const ModelShape& s) {
  const int eos = std::min(50256, s.vocab_size - 1);
  std::vector<std::string> fields = {
      "\"architectures\": [\"GPT2LMHeadModel\"]",
      "\"model_type\": \"gpt2\"",
      absl::StrCat("\"vocab_size\": ", s.vocab_size),
      absl::StrCat("\"n_positions\": ", s.max_seq_len),
      absl::StrCat("\"n_ctx\": ", s.max_seq_len),
      absl::StrCat("\"n_embd\": ", s.channels),
      absl::StrCat("\"n_layer\": ", s.num_layers),
      absl::StrCat("\"n_head\": ", s.num_heads),
      "\"n_inner\": null",
      // The tanh approximation, as in GPT-2 and our gelu.
      "\"activation_function\": \"gelu_new\"",
      "\"layer_norm_epsilon\": 1e-05",
      "\"initializer_range\": 0.02",
      // Trained without dropout.
      "\"resid_pdrop\": 0.0",
      "\"embd_pdrop\": 0.0",
      "\"attn_pdrop\": 0.0",
      "\"scale_attn_weights\": true",
      "\"scale_attn_by_inverse_layer_idx\": false",
      "\"reorder_and_upcast_attn\": false",
      "\"tie_word_embeddings\": true",
      absl::StrCat("\"bos_token_id\": ", eos),
      absl::StrCat("\"eos_token_id\": ", eos),
      "\"use_cache\": true",
      "\"torch_dtype\": \"float32\"",
  };
  return absl::StrCat("{\n  ", absl::StrJoin(fields, ",\n  "), "\n}\n");
}

}  // namespace

absl::Status ExportLlmc(CheckpointReader* reader, const std::string& out_path) {
  GPT2_ASSIGN_OR_RETURN(const std::vector<ParamSpec> list, ParamListOf(reader));
  const config::ModelConfig& m = reader->header().config().model();
  GPT2_ASSIGN_OR_RETURN(const ModelShape shape, ModelShapeFromConfig(m));
  int32_t header[256] = {};
  header[0] = kLlmcModelMagic;
  header[1] = kLlmcVersionF32;
  header[2] = shape.max_seq_len;
  header[3] = shape.vocab_size;
  header[4] = shape.num_layers;
  header[5] = shape.num_heads;
  header[6] = shape.channels;
  header[7] = shape.padded_vocab_size;
  OutputFile out;
  GPT2_RETURN_IF_ERROR(out.Open(out_path));
  GPT2_RETURN_IF_ERROR(out.Write(header, sizeof(header)));
  std::vector<float> window;
  for (const ParamSpec& spec : list) {
    window.resize(static_cast<size_t>(std::min(kWindow, spec.numel)));
    for (int64_t offset = 0; offset < spec.numel; offset += kWindow) {
      const int64_t count = std::min(kWindow, spec.numel - offset);
      GPT2_RETURN_IF_ERROR(reader->ReadTensorSlice(
          spec.name, DType::kF32, offset, count, window.data()));
      GPT2_RETURN_IF_ERROR(out.Write(window.data(), count * sizeof(float)));
    }
  }
  return out.Commit();
}

absl::Status ImportLlmc(const std::string& llmc_path,
                        const std::string& ckpt_path,
                        const CheckpointWriterOptions& options, int64_t step) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("import: step must be >= 0, got ", step));
  }
  GPT2_ASSIGN_OR_RETURN(InputFile input, OpenInput(llmc_path));
  std::FILE* file = input.file.get();
  int32_t header[256];
  if (input.size < static_cast<off_t>(sizeof(header)) ||
      std::fread(header, sizeof(header), 1, file) != 1) {
    return absl::DataLossError(
        absl::StrCat(llmc_path, ": too short for an llm.c model file (",
                     input.size, " bytes)"));
  }
  if (header[0] != kLlmcModelMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(llmc_path, ": not an llm.c model file (magic ", header[0],
                     ", expected ", kLlmcModelMagic, ")"));
  }
  DType dtype;
  if (header[1] == kLlmcVersionF32) {
    dtype = DType::kF32;
  } else if (header[1] == kLlmcVersionBF16) {
    dtype = DType::kBF16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(llmc_path, ": llm.c model version ", header[1],
                     " is not supported (3 = fp32, 5 = bf16)"));
  }
  ckpt::Header ckpt_header;
  config::ModelConfig* m = ckpt_header.mutable_config()->mutable_model();
  m->set_max_seq_len(header[2]);
  m->set_vocab_size(header[3]);
  m->set_num_layers(header[4]);
  m->set_num_heads(header[5]);
  m->set_channels(header[6]);
  m->set_padded_vocab_size(header[7]);
  const absl::StatusOr<ModelShape> shape = ModelShapeFromConfig(*m);
  if (!shape.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(llmc_path, ": header: ", shape.status().message()));
  }
  if (header[7] == 0 || header[7] < header[3]) {
    return absl::InvalidArgumentError(
        absl::StrCat(llmc_path, ": header: padded vocab ", header[7],
                     " < vocab ", header[3]));
  }
  const std::vector<ParamSpec> list = BuildParamList(*shape);
  const int64_t total = TotalParams(list);
  const int64_t size = static_cast<int64_t>(DTypeSize(dtype));
  const int64_t want_bytes =
      static_cast<int64_t>(sizeof(header)) + total * size;
  if (input.size != want_bytes) {
    return absl::DataLossError(absl::StrCat(
        llmc_path, ": ", input.size, " bytes, but its header (L=", header[4],
        " NH=", header[5], " C=", header[6], " maxT=", header[2],
        " V=", header[3], " Vp=", header[7], ", ", DTypeName(dtype), ") needs ",
        want_bytes));
  }
  ckpt_header.set_step(step);
  ckpt_header.set_tokens_seen(0);
  ckpt_header.set_world_size(1);
  ckpt_header.set_zero_stage(0);
  ckpt_header.set_param_dtype(ToProtoDType(dtype));
  ckpt_header.set_has_optimizer_state(false);
  ckpt_header.set_has_master_weights(false);
  ckpt_header.set_num_params(total);
  ckpt_header.set_created_by("gpt2_ckpt import --from llmc");
  ckpt_header.set_created_unix_time(static_cast<int64_t>(std::time(nullptr)));

  GPT2_ASSIGN_OR_RETURN(
      CheckpointWriter writer,
      CheckpointWriter::Create(ckpt_path, ckpt_header, options));
  std::vector<char> window;
  for (const ParamSpec& spec : list) {
    window.resize(static_cast<size_t>(std::min(kWindow, spec.numel) * size));
    for (int64_t offset = 0; offset < spec.numel; offset += kWindow) {
      const int64_t count = std::min(kWindow, spec.numel - offset);
      if (std::fread(window.data(), static_cast<size_t>(size),
                     static_cast<size_t>(count),
                     file) != static_cast<size_t>(count)) {
        return absl::DataLossError(
            absl::StrCat(llmc_path, ": read failed in tensor ", spec.name));
      }
      GPT2_RETURN_IF_ERROR(writer.WriteChunk(spec.name, spec.shape, dtype,
                                             offset, window.data(), count));
    }
  }
  return writer.Commit();
}

namespace {
// ---- Hugging Face import ----------------------------------------------------

// One tensor of a safetensors file.
struct SafeTensor {
  std::string dtype;  // "F32", "F16" or "BF16" (others are refused on use)
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // bytes, from the end of the header
};

float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const int exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {  // inf, nan
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits =
        sign | (static_cast<uint32_t>(exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// GPT-2 names with the optional "transformer." prefix taken off (Hugging
// Face's own gpt2 file has none; save_pretrained of GPT2LMHeadModel writes it).
std::string WithoutPrefix(const std::string& name) {
  constexpr char kPrefix[] = "transformer.";
  return absl::StartsWith(name, kPrefix) ? name.substr(sizeof(kPrefix) - 1)
                                         : name;
}

// The safetensors header: every tensor by its name (prefix taken off), checked
// against the file's size.
absl::Status ReadSafetensorsHeader(std::FILE* file, int64_t file_size,
                                   const std::string& path,
                                   std::map<std::string, SafeTensor>* tensors,
                                   int64_t* data_start) {
  uint64_t header_bytes = 0;
  if (file_size < 8 || std::fread(&header_bytes, 8, 1, file) != 1) {
    return absl::DataLossError(
        absl::StrCat(path, ": too short for a safetensors file"));
  }
  if (header_bytes > (uint64_t{100} << 20) ||
      static_cast<int64_t>(header_bytes) > file_size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a safetensors file (header of ", header_bytes,
                     " bytes in a file of ", file_size, ")"));
  }
  std::string text(header_bytes, '\0');
  if (std::fread(text.data(), 1, text.size(), file) != text.size()) {
    return absl::DataLossError(absl::StrCat(path, ": read failed"));
  }
  auto json = ParseJson(text);
  if (!json.ok() || json->kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": the safetensors header is not a JSON object",
        json.ok() ? "" : absl::StrCat(" (", json.status().message(), ")")));
  }
  *data_start = 8 + static_cast<int64_t>(header_bytes);
  const int64_t data_bytes = file_size - *data_start;
  for (const auto& [name, entry] : json->object) {
    if (name == "__metadata__") continue;
    const JsonValue* dtype = entry.Find("dtype");
    const JsonValue* shape = entry.Find("shape");
    const JsonValue* offsets = entry.Find("data_offsets");
    SafeTensor t;
    bool ok = dtype != nullptr && dtype->kind == JsonValue::Kind::kString &&
              shape != nullptr && shape->kind == JsonValue::Kind::kArray &&
              offsets != nullptr && offsets->kind == JsonValue::Kind::kArray &&
              offsets->array.size() == 2;
    if (ok) {
      t.dtype = dtype->string;
      for (const JsonValue& d : shape->array) {
        ok &= d.IsInteger(0, 1e12);
        if (ok) t.shape.push_back(static_cast<int64_t>(d.number));
      }
      ok &= offsets->array[0].IsInteger(0, data_bytes) &&
            offsets->array[1].IsInteger(0, data_bytes);
    }
    if (ok) {
      t.begin = static_cast<int64_t>(offsets->array[0].number);
      t.end = static_cast<int64_t>(offsets->array[1].number);
      ok = t.begin <= t.end;
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", name,
          "': needs dtype, shape and data_offsets within the file's ",
          data_bytes, " data bytes"));
    }
    (*tensors)[WithoutPrefix(name)] = std::move(t);
  }
  // No two tensors share bytes (the format lays them end to end): so the
  // tensors' sizes together are at most the file's, and a reader sizing its
  // buffers by them is bounded by the file.
  std::vector<std::pair<const SafeTensor*, const std::string*>> by_offset;
  for (const auto& [name, t] : *tensors) by_offset.push_back({&t, &name});
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) {
              return a.first->begin < b.first->begin;
            });
  const std::pair<const SafeTensor*, const std::string*>* last = nullptr;
  for (const auto& entry : by_offset) {  // `last`: the latest one of any bytes
    const SafeTensor& t = *entry.first;
    if (t.end == t.begin) continue;
    if (last != nullptr && t.begin < last->first->end) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensors '", *last->second, "' and '", *entry.second,
          "' overlap in the file (bytes ", last->first->begin, "-",
          last->first->end, " and ", t.begin, "-", t.end, ")"));
    }
    last = &entry;
  }
  return absl::OkStatus();
}

// Bytes a value of a tensor's dtype takes: 4 (F32), 2 (F16, BF16), or 0 for
// a dtype the import does not read.
int64_t HfValueBytes(const SafeTensor& t) {
  return t.dtype == "F32" ? 4 : (t.dtype == "F16" || t.dtype == "BF16") ? 2 : 0;
}

// Whether a tensor is what the import can read as shape `want`: that shape,
// a dtype it reads, and a span of the file holding exactly its values.
absl::Status CheckHfTensor(const std::string& path, const std::string& name,
                           const SafeTensor& t,
                           const std::vector<int64_t>& want) {
  if (t.shape != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": tensor '", name, "' has shape [", absl::StrJoin(t.shape, ", "),
        "], expected [", absl::StrJoin(want, ", "), "]"));
  }
  int64_t count = 1;
  for (const int64_t d : want) count *= d;
  const int64_t size = HfValueBytes(t);
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", name, "' is ", t.dtype,
                     "; the import reads F32, F16 and BF16"));
  }
  if (t.end - t.begin != count * size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", name, "' spans ", t.end - t.begin,
                     " bytes; its shape and dtype need ", count * size));
  }
  return absl::OkStatus();
}

// A tensor's values as floats: one CheckHfTensor passed (its dtype is read
// and its span holds exactly its values).
absl::Status ReadHfTensor(std::FILE* file, int64_t data_start,
                          const std::string& path, const std::string& name,
                          const SafeTensor& t, std::vector<float>* out) {
  const int64_t size = HfValueBytes(t);
  GPT2_CHECK(size != 0 && (t.end - t.begin) % size == 0);
  const int64_t count = (t.end - t.begin) / size;
  out->resize(static_cast<size_t>(count));
  std::vector<uint16_t> halves(size == 2 ? static_cast<size_t>(count) : 0);
  void* target = size == 4 ? static_cast<void*>(out->data()) : halves.data();
  if (::fseeko(file, static_cast<off_t>(data_start + t.begin), SEEK_SET) != 0 ||
      std::fread(target, static_cast<size_t>(size), static_cast<size_t>(count),
                 file) != static_cast<size_t>(count)) {
    return absl::DataLossError(
        absl::StrCat(path, ": read failed in tensor '", name, "'"));
  }
  for (int64_t i = 0; i < count && size == 2; ++i) {
    (*out)[i] = t.dtype == "BF16" ? Bf16BitsToFloat(halves[i])
                                  : HalfBitsToFloat(halves[i]);
  }
  return absl::OkStatus();
}

// config.json's GPT-2 shape, checked against what GPT-2 (and our model) is.
absl::Status ReadHfConfig(const std::string& path, config::ModelConfig* m) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  auto json = ParseJson(text);
  if (!json.ok() || json->kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a JSON object",
        json.ok() ? "" : absl::StrCat(" (", json.status().message(), ")")));
  }
  auto text_field = [&](const char* key, const char* want) -> absl::Status {
    const JsonValue* v = json->Find(key);
    if (v != nullptr &&
        !(v->kind == JsonValue::Kind::kString && v->string == want)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", key, " must be \"", want, "\" for GPT-2 as built here"));
    }
    return absl::OkStatus();
  };
  GPT2_RETURN_IF_ERROR(text_field("model_type", "gpt2"));
  // Our GELU is the tanh approximation.
  GPT2_RETURN_IF_ERROR(text_field("activation_function", "gelu_new"));
  auto integer = [&](std::initializer_list<const char*> keys, int* out) {
    for (const char* key : keys) {
      const JsonValue* v = json->Find(key);
      if (v != nullptr && v->IsInteger(1, 1 << 30)) {
        *out = static_cast<int>(v->number);
        return true;
      }
    }
    return false;
  };
  int layers = 0, heads = 0, channels = 0, positions = 0, vocab = 0;
  if (!integer({"n_layer"}, &layers) || !integer({"n_head"}, &heads) ||
      !integer({"n_embd"}, &channels) ||
      !integer({"n_positions", "n_ctx"}, &positions) ||
      !integer({"vocab_size"}, &vocab)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": needs whole numbers n_layer, n_head, n_embd, n_positions and "
        "vocab_size"));
  }
  if (const JsonValue* inner = json->Find("n_inner");
      inner != nullptr && inner->kind != JsonValue::Kind::kNull &&
      !(inner->IsInteger(0, 1 << 30) && inner->number == 4.0 * channels)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": n_inner must be null or 4 * n_embd"));
  }
  if (const JsonValue* tied = json->Find("tie_word_embeddings");
      tied != nullptr &&
      !(tied->kind == JsonValue::Kind::kBool && tied->boolean)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": tie_word_embeddings must be true (the LM head is wte)"));
  }
  m->set_num_layers(layers);
  m->set_num_heads(heads);
  m->set_channels(channels);
  m->set_max_seq_len(positions);
  m->set_vocab_size(vocab);
  return absl::OkStatus();
}

// Reads a Hugging Face GPT-2 tensor by tensor in the parameter list's order:
// `begin(shape)` once the shape is known and every tensor name checked, then
// `piece(spec, offset, values)` for each global tensor and each layer's slice,
// the values in our layout (Conv1D weights transposed, wte's padded rows zero).
absl::Status VisitHf(const std::string& path, std::string* note,
                     absl::FunctionRef<absl::Status(const ModelShape&)> begin,
                     absl::FunctionRef<absl::Status(const ParamSpec&, int64_t,
                                                    const std::vector<float>&)>
                         piece) {
  std::error_code ec;
  const bool folder = fs::is_directory(path, ec);
  const std::string file_path =
      folder ? (fs::path(path) / "model.safetensors").string() : path;
  const std::string config_path =
      ((folder ? fs::path(path) : fs::path(path).parent_path()) / "config.json")
          .string();
  GPT2_ASSIGN_OR_RETURN(InputFile input, OpenInput(file_path));
  std::FILE* file = input.file.get();
  std::map<std::string, SafeTensor> tensors;
  int64_t data_start = 0;
  GPT2_RETURN_IF_ERROR(ReadSafetensorsHeader(file, input.size, file_path,
                                             &tensors, &data_start));

  // The shape: config.json where there is one, else what the tensors say
  // (with GPT-2's head size of 64).
  config::ModelConfig m;
  const auto wte = tensors.find("wte.weight");
  const auto wpe = tensors.find("wpe.weight");
  if (wte == tensors.end() || wpe == tensors.end() ||
      wte->second.shape.size() != 2 || wpe->second.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_path, ": no 2-D wte.weight and wpe.weight: not a GPT-2 model"));
  }
  if (fs::is_regular_file(config_path, ec)) {
    GPT2_RETURN_IF_ERROR(ReadHfConfig(config_path, &m));
  } else {
    int layers = 0;
    while (tensors.count(absl::StrCat("h.", layers, ".ln_1.weight"))) ++layers;
    const int64_t channels = wte->second.shape[1];
    if (channels % 64 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          file_path, ": no config.json beside it, and n_embd = ", channels,
          " is not a multiple of GPT-2's head size 64: give the config.json"));
    }
    m.set_num_layers(layers);
    m.set_num_heads(static_cast<int>(channels / 64));
    m.set_channels(static_cast<int>(channels));
    m.set_max_seq_len(static_cast<int>(wpe->second.shape[0]));
    m.set_vocab_size(static_cast<int>(wte->second.shape[0]));
    if (note != nullptr) {
      *note = absl::StrCat("no config.json beside ", file_path,
                           ": the shape comes from the tensors, with n_head = ",
                           channels / 64, " (head size 64, as in every GPT-2)");
    }
  }
  GPT2_ASSIGN_OR_RETURN(const ModelShape shape, ModelShapeFromConfig(m));
  const std::vector<ParamSpec> list = BuildParamList(shape);
  // Each parameter's Hugging Face names (one per layer).
  std::vector<std::vector<std::string>> names;
  for (const ParamSpec& spec : list) {
    names.emplace_back();
    for (int l = 0; l < (spec.per_layer ? shape.num_layers : 1); ++l) {
      names.back().push_back(spec.per_layer
                                 ? absl::StrCat("h.", l, ".", spec.hf_name)
                                 : WithoutPrefix(spec.hf_name));
    }
  }
  // Every tensor must be GPT-2's: buffers and the tied LM head are skipped,
  // anything else is refused rather than dropped, before any work.
  std::map<std::string, const SafeTensor*> wanted;
  for (const auto& [name, t] : tensors) {
    const bool buffer = absl::StartsWith(name, "h.") &&
                        (absl::EndsWith(name, ".attn.bias") ||
                         absl::EndsWith(name, ".attn.masked_bias"));
    if (buffer || name == "lm_head.weight") continue;
    wanted[name] = &t;
  }
  int unexpected = 0;
  std::string first_unexpected;
  for (const auto& [name, t] : wanted) {
    bool known = false;
    for (const auto& per_param : names) {
      known |= std::find(per_param.begin(), per_param.end(), name) !=
               per_param.end();
    }
    if (!known && unexpected++ == 0) first_unexpected = name;
  }
  if (unexpected > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_path, ": tensor '", first_unexpected,
                     "' is not part of a GPT-2 of L=", shape.num_layers, " (",
                     unexpected, " such)"));
  }
  // Each parameter's shape as stored (Conv1D weights as (in, out), wte's V
  // rows).
  std::vector<std::vector<int64_t>> stored_shapes;
  for (const ParamSpec& spec : list) {
    std::vector<int64_t> slice = spec.slice_shape();
    if (spec.hf_transposed) std::swap(slice[0], slice[1]);
    if (spec.model_rows != 0) slice[0] = spec.model_rows;
    stored_shapes.push_back(std::move(slice));
  }
  // Every tensor present, of its shape, its bytes in the file, before
  // anything is sized by the shape: a config.json (or a header) can name any
  // shape, and only the file's own bytes vouch for one (a 507-byte folder
  // once asked for 3.2 TB here; found by fuzz_hf_import).
  for (size_t p = 0; p < list.size(); ++p) {
    for (const std::string& name : names[p]) {
      const auto found = wanted.find(name);
      if (found == wanted.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            file_path, ": tensor '", name, "' is missing (a GPT-2 of L=",
            shape.num_layers, " C=", shape.channels, " needs it)"));
      }
      GPT2_RETURN_IF_ERROR(
          CheckHfTensor(file_path, name, *found->second, stored_shapes[p]));
    }
  }
  GPT2_RETURN_IF_ERROR(begin(shape));

  std::vector<float> values, ours;
  for (size_t p = 0; p < list.size(); ++p) {
    const ParamSpec& spec = list[p];
    const std::vector<int64_t>& theirs_shape = stored_shapes[p];
    for (size_t l = 0; l < names[p].size(); ++l) {
      const std::string& name = names[p][l];
      GPT2_RETURN_IF_ERROR(ReadHfTensor(file, data_start, file_path, name,
                                        *wanted.at(name), &values));
      if (spec.hf_transposed) {  // (in, out) as stored, to our (out, in)
        const int64_t in = theirs_shape[0], out_dim = theirs_shape[1];
        ours.resize(values.size());
        for (int64_t i = 0; i < in; ++i)
          for (int64_t o = 0; o < out_dim; ++o)
            ours[o * in + i] = values[i * out_dim + o];
        values.swap(ours);
      }
      if (spec.model_rows != 0) {  // the padding rows: zero
        values.resize(static_cast<size_t>(spec.numel), 0.0f);
      }
      GPT2_RETURN_IF_ERROR(
          piece(spec, static_cast<int64_t>(l) * spec.layer_numel(), values));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsHfModel(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return fs::is_regular_file(fs::path(path) / "model.safetensors", ec);
  }
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  return in.read(head, sizeof(head)) && head[8] == '{';
}

absl::Status ImportHf(const std::string& path, const std::string& ckpt_path,
                      const CheckpointWriterOptions& options, int64_t step,
                      std::string* note) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("import: step must be >= 0, got ", step));
  }
  std::optional<CheckpointWriter> writer;
  auto begin = [&](const ModelShape& shape) -> absl::Status {
    ckpt::Header header;
    *header.mutable_config()->mutable_model() = ModelConfigOf(shape);
    header.set_step(step);
    header.set_tokens_seen(0);
    header.set_world_size(1);
    header.set_zero_stage(0);
    header.set_param_dtype(ToProtoDType(DType::kF32));
    header.set_has_optimizer_state(false);
    header.set_has_master_weights(false);
    header.set_num_params(TotalParams(BuildParamList(shape)));
    header.set_created_by("gpt2_ckpt import --from hf");
    header.set_created_unix_time(static_cast<int64_t>(std::time(nullptr)));
    GPT2_ASSIGN_OR_RETURN(CheckpointWriter created,
                          CheckpointWriter::Create(ckpt_path, header, options));
    writer.emplace(std::move(created));
    return absl::OkStatus();
  };
  auto write = [&](const ParamSpec& spec, int64_t offset,
                   const std::vector<float>& data) -> absl::Status {
    for (int64_t done = 0; done < static_cast<int64_t>(data.size());
         done += kWindow) {
      const int64_t count =
          std::min(kWindow, static_cast<int64_t>(data.size()) - done);
      GPT2_RETURN_IF_ERROR(writer->WriteChunk(spec.name, spec.shape,
                                              DType::kF32, offset + done,
                                              data.data() + done, count));
    }
    return absl::OkStatus();
  };
  GPT2_RETURN_IF_ERROR(VisitHf(path, note, begin, write));
  return writer->Commit();
}

absl::StatusOr<HfModel> ReadHf(const std::string& path, std::string* note) {
  HfModel model;
  auto begin = [&](const ModelShape& shape) -> absl::Status {
    model.shape = shape;
    model.params.assign(static_cast<size_t>(TotalParams(BuildParamList(shape))),
                        0.0f);
    return absl::OkStatus();
  };
  auto copy = [&](const ParamSpec& spec, int64_t offset,
                  const std::vector<float>& data) -> absl::Status {
    std::copy(data.begin(), data.end(),
              model.params.begin() + spec.offset + offset);
    return absl::OkStatus();
  };
  GPT2_RETURN_IF_ERROR(VisitHf(path, note, begin, copy));
  return model;
}

absl::Status ExportHf(CheckpointReader* reader, const std::string& out_dir,
                      const std::string& data_dir) {
  GPT2_ASSIGN_OR_RETURN(const std::vector<ParamSpec> list, ParamListOf(reader));
  GPT2_ASSIGN_OR_RETURN(
      const ModelShape shape,
      ModelShapeFromConfig(reader->header().config().model()));
  GPT2_ASSIGN_OR_RETURN(const std::vector<HfTensor> plan,
                        PlanHfTensors(list, shape));
  const fs::path vocab = fs::path(data_dir) / "gpt2" / "encoder.json";
  const fs::path merges = fs::path(data_dir) / "gpt2" / "vocab.bpe";
  std::error_code ec;
  if (!data_dir.empty()) {
    // Before anything is written, so a missing tokenizer leaves no half
    // export behind.
    for (const fs::path& p : {vocab, merges}) {
      if (!fs::is_regular_file(p, ec)) {
        return absl::NotFoundError(
            absl::StrCat(p.string(), ": tokenizer file not found"));
      }
    }
  }
  const bool made = !fs::exists(out_dir, ec);
  fs::create_directories(out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(out_dir, ": cannot create: ", ec.message()));
  }
  // A failed export into a folder it made leaves no empty folder behind (run
  // after the files' destructors, which remove their temporary files).
  bool exported = false;
  absl::Cleanup remove_made = [&] {
    std::error_code ignored;
    if (made && !exported && fs::is_empty(out_dir, ignored))
      fs::remove(out_dir, ignored);
  };

  // safetensors: uint64 header length, JSON header, then the tensors'
  // bytes back to back; offsets are relative to the end of the header.
  std::vector<std::string> entries = {"\"__metadata__\":{\"format\":\"pt\"}"};
  int64_t offset = 0;
  for (const HfTensor& t : plan) {
    const int64_t bytes = t.count * static_cast<int64_t>(sizeof(float));
    entries.push_back(
        absl::StrCat(JsonString(t.name), ":{\"dtype\":\"F32\",\"shape\":[",
                     absl::StrJoin(t.shape, ","), "],\"data_offsets\":[",
                     offset, ",", offset + bytes, "]}"));
    offset += bytes;
  }
  std::string json = absl::StrCat("{", absl::StrJoin(entries, ","), "}");
  // Pad with spaces so the data starts 8-byte aligned.
  json.append((8 - json.size() % 8) % 8, ' ');
  const uint64_t json_len = json.size();

  OutputFile out;
  GPT2_RETURN_IF_ERROR(
      out.Open((fs::path(out_dir) / "model.safetensors").string()));
  GPT2_RETURN_IF_ERROR(out.Write(&json_len, sizeof(json_len)));
  GPT2_RETURN_IF_ERROR(out.Write(json));
  std::vector<float> window, transposed;
  for (const HfTensor& t : plan) {
    if (t.transpose) {
      // A layer's (out, in) matrix, written as (in, out).
      const int64_t in = t.shape[0], out_dim = t.shape[1];
      window.resize(static_cast<size_t>(t.count));
      transposed.resize(static_cast<size_t>(t.count));
      GPT2_RETURN_IF_ERROR(reader->ReadTensorSlice(
          t.param, DType::kF32, t.source_offset, t.count, window.data()));
      for (int64_t o = 0; o < out_dim; ++o)
        for (int64_t i = 0; i < in; ++i)
          transposed[i * out_dim + o] = window[o * in + i];
      GPT2_RETURN_IF_ERROR(
          out.Write(transposed.data(), t.count * sizeof(float)));
      continue;
    }
    window.resize(static_cast<size_t>(std::min(kWindow, t.count)));
    for (int64_t done = 0; done < t.count; done += kWindow) {
      const int64_t count = std::min(kWindow, t.count - done);
      GPT2_RETURN_IF_ERROR(reader->ReadTensorSlice(
          t.param, DType::kF32, t.source_offset + done, count, window.data()));
      GPT2_RETURN_IF_ERROR(out.Write(window.data(), count * sizeof(float)));
    }
  }
  // Every file is written whole before any is put in place: a failure (a
  // full disk) leaves an earlier export in the folder as it was, not some
  // files of each.
  GPT2_RETURN_IF_ERROR(out.Close());

  OutputFile config;
  GPT2_RETURN_IF_ERROR(
      config.Open((fs::path(out_dir) / "config.json").string()));
  GPT2_RETURN_IF_ERROR(config.Write(HfConfigJson(shape)));
  GPT2_RETURN_IF_ERROR(config.Close());
  OutputFile tokenizer;
  GPT2_RETURN_IF_ERROR(
      tokenizer.Open((fs::path(out_dir) / "tokenizer_config.json").string()));
  GPT2_RETURN_IF_ERROR(tokenizer.Write(absl::StrCat(
      "{\n  \"tokenizer_class\": \"GPT2Tokenizer\",\n  \"model_max_length\": ",
      shape.max_seq_len,
      ",\n  \"bos_token\": \"<|endoftext|>\",\n  \"eos_token\": "
      "\"<|endoftext|>\",\n  \"unk_token\": \"<|endoftext|>\"\n}\n")));
  GPT2_RETURN_IF_ERROR(tokenizer.Close());
  // model.safetensors renamed last: a rename that fails part-way (rare: all
  // were written) leaves the earlier weights in place.
  std::vector<OutputFile> files;
  files.push_back(std::move(config));
  files.push_back(std::move(tokenizer));
  if (!data_dir.empty()) {
    GPT2_ASSIGN_OR_RETURN(
        OutputFile vocab_copy,
        CopyFile(vocab.string(), (fs::path(out_dir) / "vocab.json").string()));
    files.push_back(std::move(vocab_copy));
    GPT2_ASSIGN_OR_RETURN(
        OutputFile merges_copy,
        CopyFile(merges.string(), (fs::path(out_dir) / "merges.txt").string()));
    files.push_back(std::move(merges_copy));
  }
  files.push_back(std::move(out));
  for (OutputFile& file : files) GPT2_RETURN_IF_ERROR(file.Publish());
  exported = true;
  return absl::OkStatus();
}

}  // namespace gpt2
