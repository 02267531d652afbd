#include <cmath>

#include "src/ops/cpu_parallel.h"
#include "src/ops/gelu.h"

namespace gpt2::cpu {
namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kCubic = 0.044715;
}  // namespace

template <typename T>
void GeluForward(T* out, const T* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) {
    const T x = inp[i];
    const T inner = T(kSqrt2OverPi) * (x + T(kCubic) * x * x * x);
    out[i] = T(0.5) * x * (T(1) + std::tanh(inner));
  }
}

template <typename T>
void GeluBackward(T* dinp, const T* inp, const T* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) {
    const T x = inp[i];
    const T inner = T(kSqrt2OverPi) * (x + T(kCubic) * x * x * x);
    const T tanh_inner = std::tanh(inner);
    const T sech2 = T(1) - tanh_inner * tanh_inner;
    const T grad =
        T(0.5) * (T(1) + tanh_inner) +
        T(0.5) * x * sech2 * T(kSqrt2OverPi) * (T(1) + T(3 * kCubic) * x * x);
    dinp[i] += grad * dout[i];
  }
}

template void GeluForward<float>(float*, const float*, int64_t);
template void GeluForward<double>(double*, const double*, int64_t);
template void GeluBackward<float>(float*, const float*, const float*, int64_t);
template void GeluBackward<double>(double*, const double*, const double*,
                                   int64_t);

}  // namespace gpt2::cpu
