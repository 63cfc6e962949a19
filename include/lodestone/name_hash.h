// A seeded 64-bit hash of a byte string, used to place host names in the flat
// route table. Part of the contract between the processes: the control plane
// hashes when it builds a table, the dataplane hashes when it looks a name up,
// so the result must be the same in every process, build and CPU. It depends
// only on the bytes, their length and the seed (words are read little-endian
// whatever the host's byte order).
//
// Scheme: the length, the seed and a constant start the state; the input is absorbed eight
// bytes at a time (xor, multiply by an odd constant, fold the high half down
// with a shift-xor); the last 1..8 bytes are read as one (possibly
// overlapping) word; a final multiply-xorshift mixer spreads every input bit
// over the whole output. Each absorb step is a bijection of the state for a
// fixed word and of the word for a fixed state, and the finalizer is a
// bijection, so two inputs of the same length that differ in one word only
// never collide. It is not a keyed PRF: the seed is drawn per table so a
// tenant cannot precompute colliding names, and probe lengths stay short.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace lode {

namespace detail {

inline constexpr uint64_t kHashMulA = 0x9e3779b97f4a7c15ull;  // 2^64 / golden ratio, odd
inline constexpr uint64_t kHashMulB = 0xd6e8feb86659fd93ull;
inline constexpr uint64_t kHashMulC = 0xc4ceb9fe1a85ec53ull;
inline constexpr uint64_t kHashInit = 0x243f6a8885a308d3ull;  // digits of pi: no fixed point at 0

// Little-endian loads of 8, 4 bytes; byte by byte when constant-evaluated.
constexpr uint64_t hash_load64(const char* p) noexcept {
  if (std::is_constant_evaluated()) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
  }
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

constexpr uint64_t hash_load32(const char* p) noexcept {
  if (std::is_constant_evaluated()) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

constexpr uint64_t hash_absorb(uint64_t h, uint64_t word) noexcept {
  h ^= word;
  h *= kHashMulB;
  return h ^ (h >> 32);  // a multiply only carries bits upward: fold the top back down
}

constexpr uint64_t hash_finish(uint64_t h) noexcept {
  h ^= h >> 31;
  h *= kHashMulC;
  h ^= h >> 29;
  h *= kHashMulA;
  return h ^ (h >> 32);
}

}  // namespace detail

// The hash of `s` under `seed`. Stable: changing it changes the route-table
// format (bump its layout version).
[[nodiscard]] constexpr uint64_t name_hash(std::string_view s, uint64_t seed) noexcept {
  const char* p = s.data();
  const size_t n = s.size();
  uint64_t h = seed ^ detail::kHashInit ^ (static_cast<uint64_t>(n) * detail::kHashMulA);
  if (n > 8) {
    size_t i = 0;
    for (; n - i > 8; i += 8) h = detail::hash_absorb(h, detail::hash_load64(p + i));
    h = detail::hash_absorb(h, detail::hash_load64(p + n - 8));  // last word may overlap
  } else if (n == 8) {
    h = detail::hash_absorb(h, detail::hash_load64(p));
  } else if (n >= 4) {
    // Two overlapping 4-byte reads cover every byte; the length (in the
    // state already) tells the overlaps apart.
    h = detail::hash_absorb(h, detail::hash_load32(p) | (detail::hash_load32(p + n - 4) << 32));
  } else if (n > 0) {
    const uint64_t w = static_cast<unsigned char>(p[0]) |
                       (uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
                       (uint64_t{static_cast<unsigned char>(p[n - 1])} << 16);
    h = detail::hash_absorb(h, w);
  }
  return detail::hash_finish(h);
}

}  // namespace lode
