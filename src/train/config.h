// Loading, overriding and validating the run configuration
// (proto/config.proto). Every failure is an absl::Status whose message names
// the file, line or field.
#ifndef GPT2_TRAIN_CONFIG_H_
#define GPT2_TRAIN_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "src/model/params.h"

namespace gpt2 {

// Parses a protobuf text file; unknown fields and type errors report
// file:line:column.
absl::StatusOr<config::RunConfig> ParseConfigFile(const std::string& path);
absl::StatusOr<config::RunConfig> ParseConfigText(const std::string& text,
                                                  const std::string& source);

// Applies one "dotted.field=value" override, e.g. "train.max_steps=20". A
// list (repeated field) is set to that one value ("" = empty), and
// "dotted.field+=value" adds a value to it.
absl::Status ApplyOverride(const std::string& assignment,
                           config::RunConfig* config);

// The values a run derives from its config and world size.
struct RunPlan {
  ModelShape shape;
  int micro_batch_size = 0;  // B per rank
  int seq_len = 0;           // T
  int64_t total_batch_tokens = 0;
  int grad_accum_steps = 0;  // total / (B * T * world)
};

// Checks ranges and consistency; each problem is prefixed by what gave its
// field the value: the last of `overrides` (--set assignments, as
// ApplyOverride takes them) naming that field, else `source` (the file).
absl::StatusOr<RunPlan> ValidateConfig(
    const config::RunConfig& config, int world_size, const std::string& source,
    const std::vector<std::string>& overrides = {});

// The fields `now` gives other values than `before`, as "section.field
// before -> now" (text-format values; a list as [a, b]), in field order.
std::vector<std::string> ConfigChanges(const config::RunConfig& before,
                                       const config::RunConfig& now);

// Reads `path`, applies `overrides` in order, validates.
struct LoadedConfig {
  config::RunConfig config;
  RunPlan plan;
  // What the --set assignments changed beyond their own fields (for the
  // run's header): a data source set replaces the file's other one.
  std::vector<std::string> notes;
};
absl::StatusOr<LoadedConfig> LoadConfig(
    const std::string& path, const std::vector<std::string>& overrides,
    int world_size);

}  // namespace gpt2

#endif  // GPT2_TRAIN_CONFIG_H_
