// SIGINT, SIGTERM, SIGUSR1 and SIGHUP (the terminal closed) as a request to
// stop cleanly: the first one sets
// a flag that the training loop reads at the end of every step (it then saves
// a checkpoint and exits), and puts back the default action, so that a second
// one ends the process at once. Saves are atomic, so even that loses no
// checkpoint already written. SIGUSR1 is for mpirun: Open MPI passes it on to
// every rank as it is, where its own SIGINT/SIGTERM handling sends the ranks
// SIGTERM and then, a second later, SIGKILL. A signal the process inherited
// as ignored stays ignored (SIGHUP under nohup: the run goes on).
#ifndef GPT2_CORE_STOP_SIGNAL_H_
#define GPT2_CORE_STOP_SIGNAL_H_

#include <string>

namespace gpt2 {

// Installs the handlers for SIGINT, SIGTERM, SIGUSR1 and SIGHUP (each unless
// ignored when the process started). `note` (may be empty) is written to
// stderr when the first signal arrives.
void InstallStopSignals(const std::string& note);

// The stop signals other than SIGHUP that the process inherited as ignored
// (SIGINT in a background job of a non-interactive shell), left so: "SIGINT",
// "SIGINT, SIGTERM", or "" (known once InstallStopSignals has run).
std::string IgnoredStopSignals();

// The stop signal received since InstallStopSignals, or 0.
int StopSignalReceived();

// "SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP", else "signal N".
std::string StopSignalName(int signo);

}  // namespace gpt2

#endif  // GPT2_CORE_STOP_SIGNAL_H_
