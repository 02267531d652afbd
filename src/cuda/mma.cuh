// Warp-level tensor-core matrix multiply-accumulate, bf16 in and fp32
// accumulation: the PTX instruction mma.sync.m16n8k16.row.col on sm_80 and
// newer, and a shuffle-based twin with the same register layout in the
// emulated build, so kernels written against it are checked in CI.
//
// Register layout (PTX ISA, "Matrix fragments for mma.m16n8k16"), for lane
// l of the warp, with g = l / 4 and t = l % 4; each 32-bit register holds two
// bf16, the lower column (or k) index in the low half:
//   A (16x16, row-major): a[0] = A[g][2t..2t+1]     a[1] = A[g+8][2t..2t+1]
//                         a[2] = A[g][2t+8..2t+9]   a[3] = A[g+8][2t+8..2t+9]
//   B (16x8, k x n):      b[0] = B[2t..2t+1][g]     b[1] = B[2t+8..2t+9][g]
//   C, D (16x8, f32):     d[0..1] = D[g][2t..2t+1]  d[2..3] = D[g+8][2t..2t+1]
#ifndef GPT2_CUDA_MMA_CUH_
#define GPT2_CUDA_MMA_CUH_

#include <cstdint>

#include "src/cuda/common.cuh"

namespace gpt2::cuda {

// Two floats rounded to bf16 (nearest even) in one register, `lo` in the low
// half.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const uint32_t l = __bfloat16_as_ushort(__float2bfloat16(lo));
  const uint32_t h = __bfloat16_as_ushort(__float2bfloat16(hi));
  return l | (h << 16);
}

__device__ __forceinline__ float Bf16Lo(uint32_t r) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<uint16_t>(r)));
}
__device__ __forceinline__ float Bf16Hi(uint32_t r) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<uint16_t>(r >> 16)));
}

// d += A * B for one 16x8x16 tile; every lane of the warp must call it
// together (it is a warp-collective operation).
__device__ __forceinline__ void MmaBf16(float (&d)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
#if defined(GPT2_CUDA_EMULATED)
  // Gather every lane's fragments (one collective), take the two A rows and
  // two B columns this lane's outputs need from the lanes that hold them,
  // then accumulate in k order in fp32.
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  struct Fragments {
    uint32_t a[4], b[2];
  };
  const Fragments mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  Fragments all[32];
  cuda_emu::WarpGather(0xffffffffu, &mine, all, sizeof(Fragments));
  float a_rows[2][16], b_cols[2][16];
  for (int j = 0; j < 4; ++j) {
    // Lane 4g + j holds A[g][2j..], A[g+8][2j..], A[g][2j+8..], A[g+8][2j+8..].
    const uint32_t r0 = all[4 * g + j].a[0], r1 = all[4 * g + j].a[1];
    const uint32_t r2 = all[4 * g + j].a[2], r3 = all[4 * g + j].a[3];
    a_rows[0][2 * j] = Bf16Lo(r0);
    a_rows[0][2 * j + 1] = Bf16Hi(r0);
    a_rows[1][2 * j] = Bf16Lo(r1);
    a_rows[1][2 * j + 1] = Bf16Hi(r1);
    a_rows[0][2 * j + 8] = Bf16Lo(r2);
    a_rows[0][2 * j + 9] = Bf16Hi(r2);
    a_rows[1][2 * j + 8] = Bf16Lo(r3);
    a_rows[1][2 * j + 9] = Bf16Hi(r3);
    // Lane 4n + j holds B[2j..][n] and B[2j+8..][n]; this lane needs columns
    // n = 2t and 2t + 1.
    for (int c = 0; c < 2; ++c) {
      const int src = 4 * (2 * t + c) + j;
      const uint32_t s0 = all[src].b[0], s1 = all[src].b[1];
      b_cols[c][2 * j] = Bf16Lo(s0);
      b_cols[c][2 * j + 1] = Bf16Hi(s0);
      b_cols[c][2 * j + 8] = Bf16Lo(s1);
      b_cols[c][2 * j + 9] = Bf16Hi(s1);
    }
  }
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < 2; ++c) {
      float acc = d[2 * r + c];
      for (int k = 0; k < 16; ++k) acc = fmaf(a_rows[r][k], b_cols[c][k], acc);
      d[2 * r + c] = acc;
    }
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  __trap();  // callers dispatch on the compute capability first
#endif
}

// ldmatrix.sync.aligned.m8n8.x4[.trans]: four 8x8 bf16 matrices from shared
// memory, lane 8j + r giving the address of row r of matrix j (16 bytes,
// 16-byte aligned). Each lane receives r[j] = {M_j[g][2t], M_j[g][2t + 1]}
// (the lower column in the low half: what a 32-bit load of row g at column
// 2t would give, four loads in one instruction), or with kTrans the matrices
// transposed, r[j] = {M_j[2t][g], M_j[2t + 1][g]} (the lower row in the low
// half). Warp-collective.
template <bool kTrans>
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const bf16* row) {
#if defined(GPT2_CUDA_EMULATED)
  // Every lane's row address (one collective), then this lane's elements.
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const bf16* rows[32];
  cuda_emu::WarpGather(0xffffffffu, &row, rows, sizeof(row));
  for (int j = 0; j < 4; ++j) {
    uint16_t half[2];
    for (int h = 0; h < 2; ++h) {
      half[h] = __bfloat16_as_ushort(kTrans ? rows[8 * j + 2 * t + h][g]
                                            : rows[8 * j + g][2 * t + h]);
    }
    r[j] = half[0] | (static_cast<uint32_t>(half[1]) << 16);
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  if constexpr (kTrans) {
    asm volatile(
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, "
        "[%4];\n"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
        : "r"(address));
  } else {
    asm volatile(
        "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
        : "r"(address));
  }
#elif defined(__CUDA_ARCH__)
  (void)row;
  r[0] = r[1] = r[2] = r[3] = 0;
  __trap();  // callers dispatch on the compute capability first
#endif
}

// The four 8x8 matrices of a 16x16 tile at `tile` (rows `stride` elements
// apart, 16-byte aligned) through one ldmatrix.x4: matrix j at row 8 (j % 2),
// column 8 (j / 2) (kDownFirst), or at row 8 (j / 2), column 8 (j % 2).
template <bool kTrans, bool kDownFirst>
__device__ __forceinline__ void LdMatrixTile(uint32_t (&r)[4], const bf16* tile,
                                             int stride) {
  const int lane = threadIdx.x % 32, j = lane / 8;
  const int row = 8 * (kDownFirst ? j % 2 : j / 2) + lane % 8;
  LdMatrixX4<kTrans>(r, tile + row * stride + 8 * (kDownFirst ? j / 2 : j % 2));
}

// The B fragments of two neighbouring 16x8 tiles from a tile's registers in
// matrix order (n 0-7 first, then n 8-15).
__device__ __forceinline__ void SplitB(const uint32_t (&r)[4],
                                       uint32_t (&b0)[2], uint32_t (&b1)[2]) {
  b0[0] = r[0];
  b0[1] = r[1];
  b1[0] = r[2];
  b1[1] = r[3];
}

// The A fragment (m16 x k16) of a product whose A is row-major in shared
// memory, A[m][k] at tile[m * stride + k]; `tile` points at A[m0][k0]. The
// matrices are (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15,
// k 8-15): a[0..3] in mma's order, the registers four 32-bit loads would give.
// Rows 16-byte aligned (stride a multiple of 8). Warp-collective.
__device__ __forceinline__ void LdMatrixA(uint32_t (&a)[4], const bf16* tile,
                                          int stride) {
  LdMatrixTile<false, true>(a, tile, stride);
}

// B fragments (k16) of two neighbouring 16x8 tiles (columns n0..n0+7 and
// n0+8..n0+15) of a product whose B (k x n) is stored as its columns, B[k][n]
// at tile[n * stride + k] (keys or queries as rows, for a product with them
// transposed); `tile` points at B[k0][n0], i.e. row n0, column k0. The
// matrices are (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15,
// k 8-15): b0 = {B[2t..2t+1][g], B[2t+8..2t+9][g]} and b1 the same 8 columns
// on. Rows 16-byte aligned. Warp-collective.
__device__ __forceinline__ void LdMatrixB(uint32_t (&b0)[2], uint32_t (&b1)[2],
                                          const bf16* tile, int stride) {
  uint32_t r[4];
  LdMatrixTile<false, false>(r, tile, stride);
  SplitB(r, b0, b1);
}

// B fragments of two neighbouring 16x8 tiles (columns n0..n0+7 and
// n0+8..n0+15) of a product whose B (k x n) sits row-major in shared memory,
// B[k][n] at tile[k * stride + n], so a B stored as its rows needs no
// transposed copy. `tile` points at B[k0][n0]; rows must be 16-byte aligned
// (stride a multiple of 8). Warp-collective. The matrices are (k 0-7, n 0-7),
// (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15): each lane receives b0 =
// {B[2t..2t+1][g], B[2t+8..2t+9][g]} and b1 the same 8 columns on.
__device__ __forceinline__ void LdMatrixBTrans(uint32_t (&b0)[2],
                                               uint32_t (&b1)[2],
                                               const bf16* tile, int stride) {
  uint32_t r[4];
  LdMatrixTile<true, true>(r, tile, stride);
  SplitB(r, b0, b1);
}

// The A fragment (m16 x k16) of a product whose A is stored transposed in
// shared memory, A[m][k] at tile[k * stride + m] (so the accumulators of a
// product's transpose, stored as they lie, serve as A). `tile` points at
// A[m0][k0], i.e. row k0, column m0. The matrices are (k 0-7, m 0-7),
// (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15): a[0..3] in mma's order.
__device__ __forceinline__ void LdMatrixATrans(uint32_t (&a)[4],
                                               const bf16* tile, int stride) {
  LdMatrixTile<true, false>(a, tile, stride);
}

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_MMA_CUH_
