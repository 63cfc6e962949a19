// The first bytes of a TCP flow, collected from segments as they come: out of
// order, duplicated, overlapping retransmits. The bytes held first win (a
// retransmit that disagrees does not change what was parsed), so what the
// dataplane parses is exactly what it later replays. Sequence numbers wrap at
// 2^32.
//
// The buffer belongs to the caller (a fixed-size slot from a per-lcore pool);
// nothing here allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace lode::front {

class HelloCollector {
 public:
  static constexpr size_t kMaxRanges = 8;  // held pieces; more gaps than this and a segment waits for a retransmit

  enum class Add : uint8_t {
    kAdded,       // some new bytes were taken
    kDuplicate,   // nothing new (all held already, or before the start)
    kBeyondCap,   // the segment starts past the buffer (one across its end keeps what fits)
    kTooManyGaps, // would need more than kMaxRanges pieces: dropped, the peer retransmits
  };

  // `start`: the sequence number of the stream's first byte (the client's ISN + 1).
  void reset(uint32_t start, std::span<uint8_t> buffer) noexcept;

  [[nodiscard]] Add add(uint32_t seq, std::span<const uint8_t> data) noexcept;

  // The bytes from the start with no gap.
  std::span<const uint8_t> contiguous() const noexcept { return {buf_.data(), contiguous_}; }
  size_t capacity() const noexcept { return buf_.size(); }  // the most the hello may take
  // The sequence number after the contiguous bytes (what to acknowledge).
  uint32_t next_seq() const noexcept { return start_ + static_cast<uint32_t>(contiguous_); }
  // Bytes held beyond a gap.
  bool has_gap() const noexcept { return count_ > 1 || (count_ == 1 && ranges_[0].lo != 0); }
  uint32_t start() const noexcept { return start_; }

 private:
  struct Range {
    uint32_t lo = 0, hi = 0;  // [lo, hi) offsets from start_
  };
  std::span<uint8_t> buf_;
  uint32_t start_ = 0;
  size_t contiguous_ = 0;
  Range ranges_[kMaxRanges];
  size_t count_ = 0;
};

}  // namespace lode::front
