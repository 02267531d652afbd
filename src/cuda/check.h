// The check for CUDA runtime calls in host code: any failure goes to the
// project's one fatal sink with the call, the error string and file:line (and,
// under MPI, ends the job).
#ifndef GPT2_CUDA_CHECK_H_
#define GPT2_CUDA_CHECK_H_

#include <cuda_runtime.h>

#include <string>

#include "src/core/error.h"

#define GPT2_CUDA_CHECK(expr)                                              \
  do {                                                                     \
    const cudaError_t gpt2_cuda_err_ = (expr);                             \
    if (gpt2_cuda_err_ != cudaSuccess) {                                   \
      ::gpt2::FatalError(std::string("CUDA error: ") +                     \
                             cudaGetErrorString(gpt2_cuda_err_) + " in " + \
                             #expr,                                        \
                         __FILE__, __LINE__);                              \
    }                                                                      \
  } while (0)

#endif  // GPT2_CUDA_CHECK_H_
