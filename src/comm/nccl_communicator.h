// NCCL collectives for GPU ranks, on device tensors (f32, bf16, f64, i32). They
// run on the communicator's own CUDA stream, ordered after the compute stream's
// queued work and before its later work by events, so the host never waits.
// Built only with CUDA (library gpt2_cuda). The NCCL id travels from rank 0
// over MPI.
#ifndef GPT2_COMM_NCCL_COMMUNICATOR_H_
#define GPT2_COMM_NCCL_COMMUNICATOR_H_

#include <memory>

#include "src/comm/communicator.h"
#include "src/comm/mpi_env.h"

struct CUstream_st;

namespace gpt2 {

// `compute_stream` is the backend's stream (Backend::cuda_stream()).
std::unique_ptr<Communicator> MakeNcclCommunicator(const MpiEnv& env,
                                                   CUstream_st* compute_stream);

}  // namespace gpt2

#endif  // GPT2_COMM_NCCL_COMMUNICATOR_H_
