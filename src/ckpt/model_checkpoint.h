// GPT-2's state in a checkpoint, named by walking the parameter list: each
// list entry is one tensor ("wte", "qkvw", ...), its AdamW moments
// "adamw.m/<name>" and "adamw.v/<name>", and fp32 master weights
// "master/<name>" when a run keeps them. Optimizer state is always stored in
// the full (unsharded) layout, so a ZeRO-1 run can resume on any world size;
// the flat-range functions below gather and re-shard through host buffers.
#ifndef GPT2_CKPT_MODEL_CHECKPOINT_H_
#define GPT2_CKPT_MODEL_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "src/ckpt/checkpoint.h"
#include "src/model/params.h"

namespace gpt2 {

// The groups of per-parameter tensors a checkpoint can hold.
enum class TensorFamily { kParams, kAdamM, kAdamV, kMaster };

// "qkvw", "adamw.m/qkvw", "adamw.v/qkvw", "master/qkvw".
std::string FamilyTensorName(TensorFamily family, const std::string& param);
// "" (params), "adamw.m/", "adamw.v/", "master/".
const char* FamilyPrefix(TensorFamily family);

// A read-only view of host memory in the flat parameter layout (parameter
// list order; ZeRO padding past TotalParams, if any, is ignored).
struct HostView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t numel = 0;
  bool present() const { return data != nullptr; }
  template <typename T>
  static HostView Of(const std::vector<T>& v) {
    return HostView{v.data(), DTypeOf<T>::value,
                    static_cast<int64_t>(v.size())};
  }
};

struct ModelStateView {
  HostView params;          // required
  HostView adam_m, adam_v;  // optional (both or neither); full layout
  HostView master;          // optional fp32 master weights
};

// The model shape a config describes (Vp = V rounded up to 128 when unset),
// with bounds checked so a corrupt header cannot ask for absurd sizes.
absl::StatusOr<ModelShape> ModelShapeFromConfig(
    const config::ModelConfig& model);
// The reverse: the config section that describes `shape`.
config::ModelConfig ModelConfigOf(const ModelShape& shape);

// Writes a whole checkpoint from host buffers. Sets the header's dtype,
// optimizer-state and num_params fields from `state`.
absl::Status SaveModelCheckpoint(const std::string& path, ckpt::Header header,
                                 const std::vector<ParamSpec>& list,
                                 const ModelStateView& state,
                                 const CheckpointWriterOptions& options = {});

// Writes flat-layout elements [flat_offset, flat_offset + count) of one
// family, split at tensor boundaries: how rank 0 streams a ZeRO-1 run's
// optimizer state as it gathers it, one shard (or part of one) at a time.
// Elements at or past TotalParams(list) (shard padding) are skipped.
absl::Status WriteFlatRange(CheckpointWriter* writer,
                            const std::vector<ParamSpec>& list,
                            TensorFamily family, DType dtype,
                            int64_t flat_offset, const void* data,
                            int64_t count);

// Checks that the checkpoint holds every tensor of `family` with the list's
// shape; the error names the tensor and both shapes.
absl::Status CheckFamily(const CheckpointReader& reader,
                         const std::vector<ParamSpec>& list,
                         TensorFamily family);

// Reads flat-layout elements [flat_offset, flat_offset + count) of a family
// into `out` (count elements of `want`), checking names and shapes against
// the list; elements past TotalParams(list) read as zero. With flat_offset =
// rank * shard_size and count = shard_size this is one rank's ZeRO-1 shard at
// whatever world size the run resumes on.
absl::Status ReadFlatRange(CheckpointReader* reader,
                           const std::vector<ParamSpec>& list,
                           TensorFamily family, DType want, int64_t flat_offset,
                           int64_t count, void* out);

// A whole checkpoint in host memory, for single-process use and tests.
struct HostModelState {
  ckpt::Header header;
  std::vector<double> params;          // TotalParams(list)
  std::vector<double> adam_m, adam_v;  // empty unless asked for
};

// Opens `path` and reads the params (and, with `optimizer_state`, m and v;
// an error if the file has none), checking every tensor against `list`.
absl::StatusOr<HostModelState> LoadModelCheckpoint(
    const std::string& path, const std::vector<ParamSpec>& list,
    bool optimizer_state);

}  // namespace gpt2

#endif  // GPT2_CKPT_MODEL_CHECKPOINT_H_
