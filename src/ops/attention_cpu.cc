#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "src/ops/attention.h"
#include "src/ops/cpu_parallel.h"

namespace gpt2::cpu {

template <typename T>
void AttentionForward(T* out, T* lse, const T* qkv, int B, int T_, int C,
                      int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  const int64_t row = 3 * int64_t{C};
#pragma omp parallel if (int64_t{B} * T_ * T_ * C >= kParallelMinWork)
  {
    std::vector<double> scores(T_), acc(hs);
#pragma omp for collapse(3) schedule(static)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < NH; ++h) {
        for (int t = 0; t < T_; ++t) {
          const T* base = qkv + int64_t{b} * T_ * row;
          const T* q = base + t * row + h * hs;
          double max_score = -INFINITY;
          for (int s = 0; s <= t; ++s) {
            const T* k = base + s * row + C + h * hs;
            double dot = 0.0;
            for (int i = 0; i < hs; ++i) dot += double{q[i]} * k[i];
            scores[s] = dot * scale;
            if (scores[s] > max_score) max_score = scores[s];
          }
          double sum = 0.0;
          for (int s = 0; s <= t; ++s) {
            scores[s] = std::exp(scores[s] - max_score);
            sum += scores[s];
          }
          for (int i = 0; i < hs; ++i) acc[i] = 0.0;
          for (int s = 0; s <= t; ++s) {
            const T* v = base + s * row + 2 * C + h * hs;
            const double p = scores[s] / sum;
            for (int i = 0; i < hs; ++i) acc[i] += p * v[i];
          }
          T* o = out + (int64_t{b} * T_ + t) * C + h * hs;
          for (int i = 0; i < hs; ++i) o[i] = static_cast<T>(acc[i]);
          lse[(int64_t{b} * NH + h) * T_ + t] =
              static_cast<T>(max_score + std::log(sum));
        }
      }
    }
  }
}

template <typename T>
void AttentionBackward(T* dqkv, const T* dout, const T* qkv, const T* out,
                       const T* lse, int B, int T_, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  const int64_t row = 3 * int64_t{C};
  // Each (b, h) owns disjoint slices of dqkv, so the pairs run in parallel.
#pragma omp parallel for collapse(2) \
    schedule(static) if (int64_t{B} * T_ * T_ * C >= kParallelMinWork)
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const T* base = qkv + int64_t{b} * T_ * row;
      T* dbase = dqkv + int64_t{b} * T_ * row;
      for (int t = 0; t < T_; ++t) {  // this head's slices start at zero
        for (int part = 0; part < 3; ++part) {
          T* d = dbase + t * row + part * C + h * hs;
          std::fill(d, d + hs, T{0});
        }
      }
      for (int t = 0; t < T_; ++t) {
        const T* q = base + t * row + h * hs;
        const T* dy = dout + (int64_t{b} * T_ + t) * C + h * hs;
        const T* y = out + (int64_t{b} * T_ + t) * C + h * hs;
        const double row_lse = lse[(int64_t{b} * NH + h) * T_ + t];
        // D = sum_s p_s (dy . v_s) = dy . y
        double d_sum = 0.0;
        for (int i = 0; i < hs; ++i) d_sum += double{dy[i]} * y[i];
        T* dq = dbase + t * row + h * hs;
        for (int s = 0; s <= t; ++s) {
          const T* k = base + s * row + C + h * hs;
          const T* v = base + s * row + 2 * C + h * hs;
          double dot = 0.0, dp = 0.0;
          for (int i = 0; i < hs; ++i) {
            dot += double{q[i]} * k[i];
            dp += double{dy[i]} * v[i];
          }
          const double p = std::exp(dot * scale - row_lse);
          const double dscore = p * (dp - d_sum) * scale;
          T* dk = dbase + s * row + C + h * hs;
          T* dv = dbase + s * row + 2 * C + h * hs;
          for (int i = 0; i < hs; ++i) {
            dq[i] += static_cast<T>(dscore * k[i]);
            dk[i] += static_cast<T>(dscore * q[i]);
            dv[i] += static_cast<T>(p * dy[i]);
          }
        }
      }
    }
  }
}

template <typename T>
void AttentionDecode(T* out, T* k_cache, T* v_cache, const T* qkv, int B,
                     int max_T, int pos, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int b = 0; b < B; ++b) {
    const T* row = qkv + int64_t{b} * 3 * C;
    T* k_row = k_cache + (int64_t{b} * max_T + pos) * C;
    T* v_row = v_cache + (int64_t{b} * max_T + pos) * C;
    for (int c = 0; c < C; ++c) {
      k_row[c] = row[C + c];
      v_row[c] = row[2 * C + c];
    }
  }
  std::vector<double> scores(pos + 1), acc(hs);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const T* q = qkv + int64_t{b} * 3 * C + h * hs;
      double max_score = -INFINITY;
      for (int s = 0; s <= pos; ++s) {
        const T* k = k_cache + (int64_t{b} * max_T + s) * C + h * hs;
        double dot = 0.0;
        for (int i = 0; i < hs; ++i) dot += double{q[i]} * k[i];
        scores[s] = dot * scale;
        max_score = std::max(max_score, scores[s]);
      }
      double sum = 0.0;
      for (int s = 0; s <= pos; ++s)
        sum += scores[s] = std::exp(scores[s] - max_score);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int s = 0; s <= pos; ++s) {
        const T* v = v_cache + (int64_t{b} * max_T + s) * C + h * hs;
        for (int i = 0; i < hs; ++i) acc[i] += scores[s] / sum * v[i];
      }
      T* o = out + int64_t{b} * C + h * hs;
      for (int i = 0; i < hs; ++i) o[i] = static_cast<T>(acc[i]);
    }
  }
}

#define GPT2_INSTANTIATE(T)                                                  \
  template void AttentionForward<T>(T*, T*, const T*, int, int, int, int);   \
  template void AttentionBackward<T>(T*, const T*, const T*, const T*,       \
                                     const T*, int, int, int, int);          \
  template void AttentionDecode<T>(T*, T*, T*, const T*, int, int, int, int, \
                                   int);
GPT2_INSTANTIATE(float)
GPT2_INSTANTIATE(double)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cpu
