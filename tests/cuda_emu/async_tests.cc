// The emulated asynchrony of Hopper's warpgroup products (src/cuda/wgmma.cuh):
// a product runs at the wait that retires its group, reading its operands
// (shared tiles, A registers) then, so a kernel that reads accumulators too
// early or overwrites an operand in flight computes wrong values here; and of
// cp.async copies (src/cuda/async_copy.cuh), at once or deferred to their
// wait. Kernels: async_kernels.cu. Runs on the CPU emulator.
#include <cuda_runtime.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/cuda_emu/api.h"
#include "tests/cuda_emu/emu_test_util.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

using ::testing::HasSubstr;

using EmuAsync = EmuTest;

TEST_F(EmuAsync, ProductsRunAtTheWaitThatRetiresTheirGroup) {
  DeviceBuffer<float> out(5 * 128);
  ASSERT_EQ(LaunchWgmmaAsync(out.get()), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got = out.Download();
  const float want[5] = {-1.0f, 48.0f, -1.0f, 64.0f, 128.0f};
  const char* what[5] = {
      "an accumulator read before any wait",
      "the first group after wait_group 1 (its tile changed before)",
      "the second group, still in flight",
      "the second group after wait_group 0 (its tile changed again)",
      "a register A changed while its product was in flight"};
  for (int k = 0; k < 5; ++k) {
    for (int t = 0; t < 128; ++t) {
      ASSERT_EQ(got[k * 128 + t], want[k]) << what[k] << ", thread " << t;
    }
  }
}

// cp.async copies land at once by default; deferred (as a device may), each
// lands at the wait that retires its group.
TEST_F(EmuAsync, CopiesLandAtOnceOrAtTheirWait) {
  std::vector<int4> src(64);
  for (int i = 0; i < 64; ++i) src[i] = make_int4(100 + i, 0, 0, 0);
  DeviceBuffer<int4> d_src(src);
  for (const bool deferred : {false, true}) {
    cuda_emu::SetDeferredCopies(deferred);
    DeviceBuffer<int> out(128);
    ASSERT_EQ(LaunchCpAsyncGroups(d_src.get(), out.get()), cudaSuccess);
    const std::vector<int> got = out.Download();
    for (int t = 0; t < 32; ++t) {
      const std::string where = std::string(deferred ? "deferred" : "at once") +
                                ", thread " + std::to_string(t);
      EXPECT_EQ(got[t], deferred ? -1 : 100 + t) << where << ": before a wait";
      EXPECT_EQ(got[32 + t], 100 + t) << where << ": group 1 after wait 1";
      EXPECT_EQ(got[64 + t], deferred ? -1 : 132 + t)
          << where << ": group 2 after wait 1";
      EXPECT_EQ(got[96 + t], 132 + t) << where << ": group 2 after wait 0";
    }
  }
  cuda_emu::SetDeferredCopies(false);
}

// A bulk copy lands at once and completes its mbarrier's phase, or deferred
// at the first wait on the barrier: a read before the wait sees the old
// bytes then.
TEST_F(EmuAsync, BulkCopiesLandAtOnceOrAtTheFirstWait) {
  std::vector<int> src(32);
  for (int i = 0; i < 32; ++i) src[i] = 500 + i;
  DeviceBuffer<int> d_src(src);
  for (const bool deferred : {false, true}) {
    cuda_emu::SetDeferredCopies(deferred);
    DeviceBuffer<int> out(64);
    ASSERT_EQ(LaunchBulkCopy(d_src.get(), out.get()), cudaSuccess);
    const std::vector<int> got = out.Download();
    for (int t = 0; t < 32; ++t) {
      const std::string where = std::string(deferred ? "deferred" : "at once") +
                                ", thread " + std::to_string(t);
      if (deferred) {
        EXPECT_EQ(got[t], -1) << where << ": before the wait";
      }
      EXPECT_EQ(got[32 + t], 500 + t) << where << ": after the wait";
    }
  }
  cuda_emu::SetDeferredCopies(false);
}

// Waiting on a barrier no copy completes is reported, not a hang.
TEST_F(EmuAsync, WaitingForACopyNobodyIssuedIsALivelock) {
  cuda_emu::SetSpinTimeout(0.2);
  DeviceBuffer<int> out(32);
  EXPECT_EQ(LaunchBulkWaitForever(out.get()), cudaErrorLaunchFailure);
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("livelock"));
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("BulkWaitForeverKernel"));
}

TEST_F(EmuAsync, ExitingWithProductsNeverWaitedForIsAFault) {
  DeviceBuffer<int> out(128);
  EXPECT_EQ(LaunchWgmmaNeverWaited(out.get()), cudaErrorLaunchFailure);
  EXPECT_THAT(cuda_emu::LastReport(),
              HasSubstr("exited with 1 wgmma products never waited for"));
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("WgmmaNeverWaitedKernel"));
}

TEST_F(EmuAsync, TooManyGroupsInFlightIsAFault) {
  DeviceBuffer<int> out(128);
  EXPECT_EQ(LaunchWgmmaTooManyGroups(out.get()), cudaErrorLaunchFailure);
  EXPECT_THAT(cuda_emu::LastReport(),
              HasSubstr("more than 16 wgmma groups in flight"));
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("WgmmaTooManyGroupsKernel"));
}

}  // namespace
}  // namespace cuda_emu_test
