// Builds the flat SNI route table of one listener (format and reader:
// lodestone/route_table.h). The control plane feeds it the routes and names of
// the configuration, then publishes FlatTable::bytes() as-is.
//
// Names are checked as they are added, so the caller can point at the line of
// the configuration that is wrong: a pattern is a host name or "*.suffix"
// (the `*` is the whole leftmost label), normalized like the ClientHello
// parser normalizes SNI; a name given twice (after normalization) is refused.
//
// Built for a million names: the keys live in one arena, the entries in one
// vector and the duplicate index in another; nothing is allocated per name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"
#include "lodestone/route_table.h"

namespace lode::route {

struct RouteSpec {
  std::string name;  // for logs and explain; printable ASCII
  Action action = Action::kReject;
  uint8_t flags = 0;  // kFlagRejectWithReset
  uint32_t pool = kNoIndex;
  uint32_t cert = kNoIndex;
};

enum class BuildErrorKind : uint8_t {
  kBadPattern,   // not a host name or a "*.suffix" wildcard
  kDuplicate,    // the same name (after normalization) twice
  kNoSuchRoute,  // a route index that add_route did not return
  kBadRoute,     // a route the format cannot hold (flags, name)
  kTooLarge,     // the table would exceed the format's limits, or memory
};

struct BuildError {
  BuildErrorKind kind = BuildErrorKind::kBadPattern;
  std::string message;  // names the pattern and the routes involved
};

// The built table: one block, 64-byte aligned, immutable.
class FlatTable {
 public:
  FlatTable() = default;
  std::span<const std::byte> bytes() const noexcept { return {data_.get(), size_}; }
  size_t size() const noexcept { return size_; }

 private:
  friend class RouteTableBuilder;
  struct Free {
    void operator()(std::byte* p) const noexcept;
  };
  static constexpr size_t kBlockAlign = 64;
  std::unique_ptr<std::byte[], Free> data_;
  size_t size_ = 0;
};

class RouteTableBuilder {
 public:
  // The hash seed is drawn at random, so that the slot placement of names
  // cannot be predicted by whoever chooses them.
  RouteTableBuilder();
  // A fixed seed: reproducible tables (tests, fuzzing).
  explicit RouteTableBuilder(uint64_t hash_seed);

  // Returns the new route's index (0, 1, 2, ... in order of the calls).
  uint32_t add_route(RouteSpec spec);

  // `pattern`: "host.example.com" or "*.example.com" (matches one more label:
  // "a.example.com", not "a.b.example.com", not "example.com").
  [[nodiscard]] Result<void, BuildError> add_name(std::string_view pattern, uint32_t route);

  // The route of names that match nothing, and of hellos without SNI.
  [[nodiscard]] Result<void, BuildError> set_default(uint32_t route);

  [[nodiscard]] Result<FlatTable, BuildError> build() const;

  size_t route_count() const noexcept { return routes_.size(); }
  size_t name_count() const noexcept { return entries_.size(); }
  uint64_t hash_seed() const noexcept { return seed_; }

  // Reserve room for `names` names of `key_bytes` bytes in total.
  void reserve(size_t names, size_t key_bytes);

 private:
  struct Entry {
    uint64_t hash;    // name_hash(key, seed_)
    uint32_t offset;  // key in arena_
    uint32_t route;
    uint16_t len;
    bool wildcard;
  };

  std::string describe_route(uint32_t route) const;
  // The entry of (key, wildcard) in index_, or kNoIndex; `slot` gets where
  // it is or where it would go.
  uint32_t find_entry(std::string_view key, bool wildcard, uint64_t hash,
                      size_t& slot) const noexcept;
  void grow_index();

  uint64_t seed_;
  std::vector<RouteSpec> routes_;
  std::vector<char> arena_;      // normalized keys, back to back
  std::vector<Entry> entries_;   // in order of add_name
  std::vector<uint32_t> index_;  // open addressing over entries_ (kNoIndex: empty)
  uint32_t default_route_ = kNoIndex;
};

}  // namespace lode::route
