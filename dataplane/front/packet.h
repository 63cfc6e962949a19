// Frames in and out of the dpdk front: a strict parser for what arrives
// (Ethernet II with at most one 802.1Q tag; ARP; IPv4; IPv6 with its
// extension headers walked; TCP with its options; ICMP echo and
// fragmentation-needed; ICMPv6 echo, packet too big, neighbour solicitation
// and advertisement) and builders for what the dataplane sends itself (TCP
// segments with options, ARP requests and replies, ICMP/ICMPv6 echo replies,
// neighbour solicitations and advertisements), checksums included.
//
// No I/O, no allocation, no DPDK: views into the caller's bytes in, lengths
// out. The parser checks every length once, verifies every checksum it can
// (IPv4 header, TCP, ICMP, ICMPv6) and never "repairs" one: a bad checksum is
// an error the caller counts and drops. Hostile input (truncated headers,
// option lists that overrun, zero-length options, lengths that disagree) gets
// an error code, never a read past the span.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/front/flow_key.h"

namespace lode::front {

using MacAddr = std::array<uint8_t, 6>;

enum class PacketError : uint8_t {
  kNone,
  kTruncated,          // shorter than its headers say
  kUnsupportedL2,      // not Ethernet II / one 802.1Q tag
  kBadArp,
  kBadIpHeader,        // IPv4 version/IHL/total length, IPv6 payload length
  kBadIpChecksum,
  kFragment,           // an IPv4 fragment (MF or offset) or an IPv6 fragment header
  kBadExtensionHeader, // IPv6 extension headers that overrun or repeat badly
  kBadTcpHeader,       // data offset < 5 or past the segment
  kBadTcpOptions,      // an option list that overruns or a known option of the wrong length
  kBadTcpChecksum,
  kBadIcmp,            // too short for its type
  kBadIcmpChecksum,
};
std::string_view to_string(PacketError e) noexcept;

enum class L3 : uint8_t { kNone, kArp, kIpv4, kIpv6 };
enum class L4 : uint8_t { kNone, kTcp, kIcmp, kIcmpv6, kOther };

inline constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08, kTcpAck = 0x10,
                         kTcpUrg = 0x20, kTcpEce = 0x40, kTcpCwr = 0x80;

struct SackBlock {
  uint32_t left = 0, right = 0;
};

// TCP options as parsed; absent ones keep their "none" value.
struct TcpOptions {
  uint16_t mss = 0;        // 0 = absent
  int8_t wscale = -1;      // -1 = absent; as sent (values > 14 are kept, the caller caps;
                           // values above 127 read as 127)
  bool sack_ok = false;
  bool has_timestamps = false;
  uint32_t ts_val = 0, ts_ecr = 0;
  uint8_t sack_count = 0;  // SACK blocks (at most 4)
  SackBlock sack[4];
};

struct ArpInfo {
  uint16_t op = 0;  // 1 request, 2 reply
  MacAddr sender_mac{}, target_mac{};
  uint32_t sender_ip = 0, target_ip = 0;  // host order
};

// The packet an ICMP "fragmentation needed" (3/4) or ICMPv6 "packet too
// big" (2) quotes: its IP header and the first 8 bytes of its TCP header
// (ports and sequence number: all RFC 792 promises). Bounds-checked; a
// quote whose lengths disagree (a version other than the message's, an IHL
// below 5 or past the quote, a total length shorter than its own header, a
// non-first fragment) is kMalformed, a TCP one cut before its sequence
// number too.
struct IcmpQuote {
  enum class Status : uint8_t { kAbsent, kTcp, kNotTcp, kMalformed };
  Status status = Status::kAbsent;
  IpAddr src, dst;       // of the quoted packet (ours, for one we sent)
  uint8_t ttl = 0;       // its TTL / hop limit where it was dropped
  uint32_t length = 0;   // its length as its IP header gives it (IPv6: the 40-byte header included)
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0;
};

struct IcmpInfo {
  uint8_t type = 0, code = 0;
  uint16_t id = 0, seq = 0;            // echo request / reply
  uint32_t next_hop_mtu = 0;           // IPv4 fragmentation needed (3/4), ICMPv6 packet too big (2)
  IcmpQuote quote;                     // for those two
  std::span<const uint8_t> body;       // after the 8-byte ICMP header (echo data, or the quoted packet)
  IpAddr nd_target;                    // ICMPv6 neighbour solicitation (135) / advertisement (136)
  // Neighbour discovery: the link-layer address option (source for a
  // solicitation, target for an advertisement), and an advertisement's flags.
  bool has_nd_mac = false;
  MacAddr nd_mac{};
  bool nd_solicited = false, nd_override = false;
};

struct Packet {
  PacketError error = PacketError::kNone;
  MacAddr dst_mac{}, src_mac{};
  uint16_t vlan = 0;  // 0 = untagged (a tag's VID otherwise)
  L3 l3 = L3::kNone;
  L4 l4 = L4::kNone;
  ArpInfo arp;
  // IP
  IpAddr src, dst;
  uint8_t ttl = 0;     // hop limit for IPv6
  uint8_t proto = 0;   // the upper-layer protocol (after IPv6 extension headers)
  size_t l3_offset = 0, l4_offset = 0;
  // TCP
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;  // as on the wire (unscaled)
  TcpOptions options;
  std::span<const uint8_t> payload;  // TCP payload (bounded by the IP length, not the frame)
  // ICMP / ICMPv6
  IcmpInfo icmp;

  bool ok() const noexcept { return error == PacketError::kNone; }
  FlowKey flow() const noexcept { return FlowKey{src, dst, sport, dport}; }
};

// Parses one frame. verify_checksums = false skips the L4 checksum checks
// (for a NIC that validated them: RTE_MBUF_F_RX_L4_CKSUM_GOOD); the IPv4
// header checksum is always checked.
[[nodiscard]] Packet parse_frame(std::span<const uint8_t> frame, bool verify_checksums = true) noexcept;

// A TCP segment to send.
struct TcpSegment {
  MacAddr src_mac{}, dst_mac{};
  uint16_t vlan = 0;
  FlowKey flow;  // src/dst addresses and ports of this segment (both IPv4 or both IPv6)
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint8_t ttl = 64;
  // Options written in this order when set: MSS, SACK-permitted, timestamps,
  // window scale, SACK blocks (padded with NOPs to a multiple of 4).
  TcpOptions options;
  std::span<const uint8_t> payload;
};

// Writes the frame into `out`; returns its length, or 0 when `out` is too
// small or the segment is inconsistent (address families differ, more than
// 40 bytes of options).
//
// Every builder pads a frame shorter than the Ethernet minimum (60 bytes
// without the FCS) with zeros and returns the padded length. `out` may hold
// the bytes the input's views point into (a reply built in place over its
// request): the data is moved before the headers are written.
[[nodiscard]] size_t build_tcp(std::span<uint8_t> out, const TcpSegment& s) noexcept;

// The reply to an ARP request for our_ip (host order), or 0 when `req` is not
// a request for it (or names a multicast sender MAC). Sent to the sender's
// MAC, on the request's VLAN.
[[nodiscard]] size_t build_arp_reply(std::span<uint8_t> out, const Packet& req, const MacAddr& our_mac,
                                     uint32_t our_ip) noexcept;
// An ARP request for target_ip, sent from our_mac / our_ip (on VLAN `vlan`;
// 0: untagged).
[[nodiscard]] size_t build_arp_request(std::span<uint8_t> out, const MacAddr& our_mac, uint32_t our_ip,
                                       uint32_t target_ip, uint16_t vlan = 0) noexcept;
// The echo reply to an ICMP or ICMPv6 echo request (addresses swapped, from
// `our_mac` to the sender's, same VLAN, id, sequence and data; TTL 64), or 0
// when `req` is not one or either address is multicast or broadcast.
[[nodiscard]] size_t build_echo_reply(std::span<uint8_t> out, const Packet& req, const MacAddr& our_mac) noexcept;
// The neighbour advertisement (solicited, override) answering a neighbour
// solicitation for `target` from our_mac, or 0 when `req` is not one for it
// or comes from the unspecified address (duplicate address detection).
[[nodiscard]] size_t build_neighbor_advert(std::span<uint8_t> out, const Packet& req, const MacAddr& our_mac,
                                           const IpAddr& target) noexcept;

// A neighbour solicitation for `target` (RFC 4861 4.3) from our_mac and
// `src` (one of our IPv6 addresses) to the target's solicited-node multicast
// address (ff02::1:ffXX:XXXX, MAC 33:33:ff:XX:XX:XX), hop limit 255, with our
// source link-layer address option, on VLAN `vlan` (0: untagged); 0 when
// either address is not IPv6 or `target` is multicast or unspecified.
[[nodiscard]] size_t build_neighbor_solicit(std::span<uint8_t> out, const MacAddr& our_mac, const IpAddr& src,
                                            const IpAddr& target, uint16_t vlan = 0) noexcept;

// An ICMP "fragmentation needed" (type 3 code 4, RFC 1191) or, for IPv6,
// "packet too big" (type 2, RFC 8201) telling `to` that a TCP segment it sent
// (`quoted`: its addresses and ports as it sent them, its sequence number)
// was too big for `mtu`. The quote is that segment's IP header (no options,
// no extension headers; total length `quoted_length`, TTL `quoted_ttl`) and
// the first 8 bytes of its TCP header. TTL 64.
struct IcmpTooBig {
  MacAddr src_mac{}, dst_mac{};
  uint16_t vlan = 0;
  IpAddr from, to;         // the error's own addresses
  uint32_t mtu = 0;
  FlowKey quoted;          // the too-big segment's addresses and ports
  uint32_t quoted_seq = 0;
  uint32_t quoted_length = 0;
  uint8_t quoted_ttl = 64;
};
// Its length, or 0 when the four addresses are not all of one family, the
// MTU or the quoted length does not fit its field (IPv4: 16 bits) or `out`
// is too small.
[[nodiscard]] size_t build_icmp_too_big(std::span<uint8_t> out, const IcmpTooBig& m) noexcept;

// The Internet checksum (RFC 1071) of `data`, folded, starting from `sum`.
[[nodiscard]] uint16_t inet_checksum(std::span<const uint8_t> data, uint32_t sum = 0) noexcept;
// The TCP/ICMPv6 checksum of the L4 bytes `l4` (its checksum field included
// as it stands) under the IPv4 or IPv6 pseudo-header of src, dst, proto and
// l4.size(): 0 when the field in `l4` is right; with the field zeroed, the
// value to store there.
[[nodiscard]] uint16_t l4_checksum(const IpAddr& src, const IpAddr& dst, uint8_t proto,
                                   std::span<const uint8_t> l4) noexcept;

}  // namespace lode::front
