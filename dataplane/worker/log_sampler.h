// Access-log sampling ([log] sample): which finished connections get a line.
// A connection that ended in an error, a reject, a timeout or a reset is
// always logged; a successful one with probability `rate`. One sampler per
// worker (no shared state); the decision is made before the line is built,
// so a connection sampled out costs a few arithmetic operations and no
// formatting.
//
// Why a pseudo-random draw and not "every Nth": a counter aliases with
// periodic traffic (round-robin over two backends at rate 0.5 would log one
// backend only). xorshift64* (Marsaglia; Vigna's multiplier) is enough: the
// sample must be unbiased, not unpredictable.
#pragma once

#include <cstdint>

namespace lode::worker {

class LogSampler {
 public:
  explicit LogSampler(uint64_t seed = 1) noexcept : state_(seed != 0 ? seed : 0x9e3779b97f4a7c15ULL) {}

  // Whether a connection that ended `ok` (or not) gets its line, at `rate`
  // (the fraction of successful connections logged). A rate at or above 1
  // keeps all, at or below 0 (or NaN) none of the successful ones: errors
  // are logged whatever the rate says.
  [[nodiscard]] bool keep(bool ok, double rate) noexcept {
    if (!ok || rate >= 1.0) return true;
    if (!(rate > 0.0)) return false;
    // rate * 2^64 is below 2^64 for rate < 1.
    return next() < static_cast<uint64_t>(rate * 18446744073709551616.0);
  }

 private:
  uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545f4914f6cdd1dULL;
  }

  uint64_t state_;
};

}  // namespace lode::worker
