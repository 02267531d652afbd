// Numbers for people: 1234567 -> "1,234,567"; 216 s -> "3m 36s".
#ifndef GPT2_CORE_THOUSANDS_H_
#define GPT2_CORE_THOUSANDS_H_

#include <cstdint>
#include <string>

namespace gpt2 {

std::string Thousands(int64_t n);

// Whole seconds as "45s", "3m 36s" or "2h 05m" (negative as 0s).
std::string Duration(int64_t seconds);

}  // namespace gpt2

#endif  // GPT2_CORE_THOUSANDS_H_
