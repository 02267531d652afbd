// Host-to-device copies that do not stall the host: the data goes through a
// small ring of pinned host buffers, each reused only after the copy that last
// used it has run, so the caller may reuse its own memory at once and the GPU
// never waits for the host.
#ifndef GPT2_CUDA_STAGING_H_
#define GPT2_CUDA_STAGING_H_

#include <cstddef>
#include <vector>

struct CUstream_st;
struct CUevent_st;

namespace gpt2::cuda {

class PinnedStaging {
 public:
  PinnedStaging() = default;
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Queues a copy of `bytes` from host `src` to device `dst` on `stream`; `src`
  // may be reused when this returns. Waits only if the slot it takes is still
  // being copied.
  void CopyToDevice(void* dst, const void* src, size_t bytes,
                    CUstream_st* stream);

 private:
  struct Slot {
    void* host = nullptr;  // pinned
    size_t bytes = 0;
    CUevent_st* done = nullptr;  // recorded after the slot's last copy
  };
  // A training step stages 3 copies (tokens, targets, the encoder backward's
  // packed rows): 8 slots reuse a slot only after two more steps, which the
  // host has already waited for (its lagged loss readback), so staging never
  // waits for work the device may not have reached. With 4, each step waited
  // for copies of the step before (tests/cuda/cuda_train_test.cc counts it).
  static constexpr int kSlots = 8;
  Slot slots_[kSlots];
  int next_ = 0;
};

}  // namespace gpt2::cuda

#endif  // GPT2_CUDA_STAGING_H_
