// The emulated build's stand-in for what nvcc provides implicitly to a .cu
// file: CUDA's keywords, built-in variables and device functions, implemented
// on the host over the real <cuda_runtime.h> types. Generated wrappers
// include it before each .cu file (cmake/cuda_emu.cmake).
#ifndef GPT2_CUDA_EMU_CUDA_EMU_H_
#define GPT2_CUDA_EMU_CUDA_EMU_H_

// Lets kernel code keep a portable path where the GPU path needs something
// the emulator lacks (tensor cores, inline PTX, cuBLASLt).
#ifndef GPT2_CUDA_EMULATED
#define GPT2_CUDA_EMULATED 1
#endif

#ifdef __CUDACC__
#error "src/cuda_emu/cuda_emu.h is for the g++ (emulated) build, not nvcc"
#endif

#include <cuda_runtime.h>

#include "src/cuda_emu/api.h"
#include "src/cuda_emu/device.h"
#include "src/cuda_emu/kernel_launch.h"

// The real headers leave the execution-space keywords empty for host
// compilers; __shared__ needs per-block storage instead. `static thread_local`
// gives static storage per host thread, and a host thread runs one block at a
// time, so every block sees its own copy. (Plain `extern __shared__ T a[];`
// cannot be supported this way -- see GPT2_EXTERN_SHARED in
// src/cuda/launch.h and docs/cuda_emu.md.)
#undef __shared__
#define __shared__ static thread_local
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __grid_constant__
#define __grid_constant__
#endif

#endif  // GPT2_CUDA_EMU_CUDA_EMU_H_
