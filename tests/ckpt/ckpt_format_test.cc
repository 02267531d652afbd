// The checkpoint format: crc32c, header and tensor round trips, records split
// into chunks, every kind of damaged file (each with its own message), the
// run folder's `latest` and pruning, a full disk, and ZeRO-1 re-sharding
// through the flat-range helpers.
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/ckpt/run_files.h"
#include "src/core/crc32c.h"
#include "src/optim/shard_layout.h"
#include "tests/ckpt/ckpt_test_util.h"

namespace gpt2 {
namespace {

using ::gpt2::testing::Exists;
using ::gpt2::testing::HeaderFor;
using ::gpt2::testing::RandomValues;
using ::gpt2::testing::ReadBytes;
using ::gpt2::testing::ScratchDir;
using ::gpt2::testing::TinyShape;
using ::gpt2::testing::WriteBytes;
using ::testing::HasSubstr;

// ---- crc32c
// -------------------------------------------------------------------

TEST(Crc32c, KnownAnswers) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  // RFC 3720 (iSCSI) B.4 vectors.
  std::string zeros(32, '\0'), ones(32, '\xFF'), up(32, '\0');
  for (int i = 0; i < 32; ++i) up[i] = static_cast<char>(i);
  EXPECT_EQ(Crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(up.data(), 32), 0x46DD794Eu);
}

TEST(Crc32c, ExtendMatchesWholeAtEverySplitAndAlignment) {
  const std::vector<float> data = RandomValues<float>(100, 7);
  const char* bytes = reinterpret_cast<const char*>(data.data());
  for (int start = 0; start < 9; ++start) {
    const size_t n = 300;
    const uint32_t whole = Crc32c(bytes + start, n);
    for (size_t split = 0; split <= n; split += 7) {
      EXPECT_EQ(Crc32cExtend(Crc32c(bytes + start, split),
                             bytes + start + split, n - split),
                whole);
    }
  }
}

// ---- Round trips
// ---------------------------------------------------------------

ckpt::Header FullHeader() {
  ckpt::Header h = HeaderFor(TinyShape(), 1234);
  h.mutable_config()->mutable_train()->set_seed(99);
  h.mutable_config()->mutable_distributed()->set_zero_stage(1);
  h.set_format_version(kCheckpointFormatVersion);
  h.set_tokens_seen(int64_t{1} << 40);
  h.set_lr(3.25e-4);
  for (int r = 0; r < 3; ++r) {
    ckpt::LoaderCursor* c = h.add_loader();
    c->set_rank(r);
    c->set_shard(r + 1);
    c->set_position(1000 * r + 17);
    c->set_micro_step(r);
  }
  h.mutable_rng()->set_seed(0xFEDCBA9876543210ull);
  h.mutable_rng()->set_algorithm("xoshiro256**");
  for (uint64_t w : {1ull, 2ull, ~0ull, 4ull}) h.mutable_rng()->add_words(w);
  h.set_world_size(3);
  h.set_zero_stage(1);
  h.set_shard_size(800);
  h.set_param_dtype(ckpt::DTYPE_F32);
  h.set_optimizer_dtype(ckpt::DTYPE_F32);
  h.set_has_optimizer_state(true);
  h.set_has_master_weights(true);
  h.set_num_params(2400);
  h.set_created_by("ckpt_format_test");
  h.set_created_unix_time(1700000000);
  h.set_optimizer_steps(41);
  h.set_train_tokens(305257);
  return h;
}

// Fails if a message has a field this test does not set, so a field added to
// the proto without a round-trip check is caught.
void ExpectEveryFieldSet(const google::protobuf::Message& m) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) {
      EXPECT_GT(r->FieldSize(m, f), 0) << d->name() << "." << f->name();
      if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE)
        ExpectEveryFieldSet(r->GetRepeatedMessage(m, f, 0));
    } else {
      EXPECT_TRUE(r->HasField(m, f)) << d->name() << "." << f->name();
      if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE &&
          f->message_type()->file() == d->file())
        ExpectEveryFieldSet(r->GetMessage(m, f));
    }
  }
}

TEST(CheckpointFormat, EveryHeaderFieldRoundTrips) {
  ScratchDir dir;
  const ckpt::Header header = FullHeader();
  ExpectEveryFieldSet(header);
  const std::string path = dir.File("h.ckpt");
  auto writer = CheckpointWriter::Create(path, header);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const float x = 1.5f;
  ASSERT_TRUE(writer->WriteTensor("x", {1}, DType::kF32, &x).ok());
  ASSERT_TRUE(writer->Commit().ok());
  EXPECT_FALSE(Exists(path + ".tmp"));
  auto reader = CheckpointReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->format_version(), kCheckpointFormatVersion);
  std::string why;
  google::protobuf::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&why);
  EXPECT_TRUE(differ.Compare(header, reader->header())) << why;
}

TEST(CheckpointFormat, ChunkedRecordsReadBackBitExactly) {
  ScratchDir dir;
  const std::string path = dir.File("chunks.ckpt");
  const std::vector<float> f32 = RandomValues<float>(1000, 1);
  const std::vector<double> f64 = RandomValues<double>(777, 2);
  const std::vector<int32_t> i32 = {1, -2, 3, 2147483647};
  CheckpointWriterOptions options;
  options.max_record_bytes = 100;  // 25 floats, 12 doubles per record
  auto writer =
      CheckpointWriter::Create(path, HeaderFor(TinyShape(), 5), options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(
      writer->WriteTensor("a/f32", {10, 100}, DType::kF32, f32.data()).ok());
  // f64 in out-of-order chunks, interleaved with an i32 tensor.
  ASSERT_TRUE(
      writer
          ->WriteChunk("b/f64", {777}, DType::kF64, 500, f64.data() + 500, 277)
          .ok());
  ASSERT_TRUE(writer->WriteTensor("c/i32", {4}, DType::kI32, i32.data()).ok());
  ASSERT_TRUE(
      writer->WriteChunk("b/f64", {777}, DType::kF64, 0, f64.data(), 500).ok());
  ASSERT_TRUE(writer->WriteTensor("empty", {0, 3}, DType::kF32, nullptr).ok());
  ASSERT_TRUE(writer->Commit().ok());

  auto reader = CheckpointReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ(reader->tensors().size(), 4u);
  EXPECT_EQ(reader->Find("a/f32")->records.size(), 40u);
  EXPECT_EQ(reader->Find("b/f64")->shape, std::vector<int64_t>{777});
  EXPECT_GT(reader->records().size(), 100u);
  ASSERT_TRUE(reader->VerifyAll().ok());

  std::vector<float> got32(1000);
  ASSERT_TRUE(
      reader->ReadTensor("a/f32", DType::kF32, got32.data(), 1000).ok());
  EXPECT_EQ(std::memcmp(got32.data(), f32.data(), 4000), 0);
  std::vector<double> got64(777);
  ASSERT_TRUE(reader->ReadTensor("b/f64", DType::kF64, got64.data(), 777).ok());
  EXPECT_EQ(std::memcmp(got64.data(), f64.data(), 777 * 8), 0);
  std::vector<int32_t> goti(4);
  ASSERT_TRUE(reader->ReadTensor("c/i32", DType::kI32, goti.data(), 4).ok());
  EXPECT_EQ(goti, i32);
  EXPECT_EQ(reader->Find("empty")->numel, 0);

  // Conversions: f32 -> f64 exact, f64 -> f32 rounds, bf16 round trip.
  std::vector<double> widened(1000);
  ASSERT_TRUE(
      reader->ReadTensor("a/f32", DType::kF64, widened.data(), 1000).ok());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(widened[i], double{f32[i]});
  std::vector<float> narrowed(777);
  ASSERT_TRUE(
      reader->ReadTensor("b/f64", DType::kF32, narrowed.data(), 777).ok());
  for (int i = 0; i < 777; ++i)
    ASSERT_EQ(narrowed[i], static_cast<float>(f64[i]));
  EXPECT_THAT(
      reader->ReadTensor("c/i32", DType::kF32, narrowed.data(), 4).message(),
      HasSubstr("cannot read it as f32"));
  EXPECT_THAT(
      reader->ReadTensor("a/f32", DType::kF32, got32.data(), 999).message(),
      HasSubstr("has 1000 elements, the caller expects 999"));

  // Slices crossing record boundaries, in and out of order.
  for (auto [offset, count] : std::vector<std::pair<int, int>>{
           {0, 1}, {24, 2}, {13, 400}, {999, 1}, {300, 0}, {0, 1000}}) {
    std::vector<float> slice(count);
    ASSERT_TRUE(
        reader
            ->ReadTensorSlice("a/f32", DType::kF32, offset, count, slice.data())
            .ok());
    for (int i = 0; i < count; ++i) ASSERT_EQ(slice[i], f32[offset + i]);
  }
  std::vector<float> slice(2);
  EXPECT_THAT(
      reader->ReadTensorSlice("a/f32", DType::kF32, 999, 2, slice.data())
          .message(),
      HasSubstr("slice [999, 1001) is outside its 1000 elements"));
}

TEST(CheckpointFormat, Bf16ConversionRoundsToNearestEven) {
  const float in[] = {1.0f, -2.5f, 1.00390625f /* halfway: to even */,
                      1.01171875f /* halfway: up */, 3.0e38f};
  uint16_t bf16[5];
  ASSERT_TRUE(ConvertElements(in, DType::kF32, bf16, DType::kBF16, 5).ok());
  EXPECT_EQ(bf16[0], 0x3F80);
  EXPECT_EQ(bf16[1], 0xC020);
  EXPECT_EQ(bf16[2], 0x3F80);
  EXPECT_EQ(bf16[3], 0x3F82);
  float back[5];
  ASSERT_TRUE(ConvertElements(bf16, DType::kBF16, back, DType::kF32, 5).ok());
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -2.5f);
  EXPECT_NEAR(back[4], 3.0e38f, 3.0e38f / 128);
}

TEST(CheckpointFormat, WriterRejectsIncompleteAndOverlappingTensors) {
  ScratchDir dir;
  const std::vector<float> v(10, 1.0f);
  {
    auto w = CheckpointWriter::Create(dir.File("a.ckpt"), ckpt::Header());
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->WriteChunk("t", {10}, DType::kF32, 0, v.data(), 4).ok());
    ASSERT_TRUE(w->WriteChunk("t", {10}, DType::kF32, 6, v.data(), 4).ok());
    EXPECT_THAT(w->Commit().message(),
                HasSubstr("tensor 't' is incomplete: element 4 of 10"));
  }
  {
    auto w = CheckpointWriter::Create(dir.File("b.ckpt"), ckpt::Header());
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->WriteChunk("t", {10}, DType::kF32, 0, v.data(), 6).ok());
    ASSERT_TRUE(w->WriteChunk("t", {10}, DType::kF32, 4, v.data(), 6).ok());
    EXPECT_THAT(w->Commit().message(), HasSubstr("[4, 6) were written twice"));
  }
  {
    auto w = CheckpointWriter::Create(dir.File("c.ckpt"), ckpt::Header());
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->WriteChunk("t", {10}, DType::kF32, 0, v.data(), 5).ok());
    EXPECT_THAT(
        w->WriteChunk("t", {2, 5}, DType::kF32, 5, v.data(), 5).message(),
        HasSubstr("but an earlier chunk had (10,)"));
    EXPECT_THAT(w->WriteChunk("u", {3}, DType::kF32, 2, v.data(), 2).message(),
                HasSubstr("but an earlier chunk"));  // sticky failure
  }
  // Nothing was committed, and no temp file is left.
  for (const char* name : {"a.ckpt", "b.ckpt", "c.ckpt"}) {
    EXPECT_FALSE(Exists(dir.File(name))) << name;
    EXPECT_FALSE(Exists(dir.File(std::string(name) + ".tmp"))) << name;
  }
}

TEST(CheckpointFormat, DestructorWithoutCommitRemovesTempFile) {
  ScratchDir dir;
  const std::string path = dir.File("gone.ckpt");
  {
    auto w = CheckpointWriter::Create(path, ckpt::Header());
    ASSERT_TRUE(w.ok());
    const float x = 1;
    ASSERT_TRUE(w->WriteTensor("x", {1}, DType::kF32, &x).ok());
    EXPECT_TRUE(Exists(path + ".tmp"));
  }
  EXPECT_FALSE(Exists(path + ".tmp"));
  EXPECT_FALSE(Exists(path));
}

// ---- Damaged files
// ---------------------------------------------------------------

// A small valid checkpoint (three tensors, several records each) and its
// bytes.
struct Sample {
  std::string path;
  std::string bytes;
  std::vector<RecordInfo> records;
  int64_t header_bytes = 0;
};

Sample WriteSample(const ScratchDir& dir) {
  Sample s;
  s.path = dir.File("sample.ckpt");
  CheckpointWriterOptions options;
  options.max_record_bytes = 64;
  auto w = CheckpointWriter::Create(s.path, HeaderFor(TinyShape(), 7), options);
  EXPECT_TRUE(w.ok()) << w.status();
  const std::vector<float> a = RandomValues<float>(40, 3);
  const std::vector<double> b = RandomValues<double>(20, 4);
  EXPECT_TRUE(w->WriteTensor("alpha", {4, 10}, DType::kF32, a.data()).ok());
  EXPECT_TRUE(w->WriteTensor("beta", {20}, DType::kF64, b.data()).ok());
  EXPECT_TRUE(w->WriteTensor("gamma", {2}, DType::kF32, a.data()).ok());
  EXPECT_TRUE(w->Commit().ok());
  s.bytes = ReadBytes(s.path);
  auto r = CheckpointReader::Open(s.path);
  EXPECT_TRUE(r.ok()) << r.status();
  s.records = r->records();
  s.header_bytes = r->header_bytes();
  return s;
}

// Opens (and if that works verifies) `bytes` written to a file; returns the
// first error.
absl::Status OpenAndVerify(const ScratchDir& dir, const std::string& bytes) {
  const std::string path = dir.File("damaged.ckpt");
  WriteBytes(path, bytes);
  auto reader = CheckpointReader::Open(path);
  if (!reader.ok()) return reader.status();
  return reader->VerifyAll();
}

TEST(CheckpointDamage, EveryTruncationIsDetected) {
  ScratchDir dir;
  const Sample s = WriteSample(dir);
  for (size_t n = 0; n < s.bytes.size(); ++n) {
    const absl::Status status = OpenAndVerify(dir, s.bytes.substr(0, n));
    ASSERT_FALSE(status.ok()) << "truncated to " << n << " bytes";
    ASSERT_THAT(status.message(), HasSubstr("damaged.ckpt"));
  }
  // Representative messages.
  EXPECT_THAT(OpenAndVerify(dir, s.bytes.substr(0, 10)).message(),
              HasSubstr("too short to be a checkpoint (10 bytes)"));
  EXPECT_THAT(
      OpenAndVerify(dir, s.bytes.substr(0, s.header_bytes - 2)).message(),
      HasSubstr("header length"));
  EXPECT_THAT(
      OpenAndVerify(dir, s.bytes.substr(0, s.records[3].file_offset)).message(),
      HasSubstr("no trailer after 3 records"));
  EXPECT_THAT(
      OpenAndVerify(dir, s.bytes.substr(0, s.records[3].data_offset + 1))
          .message(),
      HasSubstr("record 3 at byte " + std::to_string(s.records[3].file_offset) +
                ": record length"));
  EXPECT_THAT(
      OpenAndVerify(dir, s.bytes.substr(0, s.records[3].file_offset + 5))
          .message(),
      HasSubstr("ends inside the record's frame"));
  EXPECT_THAT(OpenAndVerify(dir, s.bytes + "x").message(),
              HasSubstr("1 unexpected bytes after the trailer"));
}

TEST(CheckpointDamage, FlippedBytesNameTheirPlace) {
  ScratchDir dir;
  const Sample s = WriteSample(dir);
  auto flipped = [&](int64_t at) {
    std::string b = s.bytes;
    b[at] ^= 0x10;
    return b;
  };
  EXPECT_THAT(OpenAndVerify(dir, flipped(30)).message(),
              HasSubstr("header crc32c mismatch"));
  // Data of record 4: opens (metadata is sound), fails on reading.
  const RecordInfo& r4 = s.records[4];
  const std::string bad_data = flipped(r4.data_offset + 3);
  EXPECT_THAT(
      OpenAndVerify(dir, bad_data).message(),
      HasSubstr("record 4 (tensor '" + r4.name + "', elements [" +
                std::to_string(r4.elem_offset) + ", " +
                std::to_string(r4.elem_offset + r4.count) + ")) at byte " +
                std::to_string(r4.file_offset) + ": data crc32c mismatch"));
  {
    WriteBytes(dir.File("damaged.ckpt"), bad_data);
    auto reader = CheckpointReader::Open(dir.File("damaged.ckpt"));
    ASSERT_TRUE(reader.ok());
    std::vector<double> out(reader->Find(r4.name)->numel);
    EXPECT_THAT(reader
                    ->ReadTensor(r4.name, DType::kF64, out.data(),
                                 static_cast<int64_t>(out.size()))
                    .message(),
                HasSubstr("data crc32c mismatch"));
    // Other tensors still read.
    const std::string other = r4.name == "alpha" ? "gamma" : "alpha";
    std::vector<double> ok(reader->Find(other)->numel);
    EXPECT_TRUE(reader
                    ->ReadTensor(other, DType::kF64, ok.data(),
                                 static_cast<int64_t>(ok.size()))
                    .ok());
  }
  // The tensor name inside record 2's head.
  EXPECT_THAT(
      OpenAndVerify(dir, flipped(s.records[2].file_offset + 18)).message(),
      HasSubstr("record 2 at byte " + std::to_string(s.records[2].file_offset) +
                ": record header crc32c mismatch"));
  // The record's length field: its high bytes give an absurd length, its low
  // byte one that runs into the next record.
  EXPECT_THAT(
      OpenAndVerify(dir, flipped(s.records[1].file_offset + 10)).message(),
      HasSubstr("exceeds the format's limit"));
  EXPECT_THAT(
      OpenAndVerify(dir, flipped(s.records[1].file_offset + 4)).message(),
      HasSubstr("record 1 at byte " +
                std::to_string(s.records[1].file_offset)));
  // The record marker.
  EXPECT_THAT(
      OpenAndVerify(dir, flipped(s.records[5].file_offset)).message(),
      HasSubstr("record 5 at byte " + std::to_string(s.records[5].file_offset) +
                ": bad record marker"));
  // The trailer.
  EXPECT_THAT(OpenAndVerify(dir, flipped(s.bytes.size() - 2)).message(),
              HasSubstr("trailer at byte"));
}

TEST(CheckpointDamage, DroppedOrDuplicatedRecordsAreDetected) {
  ScratchDir dir;
  const Sample s = WriteSample(dir);
  const RecordInfo& r = s.records[1];
  const std::string frame = s.bytes.substr(r.file_offset, r.frame_bytes);
  std::string dropped = s.bytes;
  dropped.erase(r.file_offset, r.frame_bytes);
  EXPECT_THAT(OpenAndVerify(dir, dropped).message(),
              HasSubstr("comes next (records overlap, or some are missing)"));
  std::string doubled = s.bytes;
  doubled.insert(r.file_offset, frame);
  EXPECT_THAT(OpenAndVerify(dir, doubled).message(),
              HasSubstr("records overlap"));
  // Dropping a tensor's only record: the trailer's counts catch it.
  const RecordInfo& last = s.records.back();
  ASSERT_EQ(last.name, "gamma");
  std::string no_gamma = s.bytes;
  no_gamma.erase(last.file_offset, last.frame_bytes);
  EXPECT_THAT(OpenAndVerify(dir, no_gamma).message(),
              HasSubstr("records lost or spliced"));
}

TEST(CheckpointDamage, WrongMagicAndNewerVersion) {
  ScratchDir dir;
  const Sample s = WriteSample(dir);
  std::string magic = s.bytes;
  magic[0] = 'X';
  EXPECT_THAT(OpenAndVerify(dir, magic).message(),
              HasSubstr("not a gpt2_ddp checkpoint (bad magic"));
  std::string llmc = s.bytes;
  const int32_t llmc_magic = 20240326;
  std::memcpy(llmc.data(), &llmc_magic, 4);
  EXPECT_THAT(OpenAndVerify(dir, llmc).message(),
              HasSubstr("llm.c model file"));
  std::string newer = s.bytes;
  newer[8] = 2;
  EXPECT_THAT(OpenAndVerify(dir, newer).message(),
              HasSubstr("format version 2 is newer than this build's 1"));
  EXPECT_THAT(CheckpointReader::Open(dir.File("nope.ckpt")).status().message(),
              HasSubstr("nope.ckpt: cannot open checkpoint"));
}

// ---- The model's tensors
// -----------------------------------------------------------

TEST(ModelCheckpoint, SaveLoadWithOptimizerState) {
  ScratchDir dir;
  const std::vector<ParamSpec> list = BuildParamList(TinyShape());
  const int64_t total = TotalParams(list);
  const auto params = RandomValues<double>(total, 1);
  const auto m = RandomValues<double>(total, 2, 1e-3);
  const auto v = RandomValues<double>(total, 3, 1e-6);
  ModelStateView state{HostView::Of(params), HostView::Of(m), HostView::Of(v)};
  const std::string path = dir.File("model.ckpt");
  ASSERT_TRUE(
      SaveModelCheckpoint(path, HeaderFor(TinyShape(), 10), list, state).ok());
  auto loaded = LoadModelCheckpoint(path, list, true);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->params, params);
  EXPECT_EQ(loaded->adam_m, m);
  EXPECT_EQ(loaded->adam_v, v);
  EXPECT_TRUE(loaded->header.has_optimizer_state());
  EXPECT_EQ(loaded->header.param_dtype(), ckpt::DTYPE_F64);
  EXPECT_EQ(loaded->header.num_params(), total);
  EXPECT_EQ(loaded->header.step(), 10);

  auto reader = CheckpointReader::Open(path);
  ASSERT_TRUE(reader.ok());
  ASSERT_EQ(reader->tensors().size(), 3 * list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    EXPECT_EQ(reader->tensors()[i].name, list[i].name);
    EXPECT_EQ(reader->tensors()[i].shape, list[i].shape);
    EXPECT_EQ(reader->tensors()[list.size() + i].name,
              "adamw.m/" + list[i].name);
    EXPECT_EQ(reader->tensors()[2 * list.size() + i].name,
              "adamw.v/" + list[i].name);
  }
}

TEST(ModelCheckpoint, MissingTensorAndShapeMismatchAreNamed) {
  ScratchDir dir;
  const std::vector<ParamSpec> list = BuildParamList(TinyShape());
  const auto params = RandomValues<float>(TotalParams(list), 1);
  const std::string path = dir.File("w.ckpt");
  ASSERT_TRUE(SaveModelCheckpoint(path, HeaderFor(TinyShape(), 1), list,
                                  {HostView::Of(params)})
                  .ok());
  // Weights only: asking for optimizer state names what is missing.
  EXPECT_THAT(LoadModelCheckpoint(path, list, true).status().message(),
              HasSubstr("tensor 'adamw.m/wte' is missing; the config needs it "
                        "with shape (64, 8) (the checkpoint holds weights "
                        "only"));
  // A config with wider layers.
  ModelShape wide = TinyShape();
  wide.channels = 16;
  EXPECT_THAT(
      LoadModelCheckpoint(path, BuildParamList(wide), false).status().message(),
      HasSubstr("tensor 'wte' has shape (64, 8) in the checkpoint but "
                "(64, 16) in the config"));
  ModelShape deeper = TinyShape();
  deeper.num_layers = 3;
  EXPECT_THAT(LoadModelCheckpoint(path, BuildParamList(deeper), false)
                  .status()
                  .message(),
              HasSubstr("tensor 'ln1w' has shape (2, 8) in the checkpoint but "
                        "(3, 8) in the config"));
  // A file without one tensor of the list.
  const std::string partial = dir.File("partial.ckpt");
  {
    auto w = CheckpointWriter::Create(partial, HeaderFor(TinyShape(), 1));
    ASSERT_TRUE(w.ok());
    for (const ParamSpec& p : list) {
      if (p.name == "fcb") continue;
      ASSERT_TRUE(
          w->WriteTensor(p.name, p.shape, DType::kF32, params.data() + p.offset)
              .ok());
    }
    ASSERT_TRUE(w->Commit().ok());
  }
  EXPECT_THAT(LoadModelCheckpoint(partial, list, false).status().message(),
              HasSubstr("partial.ckpt: tensor 'fcb' is missing; the config "
                        "needs it with shape (2, 32)"));
}

// Rank 0 of a ZeRO-1 run at world 7 writes m and v shard by shard as it
// gathers them (padding included); ranks of a resumed run at world 2 or 4
// read their shards back.
TEST(ModelCheckpoint, Zero1ShardsWriteAndReshardAtAnyWorldSize) {
  ScratchDir dir;
  const std::vector<ParamSpec> list = BuildParamList(TinyShape());
  const int64_t total = TotalParams(list);
  const auto params = RandomValues<float>(total, 1);
  const auto m = RandomValues<float>(total, 2);
  const auto v = RandomValues<float>(total, 3);
  const std::string path = dir.File("zero.ckpt");
  const int save_world = 7;  // shards of 352: the last is padded
  const ShardLayout save = ShardLayout::Make(total, 0, save_world);
  ckpt::Header header = HeaderFor(TinyShape(), 3);
  header.set_world_size(save_world);
  header.set_zero_stage(1);
  header.set_shard_size(save.shard_size);
  header.set_has_optimizer_state(true);
  CheckpointWriterOptions options;
  options.max_record_bytes = 256;
  auto w = CheckpointWriter::Create(path, header, options);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(WriteFlatRange(&*w, list, TensorFamily::kParams, DType::kF32, 0,
                             params.data(), total)
                  .ok());
  for (TensorFamily family : {TensorFamily::kAdamM, TensorFamily::kAdamV}) {
    const auto& full = family == TensorFamily::kAdamM ? m : v;
    for (int r = 0; r < save_world; ++r) {
      // The shard as its rank holds it: padded to shard_size with zeros.
      std::vector<float> shard(save.shard_size, 0.0f);
      const int64_t begin = r * save.shard_size;
      const int64_t n = std::max<int64_t>(
          0, std::min(total, begin + save.shard_size) - begin);
      std::copy(full.begin() + begin, full.begin() + begin + n, shard.begin());
      ASSERT_TRUE(WriteFlatRange(&*w, list, family, DType::kF32, begin,
                                 shard.data(), save.shard_size)
                      .ok());
    }
  }
  ASSERT_TRUE(w->Commit().ok());

  auto reader = CheckpointReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE(reader->VerifyAll().ok());
  for (int world : {1, 2, 4}) {
    for (int r = 0; r < world; ++r) {
      const ShardLayout layout = ShardLayout::Make(total, r, world);
      std::vector<float> shard(layout.shard_size, -1.0f);
      ASSERT_TRUE(ReadFlatRange(&*reader, list, TensorFamily::kAdamV,
                                DType::kF32, r * layout.shard_size,
                                layout.shard_size, shard.data())
                      .ok());
      for (int64_t i = 0; i < layout.shard_size; ++i) {
        const int64_t flat = r * layout.shard_size + i;
        ASSERT_EQ(shard[i], flat < total ? v[flat] : 0.0f)
            << "world " << world << " rank " << r << " element " << i;
      }
    }
  }
  auto loaded = LoadModelCheckpoint(path, list, true);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (int64_t i = 0; i < total; ++i) {
    ASSERT_EQ(loaded->adam_m[i], double{m[i]});
    ASSERT_EQ(loaded->params[i], double{params[i]});
  }
}

// ---- The run folder
// ------------------------------------------------------------------

absl::Status SaveStep(const std::string& run_dir, int64_t step,
                      const std::vector<float>& params,
                      const CheckpointWriterOptions& options = {}) {
  const std::vector<ParamSpec> list = BuildParamList(TinyShape());
  GPT2_RETURN_IF_ERROR(SaveModelCheckpoint(CheckpointPath(run_dir, step),
                                           HeaderFor(TinyShape(), step), list,
                                           {HostView::Of(params)}, options));
  return UpdateLatest(run_dir, CheckpointFileName(step));
}

TEST(RunFiles, NamesLatestAndResume) {
  ScratchDir dir;
  EXPECT_EQ(CheckpointFileName(1000), "step_00001000.ckpt");
  EXPECT_EQ(CheckpointFileName(123456789), "step_123456789.ckpt");
  EXPECT_EQ(CheckpointPath("runs/a", 5),
            "runs/a/checkpoints/step_00000005.ckpt");
  EXPECT_EQ(CheckpointStep("step_00001000.ckpt"), 1000);
  EXPECT_EQ(CheckpointStep("step_00001000.ckpt.tmp"), -1);
  EXPECT_EQ(CheckpointStep("step_.ckpt"), -1);
  EXPECT_EQ(CheckpointStep("latest"), -1);

  const std::string run = dir.File("run");
  auto missing = ResolveResume("latest", run);
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(),
              HasSubstr("checkpoints/latest: no such file: run " + run +
                        " has no complete checkpoint to resume from"));
  EXPECT_THAT(ResolveResume(dir.File("nope.ckpt"), run).status().message(),
              HasSubstr("nope.ckpt: no such checkpoint file"));

  const auto params =
      RandomValues<float>(TotalParams(BuildParamList(TinyShape())), 1);
  ASSERT_TRUE(SaveStep(run, 100, params).ok());
  auto latest = ResolveResume("latest", run);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, CheckpointPath(run, 100));
  EXPECT_EQ(ReadBytes(CheckpointDir(run) + "/latest"), "step_00000100.ckpt\n");
  auto direct = ResolveResume(CheckpointPath(run, 100), run);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(*direct, CheckpointPath(run, 100));
  // The pointer file itself, as a user listing checkpoints/ might pass it.
  auto pointer = ResolveResume(CheckpointDir(run) + "/latest", "elsewhere");
  ASSERT_TRUE(pointer.ok()) << pointer.status();
  EXPECT_EQ(*pointer, CheckpointPath(run, 100));

  EXPECT_THAT(UpdateLatest(run, "step_00000200.ckpt").message(),
              HasSubstr("no such checkpoint; latest not updated"));
  EXPECT_THAT(UpdateLatest(run, "../x").message(),
              HasSubstr("latest must name a file in"));
  WriteBytes(CheckpointDir(run) + "/latest", "../../etc/passwd\n");
  EXPECT_THAT(ResolveResume("latest", run).status().message(),
              HasSubstr("does not name a checkpoint file"));
  WriteBytes(CheckpointDir(run) + "/latest", "step_00000300.ckpt\n");
  EXPECT_THAT(ResolveResume("latest", run).status().message(),
              HasSubstr("names step_00000300.ckpt, which does not exist"));
}

// A tool's --checkpoint: a file, a run folder or its checkpoints folder.
TEST(RunFiles, ResolvesCheckpointFilesAndFolders) {
  ScratchDir dir;
  const std::string run = dir.File("run");
  const auto params =
      RandomValues<float>(TotalParams(BuildParamList(TinyShape())), 1);
  ASSERT_TRUE(SaveStep(run, 100, params).ok());
  ASSERT_TRUE(SaveStep(run, 200, params).ok());
  for (const std::string& what :
       {run, run + "/", CheckpointDir(run), CheckpointDir(run) + "/"}) {
    auto path = ResolveCheckpoint(what);
    ASSERT_TRUE(path.ok()) << what << ": " << path.status();
    EXPECT_EQ(*path, CheckpointPath(run, 200)) << what;
  }
  auto file = ResolveCheckpoint(CheckpointPath(run, 100));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*file, CheckpointPath(run, 100));
  // The `latest` pointer file itself (19 bytes of text, no checkpoint).
  auto pointer = ResolveCheckpoint(CheckpointDir(run) + "/latest");
  ASSERT_TRUE(pointer.ok()) << pointer.status();
  EXPECT_EQ(*pointer, CheckpointPath(run, 200));
  WriteBytes(dir.File("latest"), "step_00000007.ckpt\n");  // names nothing
  EXPECT_THAT(ResolveCheckpoint(dir.File("latest")).status().message(),
              HasSubstr("names step_00000007.ckpt, which does not exist"));
  auto missing = ResolveCheckpoint(dir.File("nope.ckpt"));  // Open refuses it
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(*missing, dir.File("nope.ckpt"));
  EXPECT_THAT(CheckpointReader::Open(*missing).status().message(),
              HasSubstr("nope.ckpt: cannot open checkpoint"));
  auto opened = CheckpointReader::Open(*ResolveCheckpoint(run));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->header().step(), 200);
  EXPECT_THAT(ResolveCheckpoint(dir.path()).status().message(),
              HasSubstr("give a checkpoint file, a run folder, or its "
                        "checkpoints folder"));
}

TEST(RunFiles, PruneKeepsNewestAndLatest) {
  ScratchDir dir;
  const std::string run = dir.File("run");
  const auto params =
      RandomValues<float>(TotalParams(BuildParamList(TinyShape())), 1);
  for (int64_t step : {10, 20, 30})
    ASSERT_TRUE(SaveStep(run, step, params).ok());
  // Step 40 completes but `latest` is not moved (as if killed in between),
  // and a dead save of step 5 left its temp file.
  ASSERT_TRUE(
      SaveModelCheckpoint(CheckpointPath(run, 40), HeaderFor(TinyShape(), 40),
                          BuildParamList(TinyShape()), {HostView::Of(params)})
          .ok());
  WriteBytes(CheckpointPath(run, 5) + ".tmp", "partial");
  WriteBytes(CheckpointPath(run, 50) + ".tmp", "in progress");
  ASSERT_TRUE(PruneCheckpoints(run, 1).ok());
  EXPECT_FALSE(Exists(CheckpointPath(run, 10)));
  EXPECT_FALSE(Exists(CheckpointPath(run, 20)));
  EXPECT_TRUE(Exists(CheckpointPath(run, 30)));  // latest
  EXPECT_TRUE(Exists(CheckpointPath(run, 40)));  // newest
  EXPECT_FALSE(Exists(CheckpointPath(run, 5) + ".tmp"));
  EXPECT_TRUE(Exists(CheckpointPath(run, 50) + ".tmp"));
  // A broken `latest` target: nothing is removed.
  WriteBytes(CheckpointPath(run, 30), "garbage");
  EXPECT_THAT(PruneCheckpoints(run, 1).message(),
              HasSubstr("too short to be a checkpoint"));
  EXPECT_TRUE(Exists(CheckpointPath(run, 40)));
  // keep_last < 1 keeps everything.
  ASSERT_TRUE(SaveStep(run, 60, params).ok());
  ASSERT_TRUE(PruneCheckpoints(run, 0).ok());
  EXPECT_TRUE(Exists(CheckpointPath(run, 30)));
  EXPECT_TRUE(Exists(CheckpointPath(run, 40)));
}

// Checkpoints of later steps than `latest` (another run's, in a reused
// folder) are neither removed nor counted: this run keeps its newest
// keep_last (it kept only `latest`, beside the other run's newest).
TEST(RunFiles, PruneCountsOnlyStepsUpToLatest) {
  ScratchDir dir;
  const std::string run = dir.File("run");
  const auto params =
      RandomValues<float>(TotalParams(BuildParamList(TinyShape())), 1);
  for (int64_t step : {80, 100, 10, 20, 30})  // `latest`: 30
    ASSERT_TRUE(SaveStep(run, step, params).ok());
  ASSERT_TRUE(PruneCheckpoints(run, 2).ok());
  EXPECT_FALSE(Exists(CheckpointPath(run, 10)));
  EXPECT_TRUE(Exists(CheckpointPath(run, 20)));
  EXPECT_TRUE(Exists(CheckpointPath(run, 30)));
  EXPECT_TRUE(Exists(CheckpointPath(run, 80)));
  EXPECT_TRUE(Exists(CheckpointPath(run, 100)));
}

// ---- A full disk
// -----------------------------------------------------------------------

void ExpectPreviousCheckpointIntact(const std::string& run,
                                    const std::vector<float>& params) {
  auto latest = ResolveResume("latest", run);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, CheckpointPath(run, 1));
  auto reader = CheckpointReader::Open(*latest);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE(reader->VerifyAll().ok());
  auto loaded =
      LoadModelCheckpoint(*latest, BuildParamList(TinyShape()), false);
  ASSERT_TRUE(loaded.ok());
  for (size_t i = 0; i < params.size(); ++i)
    ASSERT_EQ(loaded->params[i], double{params[i]});
  EXPECT_FALSE(Exists(CheckpointPath(run, 2)));
  EXPECT_FALSE(Exists(CheckpointPath(run, 2) + ".tmp"));
}

TEST(FullDisk, InjectedWriteFailuresLeaveThePreviousCheckpoint) {
  ScratchDir dir;
  const std::string run = dir.File("run");
  const auto params =
      RandomValues<float>(TotalParams(BuildParamList(TinyShape())), 1);
  ASSERT_TRUE(SaveStep(run, 1, params).ok());
  const auto newer = RandomValues<float>(params.size(), 2);
  // Fail inside the preamble, the header, a record head, data, the trailer.
  const int64_t full_size =
      static_cast<int64_t>(ReadBytes(CheckpointPath(run, 1)).size());
  for (int64_t fail_at : {int64_t{0}, int64_t{5}, int64_t{60}, int64_t{200},
                          full_size / 2, full_size - 3}) {
    CheckpointWriterOptions options;
    options.fail_after_bytes = fail_at;
    options.max_record_bytes = 512;
    const absl::Status status = SaveStep(run, 2, newer, options);
    EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
    EXPECT_THAT(status.message(), HasSubstr("No space left on device"));
    EXPECT_THAT(status.message(), HasSubstr("step_00000002.ckpt.tmp"));
    ExpectPreviousCheckpointIntact(run, params);
  }
}

// The same on a real 64 KiB tmpfs, when this process may mount one (root in a
// VM or container with CAP_SYS_ADMIN); elsewhere it skips, saying why.
TEST(FullDisk, RealTinyFilesystem) {
  ScratchDir dir;
  const std::string mount_point = dir.File("tiny");
  std::filesystem::create_directories(mount_point);
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              "size=64k") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "); the injected-failure test covers the write path";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  const std::string run = mount_point + "/run";
  const std::vector<ParamSpec> list = BuildParamList(TinyShape());
  const auto params = RandomValues<float>(TotalParams(list), 1);
  ASSERT_TRUE(SaveStep(run, 1, params).ok());  // ~10 KiB fits
  // 32 KiB of doubles with m and v do not fit next to it.
  const auto big = RandomValues<double>(TotalParams(list), 2);
  const absl::Status status = SaveModelCheckpoint(
      CheckpointPath(run, 2), HeaderFor(TinyShape(), 2), list,
      {HostView::Of(big), HostView::Of(big), HostView::Of(big)});
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("No space left on device"));
  ExpectPreviousCheckpointIntact(run, params);
}

// ---- Killed mid-save
// ----------------------------------------------------------------

struct PipeArg {
  int fd;
};

void SignalRecord(void* arg, int64_t) {
  const char c = 'r';
  (void)!::write(static_cast<PipeArg*>(arg)->fd, &c, 1);
  ::usleep(200);
}

TEST(KillMidSave, LatestStillNamesACompleteCheckpoint) {
  ScratchDir dir;
  const std::string run = dir.File("run");
  const std::vector<ParamSpec> list = BuildParamList(TinyShape());
  const auto params = RandomValues<float>(TotalParams(list), 1);
  ASSERT_TRUE(SaveStep(run, 1, params).ok());
  for (int kill_after : {1, 17, 150}) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      PipeArg arg{fds[1]};
      CheckpointWriterOptions options;
      options.max_record_bytes = 16;  // ~600 records, 200 us apart
      options.after_record = SignalRecord;
      options.after_record_arg = &arg;
      const auto newer = RandomValues<float>(params.size(), 2);
      if (SaveStep(run, 2, newer, options).ok()) ::_exit(0);
      ::_exit(3);
    }
    ::close(fds[1]);
    char buffer[256];
    int seen = 0;
    while (seen < kill_after) {
      const ssize_t n = ::read(
          fds[0], buffer, std::min<int>(sizeof(buffer), kill_after - seen));
      ASSERT_GT(n, 0) << "the child ended before record " << kill_after;
      seen += static_cast<int>(n);
    }
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "the save finished before the kill";

    // `latest` names step 1, which is complete; the partial file is only a
    // temp file and does not open as a checkpoint.
    auto latest = ResolveResume("latest", run);
    ASSERT_TRUE(latest.ok()) << latest.status();
    EXPECT_EQ(*latest, CheckpointPath(run, 1));
    auto reader = CheckpointReader::Open(*latest);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE(reader->VerifyAll().ok());
    EXPECT_FALSE(Exists(CheckpointPath(run, 2)));
    const std::string temp = CheckpointPath(run, 2) + ".tmp";
    ASSERT_TRUE(Exists(temp));
    const absl::Status partial = CheckpointReader::Open(temp).status();
    EXPECT_FALSE(partial.ok());
    EXPECT_THAT(partial.message(), HasSubstr("truncated"));
  }
}

}  // namespace
}  // namespace gpt2
