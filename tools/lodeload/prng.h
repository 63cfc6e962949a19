// Deterministic pseudo-random bytes for request bodies and bulk streams
// (xoshiro256**, seeded through splitmix64): the same seed gives the same
// stream on every machine, so a run can be repeated and its digests compared.
// Not for keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lode::load {

class Prng {
 public:
  explicit Prng(uint64_t seed) noexcept {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
  }

  uint64_t next() noexcept {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // In [0, n), n > 0; the modulo bias (< n / 2^64) does not matter here.
  uint64_t below(uint64_t n) noexcept { return next() % n; }
  void fill(uint8_t* p, size_t n) noexcept {
    while (n >= 8) {
      const uint64_t v = next();
      std::memcpy(p, &v, 8);
      p += 8;
      n -= 8;
    }
    if (n > 0) {
      const uint64_t v = next();
      std::memcpy(p, &v, n);
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace lode::load
