// Emulated-execution tests: thread indexing, barriers, static and dynamic
// shared memory, atomics and a block reduction, run on the CPU emulation of
// CUDA (no GPU). Kernels: sample_kernels.cu.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "src/cuda_emu/api.h"
#include "tests/cuda_emu/emu_test_util.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

// Says once, in the test log, what kind of pass this is.
class EmulationBanner : public ::testing::Environment {
 public:
  void SetUp() override {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    std::printf(
        "[cuda_emu] These tests run CUDA kernels on the CPU emulator (%s), "
        "not on a GPU.\n",
        prop.name);
  }
};
const ::testing::Environment* const kBanner =
    ::testing::AddGlobalTestEnvironment(new EmulationBanner);

int Pack(unsigned x, unsigned y, unsigned z) {
  return static_cast<int>(x * 10000 + y * 100 + z);
}

using EmuIndexing = EmuTest;

TEST_F(EmuIndexing, ThreeDimensionalGridAndBlock) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const int n = 3 * 2 * 2 * 4 * 3 * 2;
  DeviceBuffer<int4> out(n);
  ASSERT_EQ(LaunchIndex(grid, block, out.get()), cudaSuccess);
  std::vector<int4> got = out.Download();
  int i = 0;
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        for (unsigned tz = 0; tz < block.z; ++tz) {
          for (unsigned ty = 0; ty < block.y; ++ty) {
            for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
              ASSERT_EQ(got[i].x, Pack(bx, by, bz)) << i;
              ASSERT_EQ(got[i].y, Pack(tx, ty, tz)) << i;
              ASSERT_EQ(got[i].z, Pack(4, 3, 2)) << i;
              ASSERT_EQ(got[i].w, Pack(3, 2, 2)) << i;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(i, n);
}

TEST_F(EmuIndexing, TwoDimensionalLaunchCoversEveryThreadOnce) {
  const dim3 grid(5, 3), block(16, 8);
  const int n = 5 * 3 * 16 * 8;
  DeviceBuffer<int> out(std::vector<int>(n, 0));
  ASSERT_EQ(LaunchFill(grid, block, 0, nullptr, out.get(), 7), cudaSuccess);
  std::vector<int> got = out.Download();
  EXPECT_EQ(std::count(got.begin(), got.end(), 7), n);
}

TEST_F(EmuIndexing, ThousandTwentyFourThreadsPerBlock) {
  DeviceBuffer<int4> out(2 * 1024);
  ASSERT_EQ(LaunchIndex(dim3(2), dim3(1024), out.get()), cudaSuccess);
  std::vector<int4> got = out.Download();
  for (int i = 0; i < 2048; ++i) {
    ASSERT_EQ(got[i].y, Pack(i % 1024, 0, 0));
    ASSERT_EQ(got[i].x, Pack(i / 1024, 0, 0));
  }
}

TEST_F(EmuIndexing, TemplateKernelThroughMacro) {
  DeviceBuffer<int> out(2 * 64);
  ASSERT_EQ(LaunchScaleTemplate(2, 64, out.get()), cudaSuccess);
  std::vector<int> got = out.Download();
  for (int i = 0; i < 128; ++i) ASSERT_EQ(got[i], 3 * i);
}

// ---- Barriers ----

class EmuBarrier : public EmuTest,
                   public ::testing::WithParamInterface<cuda_emu::Schedule> {
 protected:
  void SetUp() override {
    EmuTest::SetUp();
    cuda_emu::SetSchedule(GetParam(), 1234);
  }
};

std::vector<int> Iota(int n, int start = 0) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST_P(EmuBarrier, WriteSyncReadSeesEveryWrite) {
  const int blocks = 3, threads = 96;
  std::vector<int> in = Iota(blocks * threads, 1);
  DeviceBuffer<int> d_in(in), d_out(in.size());
  ASSERT_EQ(LaunchNeighborSum(blocks, threads, true, d_in.get(), d_out.get()),
            cudaSuccess);
  std::vector<int> got = d_out.Download();
  for (int b = 0; b < blocks; ++b) {
    for (int t = 0; t < threads; ++t) {
      auto at = [&](int k) {
        return in[b * threads + (k + threads) % threads];
      };
      ASSERT_EQ(got[b * threads + t], at(t - 1) + at(t) + at(t + 1))
          << "block " << b << " thread " << t;
    }
  }
}

// The control experiment: without the barrier, threads read neighbours'
// slots before they are written (the emulator runs each thread up to its next
// sync point), so the result must be wrong in every schedule.
TEST_P(EmuBarrier, MissingBarrierGivesWrongAnswer) {
  const int threads = 64;
  std::vector<int> in = Iota(threads, 1);
  DeviceBuffer<int> d_in(in), d_out(threads);
  ASSERT_EQ(LaunchNeighborSum(1, threads, false, d_in.get(), d_out.get()),
            cudaSuccess);
  std::vector<int> got = d_out.Download();
  int wrong = 0;
  for (int t = 0; t < threads; ++t) {
    const int want =
        in[(t + threads - 1) % threads] + in[t] + in[(t + 1) % threads];
    wrong += got[t] != want;
  }
  EXPECT_GT(wrong, threads / 2);
}

TEST_P(EmuBarrier, BlockScanWithTwoBarriersPerStep) {
  for (int threads : {1, 32, 100, 256, 1024}) {
    const int blocks = 2;
    std::vector<int> in(blocks * threads);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i % 13) - 6;
    DeviceBuffer<int> d_in(in), d_out(in.size());
    ASSERT_EQ(LaunchBlockScan(blocks, threads, d_in.get(), d_out.get()),
              cudaSuccess);
    std::vector<int> got = d_out.Download();
    for (int b = 0; b < blocks; ++b) {
      int sum = 0;
      for (int t = 0; t < threads; ++t) {
        sum += in[b * threads + t];
        ASSERT_EQ(got[b * threads + t], sum)
            << threads << " threads, block " << b;
      }
    }
  }
}

TEST_P(EmuBarrier, SyncthreadsCountAndOr) {
  const int blocks = 2, threads = 100;
  DeviceBuffer<int> out(blocks * 4);
  ASSERT_EQ(LaunchSyncReductions(blocks, threads, out.get()), cudaSuccess);
  std::vector<int> got = out.Download();
  for (int b = 0; b < blocks; ++b) {
    EXPECT_EQ(got[b * 4 + 0], 34);  // t % 3 == 0 for t in [0, 100)
    EXPECT_EQ(got[b * 4 + 1], 1);
    EXPECT_EQ(got[b * 4 + 2], 1);
    EXPECT_EQ(got[b * 4 + 3], 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, EmuBarrier,
                         ::testing::Values(cuda_emu::Schedule::kForward,
                                           cuda_emu::Schedule::kReverse,
                                           cuda_emu::Schedule::kRandom));

// ---- Shared memory ----

using EmuSharedMemory = EmuTest;

TEST_F(EmuSharedMemory, StaticSharedIsPerBlock) {
  for (int host_threads : {1, 2}) {
    cuda_emu::SetHostThreads(host_threads);
    const int blocks = 6, threads = 64;
    DeviceBuffer<int> out(blocks * threads);
    ASSERT_EQ(LaunchSharedTag(blocks, threads, out.get()), cudaSuccess);
    std::vector<int> got = out.Download();
    for (int i = 0; i < blocks * threads; ++i) {
      ASSERT_EQ(got[i], 1000 + 7 * (i / threads))
          << host_threads << " host threads";
    }
  }
}

// Every block starts with poisoned dynamic shared memory (all bits set), not
// with what the previous block left there.
TEST_F(EmuSharedMemory, DynamicSharedStartsPoisonedInEveryBlock) {
  const int blocks = 3, threads = 32;
  DeviceBuffer<int> out(blocks * threads);
  ASSERT_EQ(LaunchReadFreshDynamicSmem(blocks, threads, out.get()),
            cudaSuccess);
  for (int v : out.Download()) ASSERT_EQ(v, -1);
}

TEST_F(EmuSharedMemory, StaticAndDynamicDoNotOverlap) {
  DeviceBuffer<int> out(66);
  ASSERT_EQ(LaunchStaticAndDynamic(out.get()), cudaSuccess);
  std::vector<int> got = out.Download();
  for (int t = 0; t < 64; ++t) ASSERT_EQ(got[t], (63 - t) + 1000 + (63 - t));
  EXPECT_EQ(got[64], 1) << "two GPT2_EXTERN_SHARED names must alias";
  EXPECT_EQ(got[65], 1) << "static and dynamic shared memory overlap";
}

TEST_F(EmuSharedMemory, OptInAbove48KiB) {
  const int words = 100 * 1024 / 4;  // 100 KiB
  DeviceBuffer<int> out(1);
  EXPECT_EQ(LaunchBigDynamicSmem(words, out.get()), cudaErrorInvalidValue);
  ASSERT_EQ(SetBigDynamicSmemLimit(words * 4), cudaSuccess);
  ASSERT_EQ(LaunchBigDynamicSmem(words, out.get()), cudaSuccess);
  int want = 0;
  for (int i = 0; i < words; ++i) want += i % 7;
  EXPECT_EQ(out.Download()[0], want);
}

// ---- Atomics ----

class EmuAtomics : public EmuTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    EmuTest::SetUp();
    cuda_emu::SetHostThreads(GetParam());
  }
};

TEST_P(EmuAtomics, GlobalAtomicsFromManyThreads) {
  const int blocks = 8, threads = 256, n = blocks * threads;
  AtomicCounters init{};
  init.i_max = -1;
  init.i_min = 1;
  init.f_max = -1.0f;
  DeviceBuffer<AtomicCounters> c(std::vector<AtomicCounters>{init});
  ASSERT_EQ(LaunchAtomics(blocks, threads, c.get()), cudaSuccess);
  const AtomicCounters got = c.Download()[0];
  EXPECT_EQ(got.i_add, 2 * n);
  EXPECT_EQ(got.u_add, 3u * n);
  EXPECT_EQ(got.f_add, 0.5f * n);  // exact: small multiples of 0.5
  EXPECT_EQ(got.d_add, 0.25 * n);
  EXPECT_EQ(got.ull_add, static_cast<unsigned long long>(n) << 33);
  EXPECT_EQ(got.i_max, n - 1);
  EXPECT_EQ(got.i_min, -(n - 1));
  EXPECT_EQ(got.u_max, 2u * (n - 1));
  EXPECT_EQ(got.inc, static_cast<unsigned>(n % 10));  // wraps 9 -> 0
  EXPECT_EQ(got.sub, -n);
  EXPECT_EQ(got.or_bits, 0xffffffffu);
  EXPECT_EQ(got.f_max, 499.5f);
}

TEST_P(EmuAtomics, SharedMemoryHistogram) {
  const int n = 10000;
  std::vector<int> in(n);
  std::vector<unsigned> want(16, 0);
  for (int i = 0; i < n; ++i) {
    in[i] = (i * 7919) % 1000;
    ++want[in[i] & 15];
  }
  DeviceBuffer<int> d_in(in);
  DeviceBuffer<unsigned> hist(std::vector<unsigned>(16, 0));
  ASSERT_EQ(LaunchSharedHistogram(5, 128, d_in.get(), n, hist.get()),
            cudaSuccess);
  EXPECT_EQ(hist.Download(), want);
}

TEST_P(EmuAtomics, SpinLockAroundPlainIncrement) {
  const int blocks = 4, threads = 64;
  DeviceBuffer<int> lock(std::vector<int>{0}), counter(std::vector<int>{0});
  ASSERT_EQ(LaunchSpinLockCounter(blocks, threads, lock.get(), counter.get()),
            cudaSuccess);
  EXPECT_EQ(counter.Download()[0], blocks * threads);
}

INSTANTIATE_TEST_SUITE_P(HostThreads, EmuAtomics, ::testing::Values(1, 2));

// ---- Block reduction: shared memory + warp shuffles ----

class EmuBlockReduce : public EmuTest,
                       public ::testing::WithParamInterface<int> {};

TEST_P(EmuBlockReduce, MatchesCpuSum) {
  const int threads = GetParam();
  for (int n : {1, threads, 3 * threads + 5, 4099}) {
    std::vector<float> in(n);
    for (int i = 0; i < n; ++i) in[i] = static_cast<float>((i * 37) % 7 - 3);
    const double want = std::accumulate(in.begin(), in.end(), 0.0);
    const int blocks = 3;
    DeviceBuffer<float> d_in(in), d_out(blocks);
    ASSERT_EQ(LaunchBlockReduce(blocks, threads, d_in.get(), n, d_out.get()),
              cudaSuccess);
    std::vector<float> partial = d_out.Download();
    const double got = std::accumulate(partial.begin(), partial.end(), 0.0);
    // Small integers: every partial sum is exact in float.
    EXPECT_EQ(got, want) << threads << " threads, n = " << n;
  }
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, EmuBlockReduce,
                         ::testing::Values(1, 31, 32, 33, 64, 96, 100, 128, 256,
                                           512, 1000, 1024));

TEST_F(EmuTest, BlockReduceUnderEverySchedule) {
  for (cuda_emu::Schedule s :
       {cuda_emu::Schedule::kReverse, cuda_emu::Schedule::kRandom}) {
    cuda_emu::SetSchedule(s, 99);
    std::vector<float> in(5000);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 5);
    DeviceBuffer<float> d_in(in), d_out(2);
    ASSERT_EQ(LaunchBlockReduce(2, 100, d_in.get(), 5000, d_out.get()),
              cudaSuccess);
    std::vector<float> p = d_out.Download();
    EXPECT_EQ(p[0] + p[1], 10000.0f);
  }
}

}  // namespace
}  // namespace cuda_emu_test
