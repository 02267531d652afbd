// Asynchronous global -> shared copies (cp.async, sm_80 and newer), for
// kernels that load the next tile while they compute on the current one.
// Each thread's copies since its last CpAsyncCommit form a group;
// CpAsyncWait<N>() waits until at most N of its groups are still in flight.
// The copies are the thread's own: the block still needs a barrier before
// reading what other threads copied. The emulated build copies at once (so
// the waits have nothing to do); it cannot catch a read that comes before its
// wait, which the double-buffer pattern of the callers rules out.
#ifndef GPT2_CUDA_ASYNC_COPY_CUH_
#define GPT2_CUDA_ASYNC_COPY_CUH_

#include <cstdint>
#include <cstring>

#include "src/cuda/common.cuh"

namespace gpt2::cuda {

// 16 bytes from `src` (global, 16-byte aligned) to `dst` (shared, 16-byte
// aligned); with valid false, 16 zero bytes and `src` is not read.
__device__ __forceinline__ void CpAsync16(void* dst, const void* src,
                                          bool valid) {
#if defined(GPT2_CUDA_EMULATED)
  if (valid) {
    std::memcpy(dst, src, 16);
  } else {
    std::memset(dst, 0, 16);
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
#if !defined(GPT2_CUDA_EMULATED) && defined(__CUDA_ARCH__) && \
    __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int kInFlight>
__device__ __forceinline__ void CpAsyncWait() {
#if !defined(GPT2_CUDA_EMULATED) && defined(__CUDA_ARCH__) && \
    __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kInFlight));
#endif
}

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_ASYNC_COPY_CUH_
