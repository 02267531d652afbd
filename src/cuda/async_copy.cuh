// Asynchronous global -> shared copies (cp.async, sm_80 and newer), for
// kernels that load the next tile while they compute on the current one.
// Each thread's copies since its last CpAsyncCommit form a group;
// CpAsyncWait<N>() waits until at most N of its groups are still in flight.
// The copies are the thread's own: the block still needs a barrier before
// reading what other threads copied. The emulated build copies at once
// (which shows a copy issued into a buffer other threads still read) or,
// with cuda_emu::SetDeferredCopies / CUDA_EMU_DEFERRED_COPIES=1, at the wait
// that retires the copy's group (which shows a read before its wait).
#ifndef GPT2_CUDA_ASYNC_COPY_CUH_
#define GPT2_CUDA_ASYNC_COPY_CUH_

#include <cstdint>
#include <cstring>

#include "src/cuda/common.cuh"
#include "src/cuda/emulated_async.h"

namespace gpt2::cuda {

#if defined(GPT2_CUDA_EMULATED)
namespace copy_emu {
struct Copy {
  void* dst;
  const void* src;  // nullptr: zeros
};
using Queue = emulated::AsyncGroups<Copy, 128, 16>;
__device__ __forceinline__ Queue& ThisThreadQueue() {
  return Queue::OfThisThread(cuda_emu::detail::HardwareState::kCopyQueue);
}
__device__ __forceinline__ void Land(const Copy& c) {
  if (c.src != nullptr) {
    std::memcpy(c.dst, c.src, 16);
  } else {
    std::memset(c.dst, 0, 16);
  }
}
}  // namespace copy_emu
#endif

// 16 bytes from `src` (global, 16-byte aligned) to `dst` (shared, 16-byte
// aligned); with valid false, 16 zero bytes and `src` is not read.
__device__ __forceinline__ void CpAsync16(void* dst, const void* src,
                                          bool valid) {
#if defined(GPT2_CUDA_EMULATED)
  if (cuda_emu::detail::DeferredCopies()) {
    copy_emu::ThisThreadQueue().Push({dst, valid ? src : nullptr},
                                     "cp.async copies");
  } else {
    copy_emu::Land({dst, valid ? src : nullptr});
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address),
               "l"(src), "r"(valid ? 16 : 0));
#elif defined(__CUDA_ARCH__)
  __trap();  // callers dispatch on the compute capability first
#endif
}

__device__ __forceinline__ void CpAsyncCommit() {
#if defined(GPT2_CUDA_EMULATED)
  if (cuda_emu::detail::DeferredCopies())
    copy_emu::ThisThreadQueue().Commit("cp.async");
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int kInFlight>
__device__ __forceinline__ void CpAsyncWait() {
#if defined(GPT2_CUDA_EMULATED)
  if (cuda_emu::detail::DeferredCopies())
    copy_emu::ThisThreadQueue().Retire(
        kInFlight, [](const copy_emu::Copy& c) { copy_emu::Land(c); });
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kInFlight));
#endif
}

// Hopper's bulk copies (cp.async.bulk, sm_90): one thread copies a whole
// buffer from global to shared memory, and the copy's bytes are counted on an
// mbarrier in shared memory that every thread then waits on:
//   if (threadIdx.x == 0) BarrierInit(&bar);
//   __syncthreads();
//   if (threadIdx.x == 0) BulkLoad(dst, src, bytes, &bar);
//   BarrierWait(&bar, 0);  // phase 0: this barrier's first completion
// Callers dispatch on the compute capability first (CurrentMajor() >= 9).
// The emulated barrier counts its completed phases (a wait for parity p
// returns once the current phase's parity is not p, as try_wait.parity does,
// and yields to the block's other threads until then: a wait for a copy
// nobody issues is reported as a livelock). One arrival a phase, the
// BulkLoad's: its copy lands at once and completes the phase, or with
// deferred copies (cuda_emu::SetDeferredCopies) at a wait on the barrier once
// every other thread of the block has run up to its own wait, so a read of the
// buffer before the wait shows.
__device__ __forceinline__ void BarrierInit(uint64_t* bar) {
#if defined(GPT2_CUDA_EMULATED)
  *bar = 0;
  cuda_emu::detail::DropBulkCopies(bar);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
  asm volatile(
      "mbarrier.init.shared::cta.b64 [%0], 1;\n"
      "fence.mbarrier_init.release.cluster;\n" ::"r"(address)
      : "memory");
#elif defined(__CUDA_ARCH__)
  (void)bar;
  __trap();
#endif
}

// `bytes` (a multiple of 16, under 2^20) from `src` (global) to `dst`
// (shared), both 16-byte aligned; completes the barrier's phase.
__device__ __forceinline__ void BulkLoad(void* dst, const void* src,
                                         uint32_t bytes, uint64_t* bar) {
#if defined(GPT2_CUDA_EMULATED)
  if (cuda_emu::detail::DeferredCopies()) {
    cuda_emu::detail::DeferBulkCopy(bar, dst, src, bytes);
  } else {
    std::memcpy(dst, src, bytes);
    ++*bar;
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint32_t to = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  const uint32_t at = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
  asm volatile(
      "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n"
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
      "[%2], [%3], %1, [%0];\n" ::"r"(at),
      "r"(bytes), "r"(to), "l"(src)
      : "memory");
#elif defined(__CUDA_ARCH__)
  (void)dst, (void)src, (void)bytes, (void)bar;
  __trap();
#endif
}

// Waits until the barrier has completed the phase of this parity. A copy
// lands in microseconds; a wait of ~2^22 polls (seconds) means it never
// will (a wrong size or address): the kernel traps, so the run fails loudly
// instead of hanging.
__device__ __forceinline__ void BarrierWait(uint64_t* bar, uint32_t parity) {
#if defined(GPT2_CUDA_EMULATED)
  // The block's other threads run up to their own waits before a deferred
  // copy lands (the first wait yields once): reads before any wait see the
  // old bytes.
  bool yielded = false;
  while ((*bar & 1) == parity) {
    if (yielded && cuda_emu::detail::LandBulkCopies(bar)) {
      ++*bar;
    } else {
      cuda_emu::detail::SpinYield(__FILE__, __LINE__);
      yielded = true;
    }
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint32_t at = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
  uint32_t done = 0;
  for (int polls = 0; done == 0; ++polls) {
    if (polls == (1 << 22)) __trap();
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(at), "r"(parity)
        : "memory");
  }
#elif defined(__CUDA_ARCH__)
  (void)bar, (void)parity;
  __trap();
#endif
}

// Orders this thread's ordinary shared-memory accesses before the async
// proxy's (a bulk copy's) that follow the next barrier: each thread that read
// (or wrote) a buffer calls it before the barrier after which one thread
// refills the buffer by BulkLoad. (The emulator's copies need no fence.)
__device__ __forceinline__ void FenceBeforeBulkRefill() {
#if !defined(GPT2_CUDA_EMULATED) && defined(__CUDA_ARCH__) && \
    __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_ASYNC_COPY_CUH_
