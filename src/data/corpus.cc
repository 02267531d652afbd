#include "src/data/corpus.h"

#include <glob.h>
#include <omp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/core/error.h"
#include "src/core/json_reader.h"
#include "src/data/token_shard.h"

namespace gpt2 {
namespace {

namespace fs = std::filesystem;

// The extension, lower-cased (.JSONL is .jsonl).
std::string Extension(const fs::path& path) {
  return absl::AsciiStrToLower(path.extension().string());
}

bool IsCorpusFile(const fs::path& path) {
  const std::string ext = Extension(path);
  return ext == ".txt" || ext == ".jsonl" || ext == ".ndjson";
}

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

// Why a file's first bytes are not text to tokenize (a compressed file, or
// NUL bytes: binary or UTF-16), or "".
std::string NotText(std::string_view head) {
  const auto starts = [&](std::string_view magic) {
    return head.substr(0, magic.size()) == magic;
  };
  if (starts("\x1f\x8b")) return "it is gzip-compressed: decompress it first";
  if (starts("BZh")) return "it is bzip2-compressed: decompress it first";
  if (starts(std::string_view("\xFD"
                              "7zXZ\0",
                              6))) {
    return "it is xz-compressed: decompress it first";
  }
  if (starts("\x28\xB5\x2F\xFD")) {
    return "it is zstd-compressed: decompress it first";
  }
  if (starts("PK\x03\x04")) return "it is a zip archive: unpack it first";
  if (const size_t nul = head.find('\0'); nul != std::string_view::npos) {
    return absl::StrCat("it holds a NUL byte (at byte ", nul,
                        "): binary, or UTF-16 text; GPT-2 reads UTF-8");
  }
  return "";
}

// A non-space ASCII character: neither whitespace nor part of a multi-byte
// character (which could be Unicode whitespace).
bool PlainAscii(char c) { return c > ' ' && c < 0x7f; }

// Whether text may be cut before position p without changing its ids: just
// after a line break that has a plain character on each side, where GPT-2's
// pre-tokenizer ends a piece anyway.
bool SafeCut(std::string_view text, size_t p) {
  return p >= 2 && p < text.size() && text[p - 1] == '\n' &&
         PlainAscii(text[p - 2]) && PlainAscii(text[p]);
}

}  // namespace

bool IsJsonLinesFile(const std::string& path) {
  const std::string ext = Extension(path);
  return ext == ".jsonl" || ext == ".ndjson";
}

absl::StatusOr<std::vector<std::string>> ExpandCorpusInputs(
    const std::vector<std::string>& specs) {
  std::vector<std::string> files;
  for (const std::string& spec : specs) {
    std::error_code ec;
    if (fs::is_directory(spec, ec)) {
      std::vector<std::string> found;
      // An unreadable subfolder is passed over (it threw from the
      // iterator's increment, ending gpt2_prepro).
      fs::recursive_directory_iterator it(
          spec, fs::directory_options::skip_permission_denied, ec);
      for (; !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        const fs::directory_entry& entry = *it;
        // A link that cannot be followed (a loop, or one that points to
        // nothing) is passed over, and said (it threw, ending the tool).
        std::error_code status;
        const bool regular = entry.is_regular_file(status);
        if (status) {
          if (IsCorpusFile(entry.path())) {
            Warning(absl::StrCat(entry.path().string(),
                                 ": left out: ", status.message()));
          }
          continue;
        }
        if (regular && IsCorpusFile(entry.path())) {
          found.push_back(entry.path().string());
        }
      }
      if (ec) {
        return absl::PermissionDeniedError(
            absl::StrCat(spec, ": cannot list the folder: ", ec.message()));
      }
      if (found.empty()) {
        return absl::NotFoundError(absl::StrCat(
            spec, ": the folder holds no .txt, .jsonl or .ndjson files"));
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(spec, ec)) {
      if (Extension(spec) == ".json") {
        Warning(
            absl::StrCat(spec,
                         ": read as text, one document (JSON lines, a document "
                         "each, are read from .jsonl and .ndjson files)"));
      }
      files.push_back(spec);
    } else if (spec.find_first_of("*?[") != std::string::npos) {
      glob_t matches;
      const int rc = glob(spec.c_str(), 0, nullptr, &matches);
      std::vector<std::string> found;
      for (size_t i = 0; rc == 0 && i < matches.gl_pathc; ++i) {
        if (fs::is_regular_file(matches.gl_pathv[i], ec)) {
          found.push_back(matches.gl_pathv[i]);
        }
      }
      globfree(&matches);
      if (found.empty()) {
        return absl::NotFoundError(
            absl::StrCat(spec, ": the pattern matches no file"));
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      return absl::NotFoundError(
          absl::StrCat(spec, ": no such file, folder or pattern"));
    }
  }
  // A file reached twice (named twice, or also through its folder or a
  // pattern) would be tokenized twice into the shards.
  std::map<std::string, std::string> seen;  // canonical path -> as named
  for (const std::string& file : files) {
    std::error_code ec;
    const fs::path canonical = fs::weakly_canonical(file, ec);
    const std::string key = ec ? file : canonical.string();
    const auto [it, fresh] = seen.emplace(key, file);
    if (!fresh) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": named twice in --input",
          it->second == file ? "" : absl::StrCat(" (also as ", it->second, ")"),
          "; each file is tokenized once"));
    }
  }
  return files;
}

absl::Status ForEachDocument(
    const std::string& path, const std::string& field,
    const std::function<absl::Status(std::string_view text,
                                     const std::string& where,
                                     bool starts_document)>& visit,
    size_t piece_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  {
    char head[512];
    in.read(head, sizeof(head));
    const std::string why =
        NotText(std::string_view(head, static_cast<size_t>(in.gcount())));
    if (!why.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not text: ", why));
    }
    // A UTF-8 byte order mark (Windows editors write one) is not text.
    in.clear();
    in.seekg(in.gcount() >= 3 && std::string_view(head, 3) == kUtf8Bom ? 3 : 0);
  }
  if (!IsJsonLinesFile(path)) {
    // Pieces of about piece_bytes, each ending at the last safe cut in what
    // has been read (read on while there is none).
    std::string buffer;
    bool first = true;
    // No bigger than the file: a folder of small files reads each in one go.
    std::error_code ec;
    const uintmax_t size = fs::file_size(path, ec);
    std::vector<char> block(std::max<size_t>(
        1,
        ec ? piece_bytes
           : static_cast<size_t>(std::min<uintmax_t>(piece_bytes, size + 1))));
    for (;;) {
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      buffer.append(block.data(), static_cast<size_t>(in.gcount()));
      if (in.bad()) {
        return absl::DataLossError(absl::StrCat(path, ": read error"));
      }
      const bool end = !in;
      size_t cut = buffer.size();
      if (!end) {
        cut = 0;
        for (size_t p = buffer.rfind('\n'); p != std::string::npos && p > 0;
             p = buffer.rfind('\n', p - 1)) {
          if (SafeCut(buffer, p + 1)) {
            cut = p + 1;
            break;
          }
        }
        if (cut == 0) continue;  // no safe cut yet: read more
      }
      if (end && first && buffer.empty()) return absl::OkStatus();  // empty
      GPT2_RETURN_IF_ERROR(
          visit(std::string_view(buffer).substr(0, cut), path, first));
      first = false;
      buffer.erase(0, cut);
      if (end) return absl::OkStatus();
    }
  }
  return ForEachJsonLine(
      in, path,
      [&](const JsonValue& value, const std::string& where) -> absl::Status {
        const JsonValue* text = value.Find(field);
        if (text == nullptr || text->kind != JsonValue::Kind::kString) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": not a JSON object with a string \"", field, "\" (",
              value.kind != JsonValue::Kind::kObject ? "not an object"
              : text == nullptr
                  ? absl::StrCat("no field \"", field, "\"")
                  : absl::StrCat("its \"", field, "\" is not a string"),
              "; --jsonl_field names the field that holds the text)"));
        }
        // An empty document adds nothing (not even <|endoftext|>).
        if (text->string.empty()) return absl::OkStatus();
        return visit(text->string, where, true);
      });
}

std::vector<int> EncodeInParallel(const Tokenizer& tokenizer,
                                  std::string_view text, size_t piece_bytes) {
  // Cut points: the first safe line break at or after each piece_bytes.
  std::vector<size_t> cuts = {0};
  for (size_t at = piece_bytes; at < text.size();) {
    const size_t newline = text.find('\n', at);
    if (newline == std::string_view::npos || newline + 1 >= text.size()) break;
    const size_t p = newline + 1;
    if (SafeCut(text, p)) {
      cuts.push_back(p);
      at = p + piece_bytes;
    } else {
      at = p;
    }
  }
  cuts.push_back(text.size());
  const int pieces = static_cast<int>(cuts.size()) - 1;
  if (pieces <= 1) return tokenizer.Encode(text);
  std::vector<std::vector<int>> ids(pieces);
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < pieces; ++i) {
    ids[i] = tokenizer.Encode(text.substr(cuts[i], cuts[i + 1] - cuts[i]));
  }
  std::vector<int> all;
  size_t total = 0;
  for (const auto& part : ids) total += part.size();
  all.reserve(total);
  for (const auto& part : ids) all.insert(all.end(), part.begin(), part.end());
  return all;
}

ShardWriter::ShardWriter(std::string dir, std::string stem,
                         int64_t shard_tokens, int64_t val_tokens)
    : dir_(std::move(dir)),
      stem_(std::move(stem)),
      staging_(absl::StrCat(dir_, "/.", stem_, ".partial")),
      shard_tokens_(shard_tokens),
      val_tokens_(val_tokens) {}

ShardWriter::~ShardWriter() {
  if (finished_) return;
  std::error_code ignored;
  fs::remove_all(staging_, ignored);
}

absl::Status ShardWriter::Begin() {
  if (begun_) return absl::OkStatus();
  begun_ = true;
  std::error_code ec;
  if (fs::exists(staging_, ec)) {
    fs::remove_all(staging_, ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat(
          staging_, ": a stopped run's shards: cannot remove: ", ec.message()));
    }
    cleaned_stopped_run_ = true;
  }
  fs::create_directories(staging_, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(staging_, ": cannot make: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status ShardWriter::Add(const std::vector<int>& ids) {
  for (const int id : ids) {
    if (id < 0 || id > 0xFFFF) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", id, " does not fit a uint16 shard"));
    }
    pending_.push_back(static_cast<uint16_t>(id));
  }
  tokens_ += static_cast<int64_t>(ids.size());
  // The last val_tokens always stay behind: they may be the val set.
  while (static_cast<int64_t>(pending_.size()) >= shard_tokens_ + val_tokens_) {
    GPT2_RETURN_IF_ERROR(WriteShard(shard_tokens_));
  }
  return absl::OkStatus();
}

absl::Status ShardWriter::WriteShard(int64_t count) {
  GPT2_RETURN_IF_ERROR(Begin());
  const std::string path =
      absl::StrFormat("%s/%s_train_%06d.bin", staging_, stem_, shards_);
  GPT2_RETURN_IF_ERROR(WriteTokenShard(
      path, absl::Span<const uint16_t>(pending_.data(), count)));
  pending_.erase(pending_.begin(), pending_.begin() + count);
  written_.emplace_back(path, count);
  ++shards_;
  return absl::OkStatus();
}

absl::Status ShardWriter::Finish() {
  if (tokens_ == 0) {
    return absl::InvalidArgumentError(
        "the input holds no text: 0 tokens to write");
  }
  if (tokens_ <= val_tokens_) {
    return absl::InvalidArgumentError(
        absl::StrCat("--val_tokens ", val_tokens_,
                     " leaves no train tokens out of ", tokens_));
  }
  GPT2_RETURN_IF_ERROR(Begin());
  const int64_t train_left =
      static_cast<int64_t>(pending_.size()) - val_tokens_;
  if (train_left > 0) GPT2_RETURN_IF_ERROR(WriteShard(train_left));
  if (shards_ == 1) {  // a lone shard keeps the plain name
    const std::string plain = absl::StrCat(staging_, "/", stem_, "_train.bin");
    std::error_code ec;
    fs::rename(written_[0].first, plain, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat(plain, ": cannot rename: ", ec.message()));
    }
    written_[0].first = plain;
  }
  if (val_tokens_ > 0) {
    const std::string path = absl::StrCat(staging_, "/", stem_, "_val.bin");
    GPT2_RETURN_IF_ERROR(WriteTokenShard(path, pending_));
    written_.emplace_back(path, val_tokens_);
    pending_.clear();
  }
  GPT2_RETURN_IF_ERROR(MoveIntoPlace());
  finished_ = true;
  std::error_code ignored;
  fs::remove(staging_, ignored);  // empty now
  return RemoveStaleShards();
}

absl::Status ShardWriter::MoveIntoPlace() {
  for (auto& [path, count] : written_) {
    const std::string placed =
        absl::StrCat(dir_, "/", fs::path(path).filename().string());
    std::error_code ec;
    fs::rename(path, placed, ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat(
          placed, ": cannot move the shard into place: ", ec.message(),
          " (the shards before it were moved: ", dir_,
          " now mixes this run's and an earlier run's under this name; run "
          "again)"));
    }
    path = placed;
  }
  return absl::OkStatus();
}

absl::Status ShardWriter::RemoveStaleShards() {
  // This writer's names: <stem>_train.bin, <stem>_val.bin and
  // <stem>_train_ followed by digits and .bin.
  const std::string numbered = stem_ + "_train_";
  auto ours = [&](const std::string& name) {
    if (name == stem_ + "_train.bin" || name == stem_ + "_val.bin") return true;
    if (!absl::StartsWith(name, numbered) || !absl::EndsWith(name, ".bin")) {
      return false;
    }
    const std::string_view digits = std::string_view(name).substr(
        numbered.size(), name.size() - numbered.size() - 4);
    return !digits.empty() &&
           std::all_of(digits.begin(), digits.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
  };
  std::set<std::string> kept;
  for (const auto& [path, count] : written_) {
    kept.insert(fs::path(path).filename().string());
  }
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (ours(name) && !kept.count(name) && entry.is_regular_file(ec)) {
      stale.push_back(entry.path());
    }
  }
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir_, ": cannot list: ", ec.message()));
  }
  std::sort(stale.begin(), stale.end());
  for (const fs::path& path : stale) {
    if (!fs::remove(path, ec) || ec) {
      return absl::PermissionDeniedError(
          absl::StrCat(path.string(),
                       ": an earlier run's shard, which a glob over this "
                       "run's would pick up: cannot remove it: ",
                       ec.message()));
    }
    removed_.push_back(path.string());
  }
  return absl::OkStatus();
}

}  // namespace gpt2
