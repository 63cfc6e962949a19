// The flat SNI route table of one listener: its byte format and its reader.
//
// Part of the contract between the processes. The control plane builds a
// table (controlplane/route_table_builder.h) and publishes the block as-is in
// shared memory; the dataplane maps it read-only and reads it in place. So the
// block is one contiguous run of bytes with no pointers: every reference is an
// offset from the start of the block (sections) or from the start of the
// string pool (names), every integer is little-endian and fixed-width, every
// section starts on an 8-byte boundary. A block copied anywhere reads the same.
//
//   offset 0 ┌──────────────────────────────────────────────┐
//            │ Header (96 B)                                │
//            │   u64 magic "LODERT01"   u32 version (1)     │
//            │   u32 header_size (96)   u64 total_size      │
//            │   u64 hash_seed                              │
//            │   u32 route_count        u32 default_route   │
//            │   u32 exact_slot_count   u32 exact_name_count│
//            │   u32 wild_slot_count    u32 wild_name_count │
//            │   u64 routes_offset      u64 exact_offset    │
//            │   u64 wild_offset        u64 pool_offset     │
//            │   u64 pool_size                              │
//  routes_   ├──────────────────────────────────────────────┤
//  offset    │ RouteRecord[route_count] (16 B each)         │
//            │   u32 name_offset  u16 name_len              │  route's configured name,
//            │   u8 action        u8 flags                  │  in the pool (logs, explain)
//            │   u32 pool         u32 cert                  │  kNoIndex (0xFFFFFFFF): none
//  exact_    ├──────────────────────────────────────────────┤
//  offset    │ Slot[exact_slot_count] (16 B each)           │  open addressing, linear
//            │   u32 tag (hash >> 32)  u32 name_offset      │  probing, power-of-two
//            │   u32 route             u16 name_len  u16 0  │  slots, load <= 1/2;
//  wild_     ├──────────────────────────────────────────────┤  empty slot: all zero
//  offset    │ Slot[wild_slot_count]                        │  key of "*.example.com"
//  pool_     ├──────────────────────────────────────────────┤  is "example.com"
//  offset    │ string pool (pool_size bytes)                │
//            └──────────────────────────────────────────────┘ total_size
//
// Sections come in this order, each 8-byte aligned, none overlapping; the
// bytes between them and after the pool are zero; total_size is a multiple
// of 8. A key's home slot is `name_hash(key, seed) &
// (slots - 1)`; its tag is the hash's high 32 bits. Keys are normalized host
// names (lodestone/hostname.h): lower case, no trailing dot, not IP literals.
//
// Lookup (find): exact table with the whole name; then, for "first.rest", the
// wildcard table with "rest" (one probe: a wildcard covers exactly one more
// label, RFC 6125 §6.4.3); then the default route. An empty name (no SNI)
// goes to the default route.
//
// RouteTableView::open() checks everything once: the header, every section's
// bounds and alignment, every route and every slot (offsets, lengths, route
// indexes, normalized keys, hash tags, each key reachable from its home slot,
// the load factor). After it succeeds lookups trust the block and do no
// checks, no allocation and no I/O.
#pragma once

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "lodestone/hostname.h"
#include "lodestone/name_hash.h"
#include "lodestone/result.h"

namespace lode::route {

inline constexpr uint32_t kNoIndex = 0xFFFFFFFFu;

enum class Action : uint8_t { kTerminate = 0, kPassthrough = 1, kReject = 2 };

inline constexpr uint8_t kFlagRejectWithReset = 0x01;  // reject with a TCP reset, not an alert
inline constexpr uint8_t kFlagSteerByClient = 0x02;    // dpdk front: terminate flows to a worker by client, not name
inline constexpr uint8_t kKnownRouteFlags = kFlagRejectWithReset | kFlagSteerByClient;

enum class MatchKind : uint8_t { kExact, kWildcard, kDefault, kNone };

constexpr std::string_view to_string(MatchKind k) noexcept {
  switch (k) {
    case MatchKind::kExact:
      return "exact";
    case MatchKind::kWildcard:
      return "wildcard";
    case MatchKind::kDefault:
      return "default";
    case MatchKind::kNone:
      return "none";
  }
  return "unknown";
}

// The answer of a lookup. `pattern` is the stored key that matched (for a
// wildcard, the suffix: "example.com" for "*.example.com"); it points into the
// table block and is empty for kDefault and kNone.
struct Match {
  uint32_t route = kNoIndex;
  MatchKind kind = MatchKind::kNone;
  std::string_view pattern;

  constexpr bool found() const noexcept { return route != kNoIndex; }
};

struct RouteView {
  std::string_view name;  // the route's configured name
  Action action = Action::kReject;
  uint8_t flags = 0;
  uint32_t pool = kNoIndex;
  uint32_t cert = kNoIndex;

  constexpr bool reject_with_reset() const noexcept { return (flags & kFlagRejectWithReset) != 0; }
  constexpr bool steer_by_client() const noexcept { return (flags & kFlagSteerByClient) != 0; }
};

// --- Layout ----------------------------------------------------------------

namespace layout {

constexpr uint64_t make_magic(const char (&s)[9]) noexcept {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

inline constexpr uint64_t kMagic = make_magic("LODERT01");  // the bytes "LODERT01" in order
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kAlign = 8;

// Header fields: byte offsets from the start of the block.
inline constexpr size_t kHdrMagic = 0;
inline constexpr size_t kHdrVersion = 8;
inline constexpr size_t kHdrHeaderSize = 12;
inline constexpr size_t kHdrTotalSize = 16;
inline constexpr size_t kHdrHashSeed = 24;
inline constexpr size_t kHdrRouteCount = 32;
inline constexpr size_t kHdrDefaultRoute = 36;
inline constexpr size_t kHdrExactSlots = 40;
inline constexpr size_t kHdrExactNames = 44;
inline constexpr size_t kHdrWildSlots = 48;
inline constexpr size_t kHdrWildNames = 52;
inline constexpr size_t kHdrRoutesOffset = 56;
inline constexpr size_t kHdrExactOffset = 64;
inline constexpr size_t kHdrWildOffset = 72;
inline constexpr size_t kHdrPoolOffset = 80;
inline constexpr size_t kHdrPoolSize = 88;
inline constexpr size_t kHeaderSize = 96;

// RouteRecord fields.
inline constexpr size_t kRouteNameOffset = 0;
inline constexpr size_t kRouteNameLen = 4;
inline constexpr size_t kRouteAction = 6;
inline constexpr size_t kRouteFlags = 7;
inline constexpr size_t kRoutePool = 8;
inline constexpr size_t kRouteCert = 12;
inline constexpr size_t kRouteSize = 16;

// Slot fields.
inline constexpr size_t kSlotTag = 0;
inline constexpr size_t kSlotNameOffset = 4;
inline constexpr size_t kSlotRoute = 8;
inline constexpr size_t kSlotNameLen = 12;
inline constexpr size_t kSlotPad = 14;
inline constexpr size_t kSlotSize = 16;

inline constexpr size_t kMaxWildcardKeyLen = kMaxHostnameLen - 2;  // "x." + key fits 253

template <class T>
inline T load(const std::byte* p) noexcept {
  static_assert(std::is_unsigned_v<T>);
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
    if constexpr (sizeof(T) == 2) v = __builtin_bswap16(v);
    if constexpr (sizeof(T) == 4) v = __builtin_bswap32(v);
    if constexpr (sizeof(T) == 8) v = __builtin_bswap64(v);
  }
  return v;
}

template <class T>
inline void store(std::byte* p, T v) noexcept {
  static_assert(std::is_unsigned_v<T>);
  if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
    if constexpr (sizeof(T) == 2) v = __builtin_bswap16(v);
    if constexpr (sizeof(T) == 4) v = __builtin_bswap32(v);
    if constexpr (sizeof(T) == 8) v = __builtin_bswap64(v);
  }
  std::memcpy(p, &v, sizeof v);
}

constexpr uint32_t hash_tag(uint64_t h) noexcept {
  return static_cast<uint32_t>(h >> 32);
}

}  // namespace layout

// --- Errors ----------------------------------------------------------------

enum class FormatErrorKind : uint8_t {
  kTooSmall,            // shorter than a header
  kBadMagic,            // not a route table
  kBadVersion,          // a layout this reader does not know
  kBadHeaderSize,       // header_size is not the version's
  kSizeMismatch,        // header total_size != size of the block
  kMisaligned,          // a section offset not a multiple of 8
  kSectionOutOfBounds,  // a section runs past the end of the block
  kSectionOverlap,      // sections out of order or overlapping
  kBadSlotCount,        // slot count zero or not a power of two
  kOverloaded,          // more names than half the slots
  kCountMismatch,       // occupied slots != the header's name count
  kBadEmptySlot,        // an empty slot (len 0) with non-zero fields
  kBadPadding,          // non-zero padding in a slot or between sections
  kNameOutOfBounds,     // name offset + length past the string pool
  kBadName,             // a key that is not a normalized host name
  kHashMismatch,        // a slot's tag is not its key's hash
  kUnreachable,         // an empty slot between a key's home slot and its slot
  kRouteOutOfRange,     // a slot's route index >= route_count
  kBadDefault,          // default route neither kNoIndex nor < route_count
  kBadAction,           // action not terminate / passthrough / reject
  kBadFlags,            // unknown route flag bits
  kBadRouteName,        // a route name that is not printable ASCII
};

constexpr std::string_view to_string(FormatErrorKind k) noexcept {
  switch (k) {
    case FormatErrorKind::kTooSmall:
      return "block smaller than the header";
    case FormatErrorKind::kBadMagic:
      return "bad magic (not a route table)";
    case FormatErrorKind::kBadVersion:
      return "unsupported layout version";
    case FormatErrorKind::kBadHeaderSize:
      return "bad header size";
    case FormatErrorKind::kSizeMismatch:
      return "total size does not match the block size";
    case FormatErrorKind::kMisaligned:
      return "section offset not 8-byte aligned";
    case FormatErrorKind::kSectionOutOfBounds:
      return "section out of bounds";
    case FormatErrorKind::kSectionOverlap:
      return "sections overlap or are out of order";
    case FormatErrorKind::kBadSlotCount:
      return "slot count not a power of two";
    case FormatErrorKind::kOverloaded:
      return "hash table more than half full";
    case FormatErrorKind::kCountMismatch:
      return "occupied slots do not match the name count";
    case FormatErrorKind::kBadEmptySlot:
      return "empty slot with non-zero fields";
    case FormatErrorKind::kBadPadding:
      return "non-zero padding";
    case FormatErrorKind::kNameOutOfBounds:
      return "name outside the string pool";
    case FormatErrorKind::kBadName:
      return "key is not a normalized host name";
    case FormatErrorKind::kHashMismatch:
      return "slot tag does not match its key's hash";
    case FormatErrorKind::kUnreachable:
      return "key not reachable from its home slot";
    case FormatErrorKind::kRouteOutOfRange:
      return "route index out of range";
    case FormatErrorKind::kBadDefault:
      return "default route out of range";
    case FormatErrorKind::kBadAction:
      return "unknown route action";
    case FormatErrorKind::kBadFlags:
      return "unknown route flags";
    case FormatErrorKind::kBadRouteName:
      return "route name not printable ASCII";
  }
  return "malformed route table";
}

// What open() refused, and where: `section` names the part of the block
// ("header.total_size", "exact", "wildcard", "routes", ...), `index` the
// route or slot number within it, `value` the offending value.
struct FormatError {
  FormatErrorKind kind = FormatErrorKind::kTooSmall;
  std::string_view section;
  uint64_t index = 0;
  uint64_t value = 0;

  std::string message() const {
    std::string s = "route table: ";
    s += to_string(kind);
    s += " (";
    s += section;
    s += " #" + std::to_string(index) + ", value " + std::to_string(value) + ")";
    return s;
  }
};

// --- Reader ----------------------------------------------------------------

namespace detail {

inline uint64_t read_u64(const char* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint32_t read_u32(const char* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// memcmp(a, b, n) == 0 for the short strings of host names, inline and with
// few branches (the last word of each may overlap the one before).
inline bool same_bytes(const char* a, const char* b, size_t n) noexcept {
  if (n >= 8) {
    uint64_t diff = read_u64(a + n - 8) ^ read_u64(b + n - 8);
    for (size_t i = 0; i + 8 < n; i += 8) diff |= read_u64(a + i) ^ read_u64(b + i);
    return diff == 0;
  }
  if (n >= 4) {
    return ((read_u32(a) ^ read_u32(b)) | (read_u32(a + n - 4) ^ read_u32(b + n - 4))) == 0;
  }
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

}  // namespace detail

class RouteTableView {
 public:
  // An empty table: every lookup answers kNone.
  constexpr RouteTableView() noexcept = default;

  // Validates `block` completely; the view then points into it (the block
  // must outlive the view and must not change).
  [[nodiscard]] static Result<RouteTableView, FormatError> open(
      std::span<const std::byte> block) noexcept;

  // `name` must be normalized (lodestone/hostname.h); empty means "no SNI".
  // Exact, then wildcard, then the default route. No allocation.
  [[nodiscard]] Match find(std::string_view name) const noexcept {
    if (name.empty()) return find_default();
    if (exact_names_ != 0) {
      const Match m = probe(exact_, exact_mask_, name, MatchKind::kExact);
      if (m.found()) return m;
    }
    if (wild_names_ != 0) {
      if (const std::string_view rest = wildcard_key(name); !rest.empty()) {
        const Match m = probe(wild_, wild_mask_, rest, MatchKind::kWildcard);
        if (m.found()) return m;
      }
    }
    return find_default();
  }

  // find() for names[i] into out[i], for i < min(names.size(), out.size()),
  // kBurst names at a time with their memory accesses overlapped (hash and
  // prefetch every home slot, then every candidate key, then compare). For a
  // table larger than the CPU caches this costs a fraction of find() per
  // name; use it where names come in bursts (an rx burst of hellos).
  static constexpr size_t kBurst = 32;
  void find_burst(std::span<const std::string_view> names, std::span<Match> out) const noexcept {
    const size_t n = std::min(names.size(), out.size());
    for (size_t at = 0; at < n; at += kBurst) {
      find_group(names.data() + at, out.data() + at, std::min(kBurst, n - at));
    }
  }

  [[nodiscard]] Match find_default() const noexcept {
    if (default_route_ == kNoIndex) return Match{};
    return Match{default_route_, MatchKind::kDefault, {}};
  }

  size_t route_count() const noexcept { return route_count_; }

  // `i` < route_count(); an index from a Match always is.
  [[nodiscard]] RouteView route(uint32_t i) const noexcept {
    assert(i < route_count_);
    if (i >= route_count_) return RouteView{};
    const std::byte* r = routes_ + size_t{i} * layout::kRouteSize;
    RouteView v;
    v.name = std::string_view(pool_ + layout::load<uint32_t>(r + layout::kRouteNameOffset),
                              layout::load<uint16_t>(r + layout::kRouteNameLen));
    v.action = static_cast<Action>(layout::load<uint8_t>(r + layout::kRouteAction));
    v.flags = layout::load<uint8_t>(r + layout::kRouteFlags);
    v.pool = layout::load<uint32_t>(r + layout::kRoutePool);
    v.cert = layout::load<uint32_t>(r + layout::kRouteCert);
    return v;
  }

  uint32_t default_route() const noexcept { return default_route_; }
  size_t exact_count() const noexcept { return exact_names_; }
  size_t wildcard_count() const noexcept { return wild_names_; }
  size_t name_count() const noexcept { return size_t{exact_names_} + wild_names_; }
  uint64_t hash_seed() const noexcept { return seed_; }
  std::span<const std::byte> bytes() const noexcept { return {base_, size_}; }

  // Calls fn(MatchKind kind, std::string_view key, uint32_t route) for every
  // stored key (kExact or kWildcard; a wildcard's key is its suffix), in slot
  // order. For dumps and the explain command, not for the data path.
  template <class Fn>
  void for_each_name(Fn&& fn) const {
    visit_slots(exact_, exact_mask_, exact_names_, MatchKind::kExact, fn);
    visit_slots(wild_, wild_mask_, wild_names_, MatchKind::kWildcard, fn);
  }

 private:
  Match probe(const std::byte* table, uint32_t mask, std::string_view key,
              MatchKind kind) const noexcept {
    return probe_hashed(table, mask, key, name_hash(key, seed_), kind);
  }

  static const std::byte* slot_at(const std::byte* table, uint32_t mask, uint64_t h) noexcept {
    return table + size_t{static_cast<uint32_t>(h) & mask} * layout::kSlotSize;
  }

  // The key a wildcard lookup of `name` probes with ("rest" of "first.rest"),
  // or empty when there is none.
  static std::string_view wildcard_key(std::string_view name) noexcept {
    const size_t dot = name.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 >= name.size()) return {};
    return name.substr(dot + 1);
  }

  // With the home slot's cache line of `key` fetched: walks the probe
  // sequence through that line and prefetches what the probe needs next,
  // the stored name of a candidate or the next line of slots.
  void prefetch_candidate(const std::byte* table, uint32_t mask, std::string_view key,
                          uint64_t h) const noexcept {
    const uint32_t tag = layout::hash_tag(h);
    uint32_t i = static_cast<uint32_t>(h) & mask;
    for (;;) {
      const std::byte* s = table + size_t{i} * layout::kSlotSize;
      const uint16_t len = layout::load<uint16_t>(s + layout::kSlotNameLen);
      if (len == 0) return;  // answered from this line: not in the table
      if (len == key.size() && layout::load<uint32_t>(s + layout::kSlotTag) == tag) {
        __builtin_prefetch(pool_ + layout::load<uint32_t>(s + layout::kSlotNameOffset));
        return;
      }
      i = (i + 1) & mask;
      const std::byte* next = table + size_t{i} * layout::kSlotSize;
      if (i == 0 || reinterpret_cast<uintptr_t>(next) % 64 == 0) {
        __builtin_prefetch(next);
        return;
      }
    }
  }

  // find() for n <= kBurst names, in stages so that the cache misses of
  // different names overlap: hash and fetch every home slot, then every
  // candidate key, then compare; the same again in the wildcard table for
  // the names that were not exact hits.
  void find_group(const std::string_view* names, Match* out, size_t n) const noexcept {
    uint64_t h[kBurst];
    std::string_view rest[kBurst];
    if (exact_names_ != 0) {
      for (size_t k = 0; k < n; ++k) {
        h[k] = name_hash(names[k], seed_);
        __builtin_prefetch(slot_at(exact_, exact_mask_, h[k]));
      }
      for (size_t k = 0; k < n; ++k) prefetch_candidate(exact_, exact_mask_, names[k], h[k]);
    }
    bool wildcards = false;
    for (size_t k = 0; k < n; ++k) {
      out[k] = Match{};
      rest[k] = {};
      if (names[k].empty()) continue;
      if (exact_names_ != 0) {
        out[k] = probe_hashed(exact_, exact_mask_, names[k], h[k], MatchKind::kExact);
        if (out[k].found()) continue;
      }
      if (wild_names_ == 0) continue;
      rest[k] = wildcard_key(names[k]);
      if (rest[k].empty()) continue;
      h[k] = name_hash(rest[k], seed_);
      __builtin_prefetch(slot_at(wild_, wild_mask_, h[k]));
      wildcards = true;
    }
    if (wildcards) {
      for (size_t k = 0; k < n; ++k) {
        if (!rest[k].empty()) prefetch_candidate(wild_, wild_mask_, rest[k], h[k]);
      }
    }
    for (size_t k = 0; k < n; ++k) {
      if (out[k].found()) continue;
      if (!rest[k].empty()) {
        out[k] = probe_hashed(wild_, wild_mask_, rest[k], h[k], MatchKind::kWildcard);
        if (out[k].found()) continue;
      }
      out[k] = find_default();
    }
  }

  Match probe_hashed(const std::byte* table, uint32_t mask, std::string_view key, uint64_t h,
                     MatchKind kind) const noexcept {
    const uint32_t tag = layout::hash_tag(h);
    uint32_t i = static_cast<uint32_t>(h) & mask;
    // open() guaranteed an empty slot, so the loop ends.
    for (;;) {
      const std::byte* s = table + size_t{i} * layout::kSlotSize;
      const uint16_t len = layout::load<uint16_t>(s + layout::kSlotNameLen);
      if (len == 0) return Match{};
      if (len == key.size() && layout::load<uint32_t>(s + layout::kSlotTag) == tag) {
        const char* stored = pool_ + layout::load<uint32_t>(s + layout::kSlotNameOffset);
        if (detail::same_bytes(stored, key.data(), len)) {
          return Match{layout::load<uint32_t>(s + layout::kSlotRoute), kind,
                       std::string_view(stored, len)};
        }
      }
      i = (i + 1) & mask;
    }
  }

  template <class Fn>
  void visit_slots(const std::byte* table, uint32_t mask, uint32_t names, MatchKind kind,
                   Fn& fn) const {
    if (names == 0) return;
    for (uint64_t i = 0; i <= mask; ++i) {
      const std::byte* s = table + i * layout::kSlotSize;
      const uint16_t len = layout::load<uint16_t>(s + layout::kSlotNameLen);
      if (len == 0) continue;
      fn(kind, std::string_view(pool_ + layout::load<uint32_t>(s + layout::kSlotNameOffset), len),
         layout::load<uint32_t>(s + layout::kSlotRoute));
    }
  }

  static Result<void, FormatError> check_slots(const std::byte* table, uint32_t slots,
                                               uint32_t names, bool wildcard, uint64_t seed,
                                               const char* pool, uint64_t pool_size,
                                               uint32_t route_count) noexcept;

  const std::byte* base_ = nullptr;
  const std::byte* routes_ = nullptr;
  const std::byte* exact_ = nullptr;
  const std::byte* wild_ = nullptr;
  const char* pool_ = nullptr;
  uint64_t size_ = 0;
  uint64_t seed_ = 0;
  uint32_t route_count_ = 0;
  uint32_t default_route_ = kNoIndex;
  uint32_t exact_mask_ = 0;
  uint32_t wild_mask_ = 0;
  uint32_t exact_names_ = 0;
  uint32_t wild_names_ = 0;
};

// --- Validation (once per block) ---------------------------------------------

namespace detail {

inline bool all_zero(const std::byte* p, uint64_t n) noexcept {
  for (uint64_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

// True when `key` is exactly what normalize_hostname makes of it, a name and
// not an IP literal.
inline bool is_normalized_key(std::string_view key, size_t max_len) noexcept {
  if (key.empty() || key.size() > max_len) return false;
  char buf[kHostnameBufSize];
  const auto n = normalize_hostname(key, buf);
  return n && n->kind == HostnameKind::kName && n->len == key.size() &&
         std::memcmp(buf, key.data(), key.size()) == 0;
}

}  // namespace detail

inline Result<void, FormatError> RouteTableView::check_slots(const std::byte* table, uint32_t slots,
                                                             uint32_t names, bool wildcard,
                                                             uint64_t seed, const char* pool,
                                                             uint64_t pool_size,
                                                             uint32_t route_count) noexcept {
  using namespace layout;
  const std::string_view where = wildcard ? "wildcard" : "exact";
  const uint32_t mask = slots - 1;
  const size_t max_key = wildcard ? kMaxWildcardKeyLen : kMaxHostnameLen;
  // Start the scan just after an empty slot, so that every run of occupied
  // slots is seen from its start: a key is reachable when its home slot lies
  // in the run before it.
  uint32_t start = 0;
  while (start < slots && load<uint16_t>(table + size_t{start} * kSlotSize + kSlotNameLen) != 0) {
    ++start;
  }
  if (start == slots) return unexpected(FormatError{FormatErrorKind::kOverloaded, where, 0, slots});
  uint32_t occupied = 0;
  uint32_t run_start = 0;
  bool in_run = false;
  for (uint64_t step = 1; step <= slots; ++step) {
    const uint32_t i = static_cast<uint32_t>((start + step) & mask);
    const std::byte* s = table + size_t{i} * kSlotSize;
    const uint32_t tag = load<uint32_t>(s + kSlotTag);
    const uint32_t off = load<uint32_t>(s + kSlotNameOffset);
    const uint32_t route = load<uint32_t>(s + kSlotRoute);
    const uint16_t len = load<uint16_t>(s + kSlotNameLen);
    const uint16_t pad = load<uint16_t>(s + kSlotPad);
    if (len == 0) {
      if (tag != 0 || off != 0 || route != 0 || pad != 0) {
        return unexpected(FormatError{FormatErrorKind::kBadEmptySlot, where, i, 0});
      }
      in_run = false;
      continue;
    }
    if (!in_run) {
      in_run = true;
      run_start = i;
    }
    ++occupied;
    if (pad != 0) return unexpected(FormatError{FormatErrorKind::kBadPadding, where, i, pad});
    if (uint64_t{off} + len > pool_size) {
      return unexpected(FormatError{FormatErrorKind::kNameOutOfBounds, where, i, off});
    }
    if (route >= route_count) {
      return unexpected(FormatError{FormatErrorKind::kRouteOutOfRange, where, i, route});
    }
    const std::string_view key(pool + off, len);
    if (!detail::is_normalized_key(key, max_key)) {
      return unexpected(FormatError{FormatErrorKind::kBadName, where, i, len});
    }
    const uint64_t h = name_hash(key, seed);
    if (hash_tag(h) != tag) {
      return unexpected(FormatError{FormatErrorKind::kHashMismatch, where, i, tag});
    }
    const uint32_t home = static_cast<uint32_t>(h) & mask;
    if (((i - home) & mask) > ((i - run_start) & mask)) {
      return unexpected(FormatError{FormatErrorKind::kUnreachable, where, i, home});
    }
  }
  if (occupied != names) {
    return unexpected(FormatError{FormatErrorKind::kCountMismatch, where, 0, occupied});
  }
  return {};
}

inline Result<RouteTableView, FormatError> RouteTableView::open(
    std::span<const std::byte> block) noexcept {
  using namespace layout;
  using K = FormatErrorKind;
  auto fail = [](K kind, std::string_view section, uint64_t index, uint64_t value) {
    return unexpected(FormatError{kind, section, index, value});
  };
  const std::byte* b = block.data();
  const uint64_t size = block.size();
  if (b == nullptr || size < kHeaderSize) return fail(K::kTooSmall, "header", 0, size);
  if (load<uint64_t>(b + kHdrMagic) != kMagic) {
    return fail(K::kBadMagic, "header.magic", 0, load<uint64_t>(b + kHdrMagic));
  }
  if (const auto v = load<uint32_t>(b + kHdrVersion); v != kVersion) {
    return fail(K::kBadVersion, "header.version", 0, v);
  }
  if (const auto v = load<uint32_t>(b + kHdrHeaderSize); v != kHeaderSize) {
    return fail(K::kBadHeaderSize, "header.header_size", 0, v);
  }
  if (const auto v = load<uint64_t>(b + kHdrTotalSize); v != size) {
    return fail(K::kSizeMismatch, "header.total_size", 0, v);
  }
  if (size % kAlign != 0) return fail(K::kMisaligned, "header.total_size", 0, size);

  RouteTableView t;
  t.base_ = b;
  t.size_ = size;
  t.seed_ = load<uint64_t>(b + kHdrHashSeed);
  t.route_count_ = load<uint32_t>(b + kHdrRouteCount);
  t.default_route_ = load<uint32_t>(b + kHdrDefaultRoute);
  const uint32_t exact_slots = load<uint32_t>(b + kHdrExactSlots);
  const uint32_t wild_slots = load<uint32_t>(b + kHdrWildSlots);
  t.exact_names_ = load<uint32_t>(b + kHdrExactNames);
  t.wild_names_ = load<uint32_t>(b + kHdrWildNames);

  if (t.route_count_ == kNoIndex)
    return fail(K::kRouteOutOfRange, "header.route_count", 0, kNoIndex);
  for (const auto& [slots, field] : {std::pair{exact_slots, "header.exact_slot_count"},
                                     std::pair{wild_slots, "header.wild_slot_count"}}) {
    if (!std::has_single_bit(slots)) return fail(K::kBadSlotCount, field, 0, slots);
  }
  if (uint64_t{t.exact_names_} * 2 > exact_slots) {
    return fail(K::kOverloaded, "header.exact_name_count", 0, t.exact_names_);
  }
  if (uint64_t{t.wild_names_} * 2 > wild_slots) {
    return fail(K::kOverloaded, "header.wild_name_count", 0, t.wild_names_);
  }

  // Sections: in order, aligned, in bounds, zero bytes between them.
  struct Section {
    size_t field;
    uint64_t size;
    const char* name;
  };
  const Section sections[] = {
      {kHdrRoutesOffset, uint64_t{t.route_count_} * kRouteSize, "header.routes_offset"},
      {kHdrExactOffset, uint64_t{exact_slots} * kSlotSize, "header.exact_offset"},
      {kHdrWildOffset, uint64_t{wild_slots} * kSlotSize, "header.wild_offset"},
      {kHdrPoolOffset, load<uint64_t>(b + kHdrPoolSize), "header.pool_offset"},
  };
  uint64_t offsets[4];
  uint64_t cursor = kHeaderSize;
  for (size_t k = 0; k < 4; ++k) {
    const uint64_t off = load<uint64_t>(b + sections[k].field);
    if (off % kAlign != 0) return fail(K::kMisaligned, sections[k].name, k, off);
    if (off > size || sections[k].size > size - off) {
      return fail(K::kSectionOutOfBounds, sections[k].name, k, off);
    }
    if (off < cursor) return fail(K::kSectionOverlap, sections[k].name, k, off);
    if (!detail::all_zero(b + cursor, off - cursor)) {
      return fail(K::kBadPadding, sections[k].name, k, off);
    }
    offsets[k] = off;
    cursor = off + sections[k].size;
  }
  if (!detail::all_zero(b + cursor, size - cursor)) {
    return fail(K::kBadPadding, "tail", 0, cursor);
  }
  t.routes_ = b + offsets[0];
  t.exact_ = b + offsets[1];
  t.wild_ = b + offsets[2];
  t.pool_ = reinterpret_cast<const char*>(b + offsets[3]);
  const uint64_t pool_size = sections[3].size;
  t.exact_mask_ = exact_slots - 1;
  t.wild_mask_ = wild_slots - 1;

  if (t.default_route_ != kNoIndex && t.default_route_ >= t.route_count_) {
    return fail(K::kBadDefault, "header.default_route", 0, t.default_route_);
  }
  for (uint32_t i = 0; i < t.route_count_; ++i) {
    const std::byte* r = t.routes_ + size_t{i} * kRouteSize;
    const uint32_t off = load<uint32_t>(r + kRouteNameOffset);
    const uint16_t len = load<uint16_t>(r + kRouteNameLen);
    const uint8_t action = load<uint8_t>(r + kRouteAction);
    const uint8_t flags = load<uint8_t>(r + kRouteFlags);
    if (uint64_t{off} + len > pool_size) return fail(K::kNameOutOfBounds, "routes", i, off);
    if (action > static_cast<uint8_t>(Action::kReject))
      return fail(K::kBadAction, "routes", i, action);
    if ((flags & ~kKnownRouteFlags) != 0) return fail(K::kBadFlags, "routes", i, flags);
    for (uint16_t c = 0; c < len; ++c) {
      const auto ch = static_cast<unsigned char>(t.pool_[off + c]);
      if (ch < 0x20 || ch > 0x7e) return fail(K::kBadRouteName, "routes", i, ch);
    }
  }

  if (auto r = check_slots(t.exact_, exact_slots, t.exact_names_, false, t.seed_, t.pool_,
                           pool_size, t.route_count_);
      !r) {
    return unexpected(r.error());
  }
  if (auto r = check_slots(t.wild_, wild_slots, t.wild_names_, true, t.seed_, t.pool_, pool_size,
                           t.route_count_);
      !r) {
    return unexpected(r.error());
  }
  return t;
}

}  // namespace lode::route
