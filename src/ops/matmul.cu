// Portable CUDA matmuls: a shared-memory tiled GEMM with fp32 accumulation,
// and a skinny forward for a few rows (decoding) on both paths.
// This is the emulated build's path (the emulator has no cuBLASLt) and the
// GPU's fallback; the GPU's fast path is cuBLASLt (matmul_cublaslt.cc).
// Deterministic: each output element's sum runs over k in order.
#include <cstdint>

#include "src/cuda/common.cuh"
#include "src/cuda/reduce.cuh"
#include "src/cuda/scratch.h"
#include "src/ops/gelu.cuh"
#include "src/ops/matmul.h"

namespace gpt2::cuda {
namespace {

// The portable GEMM's tiles: a block of 256 threads makes a 64 x 64 tile of
// c, each thread 4 x 4 of it (rows ty + 16 m, columns tx + 16 n), through
// k tiles of 16 staged in shared memory. Every c element is one float sum over
// k in order (0 to K - 1, the k tile's zero padding included), whatever the
// tile sizes: the 16 x 16 tiles of one output a thread this kernel had before
// gave the same bits, with 16 times the barriers per product (under the CPU
// emulator, where each barrier switches through all 256 threads, ~90% of an
// emulated training step).
constexpr int kGemmTile = 64, kGemmKTile = 16, kGemmSide = 16;
constexpr int kGemmMicro = kGemmTile / kGemmSide;  // 4
constexpr int kGemmThreads = kGemmSide * kGemmSide;

// c[i][j] = (accumulate ? c[i][j] : 0) + (bias ? bias[j] : 0) + sum_k a[i][k] *
// b[k][j], with a[i][k] = a[i * a_rs + k * a_cs] and b[k][j] = b[k * b_rs + j *
// b_cs].
template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
    GemmKernel(T* c, const T* a, const T* b, const T* bias, int64_t M,
               int64_t N, int64_t K, int64_t a_rs, int64_t a_cs, int64_t b_rs,
               int64_t b_cs, bool accumulate) {
  KernelPrologue();
  __shared__ float a_tile[kGemmKTile][kGemmTile + 1];  // [k][row]
  __shared__ float b_tile[kGemmKTile][kGemmTile + 1];  // [k][column]
  const int tx = threadIdx.x % kGemmSide, ty = threadIdx.x / kGemmSide;
  const int64_t i0 = blockIdx.y * int64_t{kGemmTile};
  const int64_t j0 = blockIdx.x * int64_t{kGemmTile};
  float sum[kGemmMicro][kGemmMicro] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kGemmKTile) {
    for (int e = threadIdx.x; e < kGemmTile * kGemmKTile; e += kGemmThreads) {
      const int r = e / kGemmKTile, k = e % kGemmKTile;  // a: k fastest
      const int64_t i = i0 + r, ka = k0 + k;
      a_tile[k][r] =
          (i < M && ka < K) ? ToFloat(a[i * a_rs + ka * a_cs]) : 0.0f;
      const int kk = e / kGemmTile, col = e % kGemmTile;  // b: j fastest
      const int64_t kb = k0 + kk, j = j0 + col;
      b_tile[kk][col] =
          (kb < K && j < N) ? ToFloat(b[kb * b_rs + j * b_cs]) : 0.0f;
    }
    __syncthreads();
    for (int k = 0; k < kGemmKTile; ++k) {
      float av[kGemmMicro], bv[kGemmMicro];
      for (int m = 0; m < kGemmMicro; ++m)
        av[m] = a_tile[k][ty + kGemmSide * m];
      for (int n = 0; n < kGemmMicro; ++n)
        bv[n] = b_tile[k][tx + kGemmSide * n];
      for (int m = 0; m < kGemmMicro; ++m)
        for (int n = 0; n < kGemmMicro; ++n) sum[m][n] += av[m] * bv[n];
    }
    __syncthreads();
  }
  for (int m = 0; m < kGemmMicro; ++m) {
    const int64_t i = i0 + ty + kGemmSide * m;
    for (int n = 0; n < kGemmMicro; ++n) {
      const int64_t j = j0 + tx + kGemmSide * n;
      if (i >= M || j >= N) continue;
      float init = bias != nullptr ? ToFloat(bias[j]) : 0.0f;
      if (accumulate) init += ToFloat(c[i * N + j]);
      c[i * N + j] = FromFloat<T>(init + sum[m][n]);
    }
  }
}

// dbias[o] += sum over n of dout[n][o], n in order.
template <typename T>
void Gemm(CUstream_st* stream, T* c, const T* a, const T* b, const T* bias,
          int64_t M, int64_t N, int64_t K, int64_t a_rs, int64_t a_cs,
          int64_t b_rs, int64_t b_cs, bool accumulate) {
  const dim3 grid(CeilDiv(N, kGemmTile), CeilDiv(M, kGemmTile));
  CheckLaunch(GPT2_LAUNCH(GemmKernel<T>, grid, kGemmThreads, 0, stream, c, a, b,
                          bias, M, N, K, a_rs, a_cs, b_rs, b_cs, accumulate),
              "GemmKernel");
}

// The skinny forward (a few rows, as in decoding): kSplit warps per output
// column, each streaming its share of that weight row in 16-byte packs
// against the same packs of every input row (kRows of them, cached), then a
// warp sum and, with kSplit > 1, the warps' sums added in warp order through
// shared memory (deterministic). Memory-bound on the weights, which it reads
// once, fully coalesced; kSplit spreads narrow matmuls (768 columns: 96 blocks
// unsplit) over every SM.
// With `gelu_out`, `out` holds the pre-activation (rounded to T) and gelu_out
// its GELU, as MatmulForward followed by GeluForward would.
// With a prologue (pro.a set), the input rows are made first, by every block
// into its shared memory: residual = a + b (rounded to T; block 0 stores it
// to pro.residual_out) and inp = LayerNorm(residual; pro.ln_w, pro.ln_b), the
// arithmetic of the packed LayerNorm forward; decoding then needs no
// LayerNorm launch between its matmuls.
constexpr int kSkinnyWarps = 8;
constexpr int kSkinnyAhead = 4;  // weight packs a lane has in flight

template <typename T>
struct SkinnyPrologue {
  T* residual_out = nullptr;
  const T* a = nullptr;  // null: no prologue
  const T* b = nullptr;
  const T* ln_w = nullptr;
  const T* ln_b = nullptr;
};

// Row `row` of the prologue into `x` (C values of T), by one warp.
template <typename T>
__device__ __forceinline__ void SkinnyPrologueRow(T* x,
                                                  const SkinnyPrologue<T>& pro,
                                                  int row, int C) {
  constexpr int kN = Pack16<T>::kN;
  const int lane = threadIdx.x % 32;
  const int64_t base = int64_t{row} * C;
  float sum = 0.0f;
  for (int k = lane * kN; k < C; k += 32 * kN) {
    const Pack16<T> pa = LoadPack16(pro.a + base + k),
                    pb = LoadPack16(pro.b + base + k);
    Pack16<T> r;
    for (int j = 0; j < kN; ++j) {
      r.v[j] = FromFloat<T>(ToFloat(pa.v[j]) + ToFloat(pb.v[j]));
      sum += ToFloat(r.v[j]);
    }
    StorePack16(x + k, r);
    if (blockIdx.x == 0) StorePack16(pro.residual_out + base + k, r);
  }
  const float mean = WarpSum(sum) / C;
  float var = 0.0f;
  for (int k = lane * kN; k < C; k += 32 * kN) {
    const Pack16<T> r = LoadPack16(x + k);
    for (int j = 0; j < kN; ++j) {
      const float d = ToFloat(r.v[j]) - mean;
      var += d * d;
    }
  }
  const float rstd = rsqrtf(WarpSum(var) / C + 1e-5f);
  for (int k = lane * kN; k < C; k += 32 * kN) {
    Pack16<T> r = LoadPack16(x + k);
    const Pack16<T> w = LoadPack16(pro.ln_w + k), bi = LoadPack16(pro.ln_b + k);
    for (int j = 0; j < kN; ++j) {
      r.v[j] = FromFloat<T>((ToFloat(r.v[j]) - mean) * rstd * ToFloat(w.v[j]) +
                            ToFloat(bi.v[j]));
    }
    StorePack16(x + k, r);
  }
}

template <typename T, int kRows, int kSplit>
__global__ void __launch_bounds__(32 * kSkinnyWarps)
    SkinnyMatmulKernel(T* out, T* gelu_out, const T* inp, const T* weight,
                       const T* bias, int C, int OC, SkinnyPrologue<T> pro) {
  KernelPrologue();
  static_assert(kSkinnyWarps % kSplit == 0, "whole columns per block");
  static_assert(kRows <= kSkinnyWarps, "a warp per prologue row");
  constexpr int kN = Pack16<T>::kN;
  constexpr int kStride = kSplit * 32 * kN;  // a warp's step along C
  __shared__ float parts[kSkinnyWarps][kRows];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int col = blockIdx.x * (kSkinnyWarps / kSplit) + warp / kSplit;
  const int part = warp % kSplit;
  const bool valid = col < OC;  // no early return: the block syncs below
  const T* w = weight + int64_t{valid ? col : 0} * C;
  // The lane's weight packs, kSkinnyAhead at a time, all loads issued before
  // the first is used; the first ones before the prologue, which they do not
  // depend on, so that its latency and theirs overlap (GPT-2 124M's matmuls
  // need at most 3 a lane: one batch). The products are added in k order as
  // before, whatever the batching.
  const int k0 = (part * 32 + lane) * kN;
  constexpr int kBatch = kSkinnyAhead * kStride;
  Pack16<T> wp[kSkinnyAhead];
  const auto load_weights = [&](int base) {
#pragma unroll
    for (int i = 0; i < kSkinnyAhead; ++i) {
      const int k = base + k0 + i * kStride;
      if (valid && k < C) wp[i] = LoadPack16(w + k);
    }
  };
  load_weights(0);
  if (pro.a != nullptr) {                      // the same for the whole grid
    GPT2_EXTERN_SHARED(uint4, prologue_rows);  // kRows * C of T
    T* rows = reinterpret_cast<T*>(prologue_rows);
    if (warp < kRows) SkinnyPrologueRow(rows + int64_t{warp} * C, pro, warp, C);
    __syncthreads();
    inp = rows;
  }
  float acc[kRows] = {};
  for (int base = 0; valid && base < C; base += kBatch) {
#pragma unroll
    for (int i = 0; i < kSkinnyAhead; ++i) {
      const int k = base + k0 + i * kStride;
      if (k >= C) break;
      float wf[kN];
      for (int j = 0; j < kN; ++j) wf[j] = ToFloat(wp[i].v[j]);
#pragma unroll
      for (int m = 0; m < kRows; ++m) {
        const Pack16<T> xp = LoadPack16(inp + int64_t{m} * C + k);
        for (int j = 0; j < kN; ++j) acc[m] += wf[j] * ToFloat(xp.v[j]);
      }
    }
    if (base + kBatch < C) load_weights(base + kBatch);
  }
#pragma unroll
  for (int m = 0; m < kRows; ++m) acc[m] = WarpSum(acc[m]);
  if constexpr (kSplit > 1) {
    if (lane == 0) {
      for (int m = 0; m < kRows; ++m) parts[warp][m] = acc[m];
    }
    __syncthreads();
    if (part != 0) return;
    for (int m = 0; m < kRows; ++m) {
      float sum = parts[warp][m];
      for (int p = 1; p < kSplit; ++p) sum += parts[warp + p][m];
      acc[m] = sum;
    }
  }
  if (lane != 0 || !valid) return;
  const float b = bias != nullptr ? ToFloat(bias[col]) : 0.0f;
  for (int m = 0; m < kRows; ++m) {
    const T pre = FromFloat<T>(acc[m] + b);
    out[int64_t{m} * OC + col] = pre;
    if (gelu_out != nullptr)
      gelu_out[int64_t{m} * OC + col] = FromFloat<T>(GeluTanh(ToFloat(pre)));
  }
}

// Warps per column for OC columns of C: the fewest (1, 2, 4 or 8) that give
// two blocks per SM, but no more than leave every warp a full pack of C.
int SkinnySplit(int C, int OC, int pack) {
  static const int sms = [] {
    const int count = CurrentDeviceAttribute(cudaDevAttrMultiProcessorCount, 0);
    return count > 0 ? count : 132;
  }();
  int split = 1;
  while (split < kSkinnyWarps && CeilDiv(OC, kSkinnyWarps / split) < 2 * sms &&
         C >= 2 * split * 32 * pack) {
    split *= 2;
  }
  return split;
}

}  // namespace

bool SkinnyMatmulForward(Tensor out, Tensor gelu_out, Tensor inp, Tensor weight,
                         Tensor bias, int64_t N, int C, int OC,
                         CUstream_st* stream) {
  return SkinnyMatmulForward(out, gelu_out, inp, weight, bias, N, C, OC, stream,
                             nullptr);
}

bool SkinnyMatmulForward(Tensor out, Tensor gelu_out, Tensor inp, Tensor weight,
                         Tensor bias, int64_t N, int C, int OC,
                         CUstream_st* stream, const SkinnyLayerNorm* ln) {
  if (N < 1 || N > kSkinnyMaxRows) return false;
  if (out.dtype != DType::kF32 && out.dtype != DType::kBF16) return false;
  const int pack = 16 / static_cast<int>(DTypeSize(out.dtype));
  if (C % pack != 0) return false;
  for (const void* p : {inp.data, weight.data}) {
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  // The prologue's rows live in shared memory: up to 48 KiB of them, every
  // tensor of one type and 16-byte aligned.
  const size_t shared = ln != nullptr ? N * C * DTypeSize(out.dtype) : 0;
  if (ln != nullptr) {
    if (shared > 48 * 1024) return false;
    for (const Tensor& t :
         {ln->residual_out, ln->a, ln->b, ln->ln_w, ln->ln_b}) {
      if (t.dtype != out.dtype || reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
        return false;
    }
  }
  const int split = SkinnySplit(C, OC, pack);
  bool launched = false;
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    DispatchInt<1, 2, 3, 4, 5, 6, 7, 8>(
        static_cast<int>(N), "SkinnyMatmulKernel (rows)", [&](auto rows) {
          DispatchInt<1, 2, 4, 8>(
              split, "SkinnyMatmulKernel (split)", [&](auto parts) {
                constexpr int kParts = decltype(parts)::value;
                SkinnyPrologue<F> pro;
                if (ln != nullptr) {
                  pro.residual_out = Ptr<F>(ln->residual_out);
                  pro.a = Ptr<F>(ln->a);
                  pro.b = Ptr<F>(ln->b);
                  pro.ln_w = Ptr<F>(ln->ln_w);
                  pro.ln_b = Ptr<F>(ln->ln_b);
                }
                CheckLaunch(
                    GPT2_LAUNCH(
                        (SkinnyMatmulKernel<F, decltype(rows)::value, kParts>),
                        CeilDiv(OC, kSkinnyWarps / kParts), 32 * kSkinnyWarps,
                        shared, stream, Ptr<F>(out),
                        gelu_out.data == nullptr ? nullptr : Ptr<F>(gelu_out),
                        inp.data == nullptr ? nullptr : Ptr<F>(inp),
                        Ptr<F>(weight),
                        bias.data == nullptr ? nullptr : Ptr<F>(bias), C, OC,
                        pro),
                    "SkinnyMatmulKernel");
                launched = true;
              });
        });
  });
  return launched;
}

void MatmulForward(Tensor out, Tensor inp, Tensor weight, Tensor bias,
                   int64_t N, int C, int OC, CUstream_st* stream) {
  DispatchFloat(out.dtype, [&](auto zero) {
    using F = decltype(zero);
    // b[k][j] = weight[j][k]: the weight read transposed.
    Gemm<F>(stream, Ptr<F>(out), Ptr<F>(inp), Ptr<F>(weight),
            bias.data == nullptr ? nullptr : Ptr<F>(bias), N, OC, C, C, 1, 1, C,
            false);
  });
}

void MatmulBackward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout,
                    Tensor inp, Tensor weight, int64_t N, int C, int OC,
                    Scratch* scratch, CUstream_st* stream, ParamGrads dparams) {
  DispatchFloat(dout.dtype, [&](auto zero) {
    using F = decltype(zero);
    if (dinp.data != nullptr) {
      Gemm<F>(stream, Ptr<F>(dinp), Ptr<F>(dout), Ptr<F>(weight), nullptr, N, C,
              OC, OC, 1, C, 1, true);
    }
    // a[i][k] = dout[k][i]: dout read transposed.
    if (dweight.data != nullptr) {
      Gemm<F>(stream, Ptr<F>(dweight), Ptr<F>(dout), Ptr<F>(inp), nullptr, OC,
              C, N, 1, OC, C, 1, dparams == ParamGrads::kAccumulate);
    }
  });
  if (dbias.data != nullptr)
    MatmulBiasBackward(dbias, dout, N, OC, scratch, stream, dparams);
}

void AddBiasSums(Tensor dbias, const float* sums, int OC, CUstream_st* stream,
                 ParamGrads dparams) {
  const dim3 block(kColumnTile, kRowLanes);
  DispatchFloat(dbias.dtype, [&](auto zero) {
    using F = decltype(zero);
    CheckLaunch(GPT2_LAUNCH(AddColumnSumsKernel<F>, CeilDiv(OC, kColumnTile),
                            block, 0, stream, Ptr<F>(dbias), sums, 1, OC,
                            static_cast<F*>(nullptr),
                            dparams == ParamGrads::kOverwrite),
                "AddColumnSumsKernel");
  });
}

void MatmulBiasBackward(Tensor dbias, Tensor dout, int64_t N, int OC,
                        Scratch* scratch, CUstream_st* stream,
                        ParamGrads dparams) {
  constexpr int kRowsPerChunk = 256;
  const unsigned chunks = CeilDiv(N, kRowsPerChunk);
  auto* partial = static_cast<float*>(
      scratch->Get(sizeof(float) * size_t{chunks} * OC, stream));
  const dim3 block(kColumnTile, kRowLanes);
  DispatchFloat(dout.dtype, [&](auto zero) {
    using F = decltype(zero);
    constexpr int kN = Pack16<F>::kN;
    if (OC % kN == 0 && reinterpret_cast<uintptr_t>(dout.data) % 16 == 0) {
      CheckLaunch(
          GPT2_LAUNCH(ColumnChunkSumsPackedKernel<F>,
                      dim3(CeilDiv(OC, kColumnTile * kN), chunks), block, 0,
                      stream, partial, Ptr<F>(dout), N, OC, kRowsPerChunk),
          "ColumnChunkSumsPackedKernel");
    } else {
      CheckLaunch(
          GPT2_LAUNCH(ColumnChunkSumsKernel<F>,
                      dim3(CeilDiv(OC, kColumnTile), chunks), block, 0, stream,
                      partial, Ptr<F>(dout), N, OC, kRowsPerChunk),
          "ColumnChunkSumsKernel");
    }
    CheckLaunch(
        GPT2_LAUNCH(AddColumnSumsKernel<F>, CeilDiv(OC, kColumnTile), block, 0,
                    stream, Ptr<F>(dbias), partial, static_cast<int>(chunks),
                    OC, static_cast<F*>(nullptr),
                    dparams == ParamGrads::kOverwrite),
        "AddColumnSumsKernel");
  });
}

}  // namespace gpt2::cuda
