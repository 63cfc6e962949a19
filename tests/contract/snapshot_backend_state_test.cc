// The snapshot's kBackendState record (include/lodestone/snapshot.h): what the
// control plane writes decodes to the same entries, and SegmentView::open()
// refuses every malformed payload and key before the dataplane sees it.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "controlplane/snapshot_writer.h"
#include "lodestone/snapshot.h"

namespace lode::snapshot {
namespace {

std::vector<BackendStateView> sample() {
  return {{"10.0.0.1:443", 3, BackendCheck::kUp, BackendAdmin::kActive},
          {"10.0.0.2:443", 1, BackendCheck::kDown, BackendAdmin::kDrained},
          {"[::1]:8443", 65535, BackendCheck::kUnchecked, BackendAdmin::kActive}};
}

std::vector<std::byte> segment_with(std::string_view pool, const std::vector<BackendStateView>& rows) {
  cp::SegmentBuilder b;
  b.add_backend_state(pool, rows, 7);
  return b.bytes(2, 1);
}

// Changes record 0's payload in place (its length stays) and fixes the
// checksum, so that only the payload check can refuse it.
std::vector<std::byte> tampered(std::vector<std::byte> seg, const std::function<void(std::byte*, size_t)>& edit) {
  SegmentHeader h;
  std::memcpy(&h, seg.data(), sizeof h);
  RecordEntry e;
  std::memcpy(&e, seg.data() + h.header_size, sizeof e);
  edit(seg.data() + e.data_offset, e.data_len);
  h.checksum = checksum(std::span<const std::byte>(seg).subspan(h.header_size, h.total_size - h.header_size));
  std::memcpy(seg.data(), &h, sizeof h);
  return seg;
}

SegmentError refusal(const std::vector<std::byte>& seg) {
  auto v = SegmentView::open(seg);
  EXPECT_FALSE(v.has_value());
  return v ? SegmentError::kTooShort : v.error().error;
}

TEST(BackendStateRecord, RoundTrips) {
  const auto seg = segment_with("app", sample());
  auto v = SegmentView::open(seg);
  ASSERT_TRUE(v.has_value()) << v.error().message();
  ASSERT_EQ(v->record_count(), 1u);
  const Record r = v->record(0);
  EXPECT_EQ(r.kind, RecordKind::kBackendState);
  EXPECT_EQ(r.key, "pool:app");
  EXPECT_EQ(r.version, 7u);
  std::vector<BackendStateView> got;
  ASSERT_TRUE(for_each_backend_state(r.data, [&](const BackendStateView& b) { got.push_back(b); }));
  const auto want = sample();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, want[i].id);
    EXPECT_EQ(got[i].weight, want[i].weight);
    EXPECT_EQ(got[i].check, want[i].check);
    EXPECT_EQ(got[i].admin, want[i].admin);
  }
}

TEST(BackendStateRecord, RemovalCarriesNoData) {
  cp::SegmentBuilder b;
  b.remove(RecordKind::kBackendState, "pool:gone");
  const auto bytes = b.bytes(3, 2);  // the view points into them
  auto v = SegmentView::open(bytes);
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->record(0).remove);
}

TEST(BackendStateRecord, KeyMustNameAPool) {
  cp::SegmentBuilder b;
  b.add_backend_state("", sample(), 1);  // key "pool:" with no name
  EXPECT_EQ(refusal(b.bytes(2, 1)), SegmentError::kBadKey);
  cp::SegmentBuilder c;
  c.remove(RecordKind::kBackendState, "app");
  EXPECT_EQ(refusal(c.bytes(2, 1)), SegmentError::kBadKey);
}

TEST(BackendStateRecord, HostilePayloadsAreRefused) {
  const auto good = segment_with("app", sample());
  // Offsets: header 8 bytes, then entry 0 (weight 4, id_len 2, check 1,
  // admin 1) and its id.
  auto set_u32 = [](std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); };
  auto set_u16 = [](std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); };
  const std::vector<std::pair<const char*, std::function<void(std::byte*, size_t)>>> cases = {
      {"count 0", [&](std::byte* d, size_t) { set_u32(d, 0); }},
      {"count above the entries", [&](std::byte* d, size_t) { set_u32(d, 4); }},
      {"count above 64", [&](std::byte* d, size_t) { set_u32(d, 65); }},
      {"count huge", [&](std::byte* d, size_t) { set_u32(d, 0xFFFFFFFF); }},
      {"reserved set", [&](std::byte* d, size_t) { set_u32(d + 4, 1); }},
      {"fewer entries than bytes", [&](std::byte* d, size_t) { set_u32(d, 2); }},
      {"weight 0", [&](std::byte* d, size_t) { set_u32(d + 8, 0); }},
      {"weight above 65535", [&](std::byte* d, size_t) { set_u32(d + 8, 65536); }},
      {"id length 0", [&](std::byte* d, size_t) { set_u16(d + 12, 0); }},
      {"id length past the end", [&](std::byte* d, size_t) { set_u16(d + 12, 0xFFFF); }},
      {"unknown check", [&](std::byte* d, size_t) { d[14] = std::byte{3}; }},
      {"unknown admin", [&](std::byte* d, size_t) { d[15] = std::byte{2}; }},
      {"id with a space", [&](std::byte* d, size_t) { d[16] = std::byte{' '}; }},
      {"id with NUL", [&](std::byte* d, size_t) { d[17] = std::byte{0}; }},
      {"id with DEL", [&](std::byte* d, size_t) { d[17] = std::byte{0x7f}; }},
      {"duplicate id", [&](std::byte* d, size_t) {
         // Entry 1's id "10.0.0.2:443" becomes entry 0's "10.0.0.1:443".
         const size_t second_id = 8 + 8 + 12 + 8;
         d[second_id + 7] = std::byte{'1'};
       }},
  };
  for (const auto& [name, edit] : cases) {
    EXPECT_EQ(refusal(tampered(good, edit)), SegmentError::kBadPayload) << name;
  }
  // And the untouched one opens (the edits, not the fixture, are refused).
  EXPECT_TRUE(SegmentView::open(tampered(good, [](std::byte*, size_t) {})).has_value());
}

TEST(BackendStateRecord, TruncatedPayloadsAreRefused) {
  const auto seg = segment_with("app", sample());
  auto v = SegmentView::open(seg);
  ASSERT_TRUE(v.has_value());
  const auto data = v->record(0).data;
  for (size_t n = 0; n < data.size(); ++n) {
    EXPECT_FALSE(for_each_backend_state(data.first(n), [](const BackendStateView&) {})) << n;
  }
  std::vector<std::byte> longer(data.begin(), data.end());
  longer.push_back(std::byte{'x'});
  EXPECT_FALSE(for_each_backend_state(longer, [](const BackendStateView&) {}));
}

TEST(BackendStateRecord, NothingIsVisitedWhenRefused) {
  // Entry 0 is valid; entry 1 (after the 8-byte header, entry 0 and its
  // 12-byte id) has an unknown check: a single pass would visit entry 0.
  const auto seg = tampered(segment_with("app", sample()), [](std::byte* d, size_t) { d[8 + 8 + 12 + 6] = std::byte{9}; });
  SegmentHeader h;
  std::memcpy(&h, seg.data(), sizeof h);
  RecordEntry e;
  std::memcpy(&e, seg.data() + h.header_size, sizeof e);
  int visited = 0;
  const bool ok = static_cast<bool>(for_each_backend_state(
      std::span<const std::byte>(seg).subspan(e.data_offset, e.data_len), [&](const BackendStateView&) { ++visited; }));
  EXPECT_FALSE(ok);
  EXPECT_EQ(visited, 0);
}

}  // namespace
}  // namespace lode::snapshot
