// libFuzzer target for the snapshot segment (include/lodestone/snapshot.h)
// and what the dataplane does with one (dataplane/control/snapshot_state).
//
// The input is a segment as it would sit in a received memfd:
//   1. SegmentView::open() must refuse it or accept it; nothing in between.
//   2. When accepted, every record and its payload must read back within the
//      input (the sanitizers watch every byte read), and the payload readers
//      must agree with open(): a certificate or staple record that open()
//      accepted must parse.
//   3. The same bytes through MappedSegment::from_bytes() must be accepted
//      too, and apply_segment() is run on top of nothing and on top of a small
//      full snapshot at generation 1 (so deltas with base 1 apply). Whatever
//      it accepts must be a consistent snapshot.
// Every record kind open() knows is read back here: a kind added to the
// layout without a case below fails the first time the fuzzer reaches it.
// A mutated input almost never keeps its checksum right, so each input also
// runs a second time with the checksum recomputed: the mutations then reach
// the record checks and apply_segment().
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "controlplane/snapshot_writer.h"
#include "dataplane/control/snapshot_state.h"
#include "lodestone/snapshot.h"

namespace {

using lode::control::ApplyResult;
using lode::control::CertEntryPtr;
using lode::control::MappedSegment;
using lode::control::Snapshot;
using lode::snapshot::RecordKind;
using lode::snapshot::SegmentView;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "INVARIANT BROKEN: %s\n", what);
  std::abort();
}

// Reads every byte (so a view past its buffer is caught) and keeps the
// compiler from dropping the reads.
volatile uint8_t g_sink;
void touch(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  uint8_t x = 0;
  for (size_t i = 0; i < n; ++i) x ^= b[i];
  g_sink = x;
}

// Generation 1: config, ticket keys, certificates name:a (stapled) and name:b,
// backend states for pool:web.
const std::shared_ptr<const Snapshot>& base_snapshot() {
  static const std::shared_ptr<const Snapshot> base = [] {
    lode::cp::SegmentBuilder b;
    b.add_config("[[listener]]\n", 1);
    const std::byte keys[lode::snapshot::kTicketKeySize] = {};
    b.add_ticket_keys(keys, 1);
    b.add_certificate("name:a", 1, lode::snapshot::CertState::kServe, 100, "CHAIN-A", "KEY-A");
    b.add_certificate("name:b", 2, lode::snapshot::CertState::kServe, 100, "CHAIN-B", "KEY-B");
    b.add_staple("name:a", 3, lode::snapshot::StapleStatus::kGood, 10, 20, "DER-A");
    const lode::snapshot::BackendStateView web[] = {
        {"b1", 1, lode::snapshot::BackendCheck::kUp, lode::snapshot::BackendAdmin::kActive},
        {"b2", 5, lode::snapshot::BackendCheck::kUnchecked, lode::snapshot::BackendAdmin::kActive}};
    b.add_backend_state("web", web, 4);
    auto seg = MappedSegment::from_bytes(b.bytes(1, 0));
    if (!seg) fail("the base segment does not open");
    auto r = lode::control::apply_segment(nullptr, *seg);
    if (!r) fail("the base segment does not apply");
    return r->snapshot;
  }();
  return base;
}

void check_applied(const ApplyResult& r, const SegmentView& v) {
  const Snapshot& s = *r.snapshot;
  if (s.generation != v.generation()) fail("snapshot generation is not the segment's");
  if (r.full != v.full()) fail("full flag differs");
  if (r.certs_upserted + r.certs_removed > v.record_count()) fail("more certificate changes than records");
  if (r.staples_upserted + r.staples_removed + r.staples_orphaned > v.record_count()) fail("staple counts");
  if (v.full() && (s.config_text.empty() || s.ticket_keys.empty())) fail("full snapshot without config/tickets");
  touch(s.config_text.data(), s.config_text.size());
  touch(s.ticket_keys.data(), s.ticket_keys.size());
  if (s.ticket_keys.size() % lode::snapshot::kTicketKeySize != 0) fail("ticket keys not whole");
  size_t n = 0;
  s.certs.for_each([&](std::string_view key, const CertEntryPtr& e) {
    ++n;
    if (!e || !e->segment) fail("certificate entry without its segment");
    if (s.certs.find(key) != &e) fail("for_each and find disagree");
    if (e->chain_pem.empty() || e->key_pem.empty()) fail("certificate without chain or key");
    touch(e->chain_pem.data(), e->chain_pem.size());
    touch(e->key_pem.data(), e->key_pem.size());
    if (!e->staple_der.empty()) {
      if (!e->staple_segment) fail("staple without its segment");
      touch(e->staple_der.data(), e->staple_der.size());
    }
  });
  if (n != s.certs.size()) fail("map size differs from its entries");
  if (s.backend_states) {
    for (const auto& [pool, backends] : *s.backend_states) {
      if (pool.empty() || backends.empty() || backends.size() > lode::snapshot::kMaxStateBackends) {
        fail("applied backend states out of shape");
      }
      for (const auto& b : backends) {
        if (b.id.empty() || b.weight == 0 || b.weight > lode::snapshot::kMaxStateWeight) fail("applied backend state");
      }
    }
  }
}

void run(std::span<const std::byte> in) {
  auto v = SegmentView::open(in);
  if (!v) {
    (void)v.error().message();
    return;
  }
  if (v->header().total_size > in.size()) fail("accepted a total_size past the input");
  for (uint32_t i = 0; i < v->record_count(); ++i) {
    const lode::snapshot::Record r = v->record(i);
    if (r.key.empty() || r.key.size() > lode::snapshot::kMaxKeyLen) fail("accepted a bad key length");
    touch(r.key.data(), r.key.size());
    touch(r.data.data(), r.data.size());
    if (r.remove) {
      if (!r.data.empty()) fail("accepted a removal with data");
      continue;
    }
    switch (r.kind) {
      case RecordKind::kCertificate: {
        auto c = lode::snapshot::certificate_of(r.data);
        if (!c) fail("open() accepted a certificate certificate_of() refuses");
        touch(c->chain_pem.data(), c->chain_pem.size());
        touch(c->key_pem.data(), c->key_pem.size());
        break;
      }
      case RecordKind::kStaple: {
        auto s = lode::snapshot::staple_of(r.data);
        if (!s) fail("open() accepted a staple staple_of() refuses");
        if (s->next_update_unix <= s->this_update_unix) fail("accepted a staple that is never fresh");
        touch(s->der.data(), s->der.size());
        break;
      }
      case RecordKind::kConfig:
      case RecordKind::kTicketKeys:
        if (r.data.empty()) fail("accepted an empty config or ticket record");
        break;
      case RecordKind::kBackendState: {
        size_t n = 0;
        auto ok = lode::snapshot::for_each_backend_state(r.data, [&](const lode::snapshot::BackendStateView& b) {
          ++n;
          if (b.id.empty() || b.id.size() > lode::snapshot::kMaxKeyLen) fail("backend id length");
          if (b.weight == 0 || b.weight > lode::snapshot::kMaxStateWeight) fail("backend weight out of range");
          touch(b.id.data(), b.id.size());
        });
        if (!ok) fail("open() accepted a backend state for_each_backend_state() refuses");
        if (n == 0 || n > lode::snapshot::kMaxStateBackends) fail("backend state count out of range");
        break;
      }
      default:
        fail("accepted an unknown record kind");
    }
  }

  auto seg = MappedSegment::from_bytes(in);
  if (!seg) fail("from_bytes refused what open() accepted");
  if (auto r = lode::control::apply_segment(nullptr, *seg)) {
    if (!v->full()) fail("a delta applied on top of nothing");
    check_applied(*r, (*seg)->view());
  }
  if (auto r = lode::control::apply_segment(base_snapshot(), *seg)) {
    check_applied(*r, (*seg)->view());
    if (!v->full() && r->snapshot->config_text.empty()) fail("a delta lost the configuration");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  run(in);
  lode::snapshot::SegmentHeader h;
  if (size < sizeof h) return 0;
  std::memcpy(&h, data, sizeof h);
  if (h.header_size != sizeof h || h.total_size < sizeof h || h.total_size > size) return 0;
  std::vector<std::byte> fixed(in.begin(), in.end());
  h.checksum = lode::snapshot::checksum(std::span<const std::byte>(fixed).subspan(sizeof h, h.total_size - sizeof h));
  std::memcpy(fixed.data(), &h, sizeof h);
  run(fixed);
  return 0;
}
