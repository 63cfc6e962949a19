// The identity of a TCP flow as the dpdk front sees it: addresses and ports
// in host byte order, IPv4 or IPv6. Plain data, hashable, comparable.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace lode::front {

struct IpAddr {
  uint8_t family = 0;  // 4 or 6; 0 = none
  uint8_t bytes[16] = {};  // IPv4 in bytes[0..3], network order

  static IpAddr v4(uint32_t host_order) noexcept {
    IpAddr a;
    a.family = 4;
    a.bytes[0] = static_cast<uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<uint8_t>(host_order);
    return a;
  }
  static IpAddr v6(std::span<const uint8_t, 16> b) noexcept {
    IpAddr a;
    a.family = 6;
    std::memcpy(a.bytes, b.data(), 16);
    return a;
  }
  size_t size() const noexcept { return family == 6 ? 16 : 4; }
  uint32_t v4_host() const noexcept {
    return uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 | uint32_t{bytes[2]} << 8 | bytes[3];
  }
  friend bool operator==(const IpAddr& a, const IpAddr& b) noexcept {
    // Fixed sizes: compiled to a few loads, not a call to memcmp.
    if (a.family != b.family) return false;
    return a.family == 6 ? std::memcmp(a.bytes, b.bytes, 16) == 0 : std::memcmp(a.bytes, b.bytes, 4) == 0;
  }
};

struct FlowKey {
  IpAddr src, dst;  // the client and the VIP, for a client flow
  uint16_t sport = 0, dport = 0;

  friend bool operator==(const FlowKey& a, const FlowKey& b) noexcept {
    return a.sport == b.sport && a.dport == b.dport && a.src == b.src && a.dst == b.dst;
  }
};

}  // namespace lode::front
