// Conversions and reports: llm.c export/import round trips (fp32 and bf16
// files), the Hugging Face folder (safetensors header parsed and checked,
// transposed Conv1D weights spot-checked), tensor statistics and diffs.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/export.h"
#include "src/ckpt/inspect.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/core/bf16.h"
#include "src/core/json_reader.h"
#include "tests/ckpt/ckpt_test_util.h"

namespace gpt2 {
namespace {

using ::gpt2::testing::Exists;
using ::gpt2::testing::HeaderFor;
using ::gpt2::testing::RandomValues;
using ::gpt2::testing::ReadBytes;
using ::gpt2::testing::ScratchDir;
using ::gpt2::testing::TinyShape;
using ::gpt2::testing::WriteBytes;
using ::testing::HasSubstr;

// Saves random weights of `shape` (and optionally AdamW state) to `path`.
std::vector<float> SaveRandomModel(const std::string& path,
                                   const ModelShape& shape, uint64_t seed,
                                   bool optimizer = false) {
  const std::vector<ParamSpec> list = BuildParamList(shape);
  const auto params = RandomValues<float>(TotalParams(list), seed);
  ModelStateView state{HostView::Of(params)};
  if (optimizer) state.adam_m = state.adam_v = HostView::Of(params);
  EXPECT_TRUE(
      SaveModelCheckpoint(path, HeaderFor(shape, 42), list, state).ok());
  return params;
}

CheckpointReader OpenOrDie(const std::string& path) {
  auto reader = CheckpointReader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  return std::move(reader).value();
}

TEST(Llmc, ExportImportRoundTripIsExact) {
  ScratchDir dir;
  const ModelShape shape = TinyShape();
  const std::string ckpt = dir.File("a.ckpt");
  const std::vector<float> params = SaveRandomModel(ckpt, shape, 1, true);
  CheckpointReader reader = OpenOrDie(ckpt);
  const std::string bin = dir.File("model.bin");
  ASSERT_TRUE(ExportLlmc(&reader, bin).ok());

  // llm.c's layout: 256 int32 header, then the params in list order.
  const std::string bytes = ReadBytes(bin);
  ASSERT_EQ(bytes.size(), 1024 + params.size() * 4);
  int32_t header[256];
  std::memcpy(header, bytes.data(), 1024);
  EXPECT_EQ(header[0], 20240326);
  EXPECT_EQ(header[1], 3);
  EXPECT_EQ(header[2], shape.max_seq_len);
  EXPECT_EQ(header[3], shape.vocab_size);
  EXPECT_EQ(header[4], shape.num_layers);
  EXPECT_EQ(header[5], shape.num_heads);
  EXPECT_EQ(header[6], shape.channels);
  EXPECT_EQ(header[7], shape.padded_vocab_size);
  for (int i = 8; i < 256; ++i) ASSERT_EQ(header[i], 0);
  EXPECT_EQ(std::memcmp(bytes.data() + 1024, params.data(), params.size() * 4),
            0);

  const std::string back = dir.File("b.ckpt");
  CheckpointWriterOptions options;
  options.max_record_bytes = 300;  // a different record split than a.ckpt
  ASSERT_TRUE(ImportLlmc(bin, back, options).ok());
  CheckpointReader imported = OpenOrDie(back);
  EXPECT_FALSE(imported.header().has_optimizer_state());
  EXPECT_EQ(imported.header().step(), 0);
  EXPECT_EQ(imported.header().config().model().channels(), shape.channels);
  EXPECT_FALSE(imported.header().config().has_train());
  auto diff = DiffCheckpoints(&reader, &imported);
  ASSERT_TRUE(diff.ok()) << diff.status();
  // The weights are identical; the optimizer state stays behind.
  EXPECT_EQ(diff->tensors.size(), 16u);
  for (const TensorDiff& d : diff->tensors) {
    EXPECT_EQ(d.num_different, 0) << d.name;
    EXPECT_EQ(d.max_abs, 0.0) << d.name;
  }
  EXPECT_EQ(diff->only_in_a.size(), 32u);
  EXPECT_TRUE(diff->only_in_b.empty());
  EXPECT_FALSE(diff->identical());

  // Exported again, the file is byte-identical.
  const std::string bin2 = dir.File("model2.bin");
  ASSERT_TRUE(ExportLlmc(&imported, bin2).ok());
  EXPECT_EQ(ReadBytes(bin2), bytes);
}

TEST(Llmc, ImportsBf16AndRejectsBadFiles) {
  ScratchDir dir;
  const ModelShape shape = TinyShape();
  const int64_t total = TotalParams(BuildParamList(shape));
  const auto values = RandomValues<float>(total, 3);
  std::vector<uint16_t> bf16(total);
  ASSERT_TRUE(ConvertElements(values.data(), DType::kF32, bf16.data(),
                              DType::kBF16, total)
                  .ok());
  int32_t header[256] = {20240326,          5,
                         shape.max_seq_len, shape.vocab_size,
                         shape.num_layers,  shape.num_heads,
                         shape.channels,    shape.padded_vocab_size};
  std::string file(reinterpret_cast<const char*>(header), 1024);
  file.append(reinterpret_cast<const char*>(bf16.data()), total * 2);
  WriteBytes(dir.File("bf16.bin"), file);
  ASSERT_TRUE(
      ImportLlmc(dir.File("bf16.bin"), dir.File("bf16.ckpt"), {}, 3656).ok());
  CheckpointReader reader = OpenOrDie(dir.File("bf16.ckpt"));
  EXPECT_EQ(reader.header().param_dtype(), ckpt::DTYPE_BF16);
  EXPECT_EQ(reader.header().step(), 3656);
  EXPECT_EQ(reader.Find("qkvw")->dtype, DType::kBF16);
  auto loaded =
      LoadModelCheckpoint(dir.File("bf16.ckpt"), BuildParamList(shape), false);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (int64_t i = 0; i < total; ++i)
    ASSERT_NEAR(loaded->params[i], values[i], std::fabs(values[i]) / 128);

  WriteBytes(dir.File("short.bin"), file.substr(0, 1024 + 10));
  EXPECT_THAT(ImportLlmc(dir.File("short.bin"), dir.File("x.ckpt")).message(),
              HasSubstr("short.bin: 1034 bytes, but its header (L=2 NH=2 C=8 "
                        "maxT=16 V=50 Vp=64, bf16) needs"));
  std::string bad_magic = file;
  bad_magic[0] = 1;
  WriteBytes(dir.File("magic.bin"), bad_magic);
  EXPECT_THAT(ImportLlmc(dir.File("magic.bin"), dir.File("x.ckpt")).message(),
              HasSubstr("not an llm.c model file"));
  std::string version = file;
  version[4] = 4;
  WriteBytes(dir.File("version.bin"), version);
  EXPECT_THAT(ImportLlmc(dir.File("version.bin"), dir.File("x.ckpt")).message(),
              HasSubstr("llm.c model version 4 is not supported"));
  std::string heads = file;
  const int32_t three = 3;
  std::memcpy(heads.data() + 20, &three, 4);
  WriteBytes(dir.File("heads.bin"), heads);
  EXPECT_THAT(ImportLlmc(dir.File("heads.bin"), dir.File("x.ckpt")).message(),
              HasSubstr("model.num_heads = 3"));
  EXPECT_THAT(
      ImportLlmc(dir.File("bf16.bin"), dir.File("x.ckpt"), {}, -1).message(),
      HasSubstr("step must be >= 0, got -1"));
  EXPECT_FALSE(Exists(dir.File("x.ckpt")));
}

// Reads one float from a safetensors file: tensor `name`, flat index `i`.
float SafetensorsValue(const std::string& bytes, const JsonValue& header,
                       int64_t data_start, const std::string& name, int64_t i) {
  const JsonValue& t = header[name];
  const int64_t begin = static_cast<int64_t>(t["data_offsets"].array[0].number);
  float v;
  std::memcpy(&v, bytes.data() + data_start + begin + 4 * i, 4);
  return v;
}

void CheckHfExport(const ModelShape& shape, const std::string& data_dir) {
  ScratchDir dir;
  const std::string ckpt = dir.File("m.ckpt");
  const std::vector<float> params = SaveRandomModel(ckpt, shape, 5);
  const std::vector<ParamSpec> list = BuildParamList(shape);
  CheckpointReader reader = OpenOrDie(ckpt);
  const std::string out = dir.File("hf");
  const absl::Status status = ExportHf(&reader, out, data_dir);
  ASSERT_TRUE(status.ok()) << status;

  const std::string bytes = ReadBytes(out + "/model.safetensors");
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  ASSERT_LE(header_len + 8, bytes.size());
  EXPECT_EQ((8 + header_len) % 8, 0u) << "data must start 8-byte aligned";
  const absl::StatusOr<JsonValue> parsed =
      ParseJson(bytes.substr(8, header_len));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const JsonValue& header = *parsed;
  ASSERT_EQ(header.kind, JsonValue::Kind::kObject);
  EXPECT_EQ(header["__metadata__"]["format"].string, "pt");

  const int64_t L = shape.num_layers, C = shape.channels;
  std::map<std::string, std::vector<int64_t>> want = {
      {"transformer.wte.weight", {shape.vocab_size, C}},
      {"transformer.wpe.weight", {shape.max_seq_len, C}},
      {"transformer.ln_f.weight", {C}},
      {"transformer.ln_f.bias", {C}},
  };
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    want[p + "ln_1.weight"] = {C};
    want[p + "ln_1.bias"] = {C};
    want[p + "attn.c_attn.weight"] = {C, 3 * C};
    want[p + "attn.c_attn.bias"] = {3 * C};
    want[p + "attn.c_proj.weight"] = {C, C};
    want[p + "attn.c_proj.bias"] = {C};
    want[p + "ln_2.weight"] = {C};
    want[p + "ln_2.bias"] = {C};
    want[p + "mlp.c_fc.weight"] = {C, 4 * C};
    want[p + "mlp.c_fc.bias"] = {4 * C};
    want[p + "mlp.c_proj.weight"] = {4 * C, C};
    want[p + "mlp.c_proj.bias"] = {C};
  }
  ASSERT_EQ(header.object.size(), want.size() + 1);  // + __metadata__
  // Offsets tile the data section exactly, in some order.
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& [name, shape_want] : want) {
    const JsonValue& t = header[name];
    ASSERT_EQ(t.kind, JsonValue::Kind::kObject) << name << " missing";
    EXPECT_EQ(t["dtype"].string, "F32") << name;
    std::vector<int64_t> got;
    for (const JsonValue& d : t["shape"].array)
      got.push_back(static_cast<int64_t>(d.number));
    EXPECT_EQ(got, shape_want) << name;
    ASSERT_EQ(t["data_offsets"].array.size(), 2u);
    const int64_t begin =
        static_cast<int64_t>(t["data_offsets"].array[0].number);
    const int64_t end = static_cast<int64_t>(t["data_offsets"].array[1].number);
    int64_t numel = 1;
    for (int64_t d : shape_want) numel *= d;
    EXPECT_EQ(end - begin, 4 * numel) << name;
    ranges.emplace_back(begin, end);
  }
  std::sort(ranges.begin(), ranges.end());
  int64_t next = 0;
  for (const auto& [begin, end] : ranges) {
    ASSERT_EQ(begin, next);
    next = end;
  }
  EXPECT_EQ(static_cast<uint64_t>(next), bytes.size() - 8 - header_len);
  EXPECT_EQ(header.Find("lm_head.weight"), nullptr) << "tied to wte";

  // Spot checks against our layout (out, in): HF's Conv1D is (in, out).
  const int64_t data_start = 8 + static_cast<int64_t>(header_len);
  auto ours = [&](const std::string& param, int64_t layer, int64_t row,
                  int64_t col, int64_t cols) {
    for (const ParamSpec& p : list) {
      if (p.name == param)
        return params[p.offset + layer * p.layer_numel() + row * cols + col];
    }
    return std::numeric_limits<float>::quiet_NaN();
  };
  const int64_t last = L - 1;
  const std::string hl = "transformer.h." + std::to_string(last) + ".";
  // c_attn.weight[i][o] == qkvw[o][i]
  for (auto [i, o] : std::vector<std::pair<int64_t, int64_t>>{
           {0, 0}, {1, 2}, {C - 1, 3 * C - 1}, {2, C + 1}}) {
    EXPECT_EQ(SafetensorsValue(bytes, header, data_start,
                               hl + "attn.c_attn.weight", i * 3 * C + o),
              ours("qkvw", last, o, i, C));
  }
  // mlp.c_proj.weight (4C, C)[i][o] == fcprojw (C, 4C)[o][i]
  EXPECT_EQ(SafetensorsValue(bytes, header, data_start,
                             "transformer.h.0.mlp.c_proj.weight", 5 * C + 1),
            ours("fcprojw", 0, 1, 5, 4 * C));
  EXPECT_EQ(
      SafetensorsValue(bytes, header, data_start, hl + "mlp.c_fc.bias", 3),
      ours("fcb", last, 0, 3, 4 * C));
  // wte's last real row.
  EXPECT_EQ(
      SafetensorsValue(bytes, header, data_start, "transformer.wte.weight",
                       (shape.vocab_size - 1) * C + 2),
      ours("wte", 0, shape.vocab_size - 1, 2, C));

  const absl::StatusOr<JsonValue> parsed_config =
      ParseJson(ReadBytes(out + "/config.json"));
  ASSERT_TRUE(parsed_config.ok()) << parsed_config.status();
  const JsonValue& config = *parsed_config;
  EXPECT_EQ(config["architectures"].array.at(0).string, "GPT2LMHeadModel");
  EXPECT_EQ(config["model_type"].string, "gpt2");
  EXPECT_EQ(config["n_layer"].number, shape.num_layers);
  EXPECT_EQ(config["n_head"].number, shape.num_heads);
  EXPECT_EQ(config["n_embd"].number, shape.channels);
  EXPECT_EQ(config["n_positions"].number, shape.max_seq_len);
  EXPECT_EQ(config["vocab_size"].number, shape.vocab_size);
  EXPECT_EQ(config["activation_function"].string, "gelu_new");
  EXPECT_EQ(config["layer_norm_epsilon"].number, 1e-5);
  EXPECT_TRUE(config["tie_word_embeddings"].boolean);
  EXPECT_TRUE(ParseJson(ReadBytes(out + "/tokenizer_config.json")).ok());
  if (!data_dir.empty()) {
    EXPECT_EQ(ReadBytes(out + "/vocab.json"),
              ReadBytes(data_dir + "/gpt2/encoder.json"));
    EXPECT_EQ(ReadBytes(out + "/merges.txt"),
              ReadBytes(data_dir + "/gpt2/vocab.bpe"));
  } else {
    EXPECT_FALSE(Exists(out + "/vocab.json"));
  }
}

TEST(HfExport, TinyModel) { CheckHfExport(TinyShape(), ""); }

// GPT-2's V = 50257 (wte cut from Vp = 50304 rows), narrow otherwise.
constexpr ModelShape kFullVocabShape{1, 1, 4, 8, 50257, 50304};

TEST(HfExport, FullGpt2Vocabulary) { CheckHfExport(kFullVocabShape, ""); }

TEST(HfExport, FullGpt2VocabularyWithTokenizer) {
  const char* data = std::getenv("GPT2_DATA_DIR");
  const std::string data_dir = data != nullptr ? data : "";
  if (data_dir.empty() || !Exists(data_dir + "/gpt2/encoder.json")) {
    GTEST_SKIP() << "no GPT-2 tokenizer files in GPT2_DATA_DIR ('" << data_dir
                 << "'): the export's vocab.json and merges.txt are not "
                    "checked";
  }
  CheckHfExport(kFullVocabShape, data_dir);
}

TEST(HfExport, MissingTokenizerFailsBeforeWriting) {
  ScratchDir dir;
  SaveRandomModel(dir.File("m.ckpt"), TinyShape(), 1);
  CheckpointReader reader = OpenOrDie(dir.File("m.ckpt"));
  EXPECT_THAT(ExportHf(&reader, dir.File("hf"), dir.File("nodata")).message(),
              HasSubstr("nodata/gpt2/encoder.json: tokenizer file not found"));
  EXPECT_FALSE(Exists(dir.File("hf/model.safetensors")));
}

// ---- Hugging Face import ----------------------------------------------------

std::string WithoutTransformer(const std::string& name) {
  return name.substr(std::string("transformer.").size());
}

struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// The tensors of a safetensors file, in file order.
std::vector<StTensor> ReadSafetensors(const std::string& path) {
  const std::string bytes = ReadBytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const absl::StatusOr<JsonValue> header =
      ParseJson(bytes.substr(8, header_len));
  EXPECT_TRUE(header.ok()) << header.status();
  std::vector<StTensor> out;
  for (const auto& [name, t] : header->object) {
    if (name == "__metadata__") continue;
    StTensor st{name, t["dtype"].string, {}, ""};
    for (const JsonValue& d : t["shape"].array)
      st.shape.push_back(static_cast<int64_t>(d.number));
    const auto begin = static_cast<size_t>(t["data_offsets"].array[0].number);
    const auto end = static_cast<size_t>(t["data_offsets"].array[1].number);
    st.bytes = bytes.substr(8 + header_len + begin, end - begin);
    out.push_back(std::move(st));
  }
  return out;
}

void WriteSafetensors(const std::string& path,
                      const std::vector<StTensor>& tensors) {
  std::string json = "{";
  std::string data;
  for (const StTensor& t : tensors) {
    absl::StrAppend(&json, json.size() > 1 ? "," : "", "\"", t.name,
                    "\":{\"dtype\":\"", t.dtype, "\",\"shape\":[",
                    absl::StrJoin(t.shape, ","), "],\"data_offsets\":[",
                    data.size(), ",", data.size() + t.bytes.size(), "]}");
    data += t.bytes;
  }
  json += "}";
  const uint64_t n = json.size();
  WriteBytes(path,
             std::string(reinterpret_cast<const char*>(&n), 8) + json + data);
}

// Float bytes as BF16 (rounded to nearest even) or F16.
std::string Narrowed(const std::string& f32, bool bf16) {
  std::string out;
  for (size_t i = 0; i + 4 <= f32.size(); i += 4) {
    float f;
    std::memcpy(&f, f32.data() + i, 4);
    uint16_t h;
    if (bf16) {
      h = FloatToBf16Bits(f);
    } else {
      // Values here are small normal numbers: no overflow or subnormals.
      uint32_t b;
      std::memcpy(&b, &f, 4);
      const uint32_t sign = (b >> 16) & 0x8000;
      const int e = static_cast<int>((b >> 23) & 0xFF) - 127 + 15;
      h = static_cast<uint16_t>(
          e <= 0 ? sign : sign | (e << 10) | ((b >> 13) & 0x3FF));
    }
    out.append(reinterpret_cast<const char*>(&h), 2);
  }
  return out;
}

// What an import gives: the checkpoint's params, and its model section.
HostModelState Imported(const std::string& ckpt, const ModelShape& shape) {
  auto reader = CheckpointReader::Open(ckpt);
  EXPECT_TRUE(reader.ok()) << reader.status();
  auto imported_shape = ModelShapeFromConfig(reader->header().config().model());
  EXPECT_TRUE(imported_shape.ok());
  EXPECT_EQ(imported_shape->num_layers, shape.num_layers);
  EXPECT_EQ(imported_shape->num_heads, shape.num_heads);
  EXPECT_EQ(imported_shape->channels, shape.channels);
  EXPECT_EQ(imported_shape->max_seq_len, shape.max_seq_len);
  EXPECT_EQ(imported_shape->vocab_size, shape.vocab_size);
  auto state =
      LoadModelCheckpoint(ckpt, BuildParamList(*imported_shape), false);
  EXPECT_TRUE(state.ok()) << state.status();
  return *state;
}

// Every weight of `want` (our layout, `shape`) in `got` (the import's layout:
// vocab padded to a multiple of 128, the padded rows zero), through `round`.
void ExpectSameWeights(const std::vector<float>& want, const ModelShape& shape,
                       const std::vector<double>& got,
                       float (*round)(float) = nullptr) {
  ModelShape padded = shape;
  padded.padded_vocab_size = ModelShape::PaddedVocab(shape.vocab_size, 0);
  const std::vector<ParamSpec> ours = BuildParamList(shape);
  const std::vector<ParamSpec> theirs = BuildParamList(padded);
  ASSERT_EQ(got.size(), static_cast<size_t>(TotalParams(theirs)));
  int64_t wrong = 0;
  for (size_t p = 0; p < ours.size(); ++p) {
    const int64_t real = ours[p].name == "wte"
                             ? int64_t{shape.vocab_size} * shape.channels
                             : ours[p].numel;
    for (int64_t i = 0; i < theirs[p].numel; ++i) {
      float w = i < real ? want[ours[p].offset + i] : 0.0f;
      if (round != nullptr) w = round(w);
      wrong += got[theirs[p].offset + i] != w;
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST(HfImport, ExportThenImportGivesTheWeightsBack) {
  ScratchDir dir;
  const ModelShape shape = TinyShape();
  const std::vector<float> params =
      SaveRandomModel(dir.File("m.ckpt"), shape, 9);
  CheckpointReader reader = OpenOrDie(dir.File("m.ckpt"));
  ASSERT_TRUE(ExportHf(&reader, dir.File("hf"), "").ok());
  // The folder, and the .safetensors file (config.json beside it).
  for (const std::string& from :
       {dir.File("hf"), dir.File("hf") + "/model.safetensors"}) {
    std::string note;
    const absl::Status s = ImportHf(from, dir.File("back.ckpt"), {}, 7, &note);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(note, "");  // the shape came from config.json
    const HostModelState state = Imported(dir.File("back.ckpt"), shape);
    EXPECT_EQ(state.header.step(), 7);
    EXPECT_FALSE(state.header.has_optimizer_state());
    ExpectSameWeights(params, shape, state.params);
    // The same weights straight into memory (sampling, --init_from).
    const absl::StatusOr<HfModel> direct = ReadHf(from);
    ASSERT_TRUE(direct.ok()) << direct.status();
    EXPECT_EQ(direct->shape.padded_vocab_size, 128);
    ExpectSameWeights(
        params, shape,
        std::vector<double>(direct->params.begin(), direct->params.end()));
  }
}

// Hugging Face's own gpt2 file: no "transformer." prefix, the attention-mask
// buffers, a stored lm_head, half-precision tensors, and (here) no config.json.
TEST(HfImport, ReadsHuggingFacesOwnLayoutAndHalfPrecision) {
  ScratchDir dir;
  const ModelShape shape{2, 1, 64, 16, 50, 64};  // C = 64: one head of 64
  const std::vector<float> params =
      SaveRandomModel(dir.File("m.ckpt"), shape, 4);
  CheckpointReader reader = OpenOrDie(dir.File("m.ckpt"));
  ASSERT_TRUE(ExportHf(&reader, dir.File("hf"), "").ok());
  const std::vector<StTensor> exported =
      ReadSafetensors(dir.File("hf") + "/model.safetensors");
  for (const bool bf16 : {true, false}) {
    std::vector<StTensor> theirs;
    for (const StTensor& t : exported) {
      StTensor h = t;
      h.name = t.name.substr(std::string("transformer.").size());
      h.dtype = bf16 ? "BF16" : "F16";
      h.bytes = Narrowed(t.bytes, bf16);
      theirs.push_back(h);
      if (h.name == "wte.weight") {
        h.name = "lm_head.weight";
        theirs.push_back(h);
      }
      if (absl::EndsWith(h.name, ".ln_1.weight")) {  // a mask buffer per block
        const std::string block = h.name.substr(0, h.name.find(".ln_1"));
        theirs.push_back({block + ".attn.bias",
                          "F32",
                          {1, 1, 16, 16},
                          std::string(16 * 16 * 4, '\0')});
        theirs.push_back({block + ".attn.masked_bias", "F32", {}, "\0\0\0\0"});
      }
    }
    const std::string file =
        dir.File(bf16 ? "bf16.safetensors" : "f16.safetensors");
    WriteSafetensors(file, theirs);
    std::string note;
    const absl::Status s = ImportHf(file, dir.File("back.ckpt"), {}, 0, &note);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_THAT(note, HasSubstr("n_head = 1 (head size 64"));
    ExpectSameWeights(
        params, shape, Imported(dir.File("back.ckpt"), shape).params,
        bf16 ? +[](float f) { return Bf16BitsToFloat(FloatToBf16Bits(f)); }
             : +[](float f) {
                 // F16 keeps 10 mantissa bits (truncated, as written) and,
                 // as Narrowed writes it, flushes below 2^-14 to zero.
                 uint32_t b;
                 std::memcpy(&b, &f, 4);
                 b &=
                     ((b >> 23) & 0xFF) <= 127 - 15 ? 0x80000000u : 0xFFFFE000u;
                 float r;
                 std::memcpy(&r, &b, 4);
                 return r;
               });
  }
}

TEST(HfImport, RefusesWhatIsNotGpt2) {
  ScratchDir dir;
  const ModelShape shape = TinyShape();
  SaveRandomModel(dir.File("m.ckpt"), shape, 2);
  CheckpointReader reader = OpenOrDie(dir.File("m.ckpt"));
  ASSERT_TRUE(ExportHf(&reader, dir.File("hf"), "").ok());
  const std::string good = dir.File("hf") + "/model.safetensors";
  const std::vector<StTensor> tensors = ReadSafetensors(good);
  const std::string config = ReadBytes(dir.File("hf") + "/config.json");
  // One broken copy per case, each in a folder with the good config.json.
  int n = 0;
  auto variant = [&](std::vector<StTensor> t, const std::string& cfg) {
    const std::string folder = dir.File(absl::StrCat("v", n++));
    std::filesystem::create_directories(folder);
    WriteSafetensors(folder + "/model.safetensors", t);
    WriteBytes(folder + "/config.json", cfg);
    // A copy: the message lives only as long as the returned status.
    return std::string(ImportHf(folder, dir.File("x.ckpt")).message());
  };
  std::vector<StTensor> missing = tensors;
  missing.erase(missing.begin() + 5);
  EXPECT_THAT(variant(missing, config),
              HasSubstr("tensor '" + WithoutTransformer(tensors[5].name) +
                        "' is missing"));
  std::vector<StTensor> extra = tensors;
  extra.push_back({"transformer.h.0.mlp.gate.weight", "F32", {1}, "abcd"});
  EXPECT_THAT(variant(extra, config),
              HasSubstr("'h.0.mlp.gate.weight' is not part of a GPT-2"));
  std::vector<StTensor> reshaped = tensors;
  for (StTensor& t : reshaped) {
    if (t.name == "transformer.h.1.attn.c_attn.weight")
      std::swap(t.shape[0], t.shape[1]);
  }
  EXPECT_THAT(variant(reshaped, config),
              HasSubstr("'h.1.attn.c_attn.weight' has shape [24, 8], "
                        "expected [8, 24]"));
  std::vector<StTensor> ints = tensors;
  ints[0].dtype = "I64";
  EXPECT_THAT(variant(ints, config), HasSubstr("is I64; the import reads F32"));
  std::vector<StTensor> short_data = tensors;
  short_data.back().bytes.resize(4);
  EXPECT_THAT(variant(short_data, config), HasSubstr("spans 4 bytes"));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string c = config;
    c.replace(c.find(from), from.size(), to);
    return c;
  };
  EXPECT_THAT(variant(tensors, with("\"gelu_new\"", "\"relu\"")),
              HasSubstr("activation_function must be \"gelu_new\""));
  EXPECT_THAT(variant(tensors, with("\"n_layer\": 2", "\"n_layer\": 3")),
              HasSubstr("tensor 'h.2.ln_1.weight' is missing"));
  EXPECT_THAT(variant(tensors, "{\"n_layer\": 2"),
              HasSubstr("not a JSON object"));
  // Not a safetensors file at all, and a truncated one.
  WriteBytes(dir.File("junk.safetensors"), "this is not a model file at all");
  EXPECT_THAT(
      ImportHf(dir.File("junk.safetensors"), dir.File("x.ckpt")).message(),
      HasSubstr("not a safetensors file"));
  const std::string bytes = ReadBytes(good);
  WriteBytes(dir.File("cut.safetensors"), bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(
      ImportHf(dir.File("cut.safetensors"), dir.File("x.ckpt")).message(),
      HasSubstr("within the file's"));
  // Without config.json, C = 8 gives no head count to assume.
  WriteBytes(dir.File("alone.safetensors"), bytes);
  EXPECT_THAT(
      ImportHf(dir.File("alone.safetensors"), dir.File("x.ckpt")).message(),
      HasSubstr("give the config.json"));
  EXPECT_THAT(ImportHf(dir.File("nothing"), dir.File("x.ckpt")).message(),
              HasSubstr("cannot open"));
  EXPECT_FALSE(Exists(dir.File("x.ckpt")));  // no half-written checkpoint
}

// A file's own bytes vouch for the model it holds, not its config.json or its
// header: a 507-byte folder whose config.json asked for L=1000, C=8192 had
// ReadHf (gpt2_sample, gpt2_serve, --init_from) allocate 3.2 TB and die of
// std::bad_alloc (found by fuzz_hf_import). Every tensor is checked before
// any buffer is sized, and tensors may not share bytes.
TEST(HfImport, SizesNothingBeyondWhatTheFileHolds) {
  ScratchDir dir;
  SaveRandomModel(dir.File("m.ckpt"), TinyShape(), 2);
  CheckpointReader reader = OpenOrDie(dir.File("m.ckpt"));
  ASSERT_TRUE(ExportHf(&reader, dir.File("hf"), "").ok());
  const std::vector<StTensor> tensors =
      ReadSafetensors(dir.File("hf") + "/model.safetensors");
  std::vector<StTensor> embeddings;
  for (const StTensor& t : tensors) {
    if (absl::StrContains(t.name, "wte") || absl::StrContains(t.name, "wpe")) {
      embeddings.push_back(t);
    }
  }
  ASSERT_EQ(embeddings.size(), 2u);
  const std::string folder = dir.File("big");
  std::filesystem::create_directories(folder);
  WriteSafetensors(folder + "/model.safetensors", embeddings);
  WriteBytes(folder + "/config.json",
             R"({"model_type": "gpt2", "n_layer": 1000, "n_head": 64,
                 "n_embd": 8192, "n_positions": 4, "vocab_size": 8})");
  const absl::StatusOr<HfModel> big = ReadHf(folder);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("has shape"));
  EXPECT_FALSE(ImportHf(folder, dir.File("big.ckpt")).ok());
  EXPECT_FALSE(Exists(dir.File("big.ckpt")));

  // Two tensors over the same bytes (an empty one between them changes
  // nothing): refused, whatever the shapes.
  auto overlapping = [&](const std::string& middle) {
    const std::string json =
        R"({"wte.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)" +
        middle +
        R"("wpe.weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    const uint64_t n = json.size();
    const std::string file = dir.File("overlap.safetensors");
    WriteBytes(file, std::string(reinterpret_cast<const char*>(&n), 8) + json +
                         std::string(12, '\0'));
    return std::string(ReadHf(file).status().message());
  };
  EXPECT_THAT(overlapping(""),
              HasSubstr("tensors 'wte.weight' and 'wpe.weight' overlap in the "
                        "file (bytes 0-8 and 4-12)"));
  EXPECT_THAT(
      overlapping(
          R"("empty":{"dtype":"F32","shape":[0],"data_offsets":[6,6]},)"),
      HasSubstr("tensors 'wte.weight' and 'wpe.weight' overlap"));
}

TEST(Inspect, StatsCountNonFiniteAndMatchADirectComputation) {
  ScratchDir dir;
  std::vector<double> v = RandomValues<double>(5000, 9, 3.0);
  for (double& x : v) x += 10.0;  // a large mean tests the merge's accuracy
  v[17] = std::numeric_limits<double>::quiet_NaN();
  v[18] = std::numeric_limits<double>::infinity();
  v[4000] = -std::numeric_limits<double>::infinity();
  CheckpointWriterOptions options;
  options.max_record_bytes = 1000;
  auto w =
      CheckpointWriter::Create(dir.File("s.ckpt"), ckpt::Header(), options);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->WriteTensor("v", {5000}, DType::kF64, v.data()).ok());
  ASSERT_TRUE(w->Commit().ok());
  CheckpointReader reader = OpenOrDie(dir.File("s.ckpt"));
  auto stats = ComputeTensorStats(&reader, "v");
  ASSERT_TRUE(stats.ok()) << stats.status();
  double sum = 0, lo = 1e300, hi = -1e300, amax = 0;
  int n = 0;
  for (double x : v) {
    if (!std::isfinite(x)) continue;
    sum += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    amax = std::max(amax, std::fabs(x));
    ++n;
  }
  const double mean = sum / n;
  double ss = 0;
  for (double x : v)
    if (std::isfinite(x)) ss += (x - mean) * (x - mean);
  EXPECT_EQ(stats->count, 5000);
  EXPECT_EQ(stats->nan, 1);
  EXPECT_EQ(stats->inf, 2);
  EXPECT_NEAR(stats->mean, mean, 1e-12);
  EXPECT_NEAR(stats->std, std::sqrt(ss / n), 1e-12);
  EXPECT_EQ(stats->min, lo);
  EXPECT_EQ(stats->max, hi);
  EXPECT_EQ(stats->abs_max, amax);

  const SizeBreakdown size = ComputeSizeBreakdown(reader);
  EXPECT_EQ(size.params, 5000 * 8);
  EXPECT_EQ(
      size.header + size.params + size.optimizer + size.master + size.overhead,
      size.total);
}

TEST(Inspect, DiffReportsChangedAndMissingTensors) {
  ScratchDir dir;
  const ModelShape shape = TinyShape();
  const std::vector<ParamSpec> list = BuildParamList(shape);
  auto params = RandomValues<float>(TotalParams(list), 1);
  ASSERT_TRUE(SaveModelCheckpoint(dir.File("a.ckpt"), HeaderFor(shape, 1), list,
                                  {HostView::Of(params)})
                  .ok());
  const int64_t fcb = list[11].offset;
  ASSERT_EQ(list[11].name, "fcb");
  params[fcb + 3] = 0.5f;
  const float old = RandomValues<float>(TotalParams(list), 1)[fcb + 3];
  ASSERT_TRUE(SaveModelCheckpoint(dir.File("b.ckpt"), HeaderFor(shape, 2), list,
                                  {HostView::Of(params)})
                  .ok());
  CheckpointReader a = OpenOrDie(dir.File("a.ckpt"));
  CheckpointReader b = OpenOrDie(dir.File("b.ckpt"));
  auto same = DiffCheckpoints(&a, &a);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->identical());
  EXPECT_TRUE(same->header_differences.empty());
  auto diff = DiffCheckpoints(&a, &b);
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_FALSE(diff->identical());
  for (const TensorDiff& d : diff->tensors) {
    if (d.name == "fcb") {
      EXPECT_EQ(d.num_different, 1);
      EXPECT_DOUBLE_EQ(d.max_abs, std::fabs(0.5 - double{old}));
      EXPECT_DOUBLE_EQ(d.max_rel, std::fabs(0.5 - double{old}) /
                                      std::max(0.5, std::fabs(double{old})));
    } else {
      EXPECT_EQ(d.num_different, 0) << d.name;
    }
  }
  EXPECT_THAT(diff->header_differences, HasSubstr("step"));
}

}  // namespace
}  // namespace gpt2
