#include "src/train/tensorboard.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/tensorboard.pb.h"
#include "src/core/crc32c.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

constexpr uint32_t kMaskDelta = 0xa282ead8u;
constexpr size_t kLengthBytes = 8, kCrcBytes = 4;

void PutLittleEndian(uint64_t v, size_t bytes, std::string* out) {
  for (size_t i = 0; i < bytes; ++i)
    out->push_back(char((v >> (8 * i)) & 0xff));
}

uint64_t GetLittleEndian(std::string_view s, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(s[i])) << (8 * i);
  return v;
}

// An event at `step` and `wall_time`, its content to be set.
tensorboard::Event EventAt(int64_t step, double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  return event;
}

}  // namespace

uint32_t MaskedCrc32c(std::string_view data) {
  const uint32_t crc = Crc32c(data.data(), data.size());
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}

std::string FrameRecord(std::string_view data) {
  std::string record;
  record.reserve(kLengthBytes + 2 * kCrcBytes + data.size());
  PutLittleEndian(data.size(), kLengthBytes, &record);
  PutLittleEndian(MaskedCrc32c(record), kCrcBytes, &record);
  record.append(data);
  PutLittleEndian(MaskedCrc32c(data), kCrcBytes, &record);
  return record;
}

absl::StatusOr<std::vector<std::string>> ParseRecords(std::string_view stream) {
  std::vector<std::string> records;
  size_t at = 0;
  while (at < stream.size()) {
    const std::string_view rest = stream.substr(at);
    auto bad = [&](std::string_view what) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "record %d at byte %d: %s", records.size(), at, what));
    };
    if (rest.size() < kLengthBytes + kCrcBytes) return bad("truncated header");
    const std::string_view length_bytes = rest.substr(0, kLengthBytes);
    if (MaskedCrc32c(length_bytes) !=
        GetLittleEndian(rest.substr(kLengthBytes), kCrcBytes)) {
      return bad("length CRC mismatch");
    }
    const uint64_t length = GetLittleEndian(length_bytes, kLengthBytes);
    const size_t body = kLengthBytes + kCrcBytes;
    if (length > rest.size() - body ||
        rest.size() - body - length < kCrcBytes) {
      return bad(absl::StrCat("truncated: ", length, " bytes announced"));
    }
    const std::string_view data = rest.substr(body, length);
    if (MaskedCrc32c(data) !=
        GetLittleEndian(rest.substr(body + length), kCrcBytes)) {
      return bad("data CRC mismatch");
    }
    records.emplace_back(data);
    at += body + length + kCrcBytes;
  }
  return records;
}

double UnixSeconds() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<TensorBoardWriter> TensorBoardWriter::Open(
    const std::string& dir) {
  static std::atomic<int> opened{0};
  char host[256] = "localhost";
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof(host) - 1] = '\0';
  const double now = UnixSeconds();
  const std::string path =
      absl::StrFormat("%s/events.out.tfevents.%010d.%s.%d.%d", dir,
                      int64_t(now), host, getpid(), opened++);
  // "x": never over an existing file.
  FILE* file = std::fopen(path.c_str(), "wbx");
  if (file == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  }
  TensorBoardWriter writer(path, file);
  tensorboard::Event event = EventAt(0, now);
  event.set_file_version("brain.Event:2");
  GPT2_RETURN_IF_ERROR(writer.Write(event));
  return writer;
}

TensorBoardWriter::TensorBoardWriter(TensorBoardWriter&& o) noexcept
    : path_(std::move(o.path_)), file_(o.file_), events_(o.events_) {
  o.file_ = nullptr;
}

TensorBoardWriter& TensorBoardWriter::operator=(
    TensorBoardWriter&& o) noexcept {
  if (this != &o) {
    Close();
    path_ = std::move(o.path_);
    file_ = o.file_;
    events_ = o.events_;
    o.file_ = nullptr;
  }
  return *this;
}

TensorBoardWriter::~TensorBoardWriter() { Close(); }

void TensorBoardWriter::Close() {
  if (file_ == nullptr) return;
  std::fclose(file_);
  file_ = nullptr;
  if (events_ <= 1) std::remove(path_.c_str());  // the version alone
}

absl::Status TensorBoardWriter::Scalars(int64_t step, double wall_time,
                                        const std::vector<Scalar>& scalars) {
  tensorboard::Event event = EventAt(step, wall_time);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : scalars) {
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  return Write(event);
}

absl::Status TensorBoardWriter::Text(int64_t step, double wall_time,
                                     const std::string& tag,
                                     const std::string& text) {
  tensorboard::Event event = EventAt(step, wall_time);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  tensorboard::TensorProto* tensor = v->mutable_tensor();
  tensor->set_dtype(tensorboard::DT_STRING);
  tensor->mutable_tensor_shape();
  tensor->add_string_val(text);
  return Write(event);
}

absl::Status TensorBoardWriter::Restart(int64_t step, double wall_time) {
  tensorboard::Event event = EventAt(step, wall_time);
  event.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  return Write(event);
}

absl::Status TensorBoardWriter::Write(const tensorboard::Event& event) {
  ++events_;
  const std::string record = FrameRecord(event.SerializeAsString());
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return absl::DataLossError(
        absl::StrCat(path_, ": cannot write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace gpt2
