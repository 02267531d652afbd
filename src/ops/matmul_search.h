// How the cuBLASLt configuration search (GPT2_MATMUL_AUTOTUNE_SEARCH=1,
// src/ops/matmul_cublaslt.cc) shares its budget of timed configurations among
// cuBLASLt's algorithms: every algorithm gets an equal share, and within one
// algorithm the share is spread evenly over its accepted configurations
// (enumerated split-K outermost, then swizzle, tile, stages), so that a cap
// keeps some of every split and tile, not all of the first ones'. Host-only.
#ifndef GPT2_OPS_MATMUL_SEARCH_H_
#define GPT2_OPS_MATMUL_SEARCH_H_

#include <algorithm>
#include <cstddef>
#include <vector>

namespace gpt2 {

// min(n, cap) indices into n items, ascending, spread evenly (the first
// included): all of them when n <= cap.
inline std::vector<size_t> SpreadIndices(size_t n, size_t cap) {
  std::vector<size_t> out;
  if (n == 0 || cap == 0) return out;
  if (n <= cap) {
    for (size_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  for (size_t j = 0; j < cap; ++j) out.push_back(j * n / cap);
  return out;
}

// How many of each algorithm's `counts` configurations to time within
// `budget` in all: equal shares, what an algorithm with fewer leaves given to
// the others (water-filling), never more than it has.
inline std::vector<size_t> ShareBudget(const std::vector<size_t>& counts,
                                       size_t budget) {
  std::vector<size_t> share(counts.size(), 0);
  size_t left = budget;
  for (;;) {
    size_t open = 0;
    for (size_t i = 0; i < counts.size(); ++i) open += share[i] < counts[i];
    if (open == 0 || left == 0) return share;
    const size_t each = left / open > 0 ? left / open : 1;
    for (size_t i = 0; i < counts.size() && left > 0; ++i) {
      if (share[i] >= counts[i]) continue;
      const size_t add = std::min(each, counts[i] - share[i]);
      share[i] += add;
      left -= add;
    }
  }
}

}  // namespace gpt2

#endif  // GPT2_OPS_MATMUL_SEARCH_H_
