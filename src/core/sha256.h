// SHA-256 (FIPS 180-4) of a byte string, as lowercase hex. Small and
// dependency-free: used to check data files and token streams against known
// digests, not for anything security-sensitive.
#ifndef GPT2_CORE_SHA256_H_
#define GPT2_CORE_SHA256_H_

#include <string>
#include <string_view>

namespace gpt2 {

// Returns the 64-character lowercase hex digest of `bytes`.
std::string Sha256Hex(std::string_view bytes);

}  // namespace gpt2

#endif  // GPT2_CORE_SHA256_H_
