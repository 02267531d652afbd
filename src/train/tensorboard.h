// TensorBoard event files: the run's scalars (loss, lr, grad norm, step time,
// tokens/s, val loss, HellaSwag) as `tensorboard --logdir logs` reads them,
// written beside metrics.jsonl by rank 0 (src/train/run_log.h).
//
// A file is a TFRecord stream of serialized Events (proto/tensorboard.proto):
// each record is its length (uint64, little-endian), that length's masked
// CRC-32C (uint32), the bytes, and their masked CRC-32C. The first event of a
// file names the format ("brain.Event:2"). Each Open starts a new file, as
// TensorBoard's own writers do; a resumed run marks its restart step, so
// TensorBoard drops what the earlier files logged from that step on.
#ifndef GPT2_TRAIN_TENSORBOARD_H_
#define GPT2_TRAIN_TENSORBOARD_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gpt2 {
namespace tensorboard {
class Event;  // proto/tensorboard.proto
}

// TFRecord's masked CRC-32C: the CRC rotated right by 15 bits plus
// 0xa282ead8 (so the CRC of data holding CRCs stays well spread).
uint32_t MaskedCrc32c(std::string_view data);

// One record of a TFRecord stream, framed as above.
std::string FrameRecord(std::string_view data);

// The records of a TFRecord stream, each checked (lengths, both CRCs);
// InvalidArgument naming the record and the offset of the first bad one.
absl::StatusOr<std::vector<std::string>> ParseRecords(std::string_view stream);

// Seconds since the Unix epoch, as TensorBoard's wall_time.
double UnixSeconds();

class TensorBoardWriter {
 public:
  using Scalar = std::pair<std::string, double>;  // tag, value

  // Starts a new event file in `dir` (which must exist):
  // events.out.tfevents.<unix seconds>.<host>.<pid>.<n>, never over an
  // existing file, and writes its first event. A file that gets no other
  // event is removed again when the writer is destroyed.
  static absl::StatusOr<TensorBoardWriter> Open(const std::string& dir);
  TensorBoardWriter(TensorBoardWriter&& o) noexcept;
  TensorBoardWriter& operator=(TensorBoardWriter&& o) noexcept;
  ~TensorBoardWriter();

  // One event holding `scalars` (TensorBoard's scalars, tag by tag) at
  // `step`, flushed to the file.
  absl::Status Scalars(int64_t step, double wall_time,
                       const std::vector<Scalar>& scalars);
  // Text at `step` under `tag`, shown by TensorBoard's Text tab (which reads
  // it as Markdown).
  absl::Status Text(int64_t step, double wall_time, const std::string& tag,
                    const std::string& text);
  // The run (re)starts at `step`: written first by a resumed run.
  absl::Status Restart(int64_t step, double wall_time);

  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(std::string path, FILE* file)
      : path_(std::move(path)), file_(file) {}
  absl::Status Write(const tensorboard::Event& event);
  void Close();  // removes a file holding no event but its version

  std::string path_;
  FILE* file_ = nullptr;
  // Events written, the file's version first: a file with no other (a run
  // that failed before its first step) is removed when the writer closes, so
  // a failed start leaves no empty event file in the run folder.
  int64_t events_ = 0;
};

}  // namespace gpt2

#endif  // GPT2_TRAIN_TENSORBOARD_H_
