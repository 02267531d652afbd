#include "src/cuda/staging.h"

#include <cuda_runtime.h>

#include <cstring>

#include "src/cuda/check.h"

namespace gpt2::cuda {

PinnedStaging::~PinnedStaging() {
  for (Slot& slot : slots_) {
    if (slot.done != nullptr) {
      cudaEventSynchronize(slot.done);
      cudaEventDestroy(slot.done);
    }
    if (slot.host != nullptr) cudaFreeHost(slot.host);
  }
}

void PinnedStaging::CopyToDevice(void* dst, const void* src, size_t bytes,
                                 CUstream_st* stream) {
  Slot& slot = slots_[next_];
  next_ = (next_ + 1) % kSlots;
  if (slot.done == nullptr) {
    GPT2_CUDA_CHECK(
        cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  } else {
    GPT2_CUDA_CHECK(
        cudaEventSynchronize(slot.done));  // its previous copy has run
  }
  if (slot.bytes < bytes) {
    if (slot.host != nullptr) GPT2_CUDA_CHECK(cudaFreeHost(slot.host));
    slot.bytes = bytes < 4096 ? 4096 : bytes;
    GPT2_CUDA_CHECK(cudaMallocHost(&slot.host, slot.bytes));
  }
  std::memcpy(slot.host, src, bytes);
  GPT2_CUDA_CHECK(
      cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream));
  GPT2_CUDA_CHECK(cudaEventRecord(slot.done, stream));
}

}  // namespace gpt2::cuda
