// gpt2_prepro: tokenizes a text corpus with GPT-2's BPE into llm.c-format
// token shards: text files, folders of them, JSON-lines files (one document
// per line), or glob patterns; documents tokenized on all threads, shards
// written as they fill (src/data/corpus.h).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "src/core/error.h"
#include "src/core/threads.h"
#include "src/data/corpus.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/tools/cli_common.h"

ABSL_FLAG(std::string, input, "",
          "What to tokenize, comma-separated: text files (one document "
          "each), .jsonl files (one document per line), folders (their .txt "
          "and .jsonl files, recursively) or glob patterns. Required.");
ABSL_FLAG(std::string, output_dir, "",
          "Folder for the shards, created if missing. Required.");
ABSL_FLAG(std::string, name, "",
          "Shard file prefix. Default: the input file's name without its "
          "extension, or 'corpus' for several files.");
ABSL_FLAG(std::string, jsonl_field, "text",
          "The field of each .jsonl line that holds its document's text.");
ABSL_FLAG(int64_t, val_tokens, 0,
          "Write the last N tokens as a val shard (0 = no val shard).");
ABSL_FLAG(int64_t, shard_tokens, 100000000,
          "Most tokens in one train shard; longer corpora get numbered "
          "shards.");
ABSL_FLAG(
    std::string, data_dir, "",
    "Data directory holding gpt2/encoder.json and gpt2/vocab.bpe. Default: "
    "$GPT2_DATA_DIR, else ./data.");

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Documents are tokenized a batch at a time on all threads, then added to the
// shards in corpus order.
class Batch {
 public:
  static constexpr size_t kBytes = size_t{32} << 20;
  // A document, or the next piece of one (a long text file).
  void Add(std::string_view text, bool starts_document) {
    pieces_.emplace_back(text);
    starts_.push_back(starts_document);
    bytes_ += text.size();
  }
  bool full() const { return bytes_ >= kBytes; }
  // Tokenizes and adds to `writer`; each document led by <|endoftext|> when
  // `separate`.
  absl::Status Flush(const Tokenizer& tokenizer, bool separate,
                     ShardWriter* writer) {
    // A long piece is cut and encoded on all threads; short ones take a
    // thread each.
    constexpr size_t kLong = size_t{1} << 20;
    const int n = static_cast<int>(pieces_.size());
    std::vector<std::vector<int>> ids(n);
    for (int i = 0; i < n; ++i) {
      if (pieces_[i].size() >= kLong) {
        ids[i] = EncodeInParallel(tokenizer, pieces_[i]);
      }
    }
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; ++i) {
      if (pieces_[i].size() < kLong) ids[i] = tokenizer.Encode(pieces_[i]);
    }
    for (int i = 0; i < n; ++i) {
      if (separate && starts_[i]) {
        GPT2_RETURN_IF_ERROR(writer->Add({Tokenizer::kEndOfText}));
      }
      GPT2_RETURN_IF_ERROR(writer->Add(ids[i]));
    }
    pieces_.clear();
    starts_.clear();
    bytes_ = 0;
    return absl::OkStatus();
  }

 private:
  std::vector<std::string> pieces_;
  std::vector<bool> starts_;
  size_t bytes_ = 0;
};

// `dir` as a config names it, as a prefix ("" or ending in '/'): relative to
// the data directory where it is inside it (DataPath joins the two), else
// absolute.
std::string ConfigPath(const std::string& dir, const std::string& data_dir) {
  std::error_code ec;
  const std::filesystem::path full = std::filesystem::weakly_canonical(dir, ec);
  if (ec) return dir + "/";
  const std::filesystem::path base =
      std::filesystem::weakly_canonical(data_dir, ec);
  if (!ec) {
    const std::filesystem::path rel = full.lexically_relative(base);
    if (!rel.empty() && *rel.begin() != "..") {
      return rel == "." ? std::string() : rel.string() + "/";
    }
  }
  return full.string() + "/";
}

absl::Status Run() {
  // Progress lines as they come, also into a file or a pipe.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string output_dir = absl::GetFlag(FLAGS_output_dir);
  const int64_t val_tokens = absl::GetFlag(FLAGS_val_tokens);
  const int64_t shard_tokens = absl::GetFlag(FLAGS_shard_tokens);
  const std::string field = absl::GetFlag(FLAGS_jsonl_field);
  // "a.txt, b.txt" as "a.txt,b.txt".
  std::vector<std::string> specs;
  for (absl::string_view spec :
       absl::StrSplit(absl::GetFlag(FLAGS_input), ',', absl::SkipEmpty())) {
    spec = absl::StripAsciiWhitespace(spec);
    if (!spec.empty()) specs.emplace_back(spec);
  }
  if (specs.empty() || output_dir.empty()) {
    return absl::InvalidArgumentError(
        "--input and --output_dir are required (see --help)");
  }
  if (val_tokens < 0) {
    return absl::InvalidArgumentError("--val_tokens must be >= 0");
  }
  if (shard_tokens < 1 || shard_tokens > INT32_MAX) {
    return absl::InvalidArgumentError("--shard_tokens must be in [1, 2^31)");
  }
  // The trainer reads a step's sequences from within one shard.
  if (shard_tokens < 1025) {
    Warning(absl::StrCat(
        "--shard_tokens ", shard_tokens,
        " makes shards too short for one GPT-2 sequence of 1,024 tokens (and "
        "its next-token target): a training run refuses a shard shorter than "
        "micro_batch_size x seq_len + 1 tokens"));
  }
  if (field.empty()) {
    return absl::InvalidArgumentError("--jsonl_field must not be empty");
  }
  GPT2_ASSIGN_OR_RETURN(const std::vector<std::string> files,
                        ExpandCorpusInputs(specs));
  std::string name = absl::GetFlag(FLAGS_name);
  // The shards are named by a glob (<name>_train*.bin), which the
  // characters * ? [ ] would make match other files, or none of them.
  constexpr char kGlobCharacters[] = "*?[]";
  if (name.find('/') != std::string::npos || name == "." || name == ".." ||
      name.find_first_of(kGlobCharacters) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--name '", name,
        "' must be a plain name for the shards' files (no '/', and none of "
        "* ? [ ], which a config's glob over them would read as a pattern): "
        "they go into --output_dir"));
  }
  if (name.empty()) {
    name = files.size() == 1 ? std::filesystem::path(files[0]).stem().string()
                             : "corpus";
    for (char& c : name) {
      if (std::strchr(kGlobCharacters, c) != nullptr) c = '_';
    }
  }
  const std::string data_dir = ResolveDataDir(absl::GetFlag(FLAGS_data_dir));
  GPT2_ASSIGN_OR_RETURN(const Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(data_dir));
  std::error_code ec;
  const bool had_output_dir = std::filesystem::exists(output_dir, ec);
  std::filesystem::create_directories(output_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(output_dir, ": ", ec.message()));
  }
  // A run that fails before its first shard leaves no empty folder it made.
  absl::Cleanup remove_if_empty = [&output_dir, had_output_dir] {
    std::error_code ignored;
    if (!had_output_dir && std::filesystem::is_empty(output_dir, ignored))
      std::filesystem::remove(output_dir, ignored);
  };
  int64_t input_bytes = 0;
  for (const std::string& f : files) {
    input_bytes += static_cast<int64_t>(std::filesystem::file_size(f, ec));
  }
  // One text file is one document, tokenized as it is (Tiny Shakespeare);
  // any more and each document starts with <|endoftext|>.
  const bool separate = files.size() > 1 || IsJsonLinesFile(files[0]);
  std::printf("%zu file(s), %.1f MB%s; %d threads\n", files.size(),
              input_bytes / 1e6,
              separate ? "; each document starts with <|endoftext|>" : "",
              omp_get_max_threads());
  std::fflush(stdout);

  ShardWriter writer(output_dir, name, shard_tokens, val_tokens);
  Batch batch;
  int64_t documents = 0, bytes = 0;
  const Clock::time_point start = Clock::now();
  Clock::time_point last_report = start;
  const auto report = [&](bool final) {
    const double seconds = SecondsSince(start);
    // (A .jsonl file's text is less than the file: MB of text, of files.)
    std::printf(
        "%s%lld documents, %.1f MB of text from %.1f MB of files, %lld tokens "
        "in %.1f s (%.1f MB/s)\n",
        final ? "tokenized " : "  ", static_cast<long long>(documents),
        bytes / 1e6, input_bytes / 1e6, static_cast<long long>(writer.tokens()),
        seconds, seconds > 0 ? bytes / 1e6 / seconds : 0.0);
    std::fflush(stdout);
  };
  // A failure part-way leaves nothing of this run in --output_dir (its
  // shards were staged aside), and an earlier run's shards as they were.
  const auto failed = [&](const absl::Status& status) {
    if (writer.written().empty()) return status;
    return absl::Status(
        status.code(),
        absl::StrCat(status.message(), "\n(", writer.written().size(),
                     " train shard(s) were written before this, aside: "
                     "removed; ",
                     output_dir,
                     " holds no shard of this run, and any of "
                     "an earlier run under this name as it was)"));
  };
  for (const std::string& file : files) {
    absl::Status read = ForEachDocument(
        file, field,
        [&](std::string_view text, const std::string&,
            bool starts_document) -> absl::Status {
          batch.Add(text, starts_document);
          documents += starts_document;
          bytes += static_cast<int64_t>(text.size());
          if (!batch.full()) return absl::OkStatus();
          GPT2_RETURN_IF_ERROR(batch.Flush(tokenizer, separate, &writer));
          if (SecondsSince(last_report) > 5.0) {
            report(false);
            last_report = Clock::now();
          }
          return absl::OkStatus();
        });
    if (!read.ok()) return failed(read);
  }
  if (absl::Status flushed = batch.Flush(tokenizer, separate, &writer);
      !flushed.ok()) {
    return failed(flushed);
  }
  GPT2_RETURN_IF_ERROR(writer.Finish());
  report(true);
  if (writer.cleaned_stopped_run()) {
    std::printf("removed a stopped run's unfinished shards (%s/.%s.partial)\n",
                output_dir.c_str(), name.c_str());
  }
  for (const auto& [path, count] : writer.written()) {
    std::printf("wrote %s: %lld tokens\n", path.c_str(),
                static_cast<long long>(count));
  }
  for (const std::string& path : writer.removed()) {
    std::printf("removed %s: an earlier run's shard under this name\n",
                path.c_str());
  }
  // The config lines that train on them: the glob matches a lone shard
  // (<name>_train.bin) and several (<name>_train_NNNNNN.bin) alike.
  const std::string where = ConfigPath(output_dir, data_dir);
  std::printf(
      "for a config (%s):\n  data {\n    train_shards: \"%s%s_train*.bin\"\n",
      !where.empty() && where.front() == '/'
          ? "absolute paths: the folder is not under "
            "the data directory"
          : "paths relative to the data directory",
      where.c_str(), name.c_str());
  if (val_tokens > 0) {
    std::printf("    val_shards: \"%s%s_val.bin\"\n", where.c_str(),
                name.c_str());
  }
  std::printf("  }\n");
  return absl::OkStatus();
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  return gpt2::ToolMain(
      "gpt2_prepro",
      "Tokenizes text with GPT-2's BPE into token shards (llm.c's format: 256 "
      "x int32\nheader, magic 20240520, version 1, then uint16 tokens), for "
      "data.train_shards.\n\n"
      "  gpt2_prepro --input ../shared/data/tinyshakespeare/input.txt "
      "--output_dir /tmp/shakespeare --val_tokens 32768 --data_dir "
      "../shared/data\n"
      "  gpt2_prepro --input 'books/,web/*.jsonl' --output_dir data/mine "
      "--name mine --val_tokens 1000000\n\n"
      "A text file is one document; each line of a .jsonl file is one (its "
      "--jsonl_field\nstring). With more than one document, each starts with "
      "<|endoftext|>, as GPT-2\nwas trained. Writes <name>_train.bin "
      "(<name>_train_NNNNNN.bin when there are\nseveral shards) and, with "
      "--val_tokens, <name>_val.bin: the last N tokens.",
      argc, argv, &gpt2::Run);
}
