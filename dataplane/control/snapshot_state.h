// What the dataplane serves from the control plane: the records of the
// segments it has accepted (include/lodestone/snapshot.h), as one immutable,
// generation-numbered Snapshot.
//
// Segments arrive as sealed memfds; MappedSegment maps one read-only with
// MADV_DONTDUMP after checking the seals, and validates it once. Records
// point into their segment's mapping and hold it (shared_ptr): a mapping is
// unmapped when no record of the snapshot in service, and no connection,
// refers to it any more — never under a reader.
//
// apply_segment() turns the snapshot in service plus one segment into the
// next snapshot: a full segment replaces everything, a delta must sit on the
// generation in service and changes only its records (PersistentMap: path
// copies), so its cost is O(the delta).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/control/generation_slot.h"
#include "dataplane/control/persistent_map.h"
#include "lodestone/result.h"
#include "lodestone/snapshot.h"

namespace lode::control {

// Why a segment was refused: `code` is a SegmentError or a kNack* code
// (include/lodestone/control_channel.h), for the nack.
struct SegmentRefusal {
  uint64_t code;
  std::string message;
};

class MappedSegment {
 public:
  // Maps a received memfd (the caller keeps and closes `fd`). Refused: not
  // sealed against writes and resizing, smaller than its header says, or
  // failing SegmentView::open (the message says which check).
  static Result<std::shared_ptr<const MappedSegment>, SegmentRefusal> map(int fd);
  // A copy in ordinary memory (tests, fuzzing, benchmarks).
  static Result<std::shared_ptr<const MappedSegment>, std::string> from_bytes(std::span<const std::byte> bytes);

  ~MappedSegment();
  MappedSegment(const MappedSegment&) = delete;
  MappedSegment& operator=(const MappedSegment&) = delete;

  const snapshot::SegmentView& view() const noexcept { return view_; }
  size_t size() const noexcept { return size_; }

 private:
  MappedSegment() = default;
  void* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // munmap (else: heap copy)
  snapshot::SegmentView view_;
};

struct CertEntry {
  std::shared_ptr<const MappedSegment> segment;  // holds chain_pem / key_pem
  uint64_t version = 0;
  snapshot::CertState state = snapshot::CertState::kServe;
  int64_t not_after_unix = 0;
  std::string_view chain_pem;
  std::string_view key_pem;
  // The OCSP staple, if any.
  std::shared_ptr<const MappedSegment> staple_segment;
  uint64_t staple_version = 0;
  snapshot::StapleStatus staple_status = snapshot::StapleStatus::kUnknown;
  int64_t staple_next_update_unix = 0;
  std::span<const std::byte> staple_der;

  // A good staple that is still fresh at `now_unix`.
  bool has_fresh_staple(int64_t now_unix) const noexcept {
    return !staple_der.empty() && staple_status == snapshot::StapleStatus::kGood &&
           now_unix < staple_next_update_unix;
  }
};

using CertEntryPtr = std::shared_ptr<const CertEntry>;

// One backend's state from a kBackendState record (copied out of the
// segment: a few bytes per backend, and a pool's record is replaced whole).
struct BackendStateEntry {
  std::string id;
  uint32_t weight = 1;
  snapshot::BackendCheck check = snapshot::BackendCheck::kUnchecked;
  snapshot::BackendAdmin admin = snapshot::BackendAdmin::kActive;
  bool operator==(const BackendStateEntry&) const = default;
};
// By pool name. A pool that is absent serves every backend as configured.
using BackendStates = std::map<std::string, std::vector<BackendStateEntry>, std::less<>>;

struct Snapshot {
  uint64_t generation = 0;
  PersistentMap<CertEntryPtr> certs;
  std::shared_ptr<const MappedSegment> config_segment;
  std::string_view config_text;
  uint64_t config_version = 0;
  std::shared_ptr<const MappedSegment> tickets_segment;
  std::span<const std::byte> ticket_keys;  // 80 bytes each, first encrypts
  uint64_t tickets_version = 0;
  std::shared_ptr<const BackendStates> backend_states;  // null: none
};

struct ApplyResult {
  std::shared_ptr<const Snapshot> snapshot;
  bool full = false;            // the segment replaced everything
  bool config_present = false;  // the segment carried the configuration (a reload, an attach)
  bool config_changed = false;  // ... and its text differs from the one in service
  bool tickets_changed = false;
  size_t certs_upserted = 0;
  size_t certs_removed = 0;
  size_t staples_upserted = 0;
  size_t staples_removed = 0;
  size_t staples_orphaned = 0;  // a staple for a key with no certificate: ignored
  bool backend_states_changed = false;  // some pool's backend states differ from the ones in service
};

enum class ApplyError : uint8_t {
  kBaseMismatch,    // a delta whose base is not the generation in service
  kStaleGeneration, // not above the generation in service
  kFullWithoutConfig,
  kFullWithoutTickets,
};
std::string_view to_string(ApplyError e) noexcept;

[[nodiscard]] Result<ApplyResult, ApplyError> apply_segment(const std::shared_ptr<const Snapshot>& current,
                                                            const std::shared_ptr<const MappedSegment>& seg);

// Keys of certificate records: a named certificate, a directory's file.
std::string named_cert_key(std::string_view cert_name);
std::string dir_cert_key(std::string_view dir_name, std::string_view host);             // exact file
std::string dir_wildcard_key(std::string_view dir_name, std::string_view parent_domain);  // "*.parent"

// The snapshot in service, for every worker.
using SnapshotSlot = GenerationSlot<Snapshot>;

}  // namespace lode::control
