// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
// checkpoint headers and records. Table-driven, eight bytes per step; the
// check value crc32c("123456789") is 0xE3069283.
#ifndef GPT2_CORE_CRC32C_H_
#define GPT2_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace gpt2 {

// The CRC of `size` bytes.
uint32_t Crc32c(const void* data, size_t size);

// The CRC of (the bytes `crc` was computed over) followed by `data`, so a
// stream can be checksummed piece by piece: Crc32cExtend(Crc32c(a), b) ==
// Crc32c(a ‖ b). Crc32cExtend(0, x) == Crc32c(x).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

}  // namespace gpt2

#endif  // GPT2_CORE_CRC32C_H_
