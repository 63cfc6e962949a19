// CRC-32C (Castagnoli): the checksum of the PROXY protocol v2 CRC32C TLV
// (RFC 3720 appendix B.4 / RFC 4960 appendix B). Software, slicing-by-8,
// pure: no I/O, no allocation, no CPU feature detection.
#pragma once

#include <cstdint>
#include <span>

namespace lode::proxy {

// Reflected polynomial 0x1EDC6F41, initial value and final xor 0xFFFFFFFF.
// crc32c("123456789") == 0xE3069283.
[[nodiscard]] uint32_t crc32c(std::span<const uint8_t> data) noexcept;

// Continues a finished checksum over more bytes:
//   crc32c_extend(crc32c(a), b) == crc32c(a ++ b),  crc32c_extend(0, b) == crc32c(b).
[[nodiscard]] uint32_t crc32c_extend(uint32_t crc, std::span<const uint8_t> data) noexcept;

}  // namespace lode::proxy
