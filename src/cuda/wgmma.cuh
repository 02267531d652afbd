// Warpgroup-level tensor-core products (Hopper's wgmma.mma_async, sm_90a):
// the 4 warps of a warpgroup (128 threads, the first warp's index a multiple
// of 4) compute D (64 x 64, f32) = A (64 x 16, bf16) * B (16 x 64, bf16)
// [+ D] in one instruction, B read from shared memory by the tensor cores
// through a descriptor, A from shared memory too or from registers.
//
// Register layouts. The accumulators of warp w (of the warpgroup) are rows
// 16 w .. 16 w + 15 of D, laid out as eight mma.sync m16n8 accumulators
// side by side (src/cuda/mma.cuh): d[j][0..1] = D[16w + g][8j + 2t ..],
// d[j][2..3] = D[16w + g + 8][8j + 2t ..], g = lane / 4, t = lane % 4. An A
// from registers is warp w's 16 rows as one mma.sync A fragment. So a
// kernel written against mma.cuh keeps its fragments and swaps 8 x 4
// mma.sync per warp for one wgmma per warpgroup.
//
// Shared-memory layout: the 128-byte swizzle. An operand tile is 64
// elements (128 bytes) wide: each of its rows is 128 contiguous bytes, and
// the hardware reads the 16-byte chunk c of row r at chunk c ^ (r % 8): it
// XORs address bits 4-6 with bits 7-9, so the tile must start on a
// 1,024-byte boundary (eight rows). A K-major operand has its rows along M
// (or N) and K along a row; an MN-major B (the transposed flag) has its rows
// along K and N along a row. The descriptor's stride byte offset (sbo) is
// the distance between groups of 8 rows (1,024 here), its leading byte
// offset (lbo) the distance between 16-byte chunks neighbouring in K
// (K-major: 16, contiguous) or between 64-element atoms along N (MN-major:
// never used at N = 64); before the swizzle,
//   K-major:  byte(mn, k) = (mn % 8) * 128 + (mn / 8) sbo + (k / 8) lbo +
//             (k % 8) * 2
//   MN-major: byte(n, k)  = (k % 8) * 128 + (k / 8) sbo + (n / 8) * 16 +
//             (n % 8) * 2
// (PTX ISA, "Shared Memory Matrix Layout", and CUTLASS's canonical GMMA
// layouts say the same.) Unlike core matrices of 8 x 8 without swizzle, a
// row stays contiguous: a warp loads four whole rows from global memory per
// copy instruction, and the 8 lanes of each store phase hit 8 different
// bank groups. CheckWgmmaLayout (mma_check.h) tests this layout on the
// device before any kernel relies on it.
//
// Asynchrony: the products run after the instruction issues; WgmmaCommit
// closes a group and WgmmaWait<N> waits until at most N groups are in
// flight. Until then the accumulators and A registers must not be touched
// and B's shared memory not overwritten. WgmmaFence orders register writes
// before the next products; FenceProxyAsync makes this thread's ordinary
// shared-memory writes (cp.async's too) visible to the tensor cores, before
// the barrier that publishes them.
//
// The emulated build computes each product at once, per warp (a warp's rows
// need only its own A fragment and the shared B), in k order with fmaf, as
// the mma.sync twin does; so it checks layouts and indexing, not the
// asynchrony rules above.
#ifndef GPT2_CUDA_WGMMA_CUH_
#define GPT2_CUDA_WGMMA_CUH_

#include <cstdint>

#include "src/cuda/common.cuh"
#include "src/cuda/emulated_async.h"
#include "src/cuda/mma.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(GPT2_CUDA_EMULATED)
#define GPT2_WGMMA_HARDWARE 1
#endif

namespace gpt2::cuda {

// Whether this build's device code has the wgmma kernels: compiled for
// sm_90a, or emulated. Elsewhere their bodies trap; callers ask
// WgmmaBuilt (mma_check.h) first.
__device__ __forceinline__ bool WgmmaCompiled() {
#if defined(GPT2_CUDA_EMULATED) || defined(GPT2_WGMMA_HARDWARE)
  return true;
#else
  return false;
#endif
}

// The byte the hardware reads for an unswizzled shared-memory address (the
// 128-byte swizzle above).
__host__ __device__ constexpr uint32_t Swizzle128(uint32_t byte) {
  return byte ^ (((byte >> 7) & 7u) << 4);
}

// A matrix operand in shared memory: the descriptor, or in the emulated
// build the pointer and the two offsets it encodes.
struct SmemOperand {
#if defined(GPT2_CUDA_EMULATED)
  const bf16* base;
  uint32_t lbo, sbo;  // bytes
#else
  uint64_t desc;
#endif
};

// The operand starting at `p` (16-byte aligned, in a tile that starts on a
// 1,024-byte boundary), with lbo / sbo (multiples of 16 bytes, under 256
// KiB) as described above.
__device__ __forceinline__ SmemOperand SmemOperandAt(const bf16* p,
                                                     uint32_t lbo,
                                                     uint32_t sbo) {
  SmemOperand m;
#if defined(GPT2_CUDA_EMULATED)
  m.base = p;
  m.lbo = lbo;
  m.sbo = sbo;
#else
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  // Bits 0-13 start address >> 4, 16-29 lbo >> 4, 32-45 sbo >> 4; base
  // offset (49-51) zero (the tile starts on the swizzle's 1,024 bytes);
  // layout (62-63) 1: the 128-byte swizzle.
  m.desc = uint64_t{(address & 0x3FFFFu) >> 4} |
           (uint64_t{(lbo & 0x3FFFFu) >> 4} << 16) |
           (uint64_t{(sbo & 0x3FFFFu) >> 4} << 32) | (uint64_t{1} << 62);
#endif
  return m;
}

// The same operand starting `bytes` (a multiple of 16) further on.
__device__ __forceinline__ SmemOperand Advance(SmemOperand m, uint32_t bytes) {
#if defined(GPT2_CUDA_EMULATED)
  m.base = reinterpret_cast<const bf16*>(reinterpret_cast<const char*>(m.base) +
                                         bytes);
#else
  m.desc += bytes >> 4;  // the start address field, which never carries
#endif
  return m;
}

// The attention kernels' 64 x 64 tiles: row r's 128 bytes at 128 r, its
// 16-byte chunks swizzled. Element (r, c) is at TileIndex(r, c) of a tile
// starting on 1,024 bytes (AlignTiles). Read with its rows along M or N and
// c along K (K-major), k-step ks (columns 16 ks ..) starts 32 ks bytes on;
// read as an MN-major B with its rows along K and c along N, k-step ks (rows
// 16 ks ..) starts 2,048 ks bytes on.
constexpr int kTileElems = 64 * 64;
constexpr int kTileAlign = 1024;
__host__ __device__ constexpr int TileIndex(int r, int c) {
  return static_cast<int>(Swizzle128(static_cast<uint32_t>(r * 128 + c * 2))) /
         2;
}
// p rounded up to the swizzle's 1,024 bytes (shared memory is allotted with
// kTileAlign bytes to spare for it).
template <typename T>
__device__ __forceinline__ T* AlignTiles(T* p) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<T*>((at + kTileAlign - 1) &
                              ~uintptr_t{kTileAlign - 1});
}
__device__ __forceinline__ SmemOperand TileKMajor(const bf16* tile, int ks) {
  return Advance(SmemOperandAt(tile, 16, 1024), 32 * ks);
}
__device__ __forceinline__ SmemOperand TileMnMajor(const bf16* tile, int ks) {
  return Advance(SmemOperandAt(tile, 1024, 1024), 2048 * ks);
}

#if defined(GPT2_CUDA_EMULATED)
namespace wgmma_emu {
// The element at `byte` past base before the swizzle, which (as the
// hardware's) applies to the absolute address.
__device__ __forceinline__ float At(const bf16* base, uint32_t byte) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(base) + byte;
  const uintptr_t swizzled =
      (at & ~uintptr_t{0x3FF}) | Swizzle128(static_cast<uint32_t>(at & 0x3FF));
  return __bfloat162float(*reinterpret_cast<const bf16*>(swizzled));
}
// Element (mn, k) of a K-major operand, or (n, k) of an MN-major B.
__device__ __forceinline__ float KMajor(const SmemOperand& m, int mn, int k) {
  return At(m.base,
            (mn % 8) * 128 + (mn / 8) * m.sbo + (k / 8) * m.lbo + (k % 8) * 2);
}
__device__ __forceinline__ float MnMajor(const SmemOperand& m, int n, int k) {
  return At(m.base, (k % 8) * 128 + (k / 8) * m.sbo + (n % 64 / 8) * 16 +
                        (n % 8) * 2 + (n / 64) * m.lbo);
}
// d (this lane's accumulators) = a_rows (its rows g and g + 8 of its warp,
// over k) times B, plus d when accumulating; each sum in k order.
template <bool kTransB>
__device__ __forceinline__ void Product(float (&d)[8][4],
                                        const float (&a_rows)[2][16],
                                        const SmemOperand& b, bool accumulate) {
  const int t = threadIdx.x % 4;
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < 4; ++i) {
      const int n = 8 * j + 2 * t + (i & 1);
      float acc = accumulate ? d[j][i] : 0.0f;
      for (int k = 0; k < 16; ++k) {
        const float bv = kTransB ? MnMajor(b, n, k) : KMajor(b, n, k);
        acc = fmaf(a_rows[i / 2][k], bv, acc);
      }
      d[j][i] = acc;
    }
  }
}

// This lane's rows g and g + 8 of its warp's 16, over k, from a register A
// (each lane holds an mma.sync A fragment: the rows come from its quad).
__device__ __forceinline__ void RegisterRows(float (&a_rows)[2][16],
                                             const uint32_t (&a)[4]) {
  const int lane = threadIdx.x % 32, g = lane / 4;
  uint32_t all[32][4];  // every lane's fragment (one collective)
  cuda_emu::WarpGather(0xffffffffu, &a, all, sizeof(a));
  for (int j = 0; j < 4; ++j) {  // lane 4g + j holds k 2j.. and 2j + 8..
    const uint32_t(&r)[4] = all[4 * g + j];
    for (int h = 0; h < 2; ++h) {  // rows g, g + 8
      a_rows[h][2 * j] = Bf16Lo(r[h]);
      a_rows[h][2 * j + 1] = Bf16Hi(r[h]);
      a_rows[h][2 * j + 8] = Bf16Lo(r[h + 2]);
      a_rows[h][2 * j + 9] = Bf16Hi(r[h + 2]);
    }
  }
}
// The same rows of a K-major A in shared memory (rows 16 w .. 16 w + 15 are
// warp w's).
__device__ __forceinline__ void SharedRows(float (&a_rows)[2][16],
                                           const SmemOperand& a) {
  const int row = (threadIdx.x % 128) / 32 * 16 + (threadIdx.x % 32) / 4;
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 16; ++k) a_rows[h][k] = KMajor(a, row + 8 * h, k);
}

// The device runs a warpgroup product asynchronously: wgmma.mma_async queues
// it, and it reads its shared-memory operands, its A registers and its
// accumulators whenever it runs, up to the wgmma.wait_group that retires its
// group. So does the emulation: each product is queued (pointers to its
// accumulators and A registers, its operands' addresses) and run at that
// wait. A kernel that reads its accumulators before the wait, or overwrites
// an operand (a shared tile, an A register) while its product is in flight,
// gets wrong results here, as it may on the device; one that never waits
// gets no products at all.
struct Queued {
  float (*d)[8][4];
  const uint32_t (*a_regs)[4];  // register A, else a_smem
  SmemOperand a_smem, b;
  bool trans_b, accumulate;
};
using Queue = emulated::AsyncGroups<Queued, 64, 16>;
__device__ __forceinline__ Queue& ThisThreadQueue() {
  return Queue::OfThisThread(cuda_emu::detail::HardwareState::kWgmmaQueue);
}
__device__ __forceinline__ void Run(const Queued& p) {
  float a_rows[2][16];
  if (p.a_regs != nullptr) {
    RegisterRows(a_rows, *p.a_regs);
  } else {
    SharedRows(a_rows, p.a_smem);
  }
  if (p.trans_b) {
    Product<true>(*p.d, a_rows, p.b, p.accumulate);
  } else {
    Product<false>(*p.d, a_rows, p.b, p.accumulate);
  }
}
}  // namespace wgmma_emu
#endif

// Register operand lists of the 64 x 64 accumulators, for the asm below.
#define GPT2_WGMMA_D8(j) \
  "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define GPT2_WGMMA_D                                                      \
  GPT2_WGMMA_D8(0), GPT2_WGMMA_D8(1), GPT2_WGMMA_D8(2), GPT2_WGMMA_D8(3), \
      GPT2_WGMMA_D8(4), GPT2_WGMMA_D8(5), GPT2_WGMMA_D8(6), GPT2_WGMMA_D8(7)
#define GPT2_WGMMA_DLIST                                                    \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, "  \
  "%30, %31}"

// d = A * B (+ d if accumulate), A from registers (warp w's 16 rows as an
// mma.sync A fragment), B in shared memory, MN-major if kTransB.
template <bool kTransB>
__device__ __forceinline__ void Wgmma64x64(float (&d)[8][4],
                                           const uint32_t (&a)[4],
                                           SmemOperand b, bool accumulate) {
#if defined(GPT2_CUDA_EMULATED)
  wgmma_emu::ThisThreadQueue().Push(
      {&d, &a, SmemOperand{}, b, kTransB, accumulate}, "wgmma products");
#elif defined(GPT2_WGMMA_HARDWARE)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %38, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " GPT2_WGMMA_DLIST
      ", {%32, %33, %34, %35}, %36, p, 1, 1, %37;\n}\n"
      : GPT2_WGMMA_D
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b.desc),
        "n"(kTransB ? 1 : 0), "r"(accumulate ? 1 : 0));
#else
  (void)d, (void)a, (void)b, (void)accumulate;
  __trap();
#endif
}

// d = A * B (+ d if accumulate), A K-major in shared memory (rows 16 w ..
// 16 w + 15 are warp w's), B in shared memory, MN-major if kTransB.
template <bool kTransB>
__device__ __forceinline__ void Wgmma64x64(float (&d)[8][4], SmemOperand a,
                                           SmemOperand b, bool accumulate) {
#if defined(GPT2_CUDA_EMULATED)
  wgmma_emu::ThisThreadQueue().Push({&d, nullptr, a, b, kTransB, accumulate},
                                    "wgmma products");
#elif defined(GPT2_WGMMA_HARDWARE)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %35, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " GPT2_WGMMA_DLIST
      ", %32, %33, p, 1, 1, 0, %34;\n}\n"
      : GPT2_WGMMA_D
      : "l"(a.desc), "l"(b.desc), "n"(kTransB ? 1 : 0),
        "r"(accumulate ? 1 : 0));
#else
  (void)d, (void)a, (void)b, (void)accumulate;
  __trap();
#endif
}

#undef GPT2_WGMMA_DLIST
#undef GPT2_WGMMA_D
#undef GPT2_WGMMA_D8

// Orders this warpgroup's register writes before the products issued next.
__device__ __forceinline__ void WgmmaFence() {
#if defined(GPT2_WGMMA_HARDWARE)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void WgmmaCommit() {
#if defined(GPT2_CUDA_EMULATED)
  wgmma_emu::ThisThreadQueue().Commit("wgmma");
#elif defined(GPT2_WGMMA_HARDWARE)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int kInFlight>
__device__ __forceinline__ void WgmmaWait() {
#if defined(GPT2_CUDA_EMULATED)
  wgmma_emu::ThisThreadQueue().Retire(
      kInFlight, [](const wgmma_emu::Queued& p) { wgmma_emu::Run(p); });
#elif defined(GPT2_WGMMA_HARDWARE)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kInFlight)
               : "memory");
#endif
}

// Keeps the compiler from moving reads or writes of accumulators across the
// asynchronous window (call after WgmmaWait and before the first product).
__device__ __forceinline__ void PinAccumulators(float (&d)[8][4]) {
#if defined(GPT2_WGMMA_HARDWARE)
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(d[j][i])::"memory");
  }
#else
  (void)d;
#endif
}

// The same for A fragments computed before a WgmmaFence: pinned before it,
// their values are in their registers when the fence orders them for the
// products after it (else the compiler may compute them after the fence and
// ptxas then adds a fence of its own before the product, advisory C7519).
__device__ __forceinline__ void PinFragments(uint32_t (&a)[4][4]) {
#if defined(GPT2_WGMMA_HARDWARE)
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[j][i])::"memory");
  }
#else
  (void)a;
#endif
}

// This thread's ordinary shared-memory writes (and completed cp.async
// copies), visible to the tensor cores' reads after the next barrier.
__device__ __forceinline__ void FenceProxyAsync() {
#if defined(GPT2_WGMMA_HARDWARE)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_WGMMA_CUH_
