// The GPT2_* environment variables the tools and scripts read, with the values
// each takes, so that a tool can check them at start-up: a value a switch does
// not take (GPT2_PDL=yes) would otherwise leave it silently off, and a name no
// tool reads (GPT2_TRAIN_GRAPH=1 for GPT2_TRAIN_GRAPHS) silently do nothing.
// docs/gpu_runbook.md says what each switch does.
#ifndef GPT2_CORE_ENV_SWITCHES_H_
#define GPT2_CORE_ENV_SWITCHES_H_

#include <string>
#include <string_view>
#include <vector>

namespace gpt2 {

struct EnvSwitch {
  std::string_view name;
  // The values it takes: alternatives separated by '|' ("0|1"), or "N" (a
  // whole number from 1 up) or "ANY" (any text: paths, prompts, test hooks).
  // Every switch also takes the empty value: the default, as if unset.
  std::string_view values;
};
const std::vector<EnvSwitch>& KnownEnvSwitches();

struct EnvProblems {
  std::vector<std::string> errors;    // a known switch with a value it lacks
  std::vector<std::string> warnings;  // a GPT2_* name nothing reads
};
// Checks the GPT2_* entries of `environ` (a null-terminated "NAME=VALUE"
// array; other names are not looked at). Names starting with GPT2_TEST_ are
// test hooks and take any value.
EnvProblems CheckEnvSwitches(const char* const* environ);

}  // namespace gpt2

#endif  // GPT2_CORE_ENV_SWITCHES_H_
