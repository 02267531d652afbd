// Token shards and the loader: window order, wrap-around, ranks and
// accumulation reading the same tokens, the cursor, and every bad shard file.
#include "src/data/data_loader.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

std::vector<uint16_t> Iota(int n) {
  std::vector<uint16_t> t(n);
  std::iota(t.begin(), t.end(), 0);
  return t;
}

std::vector<TokenShard> OneShard(int n) {
  std::vector<TokenShard> shards;
  shards.push_back(TokenShard::FromTokens(Iota(n), "iota"));
  return shards;
}

TEST(DataLoader, WindowsAdvanceAndWrapLikeThePyTorchRun) {
  // 50 tokens, B=2, T=4: step windows of 8 (+1) tokens at 0, 8, ..., 40; at 48
  // a window would need 57 > 50 tokens, so the loader wraps to 0.
  LoaderLayout layout{2, 4, 0, 1, 1};
  auto loader = DataLoader::Create(OneShard(50), layout);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ(loader->steps_per_epoch(), 6);
  std::vector<int32_t> x(8), y(8);
  for (int step = 0; step < 7; ++step) {
    const int start = (step % 6) * 8;
    loader->Next(x.data(), y.data());
    for (int i = 0; i < 8; ++i) {
      ASSERT_EQ(x[i], start + i) << "step " << step;
      ASSERT_EQ(y[i], start + i + 1) << "step " << step;
    }
  }
}

// Reads `steps` optimizer steps of tokens, in the order a single process would
// see them.
std::vector<int32_t> ReadAll(int B, int world, int accum, int steps) {
  std::vector<DataLoader> loaders;
  for (int r = 0; r < world; ++r) {
    loaders.push_back(*DataLoader::Create(OneShard(1000),
                                          LoaderLayout{B, 8, r, world, accum}));
  }
  std::vector<int32_t> all, x(B * 8), y(B * 8);
  for (int s = 0; s < steps; ++s) {
    for (int m = 0; m < accum; ++m) {
      for (int r = 0; r < world; ++r) {
        loaders[r].Next(x.data(), y.data());
        all.insert(all.end(), x.begin(), x.end());
      }
    }
  }
  return all;
}

TEST(DataLoader, RanksAndAccumulationReadTheSameTokens) {
  const auto reference = ReadAll(/*B=*/16, /*world=*/1, /*accum=*/1, 20);
  EXPECT_EQ(ReadAll(4, 4, 1, 20), reference);  // -np 4 with B=4
  EXPECT_EQ(ReadAll(4, 1, 4, 20), reference);  // 4 micro-steps of B=4
  EXPECT_EQ(ReadAll(2, 2, 4, 20), reference);
  EXPECT_NE(ReadAll(8, 1, 1, 20),
            reference);  // a different total batch differs
}

TEST(DataLoader, CursorRestoresThePosition) {
  LoaderLayout layout{2, 4, 0, 1, 2};
  auto a = *DataLoader::Create(OneShard(100), layout);
  std::vector<int32_t> x(8), y(8), x2(8), y2(8);
  for (int i = 0; i < 5; ++i) a.Next(x.data(), y.data());
  const LoaderCursor saved = a.cursor();
  EXPECT_EQ(saved.micro_step, 1);
  auto b = *DataLoader::Create(OneShard(100), layout);
  ASSERT_TRUE(b.SetCursor(saved).ok());
  for (int i = 0; i < 30; ++i) {
    a.Next(x.data(), y.data());
    b.Next(x2.data(), y2.data());
    ASSERT_EQ(x, x2);
  }
  EXPECT_FALSE(b.SetCursor(LoaderCursor{0, 95, 0}).ok());
  EXPECT_FALSE(b.SetCursor(LoaderCursor{3, 0, 0}).ok());
  // A position near INT64_MAX (a damaged or foreign cursor): position + the
  // window overflowed, passed the check, and Next would read far outside the
  // shard (seen while writing tests/fuzz/data_loader_fuzz.cc, whose check
  // fails on such a cursor: its seed cursor_near_int64_max).
  EXPECT_FALSE(b.SetCursor(LoaderCursor{0, INT64_MAX - 2, 0}).ok());
  EXPECT_FALSE(b.SetCursor(LoaderCursor{0, -1, 0}).ok());
}

TEST(DataLoader, MovesAcrossShardsAndSkipsShortOnes) {
  std::vector<TokenShard> shards;
  shards.push_back(TokenShard::FromTokens(Iota(20), "a"));
  shards.push_back(
      TokenShard::FromTokens(std::vector<uint16_t>(5, 7), "short"));
  std::vector<uint16_t> c(20);
  std::iota(c.begin(), c.end(), 100);
  shards.push_back(TokenShard::FromTokens(c, "c"));
  auto loader =
      *DataLoader::Create(std::move(shards), LoaderLayout{1, 8, 0, 1, 1});
  std::vector<int32_t> x(8), y(8);
  std::vector<int> starts;
  for (int i = 0; i < 6; ++i) {
    loader.Next(x.data(), y.data());
    starts.push_back(x[0]);
  }
  EXPECT_EQ(starts, (std::vector<int>{0, 8, 100, 108, 0, 8}));
}

TEST(DataLoader, RejectsDataSmallerThanOneStep) {
  auto loader = DataLoader::Create(OneShard(16), LoaderLayout{2, 8, 0, 1, 1});
  ASSERT_FALSE(loader.ok());
  EXPECT_NE(loader.status().message().find("17"), std::string::npos)
      << loader.status();
}

class ShardFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gpt2_shard_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }
  void WriteRaw(const std::string& path, const std::vector<int32_t>& header,
                const std::vector<uint16_t>& tokens) {
    std::vector<int32_t> h(256, 0);
    std::copy(header.begin(), header.end(), h.begin());
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(h.data()), 1024);
    out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  }
  std::string Error(const std::string& path) {
    auto shard = TokenShard::Open(path, 50257);
    EXPECT_FALSE(shard.ok());
    return shard.ok() ? "" : std::string(shard.status().message());
  }
  std::filesystem::path dir_;
};

TEST_F(ShardFiles, RoundTrip) {
  const std::vector<uint16_t> tokens = {1, 50256, 3, 0};
  ASSERT_TRUE(WriteTokenShard(Path("ok.bin"), tokens).ok());
  auto shard = TokenShard::Open(Path("ok.bin"), 50257);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(
      std::vector<uint16_t>(shard->tokens().begin(), shard->tokens().end()),
      tokens);
  EXPECT_EQ(std::filesystem::file_size(Path("ok.bin")), 1024u + 8u);
  auto files = ExpandShardPattern(Path("*.bin"));
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 1u);
}

TEST_F(ShardFiles, BadFilesGiveClearErrors) {
  EXPECT_NE(Error(Path("missing.bin")).find("cannot open"), std::string::npos);
  WriteRaw(Path("magic.bin"), {1234, 1, 2}, {1, 2});
  EXPECT_NE(Error(Path("magic.bin")).find("bad magic 1234"), std::string::npos);
  WriteRaw(Path("version.bin"), {20240520, 7, 2}, {1, 2});
  EXPECT_NE(Error(Path("version.bin")).find("version 7"), std::string::npos);
  WriteRaw(Path("short.bin"), {20240520, 1, 10}, {1, 2});
  EXPECT_NE(Error(Path("short.bin")).find("truncated"), std::string::npos);
  WriteRaw(Path("vocab.bin"), {20240520, 1, 2}, {1, 60000});
  EXPECT_NE(Error(Path("vocab.bin")).find("token 60000 at index 1"),
            std::string::npos);
  { std::ofstream(Path("tiny.bin")) << "abc"; }
  EXPECT_NE(Error(Path("tiny.bin")).find("header"), std::string::npos);
  EXPECT_FALSE(ExpandShardPattern(Path("none_*.bin")).ok());
}

}  // namespace
}  // namespace gpt2
