// The emulated asynchrony of Hopper's warpgroup products (src/cuda/wgmma.cuh):
// a product runs at the wait that retires its group, reading its operands
// (shared tiles, A registers) then, so a kernel that reads accumulators too
// early or overwrites an operand in flight computes wrong values here.
// Kernels: wgmma_kernels.cu. Runs on the CPU emulator.
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

using EmuWgmma = EmuTest;

TEST_F(EmuWgmma, ProductsRunAtTheWaitThatRetiresTheirGroup) {
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

TEST_F(EmuWgmma, TooManyGroupsInFlightIsAFault) {
  DeviceBuffer<int> out(128);
  EXPECT_EQ(LaunchWgmmaTooManyGroups(out.get()), cudaErrorLaunchFailure);
  EXPECT_THAT(cuda_emu::LastReport(),
              HasSubstr("more than 16 wgmma groups in flight"));
  EXPECT_THAT(cuda_emu::LastReport(), HasSubstr("WgmmaTooManyGroupsKernel"));
}

}  // namespace
}  // namespace cuda_emu_test
