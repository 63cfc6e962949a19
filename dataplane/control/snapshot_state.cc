#include "dataplane/control/snapshot_state.h"

#include "lodestone/control_channel.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace lode::control {

MappedSegment::~MappedSegment() {
  if (base_ == nullptr) return;
  if (mapped_) {
    munmap(base_, size_);
  } else {
    std::free(base_);
  }
}

Result<std::shared_ptr<const MappedSegment>, SegmentRefusal> MappedSegment::map(int fd) {
  auto refuse = [](uint64_t code, std::string m) { return unexpected(SegmentRefusal{code, "segment: " + std::move(m)}); };
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return refuse(snapshot::kNackUnsealed, std::string("not a sealable memfd: ") + std::strerror(errno));
  constexpr int kNeeded = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
  if ((seals & kNeeded) != kNeeded) return refuse(snapshot::kNackUnsealed, "not sealed against writes and resizing");
  struct stat st{};
  if (fstat(fd, &st) != 0) return refuse(snapshot::kNackMap, std::string("fstat: ") + std::strerror(errno));
  if (st.st_size < static_cast<off_t>(sizeof(snapshot::SegmentHeader))) {
    return refuse(static_cast<uint64_t>(snapshot::SegmentError::kTooShort),
                  std::string(to_string(snapshot::SegmentError::kTooShort)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return refuse(snapshot::kNackMap, std::string("mmap: ") + std::strerror(errno));
  madvise(p, size, MADV_DONTDUMP);  // private keys: never in a core dump
  std::shared_ptr<MappedSegment> seg(new MappedSegment());
  seg->base_ = p;
  seg->size_ = size;
  seg->mapped_ = true;
  auto view = snapshot::SegmentView::open({static_cast<const std::byte*>(p), size});
  if (!view) return refuse(static_cast<uint64_t>(view.error().error), view.error().message());
  seg->view_ = *view;
  return std::shared_ptr<const MappedSegment>(std::move(seg));
}

Result<std::shared_ptr<const MappedSegment>, std::string> MappedSegment::from_bytes(
    std::span<const std::byte> bytes) {
  std::shared_ptr<MappedSegment> seg(new MappedSegment());
  // 8-byte aligned copy, like a mapping.
  seg->base_ = std::malloc(bytes.empty() ? 1 : bytes.size());
  if (seg->base_ == nullptr) return unexpected(std::string("segment: out of memory"));
  if (!bytes.empty()) std::memcpy(seg->base_, bytes.data(), bytes.size());
  seg->size_ = bytes.size();
  auto view = snapshot::SegmentView::open({static_cast<const std::byte*>(seg->base_), bytes.size()});
  if (!view) return unexpected("segment: " + view.error().message());
  seg->view_ = *view;
  return std::shared_ptr<const MappedSegment>(std::move(seg));
}

std::string_view to_string(ApplyError e) noexcept {
  switch (e) {
    case ApplyError::kBaseMismatch: return "delta segment's base is not the generation in service";
    case ApplyError::kStaleGeneration: return "segment generation is not above the generation in service";
    case ApplyError::kFullWithoutConfig: return "full segment without a config record";
    case ApplyError::kFullWithoutTickets: return "full segment without a ticket-keys record";
  }
  return "?";
}

std::string named_cert_key(std::string_view cert_name) {
  std::string k = "name:";
  k.append(cert_name);
  return k;
}
std::string dir_cert_key(std::string_view dir_name, std::string_view host) {
  std::string k = "dir:";
  k.append(dir_name).append("/").append(host);
  return k;
}
std::string dir_wildcard_key(std::string_view dir_name, std::string_view parent_domain) {
  std::string k = "dir:";
  k.append(dir_name).append("/*.").append(parent_domain);
  return k;
}

namespace {

// One kBackendState record (validated by open()) into `next`: the pool's
// entries replaced, or removed. `fresh`: start from no pools (the first such
// record of a full segment).
void apply_backend_state(const snapshot::Record& r, Snapshot& next, bool fresh) {
  auto states = std::make_shared<BackendStates>();
  if (!fresh && next.backend_states) *states = *next.backend_states;
  const std::string_view pool = r.key.substr(snapshot::kPoolKeyPrefix.size());
  if (r.remove) {
    if (auto it = states->find(pool); it != states->end()) states->erase(it);
  } else {
    std::vector<BackendStateEntry> entries;
    (void)snapshot::for_each_backend_state(r.data, [&](const snapshot::BackendStateView& b) {
      entries.push_back({std::string(b.id), b.weight, b.check, b.admin});
    });
    (*states)[std::string(pool)] = std::move(entries);
  }
  next.backend_states = std::move(states);
}

bool same_backend_states(const std::shared_ptr<const BackendStates>& a,
                         const std::shared_ptr<const BackendStates>& b) {
  const bool none_a = !a || a->empty(), none_b = !b || b->empty();
  if (none_a || none_b) return none_a == none_b;
  return *a == *b;
}

}  // namespace

Result<ApplyResult, ApplyError> apply_segment(const std::shared_ptr<const Snapshot>& current,
                                              const std::shared_ptr<const MappedSegment>& seg) {
  const snapshot::SegmentView& v = seg->view();
  const uint64_t in_service = current ? current->generation : 0;
  if (v.generation() <= in_service) return unexpected(ApplyError::kStaleGeneration);
  if (!v.full() && v.base_generation() != in_service) return unexpected(ApplyError::kBaseMismatch);

  auto next = std::make_shared<Snapshot>();
  if (!v.full()) *next = *current;  // shares the map's nodes and the mappings
  next->generation = v.generation();
  ApplyResult out;
  out.full = v.full();
  bool saw_config = false, saw_tickets = false, saw_backend_state = false;

  // Certificates first, then staples (a staple may follow its certificate in
  // the same segment; a new certificate version drops the old staple).
  using snapshot::RecordKind;
  for (uint32_t i = 0; i < v.record_count(); ++i) {
    const snapshot::Record r = v.record(i);
    switch (r.kind) {
      case RecordKind::kConfig:
        saw_config = true;
        out.config_present = true;
        out.config_changed = !current || current->config_version != r.version ||
                             current->config_text != std::string_view(reinterpret_cast<const char*>(r.data.data()),
                                                                      r.data.size());
        next->config_segment = seg;
        next->config_text = {reinterpret_cast<const char*>(r.data.data()), r.data.size()};
        next->config_version = r.version;
        break;
      case RecordKind::kTicketKeys:
        saw_tickets = true;
        out.tickets_changed = !current || current->tickets_version != r.version ||
                              current->ticket_keys.size() != r.data.size() ||
                              std::memcmp(current->ticket_keys.data(), r.data.data(), r.data.size()) != 0;
        next->tickets_segment = seg;
        next->ticket_keys = r.data;
        next->tickets_version = r.version;
        break;
      case RecordKind::kCertificate: {
        if (r.remove) {
          const size_t before = next->certs.size();
          next->certs = next->certs.erase(r.key);
          out.certs_removed += before - next->certs.size();
          break;
        }
        const auto c = snapshot::certificate_of(r.data);  // validated by open()
        auto e = std::make_shared<CertEntry>();
        e->segment = seg;
        e->version = r.version;
        e->state = c->state;
        e->not_after_unix = c->not_after_unix;
        e->chain_pem = c->chain_pem;
        e->key_pem = c->key_pem;
        if (const CertEntryPtr* old = next->certs.find(r.key); old != nullptr && (*old)->version == r.version) {
          // Same certificate (e.g. only its state changed): the staple stays.
          e->staple_segment = (*old)->staple_segment;
          e->staple_version = (*old)->staple_version;
          e->staple_status = (*old)->staple_status;
          e->staple_next_update_unix = (*old)->staple_next_update_unix;
          e->staple_der = (*old)->staple_der;
        }
        next->certs = next->certs.set(r.key, std::move(e));
        ++out.certs_upserted;
        break;
      }
      case RecordKind::kStaple:
        break;
      case RecordKind::kBackendState:
        apply_backend_state(r, *next, v.full() && !saw_backend_state);
        saw_backend_state = true;
        break;
    }
  }
  // A full segment without backend states: every pool as configured.
  if (v.full() && !saw_backend_state) next->backend_states.reset();
  out.backend_states_changed =
      !same_backend_states(current ? current->backend_states : nullptr, next->backend_states);
  for (uint32_t i = 0; i < v.record_count(); ++i) {
    const snapshot::Record r = v.record(i);
    if (r.kind != RecordKind::kStaple) continue;
    const CertEntryPtr* old = next->certs.find(r.key);
    if (old == nullptr) {
      ++out.staples_orphaned;
      continue;
    }
    auto e = std::make_shared<CertEntry>(**old);
    if (r.remove) {
      e->staple_segment.reset();
      e->staple_version = 0;
      e->staple_der = {};
      e->staple_next_update_unix = 0;
      e->staple_status = snapshot::StapleStatus::kUnknown;
      ++out.staples_removed;
    } else {
      const auto s = snapshot::staple_of(r.data);
      e->staple_segment = seg;
      e->staple_version = r.version;
      e->staple_status = s->status;
      e->staple_next_update_unix = s->next_update_unix;
      e->staple_der = s->der;
      ++out.staples_upserted;
    }
    next->certs = next->certs.set(r.key, std::move(e));
  }
  if (v.full()) {
    if (!saw_config) return unexpected(ApplyError::kFullWithoutConfig);
    if (!saw_tickets) return unexpected(ApplyError::kFullWithoutTickets);
  }
  out.snapshot = std::move(next);
  return out;
}

}  // namespace lode::control
