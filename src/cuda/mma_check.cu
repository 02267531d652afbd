#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "src/core/bf16.h"
#include "src/cuda/common.cuh"
#include "src/cuda/mma.cuh"
#include "src/cuda/mma_check.h"
#include "src/cuda/wgmma.cuh"

namespace gpt2::cuda {
namespace {

// a (16x16 row-major), b (16x8, b[k * 8 + n]), c and d (16x8 row-major), all
// fp32 on the device; one warp.
__global__ void MmaLayoutKernel(float* d, const float* a, const float* b,
                                const float* c) {
  KernelPrologue();
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
  // (A failed copy is said as one: compared, its garbage would read as a
  // layout that does not match.)
  if ((err = cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice)) !=
          cudaSuccess ||
      (err = cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice)) !=
          cudaSuccess ||
      (err = cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice)) !=
          cudaSuccess)
    return fail("cudaMemcpy to the device", err);
  if ((err = GPT2_LAUNCH(MmaLayoutKernel, 1, 32, 0, nullptr, dd, da, db, dc)) !=
      cudaSuccess)
    return fail("launch", err);
  if ((err = cudaDeviceSynchronize()) != cudaSuccess)
    return fail("MmaLayoutKernel", err);
  std::vector<float> d(c.size());
  if ((err = cudaMemcpy(d.data(), dd, d.size() * 4, cudaMemcpyDeviceToHost)) !=
      cudaSuccess)
    return fail("cudaMemcpy from the device", err);
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
  KernelPrologue();
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

__global__ void WgmmaBuiltKernel(int* built) {
  KernelPrologue();
  *built = WgmmaCompiled() ? 1 : 0;
}

// The four forms of Wgmma64x64, one warpgroup, on two 64 x 64 tiles x and y
// (fp32, row-major on the device) stored in shared memory in the TileIndex
// layout (128-byte swizzle, from a 1,024-byte boundary); k-step 1 of each
// (columns or rows 16..31), so that the k-step offsets are checked too. d: 4 x
// 64 x 64 row-major, c: 64 x 64 row-major.
//   0: A (y's rows, k = y's columns 16..) from registers, B[k][n] = x[n][16 +
//   k]
//      (K-major), d = c + A B.
//   1: A as in 0, B[k][n] = x[16 + k][n] (MN-major), d = c + A B.
//   2: A from shared memory, B as in 0, d = A B (c ignored: not accumulating).
//   3: A from shared memory, B as in 1, d = c + A B.
constexpr int kWgmmaForms = 4;
__global__ void WgmmaLayoutKernel(float* d, const float* x, const float* y,
                                  const float* c) {
  KernelPrologue();
  __shared__ __align__(16) bf16 tiles[2 * kTileElems + kTileAlign / 2];
  bf16* const xs = AlignTiles(tiles);
  bf16* const ys = xs + kTileElems;
  for (int i = threadIdx.x; i < kTileElems; i += 128) {
    xs[TileIndex(i / 64, i % 64)] = __float2bfloat16(x[i]);
    ys[TileIndex(i / 64, i % 64)] = __float2bfloat16(y[i]);
  }
  FenceProxyAsync();
  __syncthreads();
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row = threadIdx.x / 32 * 16 + g;
  const auto y_at = [&](int r, int k) { return y[r * 64 + 16 + k]; };
  const uint32_t a[4] = {
      PackBf16(y_at(row, 2 * t), y_at(row, 2 * t + 1)),
      PackBf16(y_at(row + 8, 2 * t), y_at(row + 8, 2 * t + 1)),
      PackBf16(y_at(row, 2 * t + 8), y_at(row, 2 * t + 9)),
      PackBf16(y_at(row + 8, 2 * t + 8), y_at(row + 8, 2 * t + 9))};
  for (int form = 0; form < kWgmmaForms; ++form) {
    float acc[8][4];
    for (int j = 0; j < 8; ++j) {
      for (int i = 0; i < 4; ++i) {
        const int r = row + 8 * (i / 2), col = 8 * j + 2 * t + (i & 1);
        acc[j][i] = form == 2 ? 1e6f : c[r * 64 + col];  // 2: must be dropped
      }
    }
    WgmmaFence();
    PinAccumulators(acc);
    if (form == 0) Wgmma64x64<false>(acc, a, TileKMajor(xs, 1), true);
    if (form == 1) Wgmma64x64<true>(acc, a, TileMnMajor(xs, 1), true);
    if (form == 2)
      Wgmma64x64<false>(acc, TileKMajor(ys, 1), TileKMajor(xs, 1), false);
    if (form == 3)
      Wgmma64x64<true>(acc, TileKMajor(ys, 1), TileMnMajor(xs, 1), true);
    WgmmaCommit();
    WgmmaWait<0>();
    PinAccumulators(acc);
    for (int j = 0; j < 8; ++j) {
      for (int i = 0; i < 4; ++i) {
        const int r = row + 8 * (i / 2), col = 8 * j + 2 * t + (i & 1);
        d[(form * 64 + r) * 64 + col] = acc[j][i];
      }
    }
  }
}

// B[k][n] of form `form` under a reading of x's shared tile: the documented
// one, or without the swizzle, or its offsets swapped, or B's majorness
// flipped; for diagnosis.
enum class Reading { kDocumented, kUnswizzled, kOffsetsSwapped, kTransposed };
float FormB(const std::vector<float>& x, int form, int k, int n,
            Reading reading) {
  bool mn_major = form % 2 == 1;
  if (reading == Reading::kTransposed) mn_major = !mn_major;
  // The element of the tile this reading fetches: find (r, c) whose
  // TileIndex is the byte the hardware would read, divided by 2.
  const int lbo = mn_major ? 1024 : 16, sbo = 1024;
  const int l = reading == Reading::kOffsetsSwapped ? sbo : lbo;
  const int s = reading == Reading::kOffsetsSwapped ? lbo : sbo;
  const int start = mn_major ? 2048 : 32;  // k-step 1
  uint32_t byte;
  if (mn_major) {
    byte = start + (k % 8) * 128 + (k / 8) * s + (n % 64 / 8) * 16 +
           (n % 8) * 2 + (n / 64) * l;
  } else {
    byte = start + (n % 8) * 128 + (n / 8) * s + (k / 8) * l + (k % 8) * 2;
  }
  if (reading != Reading::kUnswizzled) byte = Swizzle128(byte);
  static const std::vector<int> element_at = [] {  // TileIndex's inverse
    std::vector<int> at(kTileElems);
    for (int i = 0; i < kTileElems; ++i) at[TileIndex(i / 64, i % 64)] = i;
    return at;
  }();
  const uint32_t index = byte / 2;
  return index < kTileElems ? x[element_at[index]] : 0.0f;
}

uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// One warp: sum[l] = WarpSum(in[l]), max[l] = WarpMax(in[l]).
__global__ void WarpReductionsKernel(float* sum, float* max, const float* in) {
  KernelPrologue();
  const int lane = threadIdx.x;
  sum[lane] = WarpSum(in[lane]);
  max[lane] = WarpMax(in[lane]);
}

}  // namespace

std::string CheckWarpReductions() {
  // Magnitudes 2^-10 .. 2^9 of both signs: the order of the additions shows
  // in the sum's last bits. A NaN for the maximum.
  std::vector<float> in(32);
  for (int l = 0; l < 32; ++l) {
    in[l] = std::ldexp((l % 2 ? -1.0f : 1.0f) * (1.0f + 0.37f * l),
                       (l * 7) % 20 - 10);
  }
  std::vector<float> in_max = in;
  in_max[3] = std::nanf("");  // fmaxf keeps the other operand
  std::string why;
  for (const std::vector<float>* x : {&in, &in_max}) {
    float *d_in = nullptr, *d_sum = nullptr, *d_max = nullptr;
    std::vector<float> sum(32), max(32);
    cudaError_t err = cudaSuccess;
    if ((err = cudaMalloc(&d_in, 32 * sizeof(float))) != cudaSuccess ||
        (err = cudaMalloc(&d_sum, 32 * sizeof(float))) != cudaSuccess ||
        (err = cudaMalloc(&d_max, 32 * sizeof(float))) != cudaSuccess ||
        (err = cudaMemcpy(d_in, x->data(), 32 * sizeof(float),
                          cudaMemcpyHostToDevice)) != cudaSuccess ||
        (err = GPT2_LAUNCH(WarpReductionsKernel, 1, 32, 0, nullptr, d_sum,
                           d_max, d_in)) != cudaSuccess ||
        (err = cudaMemcpy(sum.data(), d_sum, 32 * sizeof(float),
                          cudaMemcpyDeviceToHost)) != cudaSuccess ||
        (err = cudaMemcpy(max.data(), d_max, 32 * sizeof(float),
                          cudaMemcpyDeviceToHost)) != cudaSuccess) {
      why = std::string("WarpReductionsKernel: ") + cudaGetErrorString(err);
    }
    cudaFree(d_in);
    cudaFree(d_sum);
    cudaFree(d_max);
    if (!why.empty()) return why;
    // The butterfly of common.cuh, lane by lane: round `offset` gives lane l
    // op(its value, lane (l ^ offset)'s value).
    std::vector<float> want_sum = *x, want_max = *x;
    for (int offset = 16; offset > 0; offset >>= 1) {
      std::vector<float> s = want_sum, m = want_max;
      for (int l = 0; l < 32; ++l) {
        s[l] = want_sum[l] + want_sum[l ^ offset];
        m[l] = std::fmax(want_max[l], want_max[l ^ offset]);
      }
      want_sum = s;
      want_max = m;
    }
    for (int l = 0; l < 32; ++l) {
      const uint32_t got_bits[2] = {FloatBits(sum[l]), FloatBits(max[l])};
      const uint32_t want_bits[2] = {FloatBits(want_sum[l]),
                                     FloatBits(want_max[l])};
      const char* names[2] = {"WarpSum", "WarpMax"};
      const bool both_nan[2] = {std::isnan(sum[l]) && std::isnan(want_sum[l]),
                                std::isnan(max[l]) && std::isnan(want_max[l])};
      for (int i = 0; i < 2; ++i) {
        // A NaN's payload is not the butterfly's to keep: the H200 gave the
        // NaN input's sum as 0x7fffffff, the host 0x7fc00000 (2026-11-28).
        if (got_bits[i] != want_bits[i] && !both_nan[i]) {
          return std::string(names[i]) + ": lane " + std::to_string(l) +
                 " has bits " + std::to_string(got_bits[i]) + ", want " +
                 std::to_string(want_bits[i]) + " (the xor butterfly's)";
        }
      }
    }
  }
  return "";
}

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

int CurrentMajor() {
  static int majors[64];  // 0: not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64)
    return 0;
  if (majors[device] == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                               device) != cudaSuccess)
      return 0;
    majors[device] = major;
  }
  return majors[device];
}

bool ProgrammaticLaunchOn() {
#if defined(GPT2_CUDA_EMULATED)
  return false;
#else
  return ProgrammaticLaunch();
#endif
}

bool WgmmaBuilt() {
  int major = 0, minor = 0, device = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                             device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                             device) != cudaSuccess)
    return false;
#if !defined(GPT2_CUDA_EMULATED)
  if (major != 9 || minor != 0) return false;  // sm_90a code runs on 9.0 only
#endif
  int* d_built = nullptr;
  if (cudaMalloc(&d_built, sizeof(int)) != cudaSuccess) return false;
  int built = 0;
  const bool ran =
      GPT2_LAUNCH(WgmmaBuiltKernel, 1, 1, 0, nullptr, d_built) == cudaSuccess &&
      cudaMemcpy(&built, d_built, sizeof(int), cudaMemcpyDeviceToHost) ==
          cudaSuccess;
  cudaFree(d_built);
  return ran && built == 1;
}

std::string CheckWgmmaLayout() {
  if (!WgmmaBuilt()) return kNoWgmmaHere;
  // Small integers: every product and sum is exact in bf16 and fp32.
  std::vector<float> x(64 * 64), y(64 * 64), c(64 * 64);
  for (int i = 0; i < 64 * 64; ++i) {
    x[i] = static_cast<float>((i * 7 + i / 64) % 9 - 4);
    y[i] = static_cast<float>((i * 5 + 3 * (i / 64)) % 7 - 3);
    c[i] = static_cast<float>(i % 11 - 5);
  }
  float *dx = nullptr, *dy = nullptr, *dc = nullptr, *dd = nullptr;
  const size_t tile = x.size() * sizeof(float);
  std::vector<float> d(kWgmmaForms * x.size());
  cudaError_t err;
  if ((err = cudaMalloc(&dx, tile)) == cudaSuccess &&
      (err = cudaMalloc(&dy, tile)) == cudaSuccess &&
      (err = cudaMalloc(&dc, tile)) == cudaSuccess &&
      (err = cudaMalloc(&dd, kWgmmaForms * tile)) == cudaSuccess &&
      (err = cudaMemcpy(dx, x.data(), tile, cudaMemcpyHostToDevice)) ==
          cudaSuccess &&
      (err = cudaMemcpy(dy, y.data(), tile, cudaMemcpyHostToDevice)) ==
          cudaSuccess &&
      (err = cudaMemcpy(dc, c.data(), tile, cudaMemcpyHostToDevice)) ==
          cudaSuccess &&
      (err = GPT2_LAUNCH(WgmmaLayoutKernel, 1, 128, 0, nullptr, dd, dx, dy,
                         dc)) == cudaSuccess &&
      (err = cudaDeviceSynchronize()) == cudaSuccess) {
    err = cudaMemcpy(d.data(), dd, kWgmmaForms * tile, cudaMemcpyDeviceToHost);
  }
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(dc);
  cudaFree(dd);
  if (err != cudaSuccess)
    return std::string("WgmmaLayoutKernel: ") + cudaGetErrorString(err);
  const char* const names[kWgmmaForms] = {
      "A registers, B K-major", "A registers, B MN-major",
      "A shared, B K-major, not accumulating", "A shared, B MN-major"};
  for (int form = 0; form < kWgmmaForms; ++form) {
    // The product under each reading of B's tile (A is read as documented).
    const auto product = [&](Reading reading, int m, int n) {
      float sum = form == 2 ? 0.0f : c[m * 64 + n];
      for (int k = 0; k < 16; ++k)
        sum += y[m * 64 + 16 + k] * FormB(x, form, k, n, reading);
      return sum;
    };
    for (int m = 0; m < 64; ++m) {
      for (int n = 0; n < 64; ++n) {
        const float got = d[(form * 64 + m) * 64 + n];
        const float want = product(Reading::kDocumented, m, n);
        if (got == want) continue;
        std::string fits = "no other reading fits";
        const auto fits_all = [&](Reading reading) {
          for (int i = 0; i < 64 * 64; ++i) {
            if (d[form * 64 * 64 + i] != product(reading, i / 64, i % 64))
              return false;
          }
          return true;
        };
        if (fits_all(Reading::kUnswizzled)) {
          fits = "the device fits B read without the 128-byte swizzle";
        } else if (fits_all(Reading::kOffsetsSwapped)) {
          fits = "the device fits B with lbo and sbo swapped";
        } else if (fits_all(Reading::kTransposed)) {
          fits = "the device fits B read with the other majorness";
        }
        return "wgmma layout (" + std::string(names[form]) + "): D[" +
               std::to_string(m) + "][" + std::to_string(n) +
               "] = " + std::to_string(got) + ", want " + std::to_string(want) +
               "; " + fits;
      }
    }
  }
  return "";
}

}  // namespace gpt2::cuda
