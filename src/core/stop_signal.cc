#include "src/core/stop_signal.h"

#include <unistd.h>

#include <csignal>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace gpt2 {
namespace {

volatile std::sig_atomic_t g_signal = 0;
// Signals ignored when first installing (nohup's SIGHUP): left ignored, then
// and by every later InstallStopSignals.
bool g_inherited_ignore[NSIG] = {};
bool g_installed_once = false;
// The note, formatted before any signal: a handler may only write it.
char g_note[512];
size_t g_note_bytes = 0;

extern "C" void OnStopSignal(int signo) {
  // The first stop signal is the one that counts (and is announced); another
  // kind arriving later (mpirun's SIGTERM while the ranks save) changes
  // nothing.
  if (g_signal != 0) return;
  g_signal = signo;
  if (g_note_bytes > 0) {
    const ssize_t ignored = write(STDERR_FILENO, g_note, g_note_bytes);
    (void)ignored;
  }
}

}  // namespace

void InstallStopSignals(const std::string& note) {
  g_signal = 0;
  g_note_bytes = std::min(note.size(), sizeof(g_note));
  std::memcpy(g_note, note.data(), g_note_bytes);
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  // Once: the default action comes back for a second signal. Interrupted
  // system calls restart (a file being written keeps being written).
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  for (const int signo : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) {
    if (!g_installed_once) {
      struct sigaction old = {};
      sigaction(signo, nullptr, &old);
      g_inherited_ignore[signo] = old.sa_handler == SIG_IGN;
    }
    if (!g_inherited_ignore[signo]) sigaction(signo, &action, nullptr);
  }
  g_installed_once = true;
}

std::string IgnoredStopSignals() {
  std::string names;
  for (const int signo : {SIGINT, SIGTERM, SIGUSR1}) {
    if (g_inherited_ignore[signo])
      absl::StrAppend(&names, names.empty() ? "" : ", ", StopSignalName(signo));
  }
  return names;
}

int StopSignalReceived() { return g_signal; }

std::string StopSignalName(int signo) {
  if (signo == SIGINT) return "SIGINT";
  if (signo == SIGTERM) return "SIGTERM";
  if (signo == SIGUSR1) return "SIGUSR1";
  if (signo == SIGHUP) return "SIGHUP";
  return absl::StrCat("signal ", signo);
}

}  // namespace gpt2
