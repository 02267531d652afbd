// The MPI side of a run: initialisation (a world of one when started without
// mpirun), rank, world size and node-local rank, and the fatal-error hook that
// aborts the whole job so no rank is left hanging in a collective.
#ifndef GPT2_COMM_MPI_ENV_H_
#define GPT2_COMM_MPI_ENV_H_

#include <memory>

#include "src/comm/communicator.h"

namespace gpt2 {

class MpiEnv {
 public:
  // Initialises MPI once per process (MPI_THREAD_FUNNELED). Without mpirun this
  // is an MPI singleton; the ssh launcher is disabled first so a bare machine
  // needs none.
  static MpiEnv& Init(int* argc, char*** argv);
  ~MpiEnv();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

  // Ends every rank of the job with `code` (MPI_Abort); never returns.
  [[noreturn]] static void Abort(int code);

 private:
  MpiEnv() = default;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
};

// Collectives over MPI_COMM_WORLD on host buffers (f32, f64, i32).
std::unique_ptr<Communicator> MakeMpiCommunicator(const MpiEnv& env);

}  // namespace gpt2

#endif  // GPT2_COMM_MPI_ENV_H_
