// Emulated warp collectives (shuffles, votes, reductions, __syncwarp) checked
// against the results the CUDA C++ Programming Guide specifies, including
// width < 32 and partial masks. Runs on the CPU emulator, not a GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tests/cuda_emu/emu_test_util.h"
#include "tests/cuda_emu/kernels.h"

namespace cuda_emu_test {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kOutside = -777;

class EmuWarp : public EmuTest {
 protected:
  // Runs one warp op; `in` defaults to 100 + lane.
  std::vector<int> Run(int op, unsigned mask, int width,
                       const std::vector<int>& param,
                       std::vector<int> in = {}) {
    if (in.empty()) {
      for (int l = 0; l < 32; ++l) in.push_back(100 + l);
    }
    DeviceBuffer<int> d_param(param), d_in(in), d_out(32);
    EXPECT_EQ(
        LaunchWarpOp(op, mask, width, d_param.get(), d_in.get(), d_out.get()),
        cudaSuccess)
        << cuda_emu::LastReport();
    return d_out.Download();
  }
  static std::vector<int> Same(int p) { return std::vector<int>(32, p); }
  static int Value(int lane) { return 100 + lane; }
};

// __shfl_sync: "returns the value of var held by the thread whose ID is given
// by srcLane. If width is less than warpSize then each subsection of the warp
// behaves as a separate entity with a starting logical lane ID of 0. If
// srcLane is outside the range [0:width-1], the value returned corresponds to
// the value of var held by the srcLane modulo width (i.e. within the same
// subsection)."
TEST_F(EmuWarp, ShflBroadcastAndModuloWidth) {
  EXPECT_EQ(Run(kOpShfl, kFull, 32, Same(5)), std::vector<int>(32, Value(5)));
  for (int width : {1, 2, 4, 8, 16, 32}) {
    for (int src : {0, 3, 7, 35}) {
      std::vector<int> got = Run(kOpShfl, kFull, width, Same(src));
      for (int l = 0; l < 32; ++l) {
        ASSERT_EQ(got[l], Value(l / width * width + src % width))
            << "width " << width << " src " << src << " lane " << l;
      }
    }
  }
}

TEST_F(EmuWarp, ShflPerLaneSourceRotates) {
  std::vector<int> param(32);
  for (int l = 0; l < 32; ++l) param[l] = (l + 1) % 32;
  std::vector<int> got = Run(kOpShfl, kFull, 32, param);
  for (int l = 0; l < 32; ++l) ASSERT_EQ(got[l], Value((l + 1) % 32));
}

// __shfl_up_sync: "calculates a source lane ID by subtracting delta from the
// caller's lane ID ... the source lane index will not wrap around the value of
// width, so effectively the lower delta lanes will be unchanged."
TEST_F(EmuWarp, ShflUp) {
  for (int width : {4, 8, 32}) {
    for (int delta : {1, 2, 3}) {
      std::vector<int> got = Run(kOpShflUp, kFull, width, Same(delta));
      for (int l = 0; l < 32; ++l) {
        const int want = l % width >= delta ? Value(l - delta) : Value(l);
        ASSERT_EQ(got[l], want)
            << "width " << width << " delta " << delta << " lane " << l;
      }
    }
  }
}

// __shfl_down_sync: "adds delta to the caller's lane ID ... the upper delta
// lanes will remain unchanged."
TEST_F(EmuWarp, ShflDown) {
  for (int width : {2, 16, 32}) {
    for (int delta : {1, 5, 16}) {
      std::vector<int> got = Run(kOpShflDown, kFull, width, Same(delta));
      for (int l = 0; l < 32; ++l) {
        const int want =
            l % width + delta < width ? Value(l + delta) : Value(l);
        ASSERT_EQ(got[l], want)
            << "width " << width << " delta " << delta << " lane " << l;
      }
    }
  }
}

// __shfl_xor_sync: "If width is less than warpSize then each group of width
// consecutive threads are able to access elements from earlier groups of
// threads, however if they attempt to access elements from later groups of
// threads their own value of var will be returned."
TEST_F(EmuWarp, ShflXorButterflyAndEarlierGroups) {
  for (int lane_mask : {1, 2, 16}) {
    std::vector<int> got = Run(kOpShflXor, kFull, 32, Same(lane_mask));
    for (int l = 0; l < 32; ++l) ASSERT_EQ(got[l], Value(l ^ lane_mask));
  }
  const int width = 8, lane_mask = 8;
  std::vector<int> got = Run(kOpShflXor, kFull, width, Same(lane_mask));
  for (int l = 0; l < 32; ++l) {
    const int target = l ^ lane_mask;
    const int want = target / width > l / width ? Value(l) : Value(target);
    ASSERT_EQ(got[l], want) << "lane " << l;
  }
}

// Only the lanes of the mask take part; with the even lanes, xor 2 stays
// inside the mask.
TEST_F(EmuWarp, PartialMaskShuffles) {
  const unsigned even = 0x55555555u;
  std::vector<int> got = Run(kOpShflXor, even, 32, Same(2));
  for (int l = 0; l < 32; ++l) {
    ASSERT_EQ(got[l], l % 2 == 0 ? Value(l ^ 2) : kOutside) << l;
  }
  const unsigned low = 0x0000ffffu;
  got = Run(kOpShflDown, low, 16, Same(4));
  for (int l = 0; l < 32; ++l) {
    const int want =
        l >= 16 ? kOutside : (l + 4 < 16 ? Value(l + 4) : Value(l));
    ASSERT_EQ(got[l], want) << l;
  }
}

// Reading a lane outside the mask is undefined in CUDA; the emulator returns
// all-ones bits so such reads cannot go unnoticed.
TEST_F(EmuWarp, ReadingLaneOutsideMaskYieldsPoison) {
  std::vector<int> got = Run(kOpShfl, 0x0000ffffu, 32, Same(20));
  for (int l = 0; l < 16; ++l) ASSERT_EQ(got[l], -1) << l;
}

TEST_F(EmuWarp, ShuffleOfEachValueType) {
  DeviceBuffer<float> f(32);
  DeviceBuffer<double> d(32);
  DeviceBuffer<long long> ll(32);
  DeviceBuffer<__nv_bfloat16> b(32);
  ASSERT_EQ(LaunchShuffleTypes(f.get(), d.get(), ll.get(), b.get()),
            cudaSuccess);
  std::vector<float> hf = f.Download();
  std::vector<double> hd = d.Download();
  std::vector<long long> hll = ll.Download();
  std::vector<__nv_bfloat16> hb = b.Download();
  for (int l = 0; l < 32; ++l) {
    const int s = l ^ 1;
    EXPECT_EQ(hf[l], 1.5f * s);
    EXPECT_EQ(hd[l], 0.25 * s + 1e-12);
    EXPECT_EQ(hll[l], (1ll << 40) + s);
    EXPECT_EQ(__bfloat162float(hb[l]), 2.0f * s);
  }
}

TEST_F(EmuWarp, WarpsOfTwoDimensionalBlockAreLinearized) {
  DeviceBuffer<int> out(64);
  ASSERT_EQ(LaunchWarpOf2dBlock(out.get()), cudaSuccess);
  std::vector<int> got = out.Download();
  for (int i = 0; i < 64; ++i) ASSERT_EQ(got[i], i / 32 * 32) << i;
}

// __ballot_sync: "bit N set if predicate is non-zero for the Nth thread of the
// warp and the Nth thread is active"; __any/__all over the mask's threads.
TEST_F(EmuWarp, Votes) {
  std::vector<int> pred(32);
  for (int l = 0; l < 32; ++l) pred[l] = l % 4 == 0 ? 7 : 0;
  std::vector<int> got = Run(kOpBallot, kFull, 32, Same(0), pred);
  for (int l = 0; l < 32; ++l)
    ASSERT_EQ(static_cast<unsigned>(got[l]), 0x11111111u);

  const unsigned even = 0x55555555u;
  got = Run(kOpBallot, even, 32, Same(0), pred);
  for (int l = 0; l < 32; l += 2)
    ASSERT_EQ(static_cast<unsigned>(got[l]), 0x11111111u);

  got = Run(kOpAny, kFull, 32, Same(0), pred);
  for (int l = 0; l < 32; ++l) ASSERT_EQ(got[l], 1);
  got = Run(kOpAll, kFull, 32, Same(0), pred);
  for (int l = 0; l < 32; ++l) ASSERT_EQ(got[l], 0);
  // Only lanes 0, 4, 8, ... take part: all of them have a true predicate.
  got = Run(kOpAll, 0x11111111u, 32, Same(0), pred);
  for (int l = 0; l < 32; l += 4) ASSERT_EQ(got[l], 1);
  got = Run(kOpAny, 0x22222222u, 32, Same(0), pred);
  for (int l = 1; l < 32; l += 4) ASSERT_EQ(got[l], 0);
}

TEST_F(EmuWarp, ReduceAndMatch) {
  std::vector<int> got = Run(kOpReduceAdd, kFull, 32, Same(0));
  int sum = 0;
  for (int l = 0; l < 32; ++l) sum += Value(l);
  for (int l = 0; l < 32; ++l) ASSERT_EQ(got[l], sum);
  std::vector<int> in(32);
  for (int l = 0; l < 32; ++l) in[l] = (l * 13) % 7 - 3;
  got = Run(kOpReduceMax, 0x0000ff00u, 32, Same(0), in);
  int max = -100;
  for (int l = 8; l < 16; ++l) max = std::max(max, in[l]);
  for (int l = 8; l < 16; ++l) ASSERT_EQ(got[l], max);
  for (int l = 0; l < 32; ++l) in[l] = l % 3;
  got = Run(kOpMatchAny, kFull, 32, Same(0), in);
  for (int l = 0; l < 32; ++l) {
    unsigned want = 0;
    for (int k = 0; k < 32; ++k) want |= (k % 3 == l % 3 ? 1u : 0u) << k;
    ASSERT_EQ(static_cast<unsigned>(got[l]), want) << l;
  }
}

TEST_F(EmuWarp, SyncWarpWithPartialMask) {
  std::vector<int> got = Run(kOpSyncWarp, 0xf0f0f0f0u, 32, Same(0));
  for (int l = 0; l < 32; ++l) {
    ASSERT_EQ(got[l], (0xf0f0f0f0u >> l) & 1u ? Value(l) : kOutside);
  }
}

// "For all non-exited threads in mask": votes and __syncwarp skip lanes that
// exited (before or while the others wait) or that the block does not have.
TEST_F(EmuWarp, VotesAndSyncWarpSkipExitedLanes) {
  for (cuda_emu::Schedule s :
       {cuda_emu::Schedule::kForward, cuda_emu::Schedule::kReverse}) {
    cuda_emu::SetSchedule(s);
    DeviceBuffer<int> out(std::vector<int>(40, 0));
    ASSERT_EQ(LaunchVoteAfterExit(40, 36, out.get()), cudaSuccess)
        << cuda_emu::LastReport();
    std::vector<int> got = out.Download();
    for (int t = 0; t < 32; ++t)
      ASSERT_EQ(static_cast<unsigned>(got[t]), 0x55555555u) << t;
    for (int t = 32; t < 36; ++t)
      ASSERT_EQ(static_cast<unsigned>(got[t]), 0x5u) << t;
    for (int t = 36; t < 40; ++t) ASSERT_EQ(got[t], 0) << t;
  }
}

// After `if (t >= live) return;` the remaining lanes see exactly themselves.
TEST_F(EmuWarp, ActiveMaskAfterEarlyExit) {
  DeviceBuffer<int> out(40);
  ASSERT_EQ(LaunchActiveMask(40, 20, out.get()), cudaSuccess)
      << cuda_emu::LastReport();
  std::vector<int> got = out.Download();
  for (int t = 0; t < 20; ++t)
    ASSERT_EQ(static_cast<unsigned>(got[t]), 0x000fffffu) << t;
  for (int t = 20; t < 40; ++t) ASSERT_EQ(got[t], -1);
  // A partial last warp: 40 threads, all live.
  ASSERT_EQ(LaunchActiveMask(40, 40, out.get()), cudaSuccess);
  got = out.Download();
  for (int t = 32; t < 40; ++t)
    ASSERT_EQ(static_cast<unsigned>(got[t]), 0xffu) << t;
}

// cuda_emu::WarpGather, the emulator's own collective (the emulated
// tensor-core fragments and warp reductions exchange their values through
// it): every lane of the mask receives every lane's bytes, all-ones bytes
// (-1 as int) from the lanes outside it; in every schedule.
TEST_F(EmuWarp, GatherGivesEveryLaneEveryLanesBytes) {
  for (cuda_emu::Schedule s :
       {cuda_emu::Schedule::kForward, cuda_emu::Schedule::kReverse,
        cuda_emu::Schedule::kRandom}) {
    cuda_emu::SetSchedule(s, 7);
    for (unsigned mask : {kFull, 0x0000ffffu, 0x80000001u, 0x00000004u}) {
      DeviceBuffer<int> out(32 * 32 * 3);
      ASSERT_EQ(LaunchGather(mask, out.get()), cudaSuccess)
          << cuda_emu::LastReport();
      const std::vector<int> got = out.Download();
      for (int l = 0; l < 32; ++l) {
        for (int k = 0; k < 32; ++k) {
          const int* f = &got[32 * 3 * l + 3 * k];
          SCOPED_TRACE("mask " + std::to_string(mask) + " lane " +
                       std::to_string(l) + " from lane " + std::to_string(k));
          if (!((mask >> l) & 1u)) {  // never called
            EXPECT_EQ(f[0], kOutside);
          } else if ((mask >> k) & 1u) {
            EXPECT_EQ(f[0], k);
            EXPECT_EQ(f[1], k * k);
            EXPECT_EQ(f[2], -k);
          } else {  // poison
            EXPECT_EQ(f[0], -1);
            EXPECT_EQ(f[1], -1);
            EXPECT_EQ(f[2], -1);
          }
        }
      }
    }
  }
}

// A lane's own bytes may lie inside the buffer it receives into.
TEST_F(EmuWarp, GatherIntoTheBufferItGivesFrom) {
  DeviceBuffer<int> out(32 * 32);
  ASSERT_EQ(LaunchGatherInPlace(out.get()), cudaSuccess)
      << cuda_emu::LastReport();
  const std::vector<int> got = out.Download();
  for (int l = 0; l < 32; ++l) {
    for (int k = 0; k < 32; ++k) ASSERT_EQ(got[32 * l + k], 100 + k) << l;
  }
}

}  // namespace
}  // namespace cuda_emu_test
