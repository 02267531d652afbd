#include "src/core/host_memory.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace gpt2 {
namespace {

std::string ReadSmallFile(const char* path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A "Name:   12345 kB" line's value in bytes, or -1.
int64_t MeminfoBytes(const std::string& meminfo, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, ":")) {
      continue;
    }
    line = absl::StripAsciiWhitespace(line);
    const bool kilobytes = absl::ConsumeSuffix(&line, "kB");
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &value) ||
        value < 0) {
      return -1;
    }
    return kilobytes ? value * 1024 : value;
  }
  return -1;
}

}  // namespace

std::optional<HostMemory> ParseHostMemory(const std::string& meminfo,
                                          const std::string& cgroup_limit,
                                          const std::string& cgroup_usage) {
  HostMemory memory;
  memory.total_bytes = MeminfoBytes(meminfo, "MemTotal");
  memory.available_bytes = MeminfoBytes(meminfo, "MemAvailable");
  if (memory.total_bytes <= 0 || memory.available_bytes < 0) {
    return std::nullopt;
  }
  // A cgroup limit ("max", or v1's huge number, when there is none).
  int64_t limit = 0, usage = 0;
  if (absl::SimpleAtoi(absl::StripAsciiWhitespace(cgroup_limit), &limit) &&
      limit > 0 && limit < memory.total_bytes) {
    memory.total_bytes = limit;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(cgroup_usage), &usage)) {
      usage = 0;
    }
    const int64_t left = limit > usage ? limit - usage : 0;
    if (left < memory.available_bytes) memory.available_bytes = left;
  }
  if (memory.available_bytes > memory.total_bytes) {
    memory.available_bytes = memory.total_bytes;
  }
  return memory;
}

std::optional<HostMemory> ReadHostMemory() {
  std::string limit = ReadSmallFile("/sys/fs/cgroup/memory.max");
  std::string usage;
  if (!limit.empty()) {
    usage = ReadSmallFile("/sys/fs/cgroup/memory.current");
  } else {
    limit = ReadSmallFile("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    usage = ReadSmallFile("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  return ParseHostMemory(ReadSmallFile("/proc/meminfo"), limit, usage);
}

}  // namespace gpt2
