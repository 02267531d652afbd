// CUDA AdamW: one fused elementwise pass over a parameter range. It reads the
// squared global norm from the device, so clipping needs no host sync, and
// takes every hyperparameter at run time (the lr changes each step without
// recompiling). The range's runs with and without weight decay (the
// optimizer's whole shard: GPT-2's 16 tensors in 10 runs; or one layer's
// slices of them, with gaps between) go in one launch, their bounds and decays
// a table in the kernel's parameters.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

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

// x stored as T: a bf16 rounded stochastically where seed is non-zero (the
// hash of (seed ^ salt, step, index): the params' bits with salt 0, the
// moments' with their own salts, so that no two draw the same bits), else to
// nearest even.
template <typename T>
__device__ __forceinline__ T RoundTo(float x, uint64_t seed, int64_t step,
                                     int64_t index, uint64_t salt = 0) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (seed != 0)
      return StochasticBf16(x, RoundingBits(seed ^ salt, step, index));
  }
  return FromFloat<T>(x);
}
constexpr uint64_t kSaltM = 0x6A09E667F3BCC908ull;
constexpr uint64_t kSaltV = 0xBB67AE8584CAA73Bull;

struct AdamWScalars {
  float lr, beta1, beta2, eps, correction1, correction2, grad_clip;
  uint64_t rounding_seed;
  int64_t step, index;
};

// The scalars with the step's values read from the device where the call
// has them (AdamWArgs::step_values: a recorded call's rate at each replay).
__device__ __forceinline__ AdamWScalars
WithStepValues(AdamWScalars a, const AdamWStepValues* values) {
  if (values != nullptr) {
    a.lr = values->lr;
    a.correction1 = values->correction1;
    a.correction2 = values->correction2;
    a.step = values->step;
  }
  return a;
}

// The runs of one launch, in the launch's own numbering of the elements it
// updates (the runs laid end to end, gaps left out): run k holds the numbers
// below end[k] (and at or above the previous end), number e is element
// e + shift[k] of the arrays, with weight decay wd[k]. A launch takes at most
// kMaxRuns; more go in several launches.
constexpr int kMaxRuns = 24;
struct DecayTable {
  int count;
  int64_t end[kMaxRuns];
  int64_t shift[kMaxRuns];
  float wd[kMaxRuns];
};

// The table copied to shared memory (constant indices into the kernel's
// parameters; a run-time index there would copy the table to every thread's
// stack), and a thread's walk through it: At(e) for ascending e, then Shift()
// of the run At found.
struct DecayRuns {
  const int64_t* end;
  const int64_t* shift;
  const float* wd;
  int run = 0;
  __device__ float At(int64_t e) {
    while (e >= end[run]) ++run;
    return wd[run];
  }
  __device__ int64_t Shift() const { return shift[run]; }
};
__device__ __forceinline__ DecayRuns StageDecayTable(const DecayTable& table) {
  __shared__ int64_t end[kMaxRuns];
  __shared__ int64_t shift[kMaxRuns];
  __shared__ float wd[kMaxRuns];
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < kMaxRuns; ++k) {
      end[k] = table.end[k];
      shift[k] = table.shift[k];
      wd[k] = table.wd[k];
    }
  }
  __syncthreads();
  return DecayRuns{end, shift, wd};
}

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
                                        float weight_decay,
                                        const AdamWScalars& a) {
  m = fmaf(a.beta1, m, (1.0f - a.beta1) * g);
  v = fmaf(a.beta2, v, ((1.0f - a.beta2) * g) * g);
  const float step = (m / a.correction1) / (sqrtf(v / a.correction2) + a.eps);
  return fmaf(-a.lr, fmaf(weight_decay, w, step), w);
}

// Element i's update in memory, at weight decay wd and clip scale `scale`.
// The moments M are f32, or bf16 (with bf16 params and no masters: the whole
// state in bf16, every stored value rounded as RoundTo says).
template <typename T, typename M>
__device__ __forceinline__ void UpdateElement(T* param, float* master, M* m,
                                              M* v, const T* grad, int64_t i,
                                              float wd, float scale,
                                              const AdamWScalars& a) {
  float mi = ToFloat(m[i]), vi = ToFloat(v[i]);
  const float w = master != nullptr ? master[i] : ToFloat(param[i]);
  const float updated = Update(ToFloat(grad[i]) * scale, mi, vi, w, wd, a);
  const int64_t at = a.index + i;
  m[i] = RoundTo<M>(mi, a.rounding_seed, a.step, at, kSaltM);
  v[i] = RoundTo<M>(vi, a.rounding_seed, a.step, at, kSaltV);
  if (master != nullptr) master[i] = updated;
  param[i] = RoundTo<T>(updated, a.rounding_seed, a.step, at);
}

// Four consecutive moments (16 bytes of f32, 8 of bf16) as floats, and back
// (element `at` the first's number).
template <typename M>
__device__ __forceinline__ float4 LoadState4(const M* p) {
  if constexpr (std::is_same_v<M, float>) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const Pack4<M> q = *reinterpret_cast<const Pack4<M>*>(p);
    return make_float4(ToFloat(q.v[0]), ToFloat(q.v[1]), ToFloat(q.v[2]),
                       ToFloat(q.v[3]));
  }
}
template <typename M>
__device__ __forceinline__ void StoreState4(M* p, float4 x, uint64_t seed,
                                            int64_t step, int64_t at,
                                            uint64_t salt) {
  if constexpr (std::is_same_v<M, float>) {
    *reinterpret_cast<float4*>(p) = x;
  } else {
    Pack4<M> q;
    q.v[0] = RoundTo<M>(x.x, seed, step, at, salt);
    q.v[1] = RoundTo<M>(x.y, seed, step, at + 1, salt);
    q.v[2] = RoundTo<M>(x.z, seed, step, at + 2, salt);
    q.v[3] = RoundTo<M>(x.w, seed, step, at + 3, salt);
    *reinterpret_cast<Pack4<M>*>(p) = q;
  }
}

// Elements i to i + 3 with 16-byte accesses to the master weights and f32
// moments (8 or 16 bytes to the params, gradients and bf16 moments; every
// pointer aligned for that at i), element i + k at weight decay wd[k]: each
// gets UpdateElement's arithmetic, the same bits.
template <typename T, typename M>
__device__ __forceinline__ void UpdatePack(T* param, float* master, M* m, M* v,
                                           const T* grad, int64_t i,
                                           const float (&wd)[4], float scale,
                                           const AdamWScalars& a) {
  const Pack4<T> g = *reinterpret_cast<const Pack4<T>*>(grad + i);
  float4 mi = LoadState4(m + i);
  float4 vi = LoadState4(v + i);
  float4 w;
  if (master != nullptr) {
    w = *reinterpret_cast<const float4*>(master + i);
  } else {
    const Pack4<T> p = *reinterpret_cast<const Pack4<T>*>(param + i);
    w = make_float4(ToFloat(p.v[0]), ToFloat(p.v[1]), ToFloat(p.v[2]),
                    ToFloat(p.v[3]));
  }
  float4 u;
  u.x = Update(ToFloat(g.v[0]) * scale, mi.x, vi.x, w.x, wd[0], a);
  u.y = Update(ToFloat(g.v[1]) * scale, mi.y, vi.y, w.y, wd[1], a);
  u.z = Update(ToFloat(g.v[2]) * scale, mi.z, vi.z, w.z, wd[2], a);
  u.w = Update(ToFloat(g.v[3]) * scale, mi.w, vi.w, w.w, wd[3], a);
  const uint64_t seed = a.rounding_seed;
  const int64_t at = a.index + i;
  StoreState4(m + i, mi, seed, a.step, at, kSaltM);
  StoreState4(v + i, vi, seed, a.step, at, kSaltV);
  if (master != nullptr) *reinterpret_cast<float4*>(master + i) = u;
  Pack4<T> p;
  p.v[0] = RoundTo<T>(u.x, seed, a.step, at);
  p.v[1] = RoundTo<T>(u.y, seed, a.step, at + 1);
  p.v[2] = RoundTo<T>(u.z, seed, a.step, at + 2);
  p.v[3] = RoundTo<T>(u.w, seed, a.step, at + 3);
  *reinterpret_cast<Pack4<T>*>(param + i) = p;
}

template <typename T, typename M>
__global__ void AdamWKernel(T* param, float* master, M* m, M* v, const T* grad,
                            int64_t n, const float* norm_squared,
                            AdamWScalars given, const AdamWStepValues* values,
                            DecayTable table) {
  KernelPrologue();
  const AdamWScalars a = WithStepValues(given, values);
  DecayRuns runs = StageDecayTable(table);
  float scale;
  if (!DeviceClipScale(norm_squared, a.grad_clip, &scale)) return;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n;
       e += int64_t{gridDim.x} * blockDim.x) {
    const float wd = runs.At(e);
    UpdateElement(param, master, m, v, grad, e + runs.Shift(), wd, scale, a);
  }
}

// The same, four elements a thread (UpdatePack): every pointer aligned for
// that, n a multiple of 4 (the caller runs the rest through AdamWKernel),
// every shift a multiple of 4 and changing only at multiples of 4 (the four
// numbers of a pack are four adjacent elements).
template <typename T, typename M>
__global__ void AdamWPackedKernel(T* param, float* master, M* m, M* v,
                                  const T* grad, int64_t n,
                                  const float* norm_squared, AdamWScalars given,
                                  const AdamWStepValues* values,
                                  DecayTable table) {
  KernelPrologue();
  const AdamWScalars a = WithStepValues(given, values);
  DecayRuns runs = StageDecayTable(table);
  float scale;
  if (!DeviceClipScale(norm_squared, a.grad_clip, &scale)) return;
  for (int64_t e = 4 * (blockIdx.x * int64_t{blockDim.x} + threadIdx.x); e < n;
       e += 4 * int64_t{gridDim.x} * blockDim.x) {
    float wd[4];
    wd[0] = runs.At(e);
    const int64_t i = e + runs.Shift();
    wd[1] = runs.At(e + 1);
    wd[2] = runs.At(e + 2);
    wd[3] = runs.At(e + 3);
    UpdatePack(param, master, m, v, grad, i, wd, scale, a);
  }
}

// The rows of a table (rows x width, from element 0 of the arrays) that
// `marks` selects: those with the step's stamp when `marked`, else the others
// (AdamWArgs::row_marks). A warp a row, the rows in grid-stride order; four
// elements a lane (UpdatePack) when kPacked (width a multiple of 4, every
// array aligned for it), else one.
template <typename T, typename M, bool kPacked>
__global__ void AdamWRowsKernel(T* param, float* master, M* m, M* v,
                                const T* grad, int64_t rows, int64_t width,
                                const int32_t* marks, bool marked,
                                const float* norm_squared, AdamWScalars given,
                                const AdamWStepValues* values, float wd) {
  KernelPrologue();
  const AdamWScalars a = WithStepValues(given, values);
  float scale;
  if (!DeviceClipScale(norm_squared, a.grad_clip, &scale)) return;
  const int32_t stamp = AdamWRowStamp(a.step);
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
       r < rows; r += warps) {
    if ((marks[r] == stamp) != marked) continue;
    const int64_t row = r * width;
    if constexpr (kPacked) {
      const float wds[4] = {wd, wd, wd, wd};
      for (int64_t j = 4 * lane; j < width; j += 4 * 32)
        UpdatePack(param, master, m, v, grad, row + j, wds, scale, a);
    } else {
      for (int64_t j = lane; j < width; j += 32)
        UpdateElement(param, master, m, v, grad, row + j, wd, scale, a);
    }
  }
}

// marks[tokens[i]] = the step's stamp (MarkAdamWRows); tokens outside the
// table are left out. Threads that share a token write the same value.
__global__ void MarkRowsKernel(int32_t* marks, int64_t rows,
                               const int32_t* tokens, int64_t n,
                               int64_t given_step,
                               const AdamWStepValues* values) {
  KernelPrologue();
  const int32_t stamp =
      AdamWRowStamp(values != nullptr ? values->step : given_step);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int32_t token = tokens[i];
    if (token >= 0 && token < rows) marks[token] = stamp;
  }
}

// The runs of table past `by` numbers (for a launch starting there, its
// arrays `by` elements on).
DecayTable Shifted(DecayTable table, int64_t by) {
  for (int k = 0; k < table.count; ++k) table.end[k] -= by;
  return table;
}

// Whether a pack of four numbers is always four adjacent elements, four
// aligned: every shift a multiple of 4, changing only at multiples of 4.
bool PacksStayTogether(const DecayTable& table) {
  for (int k = 0; k < table.count; ++k) {
    if (table.shift[k] % 4 != 0) return false;
    if (k > 0 && table.shift[k] != table.shift[k - 1] &&
        table.end[k - 1] % 4 != 0)
      return false;
  }
  return true;
}

// One pass over the n numbers of `table`'s runs: four a thread over the
// largest multiple of 4 where every array allows 16-byte (params and
// gradients: 4-element) accesses and packs stay together, the rest (or
// everything) element by element.
template <typename F, typename M>
void LaunchAdamW(F* p, float* w, M* mp, M* vp, const F* g, int64_t n,
                 const float* norm_squared, const AdamWScalars& a,
                 const AdamWStepValues* values, const DecayTable& table,
                 cudaStream_t stream) {
  const auto aligned = [](const void* ptr, size_t bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
  };
  int64_t packed = 0;
  if (aligned(p, 4 * sizeof(F)) && aligned(g, 4 * sizeof(F)) &&
      aligned(mp, 4 * sizeof(M)) && aligned(vp, 4 * sizeof(M)) &&
      (w == nullptr || aligned(w, 16)) && PacksStayTogether(table))
    packed = n / 4 * 4;
  if (packed > 0) {
    CheckLaunch(GPT2_LAUNCH((AdamWPackedKernel<F, M>),
                            GridStrideBlocks(packed / 4), 256, 0, stream, p, w,
                            mp, vp, g, packed, norm_squared, a, values, table),
                "AdamWPackedKernel");
  }
  if (packed < n) {
    AdamWScalars rest = a;
    rest.index += packed;
    CheckLaunch(
        GPT2_LAUNCH((AdamWKernel<F, M>), GridStrideBlocks(n - packed), 256, 0,
                    stream, p + packed, w == nullptr ? nullptr : w + packed,
                    mp + packed, vp + packed, g + packed, n - packed,
                    norm_squared, rest, values, Shifted(table, packed)),
        "AdamWKernel");
  }
}

// A call with row marks (AdamWArgs::row_marks): its table's selected rows.
template <typename F, typename M>
void LaunchAdamWRows(F* p, float* w, M* mp, M* vp, const F* g, int64_t n,
                     const float* norm_squared, AdamWScalars a,
                     const AdamWStepValues* values, const AdamWArgs& args,
                     cudaStream_t stream) {
  const AdamWRowTable table = AdamWRows(args, n);
  const int64_t b = table.begin;
  p += b;
  mp += b;
  vp += b;
  g += b;
  if (w != nullptr) w += b;
  a.index += b;
  const auto aligned = [](const void* ptr, size_t bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
  };
  const bool packed = table.width % 4 == 0 && aligned(p, 4 * sizeof(F)) &&
                      aligned(g, 4 * sizeof(F)) && aligned(mp, 4 * sizeof(M)) &&
                      aligned(vp, 4 * sizeof(M)) &&
                      (w == nullptr || aligned(w, 16));
  const auto* marks = static_cast<const int32_t*>(args.row_marks.data);
  const auto wd = static_cast<float>(table.weight_decay);
  // 8 rows a block of 256 threads.
  const unsigned blocks = GridStrideBlocks(table.rows * 32);
  if (packed) {
    CheckLaunch(
        GPT2_LAUNCH((AdamWRowsKernel<F, M, true>), blocks, 256, 0, stream, p, w,
                    mp, vp, g, table.rows, table.width, marks, args.marked_rows,
                    norm_squared, a, values, wd),
        "AdamWRowsKernel");
  } else {
    CheckLaunch(
        GPT2_LAUNCH((AdamWRowsKernel<F, M, false>), blocks, 256, 0, stream, p,
                    w, mp, vp, g, table.rows, table.width, marks,
                    args.marked_rows, norm_squared, a, values, wd),
        "AdamWRowsKernel");
  }
}

}  // namespace

void MarkAdamWRows(Tensor marks, Tensor tokens, const AdamWArgs& args,
                   CUstream_st* stream) {
  if (tokens.numel == 0) return;
  CheckLaunch(
      GPT2_LAUNCH(MarkRowsKernel, GridStrideBlocks(tokens.numel), 256, 0,
                  stream, Ptr<int32_t>(marks), marks.numel,
                  Ptr<int32_t>(tokens), tokens.numel, args.step,
                  static_cast<const AdamWStepValues*>(args.step_values.data)),
      "MarkRowsKernel");
}

void AdamW(Tensor param, Tensor master, Tensor m, Tensor v, Tensor grad,
           Tensor norm_squared, const AdamWArgs& args, CUstream_st* stream) {
  const std::vector<AdamWDecayRun> runs = AdamWDecayRuns(args, param.numel);
  const AdamWStepValues now = MakeAdamWStepValues(args);
  AdamWScalars a;
  a.lr = now.lr;
  a.beta1 = static_cast<float>(args.beta1);
  a.beta2 = static_cast<float>(args.beta2);
  a.eps = static_cast<float>(args.eps);
  a.correction1 = now.correction1;
  a.correction2 = now.correction2;
  a.grad_clip = static_cast<float>(args.grad_clip);
  a.rounding_seed = args.rounding_seed;
  a.step = now.step;
  a.index = args.index;
  const auto* values =
      static_cast<const AdamWStepValues*>(args.step_values.data);
  // The moments in f32, or in bf16 beside bf16 params without masters.
  const auto dispatch = [&](auto fn) {
    if (m.dtype == DType::kBF16) {
      GPT2_CHECK_MSG(param.dtype == DType::kBF16 && master.data == nullptr,
                     "bf16 moments go with bf16 params and no masters");
      fn(bf16{}, bf16{});
    } else {
      DispatchFloat(param.dtype, [&](auto zero) { fn(zero, float{}); });
    }
  };
  dispatch([&](auto zero, auto zero_m) {
    using F = decltype(zero);
    using M = decltype(zero_m);
    F* p = Ptr<F>(param);
    float* w = master.data == nullptr ? nullptr : Ptr<float>(master);
    M *mp = Ptr<M>(m), *vp = Ptr<M>(v);
    const F* g = Ptr<F>(grad);
    if (args.row_marks.data != nullptr) {
      LaunchAdamWRows<F, M>(p, w, mp, vp, g, param.numel,
                            Ptr<float>(norm_squared), a, values, args, stream);
      return;
    }
    // kMaxRuns runs a launch (one launch for GPT-2's shard, or for one
    // layer's slices).
    for (size_t first = 0; first < runs.size(); first += kMaxRuns) {
      const size_t count = std::min<size_t>(kMaxRuns, runs.size() - first);
      const int64_t begin = runs[first].begin;
      DecayTable table{};
      table.count = static_cast<int>(count);
      int64_t n = 0;  // numbers so far: the runs end to end
      for (size_t k = 0; k < count; ++k) {
        const AdamWDecayRun& run = runs[first + k];
        table.shift[k] = run.begin - begin - n;
        n += run.end - run.begin;
        table.end[k] = n;
        table.wd[k] = static_cast<float>(run.weight_decay);
      }
      if (n == 0) continue;
      AdamWScalars part = a;
      part.index += begin;
      LaunchAdamW<F, M>(p + begin, w == nullptr ? nullptr : w + begin,
                        mp + begin, vp + begin, g + begin, n,
                        Ptr<float>(norm_squared), part, values, table, stream);
    }
  });
}

}  // namespace gpt2::cuda
