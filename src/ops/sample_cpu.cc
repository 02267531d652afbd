#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "src/core/error.h"
#include "src/ops/sample.h"

namespace gpt2::cpu {
namespace {

uint32_t KeyOf(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return SampleKey(bits);
}

using Candidate = std::pair<uint32_t, int>;  // key, id

// Candidates in id order into rank order (key descending, ties by id: the
// order std::sort by key descending then id gives) by a stable LSD radix sort
// on the key, three 11-bit digits: for the whole vocabulary (top-p with top_k
// >= V) ~10x fewer steps than the comparison sort.
void SortIdOrderedByRank(std::vector<Candidate>& v) {
  static thread_local std::vector<Candidate> spare;
  spare.resize(v.size());
  for (int shift = 0; shift < 32; shift += 11) {
    uint32_t count[2049] = {};
    for (const Candidate& c : v) ++count[((~c.first >> shift) & 2047) + 1];
    for (int d = 0; d < 2048; ++d) count[d + 1] += count[d];
    for (const Candidate& c : v) spare[count[(~c.first >> shift) & 2047]++] = c;
    v.swap(spare);
  }
}

}  // namespace

template <typename T>
int32_t SampleTopKRow(const T* logits, int V, int top_k, double temperature,
                      double top_p, double u) {
  GPT2_CHECK(V >= 1 && top_k >= 1 && temperature > 0.0 && top_p > 0.0 &&
             top_p <= 1.0);
  const int k = std::min(top_k, V);
  // The k best (key, id) in one pass: a heap with the worst kept on top, which
  // most logits lose to at the first comparison. Logits are ranked as floats
  // (bf16 and f32 exactly; f64 rounded).
  const auto better = [](const Candidate& a, const Candidate& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  static thread_local std::vector<Candidate> kept;
  kept.clear();
  const bool every_id = k == V;  // then `kept` is in id order, not a heap
  for (int i = 0; i < V; ++i) {
    const Candidate c{KeyOf(static_cast<float>(logits[i])), i};
    if (every_id) {
      kept.push_back(c);
    } else if (static_cast<int>(kept.size()) < k) {
      kept.push_back(c);
      std::push_heap(kept.begin(), kept.end(), better);
    } else if (better(c, kept.front())) {
      std::pop_heap(kept.begin(), kept.end(), better);
      kept.back() = c;
      std::push_heap(kept.begin(), kept.end(), better);
    }
  }
  const Candidate best = *std::min_element(kept.begin(), kept.end(), better);
  const uint32_t minus_inf = KeyOf(-INFINITY);
  if (best.first == minus_inf) return 0;  // nothing but -inf and NaN
  const double top = static_cast<float>(logits[best.second]);
  // A kept id's weight (NaN and -inf: none).
  const auto weight_of = [&](const Candidate& c) {
    return c.first == minus_inf ? 0.0
           : c.first == best.first
               ? 1.0
               : std::exp((static_cast<float>(logits[c.second]) - top) /
                          temperature);
  };
  // The nucleus: the kept ids in rank order until their weights reach top_p
  // of the whole; the rest leave `kept`.
  if (top_p < 1.0) {
    if (every_id) {
      SortIdOrderedByRank(kept);
    } else {
      std::sort(kept.begin(), kept.end(), better);
    }
    double all = 0.0;
    for (const Candidate& c : kept) all += weight_of(c);
    double prefix = 0.0;
    size_t n = 0;
    while (n < kept.size() && (n == 0 || prefix < top_p * all)) {
      prefix += weight_of(kept[n++]);
    }
    kept.resize(n);
  }
  // Weights in id order; the sums run in id order (as over the whole row
  // with zeros elsewhere).
  std::sort(kept.begin(), kept.end(),
            [](const Candidate& a, const Candidate& b) {
              return a.second < b.second;
            });
  static thread_local std::vector<double> weights;
  weights.assign(kept.size(), 0.0);
  double total = 0.0;
  for (size_t j = 0; j < kept.size(); ++j) {
    weights[j] = weight_of(kept[j]);
    total += weights[j];
  }
  const double target = u * total;
  double running = 0.0;
  int last_positive = best.second;
  for (size_t j = 0; j < kept.size(); ++j) {
    if (weights[j] <= 0.0) continue;
    running += weights[j];
    last_positive = kept[j].second;
    if (target < running) return kept[j].second;
  }
  return last_positive;
}

template <typename T>
void SampleTopK(int32_t* tokens, const T* logits, const int32_t* seeds,
                int32_t counter, int rows, int V, int Vp, int top_k,
                double temperature, double top_p) {
#pragma omp parallel for if (rows > 1) schedule(static)
  for (int b = 0; b < rows; ++b) {
    const double u = SampleUniform(JoinSeed(seeds + 2 * b), counter);
    tokens[b] = SampleTopKRow(logits + int64_t{b} * Vp, V, top_k, temperature,
                              top_p, u);
  }
}

#define GPT2_INSTANTIATE(T)                                                \
  template int32_t SampleTopKRow<T>(const T*, int, int, double, double,    \
                                    double);                               \
  template void SampleTopK<T>(int32_t*, const T*, const int32_t*, int32_t, \
                              int, int, int, int, double, double);
GPT2_INSTANTIATE(float)
GPT2_INSTANTIATE(double)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cpu
