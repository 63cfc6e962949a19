// The established-flow fast path of FlowEngine::on_frame_in_place and
// on_exception_frame_in_place: a segment of a spliced flow in the common
// shape is translated where it lies and handed back to the sink, without
// the general parser (Packet), without TcpSegment and with one hash of its
// 4-tuple for both indexes.
//
// The common shape: Ethernet II (at most one 802.1Q tag), IPv4 without
// options and not a fragment, TCP whose options are none, or a timestamp
// and two NOPs (Linux puts them first, build_tcp last), no SACK blocks; the
// flow spliced (its replay acknowledged: no buffer held), no SYN
// from the backend, timestamps on both sides or on neither, a tag when the
// other leg has a VLAN and none when it has none (the tag is rewritten; a
// tag to add or take off changes the frame's length). Everything else
// -- and any frame this path is unsure of -- goes to the full path, which
// handles it as it always did: this path decides before it writes or counts
// anything, and puts the headers back when the sink refuses the frame.
//
// What it writes is what rewrite_tcp (tcp_rewrite.cc) writes for the same
// segment, byte for byte: the IPv4 header checksum recomputed, the TCP
// checksum updated from the changed fields (RFC 1624, the same arithmetic).
#include <cstring>
#include <vector>

#include "dataplane/front/flow_engine_flow.h"

namespace lode::front {
namespace {

constexpr size_t kEthLen = 14;
constexpr size_t kVlanTagLen = 4;
constexpr size_t kIpv4Len = 20;
constexpr size_t kTcpLen = 20;
constexpr size_t kTcpWithTimestampsLen = 32;
constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint8_t kProtoTcp = 6;
constexpr uint16_t kIpv4FragmentMask = 0x3fff;

inline uint16_t get16(const uint8_t* p) noexcept { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t get32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
inline void put16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t* p, uint32_t v) noexcept {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
// The two 16-bit words of a 32-bit field, summed (ones' complement, unfolded).
inline uint32_t halves(uint32_t v) noexcept { return (v >> 16) + (v & 0xffff); }
inline uint32_t fold(uint64_t s) noexcept {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

// The fields the splice rewrites, as they are in a frame or as they will be.
struct Fields {
  MacAddr src_mac, dst_mac;
  uint32_t src = 0, dst = 0;  // host order
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint16_t window = 0;
  uint32_t ts_val = 0, ts_ecr = 0;
  uint16_t ip_checksum = 0, tcp_checksum = 0;
  uint16_t tci = 0;  // the 802.1Q tag's control word, when the frame has one
};

// A frame of the common shape, read.
struct Segment {
  uint8_t* frame = nullptr;
  uint8_t* ip = nullptr;
  uint8_t* tcp = nullptr;
  bool tagged = false;  // one 802.1Q tag
  size_t ts_at = 0;  // where TSval is in the TCP header; 0: no timestamps option
  uint8_t flags = 0;
  uint32_t payload = 0;
  uint32_t ip_rest = 0;  // the IPv4 header's words but the addresses and the checksum, summed
  Fields f;
};

// The ones' complement sum of the 20-byte IPv4 header, folded: 0xffff when
// its checksum is right. Native-order words (RFC 1071 2(B)); 0xffff reads
// the same both ways.
inline uint32_t ipv4_header_sum(const uint8_t* ip) noexcept {
  uint64_t s = 0;
  for (size_t i = 0; i < kIpv4Len; i += 4) {
    uint32_t w;
    std::memcpy(&w, ip + i, 4);
    s += w;
  }
  return fold(s);
}

// Where the IPv4 header of a frame of the common shape starts: Ethernet II,
// at most one 802.1Q tag, IPv4 without options, TCP, not a fragment, the
// frame long enough for both headers. 0 for any other frame.
size_t ipv4_tcp_at(const uint8_t* b, size_t n) noexcept {
  if (n < kEthLen + kIpv4Len + kTcpLen) return 0;
  size_t off = kEthLen;
  uint16_t type = get16(b + 12);
  if (type == kEtherVlan) {
    if (n < kEthLen + kVlanTagLen + kIpv4Len + kTcpLen) return 0;
    type = get16(b + 16);
    off += kVlanTagLen;
  }
  if (type != kEtherIpv4) return 0;
  const uint8_t* const ip = b + off;
  if (ip[0] != 0x45 || ip[9] != kProtoTcp || (get16(ip + 6) & kIpv4FragmentMask) != 0) return 0;
  return off;
}

// Reads `frame` when it has the common shape (see the top of the file) and
// valid checksums (the TCP one unless the NIC checked it: l4_verified).
bool read_segment(std::span<uint8_t> frame, bool l4_verified, Segment& s) noexcept {
  uint8_t* const b = frame.data();
  const size_t n = frame.size();
  const size_t off = ipv4_tcp_at(b, n);
  if (off == 0) return false;
  uint8_t* const ip = b + off;
  const size_t total = get16(ip + 2);
  if (total < kIpv4Len + kTcpLen || total > n - off || ipv4_header_sum(ip) != 0xffff) return false;
  uint8_t* const tcp = ip + kIpv4Len;
  const size_t seg_len = total - kIpv4Len;
  const size_t doff = size_t{static_cast<uint8_t>(tcp[12] >> 4)} * 4;
  if (doff > seg_len) return false;
  if (doff == kTcpWithTimestampsLen) {
    if (tcp[20] == 1 && tcp[21] == 1 && tcp[22] == 8 && tcp[23] == 10) {
      s.ts_at = 24;  // NOP, NOP, timestamps
    } else if (tcp[20] == 8 && tcp[21] == 10 && tcp[30] == 1 && tcp[31] == 1) {
      s.ts_at = 22;  // timestamps, NOP, NOP
    } else {
      return false;
    }
  } else if (doff != kTcpLen) {
    return false;
  }
  Fields& f = s.f;
  f.src = get32(ip + 12);
  f.dst = get32(ip + 16);
  if (!l4_verified &&
      l4_checksum(IpAddr::v4(f.src), IpAddr::v4(f.dst), kProtoTcp, std::span<const uint8_t>(tcp, seg_len)) != 0) {
    return false;
  }
  s.frame = b;
  s.ip = ip;
  s.tcp = tcp;
  s.tagged = off != kEthLen;
  if (s.tagged) f.tci = get16(b + 14);
  s.flags = tcp[13];
  s.payload = static_cast<uint32_t>(seg_len - doff);
  s.ip_rest = get16(ip) + get16(ip + 2) + get16(ip + 4) + get16(ip + 6) + get16(ip + 8);
  std::memcpy(f.dst_mac.data(), b, 6);
  std::memcpy(f.src_mac.data(), b + 6, 6);
  f.ip_checksum = get16(ip + 10);
  f.sport = get16(tcp);
  f.dport = get16(tcp + 2);
  f.seq = get32(tcp + 4);
  f.ack = get32(tcp + 8);
  f.window = get16(tcp + 14);
  f.tcp_checksum = get16(tcp + 16);
  if (s.ts_at != 0) {
    f.ts_val = get32(tcp + s.ts_at);
    f.ts_ecr = get32(tcp + s.ts_at + 4);
  }
  return true;
}

// The words of the TCP checksum (pseudo-header addresses included) that the
// splice may change, summed.
uint32_t changed_words(const Fields& f, bool timestamps) noexcept {
  uint32_t s = halves(f.src) + halves(f.dst) + f.sport + f.dport + halves(f.seq) + halves(f.ack) + f.window;
  if (timestamps) s += halves(f.ts_val) + halves(f.ts_ecr);
  return s;
}

// Both checksums of `to` from the segment's: the IPv4 header's recomputed,
// the TCP one updated (RFC 1624: HC' = ~(~HC + ~m + m'), as in tcp_rewrite.cc).
void set_checksums(const Segment& s, Fields& to) noexcept {
  to.ip_checksum = static_cast<uint16_t>(~fold(uint64_t{s.ip_rest} + halves(to.src) + halves(to.dst)));
  const bool ts = s.ts_at != 0;
  const uint32_t sum = uint32_t{static_cast<uint16_t>(~s.f.tcp_checksum)} +
                       static_cast<uint16_t>(~fold(changed_words(s.f, ts))) + fold(changed_words(to, ts));
  to.tcp_checksum = static_cast<uint16_t>(~fold(sum));
}

void write_fields(const Segment& s, const Fields& v) noexcept {
  std::memcpy(s.frame, v.dst_mac.data(), 6);
  std::memcpy(s.frame + 6, v.src_mac.data(), 6);
  if (s.tagged) put16(s.frame + 14, v.tci);
  put16(s.ip + 10, v.ip_checksum);
  put32(s.ip + 12, v.src);
  put32(s.ip + 16, v.dst);
  put16(s.tcp, v.sport);
  put16(s.tcp + 2, v.dport);
  put32(s.tcp + 4, v.seq);
  put32(s.tcp + 8, v.ack);
  put16(s.tcp + 14, v.window);
  put16(s.tcp + 16, v.tcp_checksum);
  if (s.ts_at != 0) {
    put32(s.tcp + s.ts_at, v.ts_val);
    put32(s.tcp + s.ts_at + 4, v.ts_ecr);
  }
}

// The tag of the rewritten frame for VLAN `vlan` (0: untagged): as
// rewrite_tcp and build_tcp write it (the VLAN id, priority 0); false when
// a tag would have to be added or taken off (the frame changes length: the
// full path builds it).
bool retag(const Segment& s, uint16_t vlan, Fields& to) noexcept {
  if (s.tagged != (vlan != 0)) return false;
  to.tci = vlan;
  return true;
}

// Rewrites the frame to `to` and gives it to the sink; false (the frame as
// it was) when the sink does not take it.
bool send_rewritten(const Segment& s, Fields& to, std::span<uint8_t> frame, FrameSink& sink) noexcept {
  set_checksums(s, to);
  write_fields(s, to);
  if (sink.send_in_place(frame)) return true;
  write_fields(s, s.f);
  return false;
}

// flow_hash() (flow_engine_flow.h) of an IPv4 4-tuple, from the numbers
// themselves (host order): the same value, without building a FlowKey
// first (its bytes stored one by one and read back as words stalled the
// store buffer: a third of the prefetch's cost, and of the fast path's
// hash).
inline uint64_t flow_hash_v4(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) noexcept {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t{sport} << 16 | dport);
  h = (h ^ src) * 0xff51afd7ed558ccdull;
  h ^= h >> 32;
  h = (h ^ dst) * 0xff51afd7ed558ccdull;
  h ^= h >> 32;
  return h;
}

struct Tuple {
  uint32_t src = 0, dst = 0;  // host order
  uint16_t sport = 0, dport = 0;
  uint64_t hash() const noexcept { return flow_hash_v4(src, dst, sport, dport); }
  // key == FlowKey{IpAddr::v4(src), IpAddr::v4(dst), sport, dport}, read
  // from the key without building that one.
  bool is(const FlowKey& key) const noexcept {
    return key.sport == sport && key.dport == dport && key.src.family == 4 && key.dst.family == 4 &&
           key.src.v4_host() == src && key.dst.v4_host() == dst;
  }
};

// The 4-tuple of a frame, read as read_segment() reads it, no more: the
// checks that decide whether a 4-tuple can be taken from the frame at all.
// A frame that passes them and fails the fast path later only cost a
// prefetch.
bool tuple_of_frame(std::span<const uint8_t> frame, Tuple& t) noexcept {
  const size_t off = ipv4_tcp_at(frame.data(), frame.size());
  if (off == 0) return false;
  const uint8_t* const ip = frame.data() + off;
  const uint8_t* const tcp = ip + kIpv4Len;
  t.src = get32(ip + 12);
  t.dst = get32(ip + 16);
  t.sport = get16(tcp);
  t.dport = get16(tcp + 2);
  return true;
}

// The start of a flow's slot that the fast path reads (see Flow): four
// cache lines at most, wherever the slot starts.
constexpr size_t kFlowHotBytes = 168;

}  // namespace

void FlowEngine::prefetch_flow(std::span<const uint8_t> frame) const noexcept {
  Tuple t;
  if (!tuple_of_frame(frame, t)) return;
  const uint64_t h = t.hash();
  // The home slot of each index (linear probing: the flow is there or a
  // few slots on), and the flow it names: the client's key in index_, the
  // backend's in bindex_. A slot of the other index names another flow or
  // none; that prefetch is wasted, never wrong.
  for (const FlowIndex* index : {&index_, &bindex_}) {
    const uint32_t v = (*index)[h & (index->size() - 1)];
    if (v == 0) continue;
    const auto* p = reinterpret_cast<const char*>(&flows_[v - 1]);
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
    __builtin_prefetch(p + kFlowHotBytes - 1);
  }
}

void FlowEngine::prefetch_flow_links(std::span<const uint8_t> frame) const noexcept {
  Tuple t;
  if (!tuple_of_frame(frame, t)) return;
  const uint64_t h = t.hash();
  const Flow* f = nullptr;
  {
    const size_t mask = bindex_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const uint32_t v = bindex_[i];
      if (v == 0) break;
      if (t.is(flows_[v - 1].bkey)) {
        f = &flows_[v - 1];
        break;
      }
    }
  }
  if (f == nullptr) {
    const size_t mask = index_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const uint32_t v = index_[i];
      if (v == 0) break;
      if (t.is(flows_[v - 1].key)) {
        f = &flows_[v - 1];
        break;
      }
    }
  }
  if (f == nullptr || !f->linked) return;
  if (f->prev != kNil) __builtin_prefetch(&flows_[f->prev].next, 1);
  if (f->next != kNil) __builtin_prefetch(&flows_[f->next].prev, 1);
}

bool FlowEngine::forward_spliced(std::span<uint8_t> frame, uint64_t now_ms, FrameSink& out, bool l4_verified,
                                 bool from_exception) noexcept {
  Segment s;
  if (!read_segment(frame, l4_verified, s)) return false;
  const FlowKey k{IpAddr::v4(s.f.src), IpAddr::v4(s.f.dst), s.f.sport, s.f.dport};
  const uint64_t h = flow_hash_v4(s.f.src, s.f.dst, s.f.sport, s.f.dport);  // = flow_hash(k)
  const bool has_ts = s.ts_at != 0;
  Flow* f = lookup_backend(k, h);
  if (f == nullptr && from_exception) return false;
  now_ms_ = now_ms;
  if (f != nullptr) {
    // The backend's side (on_backend_segment): a hand-off's comes from the
    // exception port only, a passthrough's from the wire only.
    if (f->handoff != from_exception || (from_exception && !cfg_.handoff.enabled)) return false;
    // Resets are judged by the full path (judge_reset).
    // While the replay is unacknowledged (its buffer held) the full path
    // looks for its acknowledgement.
    if (f->state != Flow::State::kSpliced || (s.flags & (kTcpSyn | kTcpRst)) || f->buffer) return false;
    if ((has_ts && !f->backend_ts) || f->key.src.family != 4 || f->key.dst.family != 4) return false;
    Fields to = s.f;
    if (!retag(s, f->vlan, to)) return false;
    to.src_mac = cfg_.mac;
    to.dst_mac = f->peer_mac;
    to.src = f->key.dst.v4_host();
    to.dst = f->key.src.v4_host();
    to.sport = f->key.dport;
    to.dport = f->key.sport;
    to.seq = s.f.seq + f->delta;
    // The backend's window in the scale we gave the client.
    to.window = rescale_window(s.f.window, f->backend_wscale, cfg_.wscale);
    to.ts_val = s.f.ts_val + f->ts_delta;
    if (!send_rewritten(s, to, frame, out)) return false;
    if (from_exception) {
      ++stats_.exception_rx;
    } else {
      rotate_cookie_key(now_ms);
      ++stats_.rx_frames;
    }
    if (near_una(to.seq, f->client_una, f->syn.wscale)) {
      if (has_ts) f->backend_ts_recent = s.f.ts_val;  // as on_backend_segment
      f->backend_window = s.f.window;
    }
    if (s.flags & kTcpAck) note_ack(f->backend_una, s.f.ack, f->to_backend_nxt);
    ++stats_.forwarded_in_place;
    ++stats_.tx_frames;
    after_to_client(*f, s.flags, to.seq + s.payload + ((s.flags & kTcpFin) ? 1 : 0));
    return true;
  }
  // The client's side (on_tcp, on_flow_segment, splice_to_backend). The key
  // of a flow is a VIP's address and port, so the VIP checks hold.
  f = lookup(k, h);
  // While the replay is unacknowledged the full path keeps the client's
  // bytes out of its range (splice_to_backend).
  if (f == nullptr || f->state != Flow::State::kSpliced || (s.flags & (kTcpSyn | kTcpRst)) || f->buffer) return false;
  if ((has_ts && !f->backend_ts) || f->bkey.src.family != 4 || f->bkey.dst.family != 4) return false;
  Fields to = s.f;
  if (!retag(s, backend_vlan(*f), to)) return false;
  follow_neighbor(*f);
  to.src_mac = f->handoff ? cfg_.handoff.mac : cfg_.mac;
  to.dst_mac = f->backend_mac;
  to.src = f->bkey.dst.v4_host();
  to.dst = f->bkey.src.v4_host();
  to.sport = f->bkey.dport;
  to.dport = f->bkey.sport;
  if (s.flags & kTcpAck) to.ack = s.f.ack - f->delta;
  to.window = unscaled_window(s.f.window, f->client_window_shift);
  to.ts_ecr = s.f.ts_ecr - f->ts_delta;
  if (!send_rewritten(s, to, frame, toward_backend(*f, out))) return false;
  rotate_cookie_key(now_ms);
  ++stats_.rx_frames;
  if (has_ts && updates_ts_recent(s.f.seq, f->backend_una, f->backend_wscale)) f->ts_recent = s.f.ts_val;
  f->client_window = s.f.window;
  if (s.flags & kTcpAck) note_ack(f->client_una, s.f.ack, f->snd_nxt);
  ++stats_.forwarded_in_place;
  ++stats_.tx_frames;
  after_to_backend(*f, s.flags, s.f.seq + s.payload + ((s.flags & kTcpFin) ? 1 : 0));
  return true;
}

}  // namespace lode::front
