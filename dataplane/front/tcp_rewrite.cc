#include "dataplane/front/tcp_rewrite.h"

#include <cstring>

namespace lode::front {
namespace {

// The ones' complement sum of the 16-bit words of frame[from, to), `to -
// from` even, `from` even relative to `base` (the checksum's word grid).
uint32_t sum_words(const uint8_t* p, size_t from, size_t to) noexcept {
  uint32_t s = 0;
  for (size_t i = from; i < to; i += 2) s += uint32_t{p[i]} << 8 | p[i + 1];
  return s;
}

uint16_t fold(uint32_t s) noexcept {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// Tracks what a series of writes into one checksummed region does to its
// sum: before each write the covering aligned words are subtracted, after it
// added back (RFC 1624: HC' = ~(~HC + ~m + m')).
class Delta {
 public:
  Delta(uint8_t* base, size_t len) : base_(base), len_(len) {}
  void write(size_t at, const void* bytes, size_t n) noexcept {
    const size_t from = at & ~size_t{1};
    const size_t to = std::min(len_, (at + n + 1) & ~size_t{1});
    old_ += sum_words(base_, from, to);
    std::memcpy(base_ + at, bytes, n);
    new_ += sum_words(base_, from, to);
  }
  void be32(size_t at, uint32_t v) noexcept {
    const uint8_t b[4] = {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8),
                          static_cast<uint8_t>(v)};
    write(at, b, 4);
  }
  void be16(size_t at, uint16_t v) noexcept {
    const uint8_t b[2] = {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    write(at, b, 2);
  }
  // Words that change outside the region but are in the checksum (the
  // pseudo-header's addresses).
  void outside(uint32_t old_sum, uint32_t new_sum) noexcept {
    old_ += old_sum;
    new_ += new_sum;
  }
  // The updated checksum from the old one.
  uint16_t apply(uint16_t checksum) const noexcept {
    // ~HC' = ~HC + sum(~m) + sum(m'), with sum(~m) = ~sum(m) in ones' complement.
    const uint32_t s = uint32_t{static_cast<uint16_t>(~checksum)} + static_cast<uint16_t>(~fold(old_)) + fold(new_);
    return static_cast<uint16_t>(~fold(s));
  }

 private:
  uint8_t* base_;
  size_t len_;
  uint32_t old_ = 0, new_ = 0;
};

uint32_t addr_sum(const IpAddr& a) noexcept { return sum_words(a.bytes, 0, a.size()); }

constexpr size_t kTaggedL3Offset = 18;  // Ethernet + one 802.1Q tag

}  // namespace

bool rewrite_tcp(std::span<uint8_t> frame, const Packet& p, const TcpRewrite& r) noexcept {
  if (p.l4 != L4::kTcp || r.flow.src.family != p.src.family || r.flow.dst.family != p.dst.family) return false;
  if (r.timestamps && !p.options.has_timestamps) return false;
  const bool tagged = p.l3_offset == kTaggedL3Offset;
  if (tagged != (r.vlan != 0) || r.vlan > 0x0fff) return false;
  uint8_t* f = frame.data();
  uint8_t* tcp = f + p.l4_offset;
  const size_t data_off = size_t{static_cast<uint8_t>(tcp[12] >> 4)} * 4;
  if (p.l4_offset + data_off > frame.size()) return false;
  // Where the timestamps and SACK blocks sit among the options.
  size_t ts_at = 0, sack_at = 0, sack_len = 0;
  for (size_t i = 20; i < data_off;) {
    const uint8_t kind = tcp[i];
    if (kind == 0) break;
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= data_off || tcp[i + 1] < 2 || i + tcp[i + 1] > data_off) return false;
    if (kind == 8 && tcp[i + 1] == 10) ts_at = i + 2;
    if (kind == 5) {
      sack_at = i + 2;
      sack_len = tcp[i + 1] - 2u;
    }
    i += tcp[i + 1];
  }
  if (r.timestamps && ts_at == 0) return false;

  std::memcpy(f, r.dst_mac.data(), 6);
  std::memcpy(f + 6, r.src_mac.data(), 6);
  if (tagged) {
    // The tag as build_tcp writes it (priority 0).
    f[14] = static_cast<uint8_t>(r.vlan >> 8);
    f[15] = static_cast<uint8_t>(r.vlan);
  }
  uint8_t* ip = f + p.l3_offset;
  if (p.l3 == L3::kIpv4) {
    std::memcpy(ip + 12, r.flow.src.bytes, 4);
    std::memcpy(ip + 16, r.flow.dst.bytes, 4);
    const size_t ihl = size_t{static_cast<uint8_t>(ip[0] & 0x0f)} * 4;
    ip[10] = ip[11] = 0;
    const uint16_t c = inet_checksum({ip, ihl});
    ip[10] = static_cast<uint8_t>(c >> 8);
    ip[11] = static_cast<uint8_t>(c);
  } else {
    std::memcpy(ip + 8, r.flow.src.bytes, 16);
    std::memcpy(ip + 24, r.flow.dst.bytes, 16);
  }
  Delta d(tcp, data_off);
  d.outside(addr_sum(p.src) + addr_sum(p.dst), addr_sum(r.flow.src) + addr_sum(r.flow.dst));
  d.be16(0, r.flow.sport);
  d.be16(2, r.flow.dport);
  d.be32(4, r.seq);
  d.be32(8, r.ack);
  d.be16(14, r.window);
  if (r.timestamps) {
    d.be32(ts_at, r.ts_val);
    d.be32(ts_at + 4, r.ts_ecr);
  }
  if (r.sack_shift != 0) {
    for (size_t i = 0; i + 4 <= sack_len; i += 4) {
      const size_t at = sack_at + i;
      const uint32_t v = uint32_t{tcp[at]} << 24 | uint32_t{tcp[at + 1]} << 16 | uint32_t{tcp[at + 2]} << 8 | tcp[at + 3];
      d.be32(at, v + r.sack_shift);
    }
  }
  const uint16_t old = static_cast<uint16_t>(uint16_t{tcp[16]} << 8 | tcp[17]);
  const uint16_t c = d.apply(old);
  tcp[16] = static_cast<uint8_t>(c >> 8);
  tcp[17] = static_cast<uint8_t>(c);
  return true;
}

}  // namespace lode::front
