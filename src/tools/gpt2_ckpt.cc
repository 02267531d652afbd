// gpt2_ckpt: inspects, verifies, compares and converts gpt2_ddp checkpoints
// (inspect, verify, diff, export to llm.c / Hugging Face, import from llm.c).
// Every subcommand streams tensors; none loads a whole checkpoint.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/export.h"
#include "src/ckpt/inspect.h"
#include "src/ckpt/json_util.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/ckpt/run_files.h"
#include "src/core/error.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/model/gpt2.h"
#include "src/tools/cli_common.h"

ABSL_FLAG(bool, json, false, "inspect: print one JSON object instead of text.");
ABSL_FLAG(std::string, format, "",
          "export: the output format, llmc (an llm.c model file) or hf (a "
          "Hugging Face GPT-2 folder).");
ABSL_FLAG(std::string, from, "",
          "import: the input format, llmc (an llm.c model file) or hf (a "
          "Hugging Face GPT-2: its folder, or its model.safetensors).");
ABSL_FLAG(std::string, out, "",
          "export/import: the file (llmc, import) or folder (hf) to write.");
ABSL_FLAG(std::string, data_dir, "",
          "export --format hf: folder holding gpt2/encoder.json and "
          "gpt2/vocab.bpe, copied as vocab.json and merges.txt. Default: "
          "$GPT2_DATA_DIR, else ./data.");
ABSL_FLAG(bool, tokenizer, true,
          "export --format hf: copy the tokenizer files (--notokenizer skips "
          "them).");
ABSL_FLAG(std::string, prompt, "", "logits: the text whose tokens are run.");
ABSL_FLAG(int64_t, step, 0,
          "import: the step to record in the checkpoint (the imported files "
          "do not say how far their weights were trained; tools show it).");
ABSL_FLAG(bool, force, false,
          "export/import: write --out even where it holds a training "
          "checkpoint (whose optimizer state would be lost) or, for --format "
          "hf, a folder with files an export does not write.");
ABSL_FLAG(bool, weights_only, true,
          "export/import: only the weights travel (always so; accepted for "
          "clarity).");

namespace gpt2 {
namespace {

constexpr char kUsage[] =
    R"(inspects, verifies, compares and converts gpt2_ddp checkpoints.

usage:
  gpt2_ckpt inspect FILE [--json]
      Format version, config, step, tokens seen, world size and ZeRO layout,
      then per tensor: shape, dtype, elements, mean, std, min, max, abs-max
      and NaN/Inf counts, and the file size by part.
  gpt2_ckpt verify FILE
      Reads every record and checks every CRC. Exit 0 if the file is sound;
      otherwise exit 1 and name the first bad record.
  gpt2_ckpt diff A B
      Per tensor: max absolute and max relative difference; tensors present
      in only one file; header fields that differ. Prints "identical" when
      every tensor matches, "common tensors identical" when those in both
      match (a training checkpoint against its weights alone). Exit 0 unless a file cannot be read.
  gpt2_ckpt export --format llmc --out MODEL.bin CKPT
      llm.c's model file (version 3, fp32): the weights only.
  gpt2_ckpt export --format hf --out DIR CKPT [--data_dir D] [--notokenizer]
      DIR/model.safetensors (GPT2LMHeadModel names, fp32), config.json,
      tokenizer_config.json, and vocab.json + merges.txt from D/gpt2/.
  gpt2_ckpt import --from llmc --out CKPT MODEL.bin [--step N]
      A weights-only checkpoint from an llm.c model file (version 3 or 5).
  gpt2_ckpt import --from hf --out CKPT DIR [--step N]
      The same from a Hugging Face GPT-2 (e.g. openai-community/gpt2's
      model.safetensors and config.json in DIR; DIR may also be the
      .safetensors file): F32, F16 or BF16, fp32 in the checkpoint.
  gpt2_ckpt logits CKPT --prompt TEXT [--out FILE] [--data_dir D]
      Runs the model (CPU, fp32) on the prompt's tokens and prints the top-5
      next tokens; --out writes the logits as raw float32 (T x V, row-major,
      padded vocab cut), for comparing with other implementations.

FILE, A, B and CKPT may also be a run folder (e.g. logs/tiny_cpu), its
checkpoints/ folder or that folder's `latest` file: the checkpoint `latest`
names.

Flags:)";

absl::Status UsageError(const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " (see gpt2_ckpt --help)"));
}

absl::Status ExpectArgs(const std::vector<std::string>& args, size_t n,
                        const char* form) {
  if (args.size() != n) {
    return UsageError(absl::StrCat("expected: gpt2_ckpt ", form, "; got ",
                                   args.size(), " argument(s)"));
  }
  return absl::OkStatus();
}

std::string Indent(const std::string& text, const std::string& prefix) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += prefix + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

std::string DTypeField(int proto_dtype) {
  const absl::StatusOr<DType> d = FromProtoDType(proto_dtype);
  return d.ok() ? DTypeName(*d) : "-";
}

std::string Percent(int64_t part, int64_t total) {
  return total > 0 ? absl::StrFormat("%.1f%%", 100.0 * part / total) : "-";
}

// Totals over one group of tensors: the parameters, or the tensors under one
// prefix ("adamw.m", "adamw.v", "master"), so optimizer state reads at a
// glance.
struct GroupSummary {
  std::string name;
  int64_t tensors = 0, elements = 0, finite = 0, nan = 0, inf = 0;
  double sum_squares = 0, abs_max = 0;
  double rms() const {
    return finite > 0 ? std::sqrt(sum_squares / finite) : std::nan("");
  }
};

std::vector<GroupSummary> SummarizeGroups(
    const std::vector<TensorInfo>& tensors,
    const std::vector<TensorStats>& stats) {
  std::vector<GroupSummary> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t slash = tensors[i].name.find('/');
    const std::string name = slash == std::string::npos
                                 ? "params"
                                 : tensors[i].name.substr(0, slash);
    auto it =
        std::find_if(groups.begin(), groups.end(),
                     [&](const GroupSummary& g) { return g.name == name; });
    if (it == groups.end()) {
      groups.push_back(GroupSummary{name});
      it = groups.end() - 1;
    }
    const TensorStats& s = stats[i];
    const int64_t finite = s.count - s.nan - s.inf;
    ++it->tensors;
    it->elements += s.count;
    it->nan += s.nan;
    it->inf += s.inf;
    if (finite > 0) {
      it->finite += finite;
      it->sum_squares += finite * (s.std * s.std + s.mean * s.mean);
      it->abs_max = std::max(it->abs_max, s.abs_max);
    }
  }
  return groups;
}

absl::Status Inspect(const std::string& path, bool json) {
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader, CheckpointReader::Open(path));
  const ckpt::Header& h = reader.header();
  std::vector<TensorStats> stats;
  for (const TensorInfo& t : reader.tensors()) {
    if (t.dtype == DType::kI32) {
      TensorStats s;
      s.count = t.numel;
      stats.push_back(s);
      continue;
    }
    GPT2_ASSIGN_OR_RETURN(TensorStats s, ComputeTensorStats(&reader, t.name));
    stats.push_back(s);
  }
  const SizeBreakdown size = ComputeSizeBreakdown(reader);
  const std::vector<GroupSummary> groups =
      SummarizeGroups(reader.tensors(), stats);

  if (json) {
    std::vector<std::string> group_json;
    for (const GroupSummary& g : groups) {
      group_json.push_back(absl::StrCat(
          "{\"name\":", JsonString(g.name), ",\"tensors\":", g.tensors,
          ",\"elements\":", g.elements, ",\"rms\":", JsonNumber(g.rms()),
          ",\"abs_max\":", JsonNumber(g.abs_max), ",\"nan\":", g.nan,
          ",\"inf\":", g.inf, "}"));
    }
    std::string header_json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(h, &header_json, options)
             .ok()) {
      header_json = "null";
    }
    std::vector<std::string> tensors;
    for (size_t i = 0; i < stats.size(); ++i) {
      const TensorInfo& t = reader.tensors()[i];
      const TensorStats& s = stats[i];
      tensors.push_back(absl::StrCat(
          "{\"name\":", JsonString(t.name), ",\"shape\":[",
          absl::StrJoin(t.shape, ","), "],\"dtype\":\"", DTypeName(t.dtype),
          "\",\"numel\":", t.numel, ",\"bytes\":", t.bytes,
          ",\"records\":", t.records.size(), ",\"mean\":", JsonNumber(s.mean),
          ",\"std\":", JsonNumber(s.std), ",\"min\":", JsonNumber(s.min),
          ",\"max\":", JsonNumber(s.max), ",\"abs_max\":",
          JsonNumber(s.abs_max), ",\"nan\":", s.nan, ",\"inf\":", s.inf, "}"));
    }
    std::printf(
        "{\"file\":%s,\"file_size\":%lld,\"format_version\":%u,\"header\":%s,"
        "\"tensors\":[%s],\"groups\":[%s],\"size\":{\"header\":%lld,\"params\":"
        "%lld,"
        "\"optimizer\":%lld,\"master\":%lld,\"overhead\":%lld,\"total\":%lld}}"
        "\n",
        JsonString(path).c_str(), static_cast<long long>(reader.file_size()),
        reader.format_version(), header_json.c_str(),
        absl::StrJoin(tensors, ",").c_str(),
        absl::StrJoin(group_json, ",").c_str(),
        static_cast<long long>(size.header),
        static_cast<long long>(size.params),
        static_cast<long long>(size.optimizer),
        static_cast<long long>(size.master),
        static_cast<long long>(size.overhead),
        static_cast<long long>(size.total));
    return absl::OkStatus();
  }

  std::printf("file: %s (%lld bytes)\n", path.c_str(),
              static_cast<long long>(reader.file_size()));
  std::printf("format version: %u\n", reader.format_version());
  if (h.has_created_by()) {
    std::printf("created by: %s at unix time %lld\n", h.created_by().c_str(),
                static_cast<long long>(h.created_unix_time()));
  }
  std::printf(
      "step: %lld | tokens seen: %lld | lr: %.4e%s\n",
      static_cast<long long>(h.step()), static_cast<long long>(h.tokens_seen()),
      h.lr(),
      h.train_tokens() > 0
          ? absl::StrCat(" | training data: ", h.train_tokens(), " tokens")
                .c_str()
          : "");
  std::printf("saved by world size %d | ZeRO stage %d | shard size %lld\n",
              h.world_size(), h.zero_stage(),
              static_cast<long long>(h.shard_size()));
  std::printf(
      "precision: params %s, optimizer %s | optimizer state: %s | master "
      "weights: %s | parameters: %lld\n",
      DTypeField(h.param_dtype()).c_str(),
      DTypeField(h.optimizer_dtype()).c_str(),
      h.has_optimizer_state() ? "yes" : "no (weights only)",
      h.has_master_weights() ? "yes" : "no",
      static_cast<long long>(h.num_params()));
  if (h.has_rng()) {
    std::printf("rng: seed %llu%s%s, %d state words\n",
                static_cast<unsigned long long>(h.rng().seed()),
                h.rng().algorithm().empty() ? "" : ", ",
                h.rng().algorithm().c_str(), h.rng().words_size());
  }
  for (const ckpt::LoaderCursor& c : h.loader()) {
    std::printf("loader rank %d: shard %lld, position %lld, micro-step %lld\n",
                c.rank(), static_cast<long long>(c.shard()),
                static_cast<long long>(c.position()),
                static_cast<long long>(c.micro_step()));
  }
  std::string config_text;
  google::protobuf::TextFormat::PrintToString(h.config(), &config_text);
  std::printf("config:\n%s", Indent(config_text, "  ").c_str());
  std::printf("tensors: %zu in %zu records\n", reader.tensors().size(),
              reader.records().size());
  std::printf("  %-22s %-18s %-5s %12s %12s %12s %12s %12s %12s %6s %6s\n",
              "name", "shape", "dtype", "elements", "mean", "std", "min", "max",
              "abs-max", "nan", "inf");
  for (size_t i = 0; i < stats.size(); ++i) {
    const TensorInfo& t = reader.tensors()[i];
    const TensorStats& s = stats[i];
    std::printf(
        "  %-22s %-18s %-5s %12lld %12.4e %12.4e %12.4e %12.4e %12.4e %6lld "
        "%6lld\n",
        t.name.c_str(), ShapeString(t.shape).c_str(), DTypeName(t.dtype),
        static_cast<long long>(t.numel), s.mean, s.std, s.min, s.max, s.abs_max,
        static_cast<long long>(s.nan), static_cast<long long>(s.inf));
  }
  std::printf("groups:\n");
  for (const GroupSummary& g : groups) {
    std::printf(
        "  %-10s %4lld tensors %12lld elements | rms %.4e | abs-max %.4e | "
        "nan %lld | inf %lld\n",
        g.name.c_str(), static_cast<long long>(g.tensors),
        static_cast<long long>(g.elements), g.rms(), g.abs_max,
        static_cast<long long>(g.nan), static_cast<long long>(g.inf));
  }
  std::printf(
      "size: header %lld (%s), params %lld (%s), optimizer %lld (%s), master "
      "%lld (%s), overhead %lld (%s), total %lld\n",
      static_cast<long long>(size.header),
      Percent(size.header, size.total).c_str(),
      static_cast<long long>(size.params),
      Percent(size.params, size.total).c_str(),
      static_cast<long long>(size.optimizer),
      Percent(size.optimizer, size.total).c_str(),
      static_cast<long long>(size.master),
      Percent(size.master, size.total).c_str(),
      static_cast<long long>(size.overhead),
      Percent(size.overhead, size.total).c_str(),
      static_cast<long long>(size.total));
  return absl::OkStatus();
}

absl::Status Verify(const std::string& path) {
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader, CheckpointReader::Open(path));
  GPT2_RETURN_IF_ERROR(reader.VerifyAll());
  std::printf(
      "%s: ok (format version %u, step %lld, %zu tensors in %zu records, "
      "%lld bytes, every crc32c matches)\n",
      path.c_str(), reader.format_version(),
      static_cast<long long>(reader.header().step()), reader.tensors().size(),
      reader.records().size(), static_cast<long long>(reader.file_size()));
  return absl::OkStatus();
}

absl::Status Diff(const std::string& path_a, const std::string& path_b) {
  GPT2_ASSIGN_OR_RETURN(CheckpointReader a, CheckpointReader::Open(path_a));
  GPT2_ASSIGN_OR_RETURN(CheckpointReader b, CheckpointReader::Open(path_b));
  GPT2_ASSIGN_OR_RETURN(const CheckpointDiff diff, DiffCheckpoints(&a, &b));
  std::printf("  %-22s %12s %12s %12s\n", "tensor", "max-abs", "max-rel",
              "different");
  int differing = 0;
  for (const TensorDiff& d : diff.tensors) {
    if (!d.same_shape()) {
      std::printf("  %-22s shape %s vs %s\n", d.name.c_str(),
                  ShapeString(d.shape_a).c_str(),
                  ShapeString(d.shape_b).c_str());
      ++differing;
      continue;
    }
    if (d.num_different > 0) ++differing;
    std::printf("  %-22s %12.4e %12.4e %12lld\n", d.name.c_str(), d.max_abs,
                d.max_rel, static_cast<long long>(d.num_different));
  }
  for (const std::string& name : diff.only_in_a)
    std::printf("only in %s: %s\n", path_a.c_str(), name.c_str());
  for (const std::string& name : diff.only_in_b)
    std::printf("only in %s: %s\n", path_b.c_str(), name.c_str());
  if (!diff.header_differences.empty()) {
    std::printf("header differences:\n%s",
                Indent(diff.header_differences, "  ").c_str());
  }
  if (diff.identical() &&
      absl::StrContains(diff.header_differences, "config.model.")) {
    // The same numbers read as another model (a head count guessed):
    // "identical" said they were the same model.
    std::printf(
        "the same tensors (%zu, every element equal), but not the same model: "
        "the model configs differ (above)\n",
        diff.tensors.size());
  } else if (diff.identical()) {
    std::printf(
        "identical: %zu tensors, every element equal%s\n", diff.tensors.size(),
        diff.header_differences.empty() ? "" : " (the headers differ: above)");
  } else if (differing == 0 && !diff.tensors.empty()) {
    // A training checkpoint against its weights alone (an export imported
    // back): what both hold is equal; the rest (the optimizer's state) is in
    // one file only. ("different: 0 of 16 common tensors differ" read as a
    // mismatch.)
    std::printf(
        "common tensors identical: %zu tensors in both files, every element "
        "equal; %zu + %zu tensors in only one file\n",
        diff.tensors.size(), diff.only_in_a.size(), diff.only_in_b.size());
  } else {
    std::printf(
        "different: %d of %zu common tensors differ, %zu + %zu "
        "tensors in only one file\n",
        differing, diff.tensors.size(), diff.only_in_a.size(),
        diff.only_in_b.size());
  }
  return absl::OkStatus();
}

// The files a Hugging Face export writes (and its temporary files).
bool HfExportFile(const std::string& name) {
  for (const char* ours : kHfExportFiles) {
    if (name == ours || name == absl::StrCat(ours, ".tmp")) return true;
  }
  return false;
}

// --out against what it would replace: never the input itself; a training
// checkpoint (its optimizer state would be lost), or a folder holding other
// files than an export's, only with --force. `folder`: --out is a folder
// (a Hugging Face export), else a file.
absl::Status CheckOut(const std::string& out, const std::string& input,
                      bool folder) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(out, ec)) return absl::OkStatus();
  if (fs::equivalent(out, input, ec) ||
      (fs::is_directory(input, ec) &&
       fs::equivalent(out, fs::path(input) / "model.safetensors", ec))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--out ", out,
                     " is the input itself: writing it would destroy what "
                     "is being read; name another --out"));
  }
  const bool force = absl::GetFlag(FLAGS_force);
  if (folder) {
    if (!fs::is_directory(out, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--out ", out,
                       " is a file; a Hugging Face export is a folder: name "
                       "a new or empty one"));
    }
    std::vector<std::string> others;
    for (const auto& entry : fs::directory_iterator(out, ec)) {
      const std::string name = entry.path().filename().string();
      if (!HfExportFile(name)) others.push_back(name);
    }
    std::sort(others.begin(), others.end());
    if (!others.empty() && !force) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--out ", out, " holds files an export does not write (",
          absl::StrJoin(
              others.size() > 5
                  ? std::vector<std::string>(others.begin(), others.begin() + 5)
                  : others,
              ", "),
          others.size() > 5 ? ", ..." : "",
          "): an export goes into a folder of its own (a new or empty one, "
          "or an earlier export's); --force writes into it anyway, "
          "replacing its model.safetensors, config.json and tokenizer files"));
    }
    return absl::OkStatus();
  }
  if (absl::StatusOr<CheckpointReader> existing = CheckpointReader::Open(out);
      existing.ok() && !force &&
      existing->Find(FamilyTensorName(TensorFamily::kAdamM, "wte")) !=
          nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--out ", out, " is a training checkpoint (step ",
        existing->header().step(),
        ", with its optimizer state): writing over it would lose that; name "
        "another --out, or --force"));
  }
  return absl::OkStatus();
}

absl::Status Export(const std::vector<std::string>& args) {
  GPT2_RETURN_IF_ERROR(
      ExpectArgs(args, 1, "export --format llmc|hf --out OUT CKPT"));
  const std::string format = absl::GetFlag(FLAGS_format);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return UsageError("export needs --out");
  if (!absl::GetFlag(FLAGS_weights_only)) {
    return UsageError(
        "export writes weights only; --noweights_only is not "
        "supported");
  }
  if (format != "llmc" && format != "hf") {
    return UsageError(
        absl::StrCat("export needs --format llmc or hf, got '", format, "'"));
  }
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader,
                        CheckpointReader::Open(args[0]));
  GPT2_RETURN_IF_ERROR(CheckOut(out, reader.path(), format == "hf"));
  if (format == "llmc") {
    GPT2_RETURN_IF_ERROR(ExportLlmc(&reader, out));
    // The step is the checkpoint's: llm.c's file has no place for it (an
    // import records --step, 0 by default).
    std::printf(
        "wrote %s (llm.c model, version 3, fp32: the weights of step %lld; the "
        "file does not keep the step, import --step N records it)\n",
        out.c_str(), static_cast<long long>(reader.header().step()));
    return absl::OkStatus();
  }
  const std::string data_dir =
      absl::GetFlag(FLAGS_tokenizer)
          ? ResolveDataDir(absl::GetFlag(FLAGS_data_dir))
          : "";
  const absl::Status status = ExportHf(&reader, out, data_dir);
  if (absl::StrContains(status.message(), "tokenizer file")) {
    return absl::NotFoundError(absl::StrCat(status.message(),
                                            " (point --data_dir at the data "
                                            "folder, or pass --notokenizer)"));
  }
  GPT2_RETURN_IF_ERROR(status);
  std::printf(
      "wrote %s/ (model.safetensors, config.json, "
      "tokenizer_config.json%s)\n",
      out.c_str(), data_dir.empty() ? "" : ", vocab.json, merges.txt");
  return absl::OkStatus();
}

absl::Status Import(const std::vector<std::string>& args) {
  GPT2_RETURN_IF_ERROR(
      ExpectArgs(args, 1, "import --from llmc|hf --out CKPT INPUT"));
  const std::string from = absl::GetFlag(FLAGS_from);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (from != "llmc" && from != "hf") {
    return UsageError(absl::StrCat(
        "import needs --from llmc or --from hf, got '", from, "'"));
  }
  if (out.empty()) return UsageError("import needs --out");
  if (!absl::GetFlag(FLAGS_weights_only)) {
    return UsageError(
        "import reads weights only; --noweights_only is not "
        "supported");
  }
  const int64_t step = absl::GetFlag(FLAGS_step);
  GPT2_RETURN_IF_ERROR(CheckOut(out, args[0], /*folder=*/false));
  if (std::error_code ec; std::filesystem::is_directory(out, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--out ", out, " is a folder: name the checkpoint file to write"));
  }
  std::string note;
  GPT2_RETURN_IF_ERROR(from == "llmc"
                           ? ImportLlmc(args[0], out, {}, step)
                           : ImportHf(args[0], out, {}, step, &note));
  if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
  std::printf("wrote %s (weights-only checkpoint from %s, step %lld)\n",
              out.c_str(), args[0].c_str(), static_cast<long long>(step));
  return absl::OkStatus();
}

// Our model's logits for a prompt, on the CPU in fp32: the reference other
// implementations (e.g. transformers on an HF export) are compared against.
absl::Status Logits(const std::string& path) {
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (prompt.empty()) return UsageError("logits needs --prompt TEXT");
  GPT2_ASSIGN_OR_RETURN(CheckpointReader reader, CheckpointReader::Open(path));
  GPT2_ASSIGN_OR_RETURN(ModelShape shape,
                        ModelShapeFromConfig(reader.header().config().model()));
  GPT2_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(
                            ResolveDataDir(absl::GetFlag(FLAGS_data_dir))));
  const std::vector<int> ids = tokenizer.Encode(prompt);
  const int T = static_cast<int>(ids.size());
  if (T > shape.max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt is ", T, " tokens; the model's context is ",
                     shape.max_seq_len));
  }
  auto backend = MakeCpuBackend();
  Gpt2Model model(backend.get(), shape, DType::kF32, 1, T);
  std::vector<double> params(model.num_params());
  GPT2_RETURN_IF_ERROR(ReadFlatRange(&reader, model.param_list(),
                                     TensorFamily::kParams, DType::kF64, 0,
                                     model.num_params(), params.data()));
  model.SetParams(params);
  const std::vector<int32_t> tokens(ids.begin(), ids.end());
  model.Forward(tokens.data(), nullptr, 1, T, 0.0, false);
  std::vector<float> logits(model.logits().numel);
  backend->Download(logits.data(), model.logits());
  const int V = shape.vocab_size, Vp = shape.padded_vocab_size;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    FILE* f = std::fopen(out.c_str(), "wb");
    if (f == nullptr) {
      return absl::PermissionDeniedError(
          absl::StrCat(out, ": cannot create: ", std::strerror(errno)));
    }
    bool ok = true;
    for (int t = 0; t < T; ++t)
      ok &= std::fwrite(&logits[int64_t{t} * Vp], 4, V, f) == size_t(V);
    ok &= std::fclose(f) == 0;
    if (!ok) return absl::DataLossError(absl::StrCat(out, ": write failed"));
  }
  const float* last = &logits[int64_t{T - 1} * Vp];
  std::vector<int> order(V);
  for (int v = 0; v < V; ++v) order[v] = v;
  // Not-a-number logits rank last (and are counted): a NaN compared as
  // greater than nothing ranked anywhere.
  const auto rank = [&](int v) {
    return std::isnan(last[v]) ? -std::numeric_limits<float>::infinity()
                               : last[v];
  };
  std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                    [&](int a, int b) { return rank(a) > rank(b); });
  const int64_t not_finite =
      std::count_if(last, last + V, [](float x) { return !std::isfinite(x); });
  if (not_finite > 0) {
    std::printf(
        "warning: %lld of the last position's %d logits are not "
        "finite (the weights? gpt2_ckpt inspect shows NaN/Inf counts)\n",
        static_cast<long long>(not_finite), V);
  }
  std::printf("%d prompt tokens (%s); top-5 next tokens:\n", T,
              absl::StrJoin(ids, " ").c_str());
  for (int i = 0; i < 5; ++i) {
    std::printf(
        "  %6d %-16s logit %.4f\n", order[i],
        absl::StrCat("'", absl::CEscape(tokenizer.DecodeToken(order[i])), "'")
            .c_str(),
        last[order[i]]);
  }
  if (!out.empty())
    std::printf("wrote %s: %d x %d float32 logits\n", out.c_str(), T, V);
  return absl::OkStatus();
}

absl::Status Run(const std::vector<char*>& positional) {
  if (positional.size() < 2) {
    return UsageError(
        "missing subcommand: inspect, verify, diff, export, import or logits");
  }
  const std::string command = positional[1];
  std::vector<std::string> args(positional.begin() + 2, positional.end());
  // Each flag and the subcommands it goes with; given to another known
  // subcommand it is refused, not ignored.
  static const std::pair<const char*, std::vector<std::string_view>>
      kFlagUse[] = {{"json", {"inspect"}},
                    {"format", {"export"}},
                    {"from", {"import"}},
                    {"out", {"export", "import", "logits"}},
                    {"data_dir", {"export", "logits"}},
                    {"tokenizer", {"export"}},
                    {"prompt", {"logits"}},
                    {"step", {"import"}},
                    {"weights_only", {"export", "import"}},
                    {"force", {"export", "import"}}};
  static constexpr std::string_view kCommands[] = {
      "inspect", "verify", "diff", "export", "import", "logits"};
  if (std::find(std::begin(kCommands), std::end(kCommands), command) !=
      std::end(kCommands)) {
    for (const auto& [flag, commands] : kFlagUse) {
      if (std::find(commands.begin(), commands.end(), command) ==
          commands.end()) {
        GPT2_RETURN_IF_ERROR(RefuseFlagsGiven({flag}, command));
      }
    }
  }
  if (command != "import") {  // checkpoints: a run folder means its newest
    for (std::string& arg : args) {
      GPT2_ASSIGN_OR_RETURN(arg, ResolveCheckpoint(arg));
    }
  }
  if (command == "inspect") {
    GPT2_RETURN_IF_ERROR(ExpectArgs(args, 1, "inspect FILE [--json]"));
    return Inspect(args[0], absl::GetFlag(FLAGS_json));
  }
  if (command == "verify") {
    GPT2_RETURN_IF_ERROR(ExpectArgs(args, 1, "verify FILE"));
    return Verify(args[0]);
  }
  if (command == "diff") {
    GPT2_RETURN_IF_ERROR(ExpectArgs(args, 2, "diff A B"));
    return Diff(args[0], args[1]);
  }
  if (command == "export") return Export(args);
  if (command == "import") return Import(args);
  if (command == "logits") {
    GPT2_RETURN_IF_ERROR(
        ExpectArgs(args, 1, "logits CKPT --prompt TEXT [--out FILE]"));
    return Logits(args[0]);
  }
  return UsageError(absl::StrCat(
      "unknown subcommand '", command,
      "'; expected inspect, verify, diff, export, import or logits"));
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(gpt2::kUsage);
  gpt2::NameFlagFilesFromTheProject();
  const std::vector<char*> positional = gpt2::ParseCommandLine(argc, argv);
  const absl::Status status = gpt2::Run(positional);
  if (!status.ok()) return gpt2::ReportError("gpt2_ckpt", status);
  return 0;
}
