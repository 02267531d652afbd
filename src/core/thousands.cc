#include "src/core/thousands.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gpt2 {

std::string Thousands(int64_t n) {
  // The magnitude as unsigned: -n would overflow for the lowest int64_t.
  const uint64_t magnitude =
      n < 0 ? uint64_t{0} - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  const std::string digits = absl::StrCat(magnitude);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string Duration(int64_t seconds) {
  const int64_t s = seconds < 0 ? 0 : seconds;
  if (s >= 3600) return absl::StrFormat("%dh %02dm", s / 3600, s / 60 % 60);
  if (s >= 60) return absl::StrFormat("%dm %02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace gpt2
