// libFuzzer target for the dpdk front's frame parser and builders.
//
// 1. Parses the input as a frame with and without the L4 checksum checks:
//    every view lies in the input, and a frame that passes the checks parses
//    to the same fields without them.
// 2. Parses a copy whose checksums were repaired (the IPv4 header's, then the
//    TCP/ICMP/ICMPv6 one), so the fuzzer reaches what lies behind them: the
//    copy must parse with the checks exactly as it did without.
// 3. Answers what parsed: a TCP segment is built again (build_tcp) and parses
//    back to the same fields; an ARP request, an echo request (also built in
//    place over its own bytes) and a neighbour solicitation get replies that
//    parse, checksums verified, to what they answer; a fragmentation-needed /
//    packet-too-big quoting a TCP segment is built again from its fields
//    (build_icmp_too_big) and parses back to them, and its quote's fields
//    hold what the quote's bytes say.
// Any difference aborts. Also built without libFuzzer as packet_fuzz_replay
// and run over the committed corpus by ctest.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "dataplane/front/packet.h"

namespace {

using namespace lode::front;

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

constexpr MacAddr kOurMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
// The largest frame a builder may write: a tag, an IPv6 header and 65535
// bytes of payload.
uint8_t g_out[18 + 40 + 65535];

bool inside(std::span<const uint8_t> view, std::span<const uint8_t> frame) {
  return view.empty() ||
         (view.data() >= frame.data() && view.data() + view.size() <= frame.data() + frame.size());
}

bool same_bytes(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool same_options(const TcpOptions& a, const TcpOptions& b) {
  if (a.mss != b.mss || a.wscale != b.wscale || a.sack_ok != b.sack_ok ||
      a.has_timestamps != b.has_timestamps || a.ts_val != b.ts_val || a.ts_ecr != b.ts_ecr ||
      a.sack_count != b.sack_count)
    return false;
  for (size_t k = 0; k < a.sack_count; ++k)
    if (a.sack[k].left != b.sack[k].left || a.sack[k].right != b.sack[k].right) return false;
  return true;
}

// The fields a TCP segment carries from its frame to a rebuilt one.
bool same_segment(const Packet& a, const Packet& b) {
  return a.dst_mac == b.dst_mac && a.src_mac == b.src_mac && a.vlan == b.vlan && a.l3 == b.l3 &&
         a.l4 == b.l4 && a.flow() == b.flow() && a.ttl == b.ttl && a.seq == b.seq &&
         a.ack == b.ack && a.flags == b.flags && a.window == b.window &&
         same_options(a.options, b.options) && same_bytes(a.payload, b.payload);
}

bool same_quote(const IcmpQuote& a, const IcmpQuote& b) {
  return a.status == b.status && a.src == b.src && a.dst == b.dst && a.ttl == b.ttl && a.length == b.length &&
         a.sport == b.sport && a.dport == b.dport && a.seq == b.seq;
}

// Everything a parse reports, views compared by content.
bool same_parse(const Packet& a, const Packet& b) {
  const ArpInfo& x = a.arp;
  const ArpInfo& y = b.arp;
  const IcmpInfo& i = a.icmp;
  const IcmpInfo& j = b.icmp;
  return a.error == b.error && same_segment(a, b) && a.proto == b.proto &&
         a.l3_offset == b.l3_offset && a.l4_offset == b.l4_offset && x.op == y.op &&
         x.sender_mac == y.sender_mac && x.target_mac == y.target_mac &&
         x.sender_ip == y.sender_ip && x.target_ip == y.target_ip && i.type == j.type &&
         i.code == j.code && i.id == j.id && i.seq == j.seq && i.next_hop_mtu == j.next_hop_mtu &&
         same_bytes(i.body, j.body) && i.nd_target == j.nd_target && same_quote(i.quote, j.quote);
}

void check_views(const Packet& p, std::span<const uint8_t> frame) {
  FUZZ_CHECK(inside(p.payload, frame) && inside(p.icmp.body, frame));
  FUZZ_CHECK(p.l3_offset <= frame.size() && p.l4_offset <= frame.size());
  if (p.l4 == L4::kTcp && p.ok()) FUZZ_CHECK(p.l4_offset + 20 <= frame.size());
  if (p.error == PacketError::kNone) FUZZ_CHECK(std::string_view(to_string(p.error)) == "none");
}

size_t ip_header_at(std::span<const uint8_t> f) {
  if (f.size() >= 18 && f[12] == 0x81 && f[13] == 0x00) return 18;
  return 14;
}

// Repairs the IPv4 header checksum where the frame looks like IPv4, then the
// L4 checksum where a parse without checks finds an L4 message; returns that
// parse.
Packet repair_checksums(std::vector<uint8_t>& f) {
  const size_t l3 = ip_header_at(f);
  if (f.size() >= l3 + 20 && f[l3 - 2] == 0x08 && f[l3 - 1] == 0x00 && f[l3] >> 4 == 4) {
    const size_t hlen = size_t{f[l3] & 0x0fu} * 4;
    if (hlen >= 20 && f.size() >= l3 + hlen) {
      f[l3 + 10] = f[l3 + 11] = 0;
      const uint16_t sum = inet_checksum({f.data() + l3, hlen});
      f[l3 + 10] = static_cast<uint8_t>(sum >> 8);
      f[l3 + 11] = static_cast<uint8_t>(sum);
    }
  }
  const Packet p = parse_frame(f, false);
  if (!p.ok() || (p.l4 != L4::kTcp && p.l4 != L4::kIcmp && p.l4 != L4::kIcmpv6)) return p;
  // The L4 message ends where its payload or body does.
  const std::span<const uint8_t> tail = p.l4 == L4::kTcp ? p.payload : p.icmp.body;
  const size_t end = static_cast<size_t>(tail.data() - f.data()) + tail.size();
  const size_t at = p.l4_offset + (p.l4 == L4::kTcp ? 16 : 2);
  f[at] = f[at + 1] = 0;
  const std::span<const uint8_t> l4(f.data() + p.l4_offset, end - p.l4_offset);
  const uint16_t sum =
      p.l4 == L4::kIcmp ? inet_checksum(l4) : l4_checksum(p.src, p.dst, p.proto, l4);
  f[at] = static_cast<uint8_t>(sum >> 8);
  f[at + 1] = static_cast<uint8_t>(sum);
  return parse_frame(f, false);
}

void check_tcp_rebuild(const Packet& p) {
  TcpSegment s;
  s.src_mac = p.src_mac;
  s.dst_mac = p.dst_mac;
  s.vlan = p.vlan;
  s.flow = p.flow();
  s.seq = p.seq;
  s.ack = p.ack;
  s.flags = p.flags;
  s.window = p.window;
  s.ttl = p.ttl;
  s.options = p.options;
  s.payload = p.payload;
  const size_t n = build_tcp(g_out, s);
  FUZZ_CHECK(n != 0);  // whatever parsed fits: its options and payload were no longer
  const Packet q = parse_frame({g_out, n});
  FUZZ_CHECK(q.ok() && same_segment(p, q));
}

// A too-big error's quote: only for those two types; a TCP one has its IP
// header and 8 bytes in the body, and the fields are those bytes; built
// again from them, the error parses back to the same quote and MTU.
void check_too_big(const Packet& p) {
  const bool v6 = p.l4 == L4::kIcmpv6;
  const bool too_big = (p.l4 == L4::kIcmp && p.icmp.type == 3 && p.icmp.code == 4) || (v6 && p.icmp.type == 2);
  const IcmpQuote& q = p.icmp.quote;
  if (!too_big) {
    FUZZ_CHECK(q.status == IcmpQuote::Status::kAbsent);
    return;
  }
  FUZZ_CHECK(q.status != IcmpQuote::Status::kAbsent);
  if (q.status != IcmpQuote::Status::kTcp) return;
  const size_t hlen = v6 ? 40 : size_t{p.icmp.body[0] & 0x0fu} * 4;
  FUZZ_CHECK(hlen >= (v6 ? 40u : 20u) && p.icmp.body.size() >= hlen + 8 && q.length >= hlen + 8);
  const uint8_t* t = p.icmp.body.data() + hlen;
  FUZZ_CHECK(q.sport == (t[0] << 8 | t[1]) && q.dport == (t[2] << 8 | t[3]));
  FUZZ_CHECK(q.seq == (uint32_t{t[4]} << 24 | uint32_t{t[5]} << 16 | uint32_t{t[6]} << 8 | t[7]));
  FUZZ_CHECK(q.src.family == (v6 ? 6 : 4) && q.dst.family == q.src.family);
  if (p.src.family != q.src.family) return;
  IcmpTooBig m;
  m.src_mac = p.src_mac;
  m.dst_mac = p.dst_mac;
  m.vlan = p.vlan;
  m.from = p.src;
  m.to = p.dst;
  m.mtu = p.icmp.next_hop_mtu;
  m.quoted = FlowKey{q.src, q.dst, q.sport, q.dport};
  m.quoted_seq = q.seq;
  m.quoted_length = q.length;
  m.quoted_ttl = q.ttl;
  const size_t n = build_icmp_too_big(g_out, m);
  FUZZ_CHECK(n != 0);  // whatever parsed fits its fields
  const Packet r = parse_frame({g_out, n});
  FUZZ_CHECK(r.ok() && r.l4 == p.l4 && r.icmp.type == p.icmp.type && r.icmp.next_hop_mtu == m.mtu);
  FUZZ_CHECK(same_quote(r.icmp.quote, q) && r.src == p.src && r.dst == p.dst && r.vlan == p.vlan);
}

void check_replies(const Packet& p, std::span<const uint8_t> frame) {
  if (p.l3 == L3::kArp && p.arp.op == 1) {
    const size_t n = build_arp_reply(g_out, p, kOurMac, p.arp.target_ip);
    FUZZ_CHECK(n != 0 || (p.arp.sender_mac[0] & 1) != 0);
    if (n == 0) return;
    const Packet r = parse_frame({g_out, n});
    FUZZ_CHECK(r.ok() && r.arp.op == 2 && r.vlan == p.vlan && r.dst_mac == p.arp.sender_mac);
    FUZZ_CHECK(r.arp.sender_ip == p.arp.target_ip && r.arp.target_ip == p.arp.sender_ip);
    return;
  }
  const bool echo =
      (p.l4 == L4::kIcmp && p.icmp.type == 8) || (p.l4 == L4::kIcmpv6 && p.icmp.type == 128);
  if (echo) {
    const size_t n = build_echo_reply(g_out, p, kOurMac);
    if (n == 0) return;  // multicast or broadcast addresses
    const Packet r = parse_frame({g_out, n});
    FUZZ_CHECK(r.ok() && r.l4 == p.l4 && r.icmp.type == (p.l4 == L4::kIcmp ? 0 : 129));
    FUZZ_CHECK(r.icmp.id == p.icmp.id && r.icmp.seq == p.icmp.seq &&
               same_bytes(r.icmp.body, p.icmp.body));
    FUZZ_CHECK(r.src == p.dst && r.dst == p.src && r.vlan == p.vlan && r.src_mac == kOurMac);
    // The same reply built over the request's own bytes.
    std::vector<uint8_t> in_place(frame.begin(), frame.end());
    in_place.resize(std::max<size_t>(in_place.size(), 60));
    const Packet again = parse_frame({in_place.data(), frame.size()});
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(build_echo_reply(in_place, again, kOurMac) == n &&
               std::memcmp(in_place.data(), g_out, n) == 0);
    return;
  }
  if (p.l4 == L4::kIcmpv6 && p.icmp.type == 135) {
    const size_t n = build_neighbor_advert(g_out, p, kOurMac, p.icmp.nd_target);
    if (n == 0) return;  // from the unspecified address
    const Packet r = parse_frame({g_out, n});
    FUZZ_CHECK(r.ok() && r.icmp.type == 136 && r.ttl == 255 && r.dst == p.src &&
               r.src == p.icmp.nd_target);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  const Packet checked = parse_frame(input);
  const Packet trusting = parse_frame(input, false);
  check_views(checked, input);
  check_views(trusting, input);
  if (checked.ok()) FUZZ_CHECK(same_parse(checked, trusting));

  std::vector<uint8_t> copy(input.begin(), input.end());
  const Packet repaired = repair_checksums(copy);
  check_views(repaired, copy);
  if (repaired.ok()) {
    const Packet verified = parse_frame(copy);
    FUZZ_CHECK(same_parse(repaired, verified));
    if (verified.l4 == L4::kTcp) check_tcp_rebuild(verified);
    if (verified.l4 == L4::kIcmp || verified.l4 == L4::kIcmpv6) check_too_big(verified);
    check_replies(verified, copy);
  }
  return 0;
}
