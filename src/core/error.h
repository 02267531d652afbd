// The project's one error sink and its check macros.
// Recoverable failures (config, files, user input) travel as absl::Status.
// Programming errors and failed runtime calls (CUDA, cuBLAS, NCCL, MPI) go to
// FatalError, which prints the statement and file:line and ends the process
// and, under MPI, the whole job (the NCCL watchdog, off the main thread that
// MPI is funnelled to, ends its process itself: nccl_communicator.cc).
// Library code that goes on after a problem says so through Warning.
#ifndef GPT2_CORE_ERROR_H_
#define GPT2_CORE_ERROR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gpt2 {

// Prints "[rank N] fatal: <what> at file:line" and aborts the job. Never
// returns.
[[noreturn]] void FatalError(const std::string& what, const char* file,
                             int line);

// Installs a hook FatalError calls before exiting (the MPI layer uses it to
// MPI_Abort).
using FatalHook = void (*)(int exit_code);
void SetFatalHook(FatalHook hook);
// The rank printed in fatal messages and warnings; -1 (the default) prints no
// rank prefix.
void SetErrorRank(int rank);

// A warning from library code, the one way it reaches the user: "[rank N]
// gpt2: warning: <what>" on stderr in one write (so that mpirun cannot split
// it). Every rank that meets it says it: what it warns of (a GPU's
// self-check, a file) is the rank's own.
void Warning(const std::string& what);

}  // namespace gpt2

// GPT2_CHECK(cond) << nothing; use GPT2_CHECK_MSG for context.
#define GPT2_CHECK(cond)                                              \
  do {                                                                \
    if (!(cond))                                                      \
      ::gpt2::FatalError("check failed: " #cond, __FILE__, __LINE__); \
  } while (0)

#define GPT2_CHECK_MSG(cond, ...)                                           \
  do {                                                                      \
    if (!(cond))                                                            \
      ::gpt2::FatalError(                                                   \
          absl::StrCat("check failed: " #cond ": ", __VA_ARGS__), __FILE__, \
          __LINE__);                                                        \
  } while (0)

// Returns early from a Status/StatusOr-returning function when `expr` fails.
#define GPT2_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status gpt2_status_ = (expr);        \
    if (!gpt2_status_.ok()) return gpt2_status_; \
  } while (0)

#define GPT2_CONCAT_INNER_(a, b) a##b
#define GPT2_CONCAT_(a, b) GPT2_CONCAT_INNER_(a, b)
// GPT2_ASSIGN_OR_RETURN(auto x, MakeX()); returns the error status if MakeX
// failed.
#define GPT2_ASSIGN_OR_RETURN(lhs, expr) \
  GPT2_ASSIGN_OR_RETURN_IMPL_(GPT2_CONCAT_(gpt2_statusor_, __LINE__), lhs, expr)
#define GPT2_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

#endif  // GPT2_CORE_ERROR_H_
