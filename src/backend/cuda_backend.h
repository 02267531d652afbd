// The CUDA backend: device memory on one GPU, one stream, our kernels
// (src/ops/*.cu) and cuBLASLt matmuls. Built twice from the same source: for
// the GPU (library gpt2_cuda) and against the CPU emulation of CUDA
// (gpt2_cuda_emu, tests only), where matmuls use the portable tiled kernels.
#ifndef GPT2_BACKEND_CUDA_BACKEND_H_
#define GPT2_BACKEND_CUDA_BACKEND_H_

#include <memory>

#include "src/backend/backend.h"

namespace gpt2 {

// Uses GPU `device` (a rank's local rank). Fatal if it cannot be used.
std::unique_ptr<Backend> MakeCudaBackend(int device);

}  // namespace gpt2

#endif  // GPT2_BACKEND_CUDA_BACKEND_H_
