// bfloat16 on the host, without the CUDA headers: the top 16 bits of an IEEE
// float, rounded to nearest even (as __float2bfloat16 does), NaN kept a NaN.
#ifndef GPT2_CORE_BF16_H_
#define GPT2_CORE_BF16_H_

#include <cstdint>
#include <cstring>

namespace gpt2 {

inline uint16_t FloatToBf16Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float Bf16BitsToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace gpt2

#endif  // GPT2_CORE_BF16_H_
