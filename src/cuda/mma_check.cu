#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace

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
