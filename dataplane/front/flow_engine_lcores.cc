// Several polling lcores: which lcore holds a flow, and the hand-over of a
// frame that reached another one.
//
// Each lcore has its own engine and flow table, with no lock between them.
// A client's segments stay on one lcore: RSS (or the tap's queue choice)
// hashes the client's 4-tuple, the same for every segment of a flow, and the
// SYN cookie is stateless under one key for every lcore, so whichever lcore
// gets the cookie ACK creates the flow and keeps it. The backend's side (and
// a worker's, on the exception port) is another 4-tuple, which the NIC or
// the kernel may put on any queue. So the local port an engine takes for
// that side names it: port % lcores == lcore (next_local_port). An engine
// that holds no flow for a backend-side segment hands it to the port's owner
// (FrameSink::redirect: in the DPDK glue the mbuf moves through a bounded
// single-producer/single-consumer ring per (from, to) pair; a full ring
// drops and counts). The owner handles it like its own frame and never sends
// it on again, so a frame crosses at most once; a frame the owner does not
// know either gets what one lcore answers such a frame (a RST).
//
// Why the port and not a shared table or a lookup on every lcore: the port
// is in every segment, costs a division on a lookup miss only, and needs no
// state shared between lcores.
//
// A NIC whose RSS is Toeplitz with a key and RETA we know
// (EngineConfig::rss, set by dpdk_front.cc) lets us do better: the engine
// takes a port whose return 4-tuple (backend address, our address, backend
// port, local port) hashes, by the same Toeplitz and RETA, to its own queue
// (rss_local_port), so the NIC delivers the backend's segments to the lcore
// that holds the flow and nothing crosses a ring. Those ports come from
// their own range (kFirstLocalPort..kLastRssPort), owned by the queue their
// 4-tuple hashes to: lcores never take the same port for the same peer (one
// 4-tuple hashes to one queue), and an lcore that gets such a segment
// without holding its flow (the NIC hashed differently from us after all)
// still finds the owner by computing the hash. When no port of that range
// hashes to this queue within kRssPortAttempts (a RETA that never names it,
// or the ports to one peer all taken) the leg falls back to the port rule on
// the rest of the range (rss_port_fallbacks), redirected as before. The tap
// used in the e2e tests picks queues by the kernel's own flow hash, so there
// the port rule holds for every local port.
//
// The driver list that says a NIC hashes by Toeplitz (dpdk_front.cc) is an
// assumption, so the engine checks it against what the NIC reports: a
// sample of the hashes it gives received segments is compared with ours
// (check_nic_hash). When they disagree, new legs take ports by the port rule
// on every lcore (EngineConfig::rss_disabled); legs already on ports chosen
// by hash keep working, their segments redirected to the lcore the hash
// names wherever the NIC puts them.
//
// ARP replies and neighbour advertisements carry no port and answer a
// request any lcore may have sent: every lcore gets a copy (each takes only
// what it asked for).
#include <algorithm>

#include "dataplane/front/flow_engine_flow.h"

namespace lode::front {

uint32_t FlowEngine::owner_of_local_port(uint16_t port) const noexcept {
  if (cfg_.lcores <= 1 || port < kFirstLocalPort || port > kLastLocalPort) return cfg_.lcore;
  if (cfg_.rss && port <= kLastRssPort) return cfg_.lcore;  // named by the whole 4-tuple
  return port % cfg_.lcores;
}

uint32_t FlowEngine::owner_of(const FlowKey& segment, bool from_exception) const noexcept {
  const uint16_t port = segment.dport;
  if (cfg_.lcores <= 1 || port < kFirstLocalPort || port > kLastLocalPort) return cfg_.lcore;
  const std::optional<RssHash>& rss = from_exception ? cfg_.exception_rss : cfg_.rss;
  if (rss && port <= kLastRssPort) {
    const uint16_t q = rss->queue_of(segment);
    return q < cfg_.lcores ? q : cfg_.lcore;  // a queue no lcore polls: never chosen, so no flow
  }
  return port % cfg_.lcores;
}

uint16_t FlowEngine::rss_local_port(const FlowKey& bk, bool handoff) noexcept {
  const std::optional<RssHash>& rss = handoff ? cfg_.exception_rss : cfg_.rss;
  if (!rss || cfg_.lcores <= 1) return 0;
  if (!handoff && cfg_.rss_disabled->load(std::memory_order_relaxed)) {
    ++stats_.rss_port_fallbacks;  // the NIC's hash disagreed with ours (check_nic_hash)
    return 0;
  }
  if (!(handoff ? exception_rss_names_us_ : rss_names_us_)) {
    ++stats_.rss_port_fallbacks;  // no RETA entry is this queue: no port would do
    return 0;
  }
  FlowKey k = bk;
  const uint16_t port = rss->find_dport(
      bk, static_cast<uint16_t>(cfg_.lcore), kFirstLocalPort, kLastRssPort, rss_cursor_, kRssPortAttempts,
      [&](uint16_t p) {
        // Never a VIP's port (a backend's segment to it would be taken for
        // a client's), never one this lcore already uses towards that peer.
        if (std::any_of(cfg_.vips.begin(), cfg_.vips.end(), [&](const Vip& v) { return v.port == p; })) return false;
        k.dport = p;
        return lookup_backend(k, flow_hash(k)) == nullptr;
      });
  if (port != 0) {
    rss_cursor_ = uint32_t{port} - kFirstLocalPort + 1;  // the next search starts past it
    return port;
  }
  rss_cursor_ += kRssPortAttempts;
  ++stats_.rss_port_fallbacks;
  return 0;
}

void FlowEngine::verify_nic_hash(std::span<const uint8_t> frame, uint32_t nic_hash) noexcept {
  const std::optional<FlowKey> k = rss_tcp_tuple(frame);
  if (!k) return;  // not a shape the NIC hashes by the 4-tuple: nothing to compare
  ++stats_.rss_hash_checked;
  if (cfg_.rss->hash(*k) == nic_hash) return;
  if (++stats_.rss_hash_mismatches < kNicHashMismatches) return;
  // The lcore that turns it off says so (summed over lcores: 0 or 1).
  bool was = false;
  if (cfg_.rss_disabled->compare_exchange_strong(was, true, std::memory_order_relaxed)) stats_.rss_hash_disabled = 1;
}

bool FlowEngine::redirect_to_owner(const FlowKey& segment, bool from_exception, std::span<const uint8_t> frame,
                                   FrameSink& out) noexcept {
  if (redirected_) return false;
  const uint32_t owner = owner_of(segment, from_exception);
  if (owner == cfg_.lcore) return false;
  if (out.redirect(owner, frame)) {
    ++stats_.redirected_out;
  } else {
    ++stats_.redirect_drops;
  }
  return true;
}

void FlowEngine::share_with_lcores(std::span<const uint8_t> frame, FrameSink& out) noexcept {
  if (cfg_.lcores <= 1 || redirected_) return;
  if (out.redirect(FrameSink::kEveryLcore, frame)) {
    stats_.redirected_out += cfg_.lcores - 1;
  } else {
    ++stats_.redirect_drops;
  }
}

void FlowEngine::on_redirected_frame_in_place(std::span<uint8_t> frame, uint64_t now_ms,
                                              FrameSink& out, bool from_exception,
                                              bool l4_verified) noexcept {
  ++stats_.redirected_in;
  // Received (and counted) by the lcore that sent it here.
  const uint64_t rx = stats_.rx_frames, exception_rx = stats_.exception_rx;
  redirected_ = true;
  if (from_exception) {
    on_exception_frame_in_place(frame, now_ms, out, l4_verified);
  } else {
    on_frame_in_place(frame, now_ms, out, l4_verified);
  }
  redirected_ = false;
  stats_.rx_frames = rx;
  stats_.exception_rx = exception_rx;
}

}  // namespace lode::front
