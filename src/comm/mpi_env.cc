#include "src/comm/mpi_env.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "src/core/error.h"

namespace gpt2 {
namespace {

void AbortHook(int code) { MpiEnv::Abort(code); }

void OnMpiError(MPI_Comm*, int* code, ...) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(*code, text, &length);
  FatalError(std::string("MPI error: ") + text, __FILE__, __LINE__);
}

}  // namespace

bool StartedByMpiLauncher() {
  for (const char* name :
       {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

MpiEnv& MpiEnv::Init(int* argc, char*** argv, Singleton singleton) {
  static MpiEnv* env = nullptr;
  if (env != nullptr) return *env;
  const bool launched = StartedByMpiLauncher();
  if (!launched && singleton == Singleton::kWithoutMpi) {
    env = new MpiEnv();  // rank 0 of one, node-local rank 0 of one
    return *env;
  }
  if (!launched) {
    // A singleton: keep Open MPI from looking for ssh/rsh to start a daemon.
    setenv("OMPI_MCA_plm_rsh_agent", "", 0);
  }
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) !=
      MPI_SUCCESS) {
    FatalError("MPI_Init_thread failed", __FILE__, __LINE__);
  }
  env = new MpiEnv();
  env->has_mpi_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &env->rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &env->world_size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, env->rank_,
                      MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &env->local_rank_);
  MPI_Comm_size(local, &env->local_size_);
  MPI_Comm_free(&local);
  MPI_Errhandler handler;
  MPI_Comm_create_errhandler(&OnMpiError, &handler);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, handler);
  if (env->world_size_ > 1) {
    SetErrorRank(env->rank_);
    SetFatalHook(&AbortHook);
  }
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
  return *env;
}

MpiEnv::~MpiEnv() = default;

void MpiEnv::Abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  // Without MPI (a world of one started without a launcher) there is only
  // this process to end.
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) std::_Exit(code);
  // mpirun forwards a rank's output asynchronously and stops forwarding once
  // the job is killed: a moment's pause lets the error message that led here
  // reach the user.
  usleep(300 * 1000);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this is for the type system
}

}  // namespace gpt2
