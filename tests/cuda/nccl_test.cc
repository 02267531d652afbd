// The NCCL communicator on device tensors at world size 1 (label gpu; NCCL has
// no emulation), run in order on the backend's stream. At one rank AllReduce
// and Broadcast are in-place identities: for them this checks only that they
// run and leave the values; ReduceScatter and AllGather move data between two
// buffers, each checked on its own. No test here checks NCCL's values over
// several ranks: that needs several GPUs (issue #5).
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#include "src/comm/mpi_env.h"
#include "src/comm/nccl_communicator.h"

namespace gpt2 {
namespace {

TEST(Nccl, CollectivesRunAndCopiesMoveDataAtWorldSizeOne) {
  std::string why;
  if (CudaDeviceCount(&why) == 0)
    GTEST_SKIP() << "no usable CUDA device: " << why;
  MpiEnv& mpi = MpiEnv::Init(nullptr, nullptr);
  auto backend = MakeCudaBackend(0);
  auto comm = MakeNcclCommunicator(mpi, backend->cuda_stream());
  ASSERT_EQ(comm->world_size(), 1);
  const int n = 1000;
  std::vector<float> host(n);
  for (int i = 0; i < n; ++i) host[i] = 0.25f * i - 7.0f;
  Tensor a = backend->Alloc(DType::kF32, n), b = backend->Alloc(DType::kF32, n);
  backend->Upload(a, host.data());
  comm->AllReduce(a, ReduceOp::kSum);
  comm->AllReduce(a, ReduceOp::kAverage);
  backend->Zero(b);
  comm->ReduceScatter(b, a, ReduceOp::kSum);
  std::vector<float> back(n, -1.0f);
  backend->Download(back.data(), b);
  EXPECT_EQ(back, host) << "ReduceScatter: one rank's share is all of it";
  backend->Zero(a);
  comm->AllGather(a, b);
  comm->Broadcast(a, 0);
  back.assign(n, -1.0f);
  backend->Download(back.data(), a);
  EXPECT_EQ(back, host) << "AllGather: one rank's share is all of it";
  backend->Free(a);
  backend->Free(b);
}

}  // namespace
}  // namespace gpt2
