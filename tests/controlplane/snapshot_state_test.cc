// dataplane/control/snapshot_state and control_link: how the dataplane turns
// segments into the snapshot in service (apply_segment), maps them
// (MappedSegment::map refuses what is not sealed or not valid), and the
// control-socket thread that receives them from a control plane — driven here
// by a fake control plane on a real SOCK_SEQPACKET socket.
#include "dataplane/control/snapshot_state.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/snapshot_writer.h"
#include "dataplane/control/control_link.h"
#include "lodestone/control_channel.h"
#include "support/test_pki.h"

namespace lode::control {
namespace {

using namespace std::chrono_literals;
using cp::SegmentBuilder;
using cp::UniqueFd;
using snapshot::CertState;
using snapshot::RecordKind;
using snapshot::StapleStatus;

std::vector<std::byte> tickets(size_t n, uint8_t seed) {
  std::vector<std::byte> k(n * snapshot::kTicketKeySize);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::byte>((i + seed * 31) & 0xff);
  return k;
}

// Config "cfg-1", one ticket key, certificates name:a (version 10, stapled)
// and name:b (version 20).
SegmentBuilder full_builder() {
  SegmentBuilder b;
  b.add_config("cfg-1", 1);
  b.add_ticket_keys(tickets(1, 1), 1);
  b.add_certificate("name:a", 10, CertState::kServe, 2'000'000'000, "CHAIN-A", "KEY-A");
  b.add_certificate("name:b", 20, CertState::kServe, 2'000'000'001, "CHAIN-B", "KEY-B");
  b.add_staple("name:a", 100, StapleStatus::kGood, 1000, 5000, "DER-A");
  return b;
}

std::shared_ptr<const MappedSegment> segment(const SegmentBuilder& b, uint64_t gen, uint64_t base) {
  const auto bytes = b.bytes(gen, base);
  auto s = MappedSegment::from_bytes(bytes);
  EXPECT_TRUE(s) << (s ? "" : s.error());
  return s ? *s : nullptr;
}

// The full segment above applied at generation 1.
std::shared_ptr<const Snapshot> base_snapshot() {
  auto r = apply_segment(nullptr, segment(full_builder(), 1, 0));
  EXPECT_TRUE(r);
  return r ? r->snapshot : nullptr;
}

const CertEntry* cert(const Snapshot& s, std::string_view key) {
  const CertEntryPtr* e = s.certs.find(key);
  return e == nullptr ? nullptr : e->get();
}

std::string_view str(std::span<const std::byte> d) { return {reinterpret_cast<const char*>(d.data()), d.size()}; }

// ---------------------------------------------------------------------------
// apply_segment

TEST(ApplySegment, FullSegmentLoadsEverything) {
  auto r = apply_segment(nullptr, segment(full_builder(), 1, 0));
  ASSERT_TRUE(r);
  const Snapshot& s = *r->snapshot;
  EXPECT_EQ(s.generation, 1u);
  EXPECT_TRUE(r->full);
  EXPECT_TRUE(r->config_present);
  EXPECT_TRUE(r->config_changed);
  EXPECT_TRUE(r->tickets_changed);
  EXPECT_EQ(r->certs_upserted, 2u);
  EXPECT_EQ(r->certs_removed, 0u);
  EXPECT_EQ(r->staples_upserted, 1u);
  EXPECT_EQ(r->staples_orphaned, 0u);
  EXPECT_EQ(s.config_text, "cfg-1");
  EXPECT_EQ(s.config_version, 1u);
  EXPECT_EQ(s.ticket_keys.size(), snapshot::kTicketKeySize);
  EXPECT_EQ(s.tickets_version, 1u);
  ASSERT_EQ(s.certs.size(), 2u);
  const CertEntry* a = cert(s, "name:a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->version, 10u);
  EXPECT_EQ(a->chain_pem, "CHAIN-A");
  EXPECT_EQ(a->key_pem, "KEY-A");
  EXPECT_EQ(a->not_after_unix, 2'000'000'000);
  EXPECT_EQ(a->staple_version, 100u);
  EXPECT_EQ(str(a->staple_der), "DER-A");
  EXPECT_EQ(a->staple_next_update_unix, 5000);
  EXPECT_TRUE(a->has_fresh_staple(4999));
  EXPECT_FALSE(a->has_fresh_staple(5000));
  const CertEntry* b = cert(s, "name:b");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->staple_der.empty());
  EXPECT_FALSE(b->has_fresh_staple(0));
}

TEST(ApplySegment, DeltaUpsertsAndRemovesCertificates) {
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_certificate("name:c", 30, CertState::kWithheldNoStaple, 5, "CHAIN-C", "KEY-C");
  d.remove(RecordKind::kCertificate, "name:b");
  d.remove(RecordKind::kCertificate, "name:never-there");
  auto r = apply_segment(base, segment(d, 2, 1));
  ASSERT_TRUE(r);
  const Snapshot& s = *r->snapshot;
  EXPECT_EQ(s.generation, 2u);
  EXPECT_FALSE(r->full);
  EXPECT_EQ(r->certs_upserted, 1u);
  EXPECT_EQ(r->certs_removed, 1u);  // the missing key removes nothing
  EXPECT_FALSE(r->config_present);
  EXPECT_FALSE(r->config_changed);
  EXPECT_FALSE(r->tickets_changed);
  EXPECT_EQ(s.certs.size(), 2u);
  EXPECT_EQ(cert(s, "name:b"), nullptr);
  ASSERT_NE(cert(s, "name:c"), nullptr);
  EXPECT_EQ(cert(s, "name:c")->state, CertState::kWithheldNoStaple);
  // Untouched: the same entry object, config and tickets from generation 1.
  EXPECT_EQ(*s.certs.find("name:a"), *base->certs.find("name:a"));
  EXPECT_EQ(s.config_text, "cfg-1");
  EXPECT_EQ(s.config_segment, base->config_segment);
  EXPECT_EQ(s.ticket_keys.data(), base->ticket_keys.data());
  // The snapshot it came from is unchanged.
  EXPECT_EQ(base->generation, 1u);
  EXPECT_NE(cert(*base, "name:b"), nullptr);
  EXPECT_EQ(cert(*base, "name:c"), nullptr);
}

TEST(ApplySegment, DeltaAddsAndRemovesStaples) {
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_staple("name:b", 200, StapleStatus::kRevoked, 10, 20, "DER-B");
  d.remove(RecordKind::kStaple, "name:a");
  auto r = apply_segment(base, segment(d, 2, 1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->staples_upserted, 1u);
  EXPECT_EQ(r->staples_removed, 1u);
  EXPECT_EQ(r->certs_upserted, 0u);
  const Snapshot& s = *r->snapshot;
  const CertEntry* a = cert(s, "name:a");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->staple_der.empty());
  EXPECT_EQ(a->staple_version, 0u);
  EXPECT_FALSE(a->has_fresh_staple(2000));
  EXPECT_EQ(a->chain_pem, "CHAIN-A");  // the certificate itself stays
  const CertEntry* b = cert(s, "name:b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(str(b->staple_der), "DER-B");
  EXPECT_EQ(b->staple_status, StapleStatus::kRevoked);
  EXPECT_FALSE(b->has_fresh_staple(15));  // revoked is never "fresh good"
  // The old snapshot keeps its staple.
  EXPECT_EQ(str(cert(*base, "name:a")->staple_der), "DER-A");
}

TEST(ApplySegment, StapleWithoutCertificateIsOrphaned) {
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_staple("name:zzz", 1, StapleStatus::kGood, 1, 2, "X");
  d.remove(RecordKind::kStaple, "name:yyy");
  d.remove(RecordKind::kCertificate, "name:b");
  d.add_staple("name:b", 1, StapleStatus::kGood, 1, 2, "Y");  // its certificate goes in this delta
  auto r = apply_segment(base, segment(d, 2, 1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->staples_orphaned, 3u);
  EXPECT_EQ(r->staples_upserted, 0u);
  EXPECT_EQ(r->staples_removed, 0u);
  EXPECT_EQ(r->snapshot->certs.size(), 1u);
  EXPECT_EQ(cert(*r->snapshot, "name:zzz"), nullptr);
  EXPECT_EQ(cert(*r->snapshot, "name:b"), nullptr);

  // In a full segment too.
  SegmentBuilder f;
  f.add_config("c", 1);
  f.add_ticket_keys(tickets(1, 1), 1);
  f.add_staple("name:nothing", 1, StapleStatus::kGood, 1, 2, "Z");
  auto rf = apply_segment(nullptr, segment(f, 1, 0));
  ASSERT_TRUE(rf);
  EXPECT_EQ(rf->staples_orphaned, 1u);
  EXPECT_TRUE(rf->snapshot->certs.empty());
}

TEST(ApplySegment, NewCertificateVersionDropsItsStaple) {
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_certificate("name:a", 11, CertState::kServe, 7, "CHAIN-A2", "KEY-A2");
  auto r = apply_segment(base, segment(d, 2, 1));
  ASSERT_TRUE(r);
  const CertEntry* a = cert(*r->snapshot, "name:a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->version, 11u);
  EXPECT_EQ(a->chain_pem, "CHAIN-A2");
  EXPECT_TRUE(a->staple_der.empty());
  EXPECT_EQ(a->staple_segment, nullptr);
  EXPECT_EQ(a->staple_version, 0u);
}

TEST(ApplySegment, SameCertificateVersionKeepsItsStaple) {
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_certificate("name:a", 10, CertState::kWithheldRevoked, 2'000'000'000, "CHAIN-A", "KEY-A");
  auto r = apply_segment(base, segment(d, 2, 1));
  ASSERT_TRUE(r);
  const CertEntry* a = cert(*r->snapshot, "name:a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->state, CertState::kWithheldRevoked);
  EXPECT_EQ(str(a->staple_der), "DER-A");
  EXPECT_EQ(a->staple_version, 100u);
  EXPECT_EQ(a->staple_segment, cert(*base, "name:a")->staple_segment);
}

TEST(ApplySegment, StapleInTheSameDeltaAsItsNewCertificateApplies) {
  // The staple record comes first in the segment; certificates apply first.
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_staple("name:a", 101, StapleStatus::kGood, 10, 99, "DER-A2");
  d.add_certificate("name:a", 11, CertState::kServe, 7, "CHAIN-A2", "KEY-A2");
  auto r = apply_segment(base, segment(d, 2, 1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->staples_orphaned, 0u);
  const CertEntry* a = cert(*r->snapshot, "name:a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->version, 11u);
  EXPECT_EQ(str(a->staple_der), "DER-A2");
  EXPECT_EQ(a->staple_version, 101u);
}

TEST(ApplySegment, TicketKeyChangesAreDetected) {
  const auto base = base_snapshot();
  struct Case {
    const char* what;
    size_t count;
    uint8_t seed;
    uint64_t version;
    bool changed;
  };
  for (const Case c : {Case{"same keys, same version", 1, 1, 1, false}, Case{"other bytes", 1, 2, 1, true},
                       Case{"new version", 1, 1, 2, true}, Case{"a second key", 2, 1, 1, true}}) {
    SegmentBuilder d;
    d.add_ticket_keys(tickets(c.count, c.seed), c.version);
    auto r = apply_segment(base, segment(d, 2, 1));
    ASSERT_TRUE(r) << c.what;
    EXPECT_EQ(r->tickets_changed, c.changed) << c.what;
    EXPECT_EQ(r->snapshot->ticket_keys.size(), c.count * snapshot::kTicketKeySize) << c.what;
    EXPECT_EQ(r->snapshot->tickets_version, c.version) << c.what;
  }
  // A re-attach (full segment) with the same keys: no change.
  auto full = apply_segment(base, segment(full_builder(), 2, 0));
  ASSERT_TRUE(full);
  EXPECT_FALSE(full->tickets_changed);
}

TEST(ApplySegment, ConfigPresentAndChanged) {
  const auto base = base_snapshot();
  struct Case {
    const char* what;
    const char* text;
    uint64_t version;
    bool changed;
  };
  for (const Case c : {Case{"same", "cfg-1", 1, false}, Case{"new text", "cfg-2", 1, true},
                       Case{"new version", "cfg-1", 2, true}, Case{"prefix", "cfg-", 1, true}}) {
    SegmentBuilder d;
    d.add_config(c.text, c.version);
    auto r = apply_segment(base, segment(d, 2, 1));
    ASSERT_TRUE(r) << c.what;
    EXPECT_TRUE(r->config_present) << c.what;
    EXPECT_EQ(r->config_changed, c.changed) << c.what;
    EXPECT_EQ(r->snapshot->config_text, c.text) << c.what;
  }
  auto full = apply_segment(base, segment(full_builder(), 2, 0));
  ASSERT_TRUE(full);
  EXPECT_TRUE(full->config_present);
  EXPECT_FALSE(full->config_changed);
}

TEST(ApplySegment, FullSegmentReplacesEverything) {
  const auto base = base_snapshot();
  SegmentBuilder f;
  f.add_config("cfg-1", 1);
  f.add_ticket_keys(tickets(1, 1), 1);
  f.add_certificate("name:c", 1, CertState::kServe, 0, "CC", "KC");
  auto r = apply_segment(base, segment(f, 5, 0));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->snapshot->generation, 5u);
  EXPECT_EQ(r->snapshot->certs.size(), 1u);
  EXPECT_EQ(cert(*r->snapshot, "name:a"), nullptr);
  EXPECT_EQ(cert(*r->snapshot, "name:b"), nullptr);
  EXPECT_NE(cert(*r->snapshot, "name:c"), nullptr);
  EXPECT_EQ(base->certs.size(), 2u);
}

TEST(ApplySegment, DeltaWithWrongBaseIsRefused) {
  const auto base = base_snapshot();
  SegmentBuilder d;
  d.add_certificate("name:c", 1, CertState::kServe, 0, "c", "k");
  for (uint64_t wrong_base : {2u, 7u}) {
    auto r = apply_segment(base, segment(d, 9, wrong_base));
    ASSERT_FALSE(r) << wrong_base;
    EXPECT_EQ(r.error(), ApplyError::kBaseMismatch);
  }
  // A delta with nothing in service.
  auto none = apply_segment(nullptr, segment(d, 2, 1));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), ApplyError::kBaseMismatch);
}

TEST(ApplySegment, StaleGenerationIsRefused) {
  SegmentBuilder d;
  d.add_certificate("name:c", 1, CertState::kServe, 0, "c", "k");
  auto at5 = apply_segment(nullptr, segment(full_builder(), 5, 0));
  ASSERT_TRUE(at5);
  for (uint64_t gen : {5u, 4u, 1u}) {
    auto full = apply_segment(at5->snapshot, segment(full_builder(), gen, 0));
    ASSERT_FALSE(full) << gen;
    EXPECT_EQ(full.error(), ApplyError::kStaleGeneration) << gen;
  }
  auto delta = apply_segment(at5->snapshot, segment(d, 5, 4));
  ASSERT_FALSE(delta);
  EXPECT_EQ(delta.error(), ApplyError::kStaleGeneration);
}

TEST(ApplySegment, FullWithoutConfigOrTicketsIsRefused) {
  SegmentBuilder no_config;
  no_config.add_ticket_keys(tickets(1, 1), 1);
  no_config.add_certificate("name:a", 1, CertState::kServe, 0, "c", "k");
  auto r1 = apply_segment(nullptr, segment(no_config, 1, 0));
  ASSERT_FALSE(r1);
  EXPECT_EQ(r1.error(), ApplyError::kFullWithoutConfig);

  SegmentBuilder no_tickets;
  no_tickets.add_config("c", 1);
  auto r2 = apply_segment(nullptr, segment(no_tickets, 1, 0));
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error(), ApplyError::kFullWithoutTickets);

  // Also on top of a snapshot that has both: a full segment replaces everything.
  const auto base = base_snapshot();
  auto r3 = apply_segment(base, segment(no_tickets, 2, 0));
  ASSERT_FALSE(r3);
  EXPECT_EQ(r3.error(), ApplyError::kFullWithoutTickets);
  auto r4 = apply_segment(base, segment(SegmentBuilder(), 2, 0));
  ASSERT_FALSE(r4);
  EXPECT_EQ(r4.error(), ApplyError::kFullWithoutConfig);
}

TEST(ApplySegment, SegmentsLiveAsLongAsTheirRecordsAreInService) {
  std::weak_ptr<const MappedSegment> first;
  std::shared_ptr<const Snapshot> s2;
  {
    auto seg1 = segment(full_builder(), 1, 0);
    first = seg1;
    auto r1 = apply_segment(nullptr, seg1);
    ASSERT_TRUE(r1);
    SegmentBuilder d;
    d.add_certificate("name:b", 21, CertState::kServe, 0, "CHAIN-B2", "KEY-B2");
    auto r2 = apply_segment(r1->snapshot, segment(d, 2, 1));
    ASSERT_TRUE(r2);
    s2 = r2->snapshot;
  }
  // Generation 2 still uses generation 1's config, tickets and name:a.
  ASSERT_FALSE(first.expired());
  EXPECT_EQ(s2->config_text, "cfg-1");
  EXPECT_EQ(cert(*s2, "name:a")->chain_pem, "CHAIN-A");
  EXPECT_EQ(cert(*s2, "name:b")->chain_pem, "CHAIN-B2");
  // A full segment replaces them all: the first segment goes.
  auto r3 = apply_segment(s2, segment(full_builder(), 3, 0));
  ASSERT_TRUE(r3);
  s2.reset();
  EXPECT_TRUE(first.expired());
}

TEST(ApplySegment, KeyHelpers) {
  EXPECT_EQ(named_cert_key("www"), "name:www");
  EXPECT_EQ(dir_cert_key("certs", "a.example.com"), "dir:certs/a.example.com");
  EXPECT_EQ(dir_wildcard_key("certs", "example.com"), "dir:certs/*.example.com");
  EXPECT_NE(named_cert_key("certs/a"), dir_cert_key("certs", "a"));
}

TEST(ApplySegment, SnapshotSlotPublishes) {
  SnapshotSlot slot;
  EXPECT_EQ(slot.generation(), 0u);
  EXPECT_EQ(slot.get(), nullptr);
  const auto s = base_snapshot();
  slot.publish(s);
  EXPECT_EQ(slot.generation(), 1u);
  EXPECT_EQ(slot.get(), s);
  slot.publish(nullptr);
  EXPECT_EQ(slot.generation(), 0u);
}

// ---------------------------------------------------------------------------
// MappedSegment::map: only sealed memfds holding a valid segment.

UniqueFd memfd_with(const std::vector<std::byte>& bytes, unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING) {
  UniqueFd fd(memfd_create("lode-test", flags));
  EXPECT_TRUE(fd);
  if (!bytes.empty()) EXPECT_EQ(write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  return fd;
}

UniqueFd sealed_with(const std::vector<std::byte>& bytes,
                     int seals = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) {
  UniqueFd fd = memfd_with(bytes);
  EXPECT_EQ(fcntl(fd.get(), F_ADD_SEALS, seals), 0) << std::strerror(errno);
  return fd;
}

// The permissions of the mapping holding `p`, from /proc/self/maps ("r--s").
std::string mapping_perms(const void* p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms;
    in >> range >> perms;
    const auto dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (addr >= lo && addr < hi) return perms;
  }
  return "";
}

TEST(ApplySegmentMap, SealedMemfdFromTheBuilderMapsReadOnly) {
  auto fd = full_builder().seal(3, 0);
  ASSERT_TRUE(fd) << fd.error();
  const int seals = fcntl(fd->get(), F_GET_SEALS);
  EXPECT_EQ(seals, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  struct stat st{};
  ASSERT_EQ(fstat(fd->get(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // Sealed: the writer cannot change it any more either.
  const char x = 'x';
  EXPECT_EQ(pwrite(fd->get(), &x, 1, 100), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(ftruncate(fd->get(), 4096), 0);

  auto seg = MappedSegment::map(fd->get());
  ASSERT_TRUE(seg) << seg.error().message;
  { UniqueFd gone = std::move(*fd); }  // the mapping outlives the descriptor
  const auto& v = (*seg)->view();
  EXPECT_EQ(v.generation(), 3u);
  EXPECT_EQ(v.record_count(), 5u);
  EXPECT_EQ((*seg)->size(), static_cast<size_t>(st.st_size));
  EXPECT_EQ(mapping_perms(v.record(0).data.data()), "r--s");
  auto r = apply_segment(nullptr, *seg);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->snapshot->config_text, "cfg-1");
}

TEST(ApplySegmentMap, UnsealedMemfdIsRefused) {
  const auto bytes = full_builder().bytes(1, 0);
  {
    UniqueFd fd = memfd_with(bytes);
    auto seg = MappedSegment::map(fd.get());
    ASSERT_FALSE(seg);
    EXPECT_NE(seg.error().message.find("not sealed"), std::string::npos) << seg.error().message;
    EXPECT_EQ(seg.error().code, snapshot::kNackUnsealed);
  }
  // Partly sealed: writes or resizing still possible.
  for (int seals : {F_SEAL_WRITE, F_SEAL_GROW | F_SEAL_SHRINK, F_SEAL_WRITE | F_SEAL_SHRINK, F_SEAL_SEAL}) {
    UniqueFd fd = sealed_with(bytes, seals);
    auto seg = MappedSegment::map(fd.get());
    EXPECT_FALSE(seg) << "seals " << seals;
  }
  // Sealed against writes and resizing without F_SEAL_SEAL is enough.
  UniqueFd ok = sealed_with(bytes, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
  EXPECT_TRUE(MappedSegment::map(ok.get()));
}

TEST(ApplySegmentMap, NotAMemfdIsRefused) {
  const auto bytes = full_builder().bytes(1, 0);
  // A memfd that cannot be sealed (reports F_SEAL_SEAL only).
  UniqueFd plain = memfd_with(bytes, MFD_CLOEXEC);
  EXPECT_FALSE(MappedSegment::map(plain.get()));
  // A pipe and a regular file.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_FALSE(MappedSegment::map(p[0]));
  close(p[0]);
  close(p[1]);
  test::TempDir dir;
  const std::string path = dir.write("segment", std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                                                 bytes.size()));
  UniqueFd file(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file);
  EXPECT_FALSE(MappedSegment::map(file.get()));
  EXPECT_FALSE(MappedSegment::map(-1));
}

TEST(ApplySegmentMap, SealedButInvalidIsRefused) {
  auto bytes = full_builder().bytes(1, 0);
  bytes[bytes.size() - 3] ^= std::byte{0x40};
  UniqueFd corrupt = sealed_with(bytes);
  auto seg = MappedSegment::map(corrupt.get());
  ASSERT_FALSE(seg);
  EXPECT_NE(seg.error().message.find("checksum"), std::string::npos) << seg.error().message;
  EXPECT_EQ(seg.error().code, static_cast<uint64_t>(snapshot::SegmentError::kBadChecksum));

  UniqueFd empty = sealed_with({});
  EXPECT_FALSE(MappedSegment::map(empty.get()));
  UniqueFd short_one = sealed_with(std::vector<std::byte>(sizeof(snapshot::SegmentHeader) - 1));
  EXPECT_FALSE(MappedSegment::map(short_one.get()));
  UniqueFd zeros = sealed_with(std::vector<std::byte>(4096));
  auto z = MappedSegment::map(zeros.get());
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().message.find("magic"), std::string::npos) << z.error().message;
}

TEST(ApplySegmentMap, FromBytesRefusesGarbage) {
  EXPECT_FALSE(MappedSegment::from_bytes({}));
  std::vector<std::byte> junk(300, std::byte{0x5a});
  EXPECT_FALSE(MappedSegment::from_bytes(junk));
  auto ok = MappedSegment::from_bytes(full_builder().bytes(1, 0));
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)->view().record_count(), 5u);
}

// ---------------------------------------------------------------------------
// ControlLink, with a fake control plane on the socket.

using snapshot::ChannelMessage;
using snapshot::MessageType;

int connect_to(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::optional<ChannelMessage> recv_within(int fd, std::chrono::milliseconds limit = 5s) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(limit.count())) <= 0) return std::nullopt;
  ChannelMessage m;
  int got = -1;
  if (snapshot::recv_message(fd, m, &got) != 0) return std::nullopt;
  if (got >= 0) close(got);
  return m;
}

// True when the peer closed within the limit.
bool closed_within(int fd, std::chrono::milliseconds limit = 5s) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(limit.count())) <= 0) return false;
  char buf[64];
  return recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 0;
}

// reload: the SIGHUP reload the segment answers (0: none).
int send_segment(int sock, int memfd, uint64_t generation, uint64_t reload = 0) {
  ChannelMessage m;
  m.type = static_cast<uint16_t>(MessageType::kSegment);
  m.generation = generation;
  m.value = reload;
  return snapshot::send_message(sock, m, memfd);
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

class ControlLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/control.sock";
    auto l = ControlLink::listen(
        path_,
        [this](const ApplyResult& r) -> Result<void, std::string> {
          std::unique_lock lock(mu_);
          published_.push_back(r.snapshot->generation);
          entered_ = true;
          cv_.notify_all();
          cv_.wait(lock, [&] { return !hold_; });
          if (!fail_with_.empty()) return unexpected(fail_with_);
          return {};
        },
        [this](const std::string& json) {
          std::lock_guard lock(mu_);
          events_.push_back(json);
        });
    ASSERT_TRUE(l) << l.error();
    link_ = std::move(*l);
    link_->start();
  }
  void TearDown() override {
    {
      std::lock_guard lock(mu_);
      hold_ = false;
    }
    cv_.notify_all();
    link_.reset();
    for (int fd : fds_) close(fd);
  }

  // Connects and reads the hello; returns the socket.
  int attach(uint64_t expect_hello) {
    const int fd = connect_to(path_);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    fds_.push_back(fd);
    const auto hello = recv_within(fd);
    EXPECT_TRUE(hello.has_value());
    if (hello) {
      EXPECT_EQ(hello->type, static_cast<uint16_t>(MessageType::kHello));
      EXPECT_EQ(hello->value, expect_hello);
    }
    return fd;
  }

  // Sends a segment and returns the answer.
  std::optional<ChannelMessage> publish(int sock, const SegmentBuilder& b, uint64_t gen, uint64_t base,
                                        uint64_t reload = 0) {
    auto fd = b.seal(gen, base);
    EXPECT_TRUE(fd);
    if (!fd) return std::nullopt;
    EXPECT_EQ(send_segment(sock, fd->get(), gen, reload), 0);
    return recv_within(sock);
  }

  static void expect_ack(const std::optional<ChannelMessage>& m, uint64_t gen) {
    ASSERT_TRUE(m.has_value()) << "no answer";
    EXPECT_EQ(m->type, static_cast<uint16_t>(MessageType::kAck));
    EXPECT_EQ(m->generation, gen);
  }
  static void expect_nack(const std::optional<ChannelMessage>& m, uint64_t gen) {
    ASSERT_TRUE(m.has_value()) << "no answer";
    EXPECT_EQ(m->type, static_cast<uint16_t>(MessageType::kNack));
    EXPECT_EQ(m->generation, gen);
  }

  size_t publish_calls() {
    std::lock_guard lock(mu_);
    return published_.size();
  }
  bool saw_event(std::string_view needle) {
    std::lock_guard lock(mu_);
    for (const auto& e : events_) {
      if (e.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  test::TempDir dir_;
  std::string path_;
  std::unique_ptr<ControlLink> link_;
  std::vector<int> fds_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> published_;
  std::vector<std::string> events_;
  std::string fail_with_;
  bool hold_ = false;
  bool entered_ = false;
};

TEST_F(ControlLinkTest, HelloThenFullSegmentIsAckedAndPublished) {
  EXPECT_FALSE(link_->wait_for_snapshot(10ms));
  EXPECT_EQ(link_->current(), nullptr);
  const int cp = attach(0);
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  EXPECT_EQ(publish_calls(), 1u);
  EXPECT_TRUE(link_->wait_for_snapshot(1s));
  ASSERT_NE(link_->current(), nullptr);
  EXPECT_EQ(link_->current()->generation, 5u);
  EXPECT_EQ(link_->generation(), 5u);
  EXPECT_EQ(link_->current()->config_text, "cfg-1");
  EXPECT_EQ(link_->stats().segments_applied.load(), 1u);
  EXPECT_EQ(link_->stats().segments_refused.load(), 0u);
  EXPECT_EQ(link_->stats().attaches.load(), 1u);
  EXPECT_TRUE(saw_event("control_plane_attached"));
}

// A reload the control plane refused is counted (the signal loop answers
// systemd with it); it changes nothing in service, and a descriptor wrongly
// attached to it is closed.
TEST_F(ControlLinkTest, AReloadTheControlPlaneRefusedIsCountedAndChangesNothing) {
  const int cp = attach(0);
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  EXPECT_EQ(link_->stats().reloads_refused.load(), 0u);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ChannelMessage m;
  m.type = static_cast<uint16_t>(MessageType::kReloadRefused);
  m.generation = 5;
  m.value = 1;
  ASSERT_EQ(snapshot::send_message(cp, m, p[0]), 0);
  close(p[0]);
  m.value = 2;
  ASSERT_EQ(snapshot::send_message(cp, m), 0);
  // Messages are taken in order: once the next segment is acknowledged, both
  // refusals have been read.
  expect_ack(publish(cp, full_builder(), 6, 0), 6);
  EXPECT_EQ(link_->stats().reloads_refused.load(), 2u);
  EXPECT_EQ(link_->stats().reload_answered.load(), 2u);  // the refusals named reloads 1 and 2
  EXPECT_EQ(link_->stats().segments_refused.load(), 0u);
  EXPECT_EQ(link_->stats().segments_applied.load(), 2u);
  EXPECT_EQ(publish_calls(), 2u);
  // The attached descriptor was closed: the pipe has no reader left.
  pollfd w{p[1], POLLOUT, 0};
  ASSERT_EQ(poll(&w, 1, 0), 1);
  EXPECT_NE(w.revents & POLLERR, 0);
  close(p[1]);
}

// Each answer names the SIGHUP reload it answers (StatsSegment::ask_reload's
// number), and the dataplane's READY=1 waits for its own: the highest named
// is kept, a segment answers once in service or refused for good (a delta
// on the wrong base is sent again whole: no answer yet), and an answer to
// something else (a segment naming no reload, an earlier reload's refusal)
// moves nothing.
TEST_F(ControlLinkTest, AnswersNameTheReloadTheyAnswer) {
  const int cp = attach(0);
  const auto answered = [&] { return link_->stats().reload_answered.load(); };
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  EXPECT_EQ(answered(), 0u);  // no reload named
  expect_ack(publish(cp, full_builder(), 6, 0, 3), 6);
  EXPECT_EQ(answered(), 3u);
  SegmentBuilder d;
  d.add_certificate("name:c", 1, CertState::kServe, 0, "c", "k");
  expect_nack(publish(cp, d, 8, 7, 4), 8);  // wrong base: sent again, no answer yet
  EXPECT_EQ(answered(), 3u);
  {
    std::lock_guard lock(mu_);
    fail_with_ = "workers did not take it";
  }
  expect_nack(publish(cp, full_builder(), 7, 0, 4), 7);  // refused for good: answered
  EXPECT_EQ(answered(), 4u);
  {
    std::lock_guard lock(mu_);
    fail_with_.clear();
  }
  ChannelMessage m;
  m.type = static_cast<uint16_t>(MessageType::kReloadRefused);
  m.generation = 6;
  m.value = 2;  // an earlier reload's refusal, late
  ASSERT_EQ(snapshot::send_message(cp, m), 0);
  m.value = 5;
  ASSERT_EQ(snapshot::send_message(cp, m), 0);
  expect_ack(publish(cp, full_builder(), 7, 0, 1), 7);  // read in order: both refusals are in
  EXPECT_EQ(answered(), 5u);
  EXPECT_EQ(link_->stats().reloads_refused.load(), 2u);
}

TEST_F(ControlLinkTest, DeltaOnTheWrongBaseIsNackedWithNackBase) {
  const int cp = attach(0);
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  SegmentBuilder d;
  d.add_certificate("name:c", 1, CertState::kServe, 0, "c", "k");
  const auto nack = publish(cp, d, 7, 6);
  expect_nack(nack, 7);
  ASSERT_TRUE(nack);
  EXPECT_EQ(nack->value, snapshot::kNackBase);
  EXPECT_EQ(link_->generation(), 5u);
  EXPECT_EQ(publish_calls(), 1u);
  EXPECT_EQ(link_->stats().segments_refused.load(), 1u);
  EXPECT_TRUE(saw_event("segment_refused"));
  // The right base goes through.
  expect_ack(publish(cp, d, 6, 5), 6);
  EXPECT_EQ(link_->generation(), 6u);
  EXPECT_NE(link_->current()->certs.find("name:c"), nullptr);
}

TEST_F(ControlLinkTest, InvalidSegmentsAreNackedAndTheLastGoodStays) {
  const int cp = attach(0);
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  const auto good = full_builder().bytes(6, 0);

  {  // not sealed
    UniqueFd fd = memfd_with(good);
    ASSERT_EQ(send_segment(cp, fd.get(), 6), 0);
    const auto a = recv_within(cp);
    expect_nack(a, 6);
    ASSERT_TRUE(a);
    EXPECT_NE(a->value, snapshot::kNackBase);
  }
  {  // sealed, one byte changed
    auto bad = good;
    bad[bad.size() / 2] ^= std::byte{1};
    UniqueFd fd = sealed_with(bad);
    ASSERT_EQ(send_segment(cp, fd.get(), 6), 0);
    expect_nack(recv_within(cp), 6);
  }
  {  // not a memfd at all
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_EQ(send_segment(cp, p[0], 6), 0);
    close(p[0]);
    close(p[1]);
    expect_nack(recv_within(cp), 6);
  }
  {  // the message's generation is not the segment's
    UniqueFd fd = sealed_with(good);
    ASSERT_EQ(send_segment(cp, fd.get(), 9), 0);
    expect_nack(recv_within(cp), 9);
  }
  // Stale: not above the generation in service.
  expect_nack(publish(cp, full_builder(), 5, 0), 5);
  // A full segment without tickets.
  SegmentBuilder no_tickets;
  no_tickets.add_config("c", 1);
  expect_nack(publish(cp, no_tickets, 6, 0), 6);

  EXPECT_EQ(link_->generation(), 5u);
  EXPECT_EQ(publish_calls(), 1u);
  EXPECT_EQ(link_->stats().segments_refused.load(), 6u);
  // Still working.
  expect_ack(publish(cp, full_builder(), 6, 0), 6);
  EXPECT_EQ(link_->generation(), 6u);
}

// The header: "kNack ... value = a SegmentError, or kNackBase". A segment that
// fails SegmentView::open on its checksum is nacked with kBadChecksum, so the
// control plane's "publish_refused" event names the real fault.
TEST_F(ControlLinkTest, NackValueIsTheSegmentError) {
  const int cp = attach(0);
  auto bad = full_builder().bytes(5, 0);
  bad[bad.size() / 2] ^= std::byte{1};
  UniqueFd fd = sealed_with(bad);
  ASSERT_EQ(send_segment(cp, fd.get(), 5), 0);
  const auto nack = recv_within(cp);
  expect_nack(nack, 5);
  ASSERT_TRUE(nack);
  EXPECT_EQ(nack->value, static_cast<uint64_t>(snapshot::SegmentError::kBadChecksum));
}

TEST_F(ControlLinkTest, MalformedMessagesAreIgnoredAndTheLinkKeepsWorking) {
  const int cp = attach(0);
  const size_t fds_before = open_fds();
  for (int i = 0; i < 10; ++i) {
    // Too short, too long, each with a descriptor attached that must not leak.
    UniqueFd carried = memfd_with(full_builder().bytes(1, 0));
    char small[10] = {};
    char big[40] = {};
    using Buf = std::pair<char*, size_t>;
    for (const auto& [buf, len] : {Buf{small, sizeof small}, Buf{big, sizeof big}}) {
      iovec iov{buf, len};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      const int f = carried.get();
      std::memcpy(CMSG_DATA(c), &f, sizeof f);
      ASSERT_EQ(sendmsg(cp, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(len));
    }
    // Right size, wrong magic / version; a hello from the control plane.
    ChannelMessage m;
    m.magic = 0x12345678;
    ASSERT_EQ(send(cp, &m, sizeof m, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof m));
    m = ChannelMessage{};
    m.version = 2;
    ASSERT_EQ(send(cp, &m, sizeof m, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof m));
    m = ChannelMessage{};
    m.type = static_cast<uint16_t>(MessageType::kHello);
    ASSERT_EQ(snapshot::send_message(cp, m, carried.get()), 0);
  }
  // None of that is answered.
  EXPECT_FALSE(recv_within(cp, 200ms).has_value());
  // A segment message without a descriptor is answered: refused, so the
  // control plane does not wait for an ack forever.
  ChannelMessage seg_msg;
  seg_msg.type = static_cast<uint16_t>(MessageType::kSegment);
  seg_msg.generation = 1;
  ASSERT_EQ(snapshot::send_message(cp, seg_msg), 0);
  const auto nack = recv_within(cp);
  expect_nack(nack, 1);
  if (nack) EXPECT_EQ(nack->value, snapshot::kNackUnsealed);
  // In order on the socket: once this is acked, everything above was read.
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  EXPECT_EQ(link_->generation(), 5u);
  EXPECT_EQ(open_fds(), fds_before) << "descriptors received with bad messages leaked";
}

TEST_F(ControlLinkTest, ReattachGetsHelloWithTheGenerationInService) {
  const int first = attach(0);
  expect_ack(publish(first, full_builder(), 5, 0), 5);
  const int second = attach(5);
  // The first connection is dropped: the newest control plane wins.
  EXPECT_TRUE(closed_within(first));
  SegmentBuilder d;
  d.add_certificate("name:c", 1, CertState::kServe, 0, "c", "k");
  expect_ack(publish(second, d, 6, 5), 6);
  EXPECT_EQ(link_->stats().attaches.load(), 2u);

  // The control plane goes away: the snapshot stays in service; a restarted
  // one attaches and is told generation 6.
  close(second);
  fds_.pop_back();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(link_->generation(), 6u);
  const int third = attach(6);
  expect_ack(publish(third, full_builder(), 7, 0), 7);
  EXPECT_TRUE(saw_event("control_plane_detached"));
}

TEST_F(ControlLinkTest, PublishErrorIsNackedAndGenerationUnchanged) {
  const int cp = attach(0);
  {
    std::lock_guard lock(mu_);
    fail_with_ = "workers did not take it";
  }
  expect_nack(publish(cp, full_builder(), 5, 0), 5);
  EXPECT_EQ(publish_calls(), 1u);
  EXPECT_EQ(link_->generation(), 0u);
  EXPECT_EQ(link_->current(), nullptr);
  EXPECT_FALSE(link_->wait_for_snapshot(10ms));
  EXPECT_TRUE(saw_event("workers did not take it"));
  {
    std::lock_guard lock(mu_);
    fail_with_.clear();
  }
  expect_ack(publish(cp, full_builder(), 5, 0), 5);
  EXPECT_EQ(link_->generation(), 5u);
}

TEST_F(ControlLinkTest, SocketIsMode0600AndRemovedWithTheLink) {
  struct stat st{};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  link_.reset();
  EXPECT_NE(stat(path_.c_str(), &st), 0);
}

TEST(ControlLinkListen, ReplacesAStaleSocketAndRefusesBadPaths) {
  test::TempDir dir;
  const std::string path = dir.write("control.sock", "stale");
  auto nothing = [](const ApplyResult&) -> Result<void, std::string> { return {}; };
  auto quiet = [](const std::string&) {};
  auto link = ControlLink::listen(path, nothing, quiet);
  ASSERT_TRUE(link) << link.error();
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));

  EXPECT_FALSE(ControlLink::listen("", nothing, quiet));
  EXPECT_FALSE(ControlLink::listen(dir.path() + "/" + std::string(120, 'x'), nothing, quiet));
  EXPECT_FALSE(ControlLink::listen(dir.path() + "/no/such/dir/control.sock", nothing, quiet));
}

// A control plane that restarts while the link is busy applying a segment:
// the old connection's hangup and the new connection are seen in one poll
// pass. The link must not then block reading the new connection (whose
// control plane is waiting for nothing): stop() — the dataplane's shutdown —
// returns promptly.
TEST_F(ControlLinkTest, ReattachWhileBusyLeavesTheLinkStoppable) {
  const int first = attach(0);
  {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  auto fd = full_builder().seal(5, 0);
  ASSERT_TRUE(fd);
  ASSERT_EQ(send_segment(first, fd->get(), 5), 0);
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 5s, [&] { return entered_; }));
  }
  // While the link thread is inside Publish: the old control plane dies and
  // its successor connects.
  close(first);
  fds_.erase(fds_.begin());
  const int second = connect_to(path_);
  ASSERT_GE(second, 0);
  fds_.push_back(second);
  {
    std::lock_guard lock(mu_);
    hold_ = false;
  }
  cv_.notify_all();
  const auto hello = recv_within(second);
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->type, static_cast<uint16_t>(MessageType::kHello));
  EXPECT_EQ(hello->value, 5u);

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    link_->stop();
    stopped = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!stopped && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(stopped.load()) << "stop() blocked: the link thread is stuck reading the new connection";
  if (!stopped) {
    // Unblock it so the test ends: any message wakes the blocked read.
    ChannelMessage m;
    m.type = static_cast<uint16_t>(MessageType::kHello);
    snapshot::send_message(second, m);
  }
  stopper.join();
}

}  // namespace
}  // namespace lode::control
