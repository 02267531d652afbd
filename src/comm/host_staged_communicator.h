// Collectives on backend (e.g. GPU) tensors through a host communicator (MPI):
// each call copies the tensor to the host, runs the host collective, and copies
// the result back. For GPU ranks NCCL cannot serve, such as several ranks
// sharing one GPU. MPI has no bf16 type: reductions widen bf16 to f32 (exact)
// and round the result back; gathers and broadcasts move bf16's bits as they
// are. Host buffers are kept between calls.
#ifndef GPT2_COMM_HOST_STAGED_COMMUNICATOR_H_
#define GPT2_COMM_HOST_STAGED_COMMUNICATOR_H_

#include <memory>

#include "src/backend/backend.h"
#include "src/comm/communicator.h"

namespace gpt2 {

// Both must outlive the result.
std::unique_ptr<Communicator> MakeHostStagedCommunicator(
    Communicator* host_comm, Backend* backend);

}  // namespace gpt2

#endif  // GPT2_COMM_HOST_STAGED_COMMUNICATOR_H_
