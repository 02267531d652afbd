#include "src/ops/cpu_parallel.h"
#include "src/ops/encoder.h"

namespace gpt2::cpu {

template <typename T>
void EncoderForward(T* out, const int32_t* tokens, const T* wte, const T* wpe,
                    int B, int T_, int C) {
#pragma omp parallel for schedule(static) if (int64_t{B} * T_ * C >= \
                                              kParallelMinWork)
  for (int64_t bt = 0; bt < int64_t{B} * T_; ++bt) {
    const int t = static_cast<int>(bt % T_);
    const T* token_row = wte + int64_t{tokens[bt]} * C;
    const T* pos_row = wpe + int64_t{t} * C;
    T* out_row = out + bt * C;
    for (int c = 0; c < C; ++c) out_row[c] = token_row[c] + pos_row[c];
  }
}

template <typename T>
void EncoderBackward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens,
                     int B, int T_, int C) {
  // Parallel over channel blocks: every thread walks all rows in the same
  // order, so the sums do not depend on the thread count.
  constexpr int kBlock = 32;
  const int num_blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (int64_t{B} * T_ * C >= \
                                              kParallelMinWork)
  for (int blk = 0; blk < num_blocks; ++blk) {
    const int c0 = blk * kBlock;
    const int c1 = c0 + kBlock < C ? c0 + kBlock : C;
    for (int64_t bt = 0; bt < int64_t{B} * T_; ++bt) {
      const int t = static_cast<int>(bt % T_);
      const T* d = dout + bt * C;
      T* dtok = dwte + int64_t{tokens[bt]} * C;
      T* dpos = dwpe + int64_t{t} * C;
      for (int c = c0; c < c1; ++c) {
        dtok[c] += d[c];
        dpos[c] += d[c];
      }
    }
  }
}

#define GPT2_INSTANTIATE(T)                                                    \
  template void EncoderForward<T>(T*, const int32_t*, const T*, const T*, int, \
                                  int, int);                                   \
  template void EncoderBackward<T>(T*, T*, const T*, const int32_t*, int, int, \
                                   int);
GPT2_INSTANTIATE(float)
GPT2_INSTANTIATE(double)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cpu
