#include "dataplane/front/packet.h"

#include <algorithm>
#include <bit>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lode::front {
namespace {

using E = PacketError;

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherArp = 0x0806;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88a8;
constexpr uint16_t kEtherIpv6 = 0x86dd;
constexpr uint16_t kMinEtherType = 0x0600;  // below: an 802.3 length, not Ethernet II
constexpr uint16_t kVlanIdMask = 0x0fff;

constexpr size_t kMacLen = 6;
constexpr size_t kEthLen = 14;
constexpr size_t kVlanTagLen = 4;
constexpr size_t kMinFrameLen = 60;  // the Ethernet minimum without the FCS
constexpr size_t kArpLen = 28;
constexpr size_t kIpv4Len = 20;
constexpr size_t kIpv6Len = 40;
constexpr size_t kMaxIpLen = 65535;
constexpr size_t kTcpLen = 20;
constexpr size_t kTcpMaxOptionsLen = 40;
constexpr size_t kIcmpLen = 8;
constexpr size_t kQuotedMinLen = kIpv4Len + 8;  // RFC 792: the IP header and 64 bits of data

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoIcmpv6 = 58;

constexpr uint16_t kIpv4DontFragment = 0x4000;
constexpr uint16_t kIpv4FragmentMask = 0x3fff;  // MF and the offset

// IPv6 extension headers (RFC 8200 4.1).
constexpr uint8_t kExtHopByHop = 0;
constexpr uint8_t kExtRouting = 43;
constexpr uint8_t kExtFragment = 44;
constexpr uint8_t kExtDestOptions = 60;
constexpr int kMaxExtHeaders = 8;

constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpUnreachable = 3;
constexpr uint8_t kIcmpCodeFragNeeded = 4;
constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmpv6PacketTooBig = 2;
constexpr uint8_t kIcmpv6EchoRequest = 128;
constexpr uint8_t kIcmpv6EchoReply = 129;
constexpr uint8_t kNdSolicit = 135;
constexpr uint8_t kNdAdvert = 136;
constexpr uint8_t kNdOptSourceLinkAddr = 1;
constexpr uint8_t kNdOptTargetLinkAddr = 2;
constexpr size_t kNsLen = 24;            // type, code, checksum, reserved, target
constexpr size_t kNdLinkAddrOptLen = 8;  // type, length (1), MAC
constexpr size_t kNaLen = kNsLen + kNdLinkAddrOptLen;
constexpr uint8_t kNaSolicitedOverride = 0x60;  // R=0, S=1, O=1
constexpr uint8_t kNdHopLimit = 255;
constexpr uint8_t kReplyTtl = 64;

constexpr uint16_t kArpHwEthernet = 1;
constexpr uint16_t kArpRequest = 1;
constexpr uint16_t kArpReply = 2;

enum TcpOptionKind : uint8_t {
  kOptEol = 0,
  kOptNop = 1,
  kOptMss = 2,
  kOptWscale = 3,
  kOptSackOk = 4,
  kOptSack = 5,
  kOptTimestamps = 8,
};
constexpr size_t kOptMssLen = 4;
constexpr size_t kOptWscaleLen = 3;
constexpr size_t kOptSackOkLen = 2;
constexpr size_t kOptTimestampsLen = 10;
constexpr size_t kSackBlockLen = 8;
constexpr size_t kMaxSackBlocks = 4;

inline uint16_t load_u16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline uint32_t load_u32(const uint8_t* p) noexcept {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
inline void store_u16(uint8_t* p, size_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void store_u32(uint8_t* p, uint32_t v) noexcept {
  store_u16(p, v >> 16);
  store_u16(p + 2, v & 0xffff);
}

inline bool is_multicast(const IpAddr& a) noexcept {
  if (a.family == 6) return a.bytes[0] == 0xff;
  return (a.bytes[0] & 0xf0) == 0xe0 || a.v4_host() == 0xffffffff;  // 224/4, limited broadcast
}
inline bool is_unspecified(const IpAddr& a) noexcept {
  return std::all_of(a.bytes, a.bytes + a.size(), [](uint8_t b) { return b == 0; });
}
inline bool is_multicast(const MacAddr& m) noexcept {
  return (m[0] & 1) != 0;
}

inline uint32_t fold(uint64_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint32_t>(sum);
}

// The ones' complement sum (RFC 1071) of `data` read as big-endian 16-bit
// words, an odd last byte being the high half of a word, plus `sum`; folded
// to 16 bits, not complemented. Read in native order and swapped once at the
// end (RFC 1071 2(B): the sum is byte-order independent). The bulk goes 32
// bytes at a time: with SSE2 (every x86-64) the 16-bit halves of each 32-bit
// lane summed in separate lanes, else 64-bit words with their carries counted
// (2^64 = 1 modulo 0xffff); a 1,448-byte payload in about a quarter of the
// time of a 32-bit loop.
uint32_t ones_sum(std::span<const uint8_t> data, uint32_t sum) noexcept {
  uint64_t acc = 0;
  const uint8_t* p = data.data();
  size_t n = data.size();
#if defined(__SSE2__)
  while (n >= 32) {
    // At most 2 x 0xffff per lane per 32 bytes: 32 KiB keeps a lane below 2^32.
    size_t chunk = std::min<size_t>(n, 32 * 1024) & ~size_t{31};
    n -= chunk;
    const __m128i low16 = _mm_set1_epi32(0xffff);
    __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
    for (; chunk != 0; p += 32, chunk -= 32) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
      lo = _mm_add_epi32(lo, _mm_and_si128(a, low16));
      hi = _mm_add_epi32(hi, _mm_srli_epi32(a, 16));
      lo = _mm_add_epi32(lo, _mm_and_si128(b, low16));
      hi = _mm_add_epi32(hi, _mm_srli_epi32(b, 16));
    }
    uint32_t l[4], h[4];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(l), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h), hi);
    for (int i = 0; i < 4; ++i) acc += uint64_t{l[i]} + h[i];
  }
#else
  uint64_t a0 = 0, a1 = 0, carries = 0;
  for (; n >= 16; p += 16, n -= 16) {
    uint64_t x, y;
    std::memcpy(&x, p, 8);
    std::memcpy(&y, p + 8, 8);
    a0 += x;
    carries += a0 < x;
    a1 += y;
    carries += a1 < y;
  }
  acc += (a0 & 0xffffffff) + (a0 >> 32) + (a1 & 0xffffffff) + (a1 >> 32) + carries;
#endif
  for (; n >= 4; p += 4, n -= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
  }
  uint8_t tail[4] = {};
  if (n != 0) {
    std::memcpy(tail, p, n);
    uint32_t w;
    std::memcpy(&w, tail, 4);
    acc += w;
  }
  auto native = static_cast<uint16_t>(fold(acc));
  if constexpr (std::endian::native == std::endian::little)
    native = static_cast<uint16_t>(native << 8 | native >> 8);
  return fold(uint64_t{native} + sum);
}

// The IPv4 (RFC 793 3.1) or IPv6 (RFC 8200 8.1) pseudo-header, summed.
uint32_t pseudo_header_sum(const IpAddr& src, const IpAddr& dst, uint8_t proto,
                           size_t len) noexcept {
  const uint32_t s = ones_sum({src.bytes, src.size()}, 0);
  return fold(uint64_t{ones_sum({dst.bytes, dst.size()}, s)} + (len >> 16) + (len & 0xffff) +
              proto);
}

inline void copy_mac(MacAddr& to, const uint8_t* from) noexcept {
  std::memcpy(to.data(), from, kMacLen);
}
inline IpAddr load_v6(std::span<const uint8_t> at) noexcept {
  return IpAddr::v6(at.first<16>());
}

// --- Parsing ---------------------------------------------------------------

// struct arphdr {
//   uint16_t htype;  /* 1: Ethernet */   uint16_t ptype;  /* 0x0800: IPv4 */
//   uint8_t hlen;    /* 6 */             uint8_t plen;    /* 4 */
//   uint16_t op;     /* 1 request, 2 reply */
//   uint8_t sha[6]; uint32_t spa; uint8_t tha[6]; uint32_t tpa;
// };
E parse_arp(std::span<const uint8_t> b, Packet& p) noexcept {
  if (b.size() < kArpLen) return E::kTruncated;
  if (load_u16(&b[0]) != kArpHwEthernet || load_u16(&b[2]) != kEtherIpv4 || b[4] != kMacLen ||
      b[5] != 4)
    return E::kBadArp;
  ArpInfo& a = p.arp;
  a.op = load_u16(&b[6]);
  if (a.op != kArpRequest && a.op != kArpReply) return E::kBadArp;
  copy_mac(a.sender_mac, &b[8]);
  a.sender_ip = load_u32(&b[14]);
  copy_mac(a.target_mac, &b[18]);
  a.target_ip = load_u32(&b[24]);
  return E::kNone;
}

// TCP options (RFC 9293 3.1, RFC 7323, RFC 2018): EOL (0) ends the list, NOP
// (1) is one byte; every other option is { uint8_t kind; uint8_t length;
// uint8_t data[length - 2]; } with length >= 2 and within the list.
E parse_tcp_options(std::span<const uint8_t> o, TcpOptions& out) noexcept {
  size_t i = 0;
  while (i < o.size()) {
    const uint8_t kind = o[i];
    if (kind == kOptEol) break;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (o.size() - i < 2) return E::kBadTcpOptions;
    const size_t len = o[i + 1];
    if (len < 2 || len > o.size() - i) return E::kBadTcpOptions;
    const uint8_t* v = o.data() + i + 2;
    switch (kind) {
      case kOptMss:
        if (len != kOptMssLen) return E::kBadTcpOptions;
        out.mss = load_u16(v);
        break;
      case kOptWscale:
        if (len != kOptWscaleLen) return E::kBadTcpOptions;
        out.wscale = static_cast<int8_t>(std::min<uint8_t>(v[0], 127));
        break;
      case kOptSackOk:
        if (len != kOptSackOkLen) return E::kBadTcpOptions;
        out.sack_ok = true;
        break;
      case kOptSack: {
        const size_t blocks = (len - 2) / kSackBlockLen;  // 40 bytes of options hold 4 at most
        if ((len - 2) % kSackBlockLen != 0 || blocks == 0 || blocks > kMaxSackBlocks)
          return E::kBadTcpOptions;
        out.sack_count = static_cast<uint8_t>(blocks);
        for (size_t k = 0; k < blocks; ++k)
          out.sack[k] = {load_u32(v + k * kSackBlockLen), load_u32(v + k * kSackBlockLen + 4)};
        break;
      }
      case kOptTimestamps:
        if (len != kOptTimestampsLen) return E::kBadTcpOptions;
        out.has_timestamps = true;
        out.ts_val = load_u32(v);
        out.ts_ecr = load_u32(v + 4);
        break;
      default:
        break;  // unknown: skipped by its length
    }
    i += len;
  }
  return E::kNone;
}

// struct tcphdr {
//   uint16_t sport, dport; uint32_t seq, ack;
//   uint8_t doff_reserved;  /* data offset in 32-bit words, high nibble */
//   uint8_t flags; uint16_t window, checksum, urgent;
//   uint8_t options[doff * 4 - 20];
// };
E parse_tcp(std::span<const uint8_t> seg, bool verify, Packet& p) noexcept {
  if (seg.size() < kTcpLen) return E::kTruncated;
  p.sport = load_u16(&seg[0]);
  p.dport = load_u16(&seg[2]);
  p.seq = load_u32(&seg[4]);
  p.ack = load_u32(&seg[8]);
  p.flags = seg[13];
  p.window = load_u16(&seg[14]);
  const size_t hlen = static_cast<size_t>(seg[12] >> 4) * 4;
  if (hlen < kTcpLen || hlen > seg.size()) return E::kBadTcpHeader;
  if (verify && l4_checksum(p.src, p.dst, kProtoTcp, seg) != 0) return E::kBadTcpChecksum;
  if (const E e = parse_tcp_options(seg.subspan(kTcpLen, hlen - kTcpLen), p.options); e != E::kNone)
    return e;
  p.payload = seg.subspan(hlen);
  return E::kNone;
}

// Neighbour discovery options (RFC 4861 4.6): { uint8_t type, length /* in
// 8-byte units, > 0 */; uint8_t data[]; }, up to the end of the message. The
// link-layer address option of `kind` (source 1, target 2), when present,
// must be an Ethernet one (8 bytes); it is kept in p.icmp.nd_mac.
E parse_nd_options(std::span<const uint8_t> opts, uint8_t kind, Packet& p) noexcept {
  for (size_t i = 0; i < opts.size();) {
    if (opts.size() - i < 2) return E::kBadIcmp;
    const size_t len = size_t{opts[i + 1]} * 8;
    if (len == 0 || len > opts.size() - i) return E::kBadIcmp;
    if (opts[i] == kind) {
      if (len != kNdLinkAddrOptLen) return E::kBadIcmp;  // Ethernet addresses only
      p.icmp.has_nd_mac = true;
      copy_mac(p.icmp.nd_mac, &opts[i + 2]);
    }
    i += len;
  }
  return E::kNone;
}

// struct nd_neighbor_solicit {  /* RFC 4861 4.3, validated as in 7.1.1 */
//   uint8_t type /* 135 */, code /* 0 */; uint16_t checksum; uint32_t reserved;
//   uint8_t target[16];
//   struct { uint8_t type, length /* 8-byte units, > 0 */; uint8_t data[]; } options[];
// };
E parse_neighbor_solicit(std::span<const uint8_t> m, Packet& p) noexcept {
  if (p.ttl != kNdHopLimit || p.icmp.code != 0 || m.size() < kNsLen) return E::kBadIcmp;
  p.icmp.nd_target = load_v6(m.subspan(8));
  if (is_multicast(p.icmp.nd_target)) return E::kBadIcmp;
  if (const E e = parse_nd_options(m.subspan(kNsLen), kNdOptSourceLinkAddr, p); e != E::kNone) return e;
  if (p.icmp.has_nd_mac && is_unspecified(p.src)) return E::kBadIcmp;  // none from an unspecified source
  return E::kNone;
}

// struct nd_neighbor_advert {  /* RFC 4861 4.4, validated as in 7.1.2 */
//   uint8_t type /* 136 */, code /* 0 */; uint16_t checksum;
//   uint8_t flags /* R 0x80, S 0x40, O 0x20 */; uint8_t reserved[3];
//   uint8_t target[16];
//   options[] as in a solicitation (the target link-layer address, type 2);
// };
// An advertisement to a multicast address cannot be solicited.
E parse_neighbor_advert(std::span<const uint8_t> m, Packet& p) noexcept {
  if (p.ttl != kNdHopLimit || p.icmp.code != 0 || m.size() < kNsLen) return E::kBadIcmp;
  p.icmp.nd_target = load_v6(m.subspan(8));
  p.icmp.nd_solicited = (m[4] & 0x40) != 0;
  p.icmp.nd_override = (m[4] & 0x20) != 0;
  if (is_multicast(p.icmp.nd_target) || (p.icmp.nd_solicited && is_multicast(p.dst))) return E::kBadIcmp;
  return parse_nd_options(m.subspan(kNsLen), kNdOptTargetLinkAddr, p);
}

// The packet a fragmentation-needed (RFC 792, RFC 1191) or packet-too-big
// (RFC 4443 3.2) message quotes: an IPv4 header (IHL words, options
// included) or an IPv6 header (40 bytes; extension headers are not walked:
// the front sends none, so a quote with one is not a TCP one of ours), then
// at least 8 bytes of what followed it:
// struct { uint16_t sport, dport; uint32_t seq; } tcp_first_8;
void parse_quote(std::span<const uint8_t> q, bool v6, IcmpQuote& out) noexcept {
  using S = IcmpQuote::Status;
  out.status = S::kMalformed;
  size_t hlen = 0;
  uint8_t proto = 0;
  if (!v6) {
    if (q.size() < kIpv4Len || q[0] >> 4 != 4) return;
    hlen = size_t{q[0] & 0x0fu} * 4;
    out.length = load_u16(&q[2]);
    if (hlen < kIpv4Len || hlen + 8 > q.size() || out.length < hlen + 8) return;
    if ((load_u16(&q[6]) & 0x1fff) != 0) return;  // a non-first fragment: no TCP header in it
    out.ttl = q[8];
    proto = q[9];
    out.src = IpAddr::v4(load_u32(&q[12]));
    out.dst = IpAddr::v4(load_u32(&q[16]));
  } else {
    if (q.size() < kIpv6Len + 8 || q[0] >> 4 != 6) return;
    hlen = kIpv6Len;
    out.length = static_cast<uint32_t>(kIpv6Len + load_u16(&q[4]));
    if (out.length < hlen + 8) return;
    proto = q[6];
    out.ttl = q[7];
    out.src = load_v6(q.subspan(8));
    out.dst = load_v6(q.subspan(24));
  }
  if (proto != kProtoTcp) {
    out.status = S::kNotTcp;
    return;
  }
  const uint8_t* t = q.data() + hlen;
  out.sport = load_u16(t);
  out.dport = load_u16(t + 2);
  out.seq = load_u32(t + 4);
  out.status = S::kTcp;
}

// ICMP (RFC 792) and ICMPv6 (RFC 4443 2.1):
// struct icmphdr {
//   uint8_t type, code; uint16_t checksum;  /* ICMPv6: with the pseudo-header */
//   union { struct { uint16_t id, seq; } echo;            /* 8/0, 128/129 */
//           struct { uint16_t unused, mtu; } frag;      /* ICMP 3 code 4 */
//           uint32_t mtu; };                            /* ICMPv6 2 */
//   uint8_t body[];  /* echo data, the quoted IP header + 8 bytes, ... */
// };
E parse_icmp(std::span<const uint8_t> m, bool verify, Packet& p) noexcept {
  if (m.size() < kIcmpLen) return E::kBadIcmp;
  const bool v6 = p.l4 == L4::kIcmpv6;
  IcmpInfo& i = p.icmp;
  i.type = m[0];
  i.code = m[1];
  if (verify && (v6 ? l4_checksum(p.src, p.dst, kProtoIcmpv6, m) : inet_checksum(m)) != 0)
    return E::kBadIcmpChecksum;
  i.body = m.subspan(kIcmpLen);
  if (v6 ? i.type == kIcmpv6EchoRequest || i.type == kIcmpv6EchoReply
         : i.type == kIcmpEchoRequest || i.type == kIcmpEchoReply) {
    i.id = load_u16(&m[4]);
    i.seq = load_u16(&m[6]);
  } else if (!v6 && i.type == kIcmpUnreachable && i.code == kIcmpCodeFragNeeded) {
    if (i.body.size() < kQuotedMinLen) return E::kBadIcmp;
    i.next_hop_mtu = load_u16(&m[6]);
    parse_quote(i.body, false, i.quote);
  } else if (v6 && i.type == kIcmpv6PacketTooBig) {
    if (i.body.size() < kIpv6Len + 8) return E::kBadIcmp;
    i.next_hop_mtu = load_u32(&m[4]);
    parse_quote(i.body, true, i.quote);
  } else if (v6 && i.type == kNdSolicit) {
    return parse_neighbor_solicit(m, p);
  } else if (v6 && i.type == kNdAdvert) {
    return parse_neighbor_advert(m, p);
  }
  return E::kNone;
}

// The upper layer: `seg` holds what the IP length gives it, at `offset` in
// the frame.
E parse_l4(std::span<const uint8_t> seg, size_t offset, bool verify, Packet& p) noexcept {
  p.l4_offset = offset;
  if (p.proto == kProtoTcp) {
    p.l4 = L4::kTcp;
    return parse_tcp(seg, verify, p);
  }
  if (p.proto == kProtoIcmp && p.l3 == L3::kIpv4) {
    p.l4 = L4::kIcmp;
    return parse_icmp(seg, verify, p);
  }
  if (p.proto == kProtoIcmpv6 && p.l3 == L3::kIpv6) {
    p.l4 = L4::kIcmpv6;
    return parse_icmp(seg, verify, p);
  }
  p.l4 = L4::kOther;
  return E::kNone;
}

// struct iphdr {
//   uint8_t version_ihl;  /* 4, header length in 32-bit words (>= 5) */
//   uint8_t tos; uint16_t total_length; uint16_t id;
//   uint16_t flags_offset;  /* reserved, DF, MF, 13-bit fragment offset */
//   uint8_t ttl, protocol; uint16_t checksum; uint32_t src, dst;
//   uint8_t options[ihl * 4 - 20];
// };
E parse_ipv4(std::span<const uint8_t> b, bool verify, Packet& p) noexcept {
  if (b.size() < kIpv4Len) return E::kTruncated;
  if (b[0] >> 4 != 4) return E::kBadIpHeader;
  const size_t hlen = size_t{b[0] & 0x0fu} * 4;
  const size_t total = load_u16(&b[2]);
  if (hlen < kIpv4Len || total < hlen) return E::kBadIpHeader;
  if (total > b.size()) return E::kTruncated;  // what lies past `total` is Ethernet padding
  p.ttl = b[8];
  p.proto = b[9];
  p.src = IpAddr::v4(load_u32(&b[12]));
  p.dst = IpAddr::v4(load_u32(&b[16]));
  if (inet_checksum(b.first(hlen)) != 0) return E::kBadIpChecksum;
  if ((load_u16(&b[6]) & kIpv4FragmentMask) != 0) return E::kFragment;
  return parse_l4(b.subspan(hlen, total - hlen), p.l3_offset + hlen, verify, p);
}

// struct ip6_hdr {
//   uint32_t version_class_flow;  /* 6, traffic class, flow label */
//   uint16_t payload_length; uint8_t next_header, hop_limit;
//   uint8_t src[16], dst[16];
// };
// then extension headers (hop-by-hop first if at all, routing, destination
// options), each { uint8_t next_header; uint8_t length; /* 8-byte units
// after the first 8 */ ... }; the routing header's fourth byte counts the
// segments left. A fragment header (44) ends the walk as kFragment.
E parse_ipv6(std::span<const uint8_t> b, bool verify, Packet& p) noexcept {
  if (b.size() < kIpv6Len) return E::kTruncated;
  if (b[0] >> 4 != 6) return E::kBadIpHeader;
  const size_t payload_len = load_u16(&b[4]);
  if (payload_len > b.size() - kIpv6Len) return E::kTruncated;
  p.ttl = b[7];
  p.src = load_v6(b.subspan(8));
  p.dst = load_v6(b.subspan(24));
  const auto payload = b.subspan(kIpv6Len, payload_len);
  uint8_t next = b[6];
  size_t off = 0;
  for (int n = 0;; ++n) {
    p.proto = next;
    if (next == kExtFragment) return E::kFragment;
    if (next != kExtHopByHop && next != kExtRouting && next != kExtDestOptions) break;
    if (n == kMaxExtHeaders || (next == kExtHopByHop && n != 0)) return E::kBadExtensionHeader;
    if (payload.size() - off < 2) return E::kBadExtensionHeader;
    const size_t len = (size_t{payload[off + 1]} + 1) * 8;
    if (len > payload.size() - off) return E::kBadExtensionHeader;
    // Segments left: the packet is still on its way through a source route,
    // and the pseudo-header's destination would be another one.
    if (next == kExtRouting && payload[off + 3] != 0) return E::kBadExtensionHeader;
    next = payload[off];
    off += len;
  }
  return parse_l4(payload.subspan(off), p.l3_offset + kIpv6Len + off, verify, p);
}

// struct ether_header { uint8_t dst[6], src[6]; uint16_t type; };
// with one 802.1Q tag: type 0x8100, then { uint16_t tci; uint16_t type; }.
E parse_into(std::span<const uint8_t> f, bool verify, Packet& p) noexcept {
  if (f.size() < kEthLen) return E::kTruncated;
  copy_mac(p.dst_mac, &f[0]);
  copy_mac(p.src_mac, &f[6]);
  size_t off = 12;
  uint16_t type = load_u16(&f[off]);
  if (type == kEtherVlan) {
    if (f.size() < kEthLen + kVlanTagLen) return E::kTruncated;
    p.vlan = static_cast<uint16_t>(load_u16(&f[14]) & kVlanIdMask);
    off += kVlanTagLen;
    type = load_u16(&f[off]);
  }
  off += 2;
  if (type < kMinEtherType || type == kEtherVlan || type == kEtherQinQ) return E::kUnsupportedL2;
  p.l3_offset = off;
  switch (type) {
    case kEtherArp:
      p.l3 = L3::kArp;
      return parse_arp(f.subspan(off), p);
    case kEtherIpv4:
      p.l3 = L3::kIpv4;
      return parse_ipv4(f.subspan(off), verify, p);
    case kEtherIpv6:
      p.l3 = L3::kIpv6;
      return parse_ipv6(f.subspan(off), verify, p);
    default:
      return E::kNone;  // another protocol: l3 stays kNone
  }
}

// --- Building --------------------------------------------------------------

// The two ends of a frame to build.
struct Ends {
  MacAddr src_mac, dst_mac;
  uint16_t vlan = 0;
  IpAddr src, dst;
  uint8_t ttl = kReplyTtl;
};

// Writes the Ethernet header (and the 802.1Q tag when vlan != 0); returns
// its length.
size_t put_ethernet(uint8_t* o, const MacAddr& dst, const MacAddr& src, uint16_t vlan,
                    uint16_t type) noexcept {
  std::memcpy(o, dst.data(), kMacLen);
  std::memcpy(o + 6, src.data(), kMacLen);
  size_t off = 12;
  if (vlan != 0) {
    store_u16(o + off, kEtherVlan);
    store_u16(o + off + 2, vlan);
    off += kVlanTagLen;
  }
  store_u16(o + off, type);
  return off + 2;
}

inline size_t l2_len(uint16_t vlan) noexcept {
  return vlan != 0 ? kEthLen + kVlanTagLen : kEthLen;
}

// Pads a frame of `len` bytes to the Ethernet minimum; returns its length.
// The space is checked by the caller (frame_fits).
size_t finish_frame(std::span<uint8_t> out, size_t len) noexcept {
  if (len >= kMinFrameLen) return len;
  std::memset(out.data() + len, 0, kMinFrameLen - len);
  return kMinFrameLen;
}
inline bool frame_fits(std::span<uint8_t> out, size_t len) noexcept {
  return out.size() >= std::max(len, kMinFrameLen);
}

// Where an IP frame's L4 part of `l4_len` bytes goes in `out`: after the
// Ethernet and IP headers; 0 when the ends or the length cannot make a frame
// or `out` cannot hold it.
size_t ip_frame_l4_offset(std::span<uint8_t> out, const Ends& e, size_t l4_len) noexcept {
  if (e.src.family != e.dst.family || (e.src.family != 4 && e.src.family != 6)) return 0;
  if (e.vlan > kVlanIdMask) return 0;
  const bool v4 = e.src.family == 4;
  const size_t ip_len = v4 ? kIpv4Len : kIpv6Len;
  if (l4_len > kMaxIpLen - (v4 ? ip_len : 0)) return 0;  // the IPv6 length leaves out its header
  const size_t l4 = l2_len(e.vlan) + ip_len;
  return frame_fits(out, l4 + l4_len) ? l4 : 0;
}

// Writes the Ethernet and IP headers in front of an L4 part already in place
// (ip_frame_l4_offset said where) and its checksum at `checksum_at` within
// it; returns the frame's length.
size_t finish_ip_frame(std::span<uint8_t> out, const Ends& e, uint8_t proto, size_t l4_len,
                       size_t checksum_at) noexcept {
  uint8_t* o = out.data();
  const bool v4 = e.src.family == 4;
  size_t off = put_ethernet(o, e.dst_mac, e.src_mac, e.vlan, v4 ? kEtherIpv4 : kEtherIpv6);
  uint8_t* ip = o + off;
  if (v4) {
    ip[0] = 0x45;
    ip[1] = 0;
    store_u16(ip + 2, kIpv4Len + l4_len);
    store_u16(ip + 4, 0);
    store_u16(ip + 6, kIpv4DontFragment);
    ip[8] = e.ttl;
    ip[9] = proto;
    store_u16(ip + 10, 0);
    std::memcpy(ip + 12, e.src.bytes, 4);
    std::memcpy(ip + 16, e.dst.bytes, 4);
    store_u16(ip + 10, inet_checksum({ip, kIpv4Len}));
    off += kIpv4Len;
  } else {
    store_u32(ip, 6u << 28);
    store_u16(ip + 4, l4_len);
    ip[6] = proto;
    ip[7] = e.ttl;
    std::memcpy(ip + 8, e.src.bytes, 16);
    std::memcpy(ip + 24, e.dst.bytes, 16);
    off += kIpv6Len;
  }
  uint8_t* l4 = o + off;
  store_u16(l4 + checksum_at, 0);
  const uint16_t sum = v4 && proto == kProtoIcmp ? inet_checksum({l4, l4_len})
                                                 : l4_checksum(e.src, e.dst, proto, {l4, l4_len});
  store_u16(l4 + checksum_at, sum);
  return finish_frame(out, off + l4_len);
}

// Moves `data` (which may lie in `out`) to out[at...].
inline void move_into(std::span<uint8_t> out, size_t at, std::span<const uint8_t> data) noexcept {
  if (!data.empty()) std::memmove(out.data() + at, data.data(), data.size());
}

// The options' length as build_tcp writes them, NOP-padded; above
// kTcpMaxOptionsLen when they cannot be sent.
size_t tcp_options_len(const TcpOptions& o) noexcept {
  if (o.sack_count > kMaxSackBlocks) return SIZE_MAX;
  size_t n = 0;
  if (o.mss != 0) n += kOptMssLen;
  if (o.sack_ok) n += kOptSackOkLen;
  if (o.has_timestamps) n += kOptTimestampsLen;
  if (o.wscale >= 0) n += kOptWscaleLen;
  if (o.sack_count != 0) n += 2 + o.sack_count * kSackBlockLen;
  return (n + 3) & ~size_t{3};
}

void put_tcp_options(uint8_t* o, const TcpOptions& opt, size_t padded_len) noexcept {
  uint8_t* const end = o + padded_len;
  if (opt.mss != 0) {
    o[0] = kOptMss;
    o[1] = kOptMssLen;
    store_u16(o + 2, opt.mss);
    o += kOptMssLen;
  }
  if (opt.sack_ok) {
    o[0] = kOptSackOk;
    o[1] = kOptSackOkLen;
    o += kOptSackOkLen;
  }
  if (opt.has_timestamps) {
    o[0] = kOptTimestamps;
    o[1] = kOptTimestampsLen;
    store_u32(o + 2, opt.ts_val);
    store_u32(o + 6, opt.ts_ecr);
    o += kOptTimestampsLen;
  }
  if (opt.wscale >= 0) {
    o[0] = kOptWscale;
    o[1] = kOptWscaleLen;
    o[2] = static_cast<uint8_t>(opt.wscale);
    o += kOptWscaleLen;
  }
  if (opt.sack_count != 0) {
    o[0] = kOptSack;
    o[1] = static_cast<uint8_t>(2 + opt.sack_count * kSackBlockLen);
    o += 2;
    for (size_t k = 0; k < opt.sack_count; ++k, o += kSackBlockLen) {
      store_u32(o, opt.sack[k].left);
      store_u32(o + 4, opt.sack[k].right);
    }
  }
  std::memset(o, kOptNop, static_cast<size_t>(end - o));
}

size_t put_arp(std::span<uint8_t> out, const MacAddr& dst_mac, uint16_t vlan,
               const ArpInfo& a) noexcept {
  if (vlan > kVlanIdMask || !frame_fits(out, l2_len(vlan) + kArpLen)) return 0;
  const size_t off = put_ethernet(out.data(), dst_mac, a.sender_mac, vlan, kEtherArp);
  uint8_t* b = out.data() + off;
  store_u16(b, kArpHwEthernet);
  store_u16(b + 2, kEtherIpv4);
  b[4] = kMacLen;
  b[5] = 4;
  store_u16(b + 6, a.op);
  std::memcpy(b + 8, a.sender_mac.data(), kMacLen);
  store_u32(b + 14, a.sender_ip);
  std::memcpy(b + 18, a.target_mac.data(), kMacLen);
  store_u32(b + 24, a.target_ip);
  return finish_frame(out, off + kArpLen);
}

}  // namespace

std::string_view to_string(PacketError e) noexcept {
  switch (e) {
    case E::kNone:
      return "none";
    case E::kTruncated:
      return "truncated";
    case E::kUnsupportedL2:
      return "unsupported_l2";
    case E::kBadArp:
      return "bad_arp";
    case E::kBadIpHeader:
      return "bad_ip_header";
    case E::kBadIpChecksum:
      return "bad_ip_checksum";
    case E::kFragment:
      return "fragment";
    case E::kBadExtensionHeader:
      return "bad_extension_header";
    case E::kBadTcpHeader:
      return "bad_tcp_header";
    case E::kBadTcpOptions:
      return "bad_tcp_options";
    case E::kBadTcpChecksum:
      return "bad_tcp_checksum";
    case E::kBadIcmp:
      return "bad_icmp";
    case E::kBadIcmpChecksum:
      return "bad_icmp_checksum";
  }
  return "unknown";
}

uint16_t inet_checksum(std::span<const uint8_t> data, uint32_t sum) noexcept {
  return static_cast<uint16_t>(~ones_sum(data, sum));
}

uint16_t l4_checksum(const IpAddr& src, const IpAddr& dst, uint8_t proto,
                     std::span<const uint8_t> l4) noexcept {
  return inet_checksum(l4, pseudo_header_sum(src, dst, proto, l4.size()));
}

Packet parse_frame(std::span<const uint8_t> frame, bool verify_checksums) noexcept {
  Packet p;
  p.error = parse_into(frame, verify_checksums, p);
  return p;
}

// struct tcphdr as in parse_tcp; the options per tcp_options_len.
size_t build_tcp(std::span<uint8_t> out, const TcpSegment& s) noexcept {
  const size_t opt_len = tcp_options_len(s.options);
  if (opt_len > kTcpMaxOptionsLen) return 0;
  const size_t hlen = kTcpLen + opt_len;
  const size_t l4_len = hlen + s.payload.size();
  const Ends e{s.src_mac, s.dst_mac, s.vlan, s.flow.src, s.flow.dst, s.ttl};
  const size_t l4 = ip_frame_l4_offset(out, e, l4_len);
  if (l4 == 0) return 0;
  move_into(out, l4 + hlen, s.payload);
  uint8_t* t = out.data() + l4;
  store_u16(t, s.flow.sport);
  store_u16(t + 2, s.flow.dport);
  store_u32(t + 4, s.seq);
  store_u32(t + 8, s.ack);
  t[12] = static_cast<uint8_t>(hlen / 4 << 4);
  t[13] = s.flags;
  store_u16(t + 14, s.window);
  store_u16(t + 18, 0);  // urgent pointer
  put_tcp_options(t + kTcpLen, s.options, opt_len);
  return finish_ip_frame(out, e, kProtoTcp, l4_len, 16);
}

size_t build_arp_reply(std::span<uint8_t> out, const Packet& req, const MacAddr& our_mac,
                       uint32_t our_ip) noexcept {
  if (!req.ok() || req.l3 != L3::kArp || req.arp.op != kArpRequest || req.arp.target_ip != our_ip ||
      is_multicast(req.arp.sender_mac))
    return 0;
  const ArpInfo reply{kArpReply, our_mac, req.arp.sender_mac, our_ip, req.arp.sender_ip};
  return put_arp(out, req.arp.sender_mac, req.vlan, reply);
}

size_t build_arp_request(std::span<uint8_t> out, const MacAddr& our_mac, uint32_t our_ip, uint32_t target_ip,
                         uint16_t vlan) noexcept {
  constexpr MacAddr kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const ArpInfo request{kArpRequest, our_mac, MacAddr{}, our_ip, target_ip};
  return put_arp(out, kBroadcast, vlan, request);
}

size_t build_echo_reply(std::span<uint8_t> out, const Packet& req, const MacAddr& our_mac) noexcept {
  const bool v4 = req.l3 == L3::kIpv4 && req.l4 == L4::kIcmp && req.icmp.type == kIcmpEchoRequest;
  const bool v6 =
      req.l3 == L3::kIpv6 && req.l4 == L4::kIcmpv6 && req.icmp.type == kIcmpv6EchoRequest;
  if (!req.ok() || !(v4 || v6) || is_multicast(req.src) || is_multicast(req.dst)) return 0;
  const Ends e{our_mac, req.src_mac, req.vlan, req.dst, req.src, kReplyTtl};
  const size_t l4_len = kIcmpLen + req.icmp.body.size();
  const size_t l4 = ip_frame_l4_offset(out, e, l4_len);
  if (l4 == 0) return 0;
  move_into(out, l4 + kIcmpLen, req.icmp.body);
  uint8_t* m = out.data() + l4;
  m[0] = v4 ? kIcmpEchoReply : kIcmpv6EchoReply;
  m[1] = 0;
  store_u16(m + 4, req.icmp.id);
  store_u16(m + 6, req.icmp.seq);
  return finish_ip_frame(out, e, v4 ? kProtoIcmp : kProtoIcmpv6, l4_len, 2);
}

// struct nd_neighbor_advert {  /* RFC 4861 4.4 */
//   uint8_t type /* 136 */, code; uint16_t checksum;
//   uint8_t flags /* R S O */; uint8_t reserved[3]; uint8_t target[16];
//   struct { uint8_t type /* 2 */, length /* 1 */; uint8_t mac[6]; } target_link_addr;
// };
size_t build_neighbor_advert(std::span<uint8_t> out, const Packet& req, const MacAddr& our_mac,
                             const IpAddr& target) noexcept {
  if (!req.ok() || req.l4 != L4::kIcmpv6 || req.icmp.type != kNdSolicit || target.family != 6 ||
      !(req.icmp.nd_target == target) || is_unspecified(req.src) || is_multicast(req.src))
    return 0;
  const Ends e{our_mac, req.src_mac, req.vlan, target, req.src, kNdHopLimit};
  const size_t l4 = ip_frame_l4_offset(out, e, kNaLen);
  if (l4 == 0) return 0;
  uint8_t* m = out.data() + l4;
  m[0] = kNdAdvert;
  m[1] = 0;
  store_u32(m + 4, uint32_t{kNaSolicitedOverride} << 24);
  std::memcpy(m + 8, target.bytes, 16);
  m[kNsLen] = kNdOptTargetLinkAddr;
  m[kNsLen + 1] = static_cast<uint8_t>(kNdLinkAddrOptLen / 8);
  std::memcpy(m + kNsLen + 2, our_mac.data(), kMacLen);
  return finish_ip_frame(out, e, kProtoIcmpv6, kNaLen, 2);
}

// struct nd_neighbor_solicit as in parse_neighbor_solicit, with our source
// link-layer address option.
size_t build_neighbor_solicit(std::span<uint8_t> out, const MacAddr& our_mac, const IpAddr& src,
                              const IpAddr& target, uint16_t vlan) noexcept {
  if (src.family != 6 || target.family != 6 || is_multicast(target) || is_unspecified(target)) return 0;
  // The solicited-node multicast address (RFC 4291 2.7.1): ff02::1:ff00:0/104
  // and the target's low 24 bits; its MAC (RFC 2464 7): 33:33 and the low 32.
  IpAddr dst = target;
  static constexpr uint8_t kSolicitedNode[13] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff};
  std::memcpy(dst.bytes, kSolicitedNode, sizeof kSolicitedNode);
  const MacAddr dst_mac{0x33, 0x33, dst.bytes[12], dst.bytes[13], dst.bytes[14], dst.bytes[15]};
  const Ends e{our_mac, dst_mac, vlan, src, dst, kNdHopLimit};
  const size_t l4 = ip_frame_l4_offset(out, e, kNaLen);
  if (l4 == 0) return 0;
  uint8_t* m = out.data() + l4;
  m[0] = kNdSolicit;
  m[1] = 0;
  store_u32(m + 4, 0);
  std::memcpy(m + 8, target.bytes, 16);
  m[kNsLen] = kNdOptSourceLinkAddr;
  m[kNsLen + 1] = static_cast<uint8_t>(kNdLinkAddrOptLen / 8);
  std::memcpy(m + kNsLen + 2, our_mac.data(), kMacLen);
  return finish_ip_frame(out, e, kProtoIcmpv6, kNaLen, 2);
}

// struct { icmphdr (3/4: unused, mtu; ICMPv6 2: mtu); iphdr or ip6_hdr;
//          uint16_t sport, dport; uint32_t seq; } as in parse_icmp.
size_t build_icmp_too_big(std::span<uint8_t> out, const IcmpTooBig& m) noexcept {
  const uint8_t family = m.from.family;
  if (m.to.family != family || m.quoted.src.family != family || m.quoted.dst.family != family) return 0;
  const bool v4 = family == 4;
  const size_t ip_len = v4 ? kIpv4Len : kIpv6Len;
  if (m.quoted_length < ip_len + 8 || m.quoted_length > (v4 ? kMaxIpLen : kIpv6Len + kMaxIpLen)) return 0;
  if (v4 && m.mtu > 0xffff) return 0;
  const size_t l4_len = kIcmpLen + ip_len + 8;
  const Ends e{m.src_mac, m.dst_mac, m.vlan, m.from, m.to, kReplyTtl};
  const size_t l4 = ip_frame_l4_offset(out, e, l4_len);
  if (l4 == 0) return 0;
  uint8_t* o = out.data() + l4;
  o[0] = v4 ? kIcmpUnreachable : kIcmpv6PacketTooBig;
  o[1] = v4 ? kIcmpCodeFragNeeded : 0;
  store_u16(o + 2, 0);
  store_u32(o + 4, m.mtu);  // IPv4: 16 unused bits, then the MTU
  uint8_t* q = o + kIcmpLen;
  if (v4) {
    q[0] = 0x45;
    q[1] = 0;
    store_u16(q + 2, m.quoted_length);
    store_u16(q + 4, 0);
    store_u16(q + 6, kIpv4DontFragment);
    q[8] = m.quoted_ttl;
    q[9] = kProtoTcp;
    store_u16(q + 10, 0);
    std::memcpy(q + 12, m.quoted.src.bytes, 4);
    std::memcpy(q + 16, m.quoted.dst.bytes, 4);
    store_u16(q + 10, inet_checksum({q, kIpv4Len}));
  } else {
    store_u32(q, 6u << 28);
    store_u16(q + 4, m.quoted_length - kIpv6Len);
    q[6] = kProtoTcp;
    q[7] = m.quoted_ttl;
    std::memcpy(q + 8, m.quoted.src.bytes, 16);
    std::memcpy(q + 24, m.quoted.dst.bytes, 16);
  }
  uint8_t* t = q + ip_len;
  store_u16(t, m.quoted.sport);
  store_u16(t + 2, m.quoted.dport);
  store_u32(t + 4, m.quoted_seq);
  return finish_ip_frame(out, e, v4 ? kProtoIcmp : kProtoIcmpv6, l4_len, 2);
}

}  // namespace lode::front
