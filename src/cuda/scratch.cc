#include "src/cuda/scratch.h"

#include <cuda_runtime.h>

#include <string>

#include "src/core/error.h"

namespace gpt2::cuda {

Scratch::~Scratch() {
  if (data_ != nullptr) cudaFree(data_);
}

void* Scratch::Get(size_t bytes, CUstream_st* stream) {
  if (bytes <= bytes_) return data_;
  if (data_ != nullptr) {
    cudaStreamSynchronize(stream);
    cudaFree(data_);
  }
  const size_t rounded = (bytes + 255) / 256 * 256;
  const cudaError_t err = cudaMalloc(&data_, rounded);
  if (err != cudaSuccess) {
    FatalError(std::string("cudaMalloc of ") + std::to_string(rounded) +
                   " scratch bytes failed: " + cudaGetErrorString(err),
               __FILE__, __LINE__);
  }
  bytes_ = rounded;
  return data_;
}

}  // namespace gpt2::cuda
