// CUDA AdamW: one fused elementwise pass over a parameter range. It reads the
// squared global norm from the device, so clipping needs no host sync, and
// takes every hyperparameter at run time (the lr changes each step without
// recompiling).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "src/cuda/common.cuh"
#include "src/ops/adamw.h"

namespace gpt2::cuda {
namespace {

// x rounded to bf16 up or down with probability by distance (unbiased), from
// 16 random bits: r added below the kept bits, then truncated. Non-finite
// values round to nearest.
__device__ __forceinline__ bf16 StochasticBf16(float x, uint32_t r) {
  if (!(fabsf(x) < INFINITY)) return __float2bfloat16(x);  // NaN, Inf
  const uint32_t bits = __float_as_uint(x) + (r & 0xFFFFu);
  return __ushort_as_bfloat16(static_cast<unsigned short>(bits >> 16));
}

__device__ __forceinline__ uint32_t RoundingBits(uint64_t seed, int64_t step,
                                                 int64_t index) {
  uint64_t z = seed ^ (static_cast<uint64_t>(step) * 0x9E3779B97F4A7C15ull) ^
               (static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>(z ^ (z >> 31));
}

template <typename T>
__device__ __forceinline__ T RoundParam(float x, uint64_t seed, int64_t step,
                                        int64_t index) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (seed != 0) return StochasticBf16(x, RoundingBits(seed, step, index));
  }
  return FromFloat<T>(x);
}

struct AdamWScalars {
  float lr, beta1, beta2, eps, weight_decay, correction1, correction2,
      grad_clip;
  uint64_t rounding_seed;
  int64_t step, index;
};

// The clipping factor from the squared global norm; false for a NaN or Inf
// norm (the step is then skipped on the device).
__device__ __forceinline__ bool DeviceClipScale(const float* norm_squared,
                                                float grad_clip, float* scale) {
  const float norm = sqrtf(norm_squared[0]);
  if (!(norm < INFINITY)) return false;
  *scale = (grad_clip > 0.0f && norm > grad_clip) ? grad_clip / (norm + 1e-6f)
                                                  : 1.0f;
  return true;
}

// One element's update: m, v and the weight w in place, the new weight
// returned. The fused multiply-adds are spelled out, so the compiler's
// contraction choices cannot make the packed and element-wise kernels (which
// inline this differently) round differently.
__device__ __forceinline__ float Update(float g, float& m, float& v, float w,
                                        const AdamWScalars& a) {
  m = fmaf(a.beta1, m, (1.0f - a.beta1) * g);
  v = fmaf(a.beta2, v, ((1.0f - a.beta2) * g) * g);
  const float step = (m / a.correction1) / (sqrtf(v / a.correction2) + a.eps);
  return fmaf(-a.lr, fmaf(a.weight_decay, w, step), w);
}

template <typename T>
__global__ void AdamWKernel(T* param, float* master, float* m, float* v,
                            const T* grad, int64_t n, const float* norm_squared,
                            AdamWScalars a) {
  float scale;
  if (!DeviceClipScale(norm_squared, a.grad_clip, &scale)) return;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float mi = m[i], vi = v[i];
    const float w = master != nullptr ? master[i] : ToFloat(param[i]);
    const float updated = Update(ToFloat(grad[i]) * scale, mi, vi, w, a);
    m[i] = mi;
    v[i] = vi;
    if (master != nullptr) master[i] = updated;
    param[i] = RoundParam<T>(updated, master != nullptr ? a.rounding_seed : 0,
                             a.step, a.index + i);
  }
}

// The same, four elements a thread with 16-byte accesses to m, v and the
// master weights (8 or 16 bytes to the params and gradients): every pointer
// aligned for that, n a multiple of 4 (the caller runs the rest through
// AdamWKernel). Each element gets AdamWKernel's arithmetic: the same bits.
template <typename T>
__global__ void AdamWPackedKernel(T* param, float* master, float* m, float* v,
                                  const T* grad, int64_t n,
                                  const float* norm_squared, AdamWScalars a) {
  float scale;
  if (!DeviceClipScale(norm_squared, a.grad_clip, &scale)) return;
  for (int64_t i = 4 * (blockIdx.x * int64_t{blockDim.x} + threadIdx.x); i < n;
       i += 4 * int64_t{gridDim.x} * blockDim.x) {
    const Pack4<T> g = *reinterpret_cast<const Pack4<T>*>(grad + i);
    float4 mi = *reinterpret_cast<const float4*>(m + i);
    float4 vi = *reinterpret_cast<const float4*>(v + i);
    float4 w;
    if (master != nullptr) {
      w = *reinterpret_cast<const float4*>(master + i);
    } else {
      const Pack4<T> p = *reinterpret_cast<const Pack4<T>*>(param + i);
      w = make_float4(ToFloat(p.v[0]), ToFloat(p.v[1]), ToFloat(p.v[2]),
                      ToFloat(p.v[3]));
    }
    float4 u;
    u.x = Update(ToFloat(g.v[0]) * scale, mi.x, vi.x, w.x, a);
    u.y = Update(ToFloat(g.v[1]) * scale, mi.y, vi.y, w.y, a);
    u.z = Update(ToFloat(g.v[2]) * scale, mi.z, vi.z, w.z, a);
    u.w = Update(ToFloat(g.v[3]) * scale, mi.w, vi.w, w.w, a);
    *reinterpret_cast<float4*>(m + i) = mi;
    *reinterpret_cast<float4*>(v + i) = vi;
    if (master != nullptr) *reinterpret_cast<float4*>(master + i) = u;
    const uint64_t seed = master != nullptr ? a.rounding_seed : 0;
    const int64_t at = a.index + i;
    Pack4<T> p;
    p.v[0] = RoundParam<T>(u.x, seed, a.step, at);
    p.v[1] = RoundParam<T>(u.y, seed, a.step, at + 1);
    p.v[2] = RoundParam<T>(u.z, seed, a.step, at + 2);
    p.v[3] = RoundParam<T>(u.w, seed, a.step, at + 3);
    *reinterpret_cast<Pack4<T>*>(param + i) = p;
  }
}

}  // namespace

void AdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
           Tensor norm_squared, const AdamWArgs& args, CUstream_st* stream) {
  AdamWScalars a;
  a.lr = static_cast<float>(args.lr);
  a.beta1 = static_cast<float>(args.beta1);
  a.beta2 = static_cast<float>(args.beta2);
  a.eps = static_cast<float>(args.eps);
  a.weight_decay = static_cast<float>(args.weight_decay);
  a.correction1 =
      static_cast<float>(1.0 - std::pow(args.beta1, double(args.step)));
  a.correction2 =
      static_cast<float>(1.0 - std::pow(args.beta2, double(args.step)));
  a.grad_clip = static_cast<float>(args.grad_clip);
  a.rounding_seed = args.rounding_seed;
  a.step = args.step;
  a.index = args.index;
  DispatchFloat(param.dtype, [&](auto zero) {
    using F = decltype(zero);
    F* p = Ptr<F>(param);
    float* w = master.data == nullptr ? nullptr : Ptr<float>(master);
    float *mp = Ptr<float>(m), *vp = Ptr<float>(v);
    const F* g = Ptr<F>(grad);
    const auto aligned = [](const void* ptr, size_t bytes) {
      return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
    };
    // Packed over the largest multiple of 4 when every array allows it; the
    // rest (or everything) element by element.
    int64_t packed = 0;
    if (aligned(p, 4 * sizeof(F)) && aligned(g, 4 * sizeof(F)) &&
        aligned(mp, 16) && aligned(vp, 16) && (w == nullptr || aligned(w, 16)))
      packed = param.numel / 4 * 4;
    if (packed > 0) {
      CheckLaunch(
          GPT2_LAUNCH(AdamWPackedKernel<F>, GridStrideBlocks(packed / 4), 256,
                      0, stream, p, w, mp, vp, g, packed,
                      Ptr<float>(norm_squared), a),
          "AdamWPackedKernel");
    }
    if (packed < param.numel) {
      AdamWScalars rest = a;
      rest.index += packed;
      CheckLaunch(
          GPT2_LAUNCH(AdamWKernel<F>, GridStrideBlocks(param.numel - packed),
                      256, 0, stream, p + packed,
                      w == nullptr ? nullptr : w + packed, mp + packed,
                      vp + packed, g + packed, param.numel - packed,
                      Ptr<float>(norm_squared), rest),
          "AdamWKernel");
    }
  });
}

}  // namespace gpt2::cuda
