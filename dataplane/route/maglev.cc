#include "dataplane/route/maglev.h"

#include <algorithm>
#include <string>

#include "lodestone/name_hash.h"

namespace lode::route {

std::string_view to_string(MaglevError e) noexcept {
  switch (e) {
    case MaglevError::kNoBackends:
      return "no backends";
    case MaglevError::kTooManyBackends:
      return "more than 65535 backends";
    case MaglevError::kTableSizeNotPrime:
      return "Maglev table size is not a prime";
    case MaglevError::kTableSizeOutOfRange:
      return "Maglev table size outside 101..16777213";
    case MaglevError::kTableTooSmall:
      return "Maglev table size below 100 slots per backend (pick a larger prime)";
    case MaglevError::kEmptyId:
      return "backend with an empty identity";
    case MaglevError::kDuplicateId:
      return "two backends with the same identity";
    case MaglevError::kWeightTooLarge:
      return "backend weight above 65535";
    case MaglevError::kAllWeightsZero:
      return "every backend has weight 0";
  }
  return "bad Maglev table";
}

bool is_prime(uint32_t n) noexcept {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

namespace {

constexpr uint16_t kEmptySlot = 0xFFFF;  // never a backend index (< kMaglevMaxBackends)

// One backend's walk through its permutation, and its place in the turn order.
struct Walker {
  uint32_t pos = 0;   // next slot of its permutation to try
  uint32_t skip = 0;  // 1..M-1
  uint32_t weight = 0;
  uint32_t rank = 0;   // position by identity (bytewise): breaks ties
  uint64_t turns = 0;  // turns taken
};

// Whether a's next turn comes before b's: (2*turns_a + 1) / w_a against the
// same for b, cross-multiplied (turns <= 2^24, w <= 2^16: no overflow), equal
// times going to the smaller identity.
bool turn_before(const Walker& a, const Walker& b) noexcept {
  const uint64_t ta = (2 * a.turns + 1) * b.weight;
  const uint64_t tb = (2 * b.turns + 1) * a.weight;
  if (ta != tb) return ta < tb;
  return a.rank < b.rank;
}

}  // namespace

Result<MaglevTable, MaglevError> MaglevTable::build(std::span<const MaglevBackend> backends,
                                                    uint32_t table_size) {
  const size_t n = backends.size();
  if (n == 0) return unexpected(MaglevError::kNoBackends);
  if (n > kMaglevMaxBackends) return unexpected(MaglevError::kTooManyBackends);
  if (table_size < kMaglevMinTableSize || table_size > kMaglevMaxTableSize) {
    return unexpected(MaglevError::kTableSizeOutOfRange);
  }
  if (!is_prime(table_size)) return unexpected(MaglevError::kTableSizeNotPrime);
  if (static_cast<uint64_t>(table_size) < uint64_t{kMaglevSlotsPerBackend} * n) {
    return unexpected(MaglevError::kTableTooSmall);
  }
  uint64_t total_weight = 0;
  for (const MaglevBackend& b : backends) {
    if (b.id.empty()) return unexpected(MaglevError::kEmptyId);
    if (b.weight > kMaglevMaxWeight) return unexpected(MaglevError::kWeightTooLarge);
    total_weight += b.weight;
  }
  // Rank by identity; equal neighbours are duplicates.
  std::vector<uint32_t> order(n);
  for (uint32_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return backends[a].id < backends[b].id; });
  for (size_t i = 1; i < n; ++i) {
    if (backends[order[i - 1]].id == backends[order[i]].id) {
      return unexpected(MaglevError::kDuplicateId);
    }
  }
  if (total_weight == 0) return unexpected(MaglevError::kAllWeightsZero);

  const uint32_t m = table_size;
  std::vector<Walker> walkers(n);
  for (uint32_t r = 0; r < n; ++r) {
    const uint32_t i = order[r];
    Walker& w = walkers[i];
    w.pos = static_cast<uint32_t>(name_hash(backends[i].id, kMaglevOffsetSeed) % m);
    w.skip = static_cast<uint32_t>(name_hash(backends[i].id, kMaglevSkipSeed) % (m - 1)) + 1;
    w.weight = backends[i].weight;
    w.rank = r;
  }

  // Min-heap of the backends that take turns, by next turn time. The order
  // is total (ranks differ), so the sequence of turns does not depend on the
  // heap's implementation.
  std::vector<uint32_t> heap;
  heap.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (walkers[i].weight > 0) heap.push_back(i);
  }
  const auto later = [&](uint32_t a, uint32_t b) { return turn_before(walkers[b], walkers[a]); };
  std::make_heap(heap.begin(), heap.end(), later);

  std::vector<uint16_t> slots(m, kEmptySlot);
  for (uint32_t filled = 0; filled < m; ++filled) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const uint32_t i = heap.back();
    Walker& w = walkers[i];
    // Some slot is still empty and the walk visits every slot: this ends.
    while (slots[w.pos] != kEmptySlot) {
      w.pos += w.skip;
      if (w.pos >= m) w.pos -= m;
    }
    slots[w.pos] = static_cast<uint16_t>(i);
    w.pos += w.skip;
    if (w.pos >= m) w.pos -= m;
    ++w.turns;
    std::push_heap(heap.begin(), heap.end(), later);
  }
  return MaglevTable(std::move(slots), static_cast<uint32_t>(n));
}

uint64_t MaglevTable::fingerprint() const {
  std::string bytes;
  bytes.resize(slots_.size() * 2);
  for (size_t i = 0; i < slots_.size(); ++i) {
    bytes[2 * i] = static_cast<char>(slots_[i] & 0xff);
    bytes[2 * i + 1] = static_cast<char>(slots_[i] >> 8);
  }
  return name_hash(bytes, slots_.size());
}

}  // namespace lode::route
