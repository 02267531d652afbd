// CPU threading set-up that must happen before OpenMP starts.
#ifndef GPT2_CORE_THREADS_H_
#define GPT2_CORE_THREADS_H_

namespace gpt2 {

// OpenMP's default of spinning idle threads makes the CPU backend 2-3x slower
// and very noisy on small, shared VMs (measured with gpt2_bench on the 2-core
// build machine). libgomp reads OMP_WAIT_POLICY once, when it loads, so a tool
// that finds it unset sets it to "passive" and re-executes itself. Call first
// thing in main(); a user's own OMP_WAIT_POLICY is respected.
void UsePassiveOpenMpWait(char** argv);

// OpenMP threads for one of `local_ranks` processes on this node: where the
// process may run on every CPU of the node (mpirun binds no rank when the
// node is oversubscribed), its share of them, at least one; where it is bound
// to fewer (one core per rank), as many as it is bound to (OpenMP's default).
// A user's OMP_NUM_THREADS is respected. Returns the threads now set.
// (Unbound, -np 3 on 2 cores ran 2 threads a rank: 6 on 2 cores.)
int ShareCpusAmongLocalRanks(int local_ranks);

}  // namespace gpt2

#endif  // GPT2_CORE_THREADS_H_
