// FlowEngine's per-flow state, shared by flow_engine.cc (new flows, the
// hello) and flow_engine_splice.cc (passthrough). Internal to the engine.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "dataplane/front/flow_engine.h"

namespace lode::front {

inline constexpr uint32_t kNil = UINT32_MAX;
// Room before the hello in each hello buffer: the PROXY v2 header of a
// hand-off is written there, so header and hello go out as one stream.
inline constexpr size_t kLeadRoom = 512;
static_assert(kLeadRoom >= kHandoffHeaderMax);

struct FlowEngine::Flow {
  enum class State : uint8_t {
    kFree,
    kCollecting,  // the ClientHello is being collected
    kClosing,     // our answer and FIN are out
    kConnecting,  // passthrough: our SYN to the backend is out (or waits for its MAC)
    kSpliced,     // passthrough: segments translated both ways
  };
  // What a spliced segment reads and writes comes first (the fast path in
  // flow_engine_forward.cc): the first 168 bytes of the slot, not spread
  // over its 500 (kFlowHotBytes in flow_engine_forward.cc; `series`, read
  // for every segment, ends at byte 168).
  State state = State::kFree;
  Wait wait = Wait::kHello;
  bool linked = false;
  bool handoff = false;
  bool timestamps = false;
  bool backend_ts = false;       // the backend echoed timestamps
  int8_t backend_wscale = -1;
  // The client's window shift when the backend does not scale (RFC 7323:
  // scaling is then off for the backend both ways, its windows read as
  // bytes): the client's windows are shifted by it on their way; else 0.
  uint8_t client_window_shift = 0;
  bool fin_from_client = false, fin_from_backend = false;
  FlowKey key;  // as the client's segments carry it (src = client, dst = VIP)
  // Passthrough (FullNAT: the backend sees the VIP and a local port), and
  // terminate's hand-off (the backend is a worker's listener behind the
  // exception port; it sees our address on that link and a local port).
  FlowKey bkey;  // as the backend's segments carry it (src = backend, dst = VIP:lport)
  MacAddr peer_mac{};
  MacAddr backend_mac{};
  uint16_t client_window = 65535;  // the client's latest window (its scale, which the backend uses too)
  uint16_t backend_window = 65535;  // the backend's latest window field (its scale: backend_wscale)
  uint32_t mac_epoch = 0;          // FlowEngine::mac_epoch_ when backend_mac was last set or checked
  uint32_t snd_nxt = 0;  // our next sequence number towards the client
  uint32_t ts_recent = 0;   // the client's latest TSval
  uint32_t delta = 0;            // our ISN towards the client - the backend's ISN
  uint32_t ts_delta = 0;         // our TSval space - the backend's
  uint32_t to_backend_nxt = 0;   // the client sequence number after what went to the backend
  uint32_t backend_ts_recent = 0;
  // The oldest sequence number not yet acknowledged on each leg (note_ack):
  // an ICMP too-big error must quote one in [una, nxt) (flow_engine_icmp.cc).
  uint32_t client_una = 0;   // ours towards the client (up to snd_nxt)
  uint32_t backend_una = 0;  // the client's, towards the backend (up to to_backend_nxt)
  uint32_t prev = kNil, next = kNil;
  uint64_t linked_ms = 0;  // when the flow was put at the tail of its list
  // The route's and the picked backend's series (count_route,
  // count_backend_pick): bytes are counted as the legs' sequence numbers
  // move (so the route's pointer is in the fast path's bytes), active until
  // the flow ends. Null: not counted.
  stats::RouteSeries* series = nullptr;
  std::shared_ptr<const worker::Runtime> rt;  // the generation the flow began with
  stats::BackendSeries* bseries = nullptr;

  uint16_t vlan = 0;
  uint32_t listener = 0;
  SynOptions syn;        // what the client's SYN offered (from the cookie)
  uint8_t answer[160];  // what answer_and_close() sent, for a retransmission
  uint8_t answer_len = 0;
  HelloCollector hello;
  std::unique_ptr<uint8_t[]> buffer;
  size_t buffer_cap = 0;  // `buffer` holds kLeadRoom + this many bytes (the engine's hello_cap_ when made)
  std::unique_ptr<tls::ClientHelloParser> parser;

  uint16_t lead = 0;             // bytes sent before the hello (the PROXY header), just before it in `buffer`
  bool bindexed = false;
  uint32_t pool = 0, backend = 0;
  bool picked = false;           // counted in the pool state until the flow ends
  route::TriedSet tried;
  bool backend_mac_known = false;
  uint32_t backend_isn = 0;
  uint16_t backend_mss = 536;
  uint8_t tries = 0;             // SYNs sent to this backend, or replays sent
  uint32_t replay_end = 0;       // the client sequence number after the replayed bytes
};

// Before a frame goes to the backend: when a next hop's MAC has changed
// since this flow's was set (a failover), the flow takes its next hop's
// current MAC. One compare per frame; no scan of the flow table.
inline void FlowEngine::follow_neighbor(Flow& f) noexcept {
  if (f.mac_epoch != mac_epoch_) refresh_backend_mac(f);
}

// A series counter of this lcore's row (one writer: relaxed load and
// store, no read-modify-write).
inline void series_add(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void series_sub(std::atomic<uint64_t>& c) noexcept {
  const uint64_t v = c.load(std::memory_order_relaxed);
  c.store(v > 0 ? v - 1 : 0, std::memory_order_relaxed);
}

// The bytes a segment ending at `end` (its FIN included) adds past `nxt`,
// the end of what went before on its leg, when it does (seq_geq): a
// retransmission adds none, a FIN takes a sequence number but is no byte.
inline uint32_t new_bytes(uint32_t end, uint32_t nxt, uint8_t flags) noexcept {
  return end - nxt - ((flags & kTcpFin) && end != nxt ? 1 : 0);
}

// The backend's window field (its shift `from`; -1: it does not scale) in
// the shift `to` we gave the client: rounded down, never more than the
// backend offered, but an open window never becomes a zero window (the
// client would stop and probe while the backend has room).
inline uint16_t rescale_window(uint16_t window, int8_t from, uint8_t to) noexcept {
  if (from < 0) return window;
  const uint64_t bytes = uint64_t{window} << from;
  const uint64_t scaled = bytes >> to;
  if (scaled == 0 && bytes != 0) return 1;
  return static_cast<uint16_t>(scaled < 65535 ? scaled : 65535);
}

// Whether sequence number `x` is in [lo, lo + len].
inline bool seq_within(uint32_t x, uint32_t lo, uint32_t len) noexcept { return x - lo <= len; }

// The most a window can offer at shift `wscale` (-1: the peer does not
// scale): what a receiver can have allowed beyond its last acknowledgement.
inline uint32_t max_window(int8_t wscale) noexcept {
  return uint32_t{65535} << (wscale > 0 ? (wscale < 14 ? wscale : 14) : 0);
}

// A segment near what its receiver acknowledged (`una`, within the largest
// window the shift allows either side): its window and TSval may be taken
// as its sender's; one far off (a blind forgery) sets nothing.
inline bool near_una(uint32_t seq, uint32_t una, int8_t wscale) noexcept {
  return seq_within(seq, una - max_window(wscale), 2 * max_window(wscale));
}

// TS.Recent moves with a segment at or below what the receiver acknowledged
// (RFC 7323 4.3: SEG.SEQ <= Last.ACK.sent), not one ahead: a blind segment
// must not put its TSval where our replay or our own segments carry it.
inline bool updates_ts_recent(uint32_t seq, uint32_t una, int8_t wscale) noexcept {
  return seq_within(seq, una - max_window(wscale), max_window(wscale));
}

// The client's window field for a backend that does not scale (shift:
// the client's): in bytes, at most 65535 (never 0 for an open window).
inline uint16_t unscaled_window(uint16_t window, uint8_t shift) noexcept {
  const uint64_t bytes = uint64_t{window} << shift;
  return static_cast<uint16_t>(bytes < 65535 ? bytes : 65535);
}

// An acknowledgement moves a leg's oldest unacknowledged sequence number
// forward: never back, never past what was sent (nxt).
inline void note_ack(uint32_t& una, uint32_t ack, uint32_t nxt) noexcept {
  if (static_cast<int32_t>(ack - una) > 0 && static_cast<int32_t>(nxt - ack) >= 0) una = ack;
}

// The hash of a flow key in the engine's two indexes (client keys, backend
// keys): computed once per frame on the fast path, for both lookups.
inline uint64_t flow_hash(const FlowKey& k) noexcept {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t{k.sport} << 16 | k.dport);
  auto add = [&](const IpAddr& a) {
    for (size_t i = 0; i < a.size(); i += 4) {
      uint32_t w = uint32_t{a.bytes[i]} << 24 | uint32_t{a.bytes[i + 1]} << 16 | uint32_t{a.bytes[i + 2]} << 8 |
                   a.bytes[i + 3];
      h = (h ^ w) * 0xff51afd7ed558ccdull;
      h ^= h >> 32;
    }
  };
  add(k.src);
  add(k.dst);
  return h;
}

}  // namespace lode::front
