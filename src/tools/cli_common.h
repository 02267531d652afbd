// Small pieces the command-line tools share: repeatable flags pulled out before
// Abseil parses the rest (this Abseil keeps only the last value of a repeated
// flag), and the one way a tool reports a failed Status.
#ifndef GPT2_TOOLS_CLI_COMMON_H_
#define GPT2_TOOLS_CLI_COMMON_H_

#include <unistd.h>  // environ

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/internal/parse.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/core/build_info.h"
#include "src/core/env_switches.h"
#include "src/core/threads.h"

namespace gpt2 {

// Removes every "--name VALUE" and "--name=VALUE" from argv and returns the
// values in order. A trailing "--name" with no value is returned as the error
// string in *error.
inline std::vector<std::string> TakeRepeatedFlag(const std::string& name,
                                                 int* argc, char** argv,
                                                 std::string* error) {
  std::vector<std::string> values;
  const std::string bare = "--" + name, with_eq = bare + "=";
  const std::string bare1 = "-" + name, with_eq1 = bare1 + "=";
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (arg == bare || arg == bare1) {
      if (i + 1 >= *argc) {
        *error = arg + " needs a value, e.g. " + bare + " train.max_steps=20";
        continue;
      }
      values.push_back(argv[++i]);
    } else if (arg.rfind(with_eq, 0) == 0) {
      values.push_back(arg.substr(with_eq.size()));
    } else if (arg.rfind(with_eq1, 0) == 0) {
      values.push_back(arg.substr(with_eq1.size()));
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  argv[out] = nullptr;
  return values;
}

// Parses the flags (absl) of a tool that takes no positional arguments: a
// stray one is reported as an error; then checks the GPT2_* switches
// (CheckEnvironment). Returns 0 to go on, else the exit code.
inline int ParseFlagsOnly(const char* tool, int argc, char** argv);

// An error naming the first of `flags` given on the command line (after
// parsing), for a mode they do not apply to: a flag that would be silently
// ignored is refused instead ("--format does not apply to verify").
inline absl::Status RefuseFlagsGiven(std::initializer_list<const char*> flags,
                                     const std::string& mode) {
  for (const char* flag : flags) {
    if (absl::flags_internal::WasPresentOnCommandLine(flag)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " does not apply to ", mode));
    }
  }
  return absl::OkStatus();
}

inline int ReportError(const char* tool, const absl::Status& status) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: error: %s\n", tool,
               std::string(status.message()).c_str());
  return 1;
}

// The GPT2_* switches in the environment (src/core/env_switches.h): a name no
// tool reads is warned about, a value a switch does not take refused. Returns
// 0 to go on, else the exit code.
inline int CheckEnvironment(const char* tool) {
  const EnvProblems problems = CheckEnvSwitches(environ);
  for (const std::string& w : problems.warnings)
    std::fprintf(stderr, "%s: warning: %s\n", tool, w.c_str());
  if (problems.errors.empty()) return 0;
  return ReportError(
      tool, absl::InvalidArgumentError(absl::StrJoin(problems.errors, "; ")));
}

// --help lists a tool's flags under its source file named from the project
// (src/tools/gpt2_ddp.cc), not by the build machine's path to it.
inline void NameFlagFilesFromTheProject() {
  absl::FlagsUsageConfig config;
  config.normalize_filename = [](absl::string_view file) {
    const size_t at = file.rfind("src/");
    return std::string(at == absl::string_view::npos ? file : file.substr(at));
  };
  // --version: this build's, not the system Abseil's ("Debug build (NDEBUG
  // not #defined)", how Debian compiled Abseil, whatever ours is).
  config.version_string = [] {
    return std::string(absl::flags_internal::ShortProgramInvocationName()) +
           " (gpt2_ddp project) build " + BuildCommit() +
#ifdef NDEBUG
           ", optimized (NDEBUG)\n";
#else
           ", debug (assertions on)\n";
#endif
  };
  absl::SetFlagsUsageConfig(config);
}

// absl::ParseCommandLine, except that --help (and --helpfull, --version, ...)
// exits 0 after printing, as a command-line tool's help does: this Abseil
// exits 1, so `tool --help && ...` failed.
inline std::vector<char*> ParseCommandLine(int argc, char** argv) {
  namespace fi = absl::flags_internal;
  std::vector<char*> rest = fi::ParseCommandLineImpl(
      argc, argv, fi::ArgvListAction::kRemoveParsedArgs,
      fi::UsageFlagsAction::kIgnoreUsage,
      fi::OnUndefinedFlag::kAbortIfUndefined);
  if (fi::HandleUsageFlags(std::cout, absl::ProgramUsageMessage()) != -1) {
    std::exit(0);
  }
  return rest;
}

inline int ParseFlagsOnly(const char* tool, int argc, char** argv) {
  NameFlagFilesFromTheProject();
  const std::vector<char*> rest = ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    return ReportError(
        tool, absl::InvalidArgumentError(std::string("unexpected argument '") +
                                         rest[1] + "' (see --help)"));
  }
  return CheckEnvironment(tool);
}

// The whole main() of a tool without positional arguments: OpenMP's passive
// wait, the usage text, the flags, then run(); a failed Status is reported
// and exits 1.
inline int ToolMain(const char* tool, const char* usage, int argc, char** argv,
                    absl::Status (*run)()) {
  UsePassiveOpenMpWait(argv);
  absl::SetProgramUsageMessage(usage);
  if (const int rc = ParseFlagsOnly(tool, argc, argv)) return rc;
  const absl::Status status = run();
  return status.ok() ? 0 : ReportError(tool, status);
}

}  // namespace gpt2

#endif  // GPT2_TOOLS_CLI_COMMON_H_
