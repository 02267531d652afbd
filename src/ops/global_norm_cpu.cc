#include <vector>

#include "src/ops/cpu_parallel.h"
#include "src/ops/global_norm.h"

namespace gpt2::cpu {

template <typename T>
void SumSquares(T* out, const T* x, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
#pragma omp parallel for schedule(static) if (n >= kParallelMinWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
    double sum = 0.0;
    for (int64_t i = c * kChunk; i < end; ++i) sum += double{x[i]} * x[i];
    partial[c] = sum;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  out[0] = static_cast<T>(total);
}

template void SumSquares<float>(float*, const float*, int64_t);
template void SumSquares<double>(double*, const double*, int64_t);

}  // namespace gpt2::cpu
