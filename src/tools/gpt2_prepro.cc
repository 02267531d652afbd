// gpt2_prepro: tokenizes a text file with GPT-2's BPE into llm.c-format token
// shards.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/core/error.h"
#include "src/core/threads.h"
#include "src/data/dataset.h"
#include "src/data/token_shard.h"
#include "src/data/tokenizer.h"
#include "src/tools/cli_common.h"

ABSL_FLAG(std::string, input, "", "UTF-8 text file to tokenize. Required.");
ABSL_FLAG(std::string, output_dir, "",
          "Folder for the shards, created if missing. Required.");
ABSL_FLAG(int64_t, val_tokens, 0,
          "Write the last N tokens as a val shard (0 = no val shard).");
ABSL_FLAG(int64_t, shard_tokens, 100000000,
          "Most tokens in one train shard; longer texts get numbered shards.");
ABSL_FLAG(
    std::string, data_dir, "",
    "Data directory holding gpt2/encoder.json and gpt2/vocab.bpe. Default: "
    "$GPT2_DATA_DIR, else ./data.");

namespace gpt2 {
namespace {

absl::Status Run() {
  const std::string input = absl::GetFlag(FLAGS_input);
  const std::string output_dir = absl::GetFlag(FLAGS_output_dir);
  const int64_t val_tokens = absl::GetFlag(FLAGS_val_tokens);
  const int64_t shard_tokens = absl::GetFlag(FLAGS_shard_tokens);
  if (input.empty() || output_dir.empty()) {
    return absl::InvalidArgumentError(
        "--input and --output_dir are required (see --help)");
  }
  if (val_tokens < 0)
    return absl::InvalidArgumentError("--val_tokens must be >= 0");
  if (shard_tokens < 1 || shard_tokens > INT32_MAX) {
    return absl::InvalidArgumentError("--shard_tokens must be in [1, 2^31)");
  }
  std::ifstream in(input, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(input, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string data_dir = ResolveDataDir(absl::GetFlag(FLAGS_data_dir));
  GPT2_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(data_dir));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> ids = tokenizer.Encode(buffer.str());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (val_tokens >= static_cast<int64_t>(ids.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--val_tokens ", val_tokens,
                     " leaves no train tokens out of ", ids.size()));
  }
  std::vector<uint16_t> tokens(ids.begin(), ids.end());
  std::error_code ec;
  std::filesystem::create_directories(output_dir, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat(output_dir, ": ", ec.message()));
  const std::string stem = std::filesystem::path(input).stem().string();
  const int64_t train_count = static_cast<int64_t>(tokens.size()) - val_tokens;
  const int64_t num_shards = (train_count + shard_tokens - 1) / shard_tokens;
  std::printf("tokenized %s: %zu tokens in %.2f s\n", input.c_str(),
              tokens.size(), seconds);
  for (int64_t s = 0; s < num_shards; ++s) {
    const int64_t begin = s * shard_tokens;
    const int64_t count = std::min(shard_tokens, train_count - begin);
    const std::string path =
        num_shards == 1
            ? absl::StrCat(output_dir, "/", stem, "_train.bin")
            : absl::StrFormat("%s/%s_train_%06d.bin", output_dir, stem, s);
    GPT2_RETURN_IF_ERROR(WriteTokenShard(
        path, absl::Span<const uint16_t>(tokens.data() + begin, count)));
    std::printf("wrote %s: %lld train tokens\n", path.c_str(),
                static_cast<long long>(count));
  }
  if (val_tokens > 0) {
    const std::string path = absl::StrCat(output_dir, "/", stem, "_val.bin");
    GPT2_RETURN_IF_ERROR(WriteTokenShard(
        path,
        absl::Span<const uint16_t>(tokens.data() + train_count, val_tokens)));
    std::printf("wrote %s: %lld val tokens\n", path.c_str(),
                static_cast<long long>(val_tokens));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  gpt2::UsePassiveOpenMpWait(argv);
  absl::SetProgramUsageMessage(
      "Tokenizes a text file with GPT-2's BPE into token shards (llm.c's "
      "format:\n"
      "256 x int32 header, magic 20240520, version 1, then uint16 tokens).\n\n"
      "  gpt2_prepro --input ../shared/data/tinyshakespeare/input.txt "
      "--output_dir /tmp/shakespeare --val_tokens 32768 --data_dir "
      "../shared/data\n\n"
      "Writes <stem>_train.bin (numbered <stem>_train_NNNNNN.bin when the text "
      "needs\n"
      "several shards) and, with --val_tokens, <stem>_val.bin.");
  const std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    return gpt2::ReportError("gpt2_prepro",
                             absl::InvalidArgumentError(absl::StrCat(
                                 "unexpected argument '", rest[1], "'")));
  }
  const absl::Status status = gpt2::Run();
  return status.ok() ? 0 : gpt2::ReportError("gpt2_prepro", status);
}
