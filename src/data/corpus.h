// Turning a text corpus into token shards (gpt2_prepro): the input files
// (text, or JSON lines with one document per line), their documents
// tokenized in parallel, and the shards written as they fill.
//
// Documents: a .txt file is one document; each line of a .jsonl file is one
// (its `field` string, "text" by default, as Hugging Face datasets export
// them). When the corpus has more than one document, each starts with
// <|endoftext|>, as GPT-2 was trained and as llm.c's FineWeb shards are
// made; a single text file (Tiny Shakespeare) is its tokens alone.
#ifndef GPT2_DATA_CORPUS_H_
#define GPT2_DATA_CORPUS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/data/tokenizer.h"

namespace gpt2 {

// The files named by `specs`, in order: a file as it is, a folder's *.txt,
// *.jsonl and *.ndjson files (any case; recursively, sorted by path; a link
// that cannot be followed is left out, with a warning), or a glob pattern's
// matches (sorted). An error names a spec that matches nothing, a file of
// another type, or a file reached twice.
// Whether `path` is read as JSON lines (.jsonl or .ndjson, any case).
bool IsJsonLinesFile(const std::string& path);

absl::StatusOr<std::vector<std::string>> ExpandCorpusInputs(
    const std::vector<std::string>& specs);

// Calls visit(text, where, starts_document) for each document of `path` in
// order (where: "file.jsonl:LINE" or the path). A compressed file, or one with
// NUL bytes, is an error (not text); a UTF-8 byte order mark is skipped. A
// .jsonl line that is not a JSON object with a string `field` is an error
// naming the line; blank lines are skipped. A text file is one document, read
// in pieces of about `piece_bytes` cut at the line breaks EncodeInParallel cuts
// at (so its pieces encode to the whole file's ids, and a file larger than
// memory allows can be tokenized); all but the first have starts_document
// false.
absl::Status ForEachDocument(
    const std::string& path, const std::string& field,
    const std::function<absl::Status(std::string_view text,
                                     const std::string& where,
                                     bool starts_document)>& visit,
    size_t piece_bytes = size_t{64} << 20);

// Encode() of a long text, cut into pieces at line breaks where the
// pre-tokenizer would split anyway (a newline between two non-space
// characters) and encoded on all threads: the same ids as Encode(text).
// piece_bytes: the least size of a piece (tests make it small).
std::vector<int> EncodeInParallel(const Tokenizer& tokenizer,
                                  std::string_view text,
                                  size_t piece_bytes = size_t{1} << 20);

// Writes a token stream as shards of at most `shard_tokens` tokens, each as
// soon as it is full, holding back the last `val_tokens` tokens for a val
// shard. Names: <dir>/<stem>_train_NNNNNN.bin (a lone train shard:
// <stem>_train.bin) and <dir>/<stem>_val.bin. Once every shard is written,
// shards of an earlier run under the same names that this run did not
// rewrite are removed (a glob such as <stem>_train_*.bin would train on them).
class ShardWriter {
 public:
  // Shards are written into a hidden staging folder in `dir`
  // (.<stem>.partial) and moved into `dir` only by Finish, so a run that
  // fails or is stopped leaves an earlier run's shards there as they were
  // (only a failure in the final moves, which take milliseconds, can leave
  // some of each, and says so); the staging folder is removed on failure,
  // and a stopped run's by the next Begin.
  ShardWriter(std::string dir, std::string stem, int64_t shard_tokens,
              int64_t val_tokens);
  ~ShardWriter();  // removes the staging folder unless Finish succeeded
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Makes the staging folder (removing a stopped run's); the first write
  // does, if not called before.
  absl::Status Begin();
  // Ids must be in [0, 65536) (they are stored as uint16).
  absl::Status Add(const std::vector<int>& ids);
  // Writes what is left, moves the shards into place and removes an earlier
  // run's that this one does not replace; an error if no train token
  // remains.
  absl::Status Finish();
  // Whether Begin removed a stopped run's staging folder.
  bool cleaned_stopped_run() const { return cleaned_stopped_run_; }

  int64_t tokens() const { return tokens_; }
  // The files written, in order, with their token counts.
  const std::vector<std::pair<std::string, int64_t>>& written() const {
    return written_;
  }
  // The earlier run's shards Finish removed.
  const std::vector<std::string>& removed() const { return removed_; }

 private:
  absl::Status WriteShard(int64_t count);
  absl::Status MoveIntoPlace();
  absl::Status RemoveStaleShards();

  std::string dir_, stem_, staging_;
  bool begun_ = false, finished_ = false, cleaned_stopped_run_ = false;
  int64_t shard_tokens_, val_tokens_;
  std::vector<uint16_t> pending_;
  int64_t tokens_ = 0;
  int shards_ = 0;
  std::vector<std::pair<std::string, int64_t>> written_;
  std::vector<std::string> removed_;
};

}  // namespace gpt2

#endif  // GPT2_DATA_CORPUS_H_
