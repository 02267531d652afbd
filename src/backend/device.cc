#include "src/backend/device.h"

#ifdef GPT2_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gpt2 {

int CudaDeviceCount(std::string* why) {
#ifdef GPT2_HAVE_CUDA
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error state
    return 0;
  }
  if (count == 0) *why = "no CUDA device";
  return count;
#else
  *why = "this build has no CUDA support";
  return 0;
#endif
}

}  // namespace gpt2
