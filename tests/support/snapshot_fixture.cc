#include "support/snapshot_fixture.h"

#include <chrono>
#include <vector>

#include "controlplane/cert_catalog.h"
#include "controlplane/snapshot_writer.h"

namespace lode::test {

Result<std::shared_ptr<const control::Snapshot>, std::string> snapshot_for(const config::Config& cfg,
                                                                           uint64_t generation) {
  auto trust = cp::CertTrust::load(cp::validation_for(cfg));
  if (!trust) return unexpected(trust.error());
  std::vector<std::string> warnings;
  const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto certs = cp::load_certificates(cfg, *trust, now, warnings);
  if (!certs) return unexpected(certs.error().front());
  cp::SegmentBuilder b;
  b.add_config("# test", generation);  // the config version: one per generation
  const std::vector<std::byte> tickets(snapshot::kTicketKeySize, std::byte{1});
  b.add_ticket_keys(tickets, 1);
  for (const auto& e : *certs) {
    b.add_certificate(e.key, e.bundle.version, snapshot::CertState::kServe,
                      e.bundle.info.not_after.time_since_epoch().count(), e.bundle.chain_pem, e.bundle.key_pem);
  }
  auto seg = control::MappedSegment::from_bytes(b.bytes(generation, 0));
  if (!seg) return unexpected(seg.error());
  auto applied = control::apply_segment(nullptr, *seg);
  if (!applied) return unexpected(std::string(control::to_string(applied.error())));
  return applied->snapshot;
}

}  // namespace lode::test
