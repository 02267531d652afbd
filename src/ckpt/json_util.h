// Just enough JSON output for gpt2_ckpt and the Hugging Face export: escaped
// strings and numbers (non-finite numbers, which JSON lacks, become null).
#ifndef GPT2_CKPT_JSON_UTIL_H_
#define GPT2_CKPT_JSON_UTIL_H_

#include <cmath>
#include <string>

#include "absl/strings/str_format.h"

namespace gpt2 {

inline std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += ch;  // UTF-8 passes through
        }
    }
  }
  return out + "\"";
}

inline std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.9g", v);
}

}  // namespace gpt2

#endif  // GPT2_CKPT_JSON_UTIL_H_
