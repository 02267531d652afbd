// The NCCL communicator on device tensors at world size 1 (label gpu; NCCL has
// no emulation): every collective against values computed on the host, run in
// order on the backend's stream. Multi-rank NCCL runs in the device script
// under mpirun.
#include <vector>

#include "gtest/gtest.h"
#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#include "src/comm/mpi_env.h"
#include "src/comm/nccl_communicator.h"

namespace gpt2 {
namespace {

TEST(Nccl, CollectivesAtWorldSizeOne) {
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
  comm->ReduceScatter(b, a, ReduceOp::kSum);
  backend->Zero(a);
  comm->AllGather(a, b);
  comm->Broadcast(a, 0);
  std::vector<float> back(n, -1.0f);
  backend->Download(back.data(), a);
  EXPECT_EQ(back, host);  // each collective is the identity on one rank
  backend->Free(a);
  backend->Free(b);
}

}  // namespace
}  // namespace gpt2
