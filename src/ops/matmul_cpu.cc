#include "src/ops/cpu_parallel.h"
#include "src/ops/gemm_cpu.h"
#include "src/ops/matmul.h"

namespace gpt2::cpu {

template <typename T>
void MatmulForward(T* out, const T* inp, const T* weight, const T* bias,
                   int64_t N, int C, int OC) {
#pragma omp parallel for schedule(static) if (N * OC >= kParallelMinWork)
  for (int64_t n = 0; n < N; ++n) {
    T* row = out + n * OC;
    for (int o = 0; o < OC; ++o) row[o] = bias != nullptr ? bias[o] : T(0);
  }
  // B[k][j] = weight[j][k]: the weight read transposed.
  GemmAccumulate<T>(N, OC, C, inp, C, 1, weight, 1, C, out, OC);
}

template <typename T>
void MatmulBackward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                    const T* weight, int64_t N, int C, int OC) {
  if (dinp != nullptr) {
    GemmAccumulate<T>(N, C, OC, dout, OC, 1, weight, C, 1, dinp, C);
  }
  // A[i][k] = dout[k][i]: dout read transposed.
  GemmAccumulate<T>(OC, C, N, dout, 1, OC, inp, C, 1, dweight, C);
  if (dbias != nullptr) {
    constexpr int kBlock = 64;
    const int num_blocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (N * OC >= kParallelMinWork)
    for (int blk = 0; blk < num_blocks; ++blk) {
      const int o0 = blk * kBlock;
      const int o1 = o0 + kBlock < OC ? o0 + kBlock : OC;
      double sum[kBlock] = {};
      for (int64_t n = 0; n < N; ++n) {
        const T* row = dout + n * OC;
        for (int o = o0; o < o1; ++o) sum[o - o0] += row[o];
      }
      for (int o = o0; o < o1; ++o) dbias[o] += static_cast<T>(sum[o - o0]);
    }
  }
}

#define GPT2_INSTANTIATE(T)                                                 \
  template void MatmulForward<T>(T*, const T*, const T*, const T*, int64_t, \
                                 int, int);                                 \
  template void MatmulBackward<T>(T*, T*, T*, const T*, const T*, const T*, \
                                  int64_t, int, int);
GPT2_INSTANTIATE(float)
GPT2_INSTANTIATE(double)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cpu
