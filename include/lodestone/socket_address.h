// IPv4/IPv6 socket addresses written as "1.2.3.4:443" or "[::1]:443": parsed
// from configuration, printed in logs and JSON. Pure; no name resolution.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "lodestone/result.h"

namespace lode {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;

  int family() const noexcept { return storage.ss_family; }
  const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  uint16_t port() const noexcept {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    return 0;
  }
  std::string to_string() const {
    char host[INET6_ADDRSTRLEN] = "?";
    if (family() == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, host, sizeof host);
      return std::string(host) + ":" + std::to_string(port());
    }
    if (family() == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, host, sizeof host);
      return "[" + std::string(host) + "]:" + std::to_string(port());
    }
    return "unspecified";
  }
  friend bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept {
    return a.len == b.len && std::memcmp(&a.storage, &b.storage, a.len) == 0;
  }
};

// An IPv4 or IPv6 prefix ("10.0.0.0/8", "2001:db8::/32"; an address alone
// is /32 or /128).
struct AddressPrefix {
  int family = 0;                  // AF_INET | AF_INET6
  std::array<uint8_t, 16> addr{};  // network order (IPv4 in the first 4)
  uint8_t len = 0;
  bool operator==(const AddressPrefix&) const = default;
  // Whether `a`'s address is inside. An IPv4-mapped IPv6 address (the IPv4
  // peer of a dual-stack socket) is taken as the IPv4 address it maps.
  bool contains(const SocketAddress& a) const noexcept {
    const uint8_t* b = nullptr;
    int fam = a.family();
    if (fam == AF_INET) {
      b = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr);
    } else if (fam == AF_INET6) {
      b = reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr.s6_addr;
      static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      if (family == AF_INET && std::memcmp(b, kMapped, sizeof kMapped) == 0) {
        b += sizeof kMapped;
        fam = AF_INET;
      }
    }
    if (b == nullptr || fam != family) return false;
    for (uint8_t bit = 0; bit < len; ++bit) {
      const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
      if ((b[bit / 8] & mask) != (addr[bit / 8] & mask)) return false;
    }
    return true;
  }
};

// "A.B.C.D:PORT" or "[V6]:PORT", port 1..65535 in decimal.
[[nodiscard]] inline Result<SocketAddress, std::string_view> parse_socket_address(std::string_view s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == s.size()) {
    return unexpected(std::string_view("expected HOST:PORT (IPv6 as [ADDR]:PORT)"));
  }
  std::string_view host = s.substr(0, colon);
  const std::string_view port_s = s.substr(colon + 1);
  unsigned port = 0;
  for (char c : port_s) {
    if (c < '0' || c > '9' || port_s.size() > 5) return unexpected(std::string_view("port is not a number"));
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535) return unexpected(std::string_view("port out of range 1..65535"));
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  char buf[INET6_ADDRSTRLEN + 1];
  if (host.size() >= sizeof buf) return unexpected(std::string_view("address too long"));
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = '\0';
  SocketAddress a;
  if (!bracketed) {
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
    if (inet_pton(AF_INET, buf, &in->sin_addr) != 1) {
      return unexpected(std::string_view("not an IPv4 address (write IPv6 as [ADDR]:PORT)"));
    }
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in);
    return a;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) return unexpected(std::string_view("not an IPv6 address"));
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(static_cast<uint16_t>(port));
  a.len = sizeof(sockaddr_in6);
  return a;
}

}  // namespace lode
