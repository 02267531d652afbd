// 2000 randomly damaged copies of a small valid checkpoint (flipped bytes,
// truncations, splices, insertions, deletions, absurd lengths) go through
// Open, VerifyAll and every read. Each must end in a Status, never a crash, and
// no single allocation may exceed a small multiple of the file's size: a
// corrupt length must never size a buffer.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/core/rng.h"
#include "tests/ckpt/ckpt_test_util.h"

// Every allocation in this test binary is measured.
namespace {
std::atomic<size_t> g_largest_allocation{0};
void Note(size_t size) {
  size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
  while (size > seen &&
         !g_largest_allocation.compare_exchange_weak(seen, size)) {
  }
}
}  // namespace

void* operator new(size_t size) {
  Note(size);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace gpt2 {
namespace {

using ::gpt2::testing::HeaderFor;
using ::gpt2::testing::RandomValues;
using ::gpt2::testing::ReadBytes;
using ::gpt2::testing::ScratchDir;
using ::gpt2::testing::WriteBytes;

constexpr int kMutations = 2000;

std::string Mutate(const std::string& original, Rng* rng) {
  std::string b = original;
  auto pick = [&](size_t n) {
    return n == 0 ? 0 : static_cast<size_t>(rng->NextU64() % n);
  };
  switch (rng->NextU64() % 6) {
    case 0: {  // flip 1-4 bytes
      const int flips = 1 + static_cast<int>(pick(4));
      for (int i = 0; i < flips; ++i)
        b[pick(b.size())] ^= static_cast<char>(1 + pick(255));
      break;
    }
    case 1:  // truncate
      b.resize(pick(b.size()));
      break;
    case 2: {  // copy a range over another place
      const size_t n = 1 + pick(200);
      const size_t from = pick(b.size()), to = pick(b.size());
      const std::string piece = original.substr(from, n);
      b.replace(to, std::min(piece.size(), b.size() - to), piece);
      break;
    }
    case 3: {  // insert a copied range
      const size_t n = 1 + pick(200);
      b.insert(pick(b.size()), original.substr(pick(b.size()), n));
      break;
    }
    case 4: {  // delete a range
      const size_t at = pick(b.size());
      b.erase(at, 1 + pick(200));
      break;
    }
    default: {  // an absurd 8-byte value, e.g. over a length field
      const uint64_t values[] = {~0ull, 1ull << 62, 1ull << 31, 0x7FFFFFFFull,
                                 rng->NextU64()};
      const uint64_t v = values[pick(5)];
      const size_t at = pick(b.size() > 8 ? b.size() - 8 : 1);
      if (b.size() >= 8) std::memcpy(b.data() + at, &v, 8);
      break;
    }
  }
  return b;
}

TEST(CheckpointFuzz, DamagedFilesFailCleanly) {
  ScratchDir dir;
  const std::string original_path = dir.File("original.ckpt");
  // L=1, C=4, V=8: 300 parameters, a file of about 8 KB.
  const ModelShape shape{1, 1, 4, 4, 8, 8};
  const std::vector<ParamSpec> list = BuildParamList(shape);
  const int64_t total = TotalParams(list);
  {
    // Params f32 and AdamW state f64, in many small records.
    const auto params = RandomValues<float>(total, 1);
    const auto m = RandomValues<double>(total, 2);
    CheckpointWriterOptions options;
    options.max_record_bytes = 64;
    ASSERT_TRUE(SaveModelCheckpoint(
                    original_path, HeaderFor(shape, 9), list,
                    {HostView::Of(params), HostView::Of(m), HostView::Of(m)},
                    options)
                    .ok());
  }
  const std::string original = ReadBytes(original_path);
  auto pristine = LoadModelCheckpoint(original_path, list, true);
  ASSERT_TRUE(pristine.ok()) << pristine.status();

  Rng rng(2024);
  const std::string path = dir.File("mutant.ckpt");
  int opened = 0, verified = 0, failed = 0;
  size_t largest = 0;
  for (int i = 0; i < kMutations; ++i) {
    const std::string bytes = Mutate(original, &rng);
    WriteBytes(path, bytes);
    g_largest_allocation = 0;
    auto reader = CheckpointReader::Open(path);
    if (!reader.ok()) {
      ++failed;
      EXPECT_NE(reader.status().message().find("mutant.ckpt"),
                std::string::npos)
          << reader.status();
    } else {
      ++opened;
      const absl::Status verify = reader->VerifyAll();
      std::vector<double> out;
      bool reads_ok = true;
      for (const TensorInfo& t : reader->tensors()) {
        // Open bounds every tensor by the bytes actually in the file.
        ASSERT_LE(t.bytes, static_cast<int64_t>(bytes.size()));
        out.resize(static_cast<size_t>(t.numel));
        if (t.dtype == DType::kI32) continue;
        reads_ok &=
            reader->ReadTensor(t.name, DType::kF64, out.data(), t.numel).ok();
        if (t.numel > 2) {
          reads_ok &= reader
                          ->ReadTensorSlice(t.name, DType::kF64, 1, t.numel - 2,
                                            out.data())
                          .ok();
        }
      }
      if (verify.ok()) {
        // Every byte is covered by a CRC and every tensor must tile: a file
        // that verifies must hold exactly the original tensors.
        ++verified;
        EXPECT_TRUE(reads_ok) << "mutation " << i;
        auto loaded = LoadModelCheckpoint(path, list, true);
        ASSERT_TRUE(loaded.ok()) << "mutation " << i << ": " << loaded.status();
        EXPECT_EQ(loaded->params, pristine->params) << "mutation " << i;
        EXPECT_EQ(loaded->adam_m, pristine->adam_m) << "mutation " << i;
      } else {
        ++failed;
      }
    }
    largest = std::max(largest, g_largest_allocation.load());
    // 8-byte doubles from 4-byte floats, plus fixed buffers (64 KiB heads).
    ASSERT_LE(g_largest_allocation.load(), 2 * bytes.size() + (128 << 10))
        << "mutation " << i << " allocated " << g_largest_allocation.load()
        << " bytes for a " << bytes.size() << "-byte file";
  }
  std::printf(
      "%d mutations: %d opened, %d verified, %d failed cleanly; "
      "largest allocation %zu bytes (file %zu bytes)\n",
      kMutations, opened, verified, failed, largest, original.size());
  EXPECT_GT(failed, kMutations * 9 / 10);
}

}  // namespace
}  // namespace gpt2
