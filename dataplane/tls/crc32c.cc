#include "dataplane/tls/crc32c.h"

#include <array>
#include <cstddef>

namespace lode::proxy {
namespace {

constexpr uint32_t kPolyReflected = 0x82F63B78;  // 0x1EDC6F41 bit-reversed

// kTables[0] is the classic byte-at-a-time table; kTables[k][b] is the CRC of
// byte b followed by k zero bytes, so eight bytes fold in eight lookups.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() noexcept {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ kPolyReflected : c >> 1;
    t[0][b] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
}

constexpr Tables kTables = make_tables();

// `state` is the running register (already inverted).
uint32_t update(uint32_t state, const uint8_t* p, size_t n) noexcept {
  while (n >= 8) {
    // Little-endian fold of the first four bytes into the register; written
    // byte-wise so it is correct on any host and needs no alignment.
    const uint32_t lo =
        state ^ (static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                 static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24);
    state = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
            kTables[4][lo >> 24] ^ kTables[3][p[4]] ^ kTables[2][p[5]] ^ kTables[1][p[6]] ^
            kTables[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) state = (state >> 8) ^ kTables[0][(state ^ *p++) & 0xff];
  return state;
}

}  // namespace

uint32_t crc32c_extend(uint32_t crc, std::span<const uint8_t> data) noexcept {
  return ~update(~crc, data.data(), data.size());
}

uint32_t crc32c(std::span<const uint8_t> data) noexcept {
  return crc32c_extend(0, data);
}

}  // namespace lode::proxy
