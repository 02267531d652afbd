// UpdateClaims: which pending update an op must wait for.
#include "src/backend/update_claims.h"

#include <gtest/gtest.h>

#include <vector>

namespace gpt2 {
namespace {

// Views into one float buffer, as the optimizer's slices are.
class UpdateClaimsTest : public ::testing::Test {
 protected:
  std::vector<float> params_ = std::vector<float>(100);
  std::vector<float> grads_ = std::vector<float>(100);
  std::vector<float> norm_ = std::vector<float>(1);
  Tensor P(int64_t at, int64_t n) {
    return Tensor{params_.data() + at, DType::kF32, n};
  }
  Tensor G(int64_t at, int64_t n) {
    return Tensor{grads_.data() + at, DType::kF32, n};
  }
  Tensor Norm() { return Tensor{norm_.data(), DType::kF32, 1}; }
  // Update k writes params [10k, 10k + 5) and [50 + 10k, 50 + 10k + 5),
  // reads the same gradients and the norm (as a layer's slices of two
  // tensors).
  void AddUpdates(UpdateClaims& claims, int count) {
    for (int k = 0; k < count; ++k) {
      for (int64_t at : {10 * k, 50 + 10 * k}) {
        claims.Add(k, params_.data() + at, 5 * sizeof(float), true);
        claims.Add(k, grads_.data() + at, 5 * sizeof(float), false);
      }
      claims.Add(k, norm_.data(), sizeof(float), false);
    }
  }
};

TEST_F(UpdateClaimsTest, ReadsOfWeightsWaitForTheirUpdateOnly) {
  UpdateClaims claims;
  AddUpdates(claims, 4);
  EXPECT_FALSE(claims.empty());
  EXPECT_EQ(claims.newest(), 3);
  // Reading update 2's first slice, its second, and both of update 0's.
  EXPECT_EQ(claims.Needed({}, {P(20, 5)}), 2);
  EXPECT_EQ(claims.Needed({}, {P(72, 1)}), 2);
  EXPECT_EQ(claims.Needed({}, {P(0, 5), P(50, 5)}), 0);
  // A range across updates 1 and 3: the newest.
  EXPECT_EQ(claims.Needed({}, {P(14, 20)}), 3);
  // The gaps between slices and what no update claims: nothing.
  EXPECT_EQ(claims.Needed({}, {P(5, 5)}), -1);
  EXPECT_EQ(claims.Needed({P(45, 5)}, {}), -1);
  std::vector<float> other(8);
  EXPECT_EQ(claims.Needed({Tensor{other.data(), DType::kF32, 8}}, {}), -1);
  // Touching edges are not overlaps.
  EXPECT_EQ(claims.Needed({}, {P(15, 5)}), -1);
  EXPECT_EQ(claims.Needed({}, {P(5, 5), P(25, 5)}), -1);
  // Empty tensors are skipped.
  EXPECT_EQ(claims.Needed({Tensor{}}, {Tensor{nullptr, DType::kF32, 0}}), -1);
}

TEST_F(UpdateClaimsTest, ReadsOfReadOnlyClaimsNeedNoWaitWritesDo) {
  UpdateClaims claims;
  AddUpdates(claims, 4);
  // Gradients and the norm are only read by the updates.
  EXPECT_EQ(claims.Needed({}, {G(0, 100), Norm()}), -1);
  // Writing a gradient waits for the update reading it; writing the norm
  // (read by every update) for the newest; writing all gradients too.
  EXPECT_EQ(claims.Needed({G(11, 2)}, {}), 1);
  EXPECT_EQ(claims.Needed({Norm()}, {}), 3);
  EXPECT_EQ(claims.Needed({G(0, 100)}, {}), 3);
  // Writing a weight waits as reading it does.
  EXPECT_EQ(claims.Needed({P(10, 1)}, {}), 1);
}

TEST_F(UpdateClaimsTest, JoinedUpdatesAreDropped) {
  UpdateClaims claims;
  AddUpdates(claims, 4);
  claims.Joined(1);
  EXPECT_EQ(claims.Needed({}, {P(0, 20)}), -1);
  EXPECT_EQ(claims.Needed({}, {P(0, 25)}), 2);
  EXPECT_EQ(claims.Needed({Norm()}, {}), 3);
  claims.Joined(3);
  EXPECT_TRUE(claims.empty());
  EXPECT_EQ(claims.newest(), -1);
  EXPECT_EQ(claims.Needed({P(0, 100)}, {G(0, 100)}), -1);
}

// Claims that partly overlap (not what the optimizer makes, but allowed):
// the search falls back to a scan and still finds every overlap.
TEST_F(UpdateClaimsTest, PartlyOverlappingClaimsAreStillFound) {
  UpdateClaims claims;
  claims.Add(0, params_.data() + 0, 40 * sizeof(float), true);
  claims.Add(1, params_.data() + 10, 5 * sizeof(float), true);
  claims.Add(2, params_.data() + 30, 30 * sizeof(float), false);
  EXPECT_EQ(claims.Needed({}, {P(12, 1)}), 1);
  EXPECT_EQ(claims.Needed({}, {P(35, 1)}), 0);
  EXPECT_EQ(claims.Needed({P(35, 1)}, {}), 2);
  EXPECT_EQ(claims.Needed({}, {P(45, 5)}), -1);
  EXPECT_EQ(claims.Needed({P(45, 5)}, {}), 2);
}

// A table's rows split in two updates (AdamWArgs::row_marks): update 1 the
// rows a batch gathers, update 3 the others (outside_gather), over the same
// range. A gathered read of the table (the encoder's of wte) waits for update
// 1 only, also after the claims are merged and searched; any other read or a
// write waits for update 3; gradients read by both are not outside_gather.
TEST_F(UpdateClaimsTest, GatheredReadsWaitForTheGatheredRowsOnly) {
  UpdateClaims claims;
  claims.Add(0, params_.data() + 80, 20 * sizeof(float), true);  // wpe
  for (int k : {1, 3}) {
    claims.Add(k, params_.data(), 40 * sizeof(float), true,
               /*outside_gather=*/k == 3);
    claims.Add(k, grads_.data(), 40 * sizeof(float), false);
  }
  claims.Add(2, params_.data() + 40, 20 * sizeof(float), true);  // a layer
  for (int pass = 0; pass < 2; ++pass) {  // the second after the sort
    EXPECT_EQ(claims.Needed({}, {}, {P(0, 40)}), 1);
    EXPECT_EQ(claims.Needed({}, {P(80, 20)}, {P(0, 40)}), 1);
    EXPECT_EQ(claims.Needed({}, {P(0, 40)}), 3);
    EXPECT_EQ(claims.Needed({P(10, 1)}, {}), 3);
    EXPECT_EQ(claims.Needed({G(0, 40)}, {}), 3);
    EXPECT_EQ(claims.Needed({}, {P(40, 1)}, {P(0, 40)}), 2);
  }
  // Once the gather has waited for update 1, other reads still wait for 3.
  claims.Joined(1);
  EXPECT_EQ(claims.Needed({}, {}, {P(0, 40)}), -1);
  EXPECT_EQ(claims.Needed({}, {P(0, 40)}), 3);
}

// Claims added after a search (the next update of the same step) are found.
TEST_F(UpdateClaimsTest, ClaimsAddedAfterASearchCount) {
  UpdateClaims claims;
  AddUpdates(claims, 2);
  EXPECT_EQ(claims.Needed({}, {P(20, 5)}), -1);
  claims.Add(2, params_.data() + 20, 5 * sizeof(float), true);
  EXPECT_EQ(claims.Needed({}, {P(20, 5)}), 2);
  claims.Clear();
  EXPECT_TRUE(claims.empty());
}

}  // namespace
}  // namespace gpt2
