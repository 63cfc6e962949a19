// A log-bucketed latency histogram in the manner of HdrHistogram: values
// below 2^kSubBits are counted exactly; above, each power of two is split into
// 2^(kSubBits-1) equal buckets, so a reported quantile is at most 1/128
// (0.8 %) above the true value. Fixed memory (about 60 KB, on the heap so a
// report moves cheaply), O(1) record, no allocation after construction. min,
// max, count and sum are exact.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lode::load {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 8;
  static constexpr uint64_t kSubCount = uint64_t{1} << kSubBits;
  static constexpr uint64_t kHalf = kSubCount / 2;
  static constexpr size_t kBuckets = (64 - kSubBits + 1) * kHalf + kHalf;

  // The bucket of a value: exact below kSubCount, then kHalf buckets per
  // octave. Monotonic in v.
  static constexpr size_t bucket_of(uint64_t v) noexcept {
    if (v < kSubCount) return static_cast<size_t>(v);
    const unsigned shift = static_cast<unsigned>(std::bit_width(v)) - kSubBits;
    return static_cast<size_t>(shift * kHalf + (v >> shift));
  }
  // The largest value that falls into bucket `b` (what a quantile reports).
  static constexpr uint64_t bucket_high(size_t b) noexcept {
    if (b < kSubCount) return b;
    const uint64_t shift = (b - kHalf) / kHalf;  // b = shift*kHalf + top, top in [kHalf, kSubCount)
    const uint64_t top = b - shift * kHalf;
    return ((top + 1) << shift) - 1;
  }

  void record(uint64_t v) noexcept;
  // Adds another histogram's counts (several streams into one report).
  void merge(const Histogram& other) noexcept;

  uint64_t count() const noexcept { return count_; }
  uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }
  // The value at quantile q in [0, 1]: the high end of the bucket holding the
  // ceil(q * count)-th smallest value, never above max(); 0 when empty.
  uint64_t quantile(double q) const noexcept;

 private:
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(kBuckets);
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace lode::load
