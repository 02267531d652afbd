// The communicator interface every rank's collectives go through.
// Implementations: single-rank (here), and MPI and NCCL (the distributed
// issue). Buffers are backend tensors; a CPU rank passes host memory, a GPU
// rank device memory.
#ifndef GPT2_COMM_COMMUNICATOR_H_
#define GPT2_COMM_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "src/core/tensor.h"

namespace gpt2 {

enum class ReduceOp { kSum, kAverage };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  // Ranks on this node.
  virtual int local_size() const = 0;

  // In place over all ranks.
  virtual void AllReduce(Tensor buffer, ReduceOp op) = 0;
  // input has world_size * output.numel elements; rank r receives the reduction
  // of input's r-th block.
  virtual void ReduceScatter(Tensor output, Tensor input, ReduceOp op) = 0;
  // output has world_size * input.numel elements; rank r's input lands in block
  // r.
  virtual void AllGather(Tensor output, Tensor input) = 0;
  virtual void Broadcast(Tensor buffer, int root) = 0;
  virtual void Barrier() = 0;
  // Reduces `buffer` over all ranks into root's `buffer`, in place; the other
  // ranks' buffers are left as they were.
  virtual void Reduce(Tensor buffer, int root, ReduceOp op) = 0;
  // The largest of every rank's `value`, on every rank: a decision taken on the
  // host (whether to stop after this step) that all ranks must share. Blocks
  // until every rank has called it; queues no device work.
  virtual int AgreeMax(int value) = 0;

  // Collectives between GroupStart and GroupEnd may be fused into one launch
  // (NCCL groups); they are ordered for later work after GroupEnd.
  virtual void GroupStart() {}
  virtual void GroupEnd() {}
  // Whether collectives are queued on their own stream without blocking the
  // host (NCCL), so that issuing them during the backward overlaps them with
  // it.
  virtual bool asynchronous() const { return false; }
  // Between BeginOverlap and EndOverlap, collectives do not hold back the
  // compute stream's later work; EndOverlap makes that work wait for all of
  // them at once. No-ops where collectives finish before returning.
  virtual void BeginOverlap() {}
  virtual void EndOverlap() {}
};

// A world of one: reductions are identities, gathers copies.
std::unique_ptr<Communicator> MakeSingleRankCommunicator();

}  // namespace gpt2

#endif  // GPT2_COMM_COMMUNICATOR_H_
