#include <cmath>

#include "src/ops/cpu_parallel.h"
#include "src/ops/layernorm.h"

namespace gpt2::cpu {

template <typename T>
void LayerNormForward(T* out, T* mean, T* rstd, const T* inp, const T* weight,
                      const T* bias, int64_t N, int C) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinWork)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * C;
    double sum = 0.0;
    for (int c = 0; c < C; ++c) sum += x[c];
    const double m = sum / C;
    double var = 0.0;
    for (int c = 0; c < C; ++c) {
      const double d = x[c] - m;
      var += d * d;
    }
    const double s = 1.0 / std::sqrt(var / C + kLayerNormEps);
    T* y = out + n * C;
    for (int c = 0; c < C; ++c) {
      y[c] = static_cast<T>((x[c] - m) * s) * weight[c] + bias[c];
    }
    mean[n] = static_cast<T>(m);
    rstd[n] = static_cast<T>(s);
  }
}

template <typename T>
void LayerNormBackward(T* dinp, T* dweight, T* dbias, const T* dout,
                       const T* inp, const T* weight, const T* mean,
                       const T* rstd, int64_t N, int C) {
  // dinp: rows are independent.
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinWork)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * C;
    const T* dy = dout + n * C;
    const double m = mean[n], s = rstd[n];
    double dnorm_mean = 0.0, dnorm_norm_mean = 0.0;
    for (int c = 0; c < C; ++c) {
      const double norm = (x[c] - m) * s;
      const double dnorm = double{weight[c]} * dy[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    T* dx = dinp + n * C;
    for (int c = 0; c < C; ++c) {
      const double norm = (x[c] - m) * s;
      const double dnorm = double{weight[c]} * dy[c];
      dx[c] +=
          static_cast<T>((dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
    }
  }
  // dweight, dbias: each channel block owned by one thread, rows summed in
  // order.
  constexpr int kBlock = 16;
  const int num_blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinWork)
  for (int blk = 0; blk < num_blocks; ++blk) {
    const int c0 = blk * kBlock;
    const int c1 = c0 + kBlock < C ? c0 + kBlock : C;
    double dw[kBlock] = {}, db[kBlock] = {};
    for (int64_t n = 0; n < N; ++n) {
      const T* x = inp + n * C;
      const T* dy = dout + n * C;
      const double m = mean[n], s = rstd[n];
      for (int c = c0; c < c1; ++c) {
        dw[c - c0] += (x[c] - m) * s * dy[c];
        db[c - c0] += dy[c];
      }
    }
    for (int c = c0; c < c1; ++c) {
      dweight[c] += static_cast<T>(dw[c - c0]);
      dbias[c] += static_cast<T>(db[c - c0]);
    }
  }
}

#define GPT2_INSTANTIATE(T)                                                    \
  template void LayerNormForward<T>(T*, T*, T*, const T*, const T*, const T*,  \
                                    int64_t, int);                             \
  template void LayerNormBackward<T>(T*, T*, T*, const T*, const T*, const T*, \
                                     const T*, const T*, int64_t, int);
GPT2_INSTANTIATE(float)
GPT2_INSTANTIATE(double)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cpu
