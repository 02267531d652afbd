#include "src/ops/gemm_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "src/ops/cpu_parallel.h"

namespace gpt2::cpu {
namespace {

// Register tile: kRows rows of A times two vectors' worth of B columns.
constexpr int kVectorBytes = 32;
constexpr int kRows = 6;      // MR
constexpr int kKBlock = 256;  // KC
constexpr int kMBlock = 96;   // MC, a multiple of kRows
constexpr int kNBlock = 512;  // NC, a multiple of the column tile

template <typename T>
struct Tile {
  static constexpr int kLanes = kVectorBytes / sizeof(T);
  static constexpr int kCols = 2 * kLanes;  // NR
  typedef T Vec __attribute__((vector_size(kVectorBytes)));
};

// acc (kRows, kCols) = packed_a (kc, kRows) . packed_b (kc, kCols), both
// k-major.
template <typename T>
inline void MicroKernel(int kc, const T* __restrict packed_a,
                        const T* __restrict packed_b, T* __restrict acc) {
  using Vec = typename Tile<T>::Vec;
  constexpr int kLanes = Tile<T>::kLanes;
  constexpr int kCols = Tile<T>::kCols;
  Vec c0[kRows] = {}, c1[kRows] = {};
  for (int k = 0; k < kc; ++k) {
    Vec b0, b1;
    std::memcpy(&b0, packed_b + k * kCols, sizeof(Vec));
    std::memcpy(&b1, packed_b + k * kCols + kLanes, sizeof(Vec));
    const T* a = packed_a + k * kRows;
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      const Vec ar = Vec{} + a[r];
      c0[r] += ar * b0;
      c1[r] += ar * b1;
    }
  }
  for (int r = 0; r < kRows; ++r) {
    std::memcpy(acc + r * kCols, &c0[r], sizeof(Vec));
    std::memcpy(acc + r * kCols + kLanes, &c1[r], sizeof(Vec));
  }
}

// Packs rows [i0, i0+mc) x k [k0, k0+kc) of A into kRows-row strips, zero
// padded.
template <typename T>
void PackA(const T* a, int64_t rs, int64_t cs, int64_t i0, int mc, int64_t k0,
           int kc, T* out) {
  for (int strip = 0; strip < mc; strip += kRows) {
    T* dst = out + static_cast<int64_t>(strip) * kc;
    const int rows = std::min(kRows, mc - strip);
    if (rows < kRows) std::fill(dst, dst + int64_t{kRows} * kc, T(0));
    if (rs == 1) {  // A is column-major here: walk each column contiguously
      for (int k = 0; k < kc; ++k) {
        const T* src = a + (i0 + strip) + (k0 + k) * cs;
        for (int r = 0; r < rows; ++r) dst[k * kRows + r] = src[r];
      }
    } else {
      for (int r = 0; r < rows; ++r) {
        const T* src = a + (i0 + strip + r) * rs + k0 * cs;
        for (int k = 0; k < kc; ++k) dst[k * kRows + r] = src[k * cs];
      }
    }
  }
}

// Packs k [k0, k0+kc) x columns [j0, j0+nc) of B into kCols-column strips, zero
// padded.
template <typename T>
void PackB(const T* b, int64_t rs, int64_t cs, int64_t k0, int kc, int64_t j0,
           int nc, T* out) {
  constexpr int kCols = Tile<T>::kCols;
  for (int strip = 0; strip < nc; strip += kCols) {
    T* dst = out + static_cast<int64_t>(strip) * kc;
    const int cols = std::min(kCols, nc - strip);
    if (cols < kCols) std::fill(dst, dst + int64_t{kCols} * kc, T(0));
    if (cs == 1) {
      for (int k = 0; k < kc; ++k) {
        const T* src = b + (k0 + k) * rs + j0 + strip;
        for (int j = 0; j < cols; ++j) dst[k * kCols + j] = src[j];
      }
    } else {
      for (int j = 0; j < cols; ++j) {
        const T* src = b + k0 * rs + (j0 + strip + j) * cs;
        for (int k = 0; k < kc; ++k) dst[k * kCols + j] = src[k * rs];
      }
    }
  }
}

}  // namespace

template <typename T>
void GemmAccumulate(int64_t M, int64_t N, int64_t K, const T* a,
                    int64_t a_row_stride, int64_t a_col_stride, const T* b,
                    int64_t b_row_stride, int64_t b_col_stride, T* c,
                    int64_t ldc) {
  constexpr int kCols = Tile<T>::kCols;
  if (M <= 0 || N <= 0 || K <= 0) return;
  const int64_t m_blocks = (M + kMBlock - 1) / kMBlock;
  // Narrow the column blocks when there are too few tiles to keep every thread
  // busy.
  int64_t n_block = kNBlock;
  const int64_t want_tasks = 4 * omp_get_max_threads();
  while (n_block > kCols &&
         m_blocks * ((N + n_block - 1) / n_block) < want_tasks) {
    n_block /= 2;
  }
  const int64_t n_blocks = (N + n_block - 1) / n_block;
  const int64_t tasks = m_blocks * n_blocks;

#pragma omp parallel if (M * N * K >= 32 * kParallelMinWork)
  {
    // Per-thread packing buffers, kept between calls: small GEMMs are common.
    thread_local std::vector<T> packed_a, packed_b;
    packed_a.resize(static_cast<size_t>(kMBlock) * kKBlock);
    packed_b.resize(static_cast<size_t>(n_block + kCols) * kKBlock);
    alignas(64) T acc[kRows * kCols];
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i0 = (task / n_blocks) * kMBlock;
      const int64_t j0 = (task % n_blocks) * n_block;
      const int mc = static_cast<int>(std::min<int64_t>(kMBlock, M - i0));
      const int nc = static_cast<int>(std::min<int64_t>(n_block, N - j0));
      for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
        const int kc = static_cast<int>(std::min<int64_t>(kKBlock, K - k0));
        PackA(a, a_row_stride, a_col_stride, i0, mc, k0, kc, packed_a.data());
        PackB(b, b_row_stride, b_col_stride, k0, kc, j0, nc, packed_b.data());
        for (int js = 0; js < nc; js += kCols) {
          const int cols = std::min(kCols, nc - js);
          for (int is = 0; is < mc; is += kRows) {
            const int rows = std::min(kRows, mc - is);
            MicroKernel<T>(kc, packed_a.data() + int64_t{is} * kc,
                           packed_b.data() + int64_t{js} * kc, acc);
            for (int r = 0; r < rows; ++r) {
              T* dst = c + (i0 + is + r) * ldc + j0 + js;
              const T* src = acc + r * kCols;
              for (int j = 0; j < cols; ++j) dst[j] += src[j];
            }
          }
        }
      }
    }
  }
}

template void GemmAccumulate<float>(int64_t, int64_t, int64_t, const float*,
                                    int64_t, int64_t, const float*, int64_t,
                                    int64_t, float*, int64_t);
template void GemmAccumulate<double>(int64_t, int64_t, int64_t, const double*,
                                     int64_t, int64_t, const double*, int64_t,
                                     int64_t, double*, int64_t);

}  // namespace gpt2::cpu
