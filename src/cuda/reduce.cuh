// Deterministic column sums, for parameter gradients (biases, LayerNorm
// weights): partial sums over fixed chunks of rows in fp32, then the chunks
// added in a fixed order. No atomics, so every run adds in the same order,
// and both stages spread over many blocks.
#ifndef GPT2_CUDA_REDUCE_CUH_
#define GPT2_CUDA_REDUCE_CUH_

#include "src/cuda/common.cuh"

namespace gpt2::cuda {

constexpr int kColumnTile = 32;  // columns per block: one per lane
constexpr int kRowLanes = 16;    // warps per block, splitting the rows

// Sums, for this block's column, the rows row0 + threadIdx.y, + kRowLanes,
// ... below row1 of x (rows `C` apart), then combines the warps' sums in warp
// order. The result is valid in warp 0.
template <typename T>
__device__ __forceinline__ float ColumnSliceSum(const T* x, int64_t row0,
                                                int64_t row1, int c, int C) {
  __shared__ float sums[kRowLanes][kColumnTile];
  float s = 0.0f;
  if (c < C) {
    // Unrolled so that 16 rows' loads are in flight at once (the adds stay
    // in row order: the same sums as a plain loop). A LayerNorm backward's
    // weight and bias sums add 396 partial rows (one a block of its grid on
    // 132 SMs) at 16 row lanes: 25 loads a thread, ~2 waits on memory
    // instead of ~7 at 4 in flight, in a launch whose time does not shrink
    // with the batch (the H200's LayerNorm backward: ~9 us a call that does
    // not scale with B, fitted over B=1, 4, 16; not yet measured since).
#pragma unroll 16
    for (int64_t r = row0 + threadIdx.y; r < row1; r += kRowLanes)
      s += ToFloat(x[r * C + c]);
  }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  float total = 0.0f;
  if (threadIdx.y == 0) {
    for (int i = 0; i < kRowLanes; ++i) total += sums[i][threadIdx.x];
  }
  return total;
}

// partial[chunk][c] = sum of x[r][c] over rows [chunk * rows_per_chunk,
// (chunk + 1) * rows_per_chunk) below N. Grid (ceil(C / kColumnTile), chunks),
// block (kColumnTile, kRowLanes).
template <typename T>
__global__ void ColumnChunkSumsKernel(float* partial, const T* x, int64_t N,
                                      int C, int rows_per_chunk) {
  KernelPrologue();
  const int c = blockIdx.x * kColumnTile + threadIdx.x;
  const int64_t row0 = blockIdx.y * int64_t{rows_per_chunk};
  const int64_t row1 = row0 + rows_per_chunk < N ? row0 + rows_per_chunk : N;
  const float total = ColumnSliceSum(x, row0, row1, c, C);
  if (threadIdx.y == 0 && c < C) partial[blockIdx.y * int64_t{C} + c] = total;
}

// ColumnChunkSumsKernel over 16-byte packs (C a multiple of the pack, x
// 16-byte aligned): a thread sums kN neighbouring columns, so a warp reads
// whole 256- or 512-byte row segments; each column's rows are added in the
// same order as there. Grid (ceil(C / (32 kN)), chunks), block (32,
// kRowLanes).
template <typename T>
__global__ void ColumnChunkSumsPackedKernel(float* partial, const T* x,
                                            int64_t N, int C,
                                            int rows_per_chunk) {
  KernelPrologue();
  constexpr int kN = Pack16<T>::kN;
  constexpr int kWidth = kColumnTile * kN;  // columns per block
  __shared__ float sums[kRowLanes][kWidth];
  const int c0 = (blockIdx.x * kColumnTile + threadIdx.x) * kN;
  const int64_t row0 = blockIdx.y * int64_t{rows_per_chunk};
  const int64_t row1 = row0 + rows_per_chunk < N ? row0 + rows_per_chunk : N;
  float s[kN] = {};
  if (c0 < C) {
#pragma unroll 4  // four rows' loads in flight; the adds stay in row order
    for (int64_t r = row0 + threadIdx.y; r < row1; r += kRowLanes) {
      const Pack16<T> p = LoadPack16(x + r * C + c0);
      for (int j = 0; j < kN; ++j) s[j] += ToFloat(p.v[j]);
    }
  }
  for (int j = 0; j < kN; ++j) sums[threadIdx.y][threadIdx.x * kN + j] = s[j];
  __syncthreads();
  for (int col = threadIdx.y * kColumnTile + threadIdx.x; col < kWidth;
       col += kColumnTile * kRowLanes) {
    float total = 0.0f;
    for (int i = 0; i < kRowLanes; ++i) total += sums[i][col];
    const int c = blockIdx.x * kWidth + col;
    if (c < C) partial[blockIdx.y * int64_t{C} + c] = total;
  }
}

// out[c] += the sum over chunks of partial[chunk][c], or with `overwrite`
// out[c] = that sum (+ 0.0f: the bits of adding it to a zeroed out, -0.0f
// included). Grid (ceil(C / kColumnTile), 1 or 2), block (kColumnTile,
// kRowLanes): blocks with blockIdx.y = 1 do the same for out1 from the chunks
// after partial's (a LayerNorm's weight and bias gradients in one launch;
// nullptr with a grid of 1).
template <typename T>
__global__ void AddColumnSumsKernel(T* out, const float* partial, int chunks,
                                    int C, T* out1, bool overwrite) {
  KernelPrologue();
  if (blockIdx.y == 1) {
    out = out1;
    partial += int64_t{chunks} * C;
  }
  const int c = blockIdx.x * kColumnTile + threadIdx.x;
  const float total = ColumnSliceSum(partial, 0, chunks, c, C);
  if (threadIdx.y == 0 && c < C) {
    out[c] = FromFloat<T>((overwrite ? 0.0f : ToFloat(out[c])) + total);
  }
}

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_REDUCE_CUH_
