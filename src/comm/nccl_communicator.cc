#include "src/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "src/cuda/check.h"

namespace gpt2 {
namespace {

#define GPT2_NCCL_CHECK(expr)                                               \
  do {                                                                      \
    const ncclResult_t gpt2_nccl_ = (expr);                                 \
    if (gpt2_nccl_ != ncclSuccess) {                                        \
      ::gpt2::FatalError(std::string("NCCL error: ") +                      \
                             ncclGetErrorString(gpt2_nccl_) + " in " #expr, \
                         __FILE__, __LINE__);                               \
    }                                                                       \
  } while (0)

ncclDataType_t ToNccl(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF64:
      return ncclFloat64;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kI32:
      return ncclInt32;
  }
  return ncclFloat32;
}

ncclRedOp_t ToNccl(ReduceOp op) {
  return op == ReduceOp::kSum ? ncclSum : ncclAvg;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const MpiEnv& env, cudaStream_t compute)
      : env_(env), compute_(compute) {
    ncclUniqueId id;
    if (env_.rank() == 0) GPT2_NCCL_CHECK(ncclGetUniqueId(&id));
    // Without MPI the world is this one rank: nothing to hand the id to.
    if (env_.has_mpi()) MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    GPT2_NCCL_CHECK(
        ncclCommInitRank(&comm_, env_.world_size(), id, env_.rank()));
    GPT2_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    GPT2_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    GPT2_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    GPT2_CUDA_CHECK(
        cudaEventCreateWithFlags(&watched_, cudaEventDisableTiming));
    const char* limit = std::getenv("GPT2_NCCL_TIMEOUT_S");
    if (limit != nullptr && std::atoi(limit) > 0) timeout_s_ = std::atoi(limit);
    watchdog_ = std::thread([this] { Watch(); });
  }
  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(watched_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaEventDestroy(done_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "nccl"; }
  int rank() const override { return env_.rank(); }
  int world_size() const override { return env_.world_size(); }
  int local_rank() const override { return env_.local_rank(); }
  int local_size() const override { return env_.local_size(); }

  void AllReduce(Tensor buffer, ReduceOp op) override {
    Begin();
    GPT2_NCCL_CHECK(ncclAllReduce(buffer.data, buffer.data, buffer.numel,
                                  ToNccl(buffer.dtype), ToNccl(op), comm_,
                                  stream_));
    End();
  }
  void ReduceScatter(Tensor output, Tensor input, ReduceOp op) override {
    GPT2_CHECK(input.numel == output.numel * world_size() &&
               input.dtype == output.dtype);
    Begin();
    GPT2_NCCL_CHECK(ncclReduceScatter(input.data, output.data, output.numel,
                                      ToNccl(output.dtype), ToNccl(op), comm_,
                                      stream_));
    End();
  }
  void AllGather(Tensor output, Tensor input) override {
    GPT2_CHECK(output.numel == input.numel * world_size() &&
               input.dtype == output.dtype);
    Begin();  // in place works when input is this rank's block of output
    GPT2_NCCL_CHECK(ncclAllGather(input.data, output.data, input.numel,
                                  ToNccl(input.dtype), comm_, stream_));
    End();
  }
  void Broadcast(Tensor buffer, int root) override {
    Begin();
    GPT2_NCCL_CHECK(ncclBroadcast(buffer.data, buffer.data, buffer.numel,
                                  ToNccl(buffer.dtype), root, comm_, stream_));
    End();
  }
  void Barrier() override {
    GPT2_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (env_.has_mpi()) MPI_Barrier(MPI_COMM_WORLD);
  }
  // On the host, over MPI (the ranks' NCCL communicator is for device
  // buffers).
  int AgreeMax(int value) override {
    if (env_.has_mpi()) {
      MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    }
    return value;
  }
  void Reduce(Tensor buffer, int root, ReduceOp op) override {
    Begin();
    GPT2_NCCL_CHECK(ncclReduce(buffer.data, buffer.data, buffer.numel,
                               ToNccl(buffer.dtype), ToNccl(op), root, comm_,
                               stream_));
    End();
  }
  // A group is ordered as one collective: after the compute work queued
  // before GroupStart, before the work queued after GroupEnd (NCCL launches
  // the group's kernels at ncclGroupEnd, so per-call events inside it would
  // come too early).
  void GroupStart() override {
    Begin();
    ++group_depth_;
    GPT2_NCCL_CHECK(ncclGroupStart());
  }
  void GroupEnd() override {
    GPT2_NCCL_CHECK(ncclGroupEnd());
    --group_depth_;
    End();
  }
  bool asynchronous() const override { return true; }
  void BeginOverlap() override { deferred_ = true; }
  void EndOverlap() override {
    deferred_ = false;
    // The stream runs its collectives in order: waiting for the latest waits
    // for them all.
    GPT2_CUDA_CHECK(cudaEventRecord(done_, stream_));
    GPT2_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
  }

 private:
  // The collective waits for the compute stream's queued work...
  void Begin() {
    if (group_depth_ > 0) return;  // GroupStart ordered the whole group
    GPT2_CUDA_CHECK(cudaEventRecord(ready_, compute_));
    GPT2_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }
  // ...and the compute stream's later work waits for the collective. The
  // watchdog follows the latest collective.
  void End() {
    if (group_depth_ > 0) return;
    GPT2_CUDA_CHECK(cudaEventRecord(done_, stream_));
    if (!deferred_) GPT2_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
    std::lock_guard<std::mutex> lock(mu_);
    GPT2_CUDA_CHECK(cudaEventRecord(watched_, stream_));
    watched_since_ = std::chrono::steady_clock::now();
    watching_ = true;
  }

  // The watchdog: once a second, NCCL's asynchronous error state, and whether
  // the latest collective has been pending for longer than the timeout (a
  // peer that died or hangs leaves the collective waiting forever, and the
  // host with it). Either way it aborts the communicator, which releases the
  // stuck kernels, and ends this rank with a message naming it.
  void Watch() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::seconds(1));
      if (stop_) break;
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess &&
          async != ncclSuccess && async != ncclInProgress) {
        Abort(std::string("asynchronous NCCL error: ") +
              ncclGetErrorString(async) + " (" + ncclGetLastError(comm_) + ")");
      }
      if (!watching_) continue;
      const cudaError_t state = cudaEventQuery(watched_);
      if (state == cudaSuccess) {
        watching_ = false;
        continue;
      }
      if (state != cudaErrorNotReady) {
        Abort(std::string("CUDA error while a collective ran: ") +
              cudaGetErrorString(state));
      }
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now() - watched_since_)
                              .count();
      if (waited > timeout_s_) {
        Abort("a collective has not finished in " + std::to_string(waited) +
              " s (GPT2_NCCL_TIMEOUT_S=" + std::to_string(timeout_s_) +
              "); a peer rank has probably died or hangs");
      }
    }
  }
  // Not FatalError: its hook calls MPI_Abort, and MPI is the main thread's
  // alone (MPI_THREAD_FUNNELED). A rank that exits non-zero makes mpirun end
  // the others, as a killed rank does.
  [[noreturn]] void Abort(const std::string& why) {
    ncclCommAbort(comm_);
    std::fflush(stdout);
    std::fprintf(stderr, "[rank %d] fatal: NCCL watchdog: %s\n", env_.rank(),
                 why.c_str());
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::_Exit(1);
  }

  const MpiEnv& env_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  ncclComm_t comm_ = nullptr;
  int group_depth_ = 0;
  bool deferred_ = false;  // between BeginOverlap and EndOverlap
  // Watchdog state, under mu_.
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool watching_ = false;
  cudaEvent_t watched_ = nullptr;
  std::chrono::steady_clock::time_point watched_since_;
  // Long enough for rank 0 to write a checkpoint while the others wait.
  int timeout_s_ = 600;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(
    const MpiEnv& env, CUstream_st* compute_stream) {
  return std::make_unique<NcclCommunicator>(env, compute_stream);
}

}  // namespace gpt2
