// What gpt2_ckpt reports about checkpoints: per-tensor statistics and the
// difference of two files, both computed streaming in bounded windows (a
// checkpoint never has to fit in memory), and where a file's bytes go.
#ifndef GPT2_CKPT_INSPECT_H_
#define GPT2_CKPT_INSPECT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/ckpt/checkpoint.h"

namespace gpt2 {

// Over the finite elements; NaN and Inf are counted apart. Mean and std are
// NaN when no element is finite.
struct TensorStats {
  int64_t count = 0;  // all elements
  int64_t nan = 0, inf = 0;
  double mean = 0, std = 0;  // population std
  double min = 0, max = 0, abs_max = 0;
};

absl::StatusOr<TensorStats> ComputeTensorStats(CheckpointReader* reader,
                                               const std::string& name);

// The parts of a file, in bytes. Tensors named "adamw.*" count as optimizer
// state, "master/*" as master weights, everything else as parameters;
// overhead is record framing and the trailer.
struct SizeBreakdown {
  int64_t header = 0, params = 0, optimizer = 0, master = 0, overhead = 0;
  int64_t total = 0;
};
SizeBreakdown ComputeSizeBreakdown(const CheckpointReader& reader);

struct TensorDiff {
  std::string name;
  std::vector<int64_t> shape_a, shape_b;  // differ => no values compared
  double max_abs = 0;  // max |a - b|; Inf where exactly one side is NaN/Inf
  double max_rel = 0;  // max |a - b| / max(|a|, |b|)
  int64_t num_different = 0;
  bool same_shape() const { return shape_a == shape_b; }
};

struct CheckpointDiff {
  std::vector<TensorDiff> tensors;  // in a's order
  std::vector<std::string> only_in_a, only_in_b;
  // Header fields that differ (creation time and tool ignored), one per line.
  std::string header_differences;
  // Same tensor names, shapes and every element (headers may differ).
  bool identical() const;
};

absl::StatusOr<CheckpointDiff> DiffCheckpoints(CheckpointReader* a,
                                               CheckpointReader* b);

}  // namespace gpt2

#endif  // GPT2_CKPT_INSPECT_H_
