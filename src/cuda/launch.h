// The one place the GPU build (nvcc) and the emulated build (g++ against
// src/cuda_emu) differ: launching a kernel, and declaring dynamic shared
// memory. Include it from .cu files; see docs/cuda_emu.md.
#ifndef GPT2_CUDA_LAUNCH_H_
#define GPT2_CUDA_LAUNCH_H_

#if defined(GPT2_CUDA_EMULATED)
#include "src/cuda_emu/cuda_emu.h"
#elif defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#error "src/cuda/launch.h is for .cu files (nvcc) or the emulated build"
#endif

#include <cstddef>
#include <cstdlib>
#include <string_view>
#include <utility>

namespace gpt2 {
namespace cuda {

// Programmatic dependent launch (sm_90+, opt-in: GPT2_PDL=1). Launched that
// way, a kernel may be scheduled before the kernel ahead of it in the stream
// has finished, once every block of that kernel has begun (its prologue's
// launch_dependents). Each of our kernels starts with KernelPrologue(), whose
// wait holds the whole kernel until the kernel ahead has finished and its
// writes are visible: only the launch and the placing of the blocks overlap
// the kernel ahead's last wave (the gap between two of our kernels), never
// its work. A kernel ahead that does not trigger (cuBLASLt's) gives no
// overlap; a stream wait on an event still holds. Without the switch, on
// older GPUs and in the emulator the prologue does nothing.
// tests/tools/kernel_prologue_check.py fails CI on a kernel without it.
__device__ __forceinline__ void KernelPrologue() {
#if !defined(GPT2_CUDA_EMULATED) && defined(__CUDA_ARCH__) && \
    __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#if !defined(GPT2_CUDA_EMULATED)
// Whether launches are programmatic: GPT2_PDL=1 and the current device is
// sm_90 or newer (read once per process).
inline bool ProgrammaticLaunch() {
  static const bool on = [] {
    const char* env = std::getenv("GPT2_PDL");
    if (env == nullptr || std::string_view(env) != "1") return false;
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                  device) == cudaSuccess &&
           major >= 9;
  }();
  return on;
}
#endif

// Launches kernel<<<grid, block, smem, stream>>>(args...) and returns
// cudaGetLastError() (which also clears a non-sticky launch error, as a plain
// launch followed by cudaGetLastError would). Prefer GPT2_LAUNCH, which also
// gives the emulator the kernel's name for its reports.
template <typename... Params, typename... Args>
cudaError_t LaunchNamed(const char* name, void (*kernel)(Params...), dim3 grid,
                        dim3 block, size_t smem, cudaStream_t stream,
                        Args&&... args) {
#if defined(GPT2_CUDA_EMULATED)
  ::cuda_emu::Launch(name, kernel, grid, block, smem, stream,
                     std::forward<Args>(args)...);
#else
  (void)name;
  // Programmatic (above) on a stream of our own; the legacy stream keeps
  // plain launches.
  if (stream != nullptr && ProgrammaticLaunch()) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
    const cudaError_t err =
        cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    return err != cudaSuccess ? err : cudaGetLastError();
  }
  // clang-format would split the >>> of a .h file into > > >.
  // clang-format off
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
  // clang-format on
#endif
  return cudaGetLastError();
}

template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 block,
                   size_t smem, cudaStream_t stream, Args&&... args) {
  return LaunchNamed(nullptr, kernel, grid, block, smem, stream,
                     std::forward<Args>(args)...);
}

}  // namespace cuda
}  // namespace gpt2

// GPT2_LAUNCH(kernel, grid, block, smem, stream, args...) -> cudaError_t.
// Wrap a template kernel in parentheses: GPT2_LAUNCH((k<float, 4>), ...).
#define GPT2_LAUNCH(kernel, grid, block, smem, stream, ...)             \
  ::gpt2::cuda::LaunchNamed(#kernel, kernel, grid, block, smem, stream, \
                            ##__VA_ARGS__)

// GPT2_EXTERN_SHARED(T, name); declares the block's dynamic shared memory as
// `T name[]` -- `extern __shared__ T name[];` under nvcc. The emulated build
// cannot support the plain declaration (docs/cuda_emu.md explains why), so
// kernels use this macro for dynamic shared memory; static `__shared__`
// arrays need nothing special. As in CUDA, all such names in a block alias
// the same memory, of the size given at launch.
#if defined(GPT2_CUDA_EMULATED)
#define GPT2_EXTERN_SHARED(T, name) \
  T* const name = static_cast<T*>(::cuda_emu::detail::DynamicSharedMemory())
#else
#define GPT2_EXTERN_SHARED(T, name) extern __shared__ T name[]
#endif

#endif  // GPT2_CUDA_LAUNCH_H_
