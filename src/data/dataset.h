// Turns a config's data section into token shards: shard files matched by a
// glob, or a raw text file tokenized in memory at start-up. Paths are relative
// to the data directory, which is only ever read.
#ifndef GPT2_DATA_DATASET_H_
#define GPT2_DATA_DATASET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "src/data/token_shard.h"

namespace gpt2 {

struct Datasets {
  std::vector<TokenShard> train;
  std::vector<TokenShard> val;  // empty when there is no val set
  std::string description;      // for the run header
};

absl::StatusOr<Datasets> LoadDatasets(const config::DataConfig& data,
                                      const std::string& data_dir,
                                      int vocab_size);

// The data directory: the flag if given, else $GPT2_DATA_DIR, else "data".
std::string ResolveDataDir(const std::string& flag_value);

// A config's data path: as it is when absolute, else inside the data dir.
std::string DataPath(const std::string& data_dir, const std::string& path);

}  // namespace gpt2

#endif  // GPT2_DATA_DATASET_H_
