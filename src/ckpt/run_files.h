// A run's checkpoint files: <run_dir>/checkpoints/step_00001000.ckpt, and a
// text file `latest` there naming the newest complete one. `latest` changes
// only by an atomic rename after a checkpoint is committed, so a crash at any
// point leaves it naming a complete file.
#ifndef GPT2_CKPT_RUN_FILES_H_
#define GPT2_CKPT_RUN_FILES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gpt2 {

inline constexpr char kLatestFileName[] = "latest";

// <run_dir>/checkpoints
std::string CheckpointDir(const std::string& run_dir);
// "step_00001000.ckpt" (eight digits, more when the step needs them).
std::string CheckpointFileName(int64_t step);
// <run_dir>/checkpoints/step_00001000.ckpt
std::string CheckpointPath(const std::string& run_dir, int64_t step);
// The step of a checkpoint file name, or -1 when `file_name` is not one.
int64_t CheckpointStep(const std::string& file_name);

// Points `latest` at `file_name` (a file in CheckpointDir, which must exist):
// writes latest.tmp, fsyncs, renames over latest, fsyncs the folder.
absl::Status UpdateLatest(const std::string& run_dir,
                          const std::string& file_name);

// The path `latest` names; NotFound (naming the run) when there is none.
absl::StatusOr<std::string> ReadLatest(const std::string& run_dir);

// A --resume argument: "latest" means the checkpoint `latest` names in
// run_dir, and a path to a `latest` file the checkpoint it names; anything
// else is a checkpoint path, which must exist.
absl::StatusOr<std::string> ResolveResume(const std::string& arg,
                                          const std::string& run_dir);

// What a tool's --checkpoint names: a folder, either a run folder (<run_dir>,
// holding checkpoints/latest) or its checkpoints/ folder, means the checkpoint
// `latest` names there (NotFound for other folders); so does a path to a
// `latest` file itself; any other path is returned as it is, for
// CheckpointReader::Open to open or refuse.
absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path);

// Keeps the `keep_last` newest step_*.ckpt (by step) and the one `latest`
// names, removing older ones and leftover *.ckpt.tmp files of interrupted
// saves. Removes nothing unless `latest` names a checkpoint that opens (so it
// is complete). keep_last < 1 keeps every checkpoint.
absl::Status PruneCheckpoints(const std::string& run_dir, int keep_last);

}  // namespace gpt2

#endif  // GPT2_CKPT_RUN_FILES_H_
