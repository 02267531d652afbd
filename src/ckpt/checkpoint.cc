#include "src/ckpt/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "src/core/crc32c.h"
#include "src/core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "checkpoints store little-endian data as it is in memory");

namespace gpt2 {
namespace {

// Whether a stored CRC is the computed one. Fuzzing builds (launch/fuzz.sh
// defines FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, libFuzzer's convention)
// take every stored CRC as right, so that mutated inputs get past the checks
// to the parsing behind them; every other build checks.
bool CrcMatches(uint32_t stored, uint32_t computed) {
#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
  (void)stored;
  (void)computed;
  return true;
#else
  return stored == computed;
#endif
}

// Every frame after the header: kind (4 ASCII bytes), uint64 body length,
// uint32 CRC, body. The CRC covers kind, length and the body up to a record's
// data (a record's data has its own CRC inside the record).
constexpr char kRecordKind[4] = {'T', 'R', 'E', 'C'};
constexpr char kTrailerKind[4] = {'T', 'E', 'N', 'D'};
constexpr int64_t kFramePrefixBytes = 16;
constexpr int64_t kMaxTrailerBytes = 4096;
// magic, uint32 version, uint64 header length.
constexpr int64_t kPreambleBytes = 20;
constexpr int kDataField = 15;  // TensorRecord.data
// Reads and conversions go through buffers of this size.
constexpr int64_t kPieceBytes = int64_t{4} << 20;

void PutLe32(uint32_t v, char* out) { std::memcpy(out, &v, 4); }
void PutLe64(uint64_t v, char* out) { std::memcpy(out, &v, 8); }
uint32_t GetLe32(const char* in) {
  uint32_t v;
  std::memcpy(&v, in, 4);
  return v;
}
uint64_t GetLe64(const char* in) {
  uint64_t v;
  std::memcpy(&v, in, 8);
  return v;
}

std::string ErrnoText() { return std::strerror(errno); }

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (bits >> 16) | 0x40u;  // NaN
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}
float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename From, typename To>
void ConvertLoop(const void* src, void* dst, int64_t n) {
  const From* s = static_cast<const From*>(src);
  To* d = static_cast<To*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<To>(s[i]);
}

// Product of `shape`, or an error when a dimension is negative or the
// product exceeds kMaxTensorElements.
absl::StatusOr<int64_t> NumElements(const std::vector<int64_t>& shape) {
  if (static_cast<int>(shape.size()) > kMaxTensorRank) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", shape.size(), " exceeds ", kMaxTensorRank));
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension in shape ", ShapeString(shape)));
    }
    if (d != 0 && n > kMaxTensorElements / d) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", ShapeString(shape), " exceeds 2^40 elements"));
    }
    n *= d;
  }
  return n;
}

std::string Hex32(uint32_t v) { return absl::StrFormat("0x%08x", v); }

}  // namespace

ckpt::TensorDType ToProtoDType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ckpt::DTYPE_F32;
    case DType::kF64:
      return ckpt::DTYPE_F64;
    case DType::kBF16:
      return ckpt::DTYPE_BF16;
    case DType::kI32:
      return ckpt::DTYPE_I32;
  }
  return ckpt::DTYPE_UNSPECIFIED;
}

absl::StatusOr<DType> FromProtoDType(int proto_dtype) {
  switch (proto_dtype) {
    case ckpt::DTYPE_F32:
      return DType::kF32;
    case ckpt::DTYPE_F64:
      return DType::kF64;
    case ckpt::DTYPE_BF16:
      return DType::kBF16;
    case ckpt::DTYPE_I32:
      return DType::kI32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown tensor dtype ", proto_dtype));
  }
}

absl::Status ConvertElements(const void* src, DType from, void* dst, DType to,
                             int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n) * DTypeSize(from));
    return absl::OkStatus();
  }
  if (from == DType::kI32 || to == DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot convert ", DTypeName(from), " to ", DTypeName(to)));
  }
  if (from == DType::kF32 && to == DType::kF64) {
    ConvertLoop<float, double>(src, dst, n);
  } else if (from == DType::kF64 && to == DType::kF32) {
    ConvertLoop<double, float>(src, dst, n);
  } else if (from == DType::kBF16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    if (to == DType::kF32) {
      float* d = static_cast<float*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = Bf16ToFloat(s[i]);
    } else {
      double* d = static_cast<double*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = Bf16ToFloat(s[i]);
    }
  } else {  // to bf16
    uint16_t* d = static_cast<uint16_t*>(dst);
    if (from == DType::kF32) {
      const float* s = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) d[i] = FloatToBf16(s[i]);
    } else {
      const double* s = static_cast<const double*>(src);
      for (int64_t i = 0; i < n; ++i)
        d[i] = FloatToBf16(static_cast<float>(s[i]));
    }
  }
  return absl::OkStatus();
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// ---- Writer -----------------------------------------------------------------

absl::StatusOr<CheckpointWriter> CheckpointWriter::Create(
    const std::string& path, const ckpt::Header& header,
    const CheckpointWriterOptions& options) {
  if (options.max_record_bytes < 1 ||
      options.max_record_bytes > kMaxRecordDataBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_record_bytes must be in [1, ", kMaxRecordDataBytes,
                     "], got ", options.max_record_bytes));
  }
  CheckpointWriter writer;
  writer.path_ = path;
  writer.options_ = options;
  const std::filesystem::path parent =
      std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": cannot create the folder ", parent.string(),
                       ": ", ec.message()));
    }
  }
  const std::string temp = writer.temp_path();
  writer.fd_ =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (writer.fd_ < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(temp, ": cannot create: ", ErrnoText()));
  }
  ckpt::Header copy = header;
  copy.set_format_version(kCheckpointFormatVersion);
  if (!copy.has_created_unix_time())
    copy.set_created_unix_time(static_cast<int64_t>(std::time(nullptr)));
  std::string body;
  if (!copy.SerializeToString(&body) ||
      static_cast<int64_t>(body.size()) > kMaxHeaderBytes) {
    return writer.Fail(absl::InvalidArgumentError(
        absl::StrCat(path, ": the header does not serialize within ",
                     kMaxHeaderBytes, " bytes")));
  }
  std::string preamble(kPreambleBytes, '\0');
  std::memcpy(preamble.data(), kCheckpointMagic, 8);
  PutLe32(kCheckpointFormatVersion, preamble.data() + 8);
  PutLe64(body.size(), preamble.data() + 12);
  preamble += body;
  char crc[4];
  PutLe32(Crc32c(preamble.data(), preamble.size()), crc);
  preamble.append(crc, 4);
  GPT2_RETURN_IF_ERROR(writer.WriteAll(preamble.data(), preamble.size()));
  return writer;
}

CheckpointWriter::CheckpointWriter(CheckpointWriter&& other) noexcept {
  *this = std::move(other);
}

CheckpointWriter& CheckpointWriter::operator=(
    CheckpointWriter&& other) noexcept {
  if (this != &other) {
    Abandon();
    path_ = std::move(other.path_);
    options_ = other.options_;
    fd_ = std::exchange(other.fd_, -1);
    committed_ = other.committed_;
    failed_ = std::move(other.failed_);
    bytes_written_ = other.bytes_written_;
    num_records_ = other.num_records_;
    data_bytes_ = other.data_bytes_;
    tensors_ = std::move(other.tensors_);
  }
  return *this;
}

CheckpointWriter::~CheckpointWriter() { Abandon(); }

void CheckpointWriter::Abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path().c_str());
  }
}

absl::Status CheckpointWriter::Fail(absl::Status status) {
  Abandon();
  failed_ = status;
  return status;
}

absl::Status CheckpointWriter::WriteAll(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  size_t allowed = size;
  bool injected = false;
  if (options_.fail_after_bytes >= 0 &&
      bytes_written_ + static_cast<int64_t>(size) > options_.fail_after_bytes) {
    allowed = static_cast<size_t>(
        std::max<int64_t>(0, options_.fail_after_bytes - bytes_written_));
    injected = true;
  }
  size_t done = 0;
  while (done < allowed) {
    const ssize_t n = ::write(fd_, p + done, allowed - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return Fail(absl::ResourceExhaustedError(
          absl::StrCat(temp_path(), ": write failed at byte ",
                       bytes_written_ + static_cast<int64_t>(done), ": ",
                       n < 0 ? ErrnoText() : "no progress",
                       "; the checkpoint was not saved")));
    }
    done += static_cast<size_t>(n);
  }
  bytes_written_ += static_cast<int64_t>(done);
  if (injected) {
    return Fail(absl::ResourceExhaustedError(absl::StrCat(
        temp_path(), ": write failed at byte ", bytes_written_, ": ",
        std::strerror(ENOSPC), " (injected); the checkpoint was not saved")));
  }
  return absl::OkStatus();
}

absl::Status CheckpointWriter::WriteTensor(const std::string& name,
                                           const std::vector<int64_t>& shape,
                                           DType dtype, const void* data) {
  const absl::StatusOr<int64_t> numel = NumElements(shape);
  if (!numel.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        path_, ": tensor '", name, "': ", numel.status().message())));
  }
  return WriteChunk(name, shape, dtype, 0, data, *numel);
}

absl::Status CheckpointWriter::WriteChunk(const std::string& name,
                                          const std::vector<int64_t>& shape,
                                          DType dtype, int64_t elem_offset,
                                          const void* data, int64_t count) {
  if (!failed_.ok()) return failed_;
  if (committed_ || fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": the checkpoint is already committed"));
  }
  const std::string where = absl::StrCat(path_, ": tensor '", name, "': ");
  if (name.empty() || name.size() > static_cast<size_t>(kMaxTensorNameBytes)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        where, "names must have 1 to ", kMaxTensorNameBytes, " bytes")));
  }
  const absl::StatusOr<int64_t> numel = NumElements(shape);
  if (!numel.ok()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(where, numel.status().message())));
  }
  if (elem_offset < 0 || count < 0 || elem_offset > *numel - count ||
      (count > 0 && data == nullptr)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(where, "chunk [", elem_offset, ", ", elem_offset + count,
                     ") is outside its ", *numel, " elements")));
  }
  auto [it, inserted] = tensors_.try_emplace(name);
  TensorProgress& progress = it->second;
  if (inserted) {
    progress.shape = shape;
    progress.dtype = dtype;
    progress.numel = *numel;
  } else if (progress.shape != shape || progress.dtype != dtype) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        where, "chunk has shape ", ShapeString(shape), " ", DTypeName(dtype),
        " but an earlier chunk had ", ShapeString(progress.shape), " ",
        DTypeName(progress.dtype))));
  }
  const int64_t size = static_cast<int64_t>(DTypeSize(dtype));
  if (count == 0) {
    // An empty tensor still gets one record so the reader knows it.
    if (*numel == 0 && progress.ranges.empty()) {
      progress.ranges.push_back({0, 0});
      return WriteRecord(name, shape, dtype, 0, nullptr, 0);
    }
    return absl::OkStatus();
  }
  progress.ranges.push_back({elem_offset, elem_offset + count});
  const int64_t per_record =
      std::max<int64_t>(1, options_.max_record_bytes / size);
  const char* bytes = static_cast<const char*>(data);
  for (int64_t done = 0; done < count; done += per_record) {
    const int64_t n = std::min(per_record, count - done);
    GPT2_RETURN_IF_ERROR(WriteRecord(name, shape, dtype, elem_offset + done,
                                     bytes + done * size, n * size));
  }
  return absl::OkStatus();
}

absl::Status CheckpointWriter::WriteRecord(const std::string& name,
                                           const std::vector<int64_t>& shape,
                                           DType dtype, int64_t elem_offset,
                                           const char* data, int64_t bytes) {
  ckpt::TensorRecord meta;
  meta.set_name(name);
  for (int64_t d : shape) meta.add_shape(d);
  meta.set_dtype(ToProtoDType(dtype));
  meta.set_offset(elem_offset);
  meta.set_data_crc32c(Crc32c(data, static_cast<size_t>(bytes)));
  // The record's head: the metadata, then the data field's tag and length,
  // so that `data` is the message's last field.
  std::string head;
  meta.SerializeToString(&head);
  {
    google::protobuf::io::StringOutputStream sink(&head);
    google::protobuf::io::CodedOutputStream out(&sink);
    out.WriteTag(google::protobuf::internal::WireFormatLite::MakeTag(
        kDataField,
        google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
    out.WriteVarint64(static_cast<uint64_t>(bytes));
  }
  std::string frame(kFramePrefixBytes, '\0');
  std::memcpy(frame.data(), kRecordKind, 4);
  PutLe64(head.size() + static_cast<uint64_t>(bytes), frame.data() + 4);
  uint32_t crc = Crc32c(frame.data(), 12);
  crc = Crc32cExtend(crc, head.data(), head.size());
  PutLe32(crc, frame.data() + 12);
  frame += head;
  GPT2_RETURN_IF_ERROR(WriteAll(frame.data(), frame.size()));
  if (bytes > 0) GPT2_RETURN_IF_ERROR(WriteAll(data, bytes));
  ++num_records_;
  data_bytes_ += bytes;
  if (options_.after_record != nullptr)
    options_.after_record(options_.after_record_arg, num_records_);
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Commit() {
  if (!failed_.ok()) return failed_;
  if (committed_ || fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": the checkpoint is already committed"));
  }
  // Every tensor must be covered exactly once.
  for (auto& [name, progress] : tensors_) {
    std::sort(progress.ranges.begin(), progress.ranges.end());
    int64_t next = 0;
    for (const auto& [begin, end] : progress.ranges) {
      if (begin < next) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat(path_, ": tensor '", name, "': elements [", begin,
                         ", ", std::min(end, next), ") were written twice")));
      }
      if (begin > next) break;
      next = end;
    }
    if (next != progress.numel) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(path_, ": tensor '", name, "' is incomplete: element ",
                       next, " of ", progress.numel, " was never written")));
    }
  }
  ckpt::Trailer trailer;
  trailer.set_num_records(num_records_);
  trailer.set_num_tensors(static_cast<int64_t>(tensors_.size()));
  trailer.set_data_bytes(data_bytes_);
  std::string body = trailer.SerializeAsString();
  std::string frame(kFramePrefixBytes, '\0');
  std::memcpy(frame.data(), kTrailerKind, 4);
  PutLe64(body.size(), frame.data() + 4);
  uint32_t crc = Crc32c(frame.data(), 12);
  crc = Crc32cExtend(crc, body.data(), body.size());
  PutLe32(crc, frame.data() + 12);
  frame += body;
  GPT2_RETURN_IF_ERROR(WriteAll(frame.data(), frame.size()));

  const std::string temp = temp_path();
  if (::fsync(fd_) != 0) {
    return Fail(absl::ResourceExhaustedError(
        absl::StrCat(temp, ": fsync failed: ", ErrnoText(),
                     "; the checkpoint was not saved")));
  }
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    const std::string error = ErrnoText();
    ::unlink(temp.c_str());
    return failed_ = absl::ResourceExhaustedError(
               absl::StrCat(temp, ": close failed: ", error,
                            "; the checkpoint was not saved"));
  }
  if (::rename(temp.c_str(), path_.c_str()) != 0) {
    const std::string error = ErrnoText();
    ::unlink(temp.c_str());
    return failed_ = absl::PermissionDeniedError(
               absl::StrCat("cannot rename ", temp, " to ", path_, ": ", error,
                            "; the checkpoint was not saved"));
  }
  committed_ = true;
  // The rename is durable only once the folder is synced.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
    const std::string error = ErrnoText();
    if (dir_fd >= 0) ::close(dir_fd);
    return absl::ResourceExhaustedError(
        absl::StrCat(path_, ": saved, but syncing its folder failed: ", error));
  }
  ::close(dir_fd);
  return absl::OkStatus();
}

// ---- Reader -----------------------------------------------------------------

absl::StatusOr<CheckpointReader> CheckpointReader::Open(
    const std::string& path) {
  CheckpointReader reader;
  reader.path_ = path;
  reader.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (reader.fd_ < 0) {
    const std::string error = ErrnoText();
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat(path, ": cannot open checkpoint: ", error));
    }
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot open checkpoint: ", error));
  }
  struct stat st;
  if (::fstat(reader.fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  reader.file_size_ = st.st_size;
  GPT2_RETURN_IF_ERROR(reader.Index());
  return reader;
}

CheckpointReader::CheckpointReader(CheckpointReader&& other) noexcept {
  *this = std::move(other);
}

CheckpointReader& CheckpointReader::operator=(
    CheckpointReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    file_size_ = other.file_size_;
    format_version_ = other.format_version_;
    header_bytes_ = other.header_bytes_;
    trailer_bytes_ = other.trailer_bytes_;
    header_ = std::move(other.header_);
    records_ = std::move(other.records_);
    tensors_ = std::move(other.tensors_);
    by_name_ = std::move(other.by_name_);
    cached_record_ = std::exchange(other.cached_record_, -1);
    cache_ = std::move(other.cache_);
  }
  return *this;
}

CheckpointReader::~CheckpointReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status CheckpointReader::ReadAt(int64_t offset, void* out,
                                      int64_t size) const {
  char* p = static_cast<char*>(out);
  int64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd_, p + done, static_cast<size_t>(size - done),
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat(
          path_, ": read failed at byte ", offset + done, ": ", ErrnoText()));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path_, ": unexpected end of file at byte ",
                       offset + done, " (the file shrank while open?)"));
    }
    done += n;
  }
  return absl::OkStatus();
}

absl::Status CheckpointReader::Index() {
  // Preamble and header.
  if (file_size_ < kPreambleBytes + 4) {
    return absl::DataLossError(absl::StrCat(
        path_, ": too short to be a checkpoint (", file_size_, " bytes)"));
  }
  char preamble[kPreambleBytes];
  GPT2_RETURN_IF_ERROR(ReadAt(0, preamble, kPreambleBytes));
  if (std::memcmp(preamble, kCheckpointMagic, 8) != 0) {
    if (GetLe32(preamble) == 20240326u) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_,
          ": this is an llm.c model file, not a gpt2_ddp checkpoint "
          "(convert it with: gpt2_ckpt import --from llmc)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path_,
        ": not a gpt2_ddp checkpoint (bad magic; expected \"GPT2CKPT\")"));
  }
  format_version_ = GetLe32(preamble + 8);
  if (format_version_ > kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": format version ", format_version_,
                     " is newer than this build's ", kCheckpointFormatVersion,
                     "; use a newer gpt2_ddp to read it (or the file is "
                     "damaged, if it came from a build like this one)"));
  }
  if (format_version_ == 0) {
    return absl::DataLossError(
        absl::StrCat(path_, ": format version 0 is invalid (corrupt file)"));
  }
  const uint64_t header_len = GetLe64(preamble + 12);
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes) ||
      static_cast<int64_t>(header_len) > file_size_ - kPreambleBytes - 4) {
    return absl::DataLossError(absl::StrCat(
        path_, ": header length ", header_len, " exceeds the file's ",
        file_size_, " bytes (truncated or corrupt)"));
  }
  std::string header_bytes(kPreambleBytes + header_len + 4, '\0');
  GPT2_RETURN_IF_ERROR(ReadAt(0, header_bytes.data(), header_bytes.size()));
  const uint32_t stored =
      GetLe32(header_bytes.data() + kPreambleBytes + header_len);
  const uint32_t computed =
      Crc32c(header_bytes.data(), kPreambleBytes + header_len);
  if (!CrcMatches(stored, computed)) {
    return absl::DataLossError(absl::StrCat(
        path_, ": header crc32c mismatch (stored ", Hex32(stored),
        ", computed ", Hex32(computed), "): the header is corrupt"));
  }
  if (!header_.ParseFromArray(header_bytes.data() + kPreambleBytes,
                              static_cast<int>(header_len))) {
    return absl::DataLossError(
        absl::StrCat(path_, ": the header does not parse"));
  }
  header_bytes_ = static_cast<int64_t>(header_bytes.size());

  // Frames up to the trailer, which must end the file.
  int64_t pos = header_bytes_;
  int64_t data_bytes = 0;
  ckpt::Trailer trailer;
  while (true) {
    const std::string where =
        absl::StrCat(path_, ": record ", records_.size(), " at byte ", pos);
    if (pos == file_size_) {
      return absl::DataLossError(absl::StrCat(
          path_, ": no trailer after ", records_.size(), " records (",
          file_size_,
          " bytes): the file is truncated or its save did not finish"));
    }
    if (file_size_ - pos < kFramePrefixBytes) {
      return absl::DataLossError(absl::StrCat(
          where, ": the file ends inside the record's frame (truncated)"));
    }
    char prefix[kFramePrefixBytes];
    GPT2_RETURN_IF_ERROR(ReadAt(pos, prefix, kFramePrefixBytes));
    const uint64_t body_len = GetLe64(prefix + 4);
    const uint32_t crc = GetLe32(prefix + 12);
    const int64_t left = file_size_ - pos - kFramePrefixBytes;
    if (std::memcmp(prefix, kTrailerKind, 4) == 0) {
      if (body_len > static_cast<uint64_t>(std::min(kMaxTrailerBytes, left))) {
        return absl::DataLossError(
            absl::StrCat(path_, ": trailer at byte ", pos, ": length ",
                         body_len, " exceeds the rest of the file (", left,
                         " bytes; truncated or corrupt)"));
      }
      std::string body(body_len, '\0');
      GPT2_RETURN_IF_ERROR(
          ReadAt(pos + kFramePrefixBytes, body.data(), body_len));
      const uint32_t got =
          Crc32cExtend(Crc32c(prefix, 12), body.data(), body.size());
      if (!CrcMatches(crc, got) || !trailer.ParseFromString(body)) {
        return absl::DataLossError(absl::StrCat(
            path_, ": trailer at byte ", pos, ": crc32c mismatch (stored ",
            Hex32(crc), ", computed ", Hex32(got), ")"));
      }
      if (static_cast<int64_t>(body_len) != left) {
        return absl::DataLossError(
            absl::StrCat(path_, ": ", left - static_cast<int64_t>(body_len),
                         " unexpected bytes after the trailer at byte ", pos));
      }
      trailer_bytes_ = kFramePrefixBytes + static_cast<int64_t>(body_len);
      break;
    }
    if (std::memcmp(prefix, kRecordKind, 4) != 0) {
      return absl::DataLossError(
          absl::StrCat(where, ": bad record marker (corrupt file)"));
    }
    if (body_len >
        static_cast<uint64_t>(kMaxRecordDataBytes + kMaxRecordHeadBytes)) {
      return absl::DataLossError(
          absl::StrCat(where, ": record length ", body_len,
                       " exceeds the format's limit (corrupt length)"));
    }
    if (static_cast<int64_t>(body_len) > left) {
      return absl::DataLossError(
          absl::StrCat(where, ": record length ", body_len,
                       " runs past the end of the file (", left,
                       " bytes left; truncated or corrupt length)"));
    }
    RecordInfo record;
    record.index = static_cast<int64_t>(records_.size());
    record.file_offset = pos;
    record.frame_bytes = kFramePrefixBytes + static_cast<int64_t>(body_len);
    GPT2_RETURN_IF_ERROR(
        IndexRecord(pos, static_cast<int64_t>(body_len), crc, &record));
    data_bytes += record.data_bytes;
    records_.push_back(std::move(record));
    pos += kFramePrefixBytes + static_cast<int64_t>(body_len);
  }

  // Each tensor's records must tile [0, numel) exactly.
  for (TensorInfo& tensor : tensors_) {
    std::sort(tensor.records.begin(), tensor.records.end(),
              [&](int64_t a, int64_t b) {
                return records_[a].elem_offset < records_[b].elem_offset;
              });
    int64_t next = 0;
    for (int64_t r : tensor.records) {
      const RecordInfo& rec = records_[r];
      if (rec.elem_offset != next || (rec.count == 0 && tensor.numel > 0)) {
        return absl::DataLossError(absl::StrCat(
            path_, ": tensor '", tensor.name, "': record ", rec.index,
            " at byte ", rec.file_offset, " holds elements [", rec.elem_offset,
            ", ", rec.elem_offset + rec.count, ") but element ", next,
            " comes next (records overlap, or some are missing)"));
      }
      next += rec.count;
    }
    if (next != tensor.numel) {
      return absl::DataLossError(absl::StrCat(
          path_, ": tensor '", tensor.name, "' ", ShapeString(tensor.shape),
          ": elements [", next, ", ", tensor.numel, ") are missing"));
    }
  }
  // Last, as the least specific check: whole tensors lost or added.
  if (trailer.num_records() != static_cast<int64_t>(records_.size()) ||
      trailer.num_tensors() != static_cast<int64_t>(tensors_.size()) ||
      trailer.data_bytes() != data_bytes) {
    return absl::DataLossError(absl::StrCat(
        path_, ": the trailer lists ", trailer.num_records(), " records, ",
        trailer.num_tensors(), " tensors, ", trailer.data_bytes(),
        " data bytes, but the file holds ", records_.size(), ", ",
        tensors_.size(), ", ", data_bytes, " (records lost or spliced)"));
  }
  return absl::OkStatus();
}

absl::Status CheckpointReader::IndexRecord(int64_t offset, int64_t body_len,
                                           uint32_t stored_crc,
                                           RecordInfo* record) {
  using google::protobuf::internal::WireFormatLite;
  const std::string where =
      absl::StrCat(path_, ": record ", record->index, " at byte ", offset);
  // Read the head, find the data field, check the head's CRC, then trust
  // the metadata.
  const int64_t head_read = std::min(body_len, kMaxRecordHeadBytes);
  std::string head(head_read, '\0');
  GPT2_RETURN_IF_ERROR(
      ReadAt(offset + kFramePrefixBytes, head.data(), head_read));
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(head.data()),
      static_cast<int>(head_read));
  int64_t tag_start = -1, data_start = -1;
  uint64_t data_len = 0;
  while (true) {
    const int64_t here = in.CurrentPosition();
    const uint32_t tag = in.ReadTag();
    if (tag == 0) break;
    if (WireFormatLite::GetTagFieldNumber(tag) == kDataField &&
        WireFormatLite::GetTagWireType(tag) ==
            WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (!in.ReadVarint64(&data_len)) break;
      tag_start = here;
      data_start = in.CurrentPosition();
      break;
    }
    if (!WireFormatLite::SkipField(&in, tag)) break;
  }
  if (data_start < 0 ||
      data_len != static_cast<uint64_t>(body_len - data_start)) {
    // A damaged head (its CRC cannot be checked without finding the data),
    // or a writer that did not put the data last.
    return absl::DataLossError(absl::StrCat(
        where, ": malformed record (no data field ending the record within ",
        kMaxRecordHeadBytes, " bytes; corrupt)"));
  }
  char prefix[12];
  std::memcpy(prefix, kRecordKind, 4);
  PutLe64(static_cast<uint64_t>(body_len), prefix + 4);
  const uint32_t got = Crc32cExtend(Crc32c(prefix, 12), head.data(),
                                    static_cast<size_t>(data_start));
  if (!CrcMatches(stored_crc, got)) {
    return absl::DataLossError(absl::StrCat(
        where, ": record header crc32c mismatch (stored ", Hex32(stored_crc),
        ", computed ", Hex32(got), "): the record is corrupt"));
  }
  ckpt::TensorRecord meta;
  if (!meta.ParseFromArray(head.data(), static_cast<int>(tag_start))) {
    return absl::DataLossError(
        absl::StrCat(where, ": the record's metadata does not parse"));
  }
  const std::vector<int64_t> shape(meta.shape().begin(), meta.shape().end());
  const std::string named =
      absl::StrCat(where, " (tensor '", meta.name(), "')");
  if (meta.name().empty() ||
      meta.name().size() > static_cast<size_t>(kMaxTensorNameBytes)) {
    return absl::DataLossError(
        absl::StrCat(where, ": tensor name of ", meta.name().size(),
                     " bytes (must be 1 to ", kMaxTensorNameBytes, ")"));
  }
  const absl::StatusOr<int64_t> numel = NumElements(shape);
  if (!numel.ok()) {
    return absl::DataLossError(
        absl::StrCat(named, ": ", numel.status().message()));
  }
  const absl::StatusOr<DType> dtype = FromProtoDType(meta.dtype());
  if (!dtype.ok()) {
    return absl::DataLossError(
        absl::StrCat(named, ": ", dtype.status().message()));
  }
  const int64_t size = static_cast<int64_t>(DTypeSize(*dtype));
  if (static_cast<int64_t>(data_len) > kMaxRecordDataBytes ||
      data_len % size != 0) {
    return absl::DataLossError(absl::StrCat(
        named, ": ", data_len, " data bytes is not a whole number of ",
        DTypeName(*dtype), " elements within the record limit"));
  }
  const int64_t count = static_cast<int64_t>(data_len) / size;
  if (meta.offset() < 0 || meta.offset() > *numel - count) {
    return absl::DataLossError(absl::StrCat(
        named, ": elements [", meta.offset(), ", ", meta.offset() + count,
        ") fall outside shape ", ShapeString(shape)));
  }
  record->name = meta.name();
  record->dtype = *dtype;
  record->elem_offset = meta.offset();
  record->count = count;
  record->data_offset = offset + kFramePrefixBytes + data_start;
  record->data_bytes = static_cast<int64_t>(data_len);
  record->data_crc32c = meta.data_crc32c();

  auto [it, inserted] = by_name_.try_emplace(meta.name(), tensors_.size());
  if (inserted) {
    TensorInfo tensor;
    tensor.name = meta.name();
    tensor.shape = shape;
    tensor.dtype = *dtype;
    tensor.numel = *numel;
    tensor.bytes = *numel * size;
    tensors_.push_back(std::move(tensor));
  }
  TensorInfo& tensor = tensors_[it->second];
  if (tensor.shape != shape || tensor.dtype != *dtype) {
    return absl::DataLossError(absl::StrCat(
        named, ": shape ", ShapeString(shape), " ", DTypeName(*dtype),
        " differs from the tensor's earlier records: ",
        ShapeString(tensor.shape), " ", DTypeName(tensor.dtype)));
  }
  tensor.records.push_back(record->index);
  return absl::OkStatus();
}

const TensorInfo* CheckpointReader::Find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::string CheckpointReader::Where(const RecordInfo& record) const {
  return absl::StrCat(path_, ": record ", record.index, " (tensor '",
                      record.name, "', elements [", record.elem_offset, ", ",
                      record.elem_offset + record.count, ")) at byte ",
                      record.file_offset);
}

absl::Status CheckpointReader::DataCrcError(const RecordInfo& record,
                                            uint32_t computed) const {
  return absl::DataLossError(
      absl::StrCat(Where(record), ": data crc32c mismatch (stored ",
                   Hex32(record.data_crc32c), ", computed ", Hex32(computed),
                   "): the data is corrupt"));
}

absl::Status CheckpointReader::StreamRecord(const RecordInfo& record,
                                            const PieceSink& sink) {
  std::vector<char> piece(
      static_cast<size_t>(std::min(kPieceBytes, record.data_bytes)));
  uint32_t crc = 0;
  for (int64_t done = 0; done < record.data_bytes;) {
    const int64_t n = std::min(kPieceBytes, record.data_bytes - done);
    GPT2_RETURN_IF_ERROR(ReadAt(record.data_offset + done, piece.data(), n));
    crc = Crc32cExtend(crc, piece.data(), static_cast<size_t>(n));
    if (sink) sink(piece.data(), done, n);
    done += n;
  }
  if (!CrcMatches(record.data_crc32c, crc)) return DataCrcError(record, crc);
  return absl::OkStatus();
}

absl::Status CheckpointReader::ReadRecordRange(const RecordInfo& record,
                                               int64_t begin, int64_t end,
                                               DType want, void* out) {
  const int64_t size = static_cast<int64_t>(DTypeSize(record.dtype));
  if (cached_record_ == record.index) {
    return ConvertElements(cache_.data() + begin * size, record.dtype, out,
                           want, end - begin);
  }
  if (begin == 0 && end == record.count) {
    if (want == record.dtype) {
      // Straight into the caller's memory, then check.
      GPT2_RETURN_IF_ERROR(ReadAt(record.data_offset, out, record.data_bytes));
      const uint32_t crc = Crc32c(out, static_cast<size_t>(record.data_bytes));
      if (!CrcMatches(record.data_crc32c, crc))
        return DataCrcError(record, crc);
      return absl::OkStatus();
    }
    char* dst = static_cast<char*>(out);
    const int64_t want_size = static_cast<int64_t>(DTypeSize(want));
    absl::Status convert;
    GPT2_RETURN_IF_ERROR(StreamRecord(
        record, [&](const char* data, int64_t byte_offset, int64_t bytes) {
          if (!convert.ok()) return;
          convert = ConvertElements(data, record.dtype,
                                    dst + byte_offset / size * want_size, want,
                                    bytes / size);
        }));
    return convert;
  }
  // A part of the record: the whole record must be read for its CRC anyway,
  // so keep it for the next slice.
  cached_record_ = -1;
  cache_.resize(static_cast<size_t>(record.data_bytes));
  GPT2_RETURN_IF_ERROR(
      ReadAt(record.data_offset, cache_.data(), record.data_bytes));
  const uint32_t crc = Crc32c(cache_.data(), cache_.size());
  if (!CrcMatches(record.data_crc32c, crc)) return DataCrcError(record, crc);
  cached_record_ = record.index;
  return ConvertElements(cache_.data() + begin * size, record.dtype, out, want,
                         end - begin);
}

absl::Status CheckpointReader::ReadTensor(const std::string& name, DType want,
                                          void* out, int64_t numel) {
  const TensorInfo* tensor = Find(name);
  if (tensor == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path_, ": no tensor '", name, "' in the checkpoint"));
  }
  if (tensor->numel != numel) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": tensor '", name, "' ", ShapeString(tensor->shape), " has ",
        tensor->numel, " elements, the caller expects ", numel));
  }
  return ReadTensorSlice(name, want, 0, numel, out);
}

absl::Status CheckpointReader::ReadTensorSlice(const std::string& name,
                                               DType want, int64_t elem_offset,
                                               int64_t count, void* out) {
  const TensorInfo* tensor = Find(name);
  if (tensor == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path_, ": no tensor '", name, "' in the checkpoint"));
  }
  if (elem_offset < 0 || count < 0 || elem_offset > tensor->numel - count) {
    return absl::OutOfRangeError(absl::StrCat(
        path_, ": tensor '", name, "': slice [", elem_offset, ", ",
        elem_offset + count, ") is outside its ", tensor->numel, " elements"));
  }
  if ((tensor->dtype == DType::kI32) != (want == DType::kI32)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": tensor '", name, "' is ", DTypeName(tensor->dtype),
        ", cannot read it as ", DTypeName(want)));
  }
  const int64_t want_size = static_cast<int64_t>(DTypeSize(want));
  char* dst = static_cast<char*>(out);
  const int64_t end = elem_offset + count;
  // Records are sorted by element offset: find the first that overlaps.
  auto first = std::upper_bound(tensor->records.begin(), tensor->records.end(),
                                elem_offset, [&](int64_t offset, int64_t r) {
                                  return offset < records_[r].elem_offset;
                                });
  if (first != tensor->records.begin()) --first;
  for (auto it = first; it != tensor->records.end(); ++it) {
    const RecordInfo& record = records_[*it];
    if (record.elem_offset >= end) break;
    const int64_t begin = std::max(elem_offset, record.elem_offset);
    const int64_t stop = std::min(end, record.elem_offset + record.count);
    if (begin >= stop) continue;
    GPT2_RETURN_IF_ERROR(ReadRecordRange(
        record, begin - record.elem_offset, stop - record.elem_offset, want,
        dst + (begin - elem_offset) * want_size));
  }
  return absl::OkStatus();
}

absl::Status CheckpointReader::VerifyAll() {
  struct stat st;
  if (::fstat(fd_, &st) != 0 || st.st_size != file_size_) {
    return absl::DataLossError(
        absl::StrCat(path_, ": the file changed size since it was opened"));
  }
  for (const RecordInfo& record : records_) {
    GPT2_RETURN_IF_ERROR(StreamRecord(record, nullptr));
  }
  return absl::OkStatus();
}

}  // namespace gpt2
