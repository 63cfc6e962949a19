// dataplane/front/packet: the frame parser and builders of the dpdk front.
// Real frames captured on this machine's loopback (AF_PACKET, Linux 6.1)
// anchor the checksums: a curl SYN over IPv4 and IPv6, ICMP and ICMPv6 echo
// requests with the kernel's replies, and a neighbour solicitation with the
// kernel's advertisement. Builders are checked by parsing what they wrote;
// every edit of a fixture recomputes the checksums it breaks, so each test
// fails for the one reason it names.
#include "dataplane/front/packet.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace lode::front {
namespace {

using Bytes = std::vector<uint8_t>;
using E = PacketError;

constexpr MacAddr kMacA{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a};
constexpr MacAddr kMacB{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b};
constexpr size_t kL3 = 14;  // the IP header's offset in an untagged frame

// --- Real frames (loopback: all-zero MACs, TCP checksum left partial) ------

// curl 127.0.0.1:43016 -> 127.0.0.1:18443 SYN: MSS 65495, SACK-permitted,
// timestamps, NOP, window scale 10. The TCP checksum field holds the
// pseudo-header sum (0xfe30, CHECKSUM_PARTIAL on loopback), not the checksum.
constexpr std::string_view kCurlSynV4 =
    "00000000000000000000000008004500003c9cc2400040069ff77f0000017f000001a808480b9dd4480f00000000"
    "a002ffd7fe3000000204ffd70402080a17c3c18b000000000103030a";
// curl [::1]:60862 -> [::1]:18443 SYN, the same options; field 0x0030.
constexpr std::string_view kCurlSynV6 =
    "00000000000000000000000086dd60054bbd0028064000000000000000000000000000000001000000000000000000"
    "00"
    "000000000001edbe480b1a84ea2500000000a002ffc4003000000204ffc40402080a8a5f80f7000000000103030a";
// The full TCP checksums, computed apart from this code (Python, RFC 1071).
constexpr uint16_t kCurlSynV4Checksum = 0xa0b8;
constexpr uint16_t kCurlSynV6Checksum = 0x085b;

// ICMP echo request id 0x1234 seq 7 "lodestone ping 0123456789abcdef", and
// the kernel's reply.
constexpr std::string_view kPingV4 =
    "00000000000000000000000008004500003b0a5540004001326b7f0000017f000001080096ec123400076c6f6465"
    "73746f6e652070696e672030313233343536373839616263646566";
constexpr std::string_view kPongV4 =
    "00000000000000000000000008004500003b0a5600004001726a7f0000017f00000100009eec123400076c6f6465"
    "73746f6e652070696e672030313233343536373839616263646566";
// ICMPv6 echo request id 0x4321 seq 9 (checksum by the kernel), and reply.
constexpr std::string_view kPingV6 =
    "00000000000000000000000086dd60010ac000273a4000000000000000000000000000000001000000000000000000"
    "00"
    "0000000000018000ed99432100096c6f646573746f6e652070696e672030313233343536373839616263646566";
constexpr std::string_view kPongV6 =
    "00000000000000000000000086dd600037ac00273a4000000000000000000000000000000001000000000000000000"
    "00"
    "0000000000018100ec99432100096c6f646573746f6e652070696e672030313233343536373839616263646566";
// Neighbour solicitation ::1 -> ::1 for ::1, hop limit 255, source
// link-layer option 02:00:5e:10:20:30; and the kernel's advertisement (S=1,
// no target link-layer option: loopback has no link-layer address).
constexpr std::string_view kNsV6 =
    "00000000000000000000000086dd6007c9c700203aff000000000000000000000000000000010000000000000000"
    "00000000000000018700f7600000000000000000000000000000000000000001010102005e102030";
constexpr std::string_view kKernelNaV6 =
    "00000000000000000000000086dd6000000000183aff000000000000000000000000000000010000000000000000"
    "0000000000000001880037aa4000000000000000000000000000000000000001";

Bytes from_hex(std::string_view h) {
  Bytes b;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    b.push_back(static_cast<uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return b;
}

uint16_t be16(const Bytes& f, size_t at) {
  return static_cast<uint16_t>(f[at] << 8 | f[at + 1]);
}
void set_be16(Bytes& f, size_t at, size_t v) {
  f[at] = static_cast<uint8_t>(v >> 8);
  f[at + 1] = static_cast<uint8_t>(v);
}
void insert_at(Bytes& f, size_t at, const Bytes& b) {
  f.insert(f.begin() + static_cast<ptrdiff_t>(at), b.begin(), b.end());
}

IpAddr v6(std::string_view text) {
  uint8_t b[16];
  EXPECT_EQ(inet_pton(AF_INET6, std::string(text).c_str(), b), 1) << text;
  return IpAddr::v6(std::span<const uint8_t, 16>(b, 16));
}
IpAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return IpAddr::v4(uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d);
}

// Where the IP datagram of a parsed frame ends (its Ethernet padding after).
size_t ip_end(const Bytes& f, const Packet& p) {
  return p.l3 == L3::kIpv4 ? p.l3_offset + be16(f, p.l3_offset + 2)
                           : p.l3_offset + 40 + be16(f, p.l3_offset + 4);
}

// Recomputes the IPv4 header checksum after an edit.
void fix_ipv4_checksum(Bytes& f, size_t l3 = kL3) {
  set_be16(f, l3 + 10, 0);
  set_be16(f, l3 + 10, inet_checksum({f.data() + l3, size_t{f[l3] & 0x0fu} * 4}));
}

// Recomputes the TCP, ICMP or ICMPv6 checksum after an edit, finding the L4
// bytes by a parse that checks no L4 checksum.
void fix_l4_checksum(Bytes& f) {
  const Packet p = parse_frame(f, false);
  ASSERT_NE(p.l4_offset, 0u) << to_string(p.error);
  const size_t at = p.l4_offset + (p.proto == 6 ? 16 : 2);
  set_be16(f, at, 0);
  const std::span<const uint8_t> l4(f.data() + p.l4_offset, ip_end(f, p) - p.l4_offset);
  set_be16(f, at, p.proto == 1 ? inet_checksum(l4) : l4_checksum(p.src, p.dst, p.proto, l4));
}

// Sets the IP length (IPv4 total or IPv6 payload) and repairs the checksums.
void set_ip_length(Bytes& f, size_t len, bool fix_l4 = true) {
  if (f[kL3] >> 4 == 4) {
    set_be16(f, kL3 + 2, len);
    fix_ipv4_checksum(f);
  } else {
    set_be16(f, kL3 + 4, len);
  }
  if (fix_l4) fix_l4_checksum(f);
}

// Adds an 802.1Q tag (VID `vlan`, priority 5) to an untagged frame.
Bytes tagged(Bytes f, uint16_t vlan) {
  insert_at(f, 12,
            {0x81, 0x00, static_cast<uint8_t>(0xa0 | vlan >> 8), static_cast<uint8_t>(vlan)});
  return f;
}

// Parses the first n bytes of f from a buffer of exactly n bytes (ASan sees
// any read past it); the views die with the buffer, so only the error is kept.
E error_of_prefix(const Bytes& f, size_t n) {
  auto buf = std::make_unique<uint8_t[]>(n + (n == 0));
  if (n != 0) std::memcpy(buf.get(), f.data(), n);
  return parse_frame({buf.get(), n}).error;
}

TcpSegment segment(int family, size_t payload_len = 0, uint16_t vlan = 0) {
  static Bytes payload_bytes = [] {
    Bytes b(65536);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + 1);
    return b;
  }();
  TcpSegment s;
  s.src_mac = kMacA;
  s.dst_mac = kMacB;
  s.vlan = vlan;
  if (family == 4) {
    s.flow = {v4(198, 51, 100, 7), v4(203, 0, 113, 1), 40001, 443};
  } else {
    s.flow = {v6("2001:db8::7"), v6("2001:db8:1::443"), 40001, 443};
  }
  s.seq = 0x01020304;
  s.ack = 0xa0b0c0d0;
  s.flags = kTcpSyn | kTcpAck;
  s.window = 29200;
  s.ttl = 57;
  s.payload = {payload_bytes.data(), payload_len};
  return s;
}

Bytes build(const TcpSegment& s) {
  Bytes out(80 + 40 + s.payload.size());
  const size_t n = build_tcp(out, s);
  out.resize(n);
  return out;
}

void expect_same_options(const TcpOptions& a, const TcpOptions& b) {
  EXPECT_EQ(a.mss, b.mss);
  EXPECT_EQ(a.wscale, b.wscale);
  EXPECT_EQ(a.sack_ok, b.sack_ok);
  EXPECT_EQ(a.has_timestamps, b.has_timestamps);
  EXPECT_EQ(a.ts_val, b.ts_val);
  EXPECT_EQ(a.ts_ecr, b.ts_ecr);
  ASSERT_EQ(a.sack_count, b.sack_count);
  for (size_t k = 0; k < a.sack_count; ++k) {
    EXPECT_EQ(a.sack[k].left, b.sack[k].left);
    EXPECT_EQ(a.sack[k].right, b.sack[k].right);
  }
}

void expect_segment(const Packet& p, const TcpSegment& s) {
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.l4, L4::kTcp);
  EXPECT_EQ(p.dst_mac, s.dst_mac);
  EXPECT_EQ(p.src_mac, s.src_mac);
  EXPECT_EQ(p.vlan, s.vlan);
  EXPECT_EQ(p.l3, s.flow.src.family == 4 ? L3::kIpv4 : L3::kIpv6);
  EXPECT_TRUE(p.flow() == s.flow);
  EXPECT_EQ(p.ttl, s.ttl);
  EXPECT_EQ(p.seq, s.seq);
  EXPECT_EQ(p.ack, s.ack);
  EXPECT_EQ(p.flags, s.flags);
  EXPECT_EQ(p.window, s.window);
  expect_same_options(p.options, s.options);
  ASSERT_EQ(p.payload.size(), s.payload.size());
  EXPECT_TRUE(std::equal(p.payload.begin(), p.payload.end(), s.payload.begin()));
}

// A v4 TCP frame without payload whose option list is exactly `opts` (a
// multiple of 4 bytes), checksums right.
Bytes with_tcp_options(const Bytes& opts) {
  EXPECT_EQ(opts.size() % 4, 0u);
  Bytes f = build(segment(4));
  f.resize(kL3 + 40);  // drop the Ethernet padding
  insert_at(f, kL3 + 40, opts);
  f[kL3 + 20 + 12] = static_cast<uint8_t>((20 + opts.size()) / 4 << 4);
  set_ip_length(f, 40 + opts.size());
  return f;
}

// A v6 TCP frame with the extension headers `ext` between the fixed header
// and TCP; `first` is the first one's type (the caller chains the rest and
// ends the chain with 6).
Bytes with_ext_headers(uint8_t first, const Bytes& ext) {
  Bytes f = build(segment(6, 10));
  insert_at(f, kL3 + 40, ext);
  f[kL3 + 6] = first;
  set_be16(f, kL3 + 4, be16(f, kL3 + 4) + ext.size());
  return f;  // the TCP checksum holds: same addresses, same upper-layer length
}
// One extension header: next header, (units + 1) * 8 bytes, byte 3 = b3.
Bytes ext_header(uint8_t next, uint8_t units, uint8_t b3 = 0) {
  Bytes h((size_t{units} + 1) * 8, 0);
  h[0] = next;
  h[1] = units;
  h[3] = b3;
  return h;
}

// The ping fixtures with other MACs, so swapped MACs show.
Bytes ping_with_macs(std::string_view hex) {
  Bytes f = from_hex(hex);
  std::memcpy(f.data(), kMacB.data(), 6);
  std::memcpy(f.data() + 6, kMacA.data(), 6);
  return f;
}

// The v4 ping fixture with its ICMP message replaced by `icmp` (checksum
// computed).
Bytes icmp4_frame(const Bytes& icmp) {
  Bytes f = ping_with_macs(kPingV4);
  f.resize(kL3 + 20);
  insert_at(f, f.size(), icmp);
  set_ip_length(f, 20 + icmp.size());
  return f;
}
// The NS fixture with its ICMPv6 message replaced by `icmp`, hop limit and
// source changed.
Bytes icmp6_frame(const Bytes& icmp, uint8_t hop_limit = 255, const IpAddr* src = nullptr) {
  Bytes f = ping_with_macs(kNsV6);
  f.resize(kL3 + 40);
  insert_at(f, f.size(), icmp);
  f[kL3 + 7] = hop_limit;
  if (src != nullptr) std::memcpy(f.data() + kL3 + 8, src->bytes, 16);
  set_ip_length(f, icmp.size());
  return f;
}
// A neighbour solicitation for `target` with the options `opts`.
Bytes ns_message(const IpAddr& target, const Bytes& opts) {
  Bytes m(24 + opts.size(), 0);
  m[0] = 135;
  std::copy(target.bytes, target.bytes + 16, m.begin() + 8);
  std::copy(opts.begin(), opts.end(), m.begin() + 24);
  return m;
}

// --- Checksums -------------------------------------------------------------

uint16_t reference_checksum(std::span<const uint8_t> d, uint32_t sum) {
  uint64_t s = sum;
  for (size_t i = 0; i < d.size(); i += 2)
    s += uint32_t{d[i]} << 8 | (i + 1 < d.size() ? d[i + 1] : 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

TEST(PacketChecksumTest, Rfc1071Example) {
  // RFC 1071 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
  const Bytes d{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(inet_checksum(d), 0xffff - 0xddf2);
  EXPECT_EQ(inet_checksum({}), 0xffff);
  EXPECT_EQ(inet_checksum(Bytes{0xff}), 0x00ff);  // an odd byte is a word's high half
}

TEST(PacketChecksumTest, MatchesAPlainSumAtEveryLengthAlignmentAndStart) {
  std::mt19937 rng(7);
  Bytes buf(1600);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t off = 0; off < 4; ++off) {
    for (size_t len = 0; len < 300; ++len) {
      const std::span<const uint8_t> d(buf.data() + off, len);
      for (const uint32_t start :
           {0u, 1u, 0xffffu, 0x3fffeu, static_cast<uint32_t>(rng() & 0xfffff)})
        ASSERT_EQ(inet_checksum(d, start), reference_checksum(d, start)) << off << " " << len;
    }
  }
  const std::span<const uint8_t> all(buf.data() + 1, 1599);
  EXPECT_EQ(inet_checksum(all), reference_checksum(all, 0));
  const Bytes ones(65535, 0xff);  // the carries of the longest datagram
  EXPECT_EQ(inet_checksum(ones, 0xffffffffu), reference_checksum(ones, 0xffffffffu));
}

TEST(PacketChecksumTest, RealSynV4FromLoopbackCurl) {
  Bytes f = from_hex(kCurlSynV4);
  EXPECT_EQ(inet_checksum({f.data() + kL3, 20}), 0);  // the kernel's IP header checksum
  const Packet p = parse_frame(f, false);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.l3, L3::kIpv4);
  EXPECT_EQ(p.l4, L4::kTcp);
  EXPECT_TRUE(p.src == v4(127, 0, 0, 1) && p.dst == v4(127, 0, 0, 1));
  EXPECT_EQ(p.ttl, 64);
  EXPECT_EQ(p.sport, 43016);
  EXPECT_EQ(p.dport, 18443);
  EXPECT_EQ(p.seq, 0x9dd4480fu);
  EXPECT_EQ(p.ack, 0u);
  EXPECT_EQ(p.flags, kTcpSyn);
  EXPECT_EQ(p.window, 65495);
  EXPECT_EQ(p.options.mss, 65495);
  EXPECT_TRUE(p.options.sack_ok);
  EXPECT_TRUE(p.options.has_timestamps);
  EXPECT_EQ(p.options.ts_val, 0x17c3c18bu);
  EXPECT_EQ(p.options.ts_ecr, 0u);
  EXPECT_EQ(p.options.wscale, 10);
  EXPECT_EQ(p.options.sack_count, 0);
  EXPECT_TRUE(p.payload.empty());
  EXPECT_EQ(p.l4_offset, 34u);

  // As captured the field holds the pseudo-header sum: not a checksum.
  EXPECT_EQ(parse_frame(f).error, E::kBadTcpChecksum);
  set_be16(f, 34 + 16, 0);
  const std::span<const uint8_t> seg(f.data() + 34, f.size() - 34);
  EXPECT_EQ(l4_checksum(p.src, p.dst, 6, seg), kCurlSynV4Checksum);
  set_be16(f, 34 + 16, kCurlSynV4Checksum);
  EXPECT_TRUE(parse_frame(f).ok());
}

TEST(PacketChecksumTest, RealSynV6FromLoopbackCurl) {
  Bytes f = from_hex(kCurlSynV6);
  const Packet p = parse_frame(f, false);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.l3, L3::kIpv6);
  EXPECT_TRUE(p.src == v6("::1") && p.dst == v6("::1"));
  EXPECT_EQ(p.ttl, 64);
  EXPECT_EQ(p.sport, 60862);
  EXPECT_EQ(p.dport, 18443);
  EXPECT_EQ(p.seq, 0x1a84ea25u);
  EXPECT_EQ(p.flags, kTcpSyn);
  EXPECT_EQ(p.window, 65476);
  EXPECT_EQ(p.options.mss, 65476);
  EXPECT_TRUE(p.options.sack_ok);
  EXPECT_EQ(p.options.ts_val, 0x8a5f80f7u);
  EXPECT_EQ(p.options.wscale, 10);
  EXPECT_EQ(p.l4_offset, 54u);

  EXPECT_EQ(parse_frame(f).error, E::kBadTcpChecksum);
  set_be16(f, 54 + 16, 0);
  EXPECT_EQ(l4_checksum(p.src, p.dst, 6, {f.data() + 54, f.size() - 54}), kCurlSynV6Checksum);
  set_be16(f, 54 + 16, kCurlSynV6Checksum);
  EXPECT_TRUE(parse_frame(f).ok());
}

TEST(PacketChecksumTest, RebuiltRealSynParsesToTheSameFields) {
  for (const auto hex : {kCurlSynV4, kCurlSynV6}) {
    const Packet p = parse_frame(from_hex(hex), false);
    ASSERT_TRUE(p.ok());
    TcpSegment s;
    s.src_mac = p.src_mac;
    s.dst_mac = p.dst_mac;
    s.flow = p.flow();
    s.seq = p.seq;
    s.flags = p.flags;
    s.window = p.window;
    s.ttl = p.ttl;
    s.options = p.options;
    const Bytes f = build(s);
    EXPECT_EQ(f.size(), hex.size() / 2);  // the same 20 option bytes
    expect_segment(parse_frame(f), s);
  }
}

// --- TCP: build -> parse ----------------------------------------------------

TEST(PacketTcpTest, RoundTripEveryOptionCombinationPayloadAndVlan) {
  int built = 0, refused = 0;
  for (const int family : {4, 6}) {
    for (const uint16_t vlan : {uint16_t{0}, uint16_t{42}, uint16_t{4095}}) {
      for (const size_t payload : {size_t{0}, size_t{1}, size_t{1460}}) {
        for (unsigned mask = 0; mask < 16; ++mask) {
          for (uint8_t sacks = 0; sacks <= 4; ++sacks) {
            TcpSegment s = segment(family, payload, vlan);
            size_t raw = 0;
            if (mask & 1) s.options.mss = 1460, raw += 4;
            if (mask & 2) s.options.sack_ok = true, raw += 2;
            if (mask & 4)
              s.options.has_timestamps = true, s.options.ts_val = 0xdeadbeef, s.options.ts_ecr = 7,
              raw += 10;
            if (mask & 8) s.options.wscale = 7, raw += 3;
            s.options.sack_count = sacks;
            for (uint8_t k = 0; k < sacks; ++k)
              s.options.sack[k] = {1000u * k + 1, 1000u * k + 500};
            if (sacks != 0) raw += 2 + 8 * size_t{sacks};
            const Bytes f = build(s);
            if (raw > 40) {
              EXPECT_TRUE(f.empty()) << raw;
              ++refused;
              continue;
            }
            ASSERT_FALSE(f.empty()) << family << " " << mask << " " << int{sacks};
            const size_t opt_len = (raw + 3) / 4 * 4;
            const size_t real = (vlan ? 18 : 14) + (family == 4 ? 20 : 40) + 20 + opt_len + payload;
            EXPECT_EQ(f.size(), std::max<size_t>(real, 60));
            const Packet p = parse_frame(f);
            expect_segment(p, s);
            EXPECT_EQ(p.l4_offset + 20 + opt_len, real - payload);
            ++built;
          }
        }
      }
    }
  }
  EXPECT_EQ(built + refused, 2 * 3 * 3 * 16 * 5);
  EXPECT_GT(refused, 0);
}

TEST(PacketTcpTest, OptionsInTheDocumentedOrderPaddedWithNops) {
  TcpSegment s = segment(4);
  s.options.mss = 1460;
  s.options.sack_ok = true;
  s.options.has_timestamps = true;
  s.options.ts_val = 1;
  s.options.ts_ecr = 2;
  s.options.wscale = 9;
  const Bytes f = build(s);
  const Bytes want{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 3, 3, 9, 1};
  ASSERT_EQ(f.size(), 34u + 20 + 20);
  EXPECT_EQ(f[34 + 12], (20 + 20) / 4 << 4);
  EXPECT_EQ(Bytes(f.begin() + 54, f.end()), want);
  EXPECT_EQ(be16(f, kL3 + 6), 0x4000);  // DF, no fragment
  EXPECT_EQ(be16(f, kL3 + 4), 0);       // id 0
}

TEST(PacketTcpTest, ShortFramesArePaddedAndThePaddingIgnored) {
  const Bytes f = build(segment(4));
  ASSERT_EQ(f.size(), 60u);
  EXPECT_EQ(Bytes(f.begin() + 54, f.end()), Bytes(6, 0));
  EXPECT_EQ(be16(f, kL3 + 2), 40);
  EXPECT_TRUE(parse_frame(f).payload.empty());

  for (const int family : {4, 6}) {
    Bytes g = build(segment(family, 5));
    g.insert(g.end(), {0xde, 0xad, 0xbe, 0xef, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa});
    const Packet p = parse_frame(g);
    ASSERT_TRUE(p.ok()) << to_string(p.error);
    EXPECT_EQ(p.payload.size(), 5u);  // bounded by the IP length, not the frame
  }
}

TEST(PacketTcpTest, RefusesWhatCannotBeSent) {
  Bytes out(2000);
  TcpSegment s = segment(4);
  s.flow.dst = v6("2001:db8::1");
  EXPECT_EQ(build_tcp(out, s), 0u);  // families differ
  s = segment(4);
  s.flow.src.family = s.flow.dst.family = 0;
  EXPECT_EQ(build_tcp(out, s), 0u);
  s = segment(4);
  s.options.sack_count = 5;
  EXPECT_EQ(build_tcp(out, s), 0u);
  s = segment(4);
  s.vlan = 4096;
  EXPECT_EQ(build_tcp(out, s), 0u);

  // The IPv4 total length and the IPv6 payload length are 16 bits.
  Bytes big(70000);
  EXPECT_EQ(build_tcp(big, segment(4, 65535 - 40)), 14u + 65535);
  EXPECT_EQ(build_tcp(big, segment(4, 65535 - 39)), 0u);
  EXPECT_EQ(build_tcp(big, segment(6, 65535 - 20)), 14u + 40 + 65535);
  EXPECT_EQ(build_tcp(big, segment(6, 65535 - 19)), 0u);
}

TEST(PacketTcpTest, NeverWritesPastASmallOut) {
  for (const auto& s : {segment(4), segment(4, 100, 7), segment(6, 3)}) {
    const size_t need = build(s).size();
    for (size_t n = 0; n <= need; ++n) {
      Bytes buf(n + 16, 0xcc);
      const size_t got = build_tcp({buf.data(), n}, s);
      EXPECT_EQ(got, n == need ? need : 0) << n;
      EXPECT_EQ(Bytes(buf.begin() + static_cast<ptrdiff_t>(n), buf.end()), Bytes(16, 0xcc));
    }
  }
}

TEST(PacketTcpTest, PayloadMovedInPlace) {
  // The payload may live in `out` (a segment rebuilt over the frame it came from).
  Bytes f = build(segment(4, 300));
  const Packet p = parse_frame(f);
  ASSERT_TRUE(p.ok());
  const Bytes want_payload(p.payload.begin(), p.payload.end());
  TcpSegment s = segment(4);
  s.options.has_timestamps = true;  // a longer header: the payload moves forward
  s.options.mss = 1200;
  s.payload = p.payload;
  f.resize(f.size() + 16);
  const size_t n = build_tcp(f, s);
  ASSERT_NE(n, 0u);
  const Packet q = parse_frame({f.data(), n});
  ASSERT_TRUE(q.ok()) << to_string(q.error);
  EXPECT_EQ(Bytes(q.payload.begin(), q.payload.end()), want_payload);
}

TEST(PacketTcpTest, OneFlippedPayloadBitIsABadChecksum) {
  for (const int family : {4, 6}) {
    const Bytes good = build(segment(family, 1460));
    const size_t payload_at = good.size() - 1460;
    for (const size_t at : {payload_at, payload_at + 731, good.size() - 1}) {
      Bytes f = good;
      f[at] ^= 0x10;
      EXPECT_EQ(parse_frame(f).error, E::kBadTcpChecksum);
      EXPECT_TRUE(parse_frame(f, false).ok());  // the NIC vouched for it
    }
    Bytes f = good;
    f[kL3 + (family == 4 ? 20 : 40) + 15] ^= 1;  // the window
    EXPECT_EQ(parse_frame(f).error, E::kBadTcpChecksum);
  }
}

TEST(PacketTcpTest, BadDataOffset) {
  for (const uint8_t doff : {0, 1, 4}) {
    Bytes f = build(segment(4, 8));
    f[34 + 12] = static_cast<uint8_t>(doff << 4);
    fix_l4_checksum(f);
    EXPECT_EQ(parse_frame(f).error, E::kBadTcpHeader) << int{doff};
  }
  Bytes f = build(segment(4, 8));  // 28 bytes of segment
  f[34 + 12] = 8 << 4;             // 32
  fix_l4_checksum(f);
  EXPECT_EQ(parse_frame(f).error, E::kBadTcpHeader);
  f[34 + 12] = 7 << 4;  // 28: all header, no payload
  fix_l4_checksum(f);
  EXPECT_EQ(parse_frame(f).error, E::kBadTcpOptions);  // the payload bytes read as options
}

// --- Truncation ---------------------------------------------------------------

TEST(PacketTruncationTest, EveryPrefixOfAValidFrameIsTruncated) {
  TcpSegment with_options = segment(4, 30, 100);
  with_options.options.mss = 1400;
  with_options.options.has_timestamps = true;
  with_options.options.sack_count = 2;
  const Bytes frames[] = {build(with_options),
                          build(segment(6, 1)),
                          build(segment(4, 1460)),
                          ping_with_macs(kPingV4),
                          from_hex(kPingV6),
                          from_hex(kNsV6),
                          with_ext_headers(60, ext_header(6, 2))};
  for (const Bytes& f : frames) {
    const Packet whole = parse_frame(f);
    ASSERT_TRUE(whole.ok()) << to_string(whole.error);
    const size_t real = ip_end(f, whole);
    for (size_t n = 0; n < real; ++n)
      EXPECT_EQ(error_of_prefix(f, n), E::kTruncated) << n << " of " << real;
    for (size_t n = real; n <= f.size(); ++n) EXPECT_EQ(error_of_prefix(f, n), E::kNone) << n;
  }
  Bytes arp(60);
  ASSERT_EQ(build_arp_request(arp, kMacA, 0x0a000001, 0x0a000002), 60u);
  for (size_t n = 0; n < 14 + 28; ++n) EXPECT_EQ(error_of_prefix(arp, n), E::kTruncated) << n;
  EXPECT_EQ(error_of_prefix(arp, 42), E::kNone);
}

TEST(PacketTruncationTest, EveryShorterIpLengthIsAnError) {
  // The IP length shrinks with the frame: each layer sees a short message.
  TcpSegment s = segment(4, 12);
  s.options.mss = 1400;
  const Bytes good = build(s);  // 20 IP + 24 TCP + 12 payload
  for (size_t total = 0; total < 56; ++total) {
    Bytes f = good;
    set_ip_length(f, total, false);
    const E want = total < 20   ? E::kBadIpHeader
                   : total < 40 ? E::kTruncated
                   : total < 44 ? E::kBadTcpHeader
                                : E::kNone;
    if (want != E::kNone) {
      EXPECT_EQ(parse_frame(f).error, want) << total;
      continue;
    }
    EXPECT_EQ(parse_frame(f).error, E::kBadTcpChecksum)
        << total;  // the sum covered the bytes cut off
    const Packet p = parse_frame(f, false);
    ASSERT_TRUE(p.ok()) << total;
    EXPECT_EQ(p.payload.size(), total - 44);
  }
  for (size_t len = 0; len < 30; ++len) {  // ICMP: 8 bytes of header at least
    Bytes f = ping_with_macs(kPingV4);
    set_ip_length(f, 20 + len, false);
    if (len < 8)
      EXPECT_EQ(parse_frame(f).error, E::kBadIcmp) << len;
    else
      EXPECT_EQ(parse_frame(f).error, E::kBadIcmpChecksum) << len;
  }
}

// --- Ethernet ----------------------------------------------------------------

TEST(PacketL2Test, VlanTagKeptAndPriorityDropped) {
  const Bytes f = tagged(build(segment(4, 3)), 0x123);
  const Packet p = parse_frame(f);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.vlan, 0x123);
  EXPECT_EQ(p.l3_offset, 18u);
  EXPECT_EQ(p.l4_offset, 38u);
}

TEST(PacketL2Test, UnsupportedFraming) {
  Bytes f = build(segment(4));
  set_be16(f, 12, 0x0040);  // an 802.3 length
  EXPECT_EQ(parse_frame(f).error, E::kUnsupportedL2);
  EXPECT_EQ(parse_frame(tagged(tagged(build(segment(4)), 5), 6)).error, E::kUnsupportedL2);
  Bytes qinq = tagged(build(segment(4)), 5);
  set_be16(qinq, 12, 0x88a8);
  EXPECT_EQ(parse_frame(qinq).error, E::kUnsupportedL2);
  Bytes inner_qinq = tagged(build(segment(4)), 5);
  set_be16(inner_qinq, 16, 0x88a8);
  EXPECT_EQ(parse_frame(inner_qinq).error, E::kUnsupportedL2);
}

TEST(PacketL2Test, OtherEthertypeIsNoError) {
  Bytes f = build(segment(4));
  set_be16(f, 12, 0x88cc);  // LLDP
  const Packet p = parse_frame(f);
  EXPECT_TRUE(p.ok());
  EXPECT_EQ(p.l3, L3::kNone);
  EXPECT_EQ(p.l4, L4::kNone);
}

// --- IPv4 ----------------------------------------------------------------------

TEST(PacketIpv4Test, BadHeaders) {
  const Bytes good = build(segment(4, 10));
  Bytes f = good;
  f[kL3] = 0x65;  // version 6 in an IPv4 ethertype
  fix_ipv4_checksum(f);
  EXPECT_EQ(parse_frame(f).error, E::kBadIpHeader);
  f = good;
  f[kL3] = 0x44;  // IHL 4
  EXPECT_EQ(parse_frame(f).error, E::kBadIpHeader);
  f = good;
  f[kL3] = 0x4f;  // IHL 15: 60 bytes, more than the total length (50)
  EXPECT_EQ(parse_frame(f).error, E::kBadIpHeader);
  f = good;
  set_be16(f, kL3 + 2, good.size() - kL3 + 1);  // past the frame
  fix_ipv4_checksum(f);
  EXPECT_EQ(parse_frame(f).error, E::kTruncated);
}

TEST(PacketIpv4Test, HeaderChecksumAlwaysChecked) {
  const Bytes good = build(segment(4, 10));
  for (const size_t at : {kL3 + 1, kL3 + 8, kL3 + 12, kL3 + 19}) {
    Bytes f = good;
    f[at] ^= 0x01;
    EXPECT_EQ(parse_frame(f).error, E::kBadIpChecksum) << at;
    EXPECT_EQ(parse_frame(f, false).error, E::kBadIpChecksum) << at;
  }
}

TEST(PacketIpv4Test, OptionsSkipped) {
  Bytes f = build(segment(4, 10));
  insert_at(f, kL3 + 20, {0x01, 0x01, 0x01, 0x00});  // NOP NOP NOP EOL
  f[kL3] = 0x46;
  set_be16(f, kL3 + 2, be16(f, kL3 + 2) + 4);
  fix_ipv4_checksum(f);  // the TCP checksum holds: same pseudo-header
  const Packet p = parse_frame(f);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.l4_offset, kL3 + 24);
  expect_segment(p, segment(4, 10));
}

TEST(PacketIpv4Test, FragmentsRefused) {
  for (const uint16_t frag : {0x2000, 0x0001, 0x00b9, 0x1fff, 0x2001, 0x6000}) {
    Bytes f = build(segment(4, 10));
    set_be16(f, kL3 + 6, frag);
    fix_ipv4_checksum(f);
    const Packet p = parse_frame(f);
    EXPECT_EQ(p.error, E::kFragment) << frag;
    EXPECT_TRUE(p.src == segment(4).flow.src);  // known, for the counter or a log
    EXPECT_EQ(p.proto, 6);
  }
  Bytes f = build(segment(4, 10));
  set_be16(f, kL3 + 6, 0x0000);  // no DF is no fragment either
  fix_ipv4_checksum(f);
  EXPECT_TRUE(parse_frame(f).ok());
}

TEST(PacketIpv4Test, OtherProtocolsPassAsOther) {
  for (const uint8_t proto : {17, 58, 132}) {
    Bytes f = build(segment(4, 10));
    f[kL3 + 9] = proto;
    fix_ipv4_checksum(f);
    const Packet p = parse_frame(f);
    ASSERT_TRUE(p.ok()) << int{proto};
    EXPECT_EQ(p.l4, L4::kOther);
    EXPECT_EQ(p.proto, proto);
  }
}

// --- IPv6 ----------------------------------------------------------------------

TEST(PacketIpv6Test, ExtensionChainWalked) {
  Bytes chain = ext_header(60, 0);            // hop-by-hop, 8 bytes
  const Bytes dst_opts = ext_header(43, 1);   // destination options, 16
  const Bytes routing = ext_header(6, 2, 0);  // routing, 24, segments left 0
  chain.insert(chain.end(), dst_opts.begin(), dst_opts.end());
  chain.insert(chain.end(), routing.begin(), routing.end());
  const Bytes f = with_ext_headers(0, chain);
  const Packet p = parse_frame(f);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.proto, 6);
  EXPECT_EQ(p.l4_offset, kL3 + 40 + 48);
  expect_segment(p, segment(6, 10));
}

TEST(PacketIpv6Test, EightExtensionHeadersAtMost) {
  for (const size_t count : {8, 9}) {
    Bytes chain;
    for (size_t i = 0; i < count; ++i) {
      const Bytes h = ext_header(i + 1 == count ? 6 : 60, 0);
      chain.insert(chain.end(), h.begin(), h.end());
    }
    EXPECT_EQ(parse_frame(with_ext_headers(60, chain)).error,
              count == 8 ? E::kNone : E::kBadExtensionHeader);
  }
}

TEST(PacketIpv6Test, BadExtensionHeaders) {
  // Hop-by-hop anywhere but first.
  Bytes chain = ext_header(0, 0);
  const Bytes hbh = ext_header(6, 0);
  chain.insert(chain.end(), hbh.begin(), hbh.end());
  EXPECT_EQ(parse_frame(with_ext_headers(60, chain)).error, E::kBadExtensionHeader);
  // A routing header with segments left: not at its destination yet.
  EXPECT_EQ(parse_frame(with_ext_headers(43, ext_header(6, 0, 1))).error, E::kBadExtensionHeader);
  // Longer than the payload (8 bytes of it, then 30 of TCP): 48 bytes.
  Bytes long_one = with_ext_headers(60, ext_header(6, 0));
  long_one[kL3 + 40 + 1] = 5;
  EXPECT_EQ(parse_frame(long_one).error, E::kBadExtensionHeader);
  long_one[kL3 + 40 + 1] = 4;  // 40 bytes: 2 more than there are
  EXPECT_EQ(parse_frame(long_one).error, E::kBadExtensionHeader);
  // One byte of header left at the payload's end.
  Bytes f = build(segment(6));
  f.resize(kL3 + 40);
  f.push_back(6);
  f[kL3 + 6] = 60;
  set_be16(f, kL3 + 4, 1);
  EXPECT_EQ(parse_frame(f).error, E::kBadExtensionHeader);
  // No payload at all behind an extension header type.
  set_be16(f, kL3 + 4, 0);
  EXPECT_EQ(parse_frame(f).error, E::kBadExtensionHeader);
}

TEST(PacketIpv6Test, FragmentHeaderRefused) {
  Bytes frag = ext_header(6, 0);
  EXPECT_EQ(parse_frame(with_ext_headers(44, frag)).error, E::kFragment);
  Bytes chain = ext_header(44, 0);
  chain.insert(chain.end(), frag.begin(), frag.end());
  const Packet p = parse_frame(with_ext_headers(0, chain));
  EXPECT_EQ(p.error, E::kFragment);
  EXPECT_EQ(p.proto, 44);
}

TEST(PacketIpv6Test, BadFixedHeader) {
  const Bytes good = build(segment(6, 10));
  Bytes f = good;
  f[kL3] = 0x40;
  EXPECT_EQ(parse_frame(f).error, E::kBadIpHeader);
  f = good;
  set_be16(f, kL3 + 4, good.size() - kL3 - 40 + 1);
  EXPECT_EQ(parse_frame(f).error, E::kTruncated);
}

TEST(PacketIpv6Test, NoNextHeaderAndOthersPassAsOther) {
  for (const uint8_t next : {59, 17, 1}) {
    Bytes f = build(segment(6, 10));
    f[kL3 + 6] = next;
    const Packet p = parse_frame(f);
    ASSERT_TRUE(p.ok()) << int{next};
    EXPECT_EQ(p.l4, L4::kOther);
  }
}

// --- TCP options -------------------------------------------------------------

TEST(PacketTcpOptionsTest, MalformedLists) {
  const std::vector<std::pair<const char*, Bytes>> bad = {
      {"unknown, length 0", {30, 0, 1, 1}},
      {"mss, length 0", {2, 0, 1, 1}},
      {"length 1", {30, 1, 1, 1}},
      {"kind without a length byte", {1, 1, 1, 30}},
      {"overrun by one", {30, 5, 0, 0}},
      {"mss overruns by one", {1, 2, 4, 5}},
      {"mss length 3", {2, 3, 5, 1}},
      {"mss length 5", {2, 5, 5, 0xb4, 0, 1, 1, 1}},
      {"window scale length 4", {3, 4, 7, 0}},
      {"window scale length 2", {3, 2, 1, 1}},
      {"sack-permitted length 3", {4, 3, 0, 1}},
      {"timestamps length 8", {8, 8, 0, 0, 0, 1, 0, 0}},
      {"sack without blocks", {5, 2, 1, 1}},
      {"sack with a 3-byte block", {5, 5, 0, 0, 1, 1, 1, 1}},
      {"sack with 1.5 blocks", {5, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 1}},
      {"5 sack blocks",
       [] {
         Bytes b(40, 0);
         b[0] = 5;
         b[1] = 42;
         return b;
       }()},
      {"good then bad", {2, 4, 5, 0xb4, 3, 4, 1, 1}},
  };
  for (const auto& [what, opts] : bad) {
    Bytes o = opts;
    while (o.size() % 4 != 0) o.push_back(1);
    const Bytes f = with_tcp_options(o);
    EXPECT_EQ(parse_frame(f).error, E::kBadTcpOptions) << what;
    EXPECT_EQ(parse_frame(f, false).error, E::kBadTcpOptions) << what;
  }
}

TEST(PacketTcpOptionsTest, WellFormedEdgeCases) {
  // Unknown kinds skipped by their length; EOL ends the list whatever follows.
  Packet p = parse_frame(with_tcp_options({30, 6, 9, 9, 9, 9, 2, 4, 0x05, 0xb4, 0, 0xff}));
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.options.mss, 1460);
  p = parse_frame(with_tcp_options({0, 2, 0xff, 0xff}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.options.mss, 0);
  p = parse_frame(with_tcp_options({1, 1, 1, 1, 1, 1, 1, 1}));
  ASSERT_TRUE(p.ok());
  // Four SACK blocks fill 34 bytes; the largest window scale values.
  Bytes four(36, 0);
  four[0] = 5;
  four[1] = 34;
  for (size_t k = 0; k < 4; ++k)
    four[2 + 8 * k + 3] = static_cast<uint8_t>(k),
                     four[2 + 8 * k + 7] = static_cast<uint8_t>(k + 100);
  p = parse_frame(with_tcp_options(four));
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  ASSERT_EQ(p.options.sack_count, 4);
  EXPECT_EQ(p.options.sack[3].left, 3u);
  EXPECT_EQ(p.options.sack[3].right, 103u);
  EXPECT_EQ(parse_frame(with_tcp_options({3, 3, 14, 1})).options.wscale, 14);
  EXPECT_EQ(parse_frame(with_tcp_options({3, 3, 15, 1})).options.wscale, 15);  // the caller caps
  EXPECT_EQ(parse_frame(with_tcp_options({3, 3, 200, 1})).options.wscale, 127);
  // A repeated option: the last one counts.
  EXPECT_EQ(parse_frame(with_tcp_options({2, 4, 1, 0, 2, 4, 2, 0})).options.mss, 512);
}

// --- ARP -----------------------------------------------------------------------

TEST(PacketArpTest, RequestThenReply) {
  Bytes req(64, 0xee);
  ASSERT_EQ(build_arp_request(req, kMacA, 0x0a000001, 0x0a000002), 60u);
  req.resize(60);
  const Packet q = parse_frame(req);
  ASSERT_TRUE(q.ok()) << to_string(q.error);
  EXPECT_EQ(q.l3, L3::kArp);
  EXPECT_EQ(q.dst_mac, (MacAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(q.src_mac, kMacA);
  EXPECT_EQ(q.arp.op, 1);
  EXPECT_EQ(q.arp.sender_mac, kMacA);
  EXPECT_EQ(q.arp.sender_ip, 0x0a000001u);
  EXPECT_EQ(q.arp.target_mac, MacAddr{});
  EXPECT_EQ(q.arp.target_ip, 0x0a000002u);
  EXPECT_EQ(Bytes(req.begin() + 42, req.end()), Bytes(18, 0));

  Bytes rep(60);
  ASSERT_EQ(build_arp_reply(rep, q, kMacB, 0x0a000002), 60u);
  const Packet r = parse_frame(rep);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.dst_mac, kMacA);
  EXPECT_EQ(r.src_mac, kMacB);
  EXPECT_EQ(r.vlan, 0);
  EXPECT_EQ(r.arp.op, 2);
  EXPECT_EQ(r.arp.sender_mac, kMacB);
  EXPECT_EQ(r.arp.sender_ip, 0x0a000002u);
  EXPECT_EQ(r.arp.target_mac, kMacA);
  EXPECT_EQ(r.arp.target_ip, 0x0a000001u);

  // A request on a VLAN is answered on it.
  const Packet tq = parse_frame(tagged(req, 77));
  ASSERT_TRUE(tq.ok());
  Bytes trep(64);
  ASSERT_EQ(build_arp_reply(trep, tq, kMacB, 0x0a000002), 60u);
  EXPECT_EQ(parse_frame(trep).vlan, 77);

  // Our request on a VLAN (the backends', [dpdk] backend_vlan).
  Bytes vreq(64);
  ASSERT_EQ(build_arp_request(vreq, kMacA, 0x0a000001, 0x0a000002, 4094), 60u);  // padded to the minimum
  const Packet vq = parse_frame(vreq);
  ASSERT_TRUE(vq.ok());
  EXPECT_EQ(vq.vlan, 4094);
  EXPECT_EQ(vq.arp.target_ip, 0x0a000002u);
  EXPECT_EQ(build_arp_request(vreq, kMacA, 0x0a000001, 0x0a000002, 4096), 0u) << "no such VLAN";
}

TEST(PacketArpTest, NoReplyWhenNotARequestForUs) {
  Bytes req(60), rep(60);
  ASSERT_NE(build_arp_request(req, kMacA, 0x0a000001, 0x0a000002), 0u);
  const Packet q = parse_frame(req);
  EXPECT_EQ(build_arp_reply(rep, q, kMacB, 0x0a000003), 0u);  // another address
  Bytes small(59);
  EXPECT_EQ(build_arp_reply(small, q, kMacB, 0x0a000002), 0u);
  EXPECT_EQ(build_arp_request(small, kMacA, 1, 2), 0u);
  ASSERT_NE(build_arp_reply(rep, q, kMacB, 0x0a000002), 0u);
  EXPECT_EQ(build_arp_reply(req, parse_frame(rep), kMacB, 0x0a000001), 0u);  // a reply
  Bytes mcast = req;
  mcast[22] = 0x01;  // a multicast sender MAC
  EXPECT_EQ(build_arp_reply(rep, parse_frame(mcast), kMacB, 0x0a000002), 0u);
}

TEST(PacketArpTest, BadArp) {
  Bytes good(60);
  ASSERT_NE(build_arp_request(good, kMacA, 1, 2), 0u);
  const std::vector<std::pair<size_t, uint8_t>> edits = {
      {kL3 + 1, 6},     // htype 6 (IEEE 802)
      {kL3 + 2, 0x86},  // ptype 0x8600
      {kL3 + 4, 8},     // hlen 8
      {kL3 + 5, 16},    // plen 16
      {kL3 + 7, 3},     // op 3 (RARP)
      {kL3 + 7, 0},     // op 0
  };
  for (const auto& [at, value] : edits) {
    Bytes f = good;
    f[at] = value;
    EXPECT_EQ(parse_frame(f).error, E::kBadArp) << at;
  }
}

// --- ICMP echo -----------------------------------------------------------------

// The ICMP part of a frame (from the L4 offset to the IP end).
Bytes l4_bytes(const Bytes& f) {
  const Packet p = parse_frame(f);
  EXPECT_TRUE(p.ok()) << to_string(p.error);
  return Bytes(f.begin() + static_cast<ptrdiff_t>(p.l4_offset),
               f.begin() + static_cast<ptrdiff_t>(ip_end(f, p)));
}

TEST(PacketIcmpTest, EchoReplyMatchesTheKernels) {
  for (const auto& [ping, pong] : {std::pair{kPingV4, kPongV4}, std::pair{kPingV6, kPongV6}}) {
    const Bytes f = ping_with_macs(ping);
    const Packet q = parse_frame(f);
    ASSERT_TRUE(q.ok()) << to_string(q.error);
    EXPECT_EQ(q.icmp.type, ping == kPingV4 ? 8 : 128);
    EXPECT_EQ(q.icmp.id, ping == kPingV4 ? 0x1234 : 0x4321);
    EXPECT_EQ(q.icmp.seq, ping == kPingV4 ? 7 : 9);
    EXPECT_EQ(std::string(q.icmp.body.begin(), q.icmp.body.end()),
              "lodestone ping 0123456789abcdef");
    Bytes out(200);
    const size_t n = build_echo_reply(out, q, kMacB);
    ASSERT_NE(n, 0u);
    out.resize(n);
    const Packet r = parse_frame(out);
    ASSERT_TRUE(r.ok()) << to_string(r.error);
    EXPECT_EQ(r.dst_mac, kMacA);
    EXPECT_EQ(r.src_mac, kMacB);
    EXPECT_TRUE(r.src == q.dst && r.dst == q.src);
    EXPECT_EQ(r.ttl, 64);
    EXPECT_EQ(l4_bytes(out), l4_bytes(from_hex(pong)));  // type, code, checksum, id, seq, data
  }
}

// The reply comes from our MAC, whatever the request was sent to (a ping to
// the VIP at the broadcast MAC: a reply from ff:ff:ff:ff:ff:ff before).
TEST(PacketIcmpTest, EchoReplyComesFromOurMac) {
  Bytes f = ping_with_macs(kPingV4);
  for (size_t i = 0; i < 6; ++i) f[i] = 0xff;
  const Packet q = parse_frame(f);
  ASSERT_TRUE(q.ok()) << to_string(q.error);
  Bytes out(200);
  out.resize(build_echo_reply(out, q, kMacB));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(parse_frame(out).src_mac, kMacB);
}

TEST(PacketIcmpTest, EchoReplyKeepsTheVlanAndWorksInPlace) {
  for (const auto ping : {kPingV4, kPingV6}) {
    Bytes f = tagged(ping_with_macs(ping), 300);
    if (ping == kPingV4) {  // with IP options, so the reply's header is shorter
      insert_at(f, 18 + 20, {0x01, 0x01, 0x01, 0x00});
      f[18] = 0x46;
      set_be16(f, 18 + 2, be16(f, 18 + 2) + 4);
      fix_ipv4_checksum(f, 18);
    }
    const Packet q = parse_frame(f);
    ASSERT_TRUE(q.ok()) << to_string(q.error);
    Bytes apart(200);
    apart.resize(build_echo_reply(apart, q, kMacB));
    ASSERT_FALSE(apart.empty());
    EXPECT_EQ(parse_frame(apart).vlan, 300);
    const size_t n = build_echo_reply(f, q, kMacB);  // over the request's own bytes
    EXPECT_EQ(Bytes(f.begin(), f.begin() + static_cast<ptrdiff_t>(n)), apart);
  }
}

TEST(PacketIcmpTest, NoEchoReplyForOtherMessagesOrMulticast) {
  Bytes out(200);
  EXPECT_EQ(build_echo_reply(out, parse_frame(from_hex(kPongV4)), kMacB), 0u);
  EXPECT_EQ(build_echo_reply(out, parse_frame(from_hex(kPongV6)), kMacB), 0u);
  EXPECT_EQ(build_echo_reply(out, parse_frame(build(segment(4))), kMacB), 0u);
  Bytes bad = from_hex(kPingV4);
  bad[40] ^= 1;  // checksum
  EXPECT_EQ(build_echo_reply(out, parse_frame(bad), kMacB), 0u);
  Bytes small(60);
  EXPECT_EQ(build_echo_reply(small, parse_frame(from_hex(kPingV4)), kMacB), 0u);
  for (const uint8_t first : {224, 239, 255}) {
    Bytes f = from_hex(kPingV4);
    std::memset(f.data() + kL3 + 16, first, 4);  // 224.224.224.224, ..., 255.255.255.255
    fix_ipv4_checksum(f);
    ASSERT_TRUE(parse_frame(f).ok());
    EXPECT_EQ(build_echo_reply(out, parse_frame(f), kMacB), 0u) << int{first};
  }
  Bytes f6 = from_hex(kPingV6);
  const IpAddr all_nodes = v6("ff02::1");
  std::memcpy(f6.data() + kL3 + 24, all_nodes.bytes, 16);
  fix_l4_checksum(f6);
  ASSERT_TRUE(parse_frame(f6).ok());
  EXPECT_EQ(build_echo_reply(out, parse_frame(f6), kMacB), 0u);
}

TEST(PacketIcmpTest, ChecksumsVerified) {
  for (const auto ping : {kPingV4, kPingV6}) {
    const Bytes good = from_hex(ping);
    Bytes f = good;
    f.back() ^= 0x80;
    EXPECT_EQ(parse_frame(f).error, E::kBadIcmpChecksum);
    EXPECT_TRUE(parse_frame(f, false).ok());
  }
  // The ICMPv6 checksum covers the pseudo-header: another source breaks it.
  Bytes f = from_hex(kPingV6);
  f[kL3 + 8] = 0xfe;
  EXPECT_EQ(parse_frame(f).error, E::kBadIcmpChecksum);
}

TEST(PacketIcmpTest, FragmentationNeeded) {
  const Bytes quoted = build(segment(4));  // quote its IP header and 8 bytes of TCP
  Bytes m{3, 4, 0, 0, 0, 0, 0x05, 0x78};
  m.insert(m.end(), quoted.begin() + kL3, quoted.begin() + kL3 + 28);
  const Bytes f = icmp4_frame(m);
  Packet p = parse_frame(f);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.l4, L4::kIcmp);
  EXPECT_EQ(p.icmp.type, 3);
  EXPECT_EQ(p.icmp.code, 4);
  EXPECT_EQ(p.icmp.next_hop_mtu, 1400);
  ASSERT_EQ(p.icmp.body.size(), 28u);
  EXPECT_EQ(p.icmp.body.data(), f.data() + p.l4_offset + 8);
  EXPECT_EQ(p.icmp.body[9], 6);  // the quoted protocol
  m.pop_back();
  EXPECT_EQ(parse_frame(icmp4_frame(m)).error, E::kBadIcmp);  // less than RFC 792's 64 bits
  m[1] = 1;                                                   // host unreachable: no MTU, any body
  p = parse_frame(icmp4_frame(m));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.icmp.next_hop_mtu, 0);
}

// --- Neighbour discovery ---------------------------------------------------------

TEST(PacketNdTest, SolicitationThenAdvertisement) {
  const Bytes ns = ping_with_macs(kNsV6);
  const Packet q = parse_frame(ns);
  ASSERT_TRUE(q.ok()) << to_string(q.error);
  EXPECT_EQ(q.l4, L4::kIcmpv6);
  EXPECT_EQ(q.icmp.type, 135);
  EXPECT_TRUE(q.icmp.nd_target == v6("::1"));

  for (const uint16_t vlan : {uint16_t{0}, uint16_t{9}}) {
    const Packet req = vlan ? parse_frame(tagged(ns, vlan)) : q;
    Bytes out(120);
    const size_t n = build_neighbor_advert(out, req, kMacB, v6("::1"));
    ASSERT_EQ(n, (vlan ? 18u : 14u) + 40 + 32);
    out.resize(n);
    const Packet a = parse_frame(out);
    ASSERT_TRUE(a.ok()) << to_string(a.error);  // the checksum verified
    EXPECT_EQ(a.vlan, vlan);
    EXPECT_EQ(a.dst_mac, kMacA);
    EXPECT_EQ(a.src_mac, kMacB);
    EXPECT_EQ(a.l4, L4::kIcmpv6);
    EXPECT_EQ(a.icmp.type, 136);
    EXPECT_EQ(a.icmp.code, 0);
    EXPECT_EQ(a.ttl, 255);
    EXPECT_TRUE(a.src == v6("::1") && a.dst == q.src);
    const uint8_t* m = out.data() + a.l4_offset;
    EXPECT_EQ(Bytes(m + 4, m + 8), (Bytes{0x60, 0, 0, 0}));  // R=0 S=1 O=1
    EXPECT_EQ(std::memcmp(m + 8, v6("::1").bytes, 16), 0);
    EXPECT_EQ(Bytes(m + 24, m + 32), (Bytes{2, 1, 0x02, 0, 0, 0, 0, 0x0b}));
  }
  // Our solicitation on a VLAN: tagged, to the solicited-node address.
  Bytes sol(120);
  const size_t sn = build_neighbor_solicit(sol, kMacB, v6("fd00::1"), v6("fd00::9"), 300);
  ASSERT_EQ(sn, 18u + 40 + 32);
  sol.resize(sn);
  const Packet s6 = parse_frame(sol);
  ASSERT_TRUE(s6.ok()) << to_string(s6.error);
  EXPECT_EQ(s6.vlan, 300);
  EXPECT_EQ(s6.icmp.type, 135);
  EXPECT_TRUE(s6.icmp.nd_target == v6("fd00::9"));
  EXPECT_TRUE(s6.dst == v6("ff02::1:ff00:9"));
  // The kernel's own advertisement parses, its checksum verified.
  const Packet k = parse_frame(from_hex(kKernelNaV6));
  ASSERT_TRUE(k.ok()) << to_string(k.error);
  EXPECT_EQ(k.icmp.type, 136);
}

TEST(PacketNdTest, NoAdvertisementUnlessForTheTarget) {
  Bytes out(120);
  const Packet q = parse_frame(from_hex(kNsV6));
  EXPECT_EQ(build_neighbor_advert(out, q, kMacB, v6("::2")), 0u);
  EXPECT_EQ(build_neighbor_advert(out, q, kMacB, v4(0, 0, 0, 1)), 0u);
  Bytes small(85);
  EXPECT_EQ(build_neighbor_advert(small, q, kMacB, v6("::1")), 0u);
  EXPECT_EQ(build_neighbor_advert(out, parse_frame(from_hex(kPingV6)), kMacB, v6("::1")), 0u);
  // Duplicate address detection: from ::, no source link-layer option.
  const IpAddr any = v6("::");
  const Packet dad = parse_frame(icmp6_frame(ns_message(v6("2001:db8::5"), {}), 255, &any));
  ASSERT_TRUE(dad.ok()) << to_string(dad.error);
  EXPECT_EQ(build_neighbor_advert(out, dad, kMacB, v6("2001:db8::5")), 0u);
}

TEST(PacketNdTest, BadSolicitations) {
  const IpAddr target = v6("2001:db8::5");
  const Bytes slla{1, 1, 2, 0, 0, 0, 0, 0x0a};
  ASSERT_TRUE(parse_frame(icmp6_frame(ns_message(target, slla))).ok());
  EXPECT_EQ(parse_frame(icmp6_frame(ns_message(target, slla), 64)).error, E::kBadIcmp);  // routed
  EXPECT_EQ(parse_frame(icmp6_frame(ns_message(v6("ff02::1:ff00:5"), slla))).error, E::kBadIcmp);
  EXPECT_EQ(parse_frame(icmp6_frame(ns_message(target, {1, 0, 2, 0, 0, 0, 0, 0x0a}))).error,
            E::kBadIcmp);
  EXPECT_EQ(parse_frame(icmp6_frame(ns_message(target, {1, 2, 2, 0, 0, 0, 0, 0x0a}))).error,
            E::kBadIcmp);
  EXPECT_EQ(parse_frame(icmp6_frame(ns_message(target, {14}))).error, E::kBadIcmp);
  const IpAddr any = v6("::");
  EXPECT_EQ(parse_frame(icmp6_frame(ns_message(target, slla), 255, &any)).error, E::kBadIcmp);
  Bytes m = ns_message(target, {});
  m[1] = 1;  // code
  EXPECT_EQ(parse_frame(icmp6_frame(m)).error, E::kBadIcmp);
  m = ns_message(target, {});
  m.resize(20);
  EXPECT_EQ(parse_frame(icmp6_frame(m)).error, E::kBadIcmp);
  // Unknown options are skipped by their length.
  EXPECT_TRUE(parse_frame(icmp6_frame(ns_message(target, {14, 1, 0, 0, 0, 0, 0, 0}))).ok());
}

TEST(PacketErrorTest, EveryErrorHasAName) {
  for (int e = 0; e <= static_cast<int>(E::kBadIcmpChecksum); ++e)
    EXPECT_NE(to_string(static_cast<E>(e)), "unknown") << e;
}

}  // namespace
}  // namespace lode::front
