#include <cmath>

#include "src/ops/classifier.h"
#include "src/ops/cpu_parallel.h"

namespace gpt2::cpu {

template <typename T>
void ClassifierForward(T* logits, T* losses, const int32_t* targets, int64_t N,
                       int V, int Vp, double dloss, bool write_grad) {
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinWork)
  for (int64_t n = 0; n < N; ++n) {
    T* row = logits + n * Vp;
    double max_logit = -INFINITY;
    for (int v = 0; v < V; ++v)
      max_logit = row[v] > max_logit ? row[v] : max_logit;
    double sum = 0.0;
    for (int v = 0; v < V; ++v) sum += std::exp(row[v] - max_logit);
    const double log_sum = std::log(sum) + max_logit;
    const int target = targets[n];
    losses[n] = static_cast<T>(log_sum - row[target]);
    if (!write_grad) continue;
    for (int v = 0; v < V; ++v) {
      const double p = std::exp(row[v] - log_sum);
      row[v] = static_cast<T>((p - (v == target ? 1.0 : 0.0)) * dloss);
    }
    for (int v = V; v < Vp; ++v) row[v] = T(0);
  }
}

template <typename T>
void AccumulateSum(T* acc, const T* x, int64_t n, double scale) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  acc[0] += static_cast<T>(sum * scale);
}

template void ClassifierForward<float>(float*, float*, const int32_t*, int64_t,
                                       int, int, double, bool);
template void ClassifierForward<double>(double*, double*, const int32_t*,
                                        int64_t, int, int, double, bool);
template void AccumulateSum<float>(float*, const float*, int64_t, double);
template void AccumulateSum<double>(double*, const double*, int64_t, double);

}  // namespace gpt2::cpu
