// The configuration search's budget split (src/ops/matmul_search.h): shares
// add up to the budget (or to all there is), none above what an algorithm
// has, and a share spread over an algorithm's list, first to last.
#include "src/ops/matmul_search.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace gpt2 {
namespace {

size_t Sum(const std::vector<size_t>& v) {
  return std::accumulate(v.begin(), v.end(), size_t{0});
}

TEST(MatmulSearch, SpreadIndicesCoverTheListEvenly) {
  EXPECT_EQ(SpreadIndices(5, 8), (std::vector<size_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(SpreadIndices(10, 5), (std::vector<size_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(SpreadIndices(7, 3), (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(SpreadIndices(0, 3), std::vector<size_t>{});
  EXPECT_EQ(SpreadIndices(4, 0), std::vector<size_t>{});
  // Strictly ascending, within range, reaching past the middle.
  const std::vector<size_t> s = SpreadIndices(1000, 7);
  ASSERT_EQ(s.size(), 7u);
  for (size_t i = 1; i < s.size(); ++i) EXPECT_LT(s[i - 1], s[i]);
  EXPECT_GT(s.back(), 800u);
  EXPECT_LT(s.back(), 1000u);
}

TEST(MatmulSearch, ShareBudgetFillsEqualSharesUpToEachCount) {
  // Equal shares where every algorithm has enough.
  EXPECT_EQ(ShareBudget({100, 100, 100, 100}, 256),
            (std::vector<size_t>{64, 64, 64, 64}));
  // What the small ones leave goes to the others.
  EXPECT_EQ(ShareBudget({3, 500, 0, 10}, 256),
            (std::vector<size_t>{3, 243, 0, 10}));
  // Less than the budget in all: everything.
  EXPECT_EQ(ShareBudget({3, 4}, 256), (std::vector<size_t>{3, 4}));
  // A budget smaller than the number of algorithms: one each, first ones.
  EXPECT_EQ(ShareBudget({9, 9, 9}, 2), (std::vector<size_t>{1, 1, 0}));
  const std::vector<size_t> counts = {17, 1, 250, 33, 90, 0, 5};
  const std::vector<size_t> share = ShareBudget(counts, 128);
  EXPECT_EQ(Sum(share), 128u);
  for (size_t i = 0; i < counts.size(); ++i) EXPECT_LE(share[i], counts[i]);
}

}  // namespace
}  // namespace gpt2
