// Whole numbers for people: 1234567 -> "1,234,567".
#ifndef GPT2_CORE_THOUSANDS_H_
#define GPT2_CORE_THOUSANDS_H_

#include <cstdint>
#include <string>

namespace gpt2 {

std::string Thousands(int64_t n);

}  // namespace gpt2

#endif  // GPT2_CORE_THOUSANDS_H_
