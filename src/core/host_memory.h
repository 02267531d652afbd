// The host's memory, for planning a run before allocating it.
#ifndef GPT2_CORE_HOST_MEMORY_H_
#define GPT2_CORE_HOST_MEMORY_H_

#include <cstdint>
#include <optional>
#include <string>

namespace gpt2 {

struct HostMemory {
  int64_t available_bytes = 0;  // what a process can still take
  int64_t total_bytes = 0;
};

// MemAvailable and MemTotal of /proc/meminfo, cut to the memory cgroup's limit
// (v2 memory.max, or v1 memory.limit_in_bytes) where one is set below them, as
// in a container; nullopt where /proc/meminfo cannot be read.
std::optional<HostMemory> ReadHostMemory();

// The same from given file contents (tests): `cgroup_limit` and
// `cgroup_usage` are the cgroup files' text, empty where absent.
std::optional<HostMemory> ParseHostMemory(const std::string& meminfo,
                                          const std::string& cgroup_limit,
                                          const std::string& cgroup_usage);

}  // namespace gpt2

#endif  // GPT2_CORE_HOST_MEMORY_H_
