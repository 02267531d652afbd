#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

}  // namespace

template <typename T>
int32_t SampleTopKRow(const T* logits, int V, int top_k, double temperature,
                      double u) {
  GPT2_CHECK(V >= 1 && top_k >= 1 && temperature > 0.0);
  const int k = std::min(top_k, V);
  // Logits are ranked as floats (bf16 and f32 exactly; f64 rounded).
  std::vector<float> values(V);
  std::vector<uint32_t> keys(V);
  for (int i = 0; i < V; ++i) {
    values[i] = static_cast<float>(logits[i]);
    keys[i] = KeyOf(values[i]);
  }
  std::vector<int> order(V);
  for (int i = 0; i < V; ++i) order[i] = i;
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) {
                      return keys[a] > keys[b] || (keys[a] == keys[b] && a < b);
                    });
  const uint32_t top_key = keys[order[0]], minus_inf = KeyOf(-INFINITY);
  if (top_key == minus_inf) return 0;  // nothing but -inf and NaN
  const double top = values[order[0]];
  std::vector<double> weights(V, 0.0);
  double total = 0.0;
  for (int r = 0; r < k; ++r) {
    const int i = order[r];
    if (keys[i] == minus_inf) continue;  // NaN too: no weight
    weights[i] =
        keys[i] == top_key ? 1.0 : std::exp((values[i] - top) / temperature);
  }
  for (int i = 0; i < V; ++i) total += weights[i];
  const double target = u * total;
  double running = 0.0;
  int last_positive = order[0];
  for (int i = 0; i < V; ++i) {
    if (weights[i] <= 0.0) continue;
    running += weights[i];
    last_positive = i;
    if (target < running) return i;
  }
  return last_positive;
}

template <typename T>
void SampleTopK(int32_t* tokens, const T* logits, const int32_t* seeds,
                int32_t counter, int rows, int V, int Vp, int top_k,
                double temperature) {
  for (int b = 0; b < rows; ++b) {
    const double u = SampleUniform(JoinSeed(seeds + 2 * b), counter);
    tokens[b] =
        SampleTopKRow(logits + int64_t{b} * Vp, V, top_k, temperature, u);
  }
}

#define GPT2_INSTANTIATE(T)                                                \
  template int32_t SampleTopKRow<T>(const T*, int, int, double, double);   \
  template void SampleTopK<T>(int32_t*, const T*, const int32_t*, int32_t, \
                              int, int, int, int, double);
GPT2_INSTANTIATE(float)
GPT2_INSTANTIATE(double)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cpu
