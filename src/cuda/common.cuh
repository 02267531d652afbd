// Shared pieces of the CUDA kernels: the error check that feeds the project's
// fatal sink, float <-> storage-type conversion (f32, bf16), warp/block
// reductions, and the dtype dispatch of launchers. Kernels run in fp32
// arithmetic whatever the storage type.
#ifndef GPT2_CUDA_COMMON_CUH_
#define GPT2_CUDA_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "src/core/error.h"
#include "src/core/tensor.h"
#include "src/cuda/check.h"
#include "src/cuda/launch.h"

namespace gpt2::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(bf16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 FromFloat<bf16>(float x) {
  return __float2bfloat16(x);  // round to nearest even
}

#if defined(GPT2_CUDA_EMULATED)
// The butterfly below with every lane's value gathered in one collective
// instead of five shuffles, each lane computing the values its own result
// depends on: the same operations on the same operands, so the same bits.
// Round `offset` gives lane x op(x's value, (x ^ offset)'s value); lane L's
// result needs the round-16 values of the lanes L ^ m (m < 16), the round-8
// values of L ^ m (m < 8), and so on: 31 operations.
template <typename Op>
__device__ __forceinline__ float EmulatedButterfly(float v, Op op) {
  float lanes[32];
  cuda_emu::WarpGather(0xffffffffu, &v, lanes, sizeof(v));
  const unsigned lane =
      ((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) %
      32;
  float at[16];  // at[m]: lane (lane ^ m)'s value after the latest round
  for (int m = 0; m < 16; ++m)
    at[m] = op(lanes[lane ^ m], lanes[lane ^ m ^ 16]);
  for (int half = 8; half > 0; half >>= 1) {
    for (int m = 0; m < half; ++m) at[m] = op(at[m], at[m + half]);
  }
  return at[0];
}
#endif

__device__ __forceinline__ float WarpSum(float v) {
#if defined(GPT2_CUDA_EMULATED)
  return EmulatedButterfly(v, [](float x, float y) { return x + y; });
#else
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
#endif
}

__device__ __forceinline__ float WarpMax(float v) {
#if defined(GPT2_CUDA_EMULATED)
  return EmulatedButterfly(v, [](float x, float y) { return fmaxf(x, y); });
#else
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
#endif
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `scratch` is 32 floats of shared memory. The order is fixed,
// so the result is deterministic.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return WarpSum(v);
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return WarpMax(v);
}

// An attribute of the current device, or `fallback` where it cannot be read.
inline int CurrentDeviceAttribute(cudaDeviceAttr attr, int fallback) {
  int device = 0, value = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&value, attr, device) != cudaSuccess) {
    return fallback;
  }
  return value;
}

inline unsigned CeilDiv(int64_t a, int64_t b) {
  return static_cast<unsigned>((a + b - 1) / b);
}

// Blocks of 256 threads for a grid-stride loop over n elements.
inline unsigned GridStrideBlocks(int64_t n) {
  const unsigned blocks = CeilDiv(n, 256);
  return blocks == 0 ? 1u : (blocks < 65535u ? blocks : 65535u);
}

// Checks the launch that just happened; a bad configuration is a programming
// error.
inline void CheckLaunch(cudaError_t err, const char* kernel) {
  if (err != cudaSuccess) {
    ::gpt2::FatalError(std::string("launch of ") + kernel +
                           " failed: " + cudaGetErrorString(err),
                       __FILE__, __LINE__);
  }
}

// 2^x as the hardware's ex2 with denormal results flushed to zero: one
// instruction (exp2f, which keeps denormals, adds a range check and two
// predicated multiplies around it, for every element). A probability below
// 2^-126 next to a row sum of at least 1 changes nothing. The emulator flushes
// the exact value the same way.
__device__ __forceinline__ float Exp2Ftz(float x) {
#if defined(GPT2_CUDA_EMULATED)
  const float r = exp2f(x);
  return r < 0x1p-126f ? 0.0f : r;
#elif defined(__CUDA_ARCH__)
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#else
  return exp2f(x);
#endif
}

// 16 bytes of T (8 bf16 or 4 floats), loaded and stored with one 16-byte
// access; the address must be 16-byte aligned.
template <typename T>
struct alignas(16) Pack16 {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};
template <typename T>
__device__ __forceinline__ Pack16<T> LoadPack16(const T* p) {
  Pack16<T> pack;
  *reinterpret_cast<uint4*>(&pack) = *reinterpret_cast<const uint4*>(p);
  return pack;
}
template <typename T>
__device__ __forceinline__ void StorePack16(T* p, const Pack16<T>& pack) {
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&pack);
}

// Four consecutive elements of T (8 bytes of bf16, 16 of float) in one access,
// for kernels that pair arrays of different element sizes four by four; the
// address must be aligned to 4 * sizeof(T).
template <typename T>
struct alignas(4 * sizeof(T)) Pack4 {
  T v[4];
};

// Calls fn(float{}) or fn(bf16{}) for the tensor's storage type.
template <typename Fn>
void DispatchFloat(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF32:
      fn(float{});
      return;
    case DType::kBF16:
      fn(bf16{});
      return;
    default:
      ::gpt2::FatalError(
          std::string("the CUDA ops have no ") + DTypeName(dtype) + " kernels",
          __FILE__, __LINE__);
  }
}

// Calls fn(T{}, TR{}) for an op whose activations are `dtype` and whose
// residual-stream side is `residual`: both f32, both bf16, or bf16 with an
// f32 residual stream (train.residual_fp32).
template <typename Fn>
void DispatchFloat2(DType dtype, DType residual, Fn&& fn) {
  if (dtype == residual) {
    DispatchFloat(dtype, [&](auto zero) { fn(zero, zero); });
  } else if (dtype == DType::kBF16 && residual == DType::kF32) {
    fn(bf16{}, float{});
  } else {
    ::gpt2::FatalError(std::string("the CUDA ops have no ") + DTypeName(dtype) +
                           " kernels with a " + DTypeName(residual) +
                           " residual stream",
                       __FILE__, __LINE__);
  }
}

// kN values of T from p, as floats, in 16-byte loads (p 16-byte aligned, kN a
// multiple of 16 / sizeof(T)); and the reverse.
template <int kN, typename T>
__device__ __forceinline__ void LoadFloats(const T* p, float (&out)[kN]) {
  constexpr int kPer = Pack16<T>::kN;
  static_assert(kN % kPer == 0, "whole 16-byte packs");
  for (int c = 0; c < kN / kPer; ++c) {
    const Pack16<T> pack = LoadPack16(p + c * kPer);
    for (int j = 0; j < kPer; ++j) out[c * kPer + j] = ToFloat(pack.v[j]);
  }
}
template <int kN, typename T>
__device__ __forceinline__ void StoreFloats(T* p, const float (&in)[kN]) {
  constexpr int kPer = Pack16<T>::kN;
  static_assert(kN % kPer == 0, "whole 16-byte packs");
  for (int c = 0; c < kN / kPer; ++c) {
    Pack16<T> pack;
    for (int j = 0; j < kPer; ++j) pack.v[j] = FromFloat<T>(in[c * kPer + j]);
    StorePack16(p + c * kPer, pack);
  }
}

// Calls fn(std::integral_constant<int, V>{}) for the V among kValues that
// equals `value` (the compiled variants of a kernel template); any other value
// is a fatal error: "<what> supports 4, 8; got 5".
template <int... kValues, typename Fn>
void DispatchInt(int value, const char* what, Fn&& fn) {
  const bool found =
      ((value == kValues ? (fn(std::integral_constant<int, kValues>{}), true)
                         : false) ||
       ...);
  if (found) return;
  std::string supported;
  ((supported += (supported.empty() ? "" : ", ") + std::to_string(kValues)),
   ...);
  ::gpt2::FatalError(std::string(what) + " supports " + supported + "; got " +
                         std::to_string(value),
                     __FILE__, __LINE__);
}

template <typename T>
T* Ptr(const Tensor& t) {
  return static_cast<T*>(t.data);
}

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_COMMON_CUH_
