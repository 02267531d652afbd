// TensorBoard event files: the TFRecord framing and masked CRC against values
// worked out independently (a bitwise CRC-32C in Python), the Event bytes
// against the field numbers of TensorBoard's event.proto / summary.proto, and
// the writer's files read back; and the run log (src/train/run_log.h) when
// its files cannot be written.
#include "src/train/tensorboard.h"

#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "proto/tensorboard.pb.h"
#include "src/train/run_log.h"
#include "tests/test_util.h"

namespace gpt2 {
namespace {

std::string Hex(const std::string& bytes) {
  return absl::BytesToHexString(bytes);
}

TEST(TensorBoard, MaskedCrcKnownAnswers) {
  // crc32c("123456789") = 0xe3069283, rotated right by 15, plus 0xa282ead8.
  EXPECT_EQ(MaskedCrc32c("123456789"), 0xc78ab0e5u);
  EXPECT_EQ(MaskedCrc32c(""), 0xa282ead8u);
}

TEST(TensorBoard, FramesARecord) {
  // The empty record: length 0, the masked CRC of eight zero bytes, no data,
  // the masked CRC of nothing; all little-endian.
  EXPECT_EQ(Hex(FrameRecord("")),
            "0000000000000000"
            "29039807"
            "d8ea82a2");
  const std::string framed = FrameRecord("123456789");
  ASSERT_EQ(framed.size(), 8u + 4u + 9u + 4u);
  EXPECT_EQ(Hex(framed.substr(0, 8)), "0900000000000000");
  EXPECT_EQ(framed.substr(12, 9), "123456789");
  EXPECT_EQ(Hex(framed.substr(21)), "e5b08ac7");
}

TEST(TensorBoard, ParsesRecordsAndRefusesDamage) {
  const std::string stream =
      FrameRecord("first") + FrameRecord("") + FrameRecord("third record");
  auto records = ParseRecords(stream);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(*records, (std::vector<std::string>{"first", "", "third record"}));
  // Any flipped byte is caught: in a length, a CRC or the data.
  for (size_t i = 0; i < stream.size(); ++i) {
    std::string bad = stream;
    bad[i] ^= 0x10;
    EXPECT_FALSE(ParseRecords(bad).ok()) << "byte " << i;
  }
  // A stream cut anywhere but between records.
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    if (cut == FrameRecord("first").size() ||
        cut == FrameRecord("first").size() + FrameRecord("").size()) {
      continue;
    }
    auto cut_records = ParseRecords(std::string_view(stream).substr(0, cut));
    EXPECT_FALSE(cut_records.ok()) << "cut at " << cut;
  }
  // A length that claims more than the stream holds, with a valid CRC.
  std::string huge(8, '\xff');
  const uint32_t crc = MaskedCrc32c(huge);
  for (int i = 0; i < 4; ++i) huge.push_back(char((crc >> (8 * i)) & 0xff));
  auto refused = ParseRecords(huge + "data");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("truncated"), std::string::npos)
      << refused.status();
}

TEST(TensorBoard, EventBytesUseTensorBoardsFieldNumbers) {
  // Event: wall_time = 1 (double), step = 2, summary = 5; Summary: value = 1;
  // Value: tag = 1, simple_value = 2 (float); file_version = 3; session_log =
  // 7 with status = 1 (START = 1).
  tensorboard::Event scalar;
  scalar.set_wall_time(1.5);
  scalar.set_step(5);
  auto* value = scalar.mutable_summary()->add_value();
  value->set_tag("a");
  value->set_simple_value(2.5f);
  EXPECT_EQ(Hex(scalar.SerializeAsString()),
            "09000000000000f83f"
            "1005"
            "2a0a"
            "0a08"
            "0a0161"
            "1500002040");
  tensorboard::Event version;
  version.set_wall_time(1.5);
  version.set_file_version("brain.Event:2");
  EXPECT_EQ(Hex(version.SerializeAsString()),
            "09000000000000f83f"
            "1a0d" +
                Hex("brain.Event:2"));
  tensorboard::Event restart;
  restart.set_wall_time(1.5);
  restart.set_step(4);
  restart.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  EXPECT_EQ(Hex(restart.SerializeAsString()),
            "09000000000000f83f"
            "1004"
            "3a020801");
  // Text: Value.tensor = 8 (TensorProto: dtype = 1 DT_STRING = 7,
  // tensor_shape = 2 empty, string_val = 8), Value.metadata = 9
  // (plugin_data = 1: plugin_name = 1 "text").
  tensorboard::Event text;
  text.set_wall_time(1.5);
  text.set_step(2);
  auto* t = text.mutable_summary()->add_value();
  t->set_tag("s");
  t->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  t->mutable_tensor()->set_dtype(tensorboard::DT_STRING);
  t->mutable_tensor()->mutable_tensor_shape();
  t->mutable_tensor()->add_string_val("hi");
  EXPECT_EQ(Hex(text.SerializeAsString()),
            "09000000000000f83f"
            "1002"
            "2a19"
            "0a17"
            "0a0173"
            "4208"
            "0807"
            "1200"
            "42026869"
            "4a08"
            "0a06"
            "0a0474657874");
}

TEST(TensorBoard, WritesAFileTensorBoardReads) {
  const std::filesystem::path dir = testing::MakeTestDir("gpt2_tb_test");
  {
    auto writer = TensorBoardWriter::Open(dir.string());
    ASSERT_TRUE(writer.ok()) << writer.status();
    const std::string name =
        std::filesystem::path(writer->path()).filename().string();
    EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
    ASSERT_TRUE(writer->Restart(3, 100.25).ok());
    ASSERT_TRUE(
        writer->Scalars(3, 100.5, {{"train/loss", 2.75}, {"train/lr", 1e-3}})
            .ok());
    // Flushed as written: readable while the run goes on.
    auto records = ParseRecords(testing::ReadFile(writer->path()));
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), 3u);
    tensorboard::Event first, restart, scalars;
    ASSERT_TRUE(first.ParseFromString((*records)[0]));
    EXPECT_EQ(first.file_version(), "brain.Event:2");
    EXPECT_GT(first.wall_time(), 1.7e9);  // seconds since 1970: after 2023
    ASSERT_TRUE(restart.ParseFromString((*records)[1]));
    EXPECT_EQ(restart.step(), 3);
    EXPECT_EQ(restart.session_log().status(), tensorboard::SessionLog::START);
    ASSERT_TRUE(scalars.ParseFromString((*records)[2]));
    EXPECT_EQ(scalars.step(), 3);
    EXPECT_EQ(scalars.wall_time(), 100.5);
    ASSERT_EQ(scalars.summary().value_size(), 2);
    EXPECT_EQ(scalars.summary().value(0).tag(), "train/loss");
    EXPECT_EQ(scalars.summary().value(0).simple_value(), 2.75f);
    EXPECT_EQ(scalars.summary().value(1).tag(), "train/lr");
    EXPECT_EQ(scalars.summary().value(1).simple_value(), 1e-3f);
    // A second writer in the same folder and second starts a file of its own.
    auto second = TensorBoardWriter::Open(dir.string());
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_NE(second->path(), writer->path());
  }
  EXPECT_FALSE(TensorBoardWriter::Open((dir / "missing").string()).ok());
  std::filesystem::remove_all(dir);
}

// A full disk, made here by a file size limit (writes past it fail with
// EFBIG): the run log's files lose lines, the run goes on. train.log and
// metrics.jsonl each say so once on stderr and again when written again,
// with the count lost; the event file ends with a warning on the log.
TEST(RunLog, GoesOnWhenItsFilesCannotBeWritten) {
  const std::filesystem::path dir = testing::MakeTestDir("gpt2_runlog_full");
  constexpr rlim_t kLimit = 4096;
  for (const char* name : {"train.log", "metrics.jsonl"}) {
    std::ofstream(dir / name) << std::string(kLimit, '#');  // already full
  }
  auto log = RunLog::Open(dir.string(), true, /*append=*/true,
                          /*tensorboard=*/true);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_FALSE(log->tensorboard_path().empty());
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit cap = old;
  cap.rlim_cur = kLimit;
  std::signal(SIGXFSZ, SIG_IGN);  // a failed write, not the signal's death
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &cap), 0);
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  log->Line("first line");
  log->Line("second line");
  StepMetrics m;
  m.loss = 2.5;
  for (m.step = 0; m.step < 100; ++m.step) log->Metrics(m);  // events: ~6 KB
  const bool events_ended = log->tensorboard_path().empty();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);  // room again
  log->Metrics(m);                              // step 100
  log->Line("third line");
  const std::string out = ::testing::internal::GetCapturedStdout();
  const std::string err = ::testing::internal::GetCapturedStderr();
  std::signal(SIGXFSZ, SIG_DFL);

  EXPECT_TRUE(events_ended);
  EXPECT_NE(out.find("first line\nsecond line\n"), std::string::npos) << out;
  EXPECT_NE(out.find("no more TensorBoard events this run"), std::string::npos)
      << out;
  const std::string full = std::strerror(EFBIG);
  const auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = err.find(what); at != std::string::npos;
         at = err.find(what, at + 1))
      ++n;
    return n;
  };
  const std::string d = dir.string();
  EXPECT_EQ(count("warning: " + d + "/train.log: cannot write: " + full), 1u)
      << err;
  EXPECT_EQ(count("warning: " + d +
                  "/metrics.jsonl: cannot write at step 0: " + full),
            1u)
      << err;
  EXPECT_EQ(count("cannot write"), 2u) << err;  // once a stretch each
  // (The resumed run's restart row, then steps 0-99.)
  EXPECT_EQ(count(d + "/metrics.jsonl: written again at step 100; 101 step "
                      "records missing"),
            1u)
      << err;
  // Two lines and the event file's warning went missing.
  EXPECT_EQ(count(d + "/train.log: written again; 3 lines missing"), 1u) << err;
  const std::string metrics = testing::ReadFile(dir / "metrics.jsonl");
  EXPECT_EQ(metrics.substr(0, kLimit), std::string(kLimit, '#'));
  EXPECT_EQ(metrics.substr(kLimit), FormatMetricsJson(m) + "\n");
  EXPECT_EQ(testing::ReadFile(dir / "train.log"),
            std::string(kLimit, '#') + "third line\n");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gpt2
