// The MPI communicator: host-memory collectives over MPI_COMM_WORLD. Averages
// are sums divided by the world size afterwards, in the buffer's own precision.
#include <mpi.h>

#include "src/comm/mpi_env.h"
#include "src/core/error.h"

namespace gpt2 {
namespace {

MPI_Datatype ToMpi(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kI32:
      return MPI_INT;
    default:
      GPT2_CHECK_MSG(false, "MPI collectives do not support ", DTypeName(t));
  }
  return MPI_DATATYPE_NULL;
}

void Scale(Tensor t, double factor) {
  if (t.dtype == DType::kF32) {
    float* p = t.as<float>();
    for (int64_t i = 0; i < t.numel; ++i)
      p[i] = static_cast<float>(p[i] * factor);
  } else if (t.dtype == DType::kF64) {
    double* p = t.as<double>();
    for (int64_t i = 0; i < t.numel; ++i) p[i] *= factor;
  } else {
    GPT2_CHECK_MSG(false, "cannot average ", DTypeName(t.dtype));
  }
}

// MPI counts are int: large buffers go in pieces.
constexpr int64_t kMaxCount = int64_t{1} << 30;

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const MpiEnv& env) : env_(env) {}
  std::string name() const override { return "mpi"; }
  int rank() const override { return env_.rank(); }
  int world_size() const override { return env_.world_size(); }
  int local_rank() const override { return env_.local_rank(); }
  int local_size() const override { return env_.local_size(); }

  void AllReduce(Tensor buffer, ReduceOp op) override {
    for (int64_t done = 0; done < buffer.numel; done += kMaxCount) {
      Tensor part =
          buffer.Slice(done, std::min(kMaxCount, buffer.numel - done));
      MPI_Allreduce(MPI_IN_PLACE, part.data, static_cast<int>(part.numel),
                    ToMpi(part.dtype), MPI_SUM, MPI_COMM_WORLD);
    }
    if (op == ReduceOp::kAverage) Scale(buffer, 1.0 / world_size());
  }
  void ReduceScatter(Tensor output, Tensor input, ReduceOp op) override {
    GPT2_CHECK(input.numel == output.numel * world_size());
    GPT2_CHECK(output.numel <= kMaxCount && input.dtype == output.dtype);
    MPI_Reduce_scatter_block(input.data, output.data,
                             static_cast<int>(output.numel),
                             ToMpi(output.dtype), MPI_SUM, MPI_COMM_WORLD);
    if (op == ReduceOp::kAverage) Scale(output, 1.0 / world_size());
  }
  void AllGather(Tensor output, Tensor input) override {
    GPT2_CHECK(output.numel == input.numel * world_size());
    GPT2_CHECK(input.numel <= kMaxCount && input.dtype == output.dtype);
    // Gathering in place when the input already sits in this rank's block.
    const bool in_place =
        input.data == static_cast<char*>(output.data) + rank() * input.bytes();
    MPI_Allgather(in_place ? MPI_IN_PLACE : input.data,
                  static_cast<int>(input.numel), ToMpi(input.dtype),
                  output.data, static_cast<int>(input.numel),
                  ToMpi(output.dtype), MPI_COMM_WORLD);
  }
  void Broadcast(Tensor buffer, int root) override {
    for (int64_t done = 0; done < buffer.numel; done += kMaxCount) {
      Tensor part =
          buffer.Slice(done, std::min(kMaxCount, buffer.numel - done));
      MPI_Bcast(part.data, static_cast<int>(part.numel), ToMpi(part.dtype),
                root, MPI_COMM_WORLD);
    }
  }
  void Barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  int AgreeMax(int value) override {
    MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return value;
  }
  void Reduce(Tensor buffer, int root, ReduceOp op) override {
    const bool at_root = rank() == root;
    for (int64_t done = 0; done < buffer.numel; done += kMaxCount) {
      Tensor part =
          buffer.Slice(done, std::min(kMaxCount, buffer.numel - done));
      MPI_Reduce(at_root ? MPI_IN_PLACE : part.data,
                 at_root ? part.data : nullptr, static_cast<int>(part.numel),
                 ToMpi(part.dtype), MPI_SUM, root, MPI_COMM_WORLD);
    }
    if (at_root && op == ReduceOp::kAverage) Scale(buffer, 1.0 / world_size());
  }

 private:
  const MpiEnv& env_;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator(const MpiEnv& env) {
  GPT2_CHECK_MSG(env.has_mpi(),
                 "the MPI communicator needs MPI: MpiEnv::Init with "
                 "Singleton::kWithMpi, or a launcher (mpirun)");
  return std::make_unique<MpiCommunicator>(env);
}

}  // namespace gpt2
