#include "src/ops/cpu_parallel.h"
#include "src/ops/residual.h"

namespace gpt2::cpu {

template <typename T>
void ResidualForward(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void AddInPlace(T* dst, const T* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

template void ResidualForward<float>(float*, const float*, const float*,
                                     int64_t);
template void ResidualForward<double>(double*, const double*, const double*,
                                      int64_t);
template void AddInPlace<float>(float*, const float*, int64_t);
template void AddInPlace<double>(double*, const double*, int64_t);

}  // namespace gpt2::cpu
