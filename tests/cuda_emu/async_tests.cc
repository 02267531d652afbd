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

TEST_F(EmuAsync, TooManyGroupsInFlightIsAFault) {
  DeviceBuffer<int> out(128);
  EXPECT_EQ(LaunchWgmmaTooManyGroups(out.get()), cudaErrorLaunchFailure);
  EXPECT_THAT(cuda_emu::LastReport(),
              HasSubstr("more than 16 wgmma groups in flight"));
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("WgmmaTooManyGroupsKernel"));
}

}  // namespace
}  // namespace cuda_emu_test
