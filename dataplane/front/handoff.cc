#include "dataplane/front/handoff.h"

#include <algorithm>
#include <array>

#include "dataplane/tls/proxy_protocol.h"

namespace lode::front {
namespace {

proxy::Address to_proxy(const IpAddr& a, uint16_t port) noexcept {
  if (a.family == 4) return proxy::Address::inet({a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]}, port);
  std::array<uint8_t, 16> ip6{};
  std::copy(std::begin(a.bytes), std::end(a.bytes), ip6.begin());
  return proxy::Address::inet6(ip6, port);
}

}  // namespace

uint16_t handoff_port(uint16_t first_port, uint32_t listener, uint32_t worker, uint32_t workers) noexcept {
  const uint64_t p = uint64_t{first_port} + uint64_t{listener} * workers + worker;
  return p > 65535 || first_port == 0 ? 0 : static_cast<uint16_t>(p);
}

uint32_t steer_by_name(std::string_view sni, uint32_t workers) noexcept {
  if (workers <= 1) return 0;
  uint32_t h = 2166136261u;
  for (const char c : sni) {
    const auto b = static_cast<uint8_t>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    h = (h ^ b) * 16777619u;
  }
  return h % workers;
}

size_t write_handoff_header(std::span<uint8_t> out, const FlowKey& client_flow, std::string_view sni) noexcept {
  proxy::ProxyHeaderSpec spec;
  spec.command = proxy::Command::kProxy;
  spec.transport = proxy::Transport::kStream;
  spec.source = to_proxy(client_flow.src, client_flow.sport);
  spec.destination = to_proxy(client_flow.dst, client_flow.dport);
  if (!sni.empty() && sni.size() <= 255) spec.authority = sni;
  const auto n = proxy::write_v2(spec, out);
  return n ? *n : 0;
}

}  // namespace lode::front
