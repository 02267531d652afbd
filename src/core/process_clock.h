// When this process started, on the steady clock: the times a run reports
// "after process start" count from there, so they hold what happened before
// main() too (an exec, loading the binary, static initialisers); and the
// seconds since a point on that clock.
#ifndef GPT2_CORE_PROCESS_CLOCK_H_
#define GPT2_CORE_PROCESS_CLOCK_H_

#include <chrono>
#include <optional>
#include <string>

namespace gpt2 {

// The process's start (Linux: /proc/self/stat's start time, kept across
// execve, in clock ticks of 10 ms), as a point on the steady clock; now()
// where that cannot be read.
std::chrono::steady_clock::time_point ProcessStartTime();

// Seconds on the steady clock since `began`.
inline double SecondsSince(std::chrono::steady_clock::time_point began) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - began)
      .count();
}

// The seconds between boot and a process's start, from the text of its
// /proc/<pid>/stat and the clock's ticks a second; nullopt if it does not
// parse.
std::optional<double> StartSecondsFromStat(const std::string& stat,
                                           long ticks_per_second);

}  // namespace gpt2

#endif  // GPT2_CORE_PROCESS_CLOCK_H_
