// The emulator's kernel launcher: the emulated build's replacement for
// kernel<<<grid, block, smem, stream>>>(args...). Kernel code reaches it
// through gpt2::cuda::Launch / GPT2_LAUNCH (src/cuda/launch.h).
#ifndef GPT2_CUDA_EMU_KERNEL_LAUNCH_H_
#define GPT2_CUDA_EMU_KERNEL_LAUNCH_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace cuda_emu {
namespace detail {

// A kernel with its arguments bound, callable once per emulated thread.
// `owner` keeps ctx alive while the launch waits in a lazy stream's queue.
struct KernelBody {
  void (*invoke)(const void* ctx);
  const void* ctx;
  std::shared_ptr<const void> owner;
};

// Validates the configuration like the CUDA runtime does, runs every block and
// checks the guard regions afterwards. Returns the launch's error, which is
// also recorded for cudaGetLastError.
cudaError_t LaunchKernel(const char* name, const void* func, dim3 grid,
                         dim3 block, size_t dynamic_smem, cudaStream_t stream,
                         KernelBody body);

}  // namespace detail

// Launches `kernel` on grid x block threads. `name` (may be null) is printed
// in reports. Arguments convert to the kernel's parameter types as they do in
// a <<<>>> launch; each emulated thread gets its own copy of the parameters.
template <typename... Params, typename... Args>
cudaError_t Launch(const char* name, void (*kernel)(Params...), dim3 grid,
                   dim3 block, size_t dynamic_smem, cudaStream_t stream,
                   Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args),
                "kernel launched with the wrong number of arguments");
  using Tuple = std::tuple<std::decay_t<Params>...>;
  struct Bound {
    void (*kernel)(Params...);
    Tuple params;
  };
  // Parentheses, not braces: <<<>>> allows narrowing conversions.
  auto bound = std::make_shared<const Bound>(
      Bound{kernel, Tuple(std::forward<Args>(args)...)});
  detail::KernelBody body{[](const void* ctx) {
                            const Bound* b = static_cast<const Bound*>(ctx);
                            std::apply(b->kernel, b->params);
                          },
                          bound.get(), bound};
  return detail::LaunchKernel(name, reinterpret_cast<const void*>(kernel), grid,
                              block, dynamic_smem, stream, body);
}

}  // namespace cuda_emu

// ---- The C++ overloads <cuda_runtime.h> declares only under nvcc ----
// They take a kernel or a __device__/__constant__ variable
// itself and forward its address to the C API, exactly as CUDA's versions do.
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr,
                                        int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr,
                                value);
}
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* entry) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(entry));
}
template <class T>
inline cudaError_t cudaMemcpyToSymbol(
    const T& symbol, const void* src, size_t count, size_t offset = 0,
    cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  return ::cudaMemcpyToSymbol(static_cast<const void*>(&symbol), src, count,
                              offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(
    void* dst, const T& symbol, size_t count, size_t offset = 0,
    cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
  return ::cudaMemcpyFromSymbol(dst, static_cast<const void*>(&symbol), count,
                                offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyToSymbolAsync(
    const T& symbol, const void* src, size_t count, size_t offset = 0,
    cudaMemcpyKind kind = cudaMemcpyHostToDevice, cudaStream_t stream = 0) {
  return ::cudaMemcpyToSymbolAsync(static_cast<const void*>(&symbol), src,
                                   count, offset, kind, stream);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbolAsync(
    void* dst, const T& symbol, size_t count, size_t offset = 0,
    cudaMemcpyKind kind = cudaMemcpyDeviceToHost, cudaStream_t stream = 0) {
  return ::cudaMemcpyFromSymbolAsync(dst, static_cast<const void*>(&symbol),
                                     count, offset, kind, stream);
}
template <class T>
inline cudaError_t cudaGetSymbolAddress(void** dev_ptr, const T& symbol) {
  return ::cudaGetSymbolAddress(dev_ptr, static_cast<const void*>(&symbol));
}

#endif  // GPT2_CUDA_EMU_KERNEL_LAUNCH_H_
