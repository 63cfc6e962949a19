#include "dataplane/front/hello_collector.h"

#include <algorithm>
#include <cstring>

namespace lode::front {

void HelloCollector::reset(uint32_t start, std::span<uint8_t> buffer) noexcept {
  buf_ = buffer;
  start_ = start;
  contiguous_ = 0;
  count_ = 0;
}

HelloCollector::Add HelloCollector::add(uint32_t seq, std::span<const uint8_t> data) noexcept {
  // Offsets relative to the start, in wrapping arithmetic: a segment that
  // begins before the start (a retransmit of the SYN's sequence space, or
  // garbage) is trimmed.
  int64_t lo = static_cast<int32_t>(seq - start_);
  int64_t hi = lo + static_cast<int64_t>(data.size());
  if (hi <= 0 || data.empty()) return Add::kDuplicate;
  if (lo < 0) {
    data = data.subspan(static_cast<size_t>(-lo));
    lo = 0;
  }
  if (hi > static_cast<int64_t>(buf_.size())) {
    // Past the room: what starts beyond it is refused; what straddles it
    // keeps the part inside (the hello's tail with early data behind it, a
    // window larger than the room: a SYN-ACK offers 65535).
    if (lo >= static_cast<int64_t>(buf_.size())) return Add::kBeyondCap;
    data = data.first(buf_.size() - static_cast<size_t>(lo));
    hi = static_cast<int64_t>(buf_.size());
  }
  const auto ulo = static_cast<uint32_t>(lo), uhi = static_cast<uint32_t>(hi);

  // Where the new range goes among the held ones (sorted, disjoint, not
  // touching), and which held ranges it overlaps or touches.
  size_t first = 0;
  while (first < count_ && ranges_[first].hi < ulo) ++first;
  size_t last = first;
  while (last < count_ && ranges_[last].lo <= uhi) ++last;  // [first, last) merge with it
  if (first == last && count_ == kMaxRanges) return Add::kTooManyGaps;

  // Copy only into the gaps: bytes held already stay as they are.
  bool added = false;
  uint32_t at = ulo;
  for (size_t i = first; i < last && at < uhi; ++i) {
    if (ranges_[i].lo > at) {
      const uint32_t end = std::min(ranges_[i].lo, uhi);
      std::memcpy(buf_.data() + at, data.data() + (at - ulo), end - at);
      added = true;
    }
    at = std::max(at, ranges_[i].hi);
  }
  if (at < uhi) {
    std::memcpy(buf_.data() + at, data.data() + (at - ulo), uhi - at);
    added = true;
  }
  if (!added) return Add::kDuplicate;

  // Merge [first, last) and the new range into one.
  Range merged{ulo, uhi};
  if (first < last) {
    merged.lo = std::min(merged.lo, ranges_[first].lo);
    merged.hi = std::max(merged.hi, ranges_[last - 1].hi);
  }
  const size_t removed = last - first;
  if (removed == 0) {
    std::move_backward(ranges_ + first, ranges_ + count_, ranges_ + count_ + 1);
    ++count_;
  } else if (removed > 1) {
    std::move(ranges_ + last, ranges_ + count_, ranges_ + first + 1);
    count_ -= removed - 1;
  }
  ranges_[first] = merged;
  contiguous_ = count_ > 0 && ranges_[0].lo == 0 ? ranges_[0].hi : 0;
  return Add::kAdded;
}

}  // namespace lode::front
