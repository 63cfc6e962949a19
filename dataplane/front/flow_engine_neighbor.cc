// The next hops of passthrough backends and their MAC addresses.
//
// A backend's next hop is the backend itself when it is on the port's link
// (every backend of a family with no gateway and no prefix in [dpdk]
// networks; else one inside `networks`), or the gateway of its family. Its MAC comes from
// ARP (IPv4) or neighbour discovery (IPv6, RFC 4861: a solicitation to the
// solicited-node multicast address from the flow's VIP, with our link-layer
// address; the advertisement's target and hop limit 255 are checked by the
// parser with its checksum). A hand-off's next hop is the kernel of the
// exception link, asked on that link.
//
// The table holds an entry per next hop we asked for. An answer is taken
// only for an entry whose request is out (sent within kNeighborProbeMs) and
// only when it is addressed to the address that asked: a reply nobody asked
// for makes no entry and changes none (no poisoning by unsolicited ARP or
// NA); it is counted in neighbor_ignored. A learned MAC is trusted for
// neighbor_ttl_ms; after that the next flow that uses it asks again but goes
// on with it meanwhile, and an entry whose host no longer answers is
// forgotten after kNeighborProbeMs of requests (flows then wait for it as
// for a new one). A MAC that changed is taken by the flows already using it
// at their next frame towards the backend (follow_neighbor).
// The backends' link may be a VLAN ([dpdk] backend_vlan): requests go out
// tagged with it and only answers on it count; the exception link is
// untagged.
#include <algorithm>

#include "dataplane/front/flow_engine_flow.h"

namespace lode::front {
namespace {

bool usable_mac(const MacAddr& m) noexcept {
  return (m[0] & 1) == 0 && std::any_of(m.begin(), m.end(), [](uint8_t b) { return b != 0; });
}

}  // namespace

std::optional<IpAddr> FlowEngine::next_hop_of(const IpAddr& backend) const noexcept {
  const NextHops& nh = cfg_.next_hops;
  if (!nh.routed) return backend;
  // Routing is per family: a family with neither a gateway nor a prefix in
  // `networks` keeps every backend on the link (setting gateway6 alone does
  // not strand IPv4 backends that worked before).
  const IpAddr& gw = backend.family == 6 ? nh.gateway6 : nh.gateway;
  bool family_routed = gw.family == backend.family;
  for (const IpPrefix& n : nh.networks) {
    if (n.contains(backend)) return backend;
    family_routed = family_routed || n.addr.family == backend.family;
  }
  if (!family_routed) return backend;
  if (gw.family == backend.family) return gw;
  return std::nullopt;
}

IpAddr FlowEngine::next_hop(const Flow& f) const noexcept {
  if (f.handoff) return f.bkey.src;
  return next_hop_of(f.bkey.src).value_or(f.bkey.src);
}

FlowEngine::Neighbor* FlowEngine::find_neighbor(const IpAddr& ip, bool exception) noexcept {
  for (Neighbor& n : neighbors_) {
    if (n.ip == ip && n.exception == exception) return &n;
  }
  return nullptr;
}

FlowEngine::Neighbor& FlowEngine::neighbor_entry(const IpAddr& ip, const IpAddr& from, bool exception) noexcept {
  if (Neighbor* n = find_neighbor(ip, exception)) return *n;
  Neighbor* slot = nullptr;
  if (neighbors_.size() < kMaxNeighbors) {
    slot = &neighbors_.emplace_back();
  } else {
    // Full: the entry learned longest ago, one that is not being asked
    // first (flows waiting for an evicted one ask again on their timer).
    slot = &*std::min_element(neighbors_.begin(), neighbors_.end(), [](const Neighbor& a, const Neighbor& b) {
      return a.asking != b.asking ? !a.asking : a.seen_ms < b.seen_ms;
    });
    *slot = Neighbor{};
  }
  slot->ip = ip;
  slot->from = from;
  slot->exception = exception;
  return *slot;
}

void FlowEngine::solicit(Neighbor& n, FrameSink& out) noexcept {
  FrameSink* sink = &out;
  if (n.exception) {
    FrameSink* x = out.exception_sink();
    sink = x != nullptr ? x : &no_sink_;
  }
  if (!n.asking) {
    n.asking = true;
    n.asking_since = now_ms_;
  }
  n.asked_ms = now_ms_;
  if (n.ip.family == 6) {
    ++stats_.backend_nd_solicits;
    send_built(*sink, [&](std::span<uint8_t> b) {
      return build_neighbor_solicit(b, cfg_.mac, n.from, n.ip, cfg_.next_hops.vlan);
    });
    return;
  }
  ++stats_.backend_arp_requests;
  const MacAddr& mac = n.exception ? cfg_.handoff.mac : cfg_.mac;
  const uint16_t vlan = n.exception ? 0 : cfg_.next_hops.vlan;
  send_built(*sink, [&](std::span<uint8_t> b) {
    return build_arp_request(b, mac, n.from.v4_host(), n.ip.v4_host(), vlan);
  });
}

void FlowEngine::send_arp_for(Flow& f, FrameSink& out) noexcept {
  ++f.tries;
  Neighbor& n = neighbor_entry(next_hop(f), f.bkey.dst, f.handoff);
  // Many flows waiting for one next hop: one request for them all.
  if (!n.asking || now_ms_ - n.asked_ms >= kNeighborRequestGapMs) solicit(n, out);
  link_tail(f, Wait::kConnect);
}

void FlowEngine::on_arp_reply(const Packet& p, bool exception, FrameSink& out) noexcept {
  Neighbor* n = find_neighbor(IpAddr::v4(p.arp.sender_ip), exception);
  if (n == nullptr || n->from.family != 4 || n->from.v4_host() != p.arp.target_ip ||
      p.vlan != (exception ? 0 : cfg_.next_hops.vlan)) {
    if (!redirected_) ++stats_.neighbor_ignored;  // a copy from another lcore: its own answer, maybe
    return;
  }
  learn_neighbor(*n, p.arp.sender_mac, out);
}

void FlowEngine::on_neighbor_advert(const Packet& p, FrameSink& out) noexcept {
  Neighbor* n = find_neighbor(p.icmp.nd_target, false);
  if (n == nullptr || !p.icmp.has_nd_mac || !(n->from == p.dst) || p.vlan != cfg_.next_hops.vlan) {
    if (!redirected_) ++stats_.neighbor_ignored;  // a copy from another lcore: its own answer, maybe
    return;
  }
  learn_neighbor(*n, p.icmp.nd_mac, out);
}

void FlowEngine::learn_neighbor(Neighbor& n, const MacAddr& mac, FrameSink& out) noexcept {
  if (!n.asking || now_ms_ - n.asked_ms > kNeighborProbeMs || !usable_mac(mac)) {
    if (!redirected_) ++stats_.neighbor_ignored;  // a copy from another lcore: its own answer, maybe
    return;
  }
  // Moved: another MAC, or the entry was forgotten (silent) and is learned
  // anew, perhaps from another host.
  const bool moved = !n.known || n.mac != mac;
  n.mac = mac;
  n.known = true;
  n.asking = false;
  n.seen_ms = now_ms_;
  const IpAddr ip = n.ip;
  const bool exception = n.exception;
  // Flows waiting for this MAC go on.
  for (uint32_t i = head_[static_cast<size_t>(Wait::kConnect)]; i != kNil;) {
    Flow& f = flows_[i];
    i = f.next;
    if (f.state == Flow::State::kConnecting && !f.backend_mac_known && f.handoff == exception &&
        next_hop(f) == ip) {
      f.backend_mac = mac;
      f.mac_epoch = mac_epoch_;
      f.backend_mac_known = true;
      f.tries = 0;
      send_backend_syn(f, out);
    }
  }
  // The next hop moved (a failover, a replaced host): the flows through it
  // follow, each at its next frame towards the backend (follow_neighbor);
  // no scan of the flow table, which would stall the lcore for milliseconds
  // at a million flows just when a failover needs it.
  if (moved) ++mac_epoch_;
}

void FlowEngine::refresh_backend_mac(Flow& f) noexcept {
  f.mac_epoch = mac_epoch_;
  if (!f.backend_mac_known) return;
  const Neighbor* n = find_neighbor(next_hop(f), f.handoff);
  if (n != nullptr && n->known) f.backend_mac = n->mac;
}

void FlowEngine::refresh_neighbors(FrameSink& out) noexcept {
  if (now_ms_ - neighbors_checked_ms_ < 100) return;
  neighbors_checked_ms_ = now_ms_;
  for (size_t i = 0; i < neighbors_.size();) {
    Neighbor& n = neighbors_[i];
    if (n.asking && now_ms_ - n.asking_since >= kNeighborProbeMs) {
      n = neighbors_.back();  // no answer: forgotten
      neighbors_.pop_back();
      continue;
    }
    // A stale MAC in use while it is asked again: a request every second.
    if (n.known && n.asking && now_ms_ - n.asked_ms >= 1000) solicit(n, out);
    ++i;
  }
}

}  // namespace lode::front
