#include "src/core/process_clock.h"

#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace gpt2 {

std::optional<double> StartSecondsFromStat(const std::string& stat,
                                           long ticks_per_second) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the
  // fields are counted from its last ')'. The start time is field 22, the
  // 20th after it.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || ticks_per_second <= 0) return std::nullopt;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 0; i < 20; ++i) {
    if (!(fields >> field)) return std::nullopt;
  }
  char* end = nullptr;
  const unsigned long long ticks = std::strtoull(field.c_str(), &end, 10);
  if (end == field.c_str() || *end != '\0') return std::nullopt;
  return static_cast<double>(ticks) / static_cast<double>(ticks_per_second);
}

std::chrono::steady_clock::time_point ProcessStartTime() {
  const auto now = std::chrono::steady_clock::now();
  std::ifstream in("/proc/self/stat");
  std::stringstream text;
  text << in.rdbuf();
  const std::optional<double> started =
      in ? StartSecondsFromStat(text.str(), sysconf(_SC_CLK_TCK))
         : std::nullopt;
  timespec boot{};
  if (!started.has_value() || clock_gettime(CLOCK_BOOTTIME, &boot) != 0) {
    return now;
  }
  const double age = boot.tv_sec + boot.tv_nsec * 1e-9 - *started;
  // A tick's rounding can put the start a little after now; a clock that
  // disagrees by more than a minute is not to be trusted.
  if (age < 0.0 || age > 60.0) return now;
  return now - std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(age));
}

}  // namespace gpt2
