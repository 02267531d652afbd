#include "src/ops/cast.h"
#include "src/ops/cpu_parallel.h"

namespace gpt2::cpu {

template <typename To, typename From>
void Cast(To* dst, const From* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<To>(src[i]);
}

template void Cast<float, double>(float*, const double*, int64_t);
template void Cast<double, float>(double*, const float*, int64_t);
template void Cast<float, float>(float*, const float*, int64_t);
template void Cast<double, double>(double*, const double*, int64_t);

}  // namespace gpt2::cpu
