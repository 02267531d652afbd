// The emulated build's queues of asynchronous operations (Hopper's warpgroup
// products, src/cuda/wgmma.cuh; deferred cp.async copies,
// src/cuda/async_copy.cuh): each thread's operations are queued at issue,
// grouped at each commit, and run oldest group first at the wait that retires
// them, as wgmma.wait_group and cp.async.wait_group retire theirs on the
// device. The queue lives in the thread's emulated hardware state
// (cuda_emu::detail::ThreadHardwareState). Emulated build only.
#ifndef GPT2_CUDA_EMULATED_ASYNC_H_
#define GPT2_CUDA_EMULATED_ASYNC_H_

#if defined(GPT2_CUDA_EMULATED)

#include <string>
#include <type_traits>

#include "src/cuda_emu/cuda_emu.h"

namespace gpt2::cuda::emulated {

template <typename Op, int kMaxOps, int kMaxGroups>
struct AsyncGroups {
  int queued;       // first: the emulator reports a thread that exits with some
  Op ops[kMaxOps];  // not yet run, oldest first
  int committed;    // ops in closed groups (the first)
  int group_sizes[kMaxGroups];  // closed groups not yet retired
  int groups;

  // This thread's queue `which`, `what` naming its operations in reports.
  static AsyncGroups& OfThisThread(cuda_emu::detail::HardwareState which) {
    static_assert(std::is_trivial<AsyncGroups>::value, "lives in zeroed bytes");
    return *static_cast<AsyncGroups*>(
        cuda_emu::detail::ThreadHardwareState(which, sizeof(AsyncGroups)));
  }
  void Push(const Op& op, const char* what) {
    if (queued == kMaxOps) {
      Fault("more than " + std::to_string(kMaxOps) + " " + what + " queued");
    }
    ops[queued++] = op;
  }
  // The operations pushed since the last commit (perhaps none) become a
  // group.
  void Commit(const char* what) {
    if (groups == kMaxGroups) {
      Fault("more than " + std::to_string(kMaxGroups) + " " + what +
            " groups in flight");
    }
    group_sizes[groups++] = queued - committed;
    committed = queued;
  }
  // run(op) for the oldest groups' operations until at most `in_flight`
  // groups remain.
  template <typename Run>
  void Retire(int in_flight, Run run) {
    const int retire = groups - in_flight;
    if (retire <= 0) return;
    int done = 0;
    for (int g = 0; g < retire; ++g) done += group_sizes[g];
    for (int i = 0; i < done; ++i) run(ops[i]);
    for (int i = done; i < queued; ++i) ops[i - done] = ops[i];
    for (int g = retire; g < groups; ++g)
      group_sizes[g - retire] = group_sizes[g];
    queued -= done;
    committed -= done;
    groups -= retire;
  }

 private:
  static void Fault(const std::string& message) {
    cuda_emu::detail::DeviceFault(message.c_str(), __FILE__, __LINE__);
  }
};

}  // namespace gpt2::cuda::emulated

#endif  // GPT2_CUDA_EMULATED
#endif  // GPT2_CUDA_EMULATED_ASYNC_H_
