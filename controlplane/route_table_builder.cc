#include "controlplane/route_table_builder.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <random>

#include "lodestone/hostname.h"
#include "lodestone/name_hash.h"

namespace lode::route {

namespace {

constexpr uint64_t kMaxPool = 0xFFFFFFFFull;  // name offsets are u32
constexpr uint64_t kCacheLine = 64;
constexpr size_t kMaxNamesPerTable = size_t{1} << 30;  // 2 * names slots must fit a u32

constexpr uint64_t align_up(uint64_t v, uint64_t a) noexcept {
  return (v + a - 1) & ~(a - 1);
}

std::string quoted(std::string_view s) {
  std::string q = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      static constexpr char kHex[] = "0123456789abcdef";
      q += "\\x";
      q += kHex[u >> 4];
      q += kHex[u & 15];
    } else {
      q += c;
    }
  }
  q += '"';
  return q;
}

unexpected<BuildError> error(BuildErrorKind kind, std::string message) {
  return unexpected(BuildError{kind, std::move(message)});
}

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

}  // namespace

void FlatTable::Free::operator()(std::byte* p) const noexcept {
  ::operator delete[](p, std::align_val_t{kBlockAlign});
}

RouteTableBuilder::RouteTableBuilder() : RouteTableBuilder(random_seed()) {}

RouteTableBuilder::RouteTableBuilder(uint64_t hash_seed) : seed_(hash_seed), index_(16, kNoIndex) {}

void RouteTableBuilder::reserve(size_t names, size_t key_bytes) {
  entries_.reserve(names);
  arena_.reserve(key_bytes);
  const size_t want = std::bit_ceil(std::max<size_t>(16, names * 2));
  if (want > index_.size()) {
    // Re-place the existing entries in the larger index.
    while (index_.size() < want) grow_index();
  }
}

uint32_t RouteTableBuilder::add_route(RouteSpec spec) {
  routes_.push_back(std::move(spec));
  return static_cast<uint32_t>(routes_.size() - 1);
}

std::string RouteTableBuilder::describe_route(uint32_t route) const {
  return "route #" + std::to_string(route) + " " + quoted(routes_[route].name);
}

uint32_t RouteTableBuilder::find_entry(std::string_view key, bool wildcard, uint64_t hash,
                                       size_t& slot) const noexcept {
  const size_t mask = index_.size() - 1;
  for (size_t i = static_cast<size_t>(hash) & mask;; i = (i + 1) & mask) {
    const uint32_t at = index_[i];
    if (at == kNoIndex) {
      slot = i;
      return kNoIndex;
    }
    const Entry& e = entries_[at];
    if (e.hash == hash && e.wildcard == wildcard && e.len == key.size() &&
        std::memcmp(arena_.data() + e.offset, key.data(), key.size()) == 0) {
      slot = i;
      return at;
    }
  }
}

void RouteTableBuilder::grow_index() {
  std::vector<uint32_t> bigger(index_.size() * 2, kNoIndex);
  const size_t mask = bigger.size() - 1;
  for (uint32_t at : index_) {
    if (at == kNoIndex) continue;
    size_t i = static_cast<size_t>(entries_[at].hash) & mask;
    while (bigger[i] != kNoIndex) i = (i + 1) & mask;
    bigger[i] = at;
  }
  index_.swap(bigger);
}

Result<void, BuildError> RouteTableBuilder::add_name(std::string_view pattern, uint32_t route) {
  if (route >= routes_.size()) {
    return error(BuildErrorKind::kNoSuchRoute, "name " + quoted(pattern) + ": no route #" +
                                                   std::to_string(route) + " (" +
                                                   std::to_string(routes_.size()) + " routes)");
  }
  auto bad = [&](std::string_view why) {
    return error(BuildErrorKind::kBadPattern, "bad name pattern " + quoted(pattern) + " for " +
                                                  describe_route(route) + ": " + std::string(why));
  };

  bool wildcard = false;
  std::string_view body = pattern;
  if (body.size() >= 2 && body[0] == '*' && body[1] == '.') {
    wildcard = true;
    body.remove_prefix(2);
    if (body.empty() || body == ".")
      return bad("a wildcard needs a suffix, as in \"*.example.com\"");
  }
  if (body.find('*') != std::string_view::npos) {
    return bad(
        "'*' is only allowed as the whole leftmost label of a wildcard, as in \"*.example.com\"");
  }
  char buf[kHostnameBufSize];
  const auto norm = normalize_hostname(body, buf);
  if (!norm) return bad(to_string(norm.error()));
  if (norm->kind != HostnameKind::kName) {
    return bad(wildcard ? "the suffix of a wildcard cannot be an IP address"
                        : "an IP address is not a host name: clients never send one as SNI "
                          "(RFC 6066); use the default route");
  }
  if (wildcard && norm->len > layout::kMaxWildcardKeyLen) {
    return bad("too long: no name of at most 253 bytes can match it");
  }
  const std::string_view key(buf, norm->len);

  if (entries_.size() >= kMaxNamesPerTable) {
    return error(BuildErrorKind::kTooLarge,
                 "too many names in one table (at most " + std::to_string(kMaxNamesPerTable) + ")");
  }
  if (arena_.size() + key.size() > kMaxPool) {
    return error(BuildErrorKind::kTooLarge, "names exceed 4 GiB in one table");
  }
  if ((entries_.size() + 1) * 2 > index_.size()) grow_index();

  const uint64_t hash = name_hash(key, seed_);
  size_t slot = 0;
  if (const uint32_t at = find_entry(key, wildcard, hash, slot); at != kNoIndex) {
    const Entry& first = entries_[at];
    const std::string shown = wildcard ? "*." + std::string(key) : std::string(key);
    std::string msg = "duplicate name " + quoted(shown);
    if (shown != pattern) msg += " (given as " + quoted(pattern) + ")";
    msg += ": already added for " + describe_route(first.route) + ", again for " +
           describe_route(route);
    if (first.route == route) msg += " (the same route)";
    return error(BuildErrorKind::kDuplicate, std::move(msg));
  }

  const auto offset = static_cast<uint32_t>(arena_.size());
  arena_.insert(arena_.end(), key.begin(), key.end());
  entries_.push_back(Entry{hash, offset, route, static_cast<uint16_t>(key.size()), wildcard});
  index_[slot] = static_cast<uint32_t>(entries_.size() - 1);
  return {};
}

Result<void, BuildError> RouteTableBuilder::set_default(uint32_t route) {
  if (route >= routes_.size()) {
    return error(BuildErrorKind::kNoSuchRoute, "default route: no route #" + std::to_string(route) +
                                                   " (" + std::to_string(routes_.size()) +
                                                   " routes)");
  }
  default_route_ = route;
  return {};
}

Result<FlatTable, BuildError> RouteTableBuilder::build() const {
  using namespace layout;
  if (routes_.size() >= kNoIndex) {
    return error(BuildErrorKind::kTooLarge, "too many routes in one table");
  }
  uint64_t route_name_bytes = 0;
  for (uint32_t i = 0; i < routes_.size(); ++i) {
    const RouteSpec& r = routes_[i];
    if (r.action != Action::kTerminate && r.action != Action::kPassthrough &&
        r.action != Action::kReject) {
      return error(BuildErrorKind::kBadRoute, describe_route(i) + ": unknown action " +
                                                  std::to_string(static_cast<unsigned>(r.action)));
    }
    if ((r.flags & ~kKnownRouteFlags) != 0) {
      return error(BuildErrorKind::kBadRoute, describe_route(i) + ": unknown flags " +
                                                  std::to_string(static_cast<unsigned>(r.flags)));
    }
    if (r.name.size() > 0xFFFF) {
      return error(BuildErrorKind::kBadRoute, describe_route(i) + ": name longer than 65535 bytes");
    }
    for (char c : r.name) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
        return error(BuildErrorKind::kBadRoute,
                     describe_route(i) + ": a route name must be printable ASCII");
      }
    }
    route_name_bytes += r.name.size();
  }
  if (default_route_ != kNoIndex && default_route_ >= routes_.size()) {
    return error(BuildErrorKind::kNoSuchRoute,
                 "default route #" + std::to_string(default_route_) + " does not exist");
  }
  const uint64_t pool_size = route_name_bytes + arena_.size();
  if (pool_size > kMaxPool) {
    return error(BuildErrorKind::kTooLarge, "names exceed 4 GiB in one table");
  }

  uint32_t exact_names = 0;
  uint32_t wild_names = 0;
  for (const Entry& e : entries_) (e.wildcard ? wild_names : exact_names)++;
  const auto exact_slots =
      static_cast<uint32_t>(std::bit_ceil(std::max<uint64_t>(1, uint64_t{exact_names} * 2)));
  const auto wild_slots =
      static_cast<uint32_t>(std::bit_ceil(std::max<uint64_t>(1, uint64_t{wild_names} * 2)));

  // The format asks for 8-byte alignment; the slot tables start on a cache
  // line (of a 64-byte aligned block) so that no slot straddles two.
  const uint64_t routes_off = kHeaderSize;
  const uint64_t exact_off = align_up(routes_off + routes_.size() * kRouteSize, kCacheLine);
  const uint64_t wild_off = align_up(exact_off + uint64_t{exact_slots} * kSlotSize, kCacheLine);
  const uint64_t pool_off = align_up(wild_off + uint64_t{wild_slots} * kSlotSize, kAlign);
  const uint64_t total = align_up(pool_off + pool_size, kAlign);

  FlatTable t;
  auto* mem = static_cast<std::byte*>(
      ::operator new[](total, std::align_val_t{FlatTable::kBlockAlign}, std::nothrow));
  if (mem == nullptr) {
    return error(BuildErrorKind::kTooLarge,
                 "out of memory for a route table of " + std::to_string(total) + " bytes");
  }
  t.data_.reset(mem);
  t.size_ = total;
  std::memset(mem, 0, total);

  store<uint64_t>(mem + kHdrMagic, kMagic);
  store<uint32_t>(mem + kHdrVersion, kVersion);
  store<uint32_t>(mem + kHdrHeaderSize, static_cast<uint32_t>(kHeaderSize));
  store<uint64_t>(mem + kHdrTotalSize, total);
  store<uint64_t>(mem + kHdrHashSeed, seed_);
  store<uint32_t>(mem + kHdrRouteCount, static_cast<uint32_t>(routes_.size()));
  store<uint32_t>(mem + kHdrDefaultRoute, default_route_);
  store<uint32_t>(mem + kHdrExactSlots, exact_slots);
  store<uint32_t>(mem + kHdrExactNames, exact_names);
  store<uint32_t>(mem + kHdrWildSlots, wild_slots);
  store<uint32_t>(mem + kHdrWildNames, wild_names);
  store<uint64_t>(mem + kHdrRoutesOffset, routes_off);
  store<uint64_t>(mem + kHdrExactOffset, exact_off);
  store<uint64_t>(mem + kHdrWildOffset, wild_off);
  store<uint64_t>(mem + kHdrPoolOffset, pool_off);
  store<uint64_t>(mem + kHdrPoolSize, pool_size);

  // Pool: the route names, then the keys.
  std::byte* pool = mem + pool_off;
  uint32_t name_at = 0;
  for (uint32_t i = 0; i < routes_.size(); ++i) {
    const RouteSpec& r = routes_[i];
    std::byte* rec = mem + routes_off + uint64_t{i} * kRouteSize;
    store<uint32_t>(rec + kRouteNameOffset, name_at);
    store<uint16_t>(rec + kRouteNameLen, static_cast<uint16_t>(r.name.size()));
    store<uint8_t>(rec + kRouteAction, static_cast<uint8_t>(r.action));
    store<uint8_t>(rec + kRouteFlags, r.flags);
    store<uint32_t>(rec + kRoutePool, r.pool);
    store<uint32_t>(rec + kRouteCert, r.cert);
    if (!r.name.empty()) std::memcpy(pool + name_at, r.name.data(), r.name.size());
    name_at += static_cast<uint32_t>(r.name.size());
  }

  // Slots, in order of add_name: linear probing from each key's home slot.
  // The name offset holds the entry's index until the keys are placed.
  for (uint32_t at = 0; at < entries_.size(); ++at) {
    const Entry& e = entries_[at];
    std::byte* table = mem + (e.wildcard ? wild_off : exact_off);
    const uint32_t mask = (e.wildcard ? wild_slots : exact_slots) - 1;
    uint32_t i = static_cast<uint32_t>(e.hash) & mask;
    while (load<uint16_t>(table + uint64_t{i} * kSlotSize + kSlotNameLen) != 0) i = (i + 1) & mask;
    std::byte* s = table + uint64_t{i} * kSlotSize;
    store<uint32_t>(s + kSlotTag, hash_tag(e.hash));
    store<uint32_t>(s + kSlotNameOffset, at);
    store<uint32_t>(s + kSlotRoute, e.route);
    store<uint16_t>(s + kSlotNameLen, e.len);
  }
  // Keys go into the pool in slot order, so that a scan of the slots (open()
  // validating the block) reads the pool front to back.
  for (const auto& [off, slots] :
       {std::pair{exact_off, exact_slots}, std::pair{wild_off, wild_slots}}) {
    for (uint64_t i = 0; i < slots; ++i) {
      std::byte* s = mem + off + i * kSlotSize;
      if (load<uint16_t>(s + kSlotNameLen) == 0) continue;
      const Entry& e = entries_[load<uint32_t>(s + kSlotNameOffset)];
      std::memcpy(pool + name_at, arena_.data() + e.offset, e.len);
      store<uint32_t>(s + kSlotNameOffset, name_at);
      name_at += e.len;
    }
  }
  return t;
}

}  // namespace lode::route
