// Written with GCC vector extensions, like src/ops/gemm_cpu.cc, so the inner
// loops use AVX2 FMAs under -march=x86-64-v3 without intrinsics.
#include "src/infer/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "src/core/bf16.h"
#include "src/ops/cpu_parallel.h"

namespace gpt2::infer::cpu {
namespace {

using ::gpt2::cpu::kParallelMinWork;

typedef float V8 __attribute__((vector_size(32)));

typedef uint16_t U16x8 __attribute__((vector_size(16)));
typedef uint32_t U32x8 __attribute__((vector_size(32)));

inline V8 Load(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
// Eight bf16 weights (their bits) as floats: widened and shifted into the high
// half, exactly (bf16 is fp32's top 16 bits).
inline V8 Load(const uint16_t* p) {
  U16x8 h;
  std::memcpy(&h, p, sizeof(h));
  const U32x8 bits = __builtin_convertvector(h, U32x8) << 16;
  V8 v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}
inline float Scalar(float w) { return w; }
inline float Scalar(uint16_t w) { return Bf16BitsToFloat(w); }

// Lanes summed in a fixed tree order.
inline float HorizontalSum(V8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// res[i * NB + j] = w[i] (C) . x[j] (C) for NO weight rows w + i * ldw and
// NB input rows x + j * ldx: NO * NB independent accumulator chains, and each
// loaded vector used NB (or NO) times. Every (i, j) sums its 8-wide chunks in
// order, then its lanes, then the scalar tail: the same for any NO and NB, so
// a row's result does not depend on the batch it runs in.
template <int NO, int NB, typename W>
inline void DotBlock(const W* __restrict w, int64_t ldw,
                     const float* __restrict x, int64_t ldx, int C,
                     float* __restrict res) {
  V8 acc[NO][NB] = {};
  int c = 0;
  for (; c + 8 <= C; c += 8) {
    V8 xv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) xv[j] = Load(x + j * ldx + c);
#pragma GCC unroll 4
    for (int i = 0; i < NO; ++i) {
      const V8 wv = Load(w + i * ldw + c);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] += wv * xv[j];
    }
  }
  for (int i = 0; i < NO; ++i) {
    for (int j = 0; j < NB; ++j) {
      float sum = HorizontalSum(acc[i][j]);
      // A spelled-out fused multiply-add: the same rounding whatever the
      // weights' type (the compiler may contract a * b + c differently).
      for (int k = c; k < C; ++k) {
        sum = std::fma(Scalar(w[i * ldw + k]), x[j * ldx + k], sum);
      }
      res[i * NB + j] = sum;
    }
  }
}

inline float Dot(const float* a, const float* b, int n) {
  float r;
  DotBlock<1, 1>(a, 0, b, 0, n, &r);
  return r;
}

// Output rows [o, o + NO) for all N input rows, two at a time.
template <int NO, typename W>
inline void OutputRows(float* out, const float* inp, const W* weight,
                       const float* bias, int N, int C, int OC, int o) {
  const W* w = weight + int64_t{o} * C;
  float res[NO * 2];
  for (int n0 = 0; n0 < N; n0 += 2) {
    const int nb = std::min(2, N - n0);
    const float* x = inp + int64_t{n0} * C;
    if (nb == 2) {
      DotBlock<NO, 2>(w, C, x, C, C, res);
    } else {
      DotBlock<NO, 1>(w, C, x, C, C, res);
    }
    for (int i = 0; i < NO; ++i) {
      const float b = bias != nullptr ? bias[o + i] : 0.0f;
      for (int j = 0; j < nb; ++j) {
        out[int64_t{n0 + j} * OC + o + i] = res[i * nb + j] + b;
      }
    }
  }
}

template <typename W>
void SmallBatchMatmulOf(float* out, const float* inp, const W* weight,
                        const float* bias, int N, int C, int OC) {
  // Output rows per task (a multiple of 4): enough that a task amortizes its
  // start, few enough that two threads share even the C x C projections.
  constexpr int kRowsPerTask = 32;
  const int tasks = (OC + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (int64_t{N} * C * OC >= \
                                              kParallelMinWork)
  for (int task = 0; task < tasks; ++task) {
    const int o1 = std::min(OC, (task + 1) * kRowsPerTask);
    int o = task * kRowsPerTask;
    for (; o + 4 <= o1; o += 4) {
      OutputRows<4>(out, inp, weight, bias, N, C, OC, o);
    }
    for (; o < o1; ++o) OutputRows<1>(out, inp, weight, bias, N, C, OC, o);
  }
}

}  // namespace

void SmallBatchMatmul(float* out, const float* inp, const float* weight,
                      const float* bias, int N, int C, int OC) {
  SmallBatchMatmulOf(out, inp, weight, bias, N, C, OC);
}

void SmallBatchMatmul(float* out, const float* inp, const uint16_t* weight_bf16,
                      const float* bias, int N, int C, int OC) {
  SmallBatchMatmulOf(out, inp, weight_bf16, bias, N, C, OC);
}

void CachedAttention(float* out, const float* q, int64_t q_stride,
                     const float* k_cache, const float* v_cache, int B, int NH,
                     int hs, int capacity, int len, float* scratch) {
  const int C = NH * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel for collapse(2) \
    schedule(static) if (int64_t{B} * NH * len * hs * 2 >= kParallelMinWork)
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
