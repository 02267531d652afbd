// Device scratch memory for ops that need temporary buffers (partial sums,
// index arrays). It grows only when an op asks for more than before, which
// happens in the first training step; after that no op allocates.
#ifndef GPT2_CUDA_SCRATCH_H_
#define GPT2_CUDA_SCRATCH_H_

#include <cstddef>

struct CUstream_st;

namespace gpt2::cuda {

class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // At least `bytes` of device memory, 256-byte aligned; the contents are
  // undefined and valid until the next Get. Growing waits for `stream` before
  // freeing the old buffer.
  void* Get(size_t bytes, CUstream_st* stream);
  size_t capacity() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_SCRATCH_H_
