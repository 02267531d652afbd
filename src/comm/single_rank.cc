#include <cstring>

#include "src/comm/communicator.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

class SingleRank final : public Communicator {
 public:
  std::string name() const override { return "single-rank"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  void AllReduce(Tensor, ReduceOp) override {}
  void ReduceScatter(Tensor output, Tensor input, ReduceOp) override {
    CopyWhole(output, input);
  }
  void AllGather(Tensor output, Tensor input) override {
    CopyWhole(output, input);
  }
  void Broadcast(Tensor, int root) override { GPT2_CHECK(root == 0); }
  void Barrier() override {}
  void Reduce(Tensor, int root, ReduceOp) override { GPT2_CHECK(root == 0); }
  int AgreeMax(int value) override { return value; }

 private:
  // Host buffers only: a GPU world of one uses the NCCL communicator.
  static void CopyWhole(Tensor output, Tensor input) {
    GPT2_CHECK(output.bytes() == input.bytes() && output.dtype == input.dtype);
    if (output.data != input.data)
      std::memmove(output.data, input.data, output.bytes());
  }
};

}  // namespace

std::unique_ptr<Communicator> MakeSingleRankCommunicator() {
  return std::make_unique<SingleRank>();
}

}  // namespace gpt2
