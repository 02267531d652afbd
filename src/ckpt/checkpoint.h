// The checkpoint file: a checksummed header (proto/checkpoint.proto) followed
// by tensor records of at most 64 MiB of data each and a trailer, so files may
// exceed protobuf's 2 GiB limit and truncation is always detected. The writer
// streams (it never holds more than the caller's chunk) into "<path>.tmp" and
// renames on Commit; the reader indexes records without reading their data.
// Byte layout: docs/checkpoints.md.
#ifndef GPT2_CKPT_CHECKPOINT_H_
#define GPT2_CKPT_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/checkpoint.pb.h"
#include "src/core/tensor.h"

namespace gpt2 {

// The format this build writes, and the newest it reads.
inline constexpr uint32_t kCheckpointFormatVersion = 1;
inline constexpr char kCheckpointMagic[8] = {'G', 'P', 'T', '2',
                                             'C', 'K', 'P', 'T'};
// Most data bytes in one record (a reader refuses larger ones).
inline constexpr int64_t kMaxRecordDataBytes = int64_t{64} << 20;
// Most bytes of a record before its data (name, shape, ...), and of the
// header message; bounds what a corrupt length can make the reader allocate.
inline constexpr int64_t kMaxRecordHeadBytes = int64_t{64} << 10;
inline constexpr int64_t kMaxHeaderBytes = int64_t{16} << 20;
// Limits on a stored tensor: names, rank, and elements.
inline constexpr int kMaxTensorNameBytes = 1024;
inline constexpr int kMaxTensorRank = 8;
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 40;

ckpt::TensorDType ToProtoDType(DType dtype);
// Fails on DTYPE_UNSPECIFIED and values this build does not know.
absl::StatusOr<DType> FromProtoDType(int proto_dtype);

// Converts n elements between f32, f64 and bf16 (bf16 rounds to nearest
// even); i32 converts only to itself.
absl::Status ConvertElements(const void* src, DType from, void* dst, DType to,
                             int64_t n);

// "(2, 384, 128)"; "()" for a scalar.
std::string ShapeString(const std::vector<int64_t>& shape);

struct CheckpointWriterOptions {
  // Most data bytes per record; bigger chunks are split. Tests lower it.
  int64_t max_record_bytes = kMaxRecordDataBytes;
  // Test seam for a full disk: the write that would pass this many bytes in
  // the file fails with ENOSPC (-1 = never).
  int64_t fail_after_bytes = -1;
  // Test seam: runs after each record is written (e.g. to be killed there).
  void (*after_record)(void* arg, int64_t records_written) = nullptr;
  void* after_record_arg = nullptr;
};

class CheckpointWriter {
 public:
  // Starts "<path>.tmp" (creating the parent folders) and writes the header.
  // The writer sets header.format_version, and created_unix_time if unset.
  static absl::StatusOr<CheckpointWriter> Create(
      const std::string& path, const ckpt::Header& header,
      const CheckpointWriterOptions& options = {});

  CheckpointWriter(CheckpointWriter&& other) noexcept;
  CheckpointWriter& operator=(CheckpointWriter&& other) noexcept;
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  // Without a successful Commit the temp file is removed.
  ~CheckpointWriter();

  // A whole tensor of shape `shape` (numel = product of shape) from host
  // memory.
  absl::Status WriteTensor(const std::string& name,
                           const std::vector<int64_t>& shape, DType dtype,
                           const void* data);
  // Elements [elem_offset, elem_offset + count) of the tensor (row-major), so
  // a tensor can be written in bounded pieces, e.g. as rank 0 receives ZeRO
  // shards. Chunks of one tensor may come in any order and interleave with
  // other tensors; Commit checks that every tensor was covered exactly once.
  absl::Status WriteChunk(const std::string& name,
                          const std::vector<int64_t>& shape, DType dtype,
                          int64_t elem_offset, const void* data, int64_t count);
  // Writes the trailer, flushes and fsyncs, renames "<path>.tmp" to `path`
  // and fsyncs the folder. Only after it returns OK is `path` a checkpoint.
  absl::Status Commit();

  const std::string& path() const { return path_; }
  std::string temp_path() const { return path_ + ".tmp"; }
  int64_t bytes_written() const { return bytes_written_; }

 private:
  struct TensorProgress {
    std::vector<int64_t> shape;
    DType dtype = DType::kF32;
    int64_t numel = 0;
    std::vector<std::pair<int64_t, int64_t>> ranges;  // [begin, end) written
  };

  CheckpointWriter() = default;
  absl::Status WriteAll(const void* data, size_t size);
  absl::Status WriteRecord(const std::string& name,
                           const std::vector<int64_t>& shape, DType dtype,
                           int64_t elem_offset, const char* data,
                           int64_t bytes);
  // Marks the writer failed, closes and removes the temp file; returns
  // `status`.
  absl::Status Fail(absl::Status status);
  void Abandon();

  std::string path_;
  CheckpointWriterOptions options_;
  int fd_ = -1;
  bool committed_ = false;
  absl::Status failed_;  // sticky: once a write fails, everything does
  int64_t bytes_written_ = 0;
  int64_t num_records_ = 0;
  int64_t data_bytes_ = 0;
  std::map<std::string, TensorProgress> tensors_;
};

// One record as indexed by the reader.
struct RecordInfo {
  int64_t index = 0;        // 0-based position among the tensor records
  int64_t file_offset = 0;  // byte offset of the record's frame
  int64_t frame_bytes = 0;  // the whole frame, data included
  int64_t data_offset = 0;  // byte offset of the data in the file
  int64_t data_bytes = 0;
  uint32_t data_crc32c = 0;
  std::string name;
  DType dtype = DType::kF32;
  int64_t elem_offset = 0;  // first element of the tensor in this record
  int64_t count = 0;        // elements in this record
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::kF32;
  int64_t numel = 0;
  int64_t bytes = 0;             // data bytes (numel * dtype size)
  std::vector<int64_t> records;  // indices into records(), by element offset
};

// Not thread-safe (reads share a cache): use one reader per thread.
class CheckpointReader {
 public:
  // Opens and indexes the file: checks the magic, the format version (a newer
  // one is refused by name), the header's CRC, every record's framing and
  // metadata CRC, that each tensor's records tile it exactly, and the trailer.
  // Data CRCs are checked as data is read (or by VerifyAll).
  static absl::StatusOr<CheckpointReader> Open(const std::string& path);

  CheckpointReader(CheckpointReader&& other) noexcept;
  CheckpointReader& operator=(CheckpointReader&& other) noexcept;
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;
  ~CheckpointReader();

  const std::string& path() const { return path_; }
  const ckpt::Header& header() const { return header_; }
  uint32_t format_version() const { return format_version_; }
  int64_t file_size() const { return file_size_; }
  // Bytes of the magic, version and header frame.
  int64_t header_bytes() const { return header_bytes_; }
  // Bytes of the trailer frame.
  int64_t trailer_bytes() const { return trailer_bytes_; }

  // Tensors in order of first appearance; no data is read.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<RecordInfo>& records() const { return records_; }
  // nullptr when the file has no tensor of that name.
  const TensorInfo* Find(const std::string& name) const;

  // The whole tensor into `out` (numel elements of `want`), converting from
  // the stored dtype. Verifies the CRC of every record it reads. On error the
  // contents of `out` are unspecified.
  absl::Status ReadTensor(const std::string& name, DType want, void* out,
                          int64_t numel);
  // Elements [elem_offset, elem_offset + count) of the tensor. Reads (and
  // checks the CRC of) only the records that overlap, and keeps the last
  // partly read record cached so consecutive slices read each record once.
  absl::Status ReadTensorSlice(const std::string& name, DType want,
                               int64_t elem_offset, int64_t count, void* out);
  // Reads every record and checks its CRC; the error names the first bad
  // record (index, tensor, elements and byte offset).
  absl::Status VerifyAll();

 private:
  CheckpointReader() = default;
  absl::Status ReadAt(int64_t offset, void* out, int64_t size) const;
  absl::Status Index();
  absl::Status IndexRecord(int64_t offset, int64_t body_len,
                           uint32_t stored_crc, RecordInfo* record);
  // Elements [begin, end) of the record (relative to its first element).
  absl::Status ReadRecordRange(const RecordInfo& record, int64_t begin,
                               int64_t end, DType want, void* out);
  // Streams the record's data in bounded pieces, checking its CRC at the end;
  // `sink` (may be empty) gets each piece and its byte offset in the data.
  using PieceSink =
      std::function<void(const char* data, int64_t byte_offset, int64_t size)>;
  absl::Status StreamRecord(const RecordInfo& record, const PieceSink& sink);
  absl::Status DataCrcError(const RecordInfo& record, uint32_t computed) const;
  std::string Where(const RecordInfo& record) const;

  std::string path_;
  int fd_ = -1;
  int64_t file_size_ = 0;
  uint32_t format_version_ = 0;
  int64_t header_bytes_ = 0;
  int64_t trailer_bytes_ = 0;
  ckpt::Header header_;
  std::vector<RecordInfo> records_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> by_name_;
  int64_t cached_record_ = -1;  // record whose verified data is in cache_
  std::vector<char> cache_;
};

}  // namespace gpt2

#endif  // GPT2_CKPT_CHECKPOINT_H_
