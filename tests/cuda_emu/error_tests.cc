// Emulated-bug reports: barriers not every thread reaches, warp collectives
// naming absent lanes, out-of-bounds writes, livelocks and bad launch
// configurations must each be reported (kernel, block, thread) and never hang.
// Kernels: buggy_kernels.cu, sample_kernels.cu. Runs on the CPU emulator.
#include <cuda_runtime.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "src/cuda_emu/api.h"
#include "tests/cuda_emu/emu_test_util.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class EmuReports : public EmuTest {
 protected:
  // Expects `launch` to fault with a sticky cudaErrorLaunchFailure and a
  // report containing each of `parts`.
  void ExpectFault(cudaError_t launch_result,
                   const std::vector<std::string>& parts,
                   cudaError_t want = cudaErrorLaunchFailure) {
    EXPECT_EQ(launch_result, want);
    const std::string report = cuda_emu::LastReport();
    for (const std::string& p : parts) EXPECT_THAT(report, HasSubstr(p));
    // Sticky, like a faulting kernel on a GPU.
    EXPECT_EQ(cudaGetLastError(), want);
    EXPECT_EQ(cudaGetLastError(), want);
    EXPECT_EQ(cudaDeviceSynchronize(), want);
    int host = 0;
    EXPECT_EQ(cudaMemcpy(&host, &host, sizeof(int), cudaMemcpyHostToHost),
              want);
  }
};

TEST_F(EmuReports, DivergentSyncthreads) {
  DeviceBuffer<int> out(2 * 64);
  ExpectFault(
      LaunchDivergentBarrier(2, 64, out.get()),
      {"kernel 'DivergentBarrierKernel'", "block (0,0,0)", "thread (32,0,0)",
       "exited without reaching the __syncthreads()", "buggy_kernels.cu:"});
}

TEST_F(EmuReports, EarlyReturnBeforeBarrier) {
  DeviceBuffer<int> out(64);
  ExpectFault(LaunchEarlyReturnBeforeBarrier(64, 5, out.get()),
              {"kernel 'EarlyReturnKernel'", "thread (5,0,0)",
               "exited without reaching", "5 other thread(s)"});
}

// Thread 0 quits before anyone reached the barrier: caught at the barrier.
TEST_F(EmuReports, ReturnBeforeAnyoneReachedBarrier) {
  DeviceBuffer<int> out2(64);
  ExpectFault(LaunchEarlyReturnBeforeBarrier(64, 0, out2.get()),
              {"thread (1,0,0) (warp 0 lane 1) reached __syncthreads()",
               "thread (0,0,0) (warp 0 lane 0) had exited"});
}

TEST_F(EmuReports, EarlyReturnCaughtInReverseSchedule) {
  cuda_emu::SetSchedule(cuda_emu::Schedule::kReverse);
  DeviceBuffer<int> out(64);
  ExpectFault(LaunchEarlyReturnBeforeBarrier(64, 5, out.get()),
              {"thread (5,0,0)", "[schedule: reverse]"});
}

TEST_F(EmuReports, ShuffleNamingExitedLane) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchShuffleWithExitedLane(7, out.get()),
              {"kernel 'ShuffleWithExitedLaneKernel'",
               "__shfl_xor_sync(mask 0xffffffff)", "thread (7,0,0)", "exited"});
}

// Lane 0 exits first: the next lane's mask names it.
TEST_F(EmuReports, ShuffleNamingLaneThatExitedEarlier) {
  DeviceBuffer<int> out2(32);
  ExpectFault(LaunchShuffleWithExitedLane(0, out2.get()),
              {"thread (1,0,0) (warp 0 lane 1) calls __shfl_xor_sync",
               "lane(s) 0 that exited"});
}

TEST_F(EmuReports, ShuffleWhileNamedLaneWaitsAtBarrier) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchShuffleVsBarrier(out.get()),
              {"thread (16,0,0)", "waits at __syncthreads()",
               "__shfl_sync(mask 0xffffffff)", "deadlock"});
}

TEST_F(EmuReports, OverlappingShuffleMasks) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchOverlappingShuffleMasks(out.get()),
              {"thread (16,0,0)", "__shfl_sync(mask 0xffff0000)",
               "mask 0xffffffff", "overlap"});
}

TEST_F(EmuReports, FullMaskInPartialWarp) {
  DeviceBuffer<int> out(40);
  ExpectFault(
      LaunchFullMaskInPartialWarp(40, out.get()),
      {"thread (32,0,0)", "lane(s) 8-31 that do not exist", "40 threads"});
}

TEST_F(EmuReports, CallerNotInItsOwnMask) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchShuffleNotInOwnMask(out.get()),
              {"thread (16,0,0)", "does not include its own lane 16"});
}

// cuda_emu::WarpGather follows a shuffle's rules: every lane of its mask takes
// part, each with the same number of bytes (at least one).
TEST_F(EmuReports, GatherNamingExitedLane) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchGatherWithExitedLane(5, out.get()),
              {"kernel 'GatherWithExitedLaneKernel'",
               "cuda_emu::WarpGather(mask 0xffffffff)", "lane(s) 5", "exited"});
}

TEST_F(EmuReports, GatherWithDifferentSizes) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchGatherSizeMismatch(out.get()),
              {"cuda_emu::WarpGather",
               "all lanes of a mask must make the "
               "same call"});
}

TEST_F(EmuReports, GatherOfNoBytes) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchGatherNoBytes(out.get()),
              {"cuda_emu::WarpGather(mask 0xffffffff)", "with 0 bytes"});
}

TEST_F(EmuReports, ShuffleWidthNotPowerOfTwo) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchShuffleBadWidth(12, out.get()), {"width 12", "power of 2"});
}

TEST_F(EmuReports, MixedBarrierVariants) {
  DeviceBuffer<int> out(1);
  ExpectFault(
      LaunchMixedBarrierVariants(out.get()),
      {"__syncthreads()", "__syncthreads_count()", "mixing barrier variants"});
}

TEST_F(EmuReports, SpinLoopWithNoProgressIsALivelock) {
  cuda_emu::SetSpinTimeout(0.05);
  DeviceBuffer<int> flag(std::vector<int>{0});
  const auto start = std::chrono::steady_clock::now();
  ExpectFault(LaunchSpinForever(flag.get()),
              {"kernel 'SpinForeverKernel'", "thread (0,0,0)", "livelock"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(EmuReports, DeviceResetClearsStickyError) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&out), 64 * sizeof(int)),
            cudaSuccess);
  EXPECT_EQ(LaunchDivergentBarrier(1, 64, out), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  ASSERT_EQ(cudaDeviceReset(), cudaSuccess);  // also frees `out`
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  DeviceBuffer<int> fresh(64);
  EXPECT_EQ(LaunchFill(1, 64, 0, nullptr, fresh.get(), 9), cudaSuccess);
  EXPECT_EQ(fresh.Download(), std::vector<int>(64, 9));
}

TEST_F(EmuReports, KernelFaultStopsLaterLaunches) {
  DeviceBuffer<int> out(64);
  EXPECT_EQ(LaunchDivergentBarrier(1, 64, out.get()), cudaErrorLaunchFailure);
  const uint64_t launches = cuda_emu::LaunchCount();
  EXPECT_EQ(LaunchFill(1, 64, 0, nullptr, out.get(), 1),
            cudaErrorLaunchFailure);
  EXPECT_EQ(cuda_emu::LaunchCount(), launches)
      << "ran despite the sticky error";
}

TEST_F(EmuReports, FatalModeAborts) {
  EXPECT_DEATH(
      {
        cuda_emu::SetFatal(true);
        int* out = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&out), 64 * sizeof(int));
        LaunchDivergentBarrier(1, 64, out);
      },
      "exited without reaching");
}

// ---- Out-of-bounds writes through guard bytes ----
// Under AddressSanitizer (launch/sanitize.sh) the guard bytes are poisoned:
// the sanitizer stops the process at the access itself, inside the kernel.

#if defined(__SANITIZE_ADDRESS__)
TEST_F(EmuReports, WriteOnePastTheEnd) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DeviceBuffer<float> buf(100);
  EXPECT_DEATH((void)LaunchWriteOutOfBounds(buf.get(), 100),
               "use-after-poison(.|\n)*WriteOutOfBoundsKernel");
}

TEST_F(EmuReports, WriteBeforeTheStart) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DeviceBuffer<float> buf(100);
  EXPECT_DEATH((void)LaunchWriteOutOfBounds(buf.get(), -1),
               "use-after-poison(.|\n)*WriteOutOfBoundsKernel");
}

// A read outside the buffer, which guard bytes alone cannot show: only under
// the sanitizer.
TEST_F(EmuReports, ReadOnePastTheEnd) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DeviceBuffer<float> buf(100), out(1);
  EXPECT_EQ(LaunchReadOutOfBounds(buf.get(), 99, out.get()), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_DEATH((void)LaunchReadOutOfBounds(buf.get(), 100, out.get()),
               "use-after-poison(.|\n)*ReadOutOfBoundsKernel");
}
#else
TEST_F(EmuReports, WriteOnePastTheEnd) {
  DeviceBuffer<float> buf(100);
  cuda_emu::SetBufferName(buf.get(), "activations");
  ExpectFault(LaunchWriteOutOfBounds(buf.get(), 100),
              {"kernel 'WriteOutOfBoundsKernel'", "'activations'", "400 bytes",
               "past its end"},
              cudaErrorIllegalAddress);
}

TEST_F(EmuReports, WriteBeforeTheStart) {
  DeviceBuffer<float> buf(100);
  ExpectFault(
      LaunchWriteOutOfBounds(buf.get(), -1),
      {"kernel 'WriteOutOfBoundsKernel'", "before its start (from offset -4)"},
      cudaErrorIllegalAddress);
}
#endif

TEST_F(EmuReports, InBoundsWritesAreSilent) {
  DeviceBuffer<float> buf(100);
  EXPECT_EQ(LaunchWriteOutOfBounds(buf.get(), 99), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cuda_emu::ReportCount(), 0);
}

TEST_F(EmuReports, DynamicSharedMemoryOverflow) {
  DeviceBuffer<int> out(32);
  ExpectFault(LaunchDynamicSmemOverflow(32, out.get()),
              {"kernel 'DynamicSmemOverflowKernel'",
               "outside its dynamic shared memory", "128 bytes requested",
               "after its end"});
}

// ---- Launch configuration errors: not sticky, the kernel does not run ----

class EmuLaunchConfig : public EmuTest {
 protected:
  void ExpectRejected(dim3 grid, dim3 block, size_t smem, cudaError_t want,
                      const std::string& why) {
    DeviceBuffer<int> out(std::vector<int>(4, 0));
    const uint64_t launches = cuda_emu::LaunchCount();
    EXPECT_EQ(LaunchFill(grid, block, smem, nullptr, out.get(), 1), want);
    EXPECT_EQ(cuda_emu::LaunchCount(), launches) << "the kernel ran";
    EXPECT_THAT(cuda_emu::LastReport(),
                AllOf(HasSubstr("FillKernel"), HasSubstr(why)));
    // The launch helper consumed the error: not sticky.
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_EQ(out.Download(), std::vector<int>(4, 0));
  }
};

TEST_F(EmuLaunchConfig, TooManyThreadsPerBlock) {
  ExpectRejected(1, 1025, 0, cudaErrorInvalidConfiguration, "1025 threads");
  ExpectRejected(1, dim3(32, 33), 0, cudaErrorInvalidConfiguration,
                 "1056 threads");
}

TEST_F(EmuLaunchConfig, BlockDimensionOverLimit) {
  ExpectRejected(1, dim3(1, 1, 65), 0, cudaErrorInvalidConfiguration,
                 "(1,1,65)");
  ExpectRejected(1, dim3(0, 1, 1), 0, cudaErrorInvalidConfiguration, "(0,1,1)");
}

TEST_F(EmuLaunchConfig, EmptyOrOversizedGrid) {
  ExpectRejected(0, 32, 0, cudaErrorInvalidConfiguration, "grid (0,1,1)");
  ExpectRejected(dim3(1, 65536), 32, 0, cudaErrorInvalidConfiguration,
                 "grid (1,65536,1)");
}

TEST_F(EmuLaunchConfig, TooMuchDynamicSharedMemory) {
  ExpectRejected(1, 32, 48 * 1024 + 1, cudaErrorInvalidValue, "49153 bytes");
}

TEST_F(EmuLaunchConfig, AttributeBeyondOptInLimitIsRefused) {
  EXPECT_EQ(SetBigDynamicSmemLimit(227 * 1024 + 1), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(SetBigDynamicSmemLimit(227 * 1024), cudaSuccess);
  DeviceBuffer<int> out(1);
  EXPECT_EQ(LaunchBigDynamicSmem(227 * 1024 / 4, out.get()), cudaSuccess);
  EXPECT_EQ(LaunchBigDynamicSmem(227 * 1024 / 4 + 1, out.get()),
            cudaErrorInvalidValue);
}

TEST_F(EmuLaunchConfig, InvalidStream) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
  DeviceBuffer<int> out(32);
  EXPECT_EQ(LaunchFill(1, 32, 0, s, out.get(), 1),
            cudaErrorInvalidResourceHandle);
}

TEST_F(EmuLaunchConfig, UnnamedLaunchStillReportsAKernel) {
  DeviceBuffer<int> out(32);
  EXPECT_EQ(LaunchFillUnnamed(1, 2048, out.get(), 1),
            cudaErrorInvalidConfiguration);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("launch of kernel '"));
  EXPECT_EQ(LaunchFillUnnamed(1, 32, out.get(), 5), cudaSuccess);
  EXPECT_EQ(out.Download(), std::vector<int>(32, 5));
}

}  // namespace
}  // namespace cuda_emu_test
