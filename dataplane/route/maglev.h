// MaglevTable: consistent hashing of connections onto the backends of a pool
// (the idea of Eisenbud et al., "Maglev", NSDI 2016), weighted.
//
// A table of M slots (M prime) holds a backend index in every slot; a key is
// served by slots[key % M]. Each backend walks its own permutation of the
// slots, fixed by two hashes of its identity string ("10.0.0.1:443"):
//
//   offset = name_hash(id, kMaglevOffsetSeed) % M
//   skip   = name_hash(id, kMaglevSkipSeed) % (M - 1) + 1
//   permutation[j] = (offset + j * skip) % M        (M prime: every slot once)
//
// Population: backends take turns; on its turn a backend claims the next slot
// of its permutation that nobody holds yet, until every slot is held. Turns
// are weighted: backend i's k-th turn (k = 0, 1, ...) comes at virtual time
// (2k + 1) / w_i, and turns run in virtual-time order (the Sainte-Lague
// divisor sequence). After t turns every backend has had t * w_i / W turns,
// give or take one, so after M turns it holds w_i / W of the slots give or
// take a slot or two: no rounding drift, whatever the weights. Equal virtual
// times go to the smaller identity string (bytewise), never to the position
// in the caller's list.
//
// So the table depends only on the set of (identity, weight) pairs and M:
// the same configuration gives a byte-identical table (in identities) in every
// process, on every node, whatever order the backends were listed in; and
// name_hash (lodestone/name_hash.h) is stable across builds and CPUs.
// fingerprint() hashes the table so nodes (and a golden test) can compare.
//
// Disruption: removing a backend frees its slots and leaves the turn order of
// the others unchanged, so most slots of the others stay where they were.
//
// Sizing: M >= kMaglevSlotsPerBackend * backends (Maglev's rule for shares
// within about 1%), M prime in [kMaglevMinTableSize, kMaglevMaxTableSize];
// build() refuses anything else. Slots are 16-bit (65,537 slots = 128 KiB).
//
// Building allocates (control-plane or snapshot-load time); lookup() is O(1),
// noexcept, allocation-free.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "lodestone/result.h"

namespace lode::route {

inline constexpr uint32_t kMaglevDefaultTableSize = 65537;
inline constexpr uint32_t kMaglevMinTableSize = 101;
inline constexpr uint32_t kMaglevMaxTableSize = 16777213;  // largest prime below 2^24
inline constexpr uint32_t kMaglevSlotsPerBackend = 100;
inline constexpr uint32_t kMaglevMaxBackends = 65535;  // slot entries are 16-bit
inline constexpr uint32_t kMaglevMaxWeight = 65535;

// Part of the cross-node contract, like name_hash itself: changing a seed
// moves (almost) every key on every node.
inline constexpr uint64_t kMaglevOffsetSeed = 0x4d41474c45564f46ull;  // "MAGLEVOF"
inline constexpr uint64_t kMaglevSkipSeed = 0x4d41474c4556534bull;    // "MAGLEVSK"

struct MaglevBackend {
  std::string_view id;  // stable identity, e.g. "10.0.0.1:443"; unique, non-empty
  uint32_t weight = 1;  // 0: holds no slot (drained); 1..kMaglevMaxWeight
};

enum class MaglevError : uint8_t {
  kNoBackends,       // an empty list
  kTooManyBackends,  // more than kMaglevMaxBackends
  kTableSizeNotPrime,
  kTableSizeOutOfRange,  // outside [kMaglevMinTableSize, kMaglevMaxTableSize]
  kTableTooSmall,        // M < kMaglevSlotsPerBackend * backends
  kEmptyId,
  kDuplicateId,
  kWeightTooLarge,  // above kMaglevMaxWeight
  kAllWeightsZero,
};

std::string_view to_string(MaglevError e) noexcept;

// True when n is prime (trial division; n < 2^32).
bool is_prime(uint32_t n) noexcept;

class MaglevTable {
 public:
  // Backend indexes in the table are positions in `backends`.
  [[nodiscard]] static Result<MaglevTable, MaglevError> build(
      std::span<const MaglevBackend> backends, uint32_t table_size = kMaglevDefaultTableSize);

  // The backend index that serves `key_hash`: slots()[key_hash % size()].
  [[nodiscard]] uint32_t lookup(uint64_t key_hash) const noexcept {
    return slots_[static_cast<size_t>(key_hash % slots_.size())];
  }

  uint32_t size() const noexcept { return static_cast<uint32_t>(slots_.size()); }
  uint32_t backend_count() const noexcept { return backend_count_; }
  std::span<const uint16_t> slots() const noexcept { return slots_; }

  // name_hash of the slots as little-endian u16s, seeded with the size: equal
  // on two nodes if and only if (up to hash collisions) their tables are.
  [[nodiscard]] uint64_t fingerprint() const;

 private:
  MaglevTable(std::vector<uint16_t> slots, uint32_t backend_count)
      : slots_(std::move(slots)), backend_count_(backend_count) {}

  std::vector<uint16_t> slots_;
  uint32_t backend_count_ = 0;
};

}  // namespace lode::route
