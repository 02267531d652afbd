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
};

// A world of one: reductions are identities, gathers copies.
std::unique_ptr<Communicator> MakeSingleRankCommunicator();

}  // namespace gpt2

#endif  // GPT2_COMM_COMMUNICATOR_H_
