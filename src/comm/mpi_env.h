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
  // Whether a process started without a launcher (mpirun, or srun through
  // PMI/PMIx) initialises MPI as a singleton.
  enum class Singleton {
    kWithoutMpi,  // a world of one without MPI: no MPI call is made, no
                  // daemon started (an Open MPI singleton forks one: ~0.3 s
                  // of start-up)
    kWithMpi,     // MPI_Init anyway, for what calls MPI even on one rank
  };
  // Initialises once per process: under a launcher MPI (MPI_THREAD_FUNNELED),
  // else as `singleton` says; the first call decides. An MPI singleton has the
  // ssh launcher disabled first, so a bare machine needs none.
  static MpiEnv& Init(int* argc, char*** argv,
                      Singleton singleton = Singleton::kWithoutMpi);
  ~MpiEnv();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // False for a world of one started without a launcher: then MPI is not
  // initialised and nothing may call it.
  bool has_mpi() const { return has_mpi_; }

  // Ends every rank of the job with `code` (MPI_Abort; without MPI, this
  // process); never returns.
  [[noreturn]] static void Abort(int code);

 private:
  MpiEnv() = default;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool has_mpi_ = false;
};

// Whether this process was started by a launcher that wires up MPI (Open
// MPI's mpirun, or PMI/PMIx as srun sets up).
bool StartedByMpiLauncher();

// Collectives over MPI_COMM_WORLD on host buffers (f32, f64, i32); needs
// env.has_mpi().
std::unique_ptr<Communicator> MakeMpiCommunicator(const MpiEnv& env);

}  // namespace gpt2

#endif  // GPT2_COMM_MPI_ENV_H_
