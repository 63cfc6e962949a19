// The snapshot segment: what the control plane publishes to the dataplane.
//
// Transport (include/lodestone/control_channel.h): each publication is one
// memfd, written by the control plane, sealed (F_SEAL_WRITE | F_SEAL_GROW |
// F_SEAL_SHRINK | F_SEAL_SEAL), mode 0600, and passed over a unix socket.
// The dataplane refuses a segment that is not sealed, maps it read-only and
// MADV_DONTDUMP, and validates it once with SegmentView::open(): after the
// seal nobody can change a byte, so one validation holds for the mapping's
// whole life. A segment that fails validation is refused (a log line, a nack)
// and the last good generation stays in service.
//
// A segment is either full (base_generation 0: it holds every record and
// replaces everything) or a delta on top of exactly base_generation (it holds
// only what changed: upserts and removals), so the cost of publishing one
// certificate or one OCSP response is O(that record), whatever else is loaded.
//
// Layout, version 1 (all integers little-endian, as the host writes them;
// both processes are the same build on the same host):
//
//   offset 0                SegmentHeader (64 bytes)
//   header_size             RecordEntry[record_count] (48 bytes each)
//   anywhere after them     keys and data, referenced by offset + length
//   total_size              end (the file may be longer; never shorter)
//
// Records (kind, key, version, data):
//   kConfig       key "config"; data = the configuration text (TOML) the
//                 control plane validated. The dataplane builds listeners'
//                 route tables and pools from it.
//   kCertificate  key "name:NAME" (a [[certificate]]) or "dir:DIR/HOST",
//                 "dir:DIR/*.PARENT" (a file of a certificate directory);
//                 data = CertificateData, then the PEM chain (leaf first),
//                 then the PEM private key. version = a hash of chain and
//                 key: equal content, equal version, so a worker rebuilds an
//                 SSL_CTX only for an entry whose version changed.
//   kStaple       key = the certificate's key; data = StapleData then the
//                 DER OCSP response. Separate from the certificate so that a
//                 refreshed staple never rebuilds an SSL_CTX.
//   kTicketKeys   key "tickets"; data = N x 80-byte session ticket keys
//                 (16 name, 32 HMAC, 32 AES), the first encrypts.
//   kBackendState key "pool:NAME"; data = BackendStateHeader, then per
//                 backend a BackendStateEntry and its id (id_len bytes,
//                 printable, unique in the record): active health, operator
//                 drain and the effective weight. A pool without a record
//                 serves every backend at its configured weight.
//   flag kRemove  the key's record of that kind is gone (data empty).
//
// Every offset and length is checked against total_size (overflow-safe) by
// open(); keys are 1..kMaxKeyLen printable ASCII bytes; a key appears at most
// once per kind; record payloads are checked per kind; a 64-bit checksum over
// everything after the header catches a writer that scribbled.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lodestone/result.h"

namespace lode::snapshot {

inline constexpr std::array<char, 8> kMagic = {'L', 'O', 'D', 'E', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr size_t kMaxKeyLen = 600;
inline constexpr uint32_t kMaxRecords = 4'000'000;
inline constexpr size_t kTicketKeySize = 80;
inline constexpr size_t kMaxTicketKeys = 16;
inline constexpr uint32_t kMaxStateBackends = 64;  // a pool's backends (route::kMaxPoolBackends)
inline constexpr uint32_t kMaxStateWeight = 65535;
inline constexpr std::string_view kPoolKeyPrefix = "pool:";

enum class RecordKind : uint16_t {
  kConfig = 1,
  kCertificate = 2,
  kStaple = 3,
  kTicketKeys = 4,
  kBackendState = 5,
};
inline constexpr uint16_t kRecordRemove = 1;

struct SegmentHeader {
  std::array<char, 8> magic;
  uint32_t layout_version;
  uint32_t header_size;      // sizeof(SegmentHeader) for version 1
  uint64_t generation;       // > base_generation
  uint64_t base_generation;  // 0: full snapshot
  uint64_t total_size;
  uint64_t checksum;         // checksum(bytes [header_size, total_size))
  uint32_t record_count;
  uint32_t reserved;
  uint64_t created_unix_ms;
};
static_assert(sizeof(SegmentHeader) == 64);

struct RecordEntry {
  uint16_t kind;
  uint16_t flags;
  uint32_t key_len;
  uint64_t key_offset;
  uint64_t version;
  uint64_t data_offset;
  uint64_t data_len;
  uint64_t reserved;
};
static_assert(sizeof(RecordEntry) == 48);

// How the control plane wants a certificate served.
enum class CertState : uint16_t {
  kServe = 0,
  kWithheldNoStaple = 1,  // strict / must-staple and no valid staple
  kWithheldRevoked = 2,   // OCSP or CRL says revoked and policy stops serving it
};
inline constexpr uint16_t kMaxCertState = 2;

struct CertificateData {
  uint32_t chain_len;
  uint32_t key_len;
  uint16_t state;          // CertState
  uint16_t reserved0;
  uint32_t reserved1;
  int64_t not_after_unix;  // the leaf's notAfter
};
static_assert(sizeof(CertificateData) == 24);

enum class StapleStatus : uint16_t { kGood = 0, kRevoked = 1, kUnknown = 2 };

struct StapleData {
  uint32_t der_len;
  uint16_t status;  // StapleStatus
  uint16_t reserved;
  int64_t this_update_unix;
  int64_t next_update_unix;  // never staple at or after this time
};
static_assert(sizeof(StapleData) == 24);

// Active health of a backend as the control plane's checks see it.
enum class BackendCheck : uint8_t {
  kUnchecked = 0,  // the pool has no health check: eligible
  kUp = 1,
  kDown = 2,  // not picked for new connections
};
inline constexpr uint8_t kMaxBackendCheck = 2;

// What the operator set (lodectl backends drain|enable).
enum class BackendAdmin : uint8_t {
  kActive = 0,
  kDrained = 1,  // no new connections; open ones finish
};
inline constexpr uint8_t kMaxBackendAdmin = 1;

struct BackendStateHeader {
  uint32_t count;  // entries that follow, 1..kMaxStateBackends
  uint32_t reserved;
};
static_assert(sizeof(BackendStateHeader) == 8);

struct BackendStateEntry {
  uint32_t weight;  // effective weight, 1..kMaxStateWeight
  uint16_t id_len;  // the backend id follows: 1..kMaxKeyLen printable bytes
  uint8_t check;    // BackendCheck
  uint8_t admin;    // BackendAdmin
};
static_assert(sizeof(BackendStateEntry) == 8);

// 64-bit checksum (not a MAC: the seal, not this, keeps the bytes from
// changing): 8 bytes per step, multiply-xorshift mixing.
inline uint64_t checksum(std::span<const std::byte> bytes) noexcept {
  uint64_t h = 0x243f6a8885a308d3ull ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  h = (h ^ tail) * 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

enum class SegmentError : uint8_t {
  kTooShort,
  kBadMagic,
  kBadLayoutVersion,
  kBadHeaderSize,
  kBadSize,
  kBadGeneration,
  kBadChecksum,
  kTooManyRecords,
  kBadRecordBounds,
  kBadKey,
  kBadKind,
  kBadFlags,
  kDuplicateKey,
  kBadPayload,
};

inline std::string_view to_string(SegmentError e) noexcept {
  switch (e) {
    case SegmentError::kTooShort: return "segment shorter than its header";
    case SegmentError::kBadMagic: return "bad magic (not a Lodestone snapshot segment)";
    case SegmentError::kBadLayoutVersion: return "unsupported layout version";
    case SegmentError::kBadHeaderSize: return "bad header size";
    case SegmentError::kBadSize: return "total size larger than the segment";
    case SegmentError::kBadGeneration: return "generation not above its base";
    case SegmentError::kBadChecksum: return "checksum mismatch";
    case SegmentError::kTooManyRecords: return "record table out of bounds";
    case SegmentError::kBadRecordBounds: return "record key or data out of bounds";
    case SegmentError::kBadKey: return "record key empty, too long or not printable";
    case SegmentError::kBadKind: return "unknown record kind";
    case SegmentError::kBadFlags: return "unknown record flags";
    case SegmentError::kDuplicateKey: return "a key appears twice for one kind";
    case SegmentError::kBadPayload: return "record payload malformed for its kind";
  }
  return "?";
}

struct SegmentFault {
  SegmentError error;
  uint32_t record = UINT32_MAX;  // which record, when it is about one
  std::string message() const {
    std::string m(to_string(error));
    if (record != UINT32_MAX) m += " (record " + std::to_string(record) + ")";
    return m;
  }
};

// One validated record. Views point into the segment.
struct Record {
  RecordKind kind;
  bool remove;
  std::string_view key;
  uint64_t version;
  std::span<const std::byte> data;
};

struct CertificateView {
  CertState state;
  int64_t not_after_unix;
  std::string_view chain_pem;
  std::string_view key_pem;
};

struct StapleView {
  StapleStatus status;
  int64_t this_update_unix;
  int64_t next_update_unix;
  std::span<const std::byte> der;
};

struct BackendStateView {
  std::string_view id;
  uint32_t weight;
  BackendCheck check;
  BackendAdmin admin;
};

// The entries of a kBackendState payload, each passed to f(const
// BackendStateView&) in order; refused (kBadPayload) before any call when
// one is malformed: a count out of range, an entry or id past the end,
// bytes left over, an unknown check or admin value, a weight of 0 or above
// kMaxStateWeight, an id empty, too long, not printable or repeated.
// No allocation.
template <class F>
Result<void, SegmentError> for_each_backend_state(std::span<const std::byte> d, F&& f) {
  auto walk = [&](auto&& visit) -> bool {
    BackendStateHeader h;
    if (d.size() < sizeof h) return false;
    std::memcpy(&h, d.data(), sizeof h);
    if (h.count == 0 || h.count > kMaxStateBackends || h.reserved != 0) return false;
    size_t at = sizeof h;
    for (uint32_t i = 0; i < h.count; ++i) {
      BackendStateEntry e;
      if (d.size() - at < sizeof e) return false;
      std::memcpy(&e, d.data() + at, sizeof e);
      at += sizeof e;
      if (e.id_len == 0 || e.id_len > kMaxKeyLen || d.size() - at < e.id_len) return false;
      if (e.check > kMaxBackendCheck || e.admin > kMaxBackendAdmin || e.weight == 0 ||
          e.weight > kMaxStateWeight) {
        return false;
      }
      const std::string_view id(reinterpret_cast<const char*>(d.data()) + at, e.id_len);
      at += e.id_len;
      for (const char c : id) {
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return false;
      }
      if (!visit(i, BackendStateView{id, e.weight, static_cast<BackendCheck>(e.check),
                                     static_cast<BackendAdmin>(e.admin)})) {
        return false;
      }
    }
    return at == d.size();
  };
  // First pass: shape and unique ids (at most 64: a fixed array, pairwise).
  std::array<std::string_view, kMaxStateBackends> seen{};
  const bool ok = walk([&](uint32_t i, const BackendStateView& v) {
    for (uint32_t j = 0; j < i; ++j) {
      if (seen[j] == v.id) return false;
    }
    seen[i] = v.id;
    return true;
  });
  if (!ok) return unexpected(SegmentError::kBadPayload);
  walk([&](uint32_t, const BackendStateView& v) {
    f(v);
    return true;
  });
  return {};
}

// Payload readers; open() has already checked them, so on a record of a
// validated segment they succeed.
inline Result<CertificateView, SegmentError> certificate_of(std::span<const std::byte> d) noexcept {
  CertificateData h;
  if (d.size() < sizeof h) return unexpected(SegmentError::kBadPayload);
  std::memcpy(&h, d.data(), sizeof h);
  if (h.state > kMaxCertState || h.chain_len == 0 || h.key_len == 0 ||
      uint64_t{h.chain_len} + h.key_len != d.size() - sizeof h) {
    return unexpected(SegmentError::kBadPayload);
  }
  const char* p = reinterpret_cast<const char*>(d.data()) + sizeof h;
  return CertificateView{static_cast<CertState>(h.state), h.not_after_unix, {p, h.chain_len},
                         {p + h.chain_len, h.key_len}};
}

inline Result<StapleView, SegmentError> staple_of(std::span<const std::byte> d) noexcept {
  StapleData h;
  if (d.size() < sizeof h) return unexpected(SegmentError::kBadPayload);
  std::memcpy(&h, d.data(), sizeof h);
  if (h.status > 2 || h.der_len == 0 || h.der_len != d.size() - sizeof h ||
      h.next_update_unix <= h.this_update_unix) {
    return unexpected(SegmentError::kBadPayload);
  }
  return StapleView{static_cast<StapleStatus>(h.status), h.this_update_unix, h.next_update_unix,
                    d.subspan(sizeof h)};
}

class SegmentView {
 public:
  SegmentView() = default;

  // Validates everything once; afterwards record(i) cannot fail.
  // Allocates (the duplicate-key check); not for the packet path.
  static Result<SegmentView, SegmentFault> open(std::span<const std::byte> bytes) {
    SegmentHeader h;
    if (bytes.size() < sizeof h) return unexpected(SegmentFault{SegmentError::kTooShort});
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != kMagic) return unexpected(SegmentFault{SegmentError::kBadMagic});
    if (h.layout_version != kLayoutVersion) return unexpected(SegmentFault{SegmentError::kBadLayoutVersion});
    if (h.header_size != sizeof(SegmentHeader)) return unexpected(SegmentFault{SegmentError::kBadHeaderSize});
    if (h.total_size < h.header_size || h.total_size > bytes.size()) {
      return unexpected(SegmentFault{SegmentError::kBadSize});
    }
    if (h.generation == 0 || h.generation <= h.base_generation) {
      return unexpected(SegmentFault{SegmentError::kBadGeneration});
    }
    const auto body = bytes.subspan(h.header_size, h.total_size - h.header_size);
    if (checksum(body) != h.checksum) return unexpected(SegmentFault{SegmentError::kBadChecksum});
    if (h.record_count > kMaxRecords ||
        uint64_t{h.record_count} * sizeof(RecordEntry) > h.total_size - h.header_size) {
      return unexpected(SegmentFault{SegmentError::kTooManyRecords});
    }
    SegmentView v;
    v.bytes_ = bytes.first(h.total_size);
    v.header_ = h;
    const uint64_t data_start = h.header_size + uint64_t{h.record_count} * sizeof(RecordEntry);
    std::vector<std::pair<std::string_view, uint32_t>> keys;  // (kind byte + key, record)
    keys.reserve(h.record_count);
    for (uint32_t i = 0; i < h.record_count; ++i) {
      const RecordEntry e = v.entry(i);
      if (auto ok = check_entry(e, data_start, h.total_size, bytes); !ok) {
        return unexpected(SegmentFault{ok.error(), i});
      }
      keys.emplace_back(v.record(i).key, i);
    }
    std::sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
      const auto ka = v.entry(a.second).kind, kb = v.entry(b.second).kind;
      return ka != kb ? ka < kb : a.first < b.first;
    });
    for (size_t i = 1; i < keys.size(); ++i) {
      if (keys[i].first == keys[i - 1].first && v.entry(keys[i].second).kind == v.entry(keys[i - 1].second).kind) {
        return unexpected(SegmentFault{SegmentError::kDuplicateKey, keys[i].second});
      }
    }
    return v;
  }

  const SegmentHeader& header() const noexcept { return header_; }
  uint64_t generation() const noexcept { return header_.generation; }
  uint64_t base_generation() const noexcept { return header_.base_generation; }
  bool full() const noexcept { return header_.base_generation == 0; }
  uint32_t record_count() const noexcept { return header_.record_count; }

  Record record(uint32_t i) const noexcept {
    const RecordEntry e = entry(i);
    return Record{static_cast<RecordKind>(e.kind), (e.flags & kRecordRemove) != 0,
                  std::string_view(reinterpret_cast<const char*>(bytes_.data()) + e.key_offset, e.key_len),
                  e.version, bytes_.subspan(e.data_offset, e.data_len)};
  }

 private:
  RecordEntry entry(uint32_t i) const noexcept {
    RecordEntry e;
    std::memcpy(&e, bytes_.data() + header_.header_size + uint64_t{i} * sizeof(RecordEntry), sizeof e);
    return e;
  }

  static Result<void, SegmentError> check_entry(const RecordEntry& e, uint64_t data_start, uint64_t total,
                                                std::span<const std::byte> bytes) noexcept {
    auto in_bounds = [&](uint64_t off, uint64_t len) {
      return off >= data_start && off <= total && len <= total - off;
    };
    if (!in_bounds(e.key_offset, e.key_len) || !in_bounds(e.data_offset, e.data_len)) {
      return unexpected(SegmentError::kBadRecordBounds);
    }
    if (e.key_len == 0 || e.key_len > kMaxKeyLen) return unexpected(SegmentError::kBadKey);
    for (uint64_t k = 0; k < e.key_len; ++k) {
      const auto c = static_cast<unsigned char>(bytes[e.key_offset + k]);
      if (c <= 0x20 || c >= 0x7f) return unexpected(SegmentError::kBadKey);
    }
    if ((e.flags & ~kRecordRemove) != 0) return unexpected(SegmentError::kBadFlags);
    const bool remove = (e.flags & kRecordRemove) != 0;
    if (remove && e.data_len != 0) return unexpected(SegmentError::kBadPayload);
    const auto data = bytes.subspan(e.data_offset, e.data_len);
    const std::string_view key(reinterpret_cast<const char*>(bytes.data()) + e.key_offset, e.key_len);
    switch (static_cast<RecordKind>(e.kind)) {
      case RecordKind::kConfig:
        if (key != "config") return unexpected(SegmentError::kBadKey);
        if (remove || e.data_len == 0) return unexpected(SegmentError::kBadPayload);
        return {};
      case RecordKind::kCertificate:
        if (!remove && !certificate_of(data)) return unexpected(SegmentError::kBadPayload);
        return {};
      case RecordKind::kStaple:
        if (!remove && !staple_of(data)) return unexpected(SegmentError::kBadPayload);
        return {};
      case RecordKind::kTicketKeys:
        if (key != "tickets") return unexpected(SegmentError::kBadKey);
        if (remove || e.data_len == 0 || e.data_len % kTicketKeySize != 0 ||
            e.data_len / kTicketKeySize > kMaxTicketKeys) {
          return unexpected(SegmentError::kBadPayload);
        }
        return {};
      case RecordKind::kBackendState:
        if (key.size() <= kPoolKeyPrefix.size() || key.substr(0, kPoolKeyPrefix.size()) != kPoolKeyPrefix) {
          return unexpected(SegmentError::kBadKey);
        }
        if (!remove && !for_each_backend_state(data, [](const BackendStateView&) {})) {
          return unexpected(SegmentError::kBadPayload);
        }
        return {};
    }
    return unexpected(SegmentError::kBadKind);
  }

  std::span<const std::byte> bytes_;
  SegmentHeader header_{};
};

}  // namespace lode::snapshot
