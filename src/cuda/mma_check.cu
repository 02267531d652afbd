#include <cstdint>
#include <string>
#include <vector>

#include "src/core/bf16.h"
#include "src/cuda/common.cuh"
#include "src/cuda/mma.cuh"
#include "src/cuda/mma_check.h"

namespace gpt2::cuda {
namespace {

// a (16x16 row-major), b (16x8, b[k * 8 + n]), c and d (16x8 row-major), all
// fp32 on the device; one warp.
__global__ void MmaLayoutKernel(float* d, const float* a, const float* b,
                                const float* c) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  const uint32_t af[4] = {
      PackBf16(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
      PackBf16(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
      PackBf16(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
      PackBf16(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
  const uint32_t bf[2] = {
      PackBf16(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
      PackBf16(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1],
                  c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
  MmaBf16(acc, af, bf);
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

std::string RunOnce(const std::vector<float>& a, const std::vector<float>& b,
                    const std::vector<float>& c) {
  float *da = nullptr, *db = nullptr, *dc = nullptr, *dd = nullptr;
  const auto fail = [&](const char* what, cudaError_t err) {
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaFree(dd);
    return std::string(what) + ": " + cudaGetErrorString(err);
  };
  cudaError_t err;
  if ((err = cudaMalloc(&da, a.size() * 4)) != cudaSuccess ||
      (err = cudaMalloc(&db, b.size() * 4)) != cudaSuccess ||
      (err = cudaMalloc(&dc, c.size() * 4)) != cudaSuccess ||
      (err = cudaMalloc(&dd, c.size() * 4)) != cudaSuccess)
    return fail("cudaMalloc", err);
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
  if ((err = GPT2_LAUNCH(MmaLayoutKernel, 1, 32, 0, nullptr, dd, da, db, dc)) !=
      cudaSuccess)
    return fail("launch", err);
  if ((err = cudaDeviceSynchronize()) != cudaSuccess)
    return fail("MmaLayoutKernel", err);
  std::vector<float> d(c.size());
  cudaMemcpy(d.data(), dd, d.size() * 4, cudaMemcpyDeviceToHost);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  cudaFree(dd);
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 8; ++n) {
      float want = c[m * 8 + n];
      for (int k = 0; k < 16; ++k) want += a[m * 16 + k] * b[k * 8 + n];
      if (d[m * 8 + n] != want) {
        return "D[" + std::to_string(m) + "][" + std::to_string(n) +
               "] = " + std::to_string(d[m * 8 + n]) + ", want " +
               std::to_string(want);
      }
    }
  }
  return "";
}

// The four ldmatrix loads (LdMatrixBTrans, LdMatrixATrans, LdMatrixB,
// LdMatrixA) on a 16x16 tile of known values v(r, c) = 16 r + c (exact in
// bf16) at tile[r * kLdStride + c] (padded rows); each lane writes its four
// registers of each, kLdRegs in all.
constexpr int kLdStride = 24;
constexpr int kLdRegs = 16;
__global__ void LdMatrixKernel(uint32_t* out) {
  __shared__ __align__(16) bf16 tile[16 * kLdStride];
  for (int i = threadIdx.x; i < 16 * kLdStride; i += 32) {
    const int r = i / kLdStride, c = i % kLdStride;
    tile[i] = __float2bfloat16(c < 16 ? static_cast<float>(16 * r + c) : -1.0f);
  }
  __syncthreads();
  uint32_t b0[2], b1[2], a[4], nb0[2], nb1[2], na[4];
  LdMatrixBTrans(b0, b1, tile, kLdStride);
  LdMatrixATrans(a, tile, kLdStride);
  LdMatrixB(nb0, nb1, tile, kLdStride);
  LdMatrixA(na, tile, kLdStride);
  const uint32_t regs[kLdRegs] = {b0[0], b0[1], b1[0],  b1[1],  a[0],   a[1],
                                  a[2],  a[3],  nb0[0], nb0[1], nb1[0], nb1[1],
                                  na[0], na[1], na[2],  na[3]};
  for (int i = 0; i < kLdRegs; ++i) out[kLdRegs * threadIdx.x + i] = regs[i];
}

}  // namespace

std::string CheckLdMatrixLayout() {
  constexpr int kWords = 32 * kLdRegs;
  uint32_t* d_out = nullptr;
  cudaError_t err = cudaMalloc(&d_out, kWords * sizeof(uint32_t));
  if (err != cudaSuccess)
    return std::string("cudaMalloc: ") + cudaGetErrorString(err);
  std::vector<uint32_t> out(kWords);
  if ((err = GPT2_LAUNCH(LdMatrixKernel, 1, 32, 0, nullptr, d_out)) !=
          cudaSuccess ||
      (err = cudaDeviceSynchronize()) != cudaSuccess ||
      (err = cudaMemcpy(out.data(), d_out, kWords * sizeof(uint32_t),
                        cudaMemcpyDeviceToHost)) != cudaSuccess) {
    cudaFree(d_out);
    return std::string("LdMatrixKernel: ") + cudaGetErrorString(err);
  }
  cudaFree(d_out);
  const auto bits = [](int v) {
    return static_cast<uint32_t>(FloatToBf16Bits(static_cast<float>(v)));
  };
  // Two elements of a column (rows r, r + 1), as the transposed loads give,
  // or of a row (columns c, c + 1), as the plain ones do; the low half first.
  const auto column_pair = [&](int r, int c) {
    return bits(16 * r + c) | (bits(16 * (r + 1) + c) << 16);
  };
  const auto row_pair = [&](int r, int c) {
    return bits(16 * r + c) | (bits(16 * r + c + 1) << 16);
  };
  const char* names[4] = {"ldmatrix B (trans)", "ldmatrix A (trans)",
                          "ldmatrix B", "ldmatrix A"};
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    // The fragment layouts of mma.cuh: b[0] = B[2t..2t+1][g], b[1] =
    // B[2t+8..2t+9][g], the second fragment 8 columns on; a[0] =
    // A[g][2t..2t+1], a[1] rows g + 8, a[2] k 8 on, a[3] both.
    // Transposed: B[k][n] = v(k, n) and A[m][k] = v(k, m). Plain: B[k][n] =
    // v(n, k) (B stored as its columns) and A[m][k] = v(m, k).
    const uint32_t want[kLdRegs] = {
        column_pair(2 * t, g),     column_pair(2 * t + 8, g),
        column_pair(2 * t, g + 8), column_pair(2 * t + 8, g + 8),
        column_pair(2 * t, g),     column_pair(2 * t, g + 8),
        column_pair(2 * t + 8, g), column_pair(2 * t + 8, g + 8),
        row_pair(g, 2 * t),        row_pair(g, 2 * t + 8),
        row_pair(g + 8, 2 * t),    row_pair(g + 8, 2 * t + 8),
        row_pair(g, 2 * t),        row_pair(g + 8, 2 * t),
        row_pair(g, 2 * t + 8),    row_pair(g + 8, 2 * t + 8)};
    for (int i = 0; i < kLdRegs; ++i) {
      if (out[kLdRegs * lane + i] != want[i]) {
        return std::string(names[i / 4]) + " layout: lane " +
               std::to_string(lane) + " register " + std::to_string(i % 4) +
               " = " + std::to_string(out[kLdRegs * lane + i]) + ", want " +
               std::to_string(want[i]);
      }
    }
  }
  return "";
}

std::string CheckMmaLayout() {
  // Distinct small integers: every product and sum is exact, and any element
  // in the wrong place changes the result.
  std::vector<float> a(16 * 16), b(16 * 8), c(16 * 8);
  for (int i = 0; i < 256; ++i) a[i] = static_cast<float>((i * 7) % 13 - 6);
  for (int i = 0; i < 128; ++i) b[i] = static_cast<float>((i * 5) % 11 - 5);
  for (int i = 0; i < 128; ++i) c[i] = static_cast<float>(i % 9);
  std::string why = RunOnce(a, b, c);
  if (!why.empty()) return "mma layout: " + why;
  // B with its columns reversed and A transposed-ish: a second pattern.
  std::vector<float> a2(256), b2(128);
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 16; ++k) a2[m * 16 + k] = a[k * 16 + m];
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 8; ++n) b2[k * 8 + n] = b[k * 8 + (7 - n)];
  why = RunOnce(a2, b2, c);
  return why.empty() ? "" : "mma layout (second pattern): " + why;
}

}  // namespace gpt2::cuda
