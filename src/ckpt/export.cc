#include "src/ckpt/export.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/ckpt/json_util.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

namespace fs = std::filesystem;

// Elements per streamed window.
constexpr int64_t kWindow = int64_t{1} << 20;

// An output file written as "<path>.tmp" and renamed into place on Commit, so
// a failed export never leaves a half-written file under the real name.
class OutputFile {
 public:
  ~OutputFile() {
    if (file_ != nullptr) {
      std::fclose(file_);
      std::remove(temp_.c_str());
    }
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    temp_ = path + ".tmp";
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
  absl::Status Commit() {
    const bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
    const std::string error = std::strerror(errno);
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok || !closed || std::rename(temp_.c_str(), path_.c_str()) != 0) {
      std::remove(temp_.c_str());
      return absl::ResourceExhaustedError(
          absl::StrCat(path_, ": cannot write: ", error));
    }
    return absl::OkStatus();
  }

 private:
  std::string path_, temp_;
  std::FILE* file_ = nullptr;
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

absl::Status CopyFile(const std::string& from, const std::string& to) {
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
  return out.Commit();
}

// How a parameter-list tensor appears in Hugging Face's GPT2LMHeadModel.
struct HfName {
  const char* ours;
  const char* theirs;  // per-layer names go under transformer.h.{i}.
  bool transpose;      // Conv1D stores (in, out); we store (out, in)
};
constexpr HfName kHfNames[] = {
    {"wte", "transformer.wte.weight", false},
    {"wpe", "transformer.wpe.weight", false},
    {"ln1w", "ln_1.weight", false},
    {"ln1b", "ln_1.bias", false},
    {"qkvw", "attn.c_attn.weight", true},
    {"qkvb", "attn.c_attn.bias", false},
    {"attprojw", "attn.c_proj.weight", true},
    {"attprojb", "attn.c_proj.bias", false},
    {"ln2w", "ln_2.weight", false},
    {"ln2b", "ln_2.bias", false},
    {"fcw", "mlp.c_fc.weight", true},
    {"fcb", "mlp.c_fc.bias", false},
    {"fcprojw", "mlp.c_proj.weight", true},
    {"fcprojb", "mlp.c_proj.bias", false},
    {"lnfw", "transformer.ln_f.weight", false},
    {"lnfb", "transformer.ln_f.bias", false},
};

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
    const HfName* map = nullptr;
    for (const HfName& n : kHfNames) {
      if (spec.name == n.ours) map = &n;
    }
    if (map == nullptr) {
      return absl::UnimplementedError(
          absl::StrCat("parameter '", spec.name, "' has no Hugging Face name"));
    }
    std::vector<int64_t> slice_shape = spec.shape;
    if (spec.per_layer) slice_shape.erase(slice_shape.begin());
    if (map->transpose) std::swap(slice_shape[0], slice_shape[1]);
    if (spec.per_layer) {
      for (int l = 0; l < shape.num_layers; ++l) {
        per_layer[l].push_back(
            HfTensor{absl::StrCat("transformer.h.", l, ".", map->theirs),
                     spec.name, l * spec.layer_numel(), spec.layer_numel(),
                     slice_shape, map->transpose});
      }
      continue;
    }
    HfTensor t{map->theirs, spec.name, 0, spec.numel, slice_shape, false};
    if (spec.name == "wte") {
      // Only the real vocabulary: rows past V are llm.c's padding.
      t.shape[0] = shape.vocab_size;
      t.count = int64_t{shape.vocab_size} * shape.channels;
    }
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
  std::FILE* file = std::fopen(llmc_path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(llmc_path, ": cannot open: ", std::strerror(errno)));
  }
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{file};
  struct stat st;
  if (::fstat(fileno(file), &st) != 0) {
    return absl::DataLossError(absl::StrCat(llmc_path, ": cannot stat"));
  }
  int32_t header[256];
  if (st.st_size < static_cast<off_t>(sizeof(header)) ||
      std::fread(header, sizeof(header), 1, file) != 1) {
    return absl::DataLossError(
        absl::StrCat(llmc_path, ": too short for an llm.c model file (",
                     st.st_size, " bytes)"));
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
  if (st.st_size != want_bytes) {
    return absl::DataLossError(absl::StrCat(
        llmc_path, ": ", st.st_size, " bytes, but its header (L=", header[4],
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
  fs::create_directories(out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(out_dir, ": cannot create: ", ec.message()));
  }

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
  GPT2_RETURN_IF_ERROR(out.Commit());

  OutputFile config;
  GPT2_RETURN_IF_ERROR(
      config.Open((fs::path(out_dir) / "config.json").string()));
  GPT2_RETURN_IF_ERROR(config.Write(HfConfigJson(shape)));
  GPT2_RETURN_IF_ERROR(config.Commit());
  OutputFile tokenizer;
  GPT2_RETURN_IF_ERROR(
      tokenizer.Open((fs::path(out_dir) / "tokenizer_config.json").string()));
  GPT2_RETURN_IF_ERROR(tokenizer.Write(absl::StrCat(
      "{\n  \"tokenizer_class\": \"GPT2Tokenizer\",\n  \"model_max_length\": ",
      shape.max_seq_len,
      ",\n  \"bos_token\": \"<|endoftext|>\",\n  \"eos_token\": "
      "\"<|endoftext|>\",\n  \"unk_token\": \"<|endoftext|>\"\n}\n")));
  GPT2_RETURN_IF_ERROR(tokenizer.Commit());
  if (!data_dir.empty()) {
    GPT2_RETURN_IF_ERROR(
        CopyFile(vocab.string(), (fs::path(out_dir) / "vocab.json").string()));
    GPT2_RETURN_IF_ERROR(
        CopyFile(merges.string(), (fs::path(out_dir) / "merges.txt").string()));
  }
  return absl::OkStatus();
}

}  // namespace gpt2
