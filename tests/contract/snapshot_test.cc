// lodestone/snapshot.h: the segment the control plane publishes and the
// dataplane validates once (SegmentView::open). Built by
// controlplane/snapshot_writer; every refusal is checked for its exact
// SegmentError (and the record it names), entries are crafted by hand where
// the builder cannot produce the fault, with the checksum fixed up so the
// check under test is the one that fires.
#include "lodestone/snapshot.h"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/snapshot_writer.h"

namespace lode::snapshot {
namespace {

using cp::SegmentBuilder;
using Bytes = std::vector<std::byte>;

constexpr size_t kHeader = sizeof(SegmentHeader);
constexpr size_t kEntry = sizeof(RecordEntry);

std::vector<std::byte> ticket_bytes(size_t count, uint8_t seed = 1) {
  std::vector<std::byte> k(count * kTicketKeySize);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::byte>((i * 7 + seed) & 0xff);
  return k;
}

std::string_view text(std::span<const std::byte> d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

SegmentHeader header_of(const Bytes& b) {
  SegmentHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  return h;
}

void set_header(Bytes& b, const SegmentHeader& h) { std::memcpy(b.data(), &h, sizeof h); }

// Recomputes the checksum over [header_size, total_size) as a correct writer
// would, so that a crafted fault is caught by its own check.
void fix_checksum(Bytes& b) {
  SegmentHeader h = header_of(b);
  h.checksum = checksum(std::span<const std::byte>(b).subspan(kHeader, h.total_size - kHeader));
  set_header(b, h);
}

RecordEntry entry_of(const Bytes& b, uint32_t i) {
  RecordEntry e;
  std::memcpy(&e, b.data() + kHeader + i * kEntry, sizeof e);
  return e;
}

void set_entry(Bytes& b, uint32_t i, const RecordEntry& e) {
  std::memcpy(b.data() + kHeader + i * kEntry, &e, sizeof e);
  fix_checksum(b);
}

// Overwrites `len` payload bytes of record i at `at` and fixes the checksum.
void patch_data(Bytes& b, uint32_t i, size_t at, const void* p, size_t len) {
  const RecordEntry e = entry_of(b, i);
  std::memcpy(b.data() + e.data_offset + at, p, len);
  fix_checksum(b);
}

std::optional<SegmentFault> fault_of(const Bytes& b) {
  auto v = SegmentView::open(b);
  if (v) return std::nullopt;
  return v.error();
}

// The error open() gives, or a failure when it opened.
#define EXPECT_SEGMENT_ERROR(bytes, err)                                         \
  do {                                                                           \
    const auto f_ = fault_of(bytes);                                             \
    ASSERT_TRUE(f_.has_value()) << "segment opened, expected " << to_string(err); \
    EXPECT_EQ(f_->error, err) << f_->message();                                  \
  } while (0)

#define EXPECT_RECORD_ERROR(bytes, err, rec)                                     \
  do {                                                                           \
    const auto f_ = fault_of(bytes);                                             \
    ASSERT_TRUE(f_.has_value()) << "segment opened, expected " << to_string(err); \
    EXPECT_EQ(f_->error, err) << f_->message();                                  \
    EXPECT_EQ(f_->record, rec) << f_->message();                                 \
  } while (0)

// A full segment with one record of every kind: config, two certificates, a
// staple for the first, ticket keys.
SegmentBuilder full_builder() {
  SegmentBuilder b;
  b.add_config("[[listener]]\nname = \"web\"\n", 11);
  b.add_certificate("name:www", 22, CertState::kServe, 1'900'000'000, "CHAIN-PEM-www", "KEY-PEM-www");
  b.add_certificate("dir:certs/*.example.com", 33, CertState::kWithheldRevoked, -5, "C", "K");
  b.add_staple("name:www", 44, StapleStatus::kGood, 1000, 2000, "OCSP-DER");
  b.add_ticket_keys(ticket_bytes(3), 55);
  return b;
}

Bytes full_segment(uint64_t generation = 7) { return full_builder().bytes(generation, 0); }

// One certificate only (record 0), for payload crafting.
Bytes one_cert(std::string_view chain = "CHAIN", std::string_view key = "KEY") {
  SegmentBuilder b;
  b.add_certificate("name:a", 1, CertState::kServe, 100, chain, key);
  return b.bytes(2, 1);
}

Bytes one_staple(int64_t this_update = 10, int64_t next_update = 20, std::string_view der = "DER") {
  SegmentBuilder b;
  b.add_staple("name:a", 1, StapleStatus::kGood, this_update, next_update, der);
  return b.bytes(2, 1);
}

// ---------------------------------------------------------------------------
// Round trip.

TEST(SegmentOpen, FullSegmentRoundTripsEveryRecordKind) {
  const Bytes bytes = full_segment(7);
  auto v = SegmentView::open(bytes);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->generation(), 7u);
  EXPECT_EQ(v->base_generation(), 0u);
  EXPECT_TRUE(v->full());
  EXPECT_EQ(v->header().total_size, bytes.size());
  EXPECT_EQ(v->header().layout_version, kLayoutVersion);
  EXPECT_GT(v->header().created_unix_ms, 1'600'000'000'000u);
  ASSERT_EQ(v->record_count(), 5u);

  const Record config = v->record(0);
  EXPECT_EQ(config.kind, RecordKind::kConfig);
  EXPECT_FALSE(config.remove);
  EXPECT_EQ(config.key, "config");
  EXPECT_EQ(config.version, 11u);
  EXPECT_EQ(text(config.data), "[[listener]]\nname = \"web\"\n");

  const Record www = v->record(1);
  EXPECT_EQ(www.kind, RecordKind::kCertificate);
  EXPECT_EQ(www.key, "name:www");
  EXPECT_EQ(www.version, 22u);
  auto c = certificate_of(www.data);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state, CertState::kServe);
  EXPECT_EQ(c->not_after_unix, 1'900'000'000);
  EXPECT_EQ(c->chain_pem, "CHAIN-PEM-www");
  EXPECT_EQ(c->key_pem, "KEY-PEM-www");

  const Record wild = v->record(2);
  EXPECT_EQ(wild.key, "dir:certs/*.example.com");
  auto cw = certificate_of(wild.data);
  ASSERT_TRUE(cw);
  EXPECT_EQ(cw->state, CertState::kWithheldRevoked);
  EXPECT_EQ(cw->not_after_unix, -5);
  EXPECT_EQ(cw->chain_pem, "C");
  EXPECT_EQ(cw->key_pem, "K");

  const Record staple = v->record(3);
  EXPECT_EQ(staple.kind, RecordKind::kStaple);
  EXPECT_EQ(staple.key, "name:www");
  EXPECT_EQ(staple.version, 44u);
  auto s = staple_of(staple.data);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, StapleStatus::kGood);
  EXPECT_EQ(s->this_update_unix, 1000);
  EXPECT_EQ(s->next_update_unix, 2000);
  EXPECT_EQ(text(s->der), "OCSP-DER");

  const Record tickets = v->record(4);
  EXPECT_EQ(tickets.kind, RecordKind::kTicketKeys);
  EXPECT_EQ(tickets.key, "tickets");
  EXPECT_EQ(tickets.version, 55u);
  const auto want = ticket_bytes(3);
  ASSERT_EQ(tickets.data.size(), want.size());
  EXPECT_EQ(std::memcmp(tickets.data.data(), want.data(), want.size()), 0);
}

TEST(SegmentOpen, DeltaRoundTripsRemovalsAndEveryStapleStatus) {
  SegmentBuilder b;
  b.remove(RecordKind::kCertificate, "name:gone");
  b.remove(RecordKind::kStaple, "name:www");
  b.add_staple("name:r", 1, StapleStatus::kRevoked, -10, -9, "x");
  b.add_staple("name:u", 2, StapleStatus::kUnknown, 0, 1, "y");
  b.add_certificate("name:held", 3, CertState::kWithheldNoStaple, 0, "c", "k");
  const Bytes bytes = b.bytes(9, 8);
  auto v = SegmentView::open(bytes);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_FALSE(v->full());
  EXPECT_EQ(v->base_generation(), 8u);
  ASSERT_EQ(v->record_count(), 5u);
  EXPECT_EQ(v->record(0).kind, RecordKind::kCertificate);
  EXPECT_TRUE(v->record(0).remove);
  EXPECT_EQ(v->record(0).key, "name:gone");
  EXPECT_TRUE(v->record(0).data.empty());
  EXPECT_EQ(v->record(1).kind, RecordKind::kStaple);
  EXPECT_TRUE(v->record(1).remove);
  EXPECT_EQ(staple_of(v->record(2).data)->status, StapleStatus::kRevoked);
  EXPECT_EQ(staple_of(v->record(3).data)->status, StapleStatus::kUnknown);
  EXPECT_EQ(certificate_of(v->record(4).data)->state, CertState::kWithheldNoStaple);
}

TEST(SegmentOpen, EmptySegmentAndLongerBufferOpen) {
  const Bytes empty = SegmentBuilder().bytes(1, 0);
  EXPECT_EQ(empty.size(), kHeader);
  auto v = SegmentView::open(empty);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->record_count(), 0u);

  // A file longer than total_size (page rounding): the tail is ignored.
  Bytes longer = full_segment();
  const size_t total = longer.size();
  longer.resize(total + 4096, std::byte{0xee});
  auto l = SegmentView::open(longer);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->header().total_size, total);
}

// ---------------------------------------------------------------------------
// Header.

TEST(SegmentHeaderCheck, TooShort) {
  EXPECT_SEGMENT_ERROR(Bytes{}, SegmentError::kTooShort);
  Bytes b = full_segment();
  b.resize(kHeader - 1);
  EXPECT_SEGMENT_ERROR(b, SegmentError::kTooShort);
}

TEST(SegmentHeaderCheck, BadMagic) {
  for (size_t i = 0; i < kMagic.size(); ++i) {
    Bytes b = full_segment();
    b[i] ^= std::byte{0x20};  // "lODESNAP", "LoDESNAP", ...
    EXPECT_SEGMENT_ERROR(b, SegmentError::kBadMagic);
  }
}

TEST(SegmentHeaderCheck, BadLayoutVersion) {
  for (uint32_t version : {0u, 2u, 0x01000000u}) {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.layout_version = version;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kBadLayoutVersion);
  }
}

TEST(SegmentHeaderCheck, BadHeaderSize) {
  for (uint32_t size : {0u, 63u, 65u, 112u, 0xffffffffu}) {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.header_size = size;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kBadHeaderSize);
  }
}

TEST(SegmentHeaderCheck, TotalSizeLargerThanBufferOrSmallerThanHeader) {
  for (uint64_t delta : {uint64_t{1}, uint64_t{4096}, std::numeric_limits<uint64_t>::max() / 2}) {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.total_size = b.size() + delta;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kBadSize);
  }
  for (uint64_t total : {uint64_t{0}, uint64_t{kHeader - 1}}) {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.total_size = total;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kBadSize);
  }
}

TEST(SegmentHeaderCheck, GenerationZeroOrNotAboveBase) {
  struct Case {
    uint64_t generation, base;
  };
  for (const Case c : {Case{0, 0}, Case{5, 5}, Case{4, 5}, Case{1, std::numeric_limits<uint64_t>::max()}}) {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.generation = c.generation;
    h.base_generation = c.base;
    set_header(b, h);
    SCOPED_TRACE(std::to_string(c.generation) + " on " + std::to_string(c.base));
    EXPECT_SEGMENT_ERROR(b, SegmentError::kBadGeneration);
  }
  // The boundary that is allowed.
  Bytes ok = full_segment();
  SegmentHeader h = header_of(ok);
  h.generation = 6;
  h.base_generation = 5;
  set_header(ok, h);
  EXPECT_TRUE(SegmentView::open(ok));
}

TEST(SegmentHeaderCheck, EveryFlippedBodyByteIsAChecksumMismatch) {
  const Bytes good = full_segment();
  ASSERT_TRUE(SegmentView::open(good));
  for (size_t i = kHeader; i < good.size(); ++i) {
    Bytes b = good;
    b[i] ^= std::byte{0x01};
    const auto f = fault_of(b);
    ASSERT_TRUE(f.has_value()) << "byte " << i;
    EXPECT_EQ(f->error, SegmentError::kBadChecksum) << "byte " << i;
  }
  Bytes b = good;
  SegmentHeader h = header_of(b);
  h.checksum ^= 1;
  set_header(b, h);
  EXPECT_SEGMENT_ERROR(b, SegmentError::kBadChecksum);
}

TEST(SegmentHeaderCheck, ChecksumCoversOnlyUpToTotalSize) {
  // Bytes past total_size are not part of the segment.
  Bytes b = full_segment();
  b.push_back(std::byte{1});
  ASSERT_TRUE(SegmentView::open(b));
  b.back() = std::byte{2};
  EXPECT_TRUE(SegmentView::open(b));
}

TEST(SegmentHeaderCheck, RecordCountTooLarge) {
  {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.record_count = kMaxRecords + 1;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kTooManyRecords);
  }
  {
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.record_count = 0xffffffffu;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kTooManyRecords);
  }
  {
    // One more entry than the body can hold.
    Bytes b = full_segment();
    SegmentHeader h = header_of(b);
    h.record_count = static_cast<uint32_t>((b.size() - kHeader) / kEntry + 1);
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kTooManyRecords);
  }
  {
    // An empty body with one record.
    Bytes b = SegmentBuilder().bytes(1, 0);
    SegmentHeader h = header_of(b);
    h.record_count = 1;
    set_header(b, h);
    EXPECT_SEGMENT_ERROR(b, SegmentError::kTooManyRecords);
  }
}

// ---------------------------------------------------------------------------
// Record bounds.

TEST(SegmentRecordBounds, KeyOutOfBounds) {
  const Bytes good = full_segment();
  const uint64_t total = good.size();
  const uint64_t data_start = kHeader + 5 * kEntry;
  struct Case {
    uint64_t offset;
    uint32_t len;
  };
  for (const Case c : {Case{total - 2, 6}, Case{total + 1, 0}, Case{total + 1, 1}, Case{data_start - 1, 4},
                       Case{0, 8}, Case{kHeader, 8}, Case{std::numeric_limits<uint64_t>::max() - 2, 6},
                       Case{data_start, 0xffffffffu}}) {
    Bytes b = good;
    RecordEntry e = entry_of(b, 3);
    e.key_offset = c.offset;
    e.key_len = c.len;
    set_entry(b, 3, e);
    SCOPED_TRACE(std::to_string(c.offset) + "+" + std::to_string(c.len));
    EXPECT_RECORD_ERROR(b, SegmentError::kBadRecordBounds, 3u);
  }
}

TEST(SegmentRecordBounds, DataOutOfBoundsAndOverflow) {
  const Bytes good = full_segment();
  const uint64_t total = good.size();
  const uint64_t data_start = kHeader + 5 * kEntry;
  struct Case {
    uint64_t offset, len;
  };
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (const Case c : {Case{total - 8, 9}, Case{total + 1, 0}, Case{data_start - 8, 8}, Case{0, 1},
                       Case{kMax, 1}, Case{kMax - 7, 16}, Case{data_start, kMax}, Case{8, kMax - 7},
                       Case{total, 1}}) {
    Bytes b = good;
    RecordEntry e = entry_of(b, 1);
    e.data_offset = c.offset;
    e.data_len = c.len;
    set_entry(b, 1, e);
    SCOPED_TRACE(std::to_string(c.offset) + "+" + std::to_string(c.len));
    EXPECT_RECORD_ERROR(b, SegmentError::kBadRecordBounds, 1u);
  }
}

TEST(SegmentRecordBounds, RecordsMayEndExactlyAtTotalSizeAndOverlap) {
  // A zero-length removal at total_size, and two records sharing their key
  // bytes: both are in bounds.
  SegmentBuilder sb;
  sb.add_certificate("name:a", 1, CertState::kServe, 0, "c", "k");
  sb.remove(RecordKind::kStaple, "name:b");
  Bytes b = sb.bytes(3, 2);
  RecordEntry removal = entry_of(b, 1);
  removal.data_offset = b.size();
  removal.key_offset = entry_of(b, 0).key_offset;  // shares "name:a"
  set_entry(b, 1, removal);
  auto v = SegmentView::open(b);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->record(1).key, "name:a");
}

// ---------------------------------------------------------------------------
// Keys.

TEST(SegmentKey, EmptyKey) {
  Bytes b = full_segment();
  RecordEntry e = entry_of(b, 2);
  e.key_len = 0;
  set_entry(b, 2, e);
  EXPECT_RECORD_ERROR(b, SegmentError::kBadKey, 2u);
}

TEST(SegmentKey, NotPrintableAscii) {
  for (const std::string_view key : {std::string_view("name:a b"), std::string_view("name:a\tb"),
                                     std::string_view("name:\x01"), std::string_view("\x7f"),
                                     std::string_view("name:\x80\xff"), std::string_view("name:a\0b", 8),
                                     std::string_view(" name:a")}) {
    SegmentBuilder sb;
    sb.add_config("x", 1);
    sb.add_certificate(key, 1, CertState::kServe, 0, "c", "k");
    EXPECT_RECORD_ERROR(sb.bytes(2, 1), SegmentError::kBadKey, 1u);
  }
  // Every printable byte is allowed, '!' and '~' included.
  SegmentBuilder sb;
  std::string all;
  for (int c = 0x21; c < 0x7f; ++c) all.push_back(static_cast<char>(c));
  sb.add_certificate(all, 1, CertState::kServe, 0, "c", "k");
  EXPECT_TRUE(SegmentView::open(sb.bytes(2, 1)));
}

TEST(SegmentKey, TooLong) {
  SegmentBuilder longest;
  longest.add_certificate(std::string(kMaxKeyLen, 'k'), 1, CertState::kServe, 0, "c", "k");
  EXPECT_TRUE(SegmentView::open(longest.bytes(2, 1)));

  SegmentBuilder too_long;
  too_long.add_certificate(std::string(kMaxKeyLen + 1, 'k'), 1, CertState::kServe, 0, "c", "k");
  EXPECT_RECORD_ERROR(too_long.bytes(2, 1), SegmentError::kBadKey, 0u);
}

TEST(SegmentKey, DuplicateWithinAKind) {
  SegmentBuilder sb;
  sb.add_certificate("name:a", 1, CertState::kServe, 0, "c", "k");
  sb.add_certificate("name:b", 1, CertState::kServe, 0, "c", "k");
  sb.remove(RecordKind::kCertificate, "name:a");  // an upsert and a removal of one key
  const auto f = fault_of(sb.bytes(2, 1));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->error, SegmentError::kDuplicateKey);
  EXPECT_TRUE(f->record == 0u || f->record == 2u) << f->record;

  SegmentBuilder staples;
  staples.add_staple("name:a", 1, StapleStatus::kGood, 1, 2, "d");
  staples.add_staple("name:a", 2, StapleStatus::kGood, 1, 2, "e");
  EXPECT_SEGMENT_ERROR(staples.bytes(2, 1), SegmentError::kDuplicateKey);

  SegmentBuilder configs;
  configs.add_config("a", 1);
  configs.add_config("b", 2);
  EXPECT_SEGMENT_ERROR(configs.bytes(2, 0), SegmentError::kDuplicateKey);
}

TEST(SegmentKey, SameKeyAllowedAcrossKinds) {
  SegmentBuilder sb;
  sb.add_certificate("name:a", 1, CertState::kServe, 0, "c", "k");
  sb.add_staple("name:a", 1, StapleStatus::kGood, 1, 2, "d");
  sb.remove(RecordKind::kStaple, "name:b");
  sb.remove(RecordKind::kCertificate, "name:b");
  auto v = SegmentView::open(sb.bytes(2, 1));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->record_count(), 4u);
}

// ---------------------------------------------------------------------------
// Kinds and flags.

TEST(SegmentKind, UnknownKind) {
  for (uint16_t kind : {uint16_t{0}, uint16_t{6}, uint16_t{0x100}, uint16_t{0xffff}}) {
    Bytes b = full_segment();
    RecordEntry e = entry_of(b, 4);
    e.kind = kind;
    set_entry(b, 4, e);
    SCOPED_TRACE(kind);
    EXPECT_RECORD_ERROR(b, SegmentError::kBadKind, 4u);
  }
  // An unknown kind as a removal (no data): still its kind that is wrong.
  SegmentBuilder sb;
  sb.remove(RecordKind::kCertificate, "name:a");
  Bytes b = sb.bytes(2, 1);
  RecordEntry e = entry_of(b, 0);
  e.kind = 9;
  set_entry(b, 0, e);
  EXPECT_RECORD_ERROR(b, SegmentError::kBadKind, 0u);
}

TEST(SegmentKind, UnknownFlags) {
  for (uint16_t flags : {uint16_t{2}, uint16_t{3}, uint16_t{0x8000}}) {
    Bytes b = full_segment();
    RecordEntry e = entry_of(b, 1);
    e.flags = flags;
    set_entry(b, 1, e);
    SCOPED_TRACE(flags);
    EXPECT_RECORD_ERROR(b, SegmentError::kBadFlags, 1u);
  }
}

TEST(SegmentKind, RemovalWithData) {
  for (uint32_t rec : {1u, 3u}) {  // a certificate, a staple
    Bytes b = full_segment();
    RecordEntry e = entry_of(b, rec);
    e.flags = kRecordRemove;
    set_entry(b, rec, e);
    EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, rec);
  }
}

TEST(SegmentKind, ConfigAndTicketRemovalRefused) {
  SegmentBuilder config;
  config.remove(RecordKind::kConfig, "config");
  EXPECT_RECORD_ERROR(config.bytes(2, 1), SegmentError::kBadPayload, 0u);

  SegmentBuilder tickets;
  tickets.remove(RecordKind::kTicketKeys, "tickets");
  EXPECT_RECORD_ERROR(tickets.bytes(2, 1), SegmentError::kBadPayload, 0u);

  SegmentBuilder empty_config;
  empty_config.add_config("", 1);
  EXPECT_RECORD_ERROR(empty_config.bytes(2, 1), SegmentError::kBadPayload, 0u);
}

TEST(SegmentKind, ConfigAndTicketsOnlyUnderTheirOwnKeys) {
  // remove() takes any key; a config or tickets record under another key
  // (two configurations in one segment) is refused by its key.
  SegmentBuilder config;
  config.remove(RecordKind::kConfig, "config2");
  EXPECT_RECORD_ERROR(config.bytes(2, 1), SegmentError::kBadKey, 0u);
  SegmentBuilder tickets;
  tickets.remove(RecordKind::kTicketKeys, "name:a");
  EXPECT_RECORD_ERROR(tickets.bytes(2, 1), SegmentError::kBadKey, 0u);
}

// ---------------------------------------------------------------------------
// Payloads.

TEST(SegmentPayload, CertificateLengthsMustAddUp) {
  const Bytes good = one_cert("CHAIN", "KEY");
  ASSERT_TRUE(SegmentView::open(good));
  struct Case {
    uint32_t chain_len, key_len;
  };
  for (const Case c : {Case{5, 2}, Case{5, 4}, Case{4, 3}, Case{6, 3}, Case{0xffffffffu, 9},
                       Case{9, 0xffffffffu}, Case{0xfffffffdu, 11} /* 32-bit sums that wrap to 8 */}) {
    Bytes b = good;
    CertificateData h;
    std::memcpy(&h, b.data() + entry_of(b, 0).data_offset, sizeof h);
    h.chain_len = c.chain_len;
    h.key_len = c.key_len;
    patch_data(b, 0, 0, &h, sizeof h);
    SCOPED_TRACE(std::to_string(c.chain_len) + "+" + std::to_string(c.key_len));
    EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, 0u);
  }
}

TEST(SegmentPayload, CertificateEmptyChainOrKeyOrTruncatedHeader) {
  EXPECT_RECORD_ERROR(one_cert("", "KEYKEY"), SegmentError::kBadPayload, 0u);
  EXPECT_RECORD_ERROR(one_cert("CHAIN", ""), SegmentError::kBadPayload, 0u);
  // data_len shorter than CertificateData.
  Bytes b = one_cert();
  RecordEntry e = entry_of(b, 0);
  e.data_len = sizeof(CertificateData) - 1;
  set_entry(b, 0, e);
  EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, 0u);
}

TEST(SegmentPayload, CertificateBadState) {
  for (uint16_t state : {uint16_t{kMaxCertState + 1}, uint16_t{0xffff}}) {
    Bytes b = one_cert();
    patch_data(b, 0, offsetof(CertificateData, state), &state, sizeof state);
    SCOPED_TRACE(state);
    EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, 0u);
  }
  Bytes b = one_cert();
  const uint16_t max_state = kMaxCertState;
  patch_data(b, 0, offsetof(CertificateData, state), &max_state, sizeof max_state);
  EXPECT_TRUE(SegmentView::open(b));
}

TEST(SegmentPayload, StapleNextUpdateMustFollowThisUpdate) {
  EXPECT_RECORD_ERROR(one_staple(20, 20), SegmentError::kBadPayload, 0u);
  EXPECT_RECORD_ERROR(one_staple(20, 19), SegmentError::kBadPayload, 0u);
  EXPECT_RECORD_ERROR(one_staple(std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()),
                      SegmentError::kBadPayload, 0u);
  EXPECT_TRUE(SegmentView::open(one_staple(20, 21)));
}

TEST(SegmentPayload, StapleDerEmptyOrLengthWrongOrBadStatus) {
  EXPECT_RECORD_ERROR(one_staple(1, 2, ""), SegmentError::kBadPayload, 0u);
  for (uint32_t der_len : {0u, 2u, 4u, 0xffffffffu}) {
    Bytes b = one_staple(1, 2, "DER");
    patch_data(b, 0, offsetof(StapleData, der_len), &der_len, sizeof der_len);
    SCOPED_TRACE(der_len);
    EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, 0u);
  }
  for (uint16_t status : {uint16_t{3}, uint16_t{0xffff}}) {
    Bytes b = one_staple();
    patch_data(b, 0, offsetof(StapleData, status), &status, sizeof status);
    SCOPED_TRACE(status);
    EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, 0u);
  }
  Bytes b = one_staple();
  RecordEntry e = entry_of(b, 0);
  e.data_len = sizeof(StapleData) - 1;
  set_entry(b, 0, e);
  EXPECT_RECORD_ERROR(b, SegmentError::kBadPayload, 0u);
}

TEST(SegmentPayload, TicketKeysWholeKeysOneToSixteen) {
  for (size_t len : {size_t{1}, size_t{79}, size_t{81}, size_t{159}, kTicketKeySize * (kMaxTicketKeys + 1)}) {
    SegmentBuilder sb;
    std::vector<std::byte> keys(len, std::byte{7});
    sb.add_ticket_keys(keys, 1);
    SCOPED_TRACE(len);
    EXPECT_RECORD_ERROR(sb.bytes(2, 1), SegmentError::kBadPayload, 0u);
  }
  SegmentBuilder empty;
  empty.add_ticket_keys({}, 1);
  EXPECT_RECORD_ERROR(empty.bytes(2, 1), SegmentError::kBadPayload, 0u);

  for (size_t n : {size_t{1}, kMaxTicketKeys}) {
    SegmentBuilder sb;
    sb.add_ticket_keys(ticket_bytes(n), 1);
    EXPECT_TRUE(SegmentView::open(sb.bytes(2, 1))) << n;
  }
}

TEST(SegmentPayload, ReadersRefuseWhatOpenRefuses) {
  // The readers on their own (they are the second line behind open()).
  std::array<std::byte, sizeof(CertificateData) + 2> cert{};
  CertificateData ch{};
  ch.chain_len = 1;
  ch.key_len = 1;
  std::memcpy(cert.data(), &ch, sizeof ch);
  EXPECT_TRUE(certificate_of(cert));
  EXPECT_FALSE(certificate_of(std::span<const std::byte>(cert).first(sizeof ch + 1)));
  EXPECT_FALSE(certificate_of(std::span<const std::byte>(cert).first(3)));
  EXPECT_FALSE(certificate_of({}));

  std::array<std::byte, sizeof(StapleData) + 1> staple{};
  StapleData sh{};
  sh.der_len = 1;
  sh.next_update_unix = 1;
  std::memcpy(staple.data(), &sh, sizeof sh);
  EXPECT_TRUE(staple_of(staple));
  EXPECT_FALSE(staple_of(std::span<const std::byte>(staple).first(sizeof sh)));
  EXPECT_FALSE(staple_of({}));
}

TEST(SegmentPayload, FaultMessageNamesTheRecord) {
  Bytes b = full_segment();
  RecordEntry e = entry_of(b, 2);
  e.kind = 77;
  set_entry(b, 2, e);
  const auto f = fault_of(b);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->message(), "unknown record kind (record 2)");
  EXPECT_EQ(SegmentFault{SegmentError::kBadMagic}.message(), to_string(SegmentError::kBadMagic));
}

// ---------------------------------------------------------------------------
// Random mutations of valid segments: open() never reads out of bounds (the
// sanitizer build checks), and what it accepts reads back cleanly.

TEST(SegmentMutation, RandomMutationsOpenOrFailCleanly) {
  std::vector<Bytes> seeds;
  seeds.push_back(full_segment(3));
  {
    SegmentBuilder d;
    d.remove(RecordKind::kCertificate, "name:gone");
    d.add_staple("name:www", 2, StapleStatus::kRevoked, 5, 6, "der");
    d.add_certificate("dir:d/host.example", 9, CertState::kServe, 0, "chain", "key");
    seeds.push_back(d.bytes(4, 3));
  }
  std::mt19937_64 rng(0x5eed'5eed);
  std::map<SegmentError, int> errors;
  int opened = 0;
  int reader_failures = 0;
  constexpr int kIterations = 20'000;
  for (int it = 0; it < kIterations; ++it) {
    Bytes b = seeds[rng() % seeds.size()];
    const int mutations = 1 + static_cast<int>(rng() % 4);
    bool fix = (rng() % 4) != 0;  // mostly keep the checksum right to get past it
    for (int m = 0; m < mutations; ++m) {
      switch (rng() % 6) {
        case 0:  // any byte
          b[rng() % b.size()] = static_cast<std::byte>(rng());
          break;
        case 1:  // one bit
          b[rng() % b.size()] ^= static_cast<std::byte>(1u << (rng() % 8));
          break;
        case 2: {  // a 64-bit field of an entry or a payload header to an edge value
          static constexpr uint64_t kEdges[] = {0, 1, 23, 24, 47, 48, 64, 0xffffffffull, 0x100000000ull,
                                                std::numeric_limits<uint64_t>::max(),
                                                std::numeric_limits<uint64_t>::max() - 7};
          if (b.size() < 8) break;
          const size_t at = (rng() % (b.size() / 8)) * 8;
          const uint64_t v = kEdges[rng() % std::size(kEdges)];
          std::memcpy(b.data() + at, &v, std::min<size_t>(8, b.size() - at));
          break;
        }
        case 3:  // truncate
          b.resize(rng() % (b.size() + 1));
          break;
        case 4:  // extend
          b.resize(b.size() + rng() % 64, static_cast<std::byte>(rng()));
          break;
        case 5:  // a 32-bit field (lengths, kinds and flags, record_count)
          if (b.size() >= 4) {
            const size_t at = (rng() % (b.size() / 4)) * 4;
            const uint32_t v = static_cast<uint32_t>(rng() % 3 == 0 ? rng() : rng() % 130);
            std::memcpy(b.data() + at, &v, 4);
          }
          break;
      }
      if (b.empty()) break;
    }
    if (fix && b.size() >= kHeader) {
      SegmentHeader h = header_of(b);
      if (h.total_size >= kHeader && h.total_size <= b.size()) fix_checksum(b);
    }
    auto v = SegmentView::open(b);
    if (!v) {
      ++errors[v.error().error];
      continue;
    }
    ++opened;
    for (uint32_t i = 0; i < v->record_count(); ++i) {
      const Record r = v->record(i);
      const auto* base = b.data();
      if (r.key.empty() || reinterpret_cast<const std::byte*>(r.key.data()) < base ||
          reinterpret_cast<const std::byte*>(r.key.data()) + r.key.size() > base + b.size() ||
          (r.data.data() != nullptr && r.data.data() + r.data.size() > base + b.size())) {
        ++reader_failures;
      }
      if (r.remove) continue;
      if (r.kind == RecordKind::kCertificate && !certificate_of(r.data)) ++reader_failures;
      if (r.kind == RecordKind::kStaple && !staple_of(r.data)) ++reader_failures;
    }
  }
  EXPECT_EQ(reader_failures, 0);
  // The mutations reach past the header into the records (else this loop
  // tests nothing but the checksum).
  EXPECT_GT(opened, 0);
  EXPECT_GT(errors[SegmentError::kBadChecksum], 0);
  EXPECT_GT(errors[SegmentError::kBadRecordBounds], 0);
  EXPECT_GT(errors[SegmentError::kBadPayload], 0);
  EXPECT_GT(errors[SegmentError::kBadKey] + errors[SegmentError::kBadKind] + errors[SegmentError::kBadFlags], 0);
  int total = opened;
  for (const auto& [e, n] : errors) total += n;
  EXPECT_EQ(total, kIterations);
}

}  // namespace
}  // namespace lode::snapshot
