#include "dataplane/front/toeplitz.h"

#include <algorithm>
#include <bit>

namespace lode::front {
namespace {

// The key bits [8 * pos, 8 * pos + 64) as a big-endian 64-bit value (zero
// past the key's end).
uint64_t key_window(std::span<const uint8_t> key, size_t pos) noexcept {
  uint64_t w = 0;
  for (size_t j = 0; j < 8; ++j) {
    w = w << 8 | (pos + j < key.size() ? key[pos + j] : 0);
  }
  return w;
}

// What input byte `v` at offset `pos` adds to the hash.
uint32_t byte_part(std::span<const uint8_t> key, size_t pos, uint8_t v) noexcept {
  const uint64_t w = key_window(key, pos);
  uint32_t h = 0;
  for (unsigned b = 0; b < 8; ++b) {
    if (v & (0x80u >> b)) h ^= static_cast<uint32_t>(w >> (32 - b));
  }
  return h;
}

// The hash input of a TCP segment (see toeplitz.h): its length.
size_t tuple_bytes(const FlowKey& k, uint16_t dport, uint8_t (&out)[36]) noexcept {
  const size_t a = k.dst.family == 6 ? 16 : 4;
  std::copy_n(k.src.bytes, a, out);
  std::copy_n(k.dst.bytes, a, out + a);
  out[2 * a] = static_cast<uint8_t>(k.sport >> 8);
  out[2 * a + 1] = static_cast<uint8_t>(k.sport);
  out[2 * a + 2] = static_cast<uint8_t>(dport >> 8);
  out[2 * a + 3] = static_cast<uint8_t>(dport);
  return 2 * a + 4;
}

}  // namespace

std::optional<FlowKey> rss_tcp_tuple(std::span<const uint8_t> frame) noexcept {
  constexpr size_t kEth = 14, kVlanTag = 4, kIpv4 = 20, kIpv6 = 40, kTcp = 20;
  constexpr uint8_t kProtoTcp = 6;
  const uint8_t* b = frame.data();
  size_t n = frame.size();
  auto get16 = [](const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); };
  if (n < kEth) return std::nullopt;
  uint16_t type = get16(b + 12);
  size_t off = kEth;
  if (type == 0x8100) {
    if (n < kEth + kVlanTag) return std::nullopt;
    type = get16(b + 16);
    off += kVlanTag;
  }
  const uint8_t* const ip = b + off;
  n -= off;  // bytes from the IP header on
  FlowKey k;
  size_t l4 = 0;
  if (type == 0x0800) {
    // Version 4, IHL 5; total length within the frame; flags/fragment offset
    // (MF or an offset: a fragment) clear; protocol TCP.
    if (n < kIpv4 + kTcp || ip[0] != 0x45 || ip[9] != kProtoTcp || (get16(ip + 6) & 0x3fff) != 0) return std::nullopt;
    const size_t total = get16(ip + 2);
    if (total < kIpv4 + kTcp || total > n) return std::nullopt;
    k.src.family = k.dst.family = 4;
    std::copy_n(ip + 12, 4, k.src.bytes);
    std::copy_n(ip + 16, 4, k.dst.bytes);
    l4 = kIpv4;
  } else if (type == 0x86dd) {
    // Version 6; payload length within the frame; next header TCP.
    if (n < kIpv6 + kTcp || (ip[0] >> 4) != 6 || ip[6] != kProtoTcp) return std::nullopt;
    const size_t payload = get16(ip + 4);
    if (payload < kTcp || payload > n - kIpv6) return std::nullopt;
    k.src.family = k.dst.family = 6;
    std::copy_n(ip + 8, 16, k.src.bytes);
    std::copy_n(ip + 24, 16, k.dst.bytes);
    l4 = kIpv6;
  } else {
    return std::nullopt;
  }
  k.sport = get16(ip + l4);
  k.dport = get16(ip + l4 + 2);
  return k;
}

uint32_t toeplitz_hash(std::span<const uint8_t> key, std::span<const uint8_t> input) noexcept {
  // w: the key bits [8 * i, 8 * i + 64), slid one byte per input byte.
  uint64_t w = key_window(key, 0);
  uint32_t h = 0;
  for (size_t i = 0; i < input.size(); ++i) {
    for (unsigned v = input[i]; v != 0; v &= v - 1) {
      const unsigned b = 7 - static_cast<unsigned>(std::countr_zero(v));  // 0: the top bit
      h ^= static_cast<uint32_t>(w >> (32 - b));
    }
    w = w << 8 | (i + 8 < key.size() ? key[i + 8] : 0);
  }
  return h;
}

std::optional<RssHash> RssHash::make(std::span<const uint8_t> key, std::vector<uint16_t> reta) {
  if (key.size() < kMinKey || key.size() > kMaxKey) return std::nullopt;
  if (reta.empty() || reta.size() > kMaxReta || !std::has_single_bit(reta.size())) return std::nullopt;
  RssHash r;
  std::copy(key.begin(), key.end(), r.key_.begin());
  r.key_len_ = key.size();
  r.reta_mask_ = static_cast<uint32_t>(reta.size() - 1);
  r.reta_ = std::move(reta);
  // The destination port's bytes: offsets 10 and 11 (IPv4), 34 and 35 (IPv6).
  for (size_t f = 0; f < 2; ++f) {
    const size_t at = f == 0 ? 10 : 34;
    for (unsigned v = 0; v < 256; ++v) {
      r.dport_[f][0][v] = byte_part(r.key(), at, static_cast<uint8_t>(v));
      r.dport_[f][1][v] = byte_part(r.key(), at + 1, static_cast<uint8_t>(v));
    }
  }
  return r;
}

uint32_t RssHash::hash_without_dport(const FlowKey& k) const noexcept {
  uint8_t in[36];
  const size_t n = tuple_bytes(k, 0, in);
  return toeplitz_hash(key(), {in, n});
}

}  // namespace lode::front
