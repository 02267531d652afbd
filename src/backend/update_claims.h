// The memory that updates queued beside the main stream still use, and which
// of them a later op must wait for (the CUDA backend's updates beside:
// Backend::BeginUpdatesBeside). Updates are numbered 0, 1, ... in the order
// they are queued on one in-order stream, so waiting for update k waits for
// all before it. Each claims address ranges it writes (the weights, their
// masters and moments) or only reads (the gradients, the norm). An op that
// writes a range some pending update reads or writes, or reads a range one
// writes, must wait for the newest such update; reads of what updates only
// read need no wait. A claim may be marked as written only outside the rows a
// batch gathers (AdamWArgs::row_marks): a gathered read of the batch's rows
// (the encoder's of wte) does not wait for it. Host-side bookkeeping only: no
// CUDA here.
#ifndef GPT2_BACKEND_UPDATE_CLAIMS_H_
#define GPT2_BACKEND_UPDATE_CLAIMS_H_

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "src/core/tensor.h"

namespace gpt2 {

class UpdateClaims {
 public:
  // Update `update` (>= every number added before) uses [begin, end);
  // outside_gather: it writes only rows the current batch does not gather.
  void Add(int update, const void* begin, int64_t bytes, bool written,
           bool outside_gather = false);
  // The newest pending update an op touching these tensors must wait for
  // (-1: none); gathered: read only at the current batch's rows. Tensors
  // without data are skipped.
  int Needed(std::initializer_list<Tensor> writes,
             std::initializer_list<Tensor> reads,
             std::initializer_list<Tensor> gathered = {});
  // The main stream now waits for updates up to and including `update`:
  // their claims are dropped.
  void Joined(int update);
  // Whether any update is still pending (the ops' fast path).
  bool empty() const { return claims_.empty(); }
  // The newest update added (-1 with none pending).
  int newest() const { return claims_.empty() ? -1 : newest_; }
  void Clear() {
    claims_.clear();
    sorted_ = true;
    disjoint_ = true;
  }

 private:
  struct Claim {
    uintptr_t begin, end;
    int update;
    bool written;
    bool outside_gather;
  };
  // Sorts by address and merges identical ranges of the same kind (every
  // update of a step reads the same norm); checks whether the rest are
  // disjoint, which lets Needed search by address instead of scanning.
  void Sort();
  // What an access to [begin, end) waits for: a write for every claim, a
  // read for written ones, a gathered read for written ones not
  // outside_gather.
  enum class Access { kWrite, kRead, kGathered };
  int Scan(uintptr_t begin, uintptr_t end, Access access) const;

  std::vector<Claim> claims_;
  int newest_ = -1;
  bool sorted_ = true, disjoint_ = true;
};

}  // namespace gpt2

#endif  // GPT2_BACKEND_UPDATE_CLAIMS_H_
