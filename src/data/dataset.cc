#include "src/data/dataset.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/core/error.h"
#include "src/core/files.h"
#include "src/data/corpus.h"
#include "src/data/tokenizer.h"

namespace gpt2 {

std::string DataPath(const std::string& data_dir, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return data_dir + "/" + path;
}

namespace {

absl::StatusOr<std::vector<TokenShard>> OpenShards(const std::string& pattern,
                                                   int vocab_size) {
  GPT2_ASSIGN_OR_RETURN(std::vector<std::string> files,
                        ExpandShardPattern(pattern));
  std::vector<TokenShard> shards;
  for (const std::string& f : files) {
    GPT2_ASSIGN_OR_RETURN(TokenShard shard, TokenShard::Open(f, vocab_size));
    shards.push_back(std::move(shard));
  }
  return shards;
}

}  // namespace

std::string ResolveDataDir(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv("GPT2_DATA_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  return "data";
}

absl::StatusOr<Datasets> LoadDatasets(const config::DataConfig& data,
                                      const std::string& data_dir,
                                      int vocab_size) {
  Datasets sets;
  if (!data.train_shards().empty()) {
    const std::string pattern = DataPath(data_dir, data.train_shards());
    GPT2_ASSIGN_OR_RETURN(sets.train, OpenShards(pattern, vocab_size));
    const auto count = [](const std::vector<TokenShard>& shards) {
      int64_t tokens = 0;
      for (const TokenShard& s : shards) tokens += s.size();
      return tokens;
    };
    const auto shards = [](size_t n) {
      return absl::StrCat(n, n == 1 ? " shard " : " shards ");
    };
    sets.description = absl::StrCat(count(sets.train), " train tokens in ",
                                    shards(sets.train.size()), pattern);
    if (!data.val_shards().empty()) {
      const std::string val_pattern = DataPath(data_dir, data.val_shards());
      GPT2_ASSIGN_OR_RETURN(sets.val, OpenShards(val_pattern, vocab_size));
      absl::StrAppend(&sets.description, "; ", count(sets.val),
                      " val tokens in ", shards(sets.val.size()), val_pattern);
    } else {
      absl::StrAppend(&sets.description, "; no val set (data.val_shards)");
    }
    return sets;
  }
  const std::string text_path = DataPath(data_dir, data.train_text());
  GPT2_RETURN_IF_ERROR(NotAFolder(
      text_path, "a text file (data.train_text, in the data directory)"));
  std::ifstream in(text_path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        text_path, ": cannot open the training text (data directory '",
        data_dir,
        "'; set --data_dir or GPT2_DATA_DIR, or run launch/fetch_data.sh)"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  GPT2_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(data_dir));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> ids = EncodeInParallel(tokenizer, text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::vector<uint16_t> tokens(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(text_path, ": token ", ids[i],
                       " is outside model.vocab_size ", vocab_size));
    }
    tokens[i] = static_cast<uint16_t>(ids[i]);
  }
  const int64_t val = data.val_tokens();
  if (val >= static_cast<int64_t>(tokens.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.val_tokens (", val,
                     ") leaves no training tokens out of ", tokens.size()));
  }
  sets.description = absl::StrFormat("%d tokens from %s (tokenized in %.2f s)",
                                     tokens.size(), text_path, seconds);
  if (val > 0) {
    std::vector<uint16_t> val_tokens(tokens.end() - val, tokens.end());
    tokens.resize(tokens.size() - val);
    absl::StrAppend(&sets.description, ", last ", val, " held out for val");
    sets.val.push_back(
        TokenShard::FromTokens(std::move(val_tokens), text_path + " [val]"));
  }
  sets.train.push_back(TokenShard::FromTokens(std::move(tokens), text_path));
  return sets;
}

}  // namespace gpt2
