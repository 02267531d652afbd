// Written with GCC vector extensions, like src/ops/gemm_cpu.cc, so the inner
// loops use AVX2 FMAs under -march=x86-64-v3 without intrinsics.
#include "src/infer/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "src/ops/cpu_parallel.h"

namespace gpt2::infer::cpu {
namespace {

typedef float V8 __attribute__((vector_size(32)));

inline V8 Load(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Lanes summed in a fixed tree order.
inline float HorizontalSum(V8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// res[j] = w (C) . x[j] (C) for NB input rows x + j * ldx. Two accumulator
// chains per row hide the FMA latency when NB is 1. Row j's sum does not
// depend on NB, so a sample's logits do not depend on the batch it runs in.
template <int NB>
inline void DotRows(const float* __restrict w, const float* __restrict x,
                    int64_t ldx, int C, float* __restrict res) {
  V8 acc0[NB] = {}, acc1[NB] = {};
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    const V8 w0 = Load(w + c), w1 = Load(w + c + 8);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      acc0[j] += w0 * Load(x + j * ldx + c);
      acc1[j] += w1 * Load(x + j * ldx + c + 8);
    }
  }
  if (c + 8 <= C) {
    const V8 w0 = Load(w + c);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc0[j] += w0 * Load(x + j * ldx + c);
    c += 8;
  }
  for (int j = 0; j < NB; ++j) {
    float sum = HorizontalSum(acc0[j] + acc1[j]);
    for (int k = c; k < C; ++k) sum += w[k] * x[j * ldx + k];
    res[j] = sum;
  }
}

inline float Dot(const float* a, const float* b, int n) {
  float r;
  DotRows<1>(a, b, 0, n, &r);
  return r;
}

}  // namespace

void SmallBatchMatmul(float* out, const float* inp, const float* weight,
                      const float* bias, int N, int C, int OC) {
  // Output rows per task: enough that a task amortizes its start, few enough
  // that two threads share even the C x C projections.
  constexpr int kRowsPerTask = 32;
  const int tasks = (OC + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (int64_t{N} * C * OC >= \
                                                  kParallelMinWork)
  for (int task = 0; task < tasks; ++task) {
    const int o1 = std::min(OC, (task + 1) * kRowsPerTask);
    for (int o = task * kRowsPerTask; o < o1; ++o) {
      const float* w = weight + int64_t{o} * C;
      const float b = bias != nullptr ? bias[o] : 0.0f;
      for (int n0 = 0; n0 < N; n0 += 4) {
        const float* x = inp + int64_t{n0} * C;
        float res[4];
        switch (std::min(4, N - n0)) {
          case 1:
            DotRows<1>(w, x, C, C, res);
            break;
          case 2:
            DotRows<2>(w, x, C, C, res);
            break;
          case 3:
            DotRows<3>(w, x, C, C, res);
            break;
          default:
            DotRows<4>(w, x, C, C, res);
            break;
        }
        for (int j = 0; j < std::min(4, N - n0); ++j) {
          out[int64_t{n0 + j} * OC + o] = res[j] + b;
        }
      }
    }
  }
}

void CachedAttention(float* out, const float* q, int64_t q_stride,
                     const float* k_cache, const float* v_cache, int B, int NH,
                     int hs, int capacity, int len, float* scratch) {
  const int C = NH * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel for collapse(2) schedule(static) if ( \
        int64_t{B} * NH * len * hs * 2 >= kParallelMinWork)
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const int64_t head = int64_t{b} * NH + h;
      const float* qh = q + b * q_stride + int64_t{h} * hs;
      const float* keys = k_cache + head * capacity * hs;
      const float* values = v_cache + head * capacity * hs;
      float* scores = scratch + head * len;
      float max_score = -INFINITY;
      for (int t = 0; t < len; ++t) {
        scores[t] = Dot(qh, keys + int64_t{t} * hs, hs) * scale;
        max_score = std::max(max_score, scores[t]);
      }
      double sum = 0.0;
      for (int t = 0; t < len; ++t) {
        scores[t] = std::exp(scores[t] - max_score);
        sum += scores[t];
      }
      const float inv_sum = static_cast<float>(1.0 / sum);
      float* oh = out + int64_t{b} * C + int64_t{h} * hs;
      std::fill(oh, oh + hs, 0.0f);
      for (int t = 0; t < len; ++t) {
        const float p = scores[t] * inv_sum;
        const float* v = values + int64_t{t} * hs;
        for (int i = 0; i < hs; ++i) oh[i] += p * v[i];
      }
    }
  }
}

}  // namespace gpt2::infer::cpu
