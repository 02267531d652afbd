// Switches read from the environment: the GPT2_* fallbacks and options that
// isolate a fast path (docs/gpu_runbook.md lists them).
#ifndef GPT2_CORE_ENV_H_
#define GPT2_CORE_ENV_H_

#include <cstdlib>
#include <string_view>

namespace gpt2 {

// Whether the variable `name` is set to exactly `value`.
inline bool EnvIs(const char* name, std::string_view value) {
  const char* env = std::getenv(name);
  return env != nullptr && value == env;
}

}  // namespace gpt2

#endif  // GPT2_CORE_ENV_H_
