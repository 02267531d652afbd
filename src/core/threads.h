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

}  // namespace gpt2

#endif  // GPT2_CORE_THREADS_H_
