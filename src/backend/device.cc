#include "src/backend/device.h"

#include <cuda_runtime.h>

namespace gpt2 {

int CudaDeviceCount(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver (or no device) is an answer, not a failure.
    *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the error state
    return 0;
  }
  if (count == 0) *why = "no CUDA device";
  return count;
}

}  // namespace gpt2
