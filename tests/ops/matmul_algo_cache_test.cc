// The file of cuBLASLt algorithm choices (src/ops/matmul_algo_cache.h): what
// one run appends the next reads, in its own context only, skipping lines a
// cut-short write or another device left.
#include "src/ops/matmul_algo_cache.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/ckpt/ckpt_test_util.h"

namespace gpt2 {
namespace {

using ::gpt2::testing::ScratchDir;

// 64 bytes, as a cublasLtMatmulAlgo_t, every value 0-255 among them.
std::string Algo(int seed) {
  std::string bytes(64, '\0');
  for (int i = 0; i < 64; ++i)
    bytes[i] = static_cast<char>((seed * 67 + i * 13) & 255);
  return bytes;
}

const std::vector<int64_t> kKeyA = {2, 768, 16384, 3072, 1, 0, 1, 0, 16};
const std::vector<int64_t> kKeyB = {2, 2304, 16384, 768, 1, 0, 4, 1, 16};

TEST(MatmulAlgoCache, WhatOneRunAddsTheNextFinds) {
  ScratchDir dir;
  const std::string path = dir.File("algos.txt");
  {
    MatmulAlgoCache first(path, "NVIDIA H100 sm_90 cublasLt 130000");
    EXPECT_EQ(first.loaded(), 0);  // no file yet: an empty cache
    EXPECT_FALSE(first.Find(kKeyA).has_value());
    EXPECT_TRUE(first.Add(kKeyA, Algo(1)));
    EXPECT_TRUE(first.Add(kKeyB, Algo(2)));
    EXPECT_TRUE(first.Add(kKeyA, Algo(3)));  // timed again: the last wins
    EXPECT_EQ(first.Find(kKeyA), Algo(3));
  }
  MatmulAlgoCache second(path, "NVIDIA H100 sm_90 cublasLt 130000");
  EXPECT_EQ(second.loaded(), 3);
  EXPECT_EQ(second.skipped(), 0);
  EXPECT_EQ(second.Find(kKeyA), Algo(3));
  EXPECT_EQ(second.Find(kKeyB), Algo(2));
  EXPECT_FALSE(second.Find({2, 768, 16384, 3072, 1, 0, 1, 0, 8}).has_value());
}

TEST(MatmulAlgoCache, AnotherContextsLinesAreSkipped) {
  ScratchDir dir;
  const std::string path = dir.File("algos.txt");
  MatmulAlgoCache h100(path, "NVIDIA H100 sm_90 cublasLt 130000");
  ASSERT_TRUE(h100.Add(kKeyA, Algo(1)));
  MatmulAlgoCache h200(path, "NVIDIA H200 sm_90 cublasLt 130000");
  EXPECT_EQ(h200.loaded(), 0);
  EXPECT_EQ(h200.skipped(), 1);
  EXPECT_FALSE(h200.Find(kKeyA).has_value());
  ASSERT_TRUE(h200.Add(kKeyA, Algo(2)));
  // Both in one file, each reading its own.
  EXPECT_EQ(
      MatmulAlgoCache(path, "NVIDIA H100 sm_90 cublasLt 130000").Find(kKeyA),
      Algo(1));
  EXPECT_EQ(
      MatmulAlgoCache(path, "NVIDIA H200 sm_90 cublasLt 130000").Find(kKeyA),
      Algo(2));
}

TEST(MatmulAlgoCache, MalformedLinesAreSkipped) {
  ScratchDir dir;
  const std::string path = dir.File("algos.txt");
  const std::string context = "dev";
  {
    MatmulAlgoCache cache(path, context);
    ASSERT_TRUE(cache.Add(kKeyA, Algo(1)));
  }
  {
    std::ofstream out(path, std::ios::app);
    out << "dev\t1,2,x\tabcd\n";  // a key that is not integers
    out << "dev\t1,,2\tabcd\n";   // an empty key field
    out << "dev\t1,2\tabc\n";     // odd hex
    out << "dev\t1,2\tABCD\n";    // not the writer's lowercase hex
    out << "dev\t1,2\n";          // no algorithm field
    out << "dev\t9,9\t0011\n";    // whole (a short algorithm is the
                                  // caller's to refuse: it checks the size)
    out << "dev\t7,7\t001";       // a write cut inside the hex
  }
  MatmulAlgoCache cache(path, context);
  EXPECT_EQ(cache.skipped(), 6);
  EXPECT_EQ(cache.loaded(), 2);
  EXPECT_EQ(cache.Find(kKeyA), Algo(1));
  EXPECT_EQ(cache.Find({9, 9}), std::string("\x00\x11", 2));
  EXPECT_FALSE(cache.Find({1, 2}).has_value());
  EXPECT_FALSE(cache.Find({7, 7}).has_value());
}

TEST(MatmulAlgoCache, AnUnwritableFileKeepsTheChoiceForThisRun) {
  ScratchDir dir;
  MatmulAlgoCache cache(dir.File("no/such/folder/algos.txt"), "dev");
  EXPECT_FALSE(cache.Add(kKeyA, Algo(1)));
  EXPECT_EQ(cache.Find(kKeyA), Algo(1));
}

TEST(MatmulAlgoCache, TabsInTheContextDoNotBreakTheLines) {
  ScratchDir dir;
  const std::string path = dir.File("algos.txt");
  ASSERT_TRUE(MatmulAlgoCache(path, "a\tb\nc").Add(kKeyB, Algo(4)));
  MatmulAlgoCache again(path, "a\tb\nc");
  EXPECT_EQ(again.skipped(), 0);
  EXPECT_EQ(again.Find(kKeyB), Algo(4));
}

}  // namespace
}  // namespace gpt2
